"""pyfit's SGD against torch.optim.SGD: same parameters, same state_dict, many steps."""

import copy
import itertools
import re

import pytest
import torch

import pyfit

CASES = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd, maximize=mx)
    for m, d, n, wd, mx in itertools.product([0.0, 0.9], [0.0, 0.5], [False, True], [0.0, 0.01], [False, True])
    if not (n and (m == 0 or d != 0))
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_sgd_equals_torch_sgd(kw):
    g = torch.Generator().manual_seed(7)
    shapes = [(4, 3), (3,), (1,)]
    init = [torch.randn(s, generator=g) for s in shapes]
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    a = pyfit.SGD(mine, lr=0.05, **kw)
    b = torch.optim.SGD(theirs, lr=0.05, **kw)
    for step in range(25):
        grads = [torch.randn(s, generator=g) for s in shapes]
        for i, (p, q) in enumerate(zip(mine, theirs)):
            none = step in (0, 3) and i == 1  # also a first step without a gradient
            p.grad = None if none else grads[i].clone()
            q.grad = None if none else grads[i].clone()
        a.step()
        b.step()
    for p, q in zip(mine, theirs):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for key in sa["state"]:
        assert sa["state"][key].keys() == sb["state"][key].keys()
        for name in sa["state"][key]:
            torch.testing.assert_close(sa["state"][key][name], sb["state"][key][name], rtol=1e-6, atol=1e-6)


def test_sgd_state_dict_round_trips_with_torch():
    p = torch.nn.Parameter(torch.ones(3))
    torch_opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(3)
    torch_opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    mine = pyfit.SGD([q], lr=0.1, momentum=0.9)
    # a copy, as after torch.save/torch.load: state_dict() shares the live buffers
    mine.load_state_dict(copy.deepcopy(torch_opt.state_dict()))
    p.grad, q.grad = torch.full((3,), 0.5), torch.full((3,), 0.5)
    torch_opt.step()
    mine.step()
    torch.testing.assert_close(p, q)


def test_sgd_param_groups_each_get_their_settings():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = pyfit.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 1.0, "momentum": 0.5}], lr=0.5)
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((2,), 0.9))
    torch.testing.assert_close(b.detach(), torch.zeros(2))


