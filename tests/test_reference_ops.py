"""The reference ops against plain torch: the oracle itself must be right."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from pyfit.ops import _extension
from pyfit.ops import _reference as ref

dtypes = st.sampled_from([torch.float32, torch.float64])


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}


@given(n=st.integers(1, 300), dtype=dtypes, reduction=st.sampled_from(["mean", "sum"]), seed=st.integers(0, 2**31))
def test_mse_matches_torch_in_value_and_gradient(n, dtype, reduction, seed):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, generator=g, dtype=dtype, requires_grad=True)
    target = torch.randn(n, generator=g, dtype=dtype, requires_grad=True)
    code = 0 if reduction == "mean" else 1
    loss = ref.mse_loss(pred, target, code)
    loss.backward()
    p2, t2 = pred.detach().clone().requires_grad_(), target.detach().clone().requires_grad_()
    expected = F.mse_loss(p2, t2, reduction=reduction)
    expected.backward()
    torch.testing.assert_close(loss, expected, **tol(dtype))
    torch.testing.assert_close(pred.grad, p2.grad, **tol(dtype))
    torch.testing.assert_close(target.grad, t2.grad, **tol(dtype))


def test_mse_of_empty_mean_is_nan_like_torch():
    empty = torch.zeros(0)
    assert torch.isnan(ref.mse_loss(empty, empty, 0))
    assert torch.isnan(F.mse_loss(empty, empty))


def test_mse_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, t: ref.mse_loss(p, t, 0), (pred, target))
    assert torch.autograd.gradcheck(lambda p, t: ref.mse_loss(p, t, 1), (pred, target))


settings_strategy = st.fixed_dictionaries({
    "lr": st.floats(1e-4, 0.5),
    "momentum": st.sampled_from([0.0, 0.5, 0.9]),
    "dampening": st.sampled_from([0.0, 0.3]),
    "nesterov": st.booleans(),
    "weight_decay": st.sampled_from([0.0, 1e-2]),
    "maximize": st.booleans(),
})


@given(kw=settings_strategy, seed=st.integers(0, 2**31), dtype=dtypes)
def test_sgd_update_matches_torch_optim_sgd_over_steps(kw, seed, dtype):
    if kw["nesterov"] and (kw["momentum"] == 0 or kw["dampening"] != 0):
        kw["nesterov"] = False
    g = torch.Generator().manual_seed(seed)
    shapes = [(3,), (2, 5), (1,), (17,)]
    params = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    mine = [p.clone() for p in params]
    theirs = [torch.nn.Parameter(p.clone()) for p in params]
    opt = torch.optim.SGD(theirs, **kw)
    buffers = [None] * len(mine)
    for step in range(6):
        grads = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
        if step == 2:
            grads[1] = None  # a param without a gradient is skipped
        for p, gr in zip(theirs, grads):
            p.grad = gr
        opt.step()
        live = [i for i, gr in enumerate(grads) if gr is not None]
        bufs, first = [], []
        for i in live:
            if kw["momentum"] != 0:
                first.append(buffers[i] is None)
                if buffers[i] is None:
                    buffers[i] = torch.empty_like(mine[i])
                bufs.append(buffers[i])
            else:
                first.append(False)
        ref.sgd_update_([mine[i] for i in live], [grads[i] for i in live], bufs, first, kw["lr"], kw["momentum"],
                        kw["dampening"], kw["nesterov"], kw["weight_decay"], kw["maximize"], False)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b.detach(), **tol(dtype))
    if kw["momentum"] != 0:
        for i, p in enumerate(theirs):
            torch.testing.assert_close(buffers[i], opt.state[p]["momentum_buffer"], **tol(dtype))


def test_sgd_update_can_zero_the_gradients():
    p, g = torch.ones(4), torch.full((4,), 2.0)
    ref.sgd_update_([p], [g], [], [False], 0.5, 0.0, 0.0, False, 0.0, False, True)
    assert torch.equal(p, torch.zeros(4)) and torch.equal(g, torch.zeros(4))


SGD_SETTINGS = [0.0] * 13  # plain SGD: every setting off (pyfit.ops._settings.SETTING_NAMES)


def _fit(X, y, params, lrs, batch_size=0, loss=0, reduction=0):
    """The reference fit with plain SGD, positionally as the op's schema takes it."""
    return ref.linear_fit_(X, y, params, [], torch.as_tensor(lrs, dtype=torch.float64), None, batch_size,
                           loss, reduction, 1.0, 0, SGD_SETTINGS, 0)


TORCH_LOSSES = {0: F.mse_loss, 1: F.l1_loss, 2: F.huber_loss}


