"""Seed 000: y = 3x + 0.8 on 50 random points, 3000 full-batch gradient steps at lr 0.01.

The seed writes the loss, zeroes grads and updates `.data` by hand and ends at
w ≈ 2.93, b ≈ 0.84. Its setting is one call with its lr; left out, pyfit's lr="auto"
would take the safe step for this data (about 0.41) and reach (3, 0.8).
"""

import os
from pathlib import Path

import torch

import pyfit

# settings
SEED = 0
POINTS = 50
TRUE_W, TRUE_B = 3.0, 0.8
EPOCHS = 3000  # full batch: one step per epoch, as in the seed
OUT = Path(os.environ.get("PYFIT_EXAMPLES_OUT", Path(__file__).parent / "output"))

torch.manual_seed(SEED)
x = torch.rand(POINTS)
y = TRUE_W * x + TRUE_B

# the seed's lr 0.01. It stops short of (3, 0.8) because with x in [0, 1] the loss
# is a long valley (curvature ~0.13 across it), and 3000 steps at lr 0.01 shrink
# the error along it only to ~2% of where it began.
result = pyfit.fit("linear", x, y, lr=0.01, epochs=EPOCHS, seed=SEED)

w, b = result.model.weight.item(), result.model.bias.item()
print(f"lr = {result.history['lr'][0]:g}, epochs = {result.epochs}, final loss = {result.final_loss:.3e}")
print(f"w = {w:.6f}")
print(f"b = {b:.6f}")
print(f"backend = {result.backend}")
result.plot_fit(x, y, OUT / "seed000_fit.png")
result.plot_loss(OUT / "seed000_loss.png")