@pytest.mark.parametrize("kw, message", [
    (dict(lr=-1.0), "lr must be a number >= 0, got -1.0"),
    (dict(lr=torch.tensor([0.1, 0.2])), "lr must be a number or a 1-element tensor, got a tensor of shape (2,)"),
    (dict(lr=0.1, momentum=-0.1), "momentum must be a number >= 0, got -0.1"),
    (dict(lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (dict(lr=0.1, nesterov=True, momentum=0.9, dampening=0.1), "nesterov=True needs dampening=0"),
    (dict(lr=0.1, weight_decay=-1), "weight_decay must be"),
])
def test_settings_torch_refuses_are_refused_with_a_clear_message(kw, message):
    p = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError):  # torch refuses each of these too
        torch.optim.SGD([p], **kw)
    with pytest.raises(pyfit.InputError, match=re.escape(message)):
        pyfit.build_optimizer("sgd", [p], **kw)


def test_torch_optimizers_get_the_same_checks():
    with pytest.raises(pyfit.InputError, match="lr must be"):
        pyfit.build_optimizer("adam", [torch.nn.Parameter(torch.ones(1))], lr=-0.1)


def test_sgd_state_dict_round_trips_to_torch():
    p = torch.nn.Parameter(torch.ones(3))
    mine = pyfit.SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    p.grad = torch.ones(3)
    mine.step()
    q = torch.nn.Parameter(p.detach().clone())
    theirs = torch.optim.SGD([q], lr=0.1, momentum=0.9, nesterov=True)
    theirs.load_state_dict(copy.deepcopy(mine.state_dict()))
    p.grad, q.grad = torch.full((3,), 0.5), torch.full((3,), 0.5)
    mine.step()
    theirs.step()
    torch.testing.assert_close(q, p)
    torch.testing.assert_close(theirs.state_dict(), mine.state_dict())


def test_sgd_state_dict_has_no_entry_for_a_param_without_grad():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    c, d = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    mine = pyfit.SGD([a, b], lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD([c, d], lr=0.1, momentum=0.9)
    a.grad, c.grad = torch.ones(2), torch.ones(2)  # b and d never get one
    for _ in range(2):
        mine.step()
        theirs.step()
    assert list(mine.state_dict()["state"]) == [0]
    torch.testing.assert_close(mine.state_dict(), theirs.state_dict())


def scaled_sgd_steps(cls, grad_factors, **kw):
    """Steps of ``cls`` under a CPU GradScaler (scale 100): the param after each."""
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = cls([p], lr=1.0, **kw)
    scaler = torch.amp.GradScaler("cpu", init_scale=100.0)
    seen = []
    for factor in grad_factors:
        optimizer.zero_grad()
        scaler.scale((p * factor).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        seen.append(p.detach().clone())
    return seen


@pytest.mark.parametrize("fused", [True, None])  # fused: the optimizer unscales; None: the scaler does
def test_sgd_under_grad_scaler_unscales_and_skips_inf_steps(fused):
    # grads 1, 1, inf, 1: each finite one is unscaled to 1 (lr 1), the inf one is skipped
    seen = scaled_sgd_steps(pyfit.SGD, [1.0, 1.0, float("inf"), 1.0], fused=fused)
    expected = [torch.full((3,), v) for v in (0.0, -1.0, -1.0, -2.0)]
    torch.testing.assert_close(seen, expected)
    # with momentum too, exactly what torch's SGD does
    factors = [1.0, 2.0, float("inf"), 0.5, -1.0]
    kw = dict(momentum=0.9, weight_decay=0.1, fused=fused)
    torch.testing.assert_close(scaled_sgd_steps(pyfit.SGD, factors, **kw),
                               scaled_sgd_steps(torch.optim.SGD, factors, **kw))


def test_fused_sgd_with_momentum_equals_torch_over_steps():
    g = torch.Generator().manual_seed(3)
    init = [torch.randn(s, generator=g) for s in [(4, 3), (3,), ()]]
    mine, theirs = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    kw = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01, fused=True)
    a, b = pyfit.SGD(mine, **kw), torch.optim.SGD(theirs, **kw)
    for _ in range(5):
        for p, q in zip(mine, theirs):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(a.state_dict(), b.state_dict())


# With weight decay (or momentum after the first step, whose buffer torch detaches) the update
# depends on the starting value, so a step autograd did not record gives a wrong gradient.
# torch's own differentiable SGD cannot differentiate a tensor lr through two momentum steps
# (the buffer it saved is changed in place), so that pair is not tried.
@pytest.mark.parametrize("momentum, weight_decay, lr_requires_grad, steps",
                         [(0.0, 0.0, True, 2), (0.9, 0.1, False, 2), (0.0, 0.1, True, 1)])
def test_differentiable_sgd_step_is_differentiable(momentum, weight_decay, lr_requires_grad, steps):
    g = torch.Generator().manual_seed(4)
    w0, grad1, grad2 = (torch.randn(3, generator=g, dtype=torch.float64) for _ in range(3))
    results = []
    for cls in (pyfit.SGD, torch.optim.SGD):
        w = w0.clone().requires_grad_()
        lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=lr_requires_grad)
        p = w.clone()  # non-leaf: the in-place steps are recorded on it
        optimizer = cls([p], lr=lr, momentum=momentum, weight_decay=weight_decay, differentiable=True)
        for grad in (grad1, grad2)[:steps]:
            p.grad = grad.clone()
            optimizer.step()
        inputs = (w, lr) if lr_requires_grad else (w,)
        results.append((p.detach(), *torch.autograd.grad((p * p).sum(), inputs)))
    torch.testing.assert_close(results[0], results[1])
    if momentum:
        return
    # closed form: p = (1 - lr * wd) * w - lr * g1 (one step) or w - lr * ((1 + m) g1 + g2) (two, no
    # weight decay): d(sum p^2)/dw = 2p (1 - lr * wd), d(sum p^2)/dlr = -2 p . (p's lr coefficient)
    direction = grad1 + weight_decay * w0 if steps == 1 else (1 + momentum) * grad1 + grad2
    p, dw = results[0][:2]
    torch.testing.assert_close(p, w0 - 0.1 * direction)
    torch.testing.assert_close(dw, 2 * p * (1 - 0.1 * weight_decay))
    if lr_requires_grad:
        torch.testing.assert_close(results[0][2], -2 * (p * direction).sum())


def embedding_and_params(dtypes):
    """A sparse-gradient embedding plus one param per dtype, all starting from the same values."""
    embedding = torch.nn.Embedding(6, 2, sparse=True)
    with torch.no_grad():
        embedding.weight.copy_(torch.linspace(-1, 1, 12).reshape(6, 2))
    return embedding, [torch.nn.Parameter(torch.linspace(-1, 1, 4).to(dtype)) for dtype in dtypes]


SMALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64, torch.complex128]


