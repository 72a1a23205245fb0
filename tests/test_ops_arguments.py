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
from pyfit.ops import _backend, _checks, _extension, _settings

ops, _reason = _extension.load()
needs_compiled = pytest.mark.skipif(ops is None, reason=f"compiled pyfit ops not built: {_reason}")
BACKENDS = [pytest.param("cpp", marks=needs_compiled), "python"]
SGD_SETTINGS = _settings.settings_vector(_settings.SGD)
ADAM_SETTINGS = _settings.settings_vector(_settings.ADAM)


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


@pytest.mark.parametrize("expanded, name", [(1, r"params\[1\]"),
                                            (3, r"state\[1\] \(momentum_buffer of params\[1\]\)")])
def test_linear_refuses_an_expanded_param_before_writing_any(backend, expanded, name):
    X, y = torch.randn(10, 3), torch.randn(10, 2)
    tensors = _linear_state()
    tensors[expanded] = torch.zeros(1).expand(*tensors[expanded].shape)
    before = _snapshot(tensors)
    params, state = tensors[:2], tensors[2:]
    with pytest.raises(InputError, match=f"{name} is written by this op"):
        pyfit.ops.linear_step_(X, y, params, state, lr=0.1, settings={"momentum": 0.9})
    with pytest.raises(InputError, match=f"{name} is written by this op"):
        pyfit.ops.linear_fit_(X, y, params, state, lrs=[0.1, 0.1], settings={"momentum": 0.9}, batch_size=3)
    _assert_unchanged(tensors, before)


@needs_compiled
def test_compiled_linear_refuses_an_expanded_param_before_writing_any():
    X, y = torch.randn(10, 3), torch.randn(10, 2)
    weight, _, weight_buf, bias_buf = _linear_state()
    bias = torch.zeros(1).expand(2)
    tensors = [weight, bias, weight_buf, bias_buf]
    before = _snapshot(tensors)
    with pytest.raises(RuntimeError, match="written by this op"):
        ops.linear_fit_(X, y, [weight, bias], [weight_buf, bias_buf], torch.full((2,), 0.1, dtype=torch.float64),
                        None, 0, 0, 0, 1.0, 0, _settings.settings_vector(_settings.SGD, {"momentum": 0.9}), 0)
    _assert_unchanged(tensors, before)


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
        pyfit.ops.linear_fit_(X, y, state[:2], state[2:], lrs=[0.1, 0.1], order=order, batch_size=2,
                              settings={"momentum": 0.9})
    _assert_unchanged(state, before)


# --- the linear fit's own arguments: refused alike, before any write -----------------

def _adam_fit():
    """X (6, 3), y (6, 2), [weight, bias] and Adam's state [exp_avg, exp_avg_sq] per param."""
    X, y = torch.randn(6, 3), torch.randn(6, 2)
    params = [torch.randn(2, 3), torch.randn(2)]
    return X, y, params, [torch.randn_like(p).abs() for p in params for _ in range(2)]


def _assert_fit_refused(match, X, y, params, state, **kwargs):
    before = _snapshot(params + state)
    with pytest.raises(InputError, match=match):
        pyfit.ops.linear_fit_(X, y, params, state, lrs=[0.1, 0.1], **kwargs)
    _assert_unchanged(params + state, before)


def test_fit_refuses_a_state_of_another_layout(backend):
    X, y, params, state = _adam_fit()
    _assert_fit_refused(r"adam with these settings keeps \[exp_avg, exp_avg_sq\] for each param, param by "
                        r"param: state must hold 4 tensors for 2 params, got 3", X, y, params, state[:3],
                        optimizer="adam")
    _assert_fit_refused(r"keeps \[exp_avg, exp_avg_sq, max_exp_avg_sq\] .* hold 6 tensors for 2 params, got 4",
                        X, y, params, state, optimizer="adam", settings={"amsgrad": True})
    _assert_fit_refused(r"sgd with these settings keeps nothing for each param, .* hold 0 tensors for 2 "
                        r"params, got 4", X, y, params, state)
    _assert_fit_refused(r"rmsprop .* keeps \[square_avg, momentum_buffer, grad_avg\] .* got 4", X, y, params,
                        state, optimizer="rmsprop", settings={"momentum": 0.5, "centered": True})


