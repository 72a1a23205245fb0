"""The fused linear fit against plain autograd with torch.optim, for every loss and optimizer.

The oracle is the same fit written the plain way: ``F.linear``, torch's own loss
(``mse_loss``, ``l1_loss``, ``huber_loss``), ``backward`` and a ``torch.optim``
optimizer with its default implementation. Parameters, the optimizer's state
(``exp_avg`` and the rest) and the epoch losses must agree after several epochs,
full batch and minibatch, in float64 and float32, on the reference and the compiled
ops (the ``backend`` fixture).
"""

import inspect
import zlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

import pyfit
from pyfit.errors import InputError

# name -> (pyfit's optimizer, its settings, the torch.optim class the oracle runs)
OPTIMIZERS = {
    "sgd": ("sgd", {}, torch.optim.SGD),
    "sgd-momentum": ("sgd", {"momentum": 0.9}, torch.optim.SGD),
    "sgd-nesterov": ("sgd", {"momentum": 0.8, "nesterov": True}, torch.optim.SGD),
    "sgd-dampening": ("sgd", {"momentum": 0.9, "dampening": 0.3}, torch.optim.SGD),
    "sgd-weight-decay-maximize": ("sgd", {"momentum": 0.5, "weight_decay": 0.1, "maximize": True},
                                  torch.optim.SGD),
    "adam": ("adam", {"betas": (0.8, 0.95)}, torch.optim.Adam),
    "adam-amsgrad": ("adam", {"amsgrad": True, "weight_decay": 0.05}, torch.optim.Adam),
    "adamw": ("adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}, torch.optim.AdamW),
    "adam-maximize-eps": ("adam", {"maximize": True, "eps": 1e-3}, torch.optim.Adam),
    "rmsprop": ("rmsprop", {}, torch.optim.RMSprop),
    "rmsprop-centered": ("rmsprop", {"centered": True, "alpha": 0.9}, torch.optim.RMSprop),
    "rmsprop-momentum": ("rmsprop", {"momentum": 0.8}, torch.optim.RMSprop),
    "rmsprop-weight-decay-centered-momentum": (
        "rmsprop", {"weight_decay": 0.05, "centered": True, "momentum": 0.5}, torch.optim.RMSprop),
    "adagrad": ("adagrad", {}, torch.optim.Adagrad),
    "adagrad-decay-initial": ("adagrad", {"lr_decay": 0.1, "weight_decay": 0.05,
                                          "initial_accumulator_value": 0.5}, torch.optim.Adagrad),
}
# pyfit's loss -> torch's
LOSSES = {
    "squared": lambda pred, y, reduction, delta: F.mse_loss(pred, y, reduction=reduction),
    "absolute": lambda pred, y, reduction, delta: F.l1_loss(pred, y, reduction=reduction),
    "huber": lambda pred, y, reduction, delta: F.huber_loss(pred, y, reduction=reduction, delta=delta),
}
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=2e-4, atol=2e-5)}


def _generator(*key):
    """A generator seeded from the test's parameters: each case draws its own random problem."""
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _problem(gen, dtype, n=None):
    """X (N, D), y (N, K), weight (K, D) and a bias or None, with K <= 3 and D <= 6."""
    n = n or int(torch.randint(5, 20, (), generator=gen))
    d, k = (int(v) for v in torch.randint(1, 7, (1,), generator=gen).tolist() + torch.randint(
        1, 4, (1,), generator=gen).tolist())
    X = torch.randn(n, d, generator=gen, dtype=dtype)
    y = X @ torch.randn(d, k, generator=gen, dtype=dtype) + 0.3 * torch.randn(n, k, generator=gen, dtype=dtype)
    weight = 0.5 * torch.randn(k, d, generator=gen, dtype=dtype)
    bias = torch.randn(k, generator=gen, dtype=dtype) if bool(torch.rand((), generator=gen) < 0.7) else None
    return X, y, weight, bias


def _initial_state(params, optimizer, settings):
    """Fresh state, as torch.optim starts it (Adagrad's sum at initial_accumulator_value)."""
    names = pyfit.ops.state_names(optimizer, _op_settings(settings))
    start = {"sum": settings.get("initial_accumulator_value", 0.0)}
    return [torch.full_like(p, start.get(name, 0.0)) for p in params for name in names]