def assert_same_as_torch(mine, theirs):
    """Exactly torch's numbers where torch's update ran; within 1e-6 (float32) or 1e-12 (float64)
    of them on the kernel, whose fused multiply-adds may round differently."""
    tolerance = {torch.float32: 1e-6, torch.float64: 1e-12}
    for a, b in zip(mine, theirs):
        rtol = tolerance.get(a.dtype, 0.0)
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9, nesterov=True, weight_decay=0.1),
                                dict(momentum=0.9, dampening=0.3, maximize=True)], ids=str)
def test_sgd_takes_every_dtype_and_sparse_grads_as_torch_does(kw):
    # one group mixing both routes: the kernel's dense float32/float64 and torch's update for the
    # rest (torch's update takes sparse grads only without weight decay)
    sparse = not kw.get("weight_decay")
    runs = []
    for cls in (pyfit.SGD, torch.optim.SGD):
        embedding, params = embedding_and_params(SMALL_DTYPES)
        if sparse:
            params.insert(0, embedding.weight)
        optimizer = cls(params, lr=0.1, **kw)
        for step in range(3):
            optimizer.zero_grad()
            if sparse:
                embedding(torch.tensor([step, 4])).sum().backward()
            for p in params[int(sparse):]:
                p.grad = torch.full_like(p, 0.5 + step)
            optimizer.step()
        buffers = [state["momentum_buffer"] for state in optimizer.state_dict()["state"].values()]
        runs.append([p.detach() for p in params] + buffers)
    assert len(runs[0]) == len(runs[1])
    assert_same_as_torch(*runs)


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_sgd_runs_only_dense_float32_and_float64_on_the_kernel(monkeypatch):
    dtypes_on_kernel = []
    kernel = pyfit.ops.sgd_update_

    def spy(params, *args, **kwargs):
        dtypes_on_kernel.extend(p.dtype for p in params)
        return kernel(params, *args, **kwargs)

    monkeypatch.setattr(pyfit.ops, "sgd_update_", spy)
    embedding, params = embedding_and_params(SMALL_DTYPES)
    optimizer = pyfit.SGD([embedding.weight, *params], lr=0.1, momentum=0.9)
    embedding(torch.tensor([1])).sum().backward()
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert dtypes_on_kernel == [torch.float32, torch.float64]  # the embedding's grad is sparse
    dtypes_on_kernel.clear()
    for settings in (dict(fused=True), dict(differentiable=True), dict(lr=torch.tensor(0.1, requires_grad=True))):
        leaf = torch.nn.Parameter(torch.ones(2))
        # a differentiable step records in-place updates, which a leaf that requires grad refuses
        p = leaf.clone() if settings.get("differentiable") else leaf
        p.grad = torch.ones(2)
        pyfit.SGD([p], **{"lr": 0.1, **settings}).step()
        torch.testing.assert_close(p.detach(), torch.full((2,), 0.9))  # stepped, by torch's update
    assert dtypes_on_kernel == []


