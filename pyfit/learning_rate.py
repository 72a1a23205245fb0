"""``lr="auto"``: a learning rate that follows from the data, and the range test behind ``pyfit.find_lr``.

For a model linear in its parameters under a squared error, the loss is a
quadratic whose curvature is the design's Gram matrix ``G = Z.T @ Z / N`` (Z is
the design matrix with a column of ones for the bias). Gradient descent with a
step ``lr <= 1 / L``, L the largest curvature, never increases the loss, so it
cannot diverge. L comes from the largest eigenvalue of G, bounded from above by
``trace(G**(2**m)) ** (1 / 2**m)``: power iteration on G itself by repeated
squaring, which for P columns overestimates by a factor of at most
``P ** (1 / 2**m)`` (m is chosen so that is at most 5 %) and never
underestimates, unlike power iteration from one vector. Designs too large to
square (many columns) take 30 passes of power iteration on Z instead: an
estimate, not a bound, used with a 10 % margin.

Minibatch SGD needs a smaller step: with batches of m rows whose largest row
norm is beta (squared), ``m / (beta + (m - 1) * L)`` is the largest step for
which minibatch SGD on least squares contracts in expectation (Ma, Bassily and
Belkin, 2018); it equals 1 / L for the full batch and 1 / beta for one row.

Momentum m (heavy ball or Nesterov) lengthens the steps: in steady state each
gradient moves the parameters ``lr / (1 - m)`` in all. Full batch, 1 / L stays
stable: on a quadratic heavy ball converges for ``lr * L < 2 (1 + m)`` and
Nesterov for ``lr * L < 2 (1 + m) / (1 + 2 m)``, both above 1 for any m in
[0, 1) (Polyak, 1964). With minibatches the noise of every batch is carried
along for 1 / (1 - m) steps, so the minibatch step is scaled by (1 - m): the
effective step ``lr / (1 - m)`` is then the momentum-free safe one (dampening
only shortens the steps further, so it is left out of the bound).

Every other model, loss or optimizer gets a learning-rate range test: a copy of
the model takes one step at each of a geometric series of learning rates, and
the suggestion is a tenth of the rate where the loss was lowest (past that
point larger steps stop helping, and a tenth of it is still on the descending
side). The range test leaves the model and the global random state as they
were.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

# largest design, in columns, whose Gram matrix is squared for the bound
_MAX_SQUARED_COLUMNS = 512
_MAX_GRAM_WORK = 2_000_000_000  # N * P**2 multiply-adds to form G
_POWER_PASSES = 30
_POWER_MARGIN = 1.1
_BOUND_SLACK = 1.05  # the squared-trace bound overestimates by at most this factor


def with_ones(Z: Tensor, bias: bool) -> Tensor:
    """The design Z with a column of ones after it for a bias (Z itself without one)."""
    return torch.cat([Z, torch.ones(Z.shape[0], 1, dtype=Z.dtype, device=Z.device)], 1) if bias else Z


def largest_curvature(Z: Tensor) -> Tuple[float, bool]:
    """(bound, proven): the largest eigenvalue of ``Z.T @ Z / N`` for a design Z (N, P).

    ``proven`` is True when the value is a guaranteed upper bound (the Gram
    matrix is squared), False when it is a power-iteration estimate.

    >>> import torch
    >>> value, proven = largest_curvature(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    >>> round(value, 6), proven  # eigenvalues of diag(1, 9) / 2: 0.5 and 4.5
    (4.5, True)
    """
    n, p = Z.shape
    Z64 = Z.double()
    if p <= _MAX_SQUARED_COLUMNS and n * p * p <= _MAX_GRAM_WORK:
        return gram_bound(Z64.T @ Z64 / n), True
    generator = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(p, dtype=torch.float64, generator=generator).to(Z.device)
    value = 0.0
    for _ in range(_POWER_PASSES):
        w = Z64.T @ (Z64 @ v) / n  # (P,)
        value = float(v @ w)  # the Rayleigh quotient of the unit vector v
        norm = float(w.norm())
        if norm == 0:
            return 0.0, False
        v = w / norm
    return value * _POWER_MARGIN, False


def gram_bound(gram: Tensor) -> float:
    """A guaranteed upper bound, within a few percent, on the largest eigenvalue of a (P, P) Gram matrix."""
    p = gram.shape[0]
    trace = float(torch.trace(gram))
    if trace <= 0:
        return 0.0
    # G ** (2 ** j) = exp(log_size) * B_j with trace(B_j) = 1: normalizing keeps the powers in range
    squarings = max(1, math.ceil(math.log2(max(math.log(p) / math.log(_BOUND_SLACK), 1.0))))
    power, log_size = gram / trace, math.log(trace)
    for _ in range(squarings):
        power = power @ power
        size = float(torch.trace(power))
        log_size = 2 * log_size + math.log(size)
        power = power / size
    # one part in 1e9 covers the rounding of the squarings in float64
    return math.exp(log_size / 2 ** squarings) * (1 + 1e-9)


def squared_error_lr(design: Tensor, bias: bool, outputs: int, reduction: str, batch_size: Optional[int],
                     weight_decay: float = 0.0, momentum: float = 0.0) -> Tuple[float, str]:
    """The step of SGD on ``design @ W.T + b`` under a mean or summed squared error, and why.

    design is (N, P); ``reduction="mean"`` averages over rows and the ``outputs``
    columns (pyfit's ``mse``), ``"sum"`` adds them (``sse``); ``momentum`` is
    SGD's (see the module's docstring for how it shortens minibatch steps).
    """
    Z = with_ones(design, bias)
    n = Z.shape[0]
    curvature, proven = largest_curvature(Z)
    rows = n if batch_size is None or batch_size >= n else batch_size
    largest_row = float((Z.double() ** 2).sum(1).max()) if rows < n else 0.0
    return lr_for_curvature(curvature, proven, largest_row, n, outputs, reduction, batch_size, weight_decay,
                            momentum)


def lr_for_curvature(curvature: float, proven: bool, largest_row: float, n: int, outputs: int, reduction: str,
                     batch_size: Optional[int], weight_decay: float = 0.0, momentum: float = 0.0) -> Tuple[float, str]:
    """squared_error_lr from the design's largest curvature (the top eigenvalue of its Gram matrix over
    its n rows) and, for minibatches, its largest squared row norm."""
    rows = n if batch_size is None or batch_size >= n else batch_size
    if rows < n:
        # the largest curvature a batch of `rows` rows shows, in expectation (see the module's docstring)
        curvature = (largest_row + (rows - 1) * curvature) / rows
    # the loss's Hessian per output: 2 / outputs * G_batch (mean), 2 * rows * G_batch (sum)
    factor = 2.0 / outputs if reduction == "mean" else 2.0 * rows
    top = factor * curvature + weight_decay
    if top <= 0:
        return 1.0, "the design is all zeros; any step is safe"
    how = "an upper bound" if proven else "a power-iteration estimate"
    batch = "full-batch" if rows == n else f"minibatch ({rows} rows)"
    reason = (f"1/L for {batch} gradient descent on a squared error, L = {top:.4g} from {how} of the largest "
              "eigenvalue of the design's Gram matrix")
    if not momentum:
        return 1.0 / top, reason
    if rows == n:
        return 1.0 / top, reason + (f"; stable with momentum {momentum:g} too (heavy ball up to lr*L = 2(1+m), "
                                    "Nesterov up to 2(1+m)/(1+2m), both above 1)")
    return (1.0 - momentum) / top, (reason.replace("1/L for", "(1 - momentum)/L for", 1)
                                    + f", scaled for momentum {momentum:g} so that lr/(1 - momentum) is 1/L")


@dataclass
class LRFinder:
    """The outcome of a learning-rate range test: the rates tried, their losses and the suggestion."""

    lrs: List[float]
    losses: List[float]  # the (smoothed, for minibatches) loss before the step at each rate
    lr: float  # the suggestion
    reason: str
    title: str = "learning-rate range test"
    extra: dict = field(default_factory=dict)

    def plot(self, path: Optional[str] = None):
        """Loss against learning rate (log x), the suggestion marked; saved to ``path`` when given."""
        from .plot import _finish, _pyplot

        fig, ax = _pyplot().subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses, color="tab:blue", label="loss before the step")
        ax.axvline(self.lr, color="tab:red", linestyle="--", label=f"suggested lr {self.lr:.3g}")
        ax.set_xscale("log")
        if self.losses and min(self.losses) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title(self.title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        return _finish(fig, path)


def _fused_full_batch(model: nn.Module, loss_fn: Any, optimizer: Any, X: Tensor, y: Tensor):
    """The fused runner of full-batch epochs of this model, loss and optimizer, or None where it does not
    compute exactly what autograd would (see _fusable)."""
    from ._fusable import fusion_plan
    from ._runners import FusedLinear

    plan = fusion_plan(model, loss_fn, optimizer, X)
    if plan is None:
        return None
    return FusedLinear(model, plan, optimizer, X, y, None, False, torch.Generator(), None)


def _batch_starts(n: int, rows: int) -> Iterator[int]:
    """Where a range test's successive batches of ``rows`` of the ``n`` rows begin: in order, round again."""
    start = 0
    while True:
        yield start
        start = start + rows if start + rows < n else 0


