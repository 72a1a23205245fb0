"""The CUDA ops against the CPU kernels and an independent oracle on the same random inputs.

Skipped without a GPU (benchmarks/gpu_check.sh runs them on one). Inputs include
non-contiguous tensors, mixed float32/float64 lists, minibatch orders and sizes at
the kernels' limits; every result is compared with the compiled CPU kernel and with
the pure-PyTorch reference (mse, sgd) or plain autograd with torch.optim's own
optimizers (the linear fit, every loss and optimizer), and refusals must match the CPU's.
"""

import pytest
import torch
import torch.nn.functional as F

import pyfit
from pyfit.errors import InputError
from pyfit.ops import _backend, _extension, _reference

ops, _reason = _extension.load()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ops is None, reason=f"compiled pyfit ops not built: {_reason}"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-11)}
DTYPES = [torch.float32, torch.float64]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def _cuda(tensors):
    """Copies on the GPU with the same strides (non-contiguous stays non-contiguous)."""
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        copy = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cuda")
        copy.copy_(t)
        out.append(copy)
    return out


def _clones(tensors):
    return [None if t is None else t.clone() for t in tensors]


def _assert_all_close(cuda, cpu, ref):
    for a, b, c in zip(cuda, cpu, ref):
        if a is None:
            continue
        torch.testing.assert_close(a.cpu(), b, equal_nan=True, **TOL[b.dtype])
        torch.testing.assert_close(b, c, equal_nan=True, **TOL[b.dtype])


# --- squared error ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (1000,), (1_000_003,), (37, 29)])
@pytest.mark.parametrize("transpose", [False, True])
def test_mse_matches_cpu_and_reference(gen, dtype, shape, transpose):
    pred, target = (torch.randn(*shape, generator=gen, dtype=dtype) for _ in range(2))
    if transpose and len(shape) == 2:
        pred, target = pred.t(), target.t()
    for reduction in (0, 1):
        cuda = ops.mse_loss_fwd(*_cuda([pred, target]), reduction)
        cpu = ops.mse_loss_fwd(pred, target, reduction)
        ref = _reference.mse_loss_fwd(pred, target, reduction)
        _assert_all_close(cuda, cpu, ref)


def test_mse_backward_three_times_with_retained_graph(gen):
    pred = torch.randn(50, generator=gen).cuda().requires_grad_()
    target = torch.randn(50, generator=gen).cuda()
    p2 = pred.detach().clone().requires_grad_()
    ours, theirs = ops.mse_loss(pred, target, 0), F.mse_loss(p2, target)
    for _ in range(3):
        ours.backward(retain_graph=True)
        theirs.backward(retain_graph=True)
        torch.testing.assert_close(pred.grad, p2.grad)


# --- fused SGD ---------------------------------------------------------------------------

@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("zero_grads", [False, True])
def test_sgd_matches_cpu_and_reference(gen, momentum, nesterov, zero_grads):
    # mixed dtypes, empty and non-contiguous tensors, one large enough for many blocks
    shapes = [(1,), (7, 3), (0,), (50_001,), (33, 8)]
    dtypes = [torch.float32, torch.float64, torch.float32, torch.float32, torch.float64]
    params = [torch.randn(*s, generator=gen, dtype=d) for s, d in zip(shapes, dtypes)]
    params[1], params[4] = params[1].t(), params[4].t()
    grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    bufs = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params] if momentum else []
    first = [True, False, False, True, False]
    args = (first, 0.1, momentum, 0.1 if not nesterov else 0.0, nesterov, 0.01, True, zero_grads)
    cuda = [_cuda(group) for group in (params, grads, bufs)]
    cpu = [_clones(group) for group in (params, grads, bufs)]
    ref = [_clones(group) for group in (params, grads, bufs)]
    ops.sgd_update_(*cuda, *args)
    ops.sgd_update_(*cpu, *args)
    _reference.sgd_update_(*ref, *args)
    _assert_all_close(sum(cuda, []), sum(cpu, []), sum(ref, []))
    assert not cuda[0][1].is_contiguous()  # updated in place through its copy


