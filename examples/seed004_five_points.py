"""Seed 004: a line through five points by the sum of squared errors.

x = [1.4, 5, 11, 16, 21], y = [14.4, 29.6, 62, 85.5, 113.4]; full-batch gradient
descent at lr 1e-4 for 1000 epochs. The seed builds the design matrix with a
ones column and multiplies with `mv`; a linear model with a bias is the same.
"""

import os
from pathlib import Path

import torch

import pyfit

# settings
SEED = 0
X = torch.tensor([1.4, 5, 11, 16, 21])
Y = torch.tensor([14.4, 29.6, 62, 85.5, 113.4])
LR = 1e-4  # a sum, not a mean: the step grows with the number of points
EPOCHS = 1000
OUT = Path(os.environ.get("PYFIT_EXAMPLES_OUT", Path(__file__).parent / "output"))

result = pyfit.fit("linear", X, Y, loss="sse", lr=LR, epochs=EPOCHS, seed=SEED)

# 1000 epochs stop short of the least-squares line (w 5.066, b 5.857, loss 8.13): the
# intercept is the slow direction of this valley, as in the seed
w, b = result.model.weight.item(), result.model.bias.item()
print(f"final loss = {result.final_loss:.6f}")
print(f"weights: w = {w:.6f}, b = {b:.6f}")  # the seed's weights tensor is [w, b]
print(f"backend = {result.backend}")
# the seed redraws the fit every 80 epochs; the end state and the loss curve say the same
result.plot_fit(X, Y, OUT / "seed004_fit.png")
result.plot_loss(OUT / "seed004_loss.png")
