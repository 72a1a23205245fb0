"""pyfit's built-in optimizers against torch's, on every configuration torch's own optimizer tests use.

torch ships those configurations in ``torch.testing._internal.common_optimizers.optim_db``.
Each one is run through the torch class and the pyfit class on the same params
(0-dim, empty, non-contiguous, a few sizes) and the same gradients (some None),
comparing params and state_dicts after every step, and loading each class's
state_dict into the other half way.
"""

import copy
import warnings

import pytest
import torch
from torch.testing._internal.common_optimizers import OptimizerErrorEnum, optim_db

import pyfit
from pyfit import optimizers

PYFIT_CLASS = {
    torch.optim.SGD: optimizers.SGD,
    torch.optim.Adam: optimizers.Adam,
    torch.optim.AdamW: optimizers.AdamW,
    torch.optim.RMSprop: optimizers.RMSprop,
    torch.optim.Adagrad: optimizers.Adagrad,
}
INFOS = [info for info in optim_db if info.optim_cls in PYFIT_CLASS]
STEPS = 4
# float32: within 1e-6 of torch (pyfit's fused kernel may round a multiply-add differently);
# float64 tighter
TOLERANCE = {torch.float32: dict(rtol=1e-6, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}

# Every param (and grad) is a view of a base of its own, so that each copy keeps its layout:
# (base shape, view of the base)
PARAM_LAYOUTS = [
    ((), lambda t: t),                   # 0-dim
    ((0,), lambda t: t),                 # empty
    ((2, 0), lambda t: t),               # empty, 2-d
    ((1,), lambda t: t),
    ((5,), lambda t: t),
    ((3, 4), lambda t: t),
    ((4, 3), lambda t: t.t()),           # non-contiguous: transposed
    ((3, 6), lambda t: t[:, ::2]),       # non-contiguous: strided
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors are tiny: on a busy machine, waking a thread pool per fused step costs
    far more than the step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def configurations(info):
    """Every configuration of ``info`` on the CPU, each also with foreach, fused and differentiable on.

    torch's own helper adds foreach only on devices with foreach kernels; the CPU
    has none, but the classes take foreach=True there (through the _foreach ops), so
    it is tried here too. Nothing is skipped: every configuration runs on the CPU.
    """
    flags = [flag for flag in info.supported_impls if flag != "fused" or "cpu" in info.supports_fused_on]
    for optim_input in info.optim_inputs_func(device="cpu"):
        yield optim_input.desc, dict(optim_input.kwargs)
        for flag in flags:
            yield f"{optim_input.desc} & {flag}", {**optim_input.kwargs, flag: True}


CASES = [pytest.param(info.optim_cls, kwargs, id=f"{info.optim_cls.__name__}-{desc}")
         for info in INFOS for desc, kwargs in configurations(info)]
PLAIN_CASES = [case for case in CASES if not case.values[1].get("differentiable")]
DIFFERENTIABLE_CASES = [case for case in CASES if case.values[1].get("differentiable")]


def initial_values(dtype):
    g = torch.Generator().manual_seed(0)
    return [view(torch.randn(shape, generator=g, dtype=dtype)) for shape, view in PARAM_LAYOUTS]


def gradient_sequence(dtype):
    """STEPS lists of grads laid out like the params; None where (3 * step + i) % 5 == 0, so some
    params get their first grad late and some skip a step after having state."""
    g = torch.Generator().manual_seed(1)
    steps = []
    for step in range(STEPS):
        grads = []
        for i, (shape, view) in enumerate(PARAM_LAYOUTS):
            grad = view(torch.randn(shape, generator=g, dtype=dtype))
            grads.append(None if (3 * step + i) % 5 == 0 else grad)
        steps.append(grads)
    return steps


def laid_out(value, layout):
    """A copy of ``value`` laid out as ``layout`` (a PARAM_LAYOUTS entry) says, in its own storage."""
    shape, view = layout
    return view(torch.zeros(shape, dtype=value.dtype)).copy_(value)


def leaf_params(values):
    return [torch.nn.Parameter(laid_out(value, layout)) for value, layout in zip(values, PARAM_LAYOUTS)]


def take_step(optimizer, params, grads):
    """One step; returns None, or the error it raised (type and message) for comparison."""
    for param, grad, layout in zip(params, grads, PARAM_LAYOUTS):
        param.grad = None if grad is None else laid_out(grad, layout)
    try:
        optimizer.step()
    except (RuntimeError, TypeError, ValueError) as error:
        return type(error), str(error)
    return None


def close(a, b, tolerance):
    """torch.testing.assert_close's verdict (same structure, types, dtypes, shapes; values
    within tolerance), computed quickly: it runs thousands of times here."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.allclose(a, b, equal_nan=True, **tolerance)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(close(x, y, tolerance) for x, y in zip(a, b))
    return a == b


def assert_same(mine, theirs, tolerance, what):
    if not close(mine, theirs, tolerance):  # assert_close says where and by how much
        torch.testing.assert_close(mine, theirs, **tolerance, msg=lambda m: f"{what}: {m}")
        raise AssertionError(f"{what}: {mine} != {theirs}")


class Run:
    """One optimizer over its own params, following a reference run of a torch optimizer."""

    def __init__(self, name, cls, params, kwargs, reference=None, state=None):
        self.name, self.params = name, params
        self.optimizer = cls(params, **copy.deepcopy(kwargs))
        if state is not None:  # a copy, as after torch.save/torch.load
            self.optimizer.load_state_dict(copy.deepcopy(state))
        self.reference = reference

    def restarted(self, name, cls, kwargs, reference):
        """A fresh ``cls`` over a copy of these params, loaded from this optimizer's state_dict."""
        return Run(name, cls, leaf_params([p.detach() for p in self.params]), kwargs, reference,
                   self.optimizer.state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("torch_class, kwargs", PLAIN_CASES)
def test_optimizer_matches_torch_step_by_step(torch_class, kwargs, dtype):
    """Params and state_dict equal torch's after every step; half way, each class also
    continues from the other's state_dict as torch continues from its own. Where torch's
    step raises (its fused SGD cannot take a param whose first grad comes late), pyfit's
    raises the same error."""
    tolerance = TOLERANCE[dtype]
    values, grads = initial_values(dtype), gradient_sequence(dtype)
    pyfit_class = PYFIT_CLASS[torch_class]
    theirs = Run("torch", torch_class, leaf_params(values), kwargs)
    runs = [theirs, Run("pyfit", pyfit_class, leaf_params(values), kwargs, reference=theirs)]
    for step in range(STEPS):
        if step == STEPS // 2:
            mine = runs[1]
            reloaded = theirs.restarted("torch loaded from torch", torch_class, kwargs, None)
            runs += [reloaded, theirs.restarted("pyfit loaded from torch", pyfit_class, kwargs, reloaded),
                     mine.restarted("torch loaded from pyfit", torch_class, kwargs, reloaded)]
        for run in runs:  # references come before the runs that follow them
            error = take_step(run.optimizer, run.params, grads[step])
            if run.reference is None:
                run.error = error
                continue
            expected = run.reference
            assert error == expected.error, f"{run.name}, step {step}: raised {error}, {expected.name} {expected.error}"
            for i, (param, want) in enumerate(zip(run.params, expected.params)):
                assert_same(param.detach(), want.detach(), tolerance, f"{run.name}, step {step}, param {i}")
            assert_same(run.optimizer.state_dict(), expected.optimizer.state_dict(), tolerance,
                        f"{run.name}, step {step}, state_dict")
        if theirs.error is not None:
            return  # pyfit raised as torch did; neither can go on


def differentiated_steps(cls, kwargs, values, grads):
    """STEPS differentiable steps from ``values``; returns the params and the gradient of
    their sum of squares with respect to ``values``, or the error torch's autograd raised."""
    leaves = [param.detach().requires_grad_() for param in leaf_params(values)]
    params = [leaf.clone() for leaf in leaves]  # non-leaf, so that the in-place steps are recorded
    optimizer = cls(params, **copy.deepcopy(kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # .grad of a non-leaf tensor
        for step in range(STEPS):
            error = take_step(optimizer, params, grads[step])
            if error is not None:
                return error
    try:
        gradients = torch.autograd.grad(sum((p * p).sum() for p in params), leaves)
    except RuntimeError as error:
        return type(error), str(error)
    return [p.detach() for p in params], gradients


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("torch_class, kwargs", DIFFERENTIABLE_CASES)
def test_differentiable_optimizer_matches_torch_values_and_gradients(torch_class, kwargs, dtype):
    """With differentiable=True the steps are part of the graph: the params after the steps
    and their gradients with respect to the starting values are torch's. (Where torch's own
    backward fails, as for amsgrad and centered RMSprop over several steps, pyfit's fails alike.)"""
    values, grads = initial_values(dtype), gradient_sequence(dtype)
    theirs = differentiated_steps(torch_class, kwargs, values, grads)
    mine = differentiated_steps(PYFIT_CLASS[torch_class], kwargs, values, grads)
    if isinstance(theirs[0], type):
        assert mine == theirs
        return
    assert_same(mine, theirs, TOLERANCE[dtype], "params and gradients through the steps")


ERROR_CASES = [pytest.param(info.optim_cls, error, id=f"{info.optim_cls.__name__}-{error.optimizer_error_input.desc}")
               for info in INFOS for error in info.optim_error_inputs_func(device="cpu", dtype=torch.float32)]


@pytest.mark.parametrize("torch_class, error", ERROR_CASES)
def test_settings_torch_refuses_are_refused(torch_class, error):
    """What torch refuses, pyfit refuses with the same error type (InputError is a ValueError)."""
    optim_input = error.optimizer_error_input
    params = optim_input.params
    if params is None:
        params = [torch.nn.Parameter(torch.ones(2))]
    pyfit_class = PYFIT_CLASS[torch_class]
    if issubclass(error.error_type, Warning):
        with pytest.warns(error.error_type):
            pyfit_class(params, **optim_input.kwargs)
        return
    with pytest.raises(error.error_type):
        optimizer = pyfit_class(params, **optim_input.kwargs)
        if error.error_on == OptimizerErrorEnum.STEP_ERROR:
            optimizer.step()


def test_every_registered_builtin_is_covered():
    """A new built-in optimizer gets a torch twin here, or this fails."""
    builtins = {pyfit.OPTIMIZERS[name] for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad")}
    assert builtins == set(PYFIT_CLASS.values())
    assert {info.optim_cls for info in INFOS} == set(PYFIT_CLASS)
