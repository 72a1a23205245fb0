"""A linear model's steps from sums: each step's loss and gradient added up over parts of the rows.

Where a batch's rows are not all in one tensor of this process (under torchrun
each rank holds a shard of them), the compiled ``ops.linear_sums`` makes one
pass over the rows this process holds and returns the loss and gradient as
unscaled float64 sums; the sums are added over the ranks, scaled once, and the
fit's own optimizer takes its step from them. The steps are those of autograd
on the whole batch (the same gradient, up to the order of the additions), for
any optimizer that steps without a closure; the epochs, snapshots and
non-finite handling are the autograd runner's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Tuple, Union

import torch
from torch import nn

from . import ops
from ._fusable import _linear_params, declared_loss
from ._runners import Autograd, _order
from ._shard import Shard
from .optimizers import requires_closure


@dataclass(frozen=True)
class LinearLoss:
    """The loss a linear model's sums are taken under: its kind, reduction and Huber's delta."""

    kind: str  # "squared", "absolute" or "huber"
    reduction: str  # "mean" or "sum"
    delta: float


def summed_plan(model: nn.Module, loss_fn: Any, optimizer: torch.optim.Optimizer,
                X: torch.Tensor) -> Optional[LinearLoss]:
    """The loss to take a linear model's steps from sums under, or None where the sums would not be the
    gradient autograd computes (see ``_fusable``: the same declared facts about the model and the loss)."""
    params = _linear_params(model, X)
    declared = declared_loss(loss_fn)
    if params is None or declared is None or requires_closure(optimizer):
        return None
    if model._forward_hooks or model._forward_pre_hooks or any(
            getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None) for p in params):
        return None  # hooks the sums would skip
    kind, reduction = declared
    delta = 1.0
    if kind == "huber":
        delta = getattr(loss_fn, "delta", None)
        if not isinstance(delta, float) or not (0 < delta < math.inf):
            return None
    return LinearLoss(kind, reduction, delta)


class SummedLinear(Autograd):
    """Epochs of a linear model whose every step sums ``ops.linear_sums`` over the ranks' rows."""

    def __init__(self, model: nn.Module, loss: LinearLoss, loss_fn: Any, optimizer: torch.optim.Optimizer,
                 X: torch.Tensor, y: torch.Tensor, batch_size: Optional[int], shuffle: bool,
                 generator: torch.Generator, scheduler: Any, shard: Shard,
                 chunks: Optional[Callable[[], Iterator[Tuple[torch.Tensor, torch.Tensor]]]] = None):
        super().__init__(model, loss_fn, optimizer, X, y, batch_size, shuffle, generator, scheduler, shard)
        self.loss = loss
        # streamed rows (full batch only) are read again at every step: chunks() yields them, X and y are
        # their first row; else X and y are this process's rows
        self.chunks = chunks
        if chunks is not None:
            self.work_per_epoch = (shard.stop - shard.start) * X.shape[1]
        with torch.no_grad():
            self.features = model.design_matrix(X).contiguous()
        self.targets = y.reshape(y.shape[0], -1).contiguous()
        self.weight, self.bias = model.weight, model.bias
        self.outputs, self.width = self.weight.shape
        # residuals and gradient: 4 FLOPs per feature, output and row of a batch
        self.work_per_step = 4 * self.batch_size * self.width * self.outputs
        self.name = f"{ops.backend()}:summed-linear"

    def _sums(self, rows: Union[slice, torch.Tensor]) -> torch.Tensor:
        """The loss and gradient sums over this rank's ``rows`` (a slice or row positions)."""
        params = [p.detach() for p in (self.weight, self.bias) if p is not None]
        if self.chunks is not None:
            total = None
            for X, y in self.chunks():
                with torch.no_grad():
                    features = self.model.design_matrix(X).contiguous()
                part = ops.linear_sums(features, y.reshape(y.shape[0], -1).contiguous(), params,
                                       loss=self.loss.kind, delta=self.loss.delta)
                total = part if total is None else total.add_(part)
            if total is None:  # a rank with no rows adds nothing
                total = torch.zeros(1 + self.outputs * (1 + self.width), dtype=torch.float64)
            return total
        if isinstance(rows, slice):
            X, y, rows = self.features[rows], self.targets[rows], None
        else:
            X, y = self.features, self.targets
            rows = rows.to(X.device)
        return ops.linear_sums(X, y, params, rows=rows, loss=self.loss.kind, delta=self.loss.delta)

    def _update(self, sums: torch.Tensor, rows: int) -> Optional[float]:
        """One optimizer step from a batch's ``sums`` (over its ``rows`` rows, all ranks'); returns the
        batch's loss before it (a non-finite loss takes no step), or None when the step overflowed."""
        K = self.outputs
        count = rows * K if self.loss.reduction == "mean" else 1
        loss = float(sums[0]) / count
        if not math.isfinite(loss):
            return loss
        # d loss / d residual: 2r for the squared error, the sums hold r
        grads = sums[1:] * ((2.0 if self.loss.kind == "squared" else 1.0) / count)
        self.weight.grad = grads[K:].view(K, self.width).to(self.weight.dtype)
        if self.bias is not None:
            self.bias.grad = grads[:K].to(self.bias.dtype)
        return loss if self._step() else None

    def _epoch(self, interrupted: Callable[[], bool]) -> Optional[torch.Tensor]:
        n = self.rows
        order = _order(self.generator, n) if self.shuffled else None
        total = 0.0
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            sums = self.shard.sum(self._sums(self.shard.local_rows(order, start, stop)),
                                  "the loss and gradient sums")
            loss = self._update(sums, stop - start)
            if loss is None:
                loss = math.inf
            if not math.isfinite(loss):
                return torch.tensor(loss, dtype=torch.float64)
            total += loss * (1.0 if self.sum_reduction else (stop - start) / n)
            if stop < n and interrupted():  # the last batch ends the epoch anyway: no exchange of the flag
                return None
        return torch.tensor(total, dtype=torch.float64)
