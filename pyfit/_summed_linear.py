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
from ._fusable import _linear_params, has_model_hooks, loss_terms
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
    terms = loss_terms(loss_fn)
    if params is None or terms is None or requires_closure(optimizer) or has_model_hooks(model, params):
        return None  # (hooks: the sums skip the forward and autograd; the optimizer's own step runs)
    return LinearLoss(*terms)


class SummedLinear(Autograd):
    """Epochs of a linear model whose every step sums ``ops.linear_sums`` over the ranks' rows."""

    def __init__(self, model: nn.Module, loss: LinearLoss, loss_fn: Any, optimizer: torch.optim.Optimizer,
                 X: torch.Tensor, y: torch.Tensor, batch_size: Optional[int], shuffle: bool,
                 generator: torch.Generator, scheduler: Any, shard: Shard):
        super().__init__(model, loss_fn, optimizer, X, y, batch_size, shuffle, generator, scheduler, shard)
        self.loss = loss
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
        if isinstance(rows, slice):
            return self._linear_sums(self.features[rows], self.targets[rows])
        return self._linear_sums(self.features, self.targets, rows.to(self.features.device))

    def _linear_sums(self, features: torch.Tensor, targets: torch.Tensor,
                     rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ops.linear_sums of the params as they are now on a design and its (n, K) targets."""
        params = [p.detach() for p in (self.weight, self.bias) if p is not None]
        return ops.linear_sums(features, targets, params, rows=rows, loss=self.loss.kind, delta=self.loss.delta)

    def _exchange(self, sums: torch.Tensor, rows: int) -> Tuple[torch.Tensor, int]:
        """This rank's sums over its ``rows`` rows of a batch, and the batch's rows, added over the ranks."""
        both = self.shard.sum(torch.cat([sums, sums.new_tensor([float(rows)])]), "the loss and gradient sums")
        return both[:-1], int(both[-1])

    def _batch_sums(self) -> Iterator[Tuple[torch.Tensor, int]]:
        """An epoch's batches, in order: this rank's sums over its rows of each and how many those are, each
        taken when asked for (after the previous batch's step)."""
        n = self.rows
        order = _order(self.generator, n) if self.shuffled else None
        for start in range(0, n, self.batch_size):
            rows = self.shard.local_rows(order, start, min(start + self.batch_size, n))
            yield self._sums(rows), (rows.stop - rows.start if isinstance(rows, slice) else rows.numel())

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

    def step_rows(self, start: int, stop: int) -> float:
        rows = self.shard.local_rows(None, start, stop)
        loss = self._update(*self._exchange(self._sums(rows), rows.stop - rows.start))
        return math.inf if loss is None else loss

    def _epoch(self, interrupted: Callable[[], bool]) -> Optional[torch.Tensor]:
        n, done, total = self.rows, 0, 0.0
        for own_sums, own_rows in self._batch_sums():
            sums, rows = self._exchange(own_sums, own_rows)
            if not rows:  # no rank held a row of this batch (a streamed chunk's short end)
                continue
            loss = self._update(sums, rows)
            if loss is None:
                loss = math.inf
            if not math.isfinite(loss):
                return torch.tensor(loss, dtype=torch.float64)
            done += rows
            total += loss * (1.0 if self.sum_reduction else rows / n)
            if interrupted() and done < n:
                return None
        return torch.tensor(total, dtype=torch.float64)
