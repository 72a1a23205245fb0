"""Seed 003: d2l's synthetic linear regression, shuffled minibatches of 10.

y = X w + b + noise with w = [2, -3.4], b = 4.2, 1000 samples, noise σ = 0.01;
lr 0.03, 3 epochs. Once from pyfit's registries, once with the seed's own
`linreg` model and `squared_loss` registered under new names.
"""

import os

import torch
from torch import nn

import pyfit

# settings
SEED = 0
TRUE_W, TRUE_B = [2.0, -3.4], 4.2
SAMPLES = 1000
NOISE = 0.01
BATCH_SIZE = 10
LR = 0.03
EPOCHS = 3

torch.manual_seed(SEED)
X = torch.normal(0, 1, (SAMPLES, len(TRUE_W)))
y = X @ torch.tensor(TRUE_W) + TRUE_B + torch.normal(0, NOISE, (SAMPLES,))  # (N, 2) @ (2,) -> (N,)


@pyfit.MODELS.register("linreg", description="the seed's linreg: X @ w + b, w drawn from N(0, 0.01²)")
class LinReg(nn.Module):
    def __init__(self, in_features, out_features=1):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.w = nn.Parameter(torch.normal(0, 0.01, (in_features, out_features)))
        self.b = nn.Parameter(torch.zeros(out_features))

    def forward(self, X):
        return X @ self.w + self.b  # (N, D) @ (D, K) -> (N, K)


@pyfit.LOSSES.register("half_squared", description="the seed's squared_loss, (ŷ - y)² / 2, averaged")
def half_squared(pred, target):
    # the seed sums (ŷ - y)²/2 over the batch and divides the gradient by the batch
    # size; a batch mean is the same step
    return ((pred - target.reshape(pred.shape)) ** 2 / 2).mean()


for model, loss in (("linear", "mse"), ("linreg", "half_squared")):
    result = pyfit.fit(model, X, y, loss=loss, optimizer="sgd", lr=LR, epochs=EPOCHS,
                       batch_size=BATCH_SIZE, shuffle=True, seed=SEED)
    params = dict(result.model.named_parameters())
    w = (params["weight"] if model == "linear" else params["w"].T).detach().flatten().tolist()
    b = (params["bias"] if model == "linear" else params["b"]).item()
    # an epoch's loss is the mean over its batches, each taken before its own step
    # (d2l instead evaluates the whole data after the epoch)
    for epoch, value in enumerate(result.history["loss"], 1):
        print(f"{model}+{loss}: epoch {epoch}, loss {value:.6e}")
    final = pyfit.build_loss(loss)(result.predict(X), y, model=result.model).item()
    print(f"{model}+{loss}: loss on all data after training {final:.6e}")
    print(f"{model}+{loss}: w = [{w[0]:.6f}, {w[1]:.6f}], b = {b:.6f}")
    print(f"{model}+{loss}: backend = {result.backend}")