# --- the fused linear fit: every loss and optimizer ------------------------------------
# CUDA against the compiled CPU kernel (tight) and against plain torch autograd with
# torch.optim's own optimizer (the oracle), on random problems.

SETTING_NAMES = ("momentum", "dampening", "nesterov", "weight_decay", "maximize", "beta1", "beta2",
                 "eps", "amsgrad", "decoupled_weight_decay", "alpha", "centered", "lr_decay")
# loss name: (code, reduction, delta, torch's loss)
LOSSES = {
    "mse": (0, 0, 1.0, lambda p, t: F.mse_loss(p, t)),
    "sse": (0, 1, 1.0, lambda p, t: F.mse_loss(p, t, reduction="sum")),
    "mae": (1, 0, 1.0, lambda p, t: F.l1_loss(p, t)),
    "huber": (2, 0, 0.5, lambda p, t: F.huber_loss(p, t, delta=0.5)),
}
# name: (op code, torch class, its arguments, state keys per param in the op's order)
OPTIMIZERS = {
    "sgd": (0, torch.optim.SGD, dict(momentum=0.9, nesterov=True, weight_decay=0.01), ["momentum_buffer"]),
    "adam": (1, torch.optim.Adam, dict(amsgrad=True, weight_decay=0.01), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
    "adamw": (1, torch.optim.AdamW, dict(weight_decay=0.1, betas=(0.8, 0.95)), ["exp_avg", "exp_avg_sq"]),
    "rmsprop": (2, torch.optim.RMSprop, dict(momentum=0.5, centered=True, alpha=0.9),
                ["square_avg", "momentum_buffer", "grad_avg"]),
    "adagrad": (3, torch.optim.Adagrad, dict(lr_decay=0.01, initial_accumulator_value=0.1), ["sum"]),
}


def _settings(optimizer):
    """The op's settings vector from the torch optimizer's param group."""
    group = dict(optimizer.param_groups[0])
    group["beta1"], group["beta2"] = group.pop("betas", (0.0, 0.0))
    group.setdefault("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW))
    return [float(group.get(name, 0.0) or 0.0) for name in SETTING_NAMES]


def _state(optimizer, params, keys, like):
    """The optimizer's state tensors, param-major, as the op takes them (zeros before a step)."""
    found = [optimizer.state[p].get(key) for p in params for key in keys]
    return [torch.zeros_like(like[i // len(keys)]) if t is None else t.detach().clone()
            for i, t in enumerate(found)]


def _torch_fit(X, y, params, optimizer, loss_fn, lrs, order, batch, weights):
    """Plain autograd epochs with torch's optimizer; each epoch's loss as the op reports it."""
    n, losses = X.shape[0], []
    for e, lr in enumerate(lrs.tolist()):
        optimizer.param_groups[0]["lr"] = lr
        rows_of_epoch = order[e] if order is not None else torch.arange(n)
        total = 0.0
        for start in range(0, n, batch):
            rows = rows_of_epoch[start:start + batch]
            optimizer.zero_grad()
            loss = loss_fn(X[rows] @ params[0].T + (params[1] if len(params) > 1 else 0), y[rows])
            loss.backward()
            optimizer.step()
            total += loss.item() * (len(rows) / n if weights else 1.0)
        losses.append(total)
    return torch.tensor(losses, dtype=X.dtype)


def _linear_problem(gen, dtype, n, d, k, bias, contiguous):
    X = torch.randn(n, d, generator=gen, dtype=dtype) if contiguous else \
        torch.randn(d, n, generator=gen, dtype=dtype).t()
    y = torch.randn(n, k, generator=gen, dtype=dtype)
    weight = torch.randn(k, d, generator=gen, dtype=dtype) if contiguous else \
        torch.randn(d, k, generator=gen, dtype=dtype).t()
    params = [weight] + ([torch.randn(k, generator=gen, dtype=dtype)] if bias else [])
    return X, y, params


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("minibatch", [False, True])
@pytest.mark.parametrize("contiguous", [True, False])
def test_linear_fit_matches_cpu_kernel_and_torch_optim(gen, loss, optimizer, minibatch, contiguous):
    code, red, delta, loss_fn = LOSSES[loss]
    opt_code, opt_class, kwargs, keys = OPTIMIZERS[optimizer]
    n, epochs, batch = 300, 12, (64 if minibatch else 300)
    X, y, params = _linear_problem(gen, torch.float64, n, 5, 2, bias=not minibatch or contiguous,
                                   contiguous=contiguous)
    lrs = torch.linspace(0.02, 0.005, epochs, dtype=torch.float64) / (n if loss == "sse" else 1)
    order = torch.stack([torch.randperm(n, generator=gen) for _ in range(epochs)]) if minibatch else None
    leaves = [p.clone().requires_grad_() for p in params]
    torch_opt = opt_class(leaves, lr=0.01, **kwargs)
    settings, state = _settings(torch_opt), _state(torch_opt, leaves, keys, params)
    args = (lrs, order, batch if minibatch else 0, code, red, delta, opt_code, settings, 0)
    on_cuda = [_cuda(params), _cuda(state)]
    on_cpu = [_clones(params), _clones(state)]
    cuda_losses = torch.ops.pyfit.linear_fit_(*_cuda([X, y]), *on_cuda, *args)
    cpu_losses = torch.ops.pyfit.linear_fit_(X, y, *on_cpu, *args)
    torch_losses = _torch_fit(X, y, leaves, torch_opt, loss_fn, lrs, order, batch, weights=red == 0)
    oracle = [torch_losses] + [p.detach() for p in leaves] + _state(torch_opt, leaves, keys, params)
    _assert_all_close([cuda_losses] + sum(on_cuda, []), [cpu_losses] + sum(on_cpu, []), oracle)
    assert contiguous or not on_cuda[0][0].is_contiguous()  # updated in place through its copy


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("n, d, k", [(1, 1, 1), (5000, 16, 1), (2500, 37, 3), (100, 5, 64)])
def test_linear_fit_float32_matches_cpu_kernel(gen, loss, optimizer, n, d, k):
    code, red, delta, _ = LOSSES[loss]
    opt_code, opt_class, kwargs, keys = OPTIMIZERS[optimizer]
    X, y, params = _linear_problem(gen, torch.float32, n, d, k, bias=True, contiguous=True)
    torch_opt = opt_class([p.clone().requires_grad_() for p in params], lr=0.01, **kwargs)
    # state as after some steps (RMSprop's centered variance square_avg - grad_avg^2 > 0)
    state = [torch.rand(p.shape, generator=gen) * 0.1 + 0.05 for p in params for _ in keys]
    lrs = torch.full((3,), 1e-3, dtype=torch.float64) / (n if loss == "sse" else 1)
    args = (lrs, None, 0, code, red, delta, opt_code, _settings(torch_opt), 7)
    on_cuda, on_cpu = [_cuda(params), _cuda(state)], [_clones(params), _clones(state)]
    cuda_losses = torch.ops.pyfit.linear_fit_(*_cuda([X, y]), *on_cuda, *args)
    cpu_losses = torch.ops.pyfit.linear_fit_(X, y, *on_cpu, *args)
    for a, b in zip([cuda_losses] + sum(on_cuda, []), [cpu_losses] + sum(on_cpu, [])):
        torch.testing.assert_close(a.cpu(), b, **TOL[torch.float32])


def test_linear_fit_takes_an_order_on_the_device(gen):
    X, y, params = _linear_problem(gen, torch.float64, 200, 4, 1, bias=True, contiguous=True)
    lrs = torch.full((2,), 0.01, dtype=torch.float64)
    order = torch.stack([torch.randperm(200, generator=gen) for _ in range(2)])
    sgd = [0.9] + [0.0] * 12
    on_device, on_cpu = _cuda(params), _cuda(params)
    state_a, state_b = _cuda([torch.zeros_like(p) for p in params]), _cuda([torch.zeros_like(p) for p in params])
    a = torch.ops.pyfit.linear_fit_(*_cuda([X, y]), on_device, state_a, lrs, order.cuda(), 16, 0, 0, 1.0, 0, sgd, 0)
    b = torch.ops.pyfit.linear_fit_(*_cuda([X, y]), on_cpu, state_b, lrs, order, 16, 0, 0, 1.0, 0, sgd, 0)
    assert torch.equal(a, b) and all(torch.equal(s, t) for s, t in zip(on_device + state_a, on_cpu + state_b))


def test_linear_large_model_keeps_scratch_bounded(gen):
    # K*D = 1.2M: unbounded per-block partials would take (blocks+1)*P doubles
    X, y, params = _linear_problem(gen, torch.float64, 64, 300_000, 4, bias=True, contiguous=True)
    adam = [0.0] * 13
    adam[5:8] = [0.9, 0.999, 1e-8]
    state = [torch.zeros_like(p) for p in params for _ in range(2)]
    args = (torch.full((1,), 1e-3, dtype=torch.float64), None, 0, 0, 1, 1.0, 1, adam, 0)
    on_cuda, on_cpu = [_cuda(params), _cuda(state)], [_clones(params), _clones(state)]
    X_cuda, y_cuda = _cuda([X, y])
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    cuda = torch.ops.pyfit.linear_fit_(X_cuda, y_cuda, *on_cuda, *args)
    extra = torch.cuda.max_memory_allocated() - before
    cpu = torch.ops.pyfit.linear_fit_(X, y, *on_cpu, *args)
    for a, b in zip([cuda] + sum(on_cuda, []), [cpu] + sum(on_cpu, [])):
        torch.testing.assert_close(a.cpu(), b, **TOL[torch.float64])
    # partials bounded by 32 MB, plus the update's scratch: three copies of the params
    assert extra < 200e6, f"the step took {extra / 1e6:.0f} MB of scratch"


def test_linear_fit_stops_and_restores_as_on_the_cpu(gen):
    # an lr that overflows float32 within a few epochs: the failing step is undone
    X, y, params = _linear_problem(gen, torch.float32, 100, 3, 1, bias=True, contiguous=True)
    sgd = [0.9] + [0.0] * 12
    state = [torch.zeros_like(p) for p in params]
    args = (torch.full((30,), 1e3, dtype=torch.float64), None, 0, 0, 1, 1.0, 0, sgd, 0)
    on_cuda, on_cpu = [_cuda(params), _cuda(state)], [_clones(params), _clones(state)]
    cuda = torch.ops.pyfit.linear_fit_(*_cuda([X, y]), *on_cuda, *args)
    cpu = torch.ops.pyfit.linear_fit_(X, y, *on_cpu, *args)
    assert not torch.isfinite(cpu[-1]) and torch.isfinite(cpu[0])
    torch.testing.assert_close(cuda.cpu(), cpu, equal_nan=True, **TOL[torch.float32])
    for a, b in zip(sum(on_cuda, []), sum(on_cpu, [])):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a.cpu(), b, **TOL[torch.float32])


# --- refusals: the same as on the CPU, before anything is written ----------------------

def test_too_many_outputs_is_a_clear_error_before_any_write():
    X, y = torch.randn(4, 2, device="cuda"), torch.randn(4, 6145, device="cuda")
    w = torch.zeros(6145, 2, device="cuda")
    lrs = torch.full((1,), 0.1, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="takes at most 6144 outputs .K, rows of weight., got 6145"):
        torch.ops.pyfit.linear_fit_(X, y, [w], [], lrs, None, 0, 0, 0, 1.0, 0, [0.0] * 13, 0)
    assert torch.equal(w, torch.zeros_like(w))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_linear_fit_refusals_match_the_cpu_and_write_nothing(device):
    X, y = torch.randn(4, 2, device=device), torch.randn(4, 1, device=device)
    w, b = torch.ones(1, 2, device=device), torch.ones(1, device=device)
    lrs = torch.full((1,), 0.1, dtype=torch.float64)
    adam = [0.0] * 13
    adam[5:8] = [0.9, 0.999, 1e-8]
    with pytest.raises(RuntimeError, match=r"state must hold 2 tensor\(s\) per param for adam "
                       r"\(exp_avg, exp_avg_sq\), 4 for 2 param\(s\), got 3"):
        torch.ops.pyfit.linear_fit_(X, y, [w, b], [torch.zeros_like(w)] * 2 + [torch.zeros_like(b)],
                                    lrs, None, 0, 0, 0, 1.0, 1, adam, 0)
    with pytest.raises(RuntimeError, match="needs at least one row"):
        torch.ops.pyfit.linear_fit_(X[:0], y[:0], [w, b], [], lrs, None, 0, 0, 0, 1.0, 0, [0.0] * 13, 0)
    assert torch.equal(w, torch.ones_like(w)) and torch.equal(b, torch.ones_like(b))


def test_expanded_tensor_is_refused_before_any_write():
    params = [torch.ones(3, 4, device="cuda").t(), torch.zeros(1, device="cuda").expand(5)]
    grads = [torch.ones(4, 3, device="cuda"), torch.ones(5, device="cuda")]
    with pytest.raises(RuntimeError, match=r"params\[1\] is written by this op"):
        ops.sgd_update_(params, grads, [], [False, False], 0.1, 0.0, 0.0, False, 0.0, False, False)
    assert torch.equal(params[0], torch.ones(4, 3, device="cuda"))


def test_mixed_devices_are_a_clear_error():
    with pytest.raises(RuntimeError, match="one device: params\\[0\\] is on cuda:0, params\\[1\\] on cpu"):
        torch.ops.pyfit.sgd_update_([torch.ones(2, device="cuda"), torch.ones(2)],
                                    [torch.ones(2, device="cuda"), torch.ones(2)], [], [False, False],
                                    0.1, 0.0, 0.0, False, 0.0, False, False)
    with pytest.raises(RuntimeError, match=r"X is on cpu, params\[0\] on cuda:0"):
        torch.ops.pyfit.linear_fit_(torch.ones(3, 2), torch.ones(3, 1), [torch.zeros(1, 2, device="cuda")],
                                    [], torch.full((1,), 0.1, dtype=torch.float64), None, 0, 0, 0, 1.0,
                                    0, [0.0] * 13, 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_as_on_the_cpu(dtype):
    p = torch.randn(4, dtype=dtype)
    errors = []
    for device in ("cpu", "cuda"):
        q = p.to(device)
        with pytest.raises(RuntimeError) as raised:
            ops.sgd_update_([q], [q.clone()], [], [False], 0.1, 0.0, 0.0, False, 0.0, False, False)
        errors.append(str(raised.value).splitlines()[0])
        with pytest.raises(InputError, match="must be float32 or float64"):
            pyfit.ops.sgd_update_([q], [q.clone()], [None], lr=0.1)
    assert errors[0] == errors[1]


def test_fit_on_cuda_through_pyfit_matches_the_reference(gen):
    X = torch.randn(500, 3, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3
    results = []
    for name in ("cpp", "python"):
        previous = _backend._selected
        pyfit.ops.set_backend(name)
        try:
            w, b = torch.zeros(1, 3, dtype=torch.float64, device="cuda"), torch.zeros(1, dtype=torch.float64, device="cuda")
            losses = pyfit.ops.linear_fit_(X.cuda(), y.cuda(), [w, b], lrs=[0.1] * 50)
            results.append((losses.cpu(), w.cpu(), b.cpu()))
        finally:
            _backend._selected = previous
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_fit_with_more_outputs_than_the_cuda_kernel_takes_runs_on_autograd(gen):
    from pyfit.ops._checks import CUDA_MAX_LINEAR_OUTPUTS

    k = CUDA_MAX_LINEAR_OUTPUTS + 1
    X = torch.randn(64, 2, generator=gen, device="cpu").cuda()
    y = torch.randn(64, k, generator=gen, device="cpu").cuda()
    result = pyfit.fit(pyfit.Linear(2, k).cuda(), X, y, lr=0.1, epochs=3)
    assert result.backend.endswith(":autograd") and result.stop_reason == "completed"