def _op_settings(settings):
    """The settings the op reads: Adagrad's initial_accumulator_value only sets the initial state."""
    return {k: v for k, v in settings.items() if k != "initial_accumulator_value"}


def _oracle(X, y, weight, bias, *, loss, reduction, delta, optimizer_class, settings, lrs, order,
            batch_size, optimizer=None, params=None):
    """The fit the plain way: autograd and torch.optim, one step per batch; returns params, optimizer, losses."""
    if params is None:
        params = [torch.nn.Parameter(weight.clone())] + ([] if bias is None else [torch.nn.Parameter(bias.clone())])
    if optimizer is None:
        # AdamW is decoupled by its class, and takes no decoupled_weight_decay argument
        accepted = inspect.signature(optimizer_class).parameters
        optimizer = optimizer_class(params, lr=float(lrs[0]), **{k: v for k, v in settings.items() if k in accepted})
    n = X.shape[0]
    batch = n if batch_size is None else min(batch_size, n)
    losses = []
    for epoch, lr in enumerate(lrs):
        optimizer.param_groups[0]["lr"] = float(lr)
        rows = torch.arange(n) if order is None else order[epoch]
        total = 0.0
        for start in range(0, n, batch):
            index = rows[start:start + batch]
            pred = F.linear(X[index], params[0], params[1] if len(params) == 2 else None)
            value = LOSSES[loss](pred, y[index], reduction, delta)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            total += value.item() * (len(index) / n if reduction == "mean" else 1.0)
        losses.append(total)
    return params, optimizer, torch.tensor(losses, dtype=torch.float64)


def _assert_same_state(params, state, theirs, optimizer, names, tol):
    for i, (mine, their) in enumerate(zip(params, theirs)):
        torch.testing.assert_close(mine, their.detach(), **tol)
        for j, name in enumerate(names):
            torch.testing.assert_close(state[i * len(names) + j], optimizer.state[their][name], **tol,
                                       msg=lambda m: f"{name} of params[{i}]: {m}")


_ORACLES = {}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("batching", ["full", "minibatch"])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("config", list(OPTIMIZERS))
def test_fit_matches_autograd_with_torch_optim(backend, config, loss, batching, dtype):
    optimizer, settings, optimizer_class = OPTIMIZERS[config]
    gen = _generator(config, loss, batching, dtype)
    X, y, weight, bias = _problem(gen, dtype)
    n, epochs = X.shape[0], 4
    lrs = torch.tensor([0.05, 0.04, 0.03, 0.02], dtype=torch.float64)
    reduction = "sum" if bool(torch.rand((), generator=gen) < 0.3) else "mean"
    if reduction == "sum":
        lrs = lrs / n
    delta = float(torch.rand((), generator=gen)) + 0.2
    order = batch_size = None
    if batching == "minibatch":
        order = torch.stack([torch.randperm(n, generator=gen) for _ in range(epochs)])
        batch_size = int(torch.randint(1, n + 2, (), generator=gen))
    kwargs = dict(loss=loss, reduction=reduction, delta=delta)
    key = (config, loss, batching, dtype)  # the same problem on every backend: one oracle run
    if key not in _ORACLES:
        _ORACLES[key] = _oracle(X, y, weight, bias, **kwargs, optimizer_class=optimizer_class,
                                settings=settings, lrs=lrs, order=order, batch_size=batch_size)
    theirs, torch_optimizer, expected = _ORACLES[key]
    params = [weight.clone()] + ([] if bias is None else [bias.clone()])
    state = _initial_state(params, optimizer, settings)
    losses = pyfit.ops.linear_fit_(X, y, params, state, lrs=lrs, order=order, batch_size=batch_size,
                                   optimizer=optimizer, settings=_op_settings(settings), **kwargs)
    assert losses.dtype == dtype and losses.shape == (epochs,)
    torch.testing.assert_close(losses.double(), expected, **TOL[dtype])
    names = pyfit.ops.state_names(optimizer, _op_settings(settings))
    _assert_same_state(params, state, theirs, torch_optimizer, names, TOL[dtype])