@pytest.mark.parametrize("cls, torch_cls, kw", [
    (pyfit.SGD, torch.optim.SGD, dict(lr=0.0)),
    (pyfit.SGD, torch.optim.SGD, dict(lr=torch.tensor(0.1), weight_decay=torch.tensor(0.01), momentum=0.9)),
    (pyfit.SGD, torch.optim.SGD, dict(lr=0.1, dampening=-0.5, momentum=0.9)),
    (pyfit.optimizers.Adam, torch.optim.Adam, dict(lr=torch.tensor(0.01), betas=(torch.tensor(0.8), torch.tensor(0.9)))),
    (pyfit.optimizers.Adam, torch.optim.Adam, dict(lr=0.01, capturable=True)),
    (pyfit.optimizers.Adam, torch.optim.Adam, dict(lr=0.01, foreach=True, amsgrad=True)),
    (pyfit.optimizers.AdamW, torch.optim.AdamW, dict(lr=0.01, fused=True, eps=0.0)),
    (pyfit.optimizers.RMSprop, torch.optim.RMSprop, dict(lr=0.01, foreach=True, centered=True, momentum=0.5)),
    (pyfit.optimizers.Adagrad, torch.optim.Adagrad, dict(lr=torch.tensor(0.1), fused=True, initial_accumulator_value=0.1)),
], ids=lambda v: getattr(v, "__name__", None) or str(v))
def test_settings_torch_accepts_are_accepted(cls, torch_cls, kw):
    """Built as torch builds them; stepped with torch's numbers, or refused at the step as torch
    refuses it (capturable=True needs an accelerator)."""
    def outcome(optimizer_class):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 3))
        optimizer = optimizer_class([p], **copy.deepcopy(kw))
        try:
            for step in range(3):
                p.grad = torch.full((3,), step - 0.5)
                optimizer.step()
        except (AssertionError, RuntimeError) as error:
            return type(error), str(error)
        return p.detach(), optimizer.state_dict()

    mine, theirs = outcome(cls), outcome(torch_cls)
    if isinstance(theirs[0], type):
        assert mine == theirs
    else:
        torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("cls, torch_cls, args", [
    (pyfit.SGD, torch.optim.SGD, (0.1, 0.9, 0, 0.01, True)),
    (pyfit.optimizers.Adam, torch.optim.Adam, (0.01, (0.8, 0.9), 1e-6, 0.1, True)),
    (pyfit.optimizers.AdamW, torch.optim.AdamW, (0.01, (0.8, 0.9))),
    (pyfit.optimizers.RMSprop, torch.optim.RMSprop, (0.01, 0.9, 1e-6, 0.1, 0.5, True)),
    (pyfit.optimizers.Adagrad, torch.optim.Adagrad, (0.1, 0.01, 0.1, 0.2)),
], ids=lambda v: getattr(v, "__name__", None) or str(v))
def test_positional_settings_are_taken_as_torch_takes_them(cls, torch_cls, args):
    p = torch.nn.Parameter(torch.ones(2))
    assert cls([p], *args).defaults == torch_cls([p], *args).defaults


# -- lbfgs: torch's L-BFGS, driven by fit through a closure -------------------------------------

def _least_squares_problem(rows=40, features=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, features, generator=g, dtype=torch.float64)
    y = X @ torch.randn(features, generator=g, dtype=torch.float64) + 0.3 \
        + 0.1 * torch.randn(rows, generator=g, dtype=torch.float64)
    return X, y


@pytest.mark.parametrize("kw", [dict(), dict(line_search_fn="strong_wolfe"), dict(history_size=2, max_iter=5)],
                         ids=["defaults", "strong_wolfe", "short-history"])
