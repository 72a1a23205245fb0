"""The fused linear-model step and fit against the reference and plain autograd."""

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from pyfit.ops import _extension, _reference

ops, _reason = _extension.load()
pytestmark = pytest.mark.skipif(ops is None, reason=f"compiled pyfit ops not built: {_reason}")

TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-11)}


@st.composite
def problems(draw):
    """X (N, D), y (N, K), params and buffers; N, D, K include 1, odd sizes and the
    specialised D of 8/16/32 with K = 1."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n = draw(st.sampled_from([1, 2, 9, 64, 130, 2500]))
    d = draw(st.sampled_from([1, 3, 5, 8, 16, 32, 37]))
    k = draw(st.sampled_from([1, 1, 2, 3]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    X = torch.randn(n, d, generator=gen, dtype=dtype)
    if draw(st.booleans()):
        X = torch.randn(d, n, generator=gen, dtype=dtype).t()  # non-contiguous X
    y = torch.randn(n, k, generator=gen, dtype=dtype)
    weight = torch.randn(k, d, generator=gen, dtype=dtype) * 0.1
    bias = torch.randn(k, generator=gen, dtype=dtype) if draw(st.booleans()) else None
    return X, y, weight, bias


hyper = st.fixed_dictionaries({
    "lr": st.sampled_from([0.05, 0.01]),
    "momentum": st.sampled_from([0.0, 0.9]),
    "dampening": st.sampled_from([0.0, 0.2]),
    "nesterov": st.booleans(),
    "weight_decay": st.sampled_from([0.0, 0.01]),
    "maximize": st.just(False),
    "reduction": st.sampled_from([0, 1]),
})


def _state(weight, bias, momentum):
    w, b = weight.clone(), None if bias is None else bias.clone()
    wb = torch.zeros_like(w) if momentum else None
    bb = torch.zeros_like(b) if (momentum and b is not None) else None
    return [w, b, wb, bb]


def _hyper_args(h):
    return (h["momentum"], h["dampening"], h["nesterov"], h["weight_decay"], h["maximize"])


def _assert_state_close(a, b):
    for x, z in zip(a, b):
        if x is not None:
            torch.testing.assert_close(x, z, **TOL[x.dtype])


@settings(max_examples=30, deadline=None)
@given(problems(), hyper)
def test_step_matches_reference(problem, h):
    X, y, weight, bias = problem
    mine, ref = _state(weight, bias, h["momentum"]), _state(weight, bias, h["momentum"])
    args = (h["lr"], *_hyper_args(h), True, h["reduction"])
    loss = ops.linear_step_(X, y, *mine, *args)
    ref_loss = _reference.linear_step_(X, y, *ref, *args)
    torch.testing.assert_close(loss, ref_loss, **TOL[X.dtype])
    _assert_state_close(mine, ref)


@settings(max_examples=25, deadline=None)
@given(problems(), hyper, st.sampled_from([None, 1, 7, 64]), st.booleans())
def test_fit_matches_reference(problem, h, batch_size, shuffled):
    X, y, weight, bias = problem
    epochs = 3
    lrs = torch.tensor([h["lr"], h["lr"] / 2, h["lr"] / 4], dtype=torch.float64)
    order = torch.stack([torch.randperm(X.shape[0]) for _ in range(epochs)]) if shuffled else None
    mine, ref = _state(weight, bias, h["momentum"]), _state(weight, bias, h["momentum"])
    args = (lrs, order, batch_size or 0, *_hyper_args(h), True, h["reduction"])
    losses = ops.linear_fit_(X, y, *mine, *args)
    ref_losses = _reference.linear_fit_(X, y, *ref, *args)
    # A diverging fit (batch 1 at high lr and momentum) runs to overflow, and the step
    # where it overflows depends on rounding: compare fits whose reference stays well
    # in range; test_non_finite_stops_and_keeps_last_finite_params checks the stop itself.
    assume(bool((ref_losses.abs() < 1e30).all()))
    torch.testing.assert_close(losses, ref_losses, **TOL[X.dtype])
    _assert_state_close(mine, ref)


def test_step_matches_autograd():
    X, y = torch.randn(300, 4, dtype=torch.float64), torch.randn(300, 2, dtype=torch.float64)
    w, b = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    wa, ba = w.clone().requires_grad_(), b.clone().requires_grad_()
    expected = ((X @ wa.t() + ba - y) ** 2).mean()
    expected.backward()
    loss = ops.linear_step_(X, y, w, b, None, None, 0.1, 0.0, 0.0, False, 0.0, False, True, 0)
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(w, wa.detach() - 0.1 * wa.grad)
    torch.testing.assert_close(b, ba.detach() - 0.1 * ba.grad)


def test_fit_reaches_least_squares_solution():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(2000, 16, generator=gen)
    y = X @ torch.randn(16, 1, generator=gen) + 0.5
    w, b = torch.zeros(1, 16), torch.zeros(1)
    ops.linear_fit_(X, y, w, b, None, None, torch.full((300,), 0.1, dtype=torch.float64), None, 0,
                    0.0, 0.0, False, 0.0, False, True, 0)
    A = torch.cat([X, torch.ones(2000, 1)], 1).double()
    solution = torch.linalg.lstsq(A, y.double()).solution.squeeze(1)
    torch.testing.assert_close(torch.cat([w[0], b]).double(), solution, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bad", ["inf_x", "huge_lr"])
def test_non_finite_stops_and_keeps_last_finite_params(bad):
    X, y = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64)
    lrs = torch.full((4,), 0.01, dtype=torch.float64)
    if bad == "inf_x":
        X[7, 1] = float("inf")
    else:
        X = X * 1e150
        lrs[2] = 1e200
    mine = _state(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 0.9)
    ref = _state(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 0.9)
    args = (lrs, None, 0, 0.9, 0.0, False, 0.0, False, True, 0)
    losses = ops.linear_fit_(X, y, *mine, *args)
    ref_losses = _reference.linear_fit_(X, y, *ref, *args)
    torch.testing.assert_close(losses, ref_losses, equal_nan=True)
    assert not torch.isfinite(losses).all()
    _assert_state_close(mine, ref)


def test_opcheck():
    X, y = torch.randn(20, 3), torch.randn(20, 2)
    w, b, wb, bb = torch.randn(2, 3), torch.randn(2), torch.zeros(2, 3), torch.zeros(2)
    torch.library.opcheck(torch.ops.pyfit.linear_step_.default,
                          (X, y, w, b, wb, bb, 0.1, 0.9, 0.0, True, 0.01, False, True, 0))
    torch.library.opcheck(torch.ops.pyfit.linear_step_.default,
                          (X, y, w, None, None, None, 0.1, 0.0, 0.0, False, 0.0, False, True, 1))
    lrs = torch.full((2,), 0.1, dtype=torch.float64)
    order = torch.stack([torch.randperm(20), torch.randperm(20)])
    torch.library.opcheck(torch.ops.pyfit.linear_fit_.default,
                          (X, y, w, b, wb, bb, lrs, order, 6, 0.9, 0.0, False, 0.0, False, True, 0))


def test_deterministic_at_fixed_threads():
    X, y = torch.randn(300_000, 16), torch.randn(300_000, 1)
    results = []
    for _ in range(2):
        w = torch.zeros(1, 16)
        losses = ops.linear_fit_(X, y, w, None, None, None, torch.full((3,), 0.1, dtype=torch.float64),
                                 None, 0, 0.0, 0.0, False, 0.0, False, True, 0)
        results.append((losses, w))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_errors_name_expected_and_actual():
    X, y, w = torch.randn(10, 3), torch.randn(10, 1), torch.zeros(1, 3)
    step = (0.1, 0.0, 0.0, False, 0.0, False, True, 0)
    with pytest.raises(RuntimeError, match=r"weight must have shape \(K, 3\) .* got \[1, 4\]"):
        ops.linear_step_(X, y, torch.zeros(1, 4), None, None, None, *step)
    with pytest.raises(RuntimeError, match=r"y must have shape \[10, 1\], got \[10, 2\]"):
        ops.linear_step_(X, torch.randn(10, 2), w, None, None, None, *step)
    with pytest.raises(RuntimeError, match="weight_buf .* is required, got None"):
        ops.linear_step_(X, y, w, None, None, None, 0.1, 0.9, 0.0, False, 0.0, False, True, 0)
    with pytest.raises(RuntimeError, match="must have X's dtype Float, got Double"):
        ops.linear_step_(X, y.double(), w, None, None, None, *step)
    with pytest.raises(RuntimeError, match=r"order must hold row indices in \[0, 10\)"):
        ops.linear_fit_(X, y, w, None, None, None, torch.ones(1, dtype=torch.float64),
                        torch.full((1, 10), 10), 2, 0.0, 0.0, False, 0.0, False, True, 0)
