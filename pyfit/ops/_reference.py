"""Pure-PyTorch reference of pyfit's hot-loop ops.

This module is the fallback when the compiled extension is missing and the oracle
that every parity test compares the compiled ops against. It favours plainness over
speed: each op is written the way the maths reads, with torch's own kernels.

Reductions are encoded as integers so that the same signature serves the C++
schema: ``0`` is ``"mean"``, ``1`` is ``"sum"``.

Sums over rows accumulate as the compiled ops do: a short run of rows in the data's
dtype, then those partial sums in float64. A plain float32 sum (or matmul) over
millions of rows drifts (4M rows, 3 epochs: a weight off by 5e-4 relative) where
the compiled ops stay within a few ulps of float64, and an oracle must not.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

MEAN = 0
SUM = 1

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
    for i, (param, grad) in enumerate(zip(params, grads)):
        d_p = -grad if maximize else grad
        if weight_decay != 0:
            d_p = d_p.add(param, alpha=weight_decay)
        if momentum != 0:
            buf = momentum_buffers[i]
            if first_step[i]:
                buf.copy_(d_p)
            else:
                buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
            d_p = d_p.add(buf, alpha=momentum) if nesterov else buf
        param.add_(d_p, alpha=-lr)
        if zero_grads:
            grad.zero_()


def _linear_loss_and_grads(
    X: Tensor, y: Tensor, weight: Tensor, bias: Optional[Tensor], reduction: int
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    # (N, D) @ (D, K) -> (N, K): residuals of the linear model on this batch
    residual = X @ weight.t() - y
    if bias is not None:
        residual = residual + bias
    # float64 sums, scaled in float64 and rounded once, as the compiled ops do
    loss = _blocked_sum(residual * residual, _LINEAR_FLUSH_ROWS).sum()
    scale = 2.0
    if reduction == MEAN:
        # no rows: a NaN mean (0 / 0, as the compiled ops give), so the step is not taken
        loss = loss / residual.numel()
        scale = 2.0 / residual.numel() if residual.numel() else float("nan")
    # (K, N) @ (N, D) -> (K, D)
    grad_weight = (_blocked_matmul_tn(residual, X, _LINEAR_FLUSH_ROWS) * scale).to(X.dtype)
    grad_bias = (_blocked_sum(residual, _LINEAR_FLUSH_ROWS) * scale).to(X.dtype) if bias is not None else None
    return loss.to(X.dtype), grad_weight, grad_bias


def _all_finite(tensors: Sequence[Optional[Tensor]]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t is not None)


def linear_step_(
    X: Tensor,
    y: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    weight_buf: Optional[Tensor],
    bias_buf: Optional[Tensor],
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
    first_step: bool,
    reduction: int,
) -> Tensor:
    """One fused step of a linear model ``y ≈ X @ weight.T + bias`` under MSE/SSE.

    Shapes: X (N, D), y (N, K), weight (K, D), bias (K,) or None; the momentum
    buffers are shaped like weight and bias, or None when ``momentum == 0``.
    Returns the loss at the parameters before the update.

    When the loss, or a parameter after the update, is not finite, the update is
    not kept: the parameters (and buffers) are left as they were, and the returned
    loss is non-finite (NaN when only the update overflowed).
    """
    loss, grad_weight, grad_bias = _linear_loss_and_grads(X, y, weight, bias, reduction)
    if not torch.isfinite(loss):
        return loss
    params: List[Tensor] = [weight]
    grads: List[Tensor] = [grad_weight]
    bufs: List[Tensor] = []
    if momentum != 0:
        bufs.append(weight_buf)
    if bias is not None:
        params.append(bias)
        grads.append(grad_bias)
        if momentum != 0:
            bufs.append(bias_buf)
    saved = [t.clone() for t in params + bufs]
    sgd_update_(params, grads, bufs, [first_step] * len(params), lr, momentum,
                dampening, nesterov, weight_decay, maximize, False)
    if not _all_finite(params):
        for live, old in zip(params + bufs, saved):
            live.copy_(old)
        return torch.full_like(loss, float("nan"))
    return loss


def linear_fit_(
    X: Tensor,
    y: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    weight_buf: Optional[Tensor],
    bias_buf: Optional[Tensor],
    lrs: Tensor,
    order: Optional[Tensor],
    batch_size: int,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
    first_step: bool,
    reduction: int,
) -> Tensor:
    """A whole fit of a linear model: ``len(lrs)`` epochs of fused steps.

    ``lrs`` (E,) float64 holds each epoch's learning rate. ``batch_size <= 0``
    means full batch. ``order`` is None (rows in their order) or an (E, N) int64
    tensor giving each epoch's row order; minibatches are consecutive slices of it,
    the last one possibly short.

    Returns (E,) epoch losses in X's dtype, each taken before that step's update:
    the loss itself for full batch; for minibatches the batches' losses combined
    as one loss over the epoch (weighted by batch size for the mean, summed for
    the sum). If a step meets a non-finite loss or update, the fit stops there,
    the parameters keep their last finite values, that epoch's entry is non-finite
    and every later entry is NaN.
    """
    epochs = lrs.numel()
    n = X.shape[0]
    batch = n if batch_size <= 0 else min(batch_size, n)
    losses = torch.full((epochs,), float("nan"), dtype=X.dtype, device=X.device)
    step_first = first_step
    for epoch in range(epochs):
        lr = float(lrs[epoch])
        rows = order[epoch] if order is not None else None
        total = torch.zeros((), dtype=torch.float64, device=X.device)
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            if rows is None:
                xb, yb = X[start:stop], y[start:stop]
            else:
                idx = rows[start:stop]
                xb, yb = X[idx], y[idx]
            loss = linear_step_(xb, yb, weight, bias, weight_buf, bias_buf, lr, momentum,
                                dampening, nesterov, weight_decay, maximize, step_first,
                                reduction)
            step_first = False
            if not torch.isfinite(loss):
                losses[epoch] = loss
                return losses
            weight_of_batch = (stop - start) / n if reduction == MEAN else 1.0
            total += loss.double() * weight_of_batch
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