@pytest.mark.parametrize("config", ["sgd-momentum", "sgd-nesterov", "adam-amsgrad", "adamw",
                                    "rmsprop-weight-decay-centered-momentum", "adagrad-decay-initial"])
def test_a_fit_continues_from_torch_optims_state_and_step(backend, config):
    # torch runs three epochs, then the op takes over its state and step count
    optimizer, settings, optimizer_class = OPTIMIZERS[config]
    X, y, weight, bias = _problem(_generator(config), torch.float64)
    lrs = torch.full((3,), 0.05, dtype=torch.float64)
    kwargs = dict(loss="huber", reduction="mean", delta=0.5, optimizer_class=optimizer_class,
                  settings=settings, order=None, batch_size=4)
    theirs, torch_optimizer, _ = _oracle(X, y, weight, bias, lrs=lrs, **kwargs)
    names = pyfit.ops.state_names(optimizer, _op_settings(settings))
    params = [p.detach().clone() for p in theirs]
    state = [torch_optimizer.state[p][name].clone() for p in theirs for name in names]
    # torch's SGD keeps no step count: any step after the first has a history
    step = int(torch_optimizer.state[theirs[0]].get("step", 12))
    _, _, expected = _oracle(X, y, weight, bias, lrs=lrs, params=theirs, optimizer=torch_optimizer, **kwargs)
    losses = pyfit.ops.linear_fit_(X, y, params, state, lrs=lrs, batch_size=4, loss="huber", delta=0.5,
                                   optimizer=optimizer, settings=_op_settings(settings), step=step)
    torch.testing.assert_close(losses.double(), expected, **TOL[torch.float64])
    _assert_same_state(params, state, theirs, torch_optimizer, names, TOL[torch.float64])


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW,
                                             torch.optim.RMSprop, torch.optim.Adagrad])
def test_a_torch_param_group_is_taken_as_it_is(backend, optimizer_class):
    X, y, weight, bias = _problem(_generator(optimizer_class.__name__), torch.float64)
    lrs = torch.full((5,), 0.03, dtype=torch.float64)
    theirs, torch_optimizer, expected = _oracle(
        X, y, weight, bias, loss="squared", reduction="mean", delta=1.0, optimizer_class=optimizer_class,
        settings={}, lrs=lrs, order=None, batch_size=None)
    group = torch_optimizer.param_groups[0]  # its params, lr, foreach, ... are not settings
    name = {"AdamW": "adam"}.get(optimizer_class.__name__, optimizer_class.__name__.lower())
    params = [weight.clone()] + ([] if bias is None else [bias.clone()])
    state = [torch.zeros_like(p) for p in params for _ in pyfit.ops.state_names(name, group)]
    losses = pyfit.ops.linear_fit_(X, y, params, state, lrs=lrs, optimizer=name, settings=group)
    torch.testing.assert_close(losses.double(), expected, **TOL[torch.float64])
    _assert_same_state(params, state, theirs, torch_optimizer, pyfit.ops.state_names(name, group),
                       TOL[torch.float64])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adagrad"])
def test_linear_step_is_one_full_batch_epoch(backend, optimizer):
    X, y, weight, bias = _problem(_generator("step", optimizer), torch.float64)
    optimizer_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop,
                       "adagrad": torch.optim.Adagrad}[optimizer]
    theirs, torch_optimizer, expected = _oracle(
        X, y, weight, bias, loss="absolute", reduction="sum", delta=1.0, optimizer_class=optimizer_class,
        settings={}, lrs=[0.01], order=None, batch_size=None)
    params = [weight.clone()] + ([] if bias is None else [bias.clone()])
    state = _initial_state(params, optimizer, {})
    loss = pyfit.ops.linear_step_(X, y, params, state, lr=0.01, loss="absolute", reduction="sum",
                                  optimizer=optimizer)
    assert loss.shape == ()
    torch.testing.assert_close(loss.double(), expected[0], **TOL[torch.float64])
    _assert_same_state(params, state, theirs, torch_optimizer, pyfit.ops.state_names(optimizer),
                       TOL[torch.float64])