def test_lbfgs_equals_torch_lbfgs(kw):
    g = torch.Generator().manual_seed(3)
    A, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    init = torch.randn(4, generator=g, dtype=torch.float64)
    results = []
    for cls in (pyfit.OPTIMIZERS["lbfgs"], torch.optim.LBFGS):
        p = torch.nn.Parameter(init.clone())
        opt = cls([p], lr=0.5, **kw)

        def closure():
            opt.zero_grad()
            loss = ((A @ p - b) ** 2).sum() + (p ** 4).sum()  # not quadratic: the history matters
            loss.backward()
            return loss

        losses = [float(opt.step(closure).detach()) for _ in range(4)]
        results.append((p.detach(), losses, opt.state_dict()))
    (p1, l1, s1), (p2, l2, s2) = results
    assert l1 == l2
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    assert s1["param_groups"] == s2["param_groups"]
    assert s1["state"][0].keys() == s2["state"][0].keys()


def test_lbfgs_fit_reaches_the_least_squares_solution():
    X, y = _least_squares_problem()
    result = pyfit.fit("linear", X, y, optimizer="lbfgs", lr=1.0, epochs=5, seed=0)
    design = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    solution = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)
    fitted = torch.cat([result.model.weight.detach().reshape(-1), result.model.bias.detach()])
    torch.testing.assert_close(fitted, solution, rtol=1e-6, atol=1e-6)
    # the history holds each epoch's loss before its step: the first is the loss at the start
    with torch.no_grad():
        start = pyfit.fit("linear", X, y, optimizer="lbfgs", lr=1.0, epochs=1, seed=0).history["loss"][0]
    assert result.history["loss"][0] == start and result.history["loss"][0] > result.history["loss"][1]
    residual = design @ solution - y
    assert result.history["loss"][-1] == pytest.approx(float((residual ** 2).mean()), rel=1e-9)
    assert result.stop_reason == "completed"


def test_lbfgs_minibatch_loss_is_each_batch_loss_before_its_step():
    X, y = _least_squares_problem(rows=12)
    model = pyfit.Linear(3).double()
    first = [p.detach().clone() for p in model.parameters()]
    result = pyfit.fit(model, X, y, optimizer="lbfgs", lr=0.5, epochs=1, batch_size=12, max_iter=3)
    with torch.no_grad():
        expected = float(((X @ first[0].reshape(-1) + first[1] - y) ** 2).mean())
    assert result.history["loss"] == [pytest.approx(expected, rel=1e-12)]


def test_a_plugin_optimizer_that_asks_for_a_closure_gets_one():
    calls = []

    class ClosureOnly(torch.optim.Optimizer):
        """Steps against the gradient its own closure computes; a plain step() is an error."""

        requires_closure = True

        def __init__(self, params, lr=0.1):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            if closure is None:
                raise RuntimeError("ClosureOnly needs a closure")
            with torch.enable_grad():
                loss = closure()
            calls.append(float(loss))
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-group["lr"])
            return loss

    x = torch.linspace(0, 1, 20)
    result = pyfit.fit("linear", x, 2 * x + 1, optimizer=ClosureOnly, lr=0.5, epochs=200, seed=0)
    assert calls == result.history["loss"] and len(calls) == 200
    assert result.final_loss < 1e-3 and "autograd" in result.backend


def test_a_registered_optimizer_with_the_needs_closure_flag_gets_a_closure():
    from pyfit.optimizers import NEEDS_CLOSURE, requires_closure

    class Strict(torch.optim.SGD):
        def step(self, closure=None):
            if closure is None:
                raise RuntimeError("Strict needs a closure")
            return super().step(closure)

    pyfit.OPTIMIZERS.register("strict-sgd-for-test", Strict, flags=(NEEDS_CLOSURE,))
    try:
        p = torch.nn.Parameter(torch.zeros(1))
        assert requires_closure(Strict([p], lr=0.1)) and not requires_closure(torch.optim.SGD([p], lr=0.1))
        x = torch.linspace(0, 1, 10)
        result = pyfit.fit("linear", x, x, optimizer="strict-sgd-for-test", lr=0.5, epochs=20)
        assert result.stop_reason == "completed" and result.history["loss"][-1] < result.history["loss"][0]
    finally:
        pyfit.OPTIMIZERS.unregister("strict-sgd-for-test")


