"""linear_sums: one pass over rows of a linear model, its loss and gradient as unscaled float64 sums.

The oracle is autograd in float64: the sum of torch's per-element losses over the
chosen rows, its value and ``torch.autograd.grad`` with respect to weight and bias,
divided by the loss's constant factor (2 for squared). Both backends (the ``backend``
fixture) must agree with it on random problems, and with each other; sums over
disjoint rows must add up to the sums over all of them.
"""

import zlib

import pytest
import torch
import torch.nn.functional as F

import pyfit
from pyfit.errors import InputError
from pyfit.ops import _extension, _reference

compiled, _reason = _extension.load()
needs_compiled = pytest.mark.skipif(compiled is None, reason=f"compiled pyfit ops not built: {_reason}")

# pyfit's loss -> (torch's elementwise loss, the constant factor its gradient has over the sums)
LOSSES = {
    "squared": (lambda pred, y, delta: F.mse_loss(pred, y, reduction="none"), 2.0),
    "absolute": (lambda pred, y, delta: F.l1_loss(pred, y, reduction="none"), 1.0),
    "huber": (lambda pred, y, delta: F.huber_loss(pred, y, reduction="none", delta=delta), 1.0),
}
DELTA = 0.6
# float32 rows are summed in float32 for 128 rows at a time, then in float64
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def _problem(key, dtype, n, k, d, bias=True):
    """X (n, d), y (n, k) near a linear model, and params [weight (k, d)] or [weight, bias (k,)]."""
    gen = torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = X @ torch.randn(d, k, generator=gen, dtype=torch.float64) + torch.randn(n, k, generator=gen, dtype=torch.float64)
    params = [0.5 * torch.randn(k, d, generator=gen, dtype=torch.float64)]
    if bias:
        params.append(torch.randn(k, generator=gen, dtype=torch.float64))
    rows = torch.randperm(n, generator=gen)
    return X.to(dtype), y.to(dtype), [p.to(dtype) for p in params], rows


def _oracle(X, y, params, rows, loss, delta):
    """[sum of losses, d sum / d bias (K), d sum / d weight (K, D)] / factor, by autograd in float64."""
    if rows is not None:
        X, y = X[rows], y[rows]
    X, y = X.double(), y.double()
    weight = params[0].double().requires_grad_()
    bias = (params[1].double() if len(params) == 2 else torch.zeros(weight.shape[0], dtype=torch.float64))
    bias.requires_grad_()
    elementwise, factor = LOSSES[loss]
    total = elementwise(F.linear(X, weight, bias), y, delta).sum()
    grad_weight, grad_bias = torch.autograd.grad(total, [weight, bias])
    return torch.cat([total.detach().reshape(1), grad_bias / factor, grad_weight.reshape(-1) / factor])


def _assert_close(got, want, dtype):
    # float32 data: each sum is within a small fraction of the largest sum's size
    tol = TOL[dtype]
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * float(want.abs().max().clamp(min=1.0)))