# --- a step that goes non-finite is undone: params and state as before it ------------

NON_FINITE = {
    "adam-amsgrad": ("adam", {"amsgrad": True}),
    "adamw": ("adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    "rmsprop-centered-momentum": ("rmsprop", {"centered": True, "momentum": 0.9}),
    "adagrad": ("adagrad", {"lr_decay": 0.01}),
    "sgd-momentum": ("sgd", {"momentum": 0.9}),
}


def _fresh(config, batch_size):
    optimizer, settings = NON_FINITE[config]
    X, y, weight, bias = _problem(_generator("non-finite", config), torch.float64, n=12)
    bias = torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias
    params = [weight.clone(), bias.clone()]
    return X, y, params, _initial_state(params, optimizer, settings), dict(
        optimizer=optimizer, settings=settings, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [None, 5], ids=["full", "minibatch"])
@pytest.mark.parametrize("config", list(NON_FINITE))
def test_an_overflowing_update_is_undone_with_its_state(backend, config, batch_size):
    # epoch 2's first step has an infinite lr: its update is not finite and is undone
    X, y, params, state, kwargs = _fresh(config, batch_size)
    losses = pyfit.ops.linear_fit_(X, y, params, state, lrs=[0.01, 0.02, float("inf"), 0.01], **kwargs)
    X, y, expected_params, expected_state, _ = _fresh(config, batch_size)
    expected = pyfit.ops.linear_fit_(X, y, expected_params, expected_state, lrs=[0.01, 0.02], **kwargs)
    assert torch.equal(losses[:2], expected) and torch.isnan(losses[2:]).all()
    for mine, theirs in zip(params + state, expected_params + expected_state):
        assert torch.equal(mine, theirs)


@pytest.mark.parametrize("config", list(NON_FINITE))
def test_a_non_finite_loss_stops_the_fit_before_any_update(backend, config):
    X, y, params, state, kwargs = _fresh(config, None)
    X[3, 0] = float("inf")
    before = [t.clone() for t in params + state]
    losses = pyfit.ops.linear_fit_(X, y, params, state, lrs=[0.01, 0.01], **kwargs)
    assert not torch.isfinite(losses[0]) and torch.isnan(losses[1])
    for t, old in zip(params + state, before):
        assert torch.equal(t, old)


# --- edge cases ----------------------------------------------------------------------

def test_zero_epochs_write_nothing_and_return_no_losses(backend):
    X, y, params, state, kwargs = _fresh("adam-amsgrad", 3)
    before = [t.clone() for t in params + state]
    losses = pyfit.ops.linear_fit_(X, y, params, state, lrs=[], **kwargs)
    assert losses.shape == (0,)
    assert all(torch.equal(t, old) for t, old in zip(params + state, before))


def test_zero_rows_are_refused(backend):
    X, y = torch.empty(0, 3, dtype=torch.float64), torch.empty(0, 1, dtype=torch.float64)
    w = torch.ones(1, 3, dtype=torch.float64)
    with pytest.raises(InputError, match="needs at least one row"):
        pyfit.ops.linear_step_(X, y, [w], lr=0.5, reduction="sum")
    assert torch.equal(w, torch.ones(1, 3, dtype=torch.float64))
    assert pyfit.ops.linear_fit_(X, y, [w], lrs=[]).shape == (0,)


@pytest.mark.parametrize("n, batch_size", [(1, None), (1, 1), (7, 1), (7, 7), (7, 100), (7, 3)])
def test_any_row_count_and_batch_size(backend, n, batch_size):
    X, y, weight, bias = _problem(_generator("rows", n, batch_size), torch.float64, n=n)
    order = torch.stack([torch.randperm(n, generator=_generator(n, e)) for e in range(3)])
    lrs = torch.full((3,), 0.1, dtype=torch.float64)
    theirs, torch_optimizer, expected = _oracle(
        X, y, weight, bias, loss="huber", reduction="mean", delta=0.7, optimizer_class=torch.optim.RMSprop,
        settings={"momentum": 0.5}, lrs=lrs, order=order, batch_size=batch_size)
    params = [weight.clone()] + ([] if bias is None else [bias.clone()])
    state = _initial_state(params, "rmsprop", {"momentum": 0.5})
    losses = pyfit.ops.linear_fit_(X, y, params, state, lrs=lrs, order=order, batch_size=batch_size,
                                   loss="huber", delta=0.7, optimizer="rmsprop", settings={"momentum": 0.5})
    torch.testing.assert_close(losses.double(), expected, **TOL[torch.float64])
    _assert_same_state(params, state, theirs, torch_optimizer, ("square_avg", "momentum_buffer"),
                       TOL[torch.float64])


def test_fit_reaches_the_least_squares_solution(backend):
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(500, 4, generator=gen, dtype=torch.float64)
    y = X @ torch.randn(4, 1, generator=gen, dtype=torch.float64) + 0.5
    w, b = torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    pyfit.ops.linear_fit_(X, y, [w, b], [torch.zeros_like(w), torch.zeros_like(b)], lrs=[0.1] * 300,
                          optimizer="sgd", settings={"momentum": 0.5})
    A = torch.cat([X, torch.ones(500, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(A, y).solution.squeeze(1)
    torch.testing.assert_close(torch.cat([w[0], b]), solution, atol=1e-8, rtol=1e-8)


# --- the compiled op against the reference on wider and taller problems ---------------

@st.composite
def wide_problems(draw):
    """Row counts past the kernels' 128-row blocks, the widths with their own row kernels
    (8, 16, 32), odd widths, non-contiguous X; any loss, optimizer and batching."""
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n, d = draw(st.sampled_from([130, 300, 2500])), draw(st.sampled_from([1, 8, 16, 32, 37]))
    k = draw(st.sampled_from([1, 1, 2, 3]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    X = torch.randn(d, n, generator=gen, dtype=dtype).t() if draw(st.booleans()) else torch.randn(
        n, d, generator=gen, dtype=dtype)
    y = torch.randn(n, k, generator=gen, dtype=dtype)
    params = [0.1 * torch.randn(k, d, generator=gen, dtype=dtype)]
    if draw(st.booleans()):
        params.append(torch.randn(k, generator=gen, dtype=dtype))
    config = draw(st.sampled_from(list(OPTIMIZERS)))
    batch_size = draw(st.sampled_from([None, 1, 7, 64]))
    order = torch.stack([torch.randperm(n, generator=gen) for _ in range(3)]) if batch_size and draw(
        st.booleans()) else None
    kwargs = dict(lrs=[0.01, 0.005, 0.0025], order=order, batch_size=batch_size,
                  loss=draw(st.sampled_from(list(LOSSES))), reduction=draw(st.sampled_from(["mean", "sum"])),
                  delta=draw(st.sampled_from([0.5, 1.5])))
    return X, y, params, config, kwargs


@settings(max_examples=30, deadline=None)
@given(wide_problems())
def test_compiled_op_matches_the_reference(problem):
    X, y, params, config, kwargs = problem
    optimizer, settings, _ = OPTIMIZERS[config]
    results = []
    for name in ("python", "cpp"):
        try:
            pyfit.ops.set_backend(name)
        except pyfit.ops.BackendUnavailableError as error:
            pytest.skip(f"no cpp backend: {error}")
        mine = [p.clone() for p in params]
        state = _initial_state(mine, optimizer, settings)
        losses = pyfit.ops.linear_fit_(X, y, mine, state, optimizer=optimizer, settings=_op_settings(settings),
                                       **kwargs)
        results.append([losses] + mine + state)
    pyfit.ops.set_backend("auto")
    # a fit that runs away (batch 1, sum, maximize) overflows at a step that rounding decides
    assume(bool(torch.isfinite(results[0][0]).all()) and bool((results[0][0].abs() < 1e20).all()))
    # float32: up to 3 x 2500 single-row steps whose rounding (FMA in the kernel, torch's
    # matmul in the reference) compounds; an update rule that differs is off by far more
    tol = TOL[X.dtype] if X.dtype == torch.float64 else dict(rtol=1e-3, atol=1e-4)
    for reference, compiled in zip(*results):
        torch.testing.assert_close(compiled, reference, **tol)


def test_compiled_op_is_deterministic_at_fixed_threads(backend):
    X, y = torch.randn(300_000, 16), torch.randn(300_000, 1)
    results = []
    for _ in range(2):
        w = torch.zeros(1, 16)
        state = [torch.zeros_like(w), torch.zeros_like(w)]
        losses = pyfit.ops.linear_fit_(X, y, [w], state, lrs=[0.1] * 3, optimizer="adam", loss="huber")
        results.append((losses, w, *state))
    assert all(torch.equal(a, b) for a, b in zip(*results))


# --- names ---------------------------------------------------------------------------

def test_unknown_names_are_refused_by_name():
    X, y, w = torch.randn(4, 2), torch.randn(4, 1), torch.zeros(1, 2)
    with pytest.raises(ValueError, match="unknown loss 'l2': expected one of squared, absolute, huber"):
        pyfit.ops.linear_fit_(X, y, [w], lrs=[0.1], loss="l2")
    with pytest.raises(ValueError, match="unknown optimizer 'adamw': expected one of sgd, adam, rmsprop, adagrad"):
        pyfit.ops.linear_fit_(X, y, [w], lrs=[0.1], optimizer="adamw")
    with pytest.raises(ValueError, match="unknown reduction 'max'"):
        pyfit.ops.linear_step_(X, y, [w], lr=0.1, reduction="max")
    with pytest.raises(ValueError, match="adam takes no setting momentum, nesterov: its settings are betas, "):
        pyfit.ops.linear_fit_(X, y, [w], lrs=[0.1], optimizer="adam", settings={"momentum": 0.9, "nesterov": True})
    with pytest.raises(ValueError, match="sgd takes no setting betas"):
        pyfit.ops.state_names("sgd", {"betas": (0.9, 0.99)})
    with pytest.raises(ValueError, match=r"params must be a list of tensors \(\[weight\] or \[weight, bias\]\)"):
        pyfit.ops.linear_fit_(X, y, w, lrs=[0.1])
    assert torch.equal(w, torch.zeros(1, 2))


def test_state_names_follow_torch_optims_state():
    params = [torch.nn.Parameter(torch.randn(3))]
    cases = [(torch.optim.SGD, "sgd", {"momentum": 0.9}), (torch.optim.SGD, "sgd", {}),
             (torch.optim.Adam, "adam", {"amsgrad": True}), (torch.optim.AdamW, "adam", {}),
             (torch.optim.RMSprop, "rmsprop", {"momentum": 0.5, "centered": True}),
             (torch.optim.RMSprop, "rmsprop", {}), (torch.optim.Adagrad, "adagrad", {})]
    for optimizer_class, name, settings in cases:
        optimizer = optimizer_class(params, lr=0.1, **settings)
        params[0].grad = torch.ones(3)
        optimizer.step()
        expected = sorted(k for k in optimizer.state[params[0]] if k != "step")
        assert sorted(pyfit.ops.state_names(name, settings)) == expected, (optimizer_class, settings)


def test_opcheck_of_the_compiled_op():
    try:
        pyfit.ops.set_backend("cpp")
    except pyfit.ops.BackendUnavailableError as error:
        pytest.skip(f"no cpp backend: {error}")
    try:
        X, y = torch.randn(20, 3), torch.randn(20, 2)
        w, b = torch.randn(2, 3), torch.randn(2)
        state = [torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.zeros(2)]
        lrs = torch.full((2,), 0.1, dtype=torch.float64)
        order = torch.stack([torch.randperm(20), torch.randperm(20)])
        adam = pyfit.ops._settings.settings_vector(pyfit.ops._settings.ADAM, {"amsgrad": False})
        torch.library.opcheck(torch.ops.pyfit.linear_fit_.default,
                              (X, y, [w, b], state, lrs, order, 6, 2, 0, 0.5, 1, adam, 3))
        sgd = pyfit.ops._settings.settings_vector(pyfit.ops._settings.SGD, {})
        torch.library.opcheck(torch.ops.pyfit.linear_fit_.default,
                              (X, y, [w], [], lrs, None, 0, 0, 1, 1.0, 0, sgd, 0))
    finally:
        pyfit.ops.set_backend("auto")
