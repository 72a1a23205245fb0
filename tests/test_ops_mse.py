"""The compiled squared error against the reference and against F.mse_loss."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from pyfit.ops import _extension, _reference

ops, _reason = _extension.load()
pytestmark = pytest.mark.skipif(ops is None, reason=f"compiled pyfit ops not built: {_reason}")

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


@st.composite
def pairs(draw):
    """pred, target of a random shape (sizes 0, 1, odd ones), maybe non-contiguous."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 37), min_size=1, max_size=3))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    transpose = draw(st.booleans()) and len(shape) >= 2
    pred, target = (torch.randn(*shape, generator=gen, dtype=dtype) for _ in range(2))
    if transpose:
        pred, target = pred.transpose(0, -1), target.transpose(0, -1)
    return pred, target


@settings(max_examples=40, deadline=None)
@given(pairs(), st.sampled_from([0, 1]))
def test_forward_matches_reference(pair, reduction):
    pred, target = pair
    loss, grad = ops.mse_loss_fwd(pred, target, reduction)
    ref_loss, ref_grad = _reference.mse_loss_fwd(pred, target, reduction)
    torch.testing.assert_close(loss, ref_loss, equal_nan=True, **TOL[pred.dtype])
    torch.testing.assert_close(grad, ref_grad, **TOL[pred.dtype])


@settings(max_examples=30, deadline=None)
@given(pairs(), st.sampled_from([0, 1]))
def test_forward_backward_match_torch(pair, reduction):
    pred, target = (t.clone().requires_grad_() for t in pair)
    ours = ops.mse_loss(pred, target, reduction)
    ours.backward()
    p2, t2 = (t.detach().clone().requires_grad_() for t in pair)
    theirs = F.mse_loss(p2, t2, reduction=("mean", "sum")[reduction])
    theirs.backward()
    torch.testing.assert_close(ours, theirs, equal_nan=True, **TOL[pred.dtype])
    if pred.numel():
        torch.testing.assert_close(pred.grad, p2.grad, **TOL[pred.dtype])
        torch.testing.assert_close(target.grad, t2.grad, **TOL[pred.dtype])


def test_large_float32_sum_stays_close():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3_000_001, generator=gen), torch.randn(3_000_001, generator=gen)
    loss, _ = ops.mse_loss_fwd(pred, target, 0)
    exact = ((pred.double() - target.double()) ** 2).mean()
    assert abs(loss.item() - exact.item()) < 1e-6 * exact.item()


def test_gradcheck_float64():
    pred = torch.randn(13, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randn(13, 3, dtype=torch.float64, requires_grad=True)
    for reduction in (0, 1):
        assert torch.autograd.gradcheck(lambda p, t: ops.mse_loss(p, t, reduction), (pred, target))


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck(dtype):
    pred = torch.randn(5, 7, dtype=dtype, requires_grad=True)
    target = torch.randn(5, 7, dtype=dtype)
    torch.library.opcheck(torch.ops.pyfit.mse_loss_fwd.default, (pred, target, 0))
    torch.library.opcheck(torch.ops.pyfit.mse_loss_fwd.default, (pred.detach(), target, 1))


def test_compile_fullgraph():
    fn = torch.compile(lambda p, t: ops.mse_loss(p, t, 0) * 2, fullgraph=True, backend="eager")
    pred, target = torch.randn(40), torch.randn(40)
    torch.testing.assert_close(fn(pred, target), 2 * F.mse_loss(pred, target))


def test_deterministic_at_fixed_threads():
    pred, target = torch.randn(1_000_003), torch.randn(1_000_003)
    first = ops.mse_loss_fwd(pred, target, 1)[0]
    for _ in range(3):
        assert torch.equal(ops.mse_loss_fwd(pred, target, 1)[0], first)


def test_errors_name_expected_and_actual():
    with pytest.raises(RuntimeError, match="float32 or float64, got Int"):
        ops.mse_loss_fwd(torch.ones(3, dtype=torch.int32), torch.ones(3, dtype=torch.int32), 0)
    with pytest.raises(RuntimeError, match=r"target must have pred's shape \[3\], got \[4\]"):
        ops.mse_loss_fwd(torch.ones(3), torch.ones(4), 0)
    with pytest.raises(RuntimeError, match="dtype Float, got Double"):
        ops.mse_loss_fwd(torch.ones(3), torch.ones(3, dtype=torch.float64), 0)
    with pytest.raises(RuntimeError, match="reduction must be 0 .mean. or 1 .sum., got 2"):
        ops.mse_loss_fwd(torch.ones(3), torch.ones(3), 2)
