"""CUDA ops against the reference on the same inputs (skipped without a GPU)."""

import pytest
import torch

from pyfit.ops import _extension, _reference

ops, _reason = _extension.load()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ops is None, reason=f"compiled pyfit ops not built: {_reason}"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-11),
       torch.float16: dict(rtol=1e-2, atol=1e-2), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [0, 1, 1000, 1_000_003])
def test_mse(dtype, n):
    pred, target = torch.randn(n, dtype=dtype), torch.randn(n, dtype=dtype)
    for reduction in (0, 1):
        loss, grad = ops.mse_loss_fwd(pred.cuda(), target.cuda(), reduction)
        ref_loss, ref_grad = _reference.mse_loss_fwd(pred, target, reduction)
        torch.testing.assert_close(loss.cpu(), ref_loss, equal_nan=True, **TOL[dtype])
        torch.testing.assert_close(grad.cpu(), ref_grad, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_sgd(dtype):
    params = [torch.randn(n, dtype=dtype) for n in (1, 7, 0, 50_001)]
    grads = [torch.randn_like(p) for p in params]
    bufs = [torch.randn_like(p) for p in params]
    first = [True, False, False, True]
    mine = [[t.cuda() for t in group] for group in (params, grads, bufs)]
    ref = [[t.float().clone() for t in group] for group in (params, grads, bufs)]
    args = (first, 0.1, 0.9, 0.1, True, 0.01, True, True)
    ops.sgd_update_(*mine, *args)
    _reference.sgd_update_(*ref, *args)
    for a, b in zip(sum(mine, []), sum(ref, [])):
        torch.testing.assert_close(a.cpu().float(), b, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch_size", [0, 33])
def test_linear_fit(dtype, batch_size):
    X, y = torch.randn(1000, 16, dtype=dtype), torch.randn(1000, 2, dtype=dtype)
    state = [torch.zeros(2, 16, dtype=dtype), torch.zeros(2, dtype=dtype),
             torch.zeros(2, 16, dtype=dtype), torch.zeros(2, dtype=dtype)]
    lrs = torch.full((3,), 0.01, dtype=torch.float64)
    order = torch.stack([torch.randperm(1000) for _ in range(3)]) if batch_size else None
    mine = [t.cuda() for t in state]
    ref = [t.clone() for t in state]
    args = (lrs, order, batch_size, 0.9, 0.0, False, 0.01, False, True, 0)
    losses = ops.linear_fit_(X.cuda(), y.cuda(), *mine, *args)
    ref_losses = _reference.linear_fit_(X, y, *ref, *args)
    torch.testing.assert_close(losses.cpu(), ref_losses, **TOL[dtype])
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a.cpu(), b, **TOL[dtype])
    loss = ops.linear_step_(X.cuda(), y.cuda(), *mine, 0.01, 0.9, 0.0, False, 0.0, False, False, 0)
    ref_loss = _reference.linear_step_(X, y, *ref, 0.01, 0.9, 0.0, False, 0.0, False, False, 0)
    torch.testing.assert_close(loss.cpu(), ref_loss, **TOL[dtype])