def _chosen_rows(kind, rows):
    return {"all": None, "subset": rows[: len(rows) * 2 // 3], "empty": rows[:0]}[kind]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("rows_kind", ["all", "subset", "empty"])
@pytest.mark.parametrize("k, d", [(1, 1), (1, 5), (3, 5), (3, 17), (1, 17), (3, 1)])
def test_sums_match_autograd(backend, dtype, loss, bias, rows_kind, k, d):
    # 700 rows: several of the compiled pass's 256-row blocks and 128-row float32 runs
    X, y, params, rows = _problem((dtype, loss, bias, k, d), dtype, 700, k, d, bias)
    chosen = _chosen_rows(rows_kind, rows)
    sums = pyfit.ops.linear_sums(X, y, params, rows=chosen, loss=loss, delta=DELTA)
    assert sums.dtype == torch.float64 and sums.shape == (1 + k + k * d,)
    if rows_kind == "empty":
        assert torch.equal(sums, torch.zeros(1 + k + k * d, dtype=torch.float64))
    else:
        _assert_close(sums, _oracle(X, y, params, chosen, loss, DELTA), dtype)


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("k, d", [(1, 1), (2, 4), (3, 17), (4, 8)])
def test_compiled_sums_match_the_reference(dtype, loss, k, d):
    X, y, params, rows = _problem(("parity", dtype, loss, k, d), dtype, 1000, k, d)
    for chosen in (None, rows[:900]):
        want = _reference.linear_sums(X, y, params, chosen, pyfit.ops._settings.LOSS_CODES[loss], DELTA)
        got = compiled.linear_sums(X, y, params, chosen, pyfit.ops._settings.LOSS_CODES[loss], DELTA)
        # both sum runs of 128 rows in the data's dtype, then in float64
        tol = {torch.float64: 1e-12, torch.float32: 1e-5}[dtype]
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * float(want.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_sums_over_two_halves_add_up_to_the_sums_over_all(backend, dtype, loss):
    X, y, params, rows = _problem(("halves", dtype, loss), dtype, 900, 3, 6)
    every = pyfit.ops.linear_sums(X, y, params, loss=loss, delta=DELTA)
    # halves as slices of the data (chunks of a file) and as index sets (shards of a permutation)
    sliced = (pyfit.ops.linear_sums(X[:400], y[:400], params, loss=loss, delta=DELTA)
              + pyfit.ops.linear_sums(X[400:], y[400:], params, loss=loss, delta=DELTA))
    indexed = (pyfit.ops.linear_sums(X, y, params, rows=rows[:333], loss=loss, delta=DELTA)
               + pyfit.ops.linear_sums(X, y, params, rows=rows[333:], loss=loss, delta=DELTA))
    _assert_close(sliced, every, dtype)
    _assert_close(indexed, every, dtype)
    assert not torch.equal(pyfit.ops.linear_sums(X[:400], y[:400], params, loss=loss, delta=DELTA), every)


def test_the_bias_sums_are_there_without_a_bias(backend):
    # without a bias b = 0: the same sums as with a zero bias
    X, y, params, _ = _problem("zero-bias", torch.float64, 50, 2, 3, bias=False)
    without = pyfit.ops.linear_sums(X, y, params, loss="huber")
    with_zero = pyfit.ops.linear_sums(X, y, [params[0], torch.zeros(2, dtype=torch.float64)], loss="huber")
    assert torch.equal(without, with_zero)
    assert without[1:3].abs().min() > 0


def test_repeated_rows_count_as_often_as_they_are_named(backend):
    X, y, params, _ = _problem("repeat", torch.float64, 10, 2, 3)
    once = pyfit.ops.linear_sums(X, y, params, rows=torch.tensor([4]))
    three = pyfit.ops.linear_sums(X, y, params, rows=torch.tensor([4, 4, 4]))
    torch.testing.assert_close(three, 3 * once, rtol=1e-14, atol=0)


def test_loss_codes_are_taken_as_the_names(backend):
    X, y, params, _ = _problem("codes", torch.float64, 30, 2, 3)
    for code, name in enumerate(["squared", "absolute", "huber"]):
        assert torch.equal(pyfit.ops.linear_sums(X, y, params, loss=code, delta=0.3),
                           pyfit.ops.linear_sums(X, y, params, loss=name, delta=0.3))


def test_any_layout_of_the_inputs_gives_the_same_sums(backend):
    # transposed views and an expanded (stride 0) bias: nothing is written, so any layout is taken
    X, y, params, rows = _problem("layout", torch.float64, 300, 3, 5)
    want = pyfit.ops.linear_sums(X, y, params, rows=rows[:200], loss="absolute")
    weight_view = params[0].t().contiguous().t()
    bias_expanded = params[1][:1].expand(3)
    got = pyfit.ops.linear_sums(X.t().contiguous().t(), y.t().contiguous().t(), [weight_view, params[1]],
                                rows=rows[:200].flip(0).contiguous().flip(0), loss="absolute")
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-12)
    constant = pyfit.ops.linear_sums(X, y, [params[0], bias_expanded])
    torch.testing.assert_close(constant, pyfit.ops.linear_sums(X, y, [params[0], bias_expanded.clone()]),
                               rtol=0, atol=0)


def _in_one_buffer(X, y, gap, targets_first):
    """X and y as column views of one wider (N, D + K + gap) buffer: rows contiguous, further apart."""
    n, d = X.shape
    k = y.shape[1]
    block = torch.full((n, d + k + gap), float("nan"), dtype=X.dtype)
    x_at, y_at = (k + gap, 0) if targets_first else (0, d + gap)
    block[:, x_at:x_at + d] = X
    block[:, y_at:y_at + k] = y
    return block[:, x_at:x_at + d], block[:, y_at:y_at + k]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("d", [5, 8, 17])
def test_columns_of_a_wider_buffer_give_exactly_the_contiguous_sums(backend, dtype, loss, k, d):
    # (the row strides are read in place on the CPU: every kernel must step by them)
    X, y, params, rows = _problem(("strided", dtype, loss, k, d), dtype, 600, k, d)
    for gap, targets_first in ((0, False), (3, True)):
        X_view, y_view = _in_one_buffer(X, y, gap, targets_first)
        assert not X_view.is_contiguous() and X_view.stride() == (d + k + gap, 1)
        for chosen in (None, rows[:450]):
            want = pyfit.ops.linear_sums(X, y, params, rows=chosen, loss=loss, delta=DELTA)
            got = pyfit.ops.linear_sums(X_view, y_view, params, rows=chosen, loss=loss, delta=DELTA)
            assert torch.equal(got, want)


def test_columns_that_are_not_adjacent_give_the_contiguous_sums(backend):
    # every other column of a buffer (a column stride of 2) is not read in place: copied
    X, y, params, rows = _problem("every-other", torch.float32, 300, 3, 9)
    wide = torch.zeros(300, 24)
    wide[:, :18:2], wide[:, 18:24:2] = X, y
    want = pyfit.ops.linear_sums(X, y, params, rows=rows[:200], loss="huber")
    assert torch.equal(pyfit.ops.linear_sums(wide[:, :18:2], wide[:, 18:24:2], params, rows=rows[:200],
                                             loss="huber"), want)


def test_inputs_that_require_grad_are_read_without_a_graph(backend):
    X, y, params, _ = _problem("grad", torch.float32, 40, 1, 2)
    weight = params[0].clone().requires_grad_()
    sums = pyfit.ops.linear_sums(X, y, [weight, params[1]])
    assert not sums.requires_grad and weight.grad is None


@needs_compiled
def test_compiled_sums_do_not_depend_on_the_thread_count():
    X, y, params, rows = _problem("threads", torch.float32, 5000, 3, 7)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(compiled.linear_sums(X, y, params, rows, 2, DELTA))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(r, results[0]) for r in results)


# --- refusals: an InputError that names the problem, alike on both backends ------------

def _refusal_cases():
    X, y, params, rows = _problem("refusals", torch.float32, 6, 2, 3)
    w, b = params
    return [
        ("X 1-D", (X[:, 0], y, [w, b]), {}, r"X must be 2-D \(N, D\), got shape \(6,\)"),
        ("weight columns", (X, y, [torch.zeros(2, 4), b]), {},
         r"params\[0\] \(the weight\) must have shape \(K, 3\) for X of shape \(6, 3\), got \(2, 4\)"),
        ("y rows", (X, y[:5], [w, b]), {}, r"y must have shape \(6, 2\), got \(5, 2\)"),
        ("bias size", (X, y, [w, b[:1]]), {}, r"params\[1\] \(the bias\) must have shape \(2,\), got \(1,\)"),
        ("three params", (X, y, [w, b, b]), {}, r"params must be \[weight\] or \[weight, bias\], got 3 tensors"),
        ("dtype mismatch", (X, y.double(), [w, b]), {}, r"y must have X's dtype torch.float32, got torch.float64"),
        ("half precision", (X.half(), y.half(), [w.half(), b.half()]), {}, r"X must be float32 or float64"),
        ("rows too large", (X, y, [w, b]), {"rows": torch.tensor([0, 6])},
         r"rows must hold row indices in \[0, 6\), got values in \[0, 6\]"),
        ("rows negative", (X, y, [w, b]), {"rows": torch.tensor([-1, 2])},
         r"rows must hold row indices in \[0, 6\), got values in \[-1, 2\]"),
        ("rows list", (X, y, [w, b]), {"rows": [0, 1]},
         r"rows must be None or a 1-D int64 tensor of row indices into X, got list"),
        ("rows float", (X, y, [w, b]), {"rows": rows.float()}, r"rows must be int64 .*, got torch.float32"),
        ("rows 2-D", (X, y, [w, b]), {"rows": rows.reshape(2, 3)}, r"rows must be 1-D .*, got shape \(2, 3\)"),
        ("loss name", (X, y, [w, b]), {"loss": "mse"},
         r"unknown loss 'mse': expected one of 'squared' \(0\), 'absolute' \(1\), 'huber' \(2\)"),
        ("loss code", (X, y, [w, b]), {"loss": 3}, r"unknown loss 3: expected one of"),
        ("loss flag", (X, y, [w, b]), {"loss": True}, r"unknown loss True"),
        ("delta zero", (X, y, [w, b]), {"loss": "huber", "delta": 0.0},
         r"the huber loss needs a finite delta > 0, got 0.0"),
        ("delta negative", (X, y, [w, b]), {"loss": "huber", "delta": -1.0},
         r"the huber loss needs a finite delta > 0, got -1.0"),
        ("delta infinite", (X, y, [w, b]), {"loss": 2, "delta": float("inf")},
         r"the huber loss needs a finite delta > 0, got inf"),
    ]


@pytest.mark.parametrize("args, kwargs, message", [pytest.param(*case[1:], id=case[0]) for case in _refusal_cases()])
def test_refusals_name_the_problem(backend, args, kwargs, message):
    with pytest.raises(InputError, match=message):
        pyfit.ops.linear_sums(*args, **kwargs)


def test_params_must_be_a_list(backend):
    X, y, params, _ = _problem("list", torch.float64, 4, 1, 2)
    with pytest.raises(ValueError, match=r"params must be a list of tensors \(\[weight\] or \[weight, bias\]\)"):
        pyfit.ops.linear_sums(X, y, params[0])


@needs_compiled
def test_the_compiled_kernel_reached_directly_refuses_as_well():
    X, y, params, _ = _problem("direct", torch.float64, 6, 2, 3)
    with pytest.raises(RuntimeError, match=r"rows must hold row indices in \[0, 6\), got values in \[0, 9\]"):
        torch.ops.pyfit.linear_sums(X, y, params, torch.tensor([0, 9]), 0, 1.0)
    with pytest.raises(RuntimeError, match="delta must be a finite number > 0 for the huber loss, got -1"):
        torch.ops.pyfit.linear_sums(X, y, params, None, 2, -1.0)
    with pytest.raises(RuntimeError, match=r"loss must be 0 \(squared\), 1 \(absolute\) or 2 \(huber\), got 5"):
        torch.ops.pyfit.linear_sums(X, y, params, None, 5, 1.0)
    with pytest.raises(RuntimeError, match=r"y must have shape \[6, 2\], got \[6, 3\]"):
        torch.ops.pyfit.linear_sums(X, torch.zeros(6, 3, dtype=torch.float64), params, None, 0, 1.0)


@needs_compiled
def test_fake_kernel_gives_the_shape_and_checks_the_arguments():
    X, y = torch.empty(7, 4, device="meta"), torch.empty(7, 3, device="meta")
    params = [torch.empty(3, 4, device="meta"), torch.empty(3, device="meta")]
    sums = torch.ops.pyfit.linear_sums(X, y, params, torch.empty(5, dtype=torch.int64, device="meta"), 1, 1.0)
    assert sums.device.type == "meta" and sums.shape == (1 + 3 + 12,) and sums.dtype == torch.float64
    with pytest.raises(InputError, match=r"params\[0\] \(the weight\) must have shape \(K, 4\)"):
        torch.ops.pyfit.linear_sums(X, y, [torch.empty(3, 5, device="meta")], None, 0, 1.0)
    with pytest.raises(InputError, match=r"X is on cpu, y on meta"):
        torch.ops.pyfit.linear_sums(torch.zeros(7, 4), y, [torch.zeros(3, 4)], None, 0, 1.0)


@needs_compiled
def test_opcheck_of_the_compiled_op():
    X, y, params, rows = _problem("opcheck", torch.float32, 40, 2, 3)
    torch.library.opcheck(torch.ops.pyfit.linear_sums.default, (X, y, params, rows[:30], 2, 0.5))
    torch.library.opcheck(torch.ops.pyfit.linear_sums.default, (X, y, params[:1], None, 0, 1.0))


# --- CUDA: the same sums as the CPU kernel (run where a GPU is present) ------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@needs_compiled
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("k, d, bias", [(1, 1, True), (3, 17, False), (4, 8, True)])
def test_cuda_sums_match_the_cpu_kernel_and_autograd(dtype, loss, k, d, bias):
    X, y, params, rows = _problem(("cuda", dtype, loss, k, d), dtype, 3000, k, d, bias)
    code = pyfit.ops._settings.LOSS_CODES[loss]
    X_gpu, y_gpu, params_gpu = X.cuda(), y.cuda(), [p.cuda() for p in params]
    # rows on the CPU or on the GPU, and none
    for chosen in (None, rows[:2000], rows[:2000].cuda(), rows[:0]):
        got = pyfit.ops.linear_sums(X_gpu, y_gpu, params_gpu, rows=chosen, loss=loss, delta=DELTA)
        assert got.device.type == "cuda"
        cpu_rows = None if chosen is None else chosen.cpu()
        want = compiled.linear_sums(X, y, params, cpu_rows, code, DELTA)
        _assert_close(got.cpu(), want, dtype)
        if chosen is not None and len(chosen) == 0:
            assert torch.equal(got.cpu(), torch.zeros_like(want))
        else:
            _assert_close(got.cpu(), _oracle(X, y, params, cpu_rows, loss, DELTA), dtype)


@needs_compiled
@needs_cuda
def test_cuda_sums_are_the_same_run_to_run_and_refuse_bad_rows():
    X, y, params, rows = _problem("cuda-repeat", torch.float32, 5000, 3, 5)
    X, y, params, rows = X.cuda(), y.cuda(), [p.cuda() for p in params], rows.cuda()
    first = pyfit.ops.linear_sums(X, y, params, rows=rows, loss="huber")
    assert torch.equal(pyfit.ops.linear_sums(X, y, params, rows=rows, loss="huber"), first)
    with pytest.raises(InputError, match=r"rows must hold row indices in \[0, 5000\)"):
        pyfit.ops.linear_sums(X, y, params, rows=torch.tensor([5000], device="cuda"))


@needs_cuda
def test_cuda_weights_wider_than_the_kernel_takes_run_the_reference():
    k = pyfit.ops._checks.CUDA_MAX_LINEAR_OUTPUTS + 1
    X, y, params, _ = _problem("cuda-wide", torch.float32, 8, k, 2)
    got = pyfit.ops.linear_sums(X.cuda(), y.cuda(), [p.cuda() for p in params], loss="absolute")
    _assert_close(got.cpu(), _oracle(X, y, params, None, "absolute", DELTA), torch.float32)
