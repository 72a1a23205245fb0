"""Every op checks every argument before it writes anything, the same way on every backend.

Bad arguments (an expanded tensor to write into, mixed devices, half precision,
mismatched shapes) are refused with one InputError from pyfit.ops on the compiled
and the reference backend alike, and no tensor the caller passed has changed.
The compiled kernels, reached directly, refuse them too, before any write; so do
the fake kernels that torch.compile and meta tensors reach.
"""

import pytest
import torch
import torch.nn.functional as F

import pyfit
from pyfit.errors import InputError
from pyfit.ops import _backend, _extension

ops, _reason = _extension.load()
needs_compiled = pytest.mark.skipif(ops is None, reason=f"compiled pyfit ops not built: {_reason}")
BACKENDS = [pytest.param("cpp", marks=needs_compiled), "python"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    previous = _backend._selected
    pyfit.ops.set_backend(request.param)
    yield request.param
    _backend._selected = previous


def _snapshot(tensors):
    return [None if t is None else t.clone() for t in tensors]


def _assert_unchanged(tensors, before):
    for t, old in zip(tensors, before):
        if t is not None:
            assert torch.equal(t, old), "a tensor changed although the call was refused"


def _linear_state(k=2, d=3):
    """A non-contiguous weight (copied back on success) and contiguous buffers."""
    weight = torch.randn(d, k).t()
    return [weight, torch.randn(k), torch.randn(k, d), torch.randn(k)]


# --- nothing is written before a refusal -------------------------------------------

def test_sgd_refuses_an_expanded_param_before_writing_any(backend):
    params = [torch.randn(3, 4).t(), torch.zeros(1).expand(5)]  # the first is copied back
    grads = [torch.randn(4, 3), torch.randn(5)]
    before = _snapshot(params + grads)
    with pytest.raises(InputError, match=r"params\[1\] is written by this op but several of its "
                                         r"elements share memory \(stride \(0,\)"):
        pyfit.ops.sgd_update_(params, grads, [None, None], lr=0.1, momentum=0.9, zero_grads=True)
    _assert_unchanged(params + grads, before)


@needs_compiled
def test_compiled_sgd_refuses_an_expanded_buffer_before_writing_any():
    params, grads = [torch.randn(3, 4).t(), torch.randn(5)], [torch.randn(4, 3), torch.randn(5)]
    bufs = [torch.randn(3, 4).t(), torch.zeros(1).expand(5)]
    before = _snapshot(params + grads + bufs)
    with pytest.raises(RuntimeError, match=r"momentum_buffers\[1\] is written by this op"):
        ops.sgd_update_(params, grads, bufs, [False, False], 0.1, 0.9, 0.0, False, 0.0, False, True)
    _assert_unchanged(params + grads + bufs, before)


@pytest.mark.parametrize("expanded", ["bias", "weight_buf", "bias_buf"])
def test_linear_refuses_an_expanded_param_before_writing_any(backend, expanded):
    X, y = torch.randn(10, 3), torch.randn(10, 2)
    state = dict(zip(["weight", "bias", "weight_buf", "bias_buf"], _linear_state()))
    state[expanded] = torch.zeros(1).expand(*state[expanded].shape)
    before = _snapshot(list(state.values()))
    with pytest.raises(InputError, match=f"{expanded} is written by this op"):
        pyfit.ops.linear_step_(X, y, *state.values(), lr=0.1, momentum=0.9)
    with pytest.raises(InputError, match=f"{expanded} is written by this op"):
        pyfit.ops.linear_fit_(X, y, *state.values(), lrs=[0.1, 0.1], momentum=0.9, batch_size=3)
    _assert_unchanged(list(state.values()), before)


@needs_compiled
def test_compiled_linear_refuses_an_expanded_param_before_writing_any():
    X, y = torch.randn(10, 3), torch.randn(10, 2)
    weight, _, weight_buf, bias_buf = _linear_state()
    bias = torch.zeros(1).expand(2)
    state = [weight, bias, weight_buf, bias_buf]
    before = _snapshot(state)
    with pytest.raises(RuntimeError, match="bias is written by this op"):
        ops.linear_step_(X, y, *state, 0.1, 0.9, 0.0, False, 0.0, False, True, 0)
    with pytest.raises(RuntimeError, match="bias is written by this op"):
        ops.linear_fit_(X, y, *state, torch.full((2,), 0.1, dtype=torch.float64), None, 0,
                        0.9, 0.0, False, 0.0, False, True, 0)
    _assert_unchanged(state, before)


def test_sgd_refuses_a_bad_grad_before_writing_any(backend):
    params = [torch.randn(4), torch.randn(3)]
    grads = [torch.randn(4), torch.randn(2)]  # the second has the wrong shape
    before = _snapshot(params)
    with pytest.raises(InputError, match=r"grads\[1\] must have params\[1\]'s shape \(3,\), got \(2,\)"):
        pyfit.ops.sgd_update_(params, grads, [None, None], lr=0.1)
    _assert_unchanged(params, before)


def test_fit_refuses_out_of_range_order_before_writing(backend):
    X, y = torch.randn(6, 3), torch.randn(6, 2)
    state = _linear_state()
    before = _snapshot(state)
    order = torch.stack([torch.randperm(6), torch.tensor([0, 1, 2, 3, 4, 6])])
    with pytest.raises(InputError, match=r"order must hold row indices in \[0, 6\), got values in \[0, 6\]"):
        pyfit.ops.linear_fit_(X, y, *state, lrs=[0.1, 0.1], order=order, batch_size=2, momentum=0.9)
    _assert_unchanged(state, before)


# --- mixed devices reach the fake kernels: they refuse as the compiled kernels do ---

@needs_compiled
def test_fake_kernels_refuse_mixed_devices():
    meta = torch.empty(4, device="meta")
    params = [torch.randn(4), meta]
    with pytest.raises(InputError, match="one device: params\\[0\\] is on cpu, params\\[1\\] on meta"):
        torch.ops.pyfit.sgd_update_(params, [torch.randn(4), torch.randn(4)], [], [False, False],
                                    0.1, 0.0, 0.0, False, 0.0, False, False)
    X, y = torch.randn(5, 4), torch.randn(5, 1)
    with pytest.raises(InputError, match="X is on cpu, weight on meta"):
        torch.ops.pyfit.linear_step_(X, y, torch.empty(1, 4, device="meta"), None, None, None,
                                     0.1, 0.0, 0.0, False, 0.0, False, True, 0)
    with pytest.raises(InputError, match="X is on cpu, y on meta"):
        torch.ops.pyfit.linear_fit_(X, y.to("meta"), torch.zeros(1, 4), None, None, None,
                                    torch.ones(1, dtype=torch.float64), None, 0,
                                    0.0, 0.0, False, 0.0, False, True, 0)
    with pytest.raises(InputError, match="pred is on cpu, target on meta"):
        torch.ops.pyfit.mse_loss_fwd(torch.randn(4), meta, 0)


@needs_compiled
def test_fake_kernels_check_what_the_compiled_kernels_check():
    X, y = torch.randn(5, 4, device="meta"), torch.randn(5, 2, device="meta")
    with pytest.raises(InputError, match=r"weight must have shape \(K, 4\)"):
        torch.ops.pyfit.linear_step_(X, y, torch.empty(2, 3, device="meta"), None, None, None,
                                     0.1, 0.0, 0.0, False, 0.0, False, True, 0)
    with pytest.raises(InputError, match="sgd_update_ takes one grad"):
        torch.ops.pyfit.sgd_update_([torch.empty(2, device="meta")], [], [], [False],
                                    0.1, 0.0, 0.0, False, 0.0, False, False)
    loss = torch.ops.pyfit.linear_step_(X, y, torch.empty(2, 4, device="meta"), None, None, None,
                                        0.1, 0.0, 0.0, False, 0.0, False, True, 0)
    assert loss.device.type == "meta" and loss.shape == ()


# --- one dtype rule on every backend ------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_alike(backend, dtype):
    message = f"must be float32 or float64, got {dtype}: pyfit's fused ops compute in these two only"
    p, g = torch.randn(4, dtype=dtype), torch.randn(4, dtype=dtype)
    before = p.clone()
    with pytest.raises(InputError, match=message):
        pyfit.ops.sgd_update_([p], [g], [None], lr=0.1)
    assert torch.equal(p, before)
    with pytest.raises(InputError, match=message):
        pyfit.ops.mse_loss(p, g)
    X, y, w = torch.randn(5, 4, dtype=dtype), torch.randn(5, 1, dtype=dtype), torch.zeros(1, 4, dtype=dtype)
    with pytest.raises(InputError, match=message):
        pyfit.ops.linear_step_(X, y, w, lr=0.1)
    with pytest.raises(InputError, match=message):
        pyfit.ops.linear_fit_(X, y, w, lrs=[0.1])
    assert torch.equal(w, torch.zeros(1, 4, dtype=dtype))


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_kernels_refuse_half_precision(dtype):
    p = torch.randn(4, dtype=dtype)
    with pytest.raises(RuntimeError, match="params\\[0\\] must be float32 or float64"):
        ops.sgd_update_([p], [p.clone()], [], [False], 0.1, 0.0, 0.0, False, 0.0, False, False)


@pytest.mark.parametrize("name, reduction", [("mse", "mean"), ("sse", "sum")])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_squared_error_losses_take_half_precision(backend, name, reduction, dtype):
    pred = torch.randn(33, dtype=dtype, requires_grad=True)
    target = torch.randn(33, dtype=dtype)
    loss = pyfit.build_loss(name)(pred, target)
    loss.backward()
    expected_pred = pred.detach().clone().requires_grad_()
    expected = F.mse_loss(expected_pred, target, reduction=reduction)
    expected.backward()
    assert loss.dtype == dtype
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(pred.grad, expected_pred.grad)


def test_sgd_takes_mixed_float32_and_float64_params(backend):
    params = [torch.randn(5), torch.randn(3, 2, dtype=torch.float64)]
    grads = [torch.randn(5), torch.randn(3, 2, dtype=torch.float64)]
    theirs = [p.clone().requires_grad_() for p in params]
    for t, g in zip(theirs, grads):
        t.grad = g.clone()
    torch.optim.SGD(theirs, lr=0.1, momentum=0.9, weight_decay=0.01).step()
    pyfit.ops.sgd_update_(params, grads, [None, None], lr=0.1, momentum=0.9, weight_decay=0.01)
    for ours, t in zip(params, theirs):
        torch.testing.assert_close(ours, t.detach())


def test_zero_rows_with_sum_reduction_steps_on_decay_alone(backend):
    X, y = torch.empty(0, 3, dtype=torch.float64), torch.empty(0, 1, dtype=torch.float64)
    w = torch.ones(1, 3, dtype=torch.float64)
    loss = pyfit.ops.linear_step_(X, y, w, lr=0.5, weight_decay=0.1, reduction="sum")
    assert loss.item() == 0.0
    torch.testing.assert_close(w, torch.full((1, 3), 0.95, dtype=torch.float64))


@needs_compiled
def test_zero_rows_with_mean_reduction_is_a_nan_loss_and_no_step():
    X, y = torch.empty(0, 3, dtype=torch.float64), torch.empty(0, 1, dtype=torch.float64)
    w = torch.ones(1, 3, dtype=torch.float64)
    assert torch.isnan(ops.linear_step_(X, y, w, None, None, None, 0.5, 0.0, 0.0, False, 0.1,
                                        False, True, 0))
    assert torch.equal(w, torch.ones(1, 3, dtype=torch.float64))


# --- the compiled mse backward hands its gradient over only where that is safe -------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_backward_three_times_with_retained_graph(backend, reduction):
    pred = torch.randn(7, 3, requires_grad=True)
    target = torch.randn(7, 3, requires_grad=True)
    p2, t2 = (t.detach().clone().requires_grad_() for t in (pred, target))
    ours = pyfit.ops.mse_loss(pred, target, reduction)
    theirs = F.mse_loss(p2, t2, reduction=reduction)
    for _ in range(3):
        ours.backward(retain_graph=True)
        theirs.backward(retain_graph=True)
        torch.testing.assert_close(pred.grad, p2.grad)
        torch.testing.assert_close(target.grad, t2.grad)
    (ours * 3).backward()
    (theirs * 3).backward()
    torch.testing.assert_close(pred.grad, p2.grad)


@needs_compiled
def test_mse_double_backward_matches_torch():
    pred = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    target = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    for reduction in (0, 1):
        assert torch.autograd.gradgradcheck(lambda p, t: ops.mse_loss(p, t, reduction), (pred, target))
