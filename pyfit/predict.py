"""Predictions from a fitted model, on the model's own dtype and device."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .validation import check_features, to_tensor


def model_dtype_device(model: nn.Module):
    """The dtype and device of the model's first parameter (float default, CPU without one)."""
    for param in model.parameters():
        return param.dtype, param.device
    return torch.get_default_dtype(), torch.device("cpu")


def predict(model: nn.Module, X: Any) -> torch.Tensor:
    """Run ``model`` on X (tensor, array or list; 1-D means one feature) without gradients.

    A single output comes back as shape (N,), several as (N, K).

    >>> import torch, pyfit
    >>> model = pyfit.Linear(1)
    >>> pyfit.predict(model, [1.0, 2.0]).shape
    torch.Size([2])
    """
    dtype, device = model_dtype_device(model)
    X = to_tensor(X, "X", dtype).to(device)
    if X.dim() == 1:
        X = X.unsqueeze(1)
    check_features(X, getattr(model, "in_features", None))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(X)
    finally:
        model.train(was_training)
    return out.reshape(-1) if out.dim() == 2 and out.shape[1] == 1 else out