def _autograd_linear_step(X, y, w, b, lr, loss, reduction):
    w = w.clone().requires_grad_()
    b = b.clone().requires_grad_() if b is not None else None
    pred = X @ w.t() + (b if b is not None else 0)
    value = TORCH_LOSSES[loss](pred, y, reduction=reduction)
    value.backward()
    with torch.no_grad():
        w -= lr * w.grad
        if b is not None:
            b -= lr * b.grad
    return value.detach(), w.detach(), None if b is None else b.detach()


@given(n=st.integers(1, 64), d=st.integers(1, 9), k=st.integers(1, 3), bias=st.booleans(),
       loss=st.sampled_from([0, 1, 2]), reduction=st.sampled_from(["mean", "sum"]), seed=st.integers(0, 2**31))
def test_linear_step_matches_autograd(n, d, k, bias, loss, reduction, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, k, generator=g, dtype=torch.float64)
    w = torch.randn(k, d, generator=g, dtype=torch.float64)
    b = torch.randn(k, generator=g, dtype=torch.float64) if bias else None
    expected = _autograd_linear_step(X, y, w, b, 0.01, loss, reduction)
    losses = _fit(X, y, [w] if b is None else [w, b], [0.01], loss=loss, reduction=0 if reduction == "mean" else 1)
    torch.testing.assert_close(losses[0], expected[0])
    torch.testing.assert_close(w, expected[1])
    if bias:
        torch.testing.assert_close(b, expected[2])


def test_linear_fit_minibatch_epoch_loss_is_the_sample_weighted_mean():
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(10, 2, generator=g, dtype=torch.float64), torch.randn(10, 1, generator=g, dtype=torch.float64)
    w, b = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    w2, b2 = w.clone(), b.clone()
    losses = _fit(X, y, [w, b], [0.1], batch_size=4)
    # by hand: batches of 4, 4 and 2 rows, each loss weighted by its share of the rows
    parts = []
    for start, stop in ((0, 4), (4, 8), (8, 10)):
        loss = _fit(X[start:stop], y[start:stop], [w2, b2], [0.1])[0]
        parts.append(loss * (stop - start) / 10)
    torch.testing.assert_close(losses[0], sum(parts))
    assert torch.equal(w, w2) and torch.equal(b, b2)


def test_linear_fit_stops_on_non_finite_and_keeps_finite_parameters():
    X = torch.linspace(0, 1, 20, dtype=torch.float64).unsqueeze(1)
    y = 3 * X + 0.8
    w, b = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    losses = _fit(X, y, [w, b], torch.full((2000,), 1e3, dtype=torch.float64))
    bad = (~torch.isfinite(losses)).nonzero()
    assert bad.numel() > 0, "a learning rate of 1000 must diverge"
    first = int(bad[0])
    assert torch.isfinite(losses[:first]).all() and torch.isnan(losses[first + 1:]).all()
    assert torch.isfinite(w).all() and torch.isfinite(b).all()


def _three_epochs(ops, X, y):
    """Weight, bias and the three epoch losses (float64) of a full-batch fit from zero."""
    w, b = torch.zeros(1, 1, dtype=X.dtype), torch.zeros(1, dtype=X.dtype)
    losses = ops.linear_fit_(X, y, [w, b], [], torch.full((3,), 0.01, dtype=torch.float64), None, 0,
                             0, 0, 1.0, 0, SGD_SETTINGS, 0)
    return torch.cat([w.reshape(-1), b, losses]).double()


def _million_rows():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(1_000_000, 1, generator=g) * 10
    return X, 3 * X + 0.8 + torch.randn(1_000_000, 1, generator=g)


def test_linear_fit_in_float32_stays_with_float64_over_a_million_rows():
    # A plain float32 matmul over the rows drifts: the weight came out 4e-5, the bias 2.4e-4
    # and the last loss 1.6e-3 relative away from float64 here (50M rows: 0.512 against 0.534).
    # Summing 128-row runs in float32 and the runs in float64 keeps within a few ulps.
    X, y = _million_rows()
    torch.testing.assert_close(_three_epochs(ref, X, y), _three_epochs(ref, X.double(), y.double()),
                               rtol=2e-6, atol=0)


def test_linear_fit_in_float32_agrees_with_the_compiled_ops_over_a_million_rows():
    compiled, reason = _extension.load()
    if compiled is None:
        pytest.skip(f"no compiled ops: {reason}")
    X, y = _million_rows()
    torch.testing.assert_close(_three_epochs(ref, X, y), _three_epochs(compiled, X, y), rtol=2e-6, atol=0)


def test_squared_error_in_float32_stays_with_float64_over_millions_of_values():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(4_000_000, generator=g) * 10, torch.rand(4_000_000, generator=g)
    for code in (0, 1):
        single = ref.mse_loss_fwd(pred, target, code)[0]
        double = ref.mse_loss_fwd(pred.double(), target.double(), code)[0]
        torch.testing.assert_close(single.double(), double, rtol=1e-6, atol=0)
