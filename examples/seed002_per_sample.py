"""Seed 002: per-sample SGD on x = [1, 2, 3], y = [2, 4, 6], in float32.

First y = w x from w = 1, then y = w1 x² + w2 x + b from w1 = w2 = 1, b = 0;
100 epochs at lr 0.01, one step per sample in order. The seed prints
x=4 -> 7.999998569488525 and 8.3240966796875.
"""

import os
from pathlib import Path

import numpy as np
import torch

import pyfit

# settings
X = torch.tensor([1.0, 2.0, 3.0])  # float32, as the seed's tensors
Y = torch.tensor([2.0, 4.0, 6.0])
LR = 0.01
EPOCHS = 100
SEED_PREDICTIONS = {"linear": 7.999998569488525, "quadratic": 8.3240966796875}
ULPS = 4  # our x @ W.T + b rounds in another order than the seed's w1*x**2 + w2*x + b
OUT = Path(os.environ.get("PYFIT_EXAMPLES_OUT", Path(__file__).parent / "output"))

linear = pyfit.Linear(1, bias=False)  # y = w x
quadratic = pyfit.Polynomial(degree=2)  # weight[:, 0] multiplies x, weight[:, 1] x²
with torch.no_grad():
    linear.weight.fill_(1.0)
    quadratic.weight.fill_(1.0), quadratic.bias.fill_(0.0)

for name, model in (("linear", linear), ("quadratic", quadratic)):
    # batch_size=1, shuffle=False: one update per sample, in the data's order
    result = pyfit.fit(model, X, Y, lr=LR, epochs=EPOCHS, batch_size=1, shuffle=False)
    prediction = result.predict([4.0]).item()
    expected = SEED_PREDICTIONS[name]
    ulp = float(np.spacing(np.float32(expected)))
    print(f"{name}: weight = {model.weight.detach().flatten().tolist()}, "
          f"bias = {None if model.bias is None else model.bias.item()}")
    print(f"{name}: x=4 -> {prediction!r} (seed {expected!r}, {abs(prediction - expected) / ulp:.0f} ulp apart)")
    print(f"{name}: backend = {result.backend}")
    assert abs(prediction - expected) <= ULPS * ulp, f"{name}: {prediction!r} vs the seed's {expected!r}"
    # the seed's "cost" is the last sample's loss; pyfit's is the epoch's mean, each
    # sample's loss taken before its own step
    result.plot_loss(OUT / f"seed002_cost_{name}.png")
