"""The CUDA ops against the CPU kernels and the reference on the same random inputs.

Skipped without a GPU (benchmarks/gpu_check.sh runs them on one). Inputs include
non-contiguous tensors, mixed float32/float64 lists, minibatch orders and sizes at
the kernels' limits; every result is compared with both the compiled CPU kernel
and the pure-PyTorch reference, and refusals must match the CPU's.
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


# --- the fused linear step and fit -------------------------------------------------------

def _problem(gen, dtype, n, d, k, bias=True, transposed=False):
    X = torch.randn(d, n, generator=gen, dtype=dtype).t() if transposed else \
        torch.randn(n, d, generator=gen, dtype=dtype)
    y = torch.randn(n, k, generator=gen, dtype=dtype)
    state = [torch.randn(d, k, generator=gen, dtype=dtype).t() * 0.1,  # non-contiguous weight
             torch.randn(k, generator=gen, dtype=dtype) if bias else None,
             torch.zeros(k, d, dtype=dtype), torch.zeros(k, dtype=dtype) if bias else None]
    return X, y, state


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d, k", [(1, 1, 1), (1000, 16, 1), (2500, 37, 3), (100, 5, 64)])
@pytest.mark.parametrize("reduction", [0, 1])
def test_linear_step_matches_cpu_and_reference(gen, dtype, n, d, k, reduction):
    X, y, state = _problem(gen, dtype, n, d, k, transposed=True)
    args = (0.01, 0.9, 0.0, True, 0.01, False, True, reduction)
    cuda_state, cpu_state, ref_state = _cuda(state), _clones(state), _clones(state)
    cuda = ops.linear_step_(*_cuda([X, y]), *cuda_state, *args)
    cpu = ops.linear_step_(X, y, *cpu_state, *args)
    ref = _reference.linear_step_(X, y, *ref_state, *args)
    _assert_all_close([cuda] + cuda_state, [cpu] + cpu_state, [ref] + ref_state)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size, shuffled", [(0, False), (33, False), (33, True), (1000, True)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_fit_matches_cpu_and_reference(gen, dtype, batch_size, shuffled, bias):
    X, y, state = _problem(gen, dtype, 1000, 16, 2, bias=bias)
    lrs = torch.tensor([0.01, 0.02, 0.005], dtype=torch.float64)
    order = torch.stack([torch.randperm(1000, generator=gen) for _ in range(3)]) if shuffled else None
    args = (lrs, order, batch_size, 0.9, 0.1, False, 0.01, False, True, 0)
    cuda_state, cpu_state, ref_state = _cuda(state), _clones(state), _clones(state)
    cuda = ops.linear_fit_(*_cuda([X, y]), *cuda_state, *args)
    cpu = ops.linear_fit_(X, y, *cpu_state, *args)
    ref = _reference.linear_fit_(X, y, *ref_state, *args)
    _assert_all_close([cuda] + cuda_state, [cpu] + cpu_state, [ref] + ref_state)


def test_linear_fit_takes_an_order_on_the_device(gen):
    X, y, state = _problem(gen, torch.float64, 200, 4, 1)
    lrs = torch.full((2,), 0.01, dtype=torch.float64)
    order = torch.stack([torch.randperm(200, generator=gen) for _ in range(2)])
    on_device, on_cpu = _cuda(state), _cuda(state)
    a = ops.linear_fit_(*_cuda([X, y]), *on_device, lrs, order.cuda(), 16, 0.9, 0.0, False, 0.0, False, True, 0)
    b = ops.linear_fit_(*_cuda([X, y]), *on_cpu, lrs, order, 16, 0.9, 0.0, False, 0.0, False, True, 0)
    assert torch.equal(a, b) and all(torch.equal(s, t) for s, t in zip(on_device, on_cpu) if s is not None)


def test_linear_large_model_keeps_scratch_bounded(gen):
    # K*D = 1.2M: unbounded per-block partials would take (blocks+1)*P doubles
    X, y, state = _problem(gen, torch.float64, 64, 300_000, 4)
    args = (1e-3, 0.9, 0.0, False, 0.0, False, True, 1)
    cuda_state, ref_state = _cuda(state), _clones(state)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    cuda = ops.linear_step_(*_cuda([X, y]), *cuda_state, *args)
    extra = torch.cuda.max_memory_allocated() - before
    ref = _reference.linear_step_(X, y, *ref_state, *args)
    torch.testing.assert_close(cuda.cpu(), ref, **TOL[torch.float64])
    for a, b in zip(cuda_state, ref_state):
        torch.testing.assert_close(a.cpu(), b, **TOL[torch.float64])
    assert extra < 200e6, f"the step took {extra / 1e6:.0f} MB of scratch"


def test_zero_rows_with_sum_reduction_steps_as_on_the_cpu():
    X, y = torch.empty(0, 3, dtype=torch.float64), torch.empty(0, 2, dtype=torch.float64)
    state = [torch.ones(2, 3, dtype=torch.float64), torch.ones(2, dtype=torch.float64), None, None]
    cuda_state, cpu_state = _cuda(state), _clones(state)
    args = (0.5, 0.0, 0.0, False, 0.1, False, True, 1)
    cuda = ops.linear_step_(*_cuda([X, y]), *cuda_state, *args)
    cpu = ops.linear_step_(X, y, *cpu_state, *args)
    assert cuda.item() == cpu.item() == 0.0
    for a, b in zip(cuda_state, cpu_state):
        if a is not None:
            torch.testing.assert_close(a.cpu(), b)


# --- refusals: the same as on the CPU, before anything is written ----------------------

def test_too_many_outputs_is_a_clear_error_before_any_write():
    X, y = torch.randn(4, 2, device="cuda"), torch.randn(4, 6145, device="cuda")
    w = torch.zeros(6145, 2, device="cuda")
    with pytest.raises(RuntimeError, match="takes at most 6144 outputs .K, rows of weight., got 6145"):
        ops.linear_step_(X, y, w, None, None, None, 0.1, 0.0, 0.0, False, 0.0, False, True, 0)
    assert torch.equal(w, torch.zeros_like(w))


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
    with pytest.raises(RuntimeError, match="X is on cpu, weight on cuda:0"):
        torch.ops.pyfit.linear_step_(torch.ones(3, 2), torch.ones(3, 1), torch.zeros(1, 2, device="cuda"),
                                     None, None, None, 0.1, 0.0, 0.0, False, 0.0, False, True, 0)


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
            losses = pyfit.ops.linear_fit_(X.cuda(), y.cuda(), w, b, lrs=[0.1] * 50)
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