def test_an_optimizer_that_asks_for_a_closure_and_never_calls_it_is_an_error():
    class Forgetful(torch.optim.SGD):
        requires_closure = True

        def step(self, closure=None):
            return None

    with pytest.raises(RuntimeError, match="Forgetful asks for a closure .* never called it"):
        pyfit.fit("linear", torch.rand(5), torch.rand(5), optimizer=Forgetful, lr=0.1, epochs=2)


def test_lbfgs_checkpoint_resumes_exactly(tmp_path):
    X, y = _least_squares_problem()
    settings = dict(optimizer="lbfgs", lr=0.1, max_iter=2, seed=0)
    pyfit.fit("linear", X, y, epochs=3, checkpoint=tmp_path / "a.pt", **settings)
    resumed = pyfit.fit(None, X, y, epochs=6, resume_from=tmp_path / "a.pt", **settings)
    straight = pyfit.fit("linear", X, y, epochs=6, **settings)
    assert resumed.history["loss"] == straight.history["loss"]
    assert torch.equal(resumed.model.weight, straight.model.weight)
    loaded = pyfit.load_checkpoint(tmp_path / "a.pt")
    assert type(loaded.optimizer) is pyfit.OPTIMIZERS["lbfgs"] and loaded.optimizer.defaults["max_iter"] == 2


def test_lbfgs_step_that_overflows_stops_the_fit_with_the_last_finite_state():
    X, y = _least_squares_problem()
    model = pyfit.Linear(3).double()
    settings = dict(optimizer="lbfgs", lr=1.0, max_iter=3)
    good = pyfit.fit(model, X, y, epochs=2, **settings)
    kept = [p.detach().clone() for p in model.parameters()]
    kept_state = copy.deepcopy(good.optimizer.state_dict())
    # go on from there with a step so long that the parameters overflow within the epoch
    good.optimizer.param_groups[0]["lr"] = 1e308
    result = pyfit.fit(model, X, y, epochs=3, optimizer=good.optimizer)
    assert result.stop_reason == "non_finite" and "epoch 1" in result.stop_detail
    assert result.history["loss"] == []
    assert all(torch.equal(a, b) for a, b in zip(kept, model.parameters()))
    assert good.optimizer.state_dict()["state"][0]["n_iter"] == kept_state["state"][0]["n_iter"]
    torch.testing.assert_close(good.optimizer.state_dict()["state"][0]["d"], kept_state["state"][0]["d"])


@pytest.mark.parametrize("kw, message", [
    (dict(line_search_fn="armijo"), "line_search_fn must be None or 'strong_wolfe', got 'armijo'"),
    (dict(history_size=0), "history_size must be >= 1"),
    (dict(lr=-1.0), "lr must be a number >= 0, got -1.0"),
])
def test_lbfgs_settings_torch_would_fail_on_are_refused_when_built(kw, message):
    with pytest.raises(pyfit.InputError, match=re.escape(message)):
        pyfit.build_optimizer("lbfgs", [torch.nn.Parameter(torch.ones(1))], **kw)


def test_sgd_takes_a_grad_of_another_dtype_as_torch_does():
    results = []
    for cls in (torch.optim.SGD, pyfit.SGD):
        p = torch.nn.Parameter(torch.ones(3))
        p.grad_dtype = None  # torch then keeps a grad of any dtype
        p.grad = torch.full((3,), 0.5, dtype=torch.float64)
        opt = cls([p], lr=0.1, momentum=0.9)
        opt.step()
        opt.step()
        results.append((p.detach().clone(), opt.state_dict()))
    (p_torch, state_torch), (p_pyfit, state_pyfit) = results
    assert torch.equal(p_torch, p_pyfit)
    torch.testing.assert_close(state_torch["state"], state_pyfit["state"])
