"""An example pyfit plugin: the exp_decay model, the log_cosh loss and the sign_sgd optimizer.

pyfit finds these through the entry points in pyproject.toml the first time a
registry is looked up; nothing here imports pyfit.
"""

import math

import torch
from torch import nn


class ExpDecay(nn.Module):
    """y = a * exp(-k x) + c on one input feature, for each output."""

    description = "y = a exp(-k x) + c: exponential decay towards a floor"

    def __init__(self, in_features: int = 1, out_features: int = 1):
        super().__init__()
        if in_features != 1:
            raise ValueError(f"exp_decay takes 1 input feature, got in_features={in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.a = nn.Parameter(torch.ones(out_features))
        self.k = nn.Parameter(torch.ones(out_features))
        self.c = nn.Parameter(torch.zeros(out_features))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.a * torch.exp(-self.k * X) + self.c  # (N, 1) with (K,) -> (N, K)


def log_cosh(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean log(cosh(pred - target)): squared near zero, absolute far out."""
    r = pred - target
    # log(cosh r) = |r| + log1p(exp(-2|r|)) - log 2, which does not overflow for large |r|
    return (r.abs() + torch.log1p(torch.exp(-2 * r.abs())) - math.log(2.0)).mean()


class SignSGD(torch.optim.Optimizer):
    """Sign SGD: each parameter moves by lr in the direction opposite its gradient's sign."""

    description = "sign SGD: p -= lr * sign(grad)"

    def __init__(self, params, lr: float = 1e-3):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])
        return loss
