"""Pure-PyTorch reference of pyfit's hot-loop ops.

This module is the fallback when the compiled extension is missing and the oracle
that every parity test compares the compiled ops against. It favours plainness over
speed: each op is written the way the maths reads, with torch's own kernels.

Losses, reductions and optimizers are encoded as integers (``_settings``) so that
the same signatures serve the C++ schemas; the optimizer updates are torch.optim's
single-tensor rules (``_updates``). Every op checks its arguments (``_checks``)
before it writes anything.

Sums over rows accumulate as the compiled ops do: a short run of rows in the data's
dtype, then those partial sums in float64. A plain float32 sum (or matmul) over
millions of rows drifts (4M rows, 3 epochs: a weight off by 5e-4 relative) where
the compiled ops stay within a few ulps of float64, and an oracle must not.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _checks, _settings, _updates
from ._settings import MEAN, SUM  # noqa: F401 (the reduction codes, named here for readers)

# rows summed in the data's dtype before flushing into float64: csrc/linear_kernel.h
# (kFlushRows) for the linear ops, csrc/mse.cpp (kFlush) for the squared error
_LINEAR_FLUSH_ROWS = 128
_MSE_FLUSH = 512


def _run_dtype(dtype: torch.dtype) -> torch.dtype:
    # runs of rows sum in the data's dtype, but never below float32 (half and bfloat16
    # would overflow or lose the sum)
    return torch.promote_types(dtype, torch.float32)


def _blocked_sum(values: Tensor, block: int) -> Tensor:
    """Sum over dim 0 in float64: runs of ``block`` rows summed in values' dtype, the runs in float64."""
    values = values.to(_run_dtype(values.dtype))
    full = values.shape[0] - values.shape[0] % block
    runs = values[:full].reshape(-1, block, *values.shape[1:]).sum(dim=1)
    return runs.double().sum(dim=0) + values[full:].sum(dim=0).double()


def _blocked_matmul_tn(a: Tensor, b: Tensor, block: int) -> Tensor:
    """a.T @ b in float64 for a (N, K), b (N, D): runs of ``block`` rows in their dtype, the runs in float64."""
    a, b = a.to(_run_dtype(a.dtype)), b.to(_run_dtype(b.dtype))
    full = a.shape[0] - a.shape[0] % block
    # (R, block, K) -> (R, K, block) @ (R, block, D) -> (R, K, D): one small product per run
    runs = torch.bmm(a[:full].reshape(-1, block, a.shape[1]).transpose(1, 2), b[:full].reshape(-1, block, b.shape[1]))
    return runs.double().sum(dim=0) + (a[full:].t() @ b[full:]).double()


def mse_loss_fwd(pred: Tensor, target: Tensor, reduction: int) -> Tuple[Tensor, Tensor]:
    """Loss and d(loss)/d(pred) for the squared error, computed together.

    Returns a 0-dim loss in pred's dtype and a gradient shaped like pred.
    """
    _checks.check_mse(pred, target)
    diff = pred - target
    total = _blocked_sum((diff * diff).reshape(-1), _MSE_FLUSH)
    scale = 2.0
    if reduction == MEAN:
        # an empty mean is NaN (0 / 0), as in F.mse_loss
        total = total / diff.numel()
        scale = 2.0 / max(diff.numel(), 1)
    return total.to(pred.dtype), diff * scale


def sgd_update_(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffers: Sequence[Tensor],
    first_step: Sequence[bool],
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
    zero_grads: bool,
) -> None:
    """One SGD step over every tensor, with torch.optim.SGD's semantics.

    ``momentum_buffers`` is empty when ``momentum == 0``; otherwise it holds one
    buffer per param, and ``first_step[i]`` says buffer i holds no history yet, so
    it is overwritten with the gradient (no dampening), as torch does.
    """
    _checks.check_sgd_counts(params, grads, momentum_buffers, first_step, momentum)
    _checks.check_sgd(params, grads, momentum_buffers if momentum != 0 else [], zero_grads)
    for i, (param, grad) in enumerate(zip(params, grads)):
        buf = momentum_buffers[i] if momentum != 0 else None
        _updates.sgd_step(param, grad, buf, first_step[i], lr, momentum, dampening, nesterov,
                          weight_decay, maximize)
        if zero_grads:
            grad.zero_()