@pytest.mark.parametrize("index, bad, message", [
    (1, torch.randn(2, 3, dtype=torch.float64),
     r"state\[1\] \(exp_avg_sq of params\[0\]\) must have params\[0\]'s dtype torch.float32, got torch.float64"),
    (2, torch.randn(3), r"state\[2\] \(exp_avg of params\[1\]\) must have params\[1\]'s shape \(2,\), got \(3,\)"),
    (0, torch.randn(3, 2), r"state\[0\] \(exp_avg of params\[0\]\) must have params\[0\]'s shape \(2, 3\)"),
], ids=["dtype", "bias-shape", "weight-shape"])
def test_fit_refuses_a_state_tensor_unlike_its_param(backend, index, bad, message):
    X, y, params, state = _adam_fit()
    state[index] = bad
    _assert_fit_refused(message, X, y, params, state, optimizer="adam")


@pytest.mark.parametrize("delta", [0.0, -1.0, float("nan"), float("inf")])
def test_fit_refuses_a_huber_delta_that_is_not_positive(backend, delta):
    X, y, params, state = _adam_fit()
    _assert_fit_refused(f"the huber loss needs a finite delta > 0, got {delta}", X, y, params, state,
                        loss="huber", delta=delta, optimizer="adam")


@pytest.mark.parametrize("optimizer, settings, message", [
    ("adam", {"betas": (1.0, 0.999)}, r"setting beta1 must be in \[0, 1\), got 1.0"),
    ("adam", {"eps": -1e-8}, "setting eps must be >= 0, got -1e-08"),
    ("sgd", {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
     "nesterov momentum needs a momentum > 0 and zero dampening"),
    ("rmsprop", {"alpha": float("nan")}, "setting alpha must be finite, got nan"),
    ("adagrad", {"lr_decay": -0.5}, "setting lr_decay must be >= 0, got -0.5"),
    ("adam", {"amsgrad": 2}, "setting amsgrad is a flag and must be 0 or 1, got 2.0"),
])
def test_fit_refuses_settings_torch_optim_refuses(backend, optimizer, settings, message):
    X, y, params, _ = _adam_fit()
    state = [torch.zeros_like(p) for p in params for _ in pyfit.ops.state_names(optimizer, settings)]
    _assert_fit_refused(message, X, y, params, state, optimizer=optimizer, settings=settings)


def test_fit_refuses_params_that_are_not_weight_and_bias(backend):
    X, y, params, _ = _adam_fit()
    _assert_fit_refused(r"params must be \[weight\] or \[weight, bias\], got 3 tensors", X, y,
                        params + [torch.randn(2)], [])
    _assert_fit_refused(r"params\[1\] \(the bias\) must have shape \(2,\), got \(3,\)", X, y,
                        [params[0], torch.randn(3)], [])
    _assert_fit_refused("step counts the steps already taken and must be >= 0, got -1", X, y, params, [],
                        step=-1)


def _positional(X, y, params, state, settings):
    """The op's positional arguments: two epochs of full-batch Adam on the squared error."""
    return (X, y, params, state, torch.full((2,), 0.1, dtype=torch.float64), None, 0, 0, 0, 1.0,
            _settings.ADAM, settings, 0)


@pytest.mark.parametrize("length", [12, 14])
def test_the_op_refuses_a_settings_vector_of_another_length(backend, length):
    # pyfit.ops builds the vector from a mapping; code that calls the op builds it itself
    X, y, params, state = _adam_fit()
    args = _positional(X, y, params, state, (ADAM_SETTINGS + [0.0, 0.0])[:length])
    before = _snapshot(params + state)
    with pytest.raises(InputError, match=f"settings must hold 13 values \\(momentum, dampening, .*, lr_decay\\), "
                                         f"got {length}"):
        pyfit.ops._run("linear_fit_", lambda: _checks.check_linear_fit(*args), *args)
    _assert_unchanged(params + state, before)


@pytest.mark.parametrize("field, value, message", [
    (7, 3, r"loss code must be one of 0 \(squared\), 1 \(absolute\), 2 \(huber\), got 3"),
    (8, 2, r"reduction code must be one of 0 \(mean\), 1 \(sum\), got 2"),
    (10, 4, r"optimizer code must be one of 0 \(sgd\), 1 \(adam\), 2 \(rmsprop\), 3 \(adagrad\), got 4"),
    (4, torch.full((2,), 0.1), "lrs must be a 1-D float64 CPU tensor"),
])
def test_the_op_refuses_unknown_codes(backend, field, value, message):
    X, y, params, state = _adam_fit()
    args = list(_positional(X, y, params, state, ADAM_SETTINGS))
    args[field] = value
    before = _snapshot(params + state)
    with pytest.raises(InputError, match=message):
        pyfit.ops._run("linear_fit_", lambda: _checks.check_linear_fit(*args), *args)
    _assert_unchanged(params + state, before)


# --- mixed devices reach the fake kernels: they refuse as the compiled kernels do ---

@needs_compiled
def test_fake_kernels_refuse_mixed_devices():
    meta = torch.empty(4, device="meta")
    params = [torch.randn(4), meta]
    with pytest.raises(InputError, match="one device: params\\[0\\] is on cpu, params\\[1\\] on meta"):
        torch.ops.pyfit.sgd_update_(params, [torch.randn(4), torch.randn(4)], [], [False, False],
                                    0.1, 0.0, 0.0, False, 0.0, False, False)
    X, y = torch.randn(5, 4), torch.randn(5, 1)
    lrs = torch.ones(1, dtype=torch.float64)
    with pytest.raises(InputError, match=r"X is on cpu, params\[0\] on meta"):
        torch.ops.pyfit.linear_fit_(X, y, [torch.empty(1, 4, device="meta")], [], lrs, None, 0, 0, 0, 1.0, 0,
                                    SGD_SETTINGS, 0)
    with pytest.raises(InputError, match="X is on cpu, y on meta"):
        torch.ops.pyfit.linear_fit_(X, y.to("meta"), [torch.zeros(1, 4)], [], lrs, None, 0, 0, 0, 1.0, 0,
                                    SGD_SETTINGS, 0)
    with pytest.raises(InputError, match=r"params\[0\] is on cpu, state\[0\] \(exp_avg of params\[0\]\) on meta"):
        torch.ops.pyfit.linear_fit_(X, y, [torch.zeros(1, 4)], [torch.empty(1, 4, device="meta"), torch.zeros(1, 4)],
                                    lrs, None, 0, 0, 0, 1.0, 1, ADAM_SETTINGS, 0)
    with pytest.raises(InputError, match="pred is on cpu, target on meta"):
        torch.ops.pyfit.mse_loss_fwd(torch.randn(4), meta, 0)


@needs_compiled
def test_fake_kernels_check_what_the_compiled_kernels_check():
    X, y = torch.randn(5, 4, device="meta"), torch.randn(5, 2, device="meta")
    lrs = torch.ones(3, dtype=torch.float64)
    with pytest.raises(InputError, match=r"params\[0\] \(the weight\) must have shape \(K, 4\)"):
        torch.ops.pyfit.linear_fit_(X, y, [torch.empty(2, 3, device="meta")], [], lrs, None, 0, 0, 0, 1.0, 0,
                                    SGD_SETTINGS, 0)
    with pytest.raises(InputError, match="settings must hold 13 values"):
        torch.ops.pyfit.linear_fit_(X, y, [torch.empty(2, 4, device="meta")], [], lrs, None, 0, 0, 0, 1.0, 0,
                                    SGD_SETTINGS[:12], 0)
    with pytest.raises(InputError, match="sgd_update_ takes one grad"):
        torch.ops.pyfit.sgd_update_([torch.empty(2, device="meta")], [], [], [False],
                                    0.1, 0.0, 0.0, False, 0.0, False, False)
    params = [torch.empty(2, 4, device="meta"), torch.empty(2, device="meta")]
    state = [torch.empty_like(p) for p in params for _ in range(2)]
    losses = torch.ops.pyfit.linear_fit_(X, y, params, state, lrs, None, 2, 2, 1, 0.5, 1, ADAM_SETTINGS, 4)
    assert losses.device.type == "meta" and losses.shape == (3,)


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
        pyfit.ops.linear_step_(X, y, [w], lr=0.1)
    with pytest.raises(InputError, match=message):
        pyfit.ops.linear_fit_(X, y, [w], lrs=[0.1])
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