class _Smoothed:
    """A range test's loss series: each full-batch loss as it is, minibatch losses as an exponential
    average, bias-corrected."""

    def __init__(self, full_batch: bool):
        self.full_batch, self.average, self.count = full_batch, 0.0, 0

    def __call__(self, value: float) -> float:
        if self.full_batch:
            return value
        self.count += 1
        self.average = 0.9 * self.average + 0.1 * value
        return self.average / (1 - 0.9 ** self.count)


def shared_steps(make_runner: Callable[[nn.Module, Any], Any], rows: int, total: int):
    """A range test's steps (see range_test's ``steps``) through a runner that adds each step's gradient over
    chunks of a file or over ranks: ``make_runner(trial, optimizer)``, batches of ``rows`` of ``total``."""

    def steps(trial: nn.Module, optimizer: Any, rates: Sequence[float]) -> Iterator[Tuple[float, float]]:
        runner = make_runner(trial, optimizer)
        smooth = _Smoothed(rows == total)
        for lr, start in zip(rates, _batch_starts(total, rows)):
            for group in optimizer.param_groups:
                group["lr"] = lr
            yield lr, smooth(runner.step_rows(start, min(start + rows, total)))

    return steps


def _stepped_losses(trial: nn.Module, loss_fn: Any, optimizer: Any, X: Tensor, y: Tensor, rows: int,
                    rates: Sequence[float]) -> Iterator[Tuple[float, float]]:
    """``(lr, loss)`` for each rate in turn: the loss on the next batch before a step at that rate, then the
    step once the next pair is asked for (a caller that stops asking takes no further step). Minibatch
    losses are an exponential average, bias-corrected."""
    from ._runners import match_prediction
    from .optimizers import requires_closure

    needs_closure = requires_closure(optimizer)
    n = X.shape[0]
    smooth = _Smoothed(rows == n)
    for lr, start in zip(rates, _batch_starts(n, rows)):
        for group in optimizer.param_groups:
            group["lr"] = lr
        xb, yb = X[start:start + rows], y[start:start + rows]
        loss = loss_fn(match_prediction(trial(xb), yb), yb, model=trial)
        yield lr, smooth(float(loss.detach()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if needs_closure:  # L-BFGS evaluates the loss again inside its step

            def closure(xb=xb, yb=yb):
                optimizer.zero_grad(set_to_none=True)
                again = loss_fn(match_prediction(trial(xb), yb), yb, model=trial)
                again.backward()
                return again

            optimizer.step(closure)
        else:
            optimizer.step()


def range_test(model: nn.Module, loss_fn: Any, make_optimizer: Callable[[List[Tensor], float], Any],
               X: Tensor, y: Tensor, *, batch_size: Optional[int] = None, start_lr: float = 1e-6,
               end_lr: float = 10.0, steps: int = 100, title: str = "learning-rate range test",
               stepped: Optional[Callable[[nn.Module, Any, Sequence[float]], Iterator[Tuple[float, float]]]] = None
               ) -> LRFinder:
    """One step at each of ``steps`` geometrically spaced rates on a copy of ``model``; see :class:`LRFinder`.

    ``make_optimizer(params, lr)`` builds the optimizer to test. Batches are
    taken in order (no random draws); the test stops early once the loss is four
    times its lowest or stops being finite. ``stepped(trial, optimizer, rates)``,
    when given, yields ``(lr, loss)`` for the steps instead of X and y (rows that
    are not all in this process: see shared_steps).
    """
    trial = copy.deepcopy(model)
    trial.train()
    params = [p for p in trial.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, start_lr)
    rows = X.shape[0] if batch_size is None or batch_size >= X.shape[0] else batch_size
    ratio = (end_lr / start_lr) ** (1.0 / max(steps - 1, 1))
    rates = [start_lr * ratio ** step for step in range(steps)]
    lrs, losses = [], []
    best = math.inf
    # the same steps in one compiled call where the fused loop computes them, else one autograd step at a time
    fused = _fused_full_batch(trial, loss_fn, optimizer, X, y) if rows == X.shape[0] and stepped is None else None
    with torch.random.fork_rng(devices=[]):
        if stepped is not None:
            series = stepped(trial, optimizer, rates)
        elif fused is not None:
            series = zip(rates, fused.epochs_at(rates))
        else:
            series = _stepped_losses(trial, loss_fn, optimizer, X, y, rows, rates)
        for lr, value in series:
            if not math.isfinite(value):
                break
            lrs.append(lr)
            losses.append(value)
            best = min(best, value)
            if value > 4 * best:
                break
    if not losses:
        return LRFinder([], [], start_lr, f"the loss was not finite even at lr {start_lr:g}; the start lr is "
                                          "returned", title)
    lowest = min(range(len(losses)), key=losses.__getitem__)
    suggestion = lrs[lowest] / 10
    if lowest == 0:
        suggestion = lrs[0]
        reason = f"the loss was lowest at the smallest rate tried ({lrs[0]:.3g}); try a smaller start_lr"
    else:
        reason = f"a tenth of the rate with the lowest loss in a range test ({lrs[lowest]:.3g})"
    return LRFinder(lrs, losses, suggestion, reason, title)


def _is_sgd(optimizer: Any) -> bool:
    from .registry import OPTIMIZERS

    factory = OPTIMIZERS.entry(optimizer).obj if isinstance(optimizer, str) else optimizer
    return isinstance(factory, type) and issubclass(factory, torch.optim.SGD)


def is_least_squares_sgd(model: nn.Module, loss_fn: Any, optimizer: Any) -> Optional[str]:
    """The squared-error reduction ("mean" or "sum") when SGD fits a model linear in its parameters, else None."""
    from ._fusable import squared_error_reduction
    from .scaling import declares_linear_in_parameters

    reduction = squared_error_reduction(loss_fn)
    if _is_sgd(optimizer) and declares_linear_in_parameters(model) and reduction is not None:
        return reduction
    return None


def auto_lr(model: nn.Module, loss_fn: Any, optimizer: Any, settings: dict, X: Tensor, y: Tensor,
            batch_size: Optional[int], build: Callable[[List[Tensor], float], Any]) -> Tuple[float, str]:
    """``lr="auto"``: the learning rate a fit of ``model`` starts with, and why.

    SGD on a model that declares itself linear in its parameters under a mean or
    summed squared error takes :func:`squared_error_lr` on its design matrix;
    anything else runs :func:`range_test` with ``build(params, lr)``, which
    makes the fit's optimizer with its other settings.
    """
    reduction = is_least_squares_sgd(model, loss_fn, optimizer)
    if reduction is not None:
        with torch.no_grad():
            design = model.design_matrix(X)
        outputs = 1 if y.dim() == 1 else y.shape[1]
        weight_decay = float(settings.get("weight_decay") or 0.0)
        momentum = float(settings.get("momentum") or 0.0)
        return squared_error_lr(design, getattr(model, "bias", None) is not None, outputs, reduction, batch_size,
                                weight_decay, momentum)
    found = range_test(model, loss_fn, build, X, y, batch_size=batch_size)
    return found.lr, found.reason


def _closure_optimizer_lr(optimizer: Any) -> Optional[float]:
    """The default lr of an optimizer that needs a closure (a range test steps without one), else None."""
    import inspect

    from .optimizers import NEEDS_CLOSURE
    from .registry import OPTIMIZERS

    entry = OPTIMIZERS.entry(optimizer) if isinstance(optimizer, str) else OPTIMIZERS.entry_of(optimizer)
    factory = entry.obj if entry is not None else optimizer
    needs = (entry is not None and NEEDS_CLOSURE in entry.flags) or getattr(factory, "requires_closure", False) is True \
        or (isinstance(factory, type) and issubclass(factory, torch.optim.LBFGS))
    if not needs:
        return None
    try:
        default = inspect.signature(factory).parameters["lr"].default
    except (KeyError, TypeError, ValueError):
        return 1.0
    return float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else 1.0


def starting_lr(lr: Any, optimizer: Any, optimizer_kwargs: dict, resumed: bool, model: nn.Module, loss_fn: Any,
                X: Tensor, y: Tensor, batch_size: Optional[int],
                choose: Callable[..., Tuple[float, str]] = None) -> Tuple[Optional[float], str]:
    """The lr a fit builds its optimizer with (None: the resumed or the optimizer's own), and why.

    ``choose`` takes auto_lr's arguments and picks the rate (auto_lr by default).
    """
    from .optimizers import build_optimizer
    from .validation import check_optimizer_settings

    if lr != "auto" and lr is not None:
        return lr, "given"
    if isinstance(optimizer, torch.optim.Optimizer):
        return None, "the optimizer's own"
    if resumed:
        return None, "the resumed fit's"
    if not any(p.requires_grad for p in model.parameters()):
        return None, "none: the model has no parameters to fit"  # building the optimizer says so
    check_optimizer_settings({**optimizer_kwargs, "lr": 1.0})  # before a range test builds optimizers with them
    own = _closure_optimizer_lr(optimizer)
    if own is not None:
        return own, "the optimizer's own default: it takes a closure and sizes its steps itself (L-BFGS)"

    def build(params: List[Tensor], rate: float) -> Any:
        settings = {**optimizer_kwargs, "lr": rate}
        return build_optimizer(optimizer, params, **settings) if isinstance(optimizer, str) \
            else optimizer(params, **settings)

    rate, reason = (choose or auto_lr)(model, loss_fn, optimizer, optimizer_kwargs, X, y, batch_size, build)
    return rate, f"auto: {reason}"


def find_lr(model: Any, X: Any, y: Any, *, loss: Any = "mse", optimizer: Any = "sgd",
            batch_size: Optional[int] = None, standardize: bool = False, seed: Optional[int] = None,
            model_kwargs: Optional[dict] = None, loss_kwargs: Optional[dict] = None, start_lr: float = 1e-6,
            end_lr: float = 10.0, steps: int = 100, plot: Optional[str] = None, **optimizer_kwargs: Any) -> LRFinder:
    """Run a learning-rate range test for a fit of ``model`` to (X, y); ``.lr`` is the suggestion.

    Takes ``fit``'s model, loss, optimizer, batch and scaling arguments; nothing
    given is changed (a model object is tested on a copy). ``plot=PATH`` saves
    loss against learning rate with the suggestion marked.

    >>> import torch, pyfit
    >>> X = torch.linspace(0, 1, 40).reshape(-1, 1); y = 3 * X[:, 0] + 0.8
    >>> found = pyfit.find_lr("linear", X, y, seed=0)
    >>> 1e-6 <= found.lr <= 10
    True
    """
    from .fit import _resolve_model
    from .losses import as_loss, build_loss
    from .optimizers import build_optimizer
    from .scaling import Standardized, inner_model, standardized
    from .validation import check_fit_data, check_optimizer_settings, check_positive, check_positive_int

    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        check_positive(name, value)
    if not end_lr > start_lr:
        raise ValueError(f"end_lr must be larger than start_lr, got {start_lr!r} and {end_lr!r}")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size, allow_none=True)
    check_optimizer_settings({"lr": start_lr, **optimizer_kwargs})
    dtype = next((p.dtype for p in model.parameters()), None) if isinstance(model, nn.Module) else None
    X, y = check_fit_data(X, y, dtype)
    built = _resolve_model(model, X, y, seed, dict(model_kwargs or {}))
    if standardize and not isinstance(built, Standardized):
        built = standardized(built, X)
    loss_fn = build_loss(loss, **(loss_kwargs or {})) if isinstance(loss, str) else as_loss(loss)

    def build(params: List[Tensor], lr: float) -> Any:
        settings = {**optimizer_kwargs, "lr": lr}
        return build_optimizer(optimizer, params, **settings) if isinstance(optimizer, str) \
            else optimizer(params, **settings)

    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "optimizer")
    shown = type(inner_model(built)).__name__ + (" (standardized)" if isinstance(built, Standardized) else "")
    title = f"learning-rate range test: {shown}, {loss if isinstance(loss, str) else 'loss'}, {name}"
    found = range_test(built, loss_fn, build, X, y, batch_size=batch_size, start_lr=start_lr, end_lr=end_lr,
                       steps=steps, title=title)
    if plot is not None:
        found.plot(plot)
    return found