def _row_sums(X: Tensor, y: Tensor, params: Sequence[Tensor], loss: int,
              delta: float) -> Tuple[Tensor, Tensor, Tensor]:
    """The unscaled float64 sums over the rows of a linear model's loss terms.

    Returns (sum of the loss values (0-dim), sum of the slopes per output (K,), sum of
    slope * x (K, D)); the slope is d value / d r up to the loss's constant factor
    (r for squared, whose factor 2 the caller applies). Without a bias, b = 0.
    """
    weight = params[0]
    # (N, D) @ (D, K) -> (N, K): residuals r = pred - target of the linear model on these rows
    residual = X @ weight.t() - y
    if len(params) == 2:
        residual = residual + params[1]
    if loss == _settings.SQUARED:
        value, slope = residual * residual, residual
    elif loss == _settings.ABSOLUTE:
        # sign: 0 at r == 0, as torch's l1_loss backward gives
        value, slope = residual.abs(), residual.sign()
    else:
        small = residual.abs() < delta
        value = torch.where(small, 0.5 * residual * residual, delta * (residual.abs() - 0.5 * delta))
        slope = residual.clamp(-delta, delta)
    # (K, N) @ (N, D) -> (K, D)
    return (_blocked_sum(value, _LINEAR_FLUSH_ROWS).sum(), _blocked_sum(slope, _LINEAR_FLUSH_ROWS),
            _blocked_matmul_tn(slope, X, _LINEAR_FLUSH_ROWS))


def _loss_and_grads(X: Tensor, y: Tensor, params: Sequence[Tensor], loss: int, reduction: int,
                    delta: float) -> Tuple[Tensor, List[Tensor]]:
    """The batch's loss and the gradients of [weight] or [weight, bias], sums over rows in float64."""
    total, bias_sums, weight_sums = _row_sums(X, y, params, loss, delta)
    scale = 2.0 if loss == _settings.SQUARED else 1.0
    count = y.numel()
    if reduction == MEAN:
        # no rows: a NaN mean (0 / 0), so the step is not taken
        total = total / count
        scale = scale / count if count else float("nan")
    # float64 sums, scaled in float64 and rounded once, as the compiled ops do
    grads = [(weight_sums * scale).to(X.dtype)]
    if len(params) == 2:
        grads.append((bias_sums * scale).to(X.dtype))
    return total.to(X.dtype), grads


def linear_sums(X: Tensor, y: Tensor, params: Sequence[Tensor], rows: Optional[Tensor], loss: int,
                delta: float) -> Tensor:
    """The unscaled sums of a linear model's loss and gradient over some rows, in float64.

    X (N, D), y (N, K), params [weight (K, D)] or [weight, bias (K,)]; ``rows`` None
    (every row) or 1-D int64 indices into X. Returns P = 1 + K + K * D float64 values
    on X's device: [sum of loss values, sum of slopes per output (K), sum of slope * x
    (K, D) row-major] (see ``_row_sums``), which add up over chunks of rows.
    """
    _checks.check_linear_sums(X, y, params, rows, loss, delta)
    if rows is not None:
        rows = rows.to(X.device)
        X, y = X[rows], y[rows]
    # column views of a wider buffer sum exactly as their contiguous copies (as compiled)
    X, y = X.contiguous(), y.contiguous()
    total, bias_sums, weight_sums = _row_sums(X, y, params, loss, delta)
    return torch.cat([total.reshape(1), bias_sums, weight_sums.reshape(-1)])


def linear_fit_(
    X: Tensor,
    y: Tensor,
    params: Sequence[Tensor],
    state: Sequence[Tensor],
    lrs: Tensor,
    order: Optional[Tensor],
    batch_size: int,
    loss: int,
    reduction: int,
    delta: float,
    optimizer: int,
    settings: Sequence[float],
    step: int,
) -> Tensor:
    """A whole fit of a linear model ``y ≈ X @ weight.T + bias``: ``len(lrs)`` epochs of steps.

    X (N, D), y (N, K); params [weight (K, D)] or [weight, bias (K,)]; state the
    optimizer's tensors, param by param in ``_settings.state_names`` order, each
    like its param. ``lrs`` (E,) float64 holds each epoch's learning rate.
    ``batch_size <= 0`` means full batch. ``order`` is None (rows in their order)
    or an (E, N) int64 tensor giving each epoch's row order; minibatches are
    consecutive slices of it, the last one possibly short. ``loss``, ``reduction``
    and ``optimizer`` are codes of ``_settings``; ``delta`` is the huber loss's;
    ``settings`` the 13 values of ``_settings.SETTING_NAMES``; ``step`` the number
    of steps the params have taken before (the first step here is number step + 1).

    Returns (E,) epoch losses in X's dtype, each taken before that step's update:
    the loss itself for full batch; for minibatches the batches' losses combined
    as one loss over the epoch (weighted by batch size for the mean, summed for
    the sum). If a step meets a non-finite loss, or leaves a param non-finite, its
    update is undone (params and state), the fit stops there, that epoch's entry
    is non-finite (NaN when only the update overflowed) and every later entry is NaN.
    """
    _checks.check_linear_fit(X, y, params, state, lrs, order, batch_size, loss, reduction, delta,
                             optimizer, settings, step)
    update = _updates.UPDATES[optimizer]
    named = dict(zip(_settings.SETTING_NAMES, (float(v) for v in settings)))
    per_param = len(state) // len(params)
    # (param, its state tensors) pairs
    owned = [(p, state[i * per_param:(i + 1) * per_param]) for i, p in enumerate(params)]
    epochs, n = lrs.numel(), X.shape[0]
    batch = n if batch_size <= 0 else min(batch_size, n)
    losses = torch.full((epochs,), float("nan"), dtype=X.dtype, device=X.device)
    for epoch in range(epochs):
        lr = float(lrs[epoch])
        rows = order[epoch].to(X.device) if order is not None else None
        total = torch.zeros((), dtype=torch.float64, device=X.device)
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            index = slice(start, stop) if rows is None else rows[start:stop]
            value, grads = _loss_and_grads(X[index], y[index], params, loss, reduction, delta)
            if not torch.isfinite(value):
                losses[epoch] = value
                return losses
            step += 1
            saved = [t.clone() for t in [*params, *state]]
            for (param, tensors), grad in zip(owned, grads):
                update(param, grad, tensors, lr, named, float(step))
            if not all(bool(torch.isfinite(p).all()) for p in params):
                for live, old in zip([*params, *state], saved):
                    live.copy_(old)
                losses[epoch] = float("nan")
                return losses
            total += value.double() * ((stop - start) / n if reduction == MEAN else 1.0)
        losses[epoch] = total
    return losses


class _MSELoss(torch.autograd.Function):
    """Autograd wrapper: backward reuses the gradient that the forward computed."""

    @staticmethod
    def forward(ctx, pred: Tensor, target: Tensor, reduction: int) -> Tensor:
        loss, grad = mse_loss_fwd(pred, target, reduction)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        (grad,) = ctx.saved_tensors
        grad_pred = grad * grad_loss
        needs_pred, needs_target, _ = ctx.needs_input_grad
        return (grad_pred if needs_pred else None,
                -grad_pred if needs_target else None,
                None)


def mse_loss(pred: Tensor, target: Tensor, reduction: int) -> Tensor:
    """Autograd-aware squared error built on :func:`mse_loss_fwd`."""
    return _MSELoss.apply(pred, target, reduction)
