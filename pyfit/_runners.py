"""The two ways ``fit`` runs epochs, and the loop that drives either.

* fused linear: a model that declares itself linear in its parameters, a loss
  the loop knows (squared, absolute, Huber) and torch's SGD, Adam, AdamW, RMSprop
  or Adagrad run as ``ops.linear_fit_``: one read of the data per step, many
  epochs per call when no callback needs to see each epoch, the optimizer's state
  kept in ``optimizer.state`` as torch keeps it. Taken only where it computes what
  autograd with the same optimizer would (``_fusable.py``).
* autograd: any model, loss and optimizer, through torch's autograd; pyfit's MSE
  and SGD still run their fused ops there. An optimizer that needs a closure
  (``lbfgs``) gets ``step(closure)``, one per batch.

Both draw minibatch orders from the same generator in the same sequence, record
an epoch's loss as measured before that epoch's updates, and stop on a
non-finite loss with the parameters, optimizer state and scheduler of the end of
the last finite epoch.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn

from . import ops
from . import _fused_state
from ._fusable import FusionPlan, declared_loss, fusion_plan
from .callbacks import INTERRUPTED, NON_FINITE, FitState
from ._shard import Shard
from .losses import MSELoss, SSELoss
from .optimizers import SGD, requires_closure
from .schedulers import step_or_undo, stop_after_failed_step

# about this many multiply-adds per fused call keeps Ctrl-C and progress responsive
_WORK_PER_CALL = 200_000_000
# a fused call plans its epochs in Python (learning rates, scheduler steps, row
# orders): these bound that loop's time and the orders' memory (int64 indices)
_EPOCHS_PER_CALL = 1 << 16
_ORDER_ENTRIES_PER_CALL = 1 << 20
# an autograd call's epochs share one run of the loop in run(), and on the CPU one snapshot
_EPOCHS_PER_AUTOGRAD_CALL = 64
# planning looks at Ctrl-C this often (epochs)
_PLAN_CHECK_EVERY = 256


def _order(generator: torch.Generator, n: int) -> torch.Tensor:
    """One epoch's row order; every path draws its orders through here, one epoch at a time."""
    return torch.randperm(n, generator=generator)


class _Snapshot:
    """Parameters, optimizer state, param-group settings, scheduler and row-order generator, to go back to.

    The tensors are copied into buffers the snapshot keeps, all in one foreach
    copy; ``take`` refreshes it in place, so a snapshot taken every epoch
    allocates nothing once the optimizer's state exists. The scheduler's small
    state_dict is copied.
    """

    def __init__(self, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer, scheduler: Any = None,
                 generator: Optional[torch.Generator] = None, global_rng: bool = False):
        self.live = list(params)  # as given, to tell whether a later call has the same ones
        self.params, self.optimizer = [p.detach() for p in self.live], optimizer
        self.scheduler, self.generator = scheduler, generator
        # torch's own CPU generator (dropout, random init in a forward): for epochs that are replayed
        self.global_rng = global_rng
        self.sources: List[torch.Tensor] = []  # what the last take copied, in order
        self.targets: List[torch.Tensor] = []  # where to: the params' copies, then the state's
        self.take()

    def _walk(self):
        """The tensors to copy (params, then the optimizer's state tensors) and the state's layout: for
        each param with state, its entries in order, a tensor as its index into the tensors, another
        value as a copy."""
        sources = list(self.params)
        layout = []
        state = self.optimizer.state
        self.owned = [p for group in self.optimizer.param_groups for p in group["params"]]
        for p in self.owned:
            if p in state:
                entries = []
                for key, value in state[p].items():
                    if isinstance(value, torch.Tensor):
                        entries.append((key, len(sources), None))
                        sources.append(value)
                    else:
                        entries.append((key, None, copy.copy(value)))
                layout.append((p, entries))
        return sources, layout

    def take(self) -> None:
        """Record the state as it is now (replacing what was recorded)."""
        sources, self.layout = self._walk()
        # optimizers update their state in place: after the first steps the same tensors come back,
        # and the buffers fit them as they are
        same = len(sources) == len(self.sources) and all(
            a is b and a.shape == t.shape and a.dtype == t.dtype
            for a, b, t in zip(sources, self.sources, self.targets))
        if not same:
            self.targets = [torch.empty_like(t, memory_format=torch.preserve_format) for t in sources]
            self.sources = sources
        with torch.no_grad():
            torch._foreach_copy_(self.targets, sources)  # the params are detached, state needs no grad
        self.groups = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.scheduler_state = None if self.scheduler is None else copy.deepcopy(self.scheduler.state_dict())
        self.generator_state = None if self.generator is None else self.generator.get_state()
        self.rng_state = torch.random.get_rng_state() if self.global_rng else None

    def restore(self) -> None:
        """Put everything back; the snapshot's tensors become the live state (use it once)."""
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.targets[:len(self.params)])
        optimizer = self.optimizer
        for p in self.owned:
            optimizer.state.pop(p, None)
        for p, entries in self.layout:
            optimizer.state[p] = {key: value if index is None else self.targets[index]
                                  for key, index, value in entries}
        for group, saved in zip(optimizer.param_groups, self.groups):
            group.update(saved)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(self.scheduler_state)
        if self.generator is not None:
            self.generator.set_state(self.generator_state)
        if self.rng_state is not None:
            torch.random.set_rng_state(self.rng_state)


class _FiniteCheck:
    """Whether an epoch's loss and the parameters after it are finite, with one reduction over the params.

    The largest magnitude of each parameter (``_foreach_norm`` of order inf) is
    inf or NaN exactly when the parameter holds one, and never overflows; the
    largest of those propagates a NaN. What can be decided once per set of
    params is decided here, not every epoch.
    """

    def __init__(self, params: Sequence[torch.Tensor]):
        self.params = [p.detach() for p in params if p.numel()]  # an empty tensor has no largest value
        self.one_reduction = len({p.device for p in self.params}) <= 1 and all(
            p.layout == torch.strided and p.dtype.is_floating_point for p in self.params)

    def __call__(self, loss: torch.Tensor) -> tuple:
        """The loss as a float, and whether it and every parameter are finite."""
        if not self.params:
            value = float(loss)
            return value, math.isfinite(value)
        with torch.no_grad():
            if self.one_reduction:
                largest = self._largest()
                if loss.is_cpu and largest.is_cpu:  # reading a CPU value costs no wait
                    value, largest = float(loss), float(largest)
                else:  # one wait for the device, for both values
                    value, largest = torch.stack([loss, largest.to(loss)]).tolist()
                return value, math.isfinite(value) and math.isfinite(largest)
            value = float(loss)
            return value, math.isfinite(value) and self.params_finite()

    def _largest(self) -> torch.Tensor:
        return torch.stack(torch._foreach_norm(self.params, math.inf)).max()

    def params_finite(self) -> bool:
        """Whether every parameter is finite."""
        with torch.no_grad():
            if not self.params:
                return True
            if self.one_reduction:
                return math.isfinite(float(self._largest()))
            # parameters on several devices, sparse or complex: one check each
            return all(bool(torch.isfinite(p).all()) for p in self.params)


def _non_finite_detail(loss: float, epoch: int) -> str:
    return (f"the loss became {loss} in epoch {epoch}; the model, optimizer and scheduler keep their "
            "state from before that epoch")


class Runner:
    name = "runner"
    work_per_epoch = 1  # what one epoch costs, in the units of _WORK_PER_CALL
    work_per_step = 1  # floating-point operations of one optimizer step, to choose the thread count from
    max_epochs_per_call = 1

    scheduler: Any = None
    optimizer: torch.optim.Optimizer

    def run_epochs(self, state: FitState, count: int, interrupted: Callable[[], bool]) -> None:
        raise NotImplementedError

    def step_scheduler(self) -> Optional[str]:
        """Step the fit's epoch scheduler after an epoch, on either path: None when it stepped (or there is
        none), else why it failed, with the scheduler and the param groups as they were."""
        return None if self.scheduler is None else step_or_undo(self.scheduler, self.optimizer)


class FusedLinear(Runner):
    """Whole epochs of a linear-in-parameters model in one compiled call.

    A call covers epochs whose optimizer settings (all but the learning rate, which
    goes per epoch) are the same; where a scheduler changes one, the call ends
    there, so the result never depends on how the epochs are split into calls.
    """

    def __init__(self, model: nn.Module, plan: FusionPlan, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                 y: torch.Tensor, batch_size: Optional[int], shuffle: bool, generator: torch.Generator,
                 scheduler: Any):
        with torch.no_grad():
            self.features = model.design_matrix(X).contiguous()
        self.targets = y.reshape(y.shape[0], -1).contiguous()
        self.params = [p for p in (model.weight, model.bias) if p is not None]
        self.optimizer, self.plan, self.scheduler = optimizer, plan, scheduler
        n = X.shape[0]
        self.batch_size = None if batch_size is None or batch_size >= n else batch_size
        # optimizer steps per epoch, to count in torch's state["step"]
        self.steps_per_epoch = 1 if self.batch_size is None else -(-n // self.batch_size)
        self.shuffled = shuffle and self.batch_size is not None
        self.generator = generator
        self.work_per_epoch = self.features.numel() * self.targets.shape[1]
        # residuals and gradient: 4 FLOPs per feature, output and row of a batch
        self.work_per_step = 4 * (self.batch_size or n) * self.features.shape[1] * self.targets.shape[1]
        self.max_epochs_per_call = _EPOCHS_PER_CALL
        if self.shuffled:
            self.max_epochs_per_call = max(1, min(_EPOCHS_PER_CALL, _ORDER_ENTRIES_PER_CALL // max(n, 1)))
        self.name = f"{ops.backend()}:fused-linear"

    def _plan(self, count: int, interrupted: Callable[[], bool]):
        """Up to ``count`` epochs that share the optimizer's settings: their settings, lrs and row orders.

        Steps the scheduler once per planned epoch, as the epochs will have run.
        """
        group = self.optimizer.param_groups[0]
        settings = self.plan.settings(group)
        vector = self.plan.vector(settings)
        # where a scheduler step fails, planning ends there and the fit stops after the planned epochs
        self.scheduler_failure: Optional[str] = None
        if self.scheduler is None and not self.shuffled:  # nothing to plan per epoch
            return settings, torch.full((count,), float(group["lr"]), dtype=torch.float64), None
        if self.scheduler is not None:
            # the fused call performs this optimizer's steps; tell torch's scheduler so it
            # does not warn that it is stepped before the optimizer
            self.optimizer._opt_called = True
        lrs: List[float] = []
        orders: List[torch.Tensor] = []
        while len(lrs) < count:
            lrs.append(float(group["lr"]))
            if self.shuffled:
                orders.append(_order(self.generator, self.features.shape[0]))
            if self.scheduler is not None:
                self.scheduler_failure = self.step_scheduler()
                if self.scheduler_failure is not None:
                    break
                if self.plan.vector(group) != vector:
                    break
            if len(lrs) % _PLAN_CHECK_EVERY == 0 and interrupted():
                break
        order = torch.stack(orders).to(self.features.device) if orders else None
        return settings, torch.tensor(lrs, dtype=torch.float64), order

    def _fit(self, settings: Dict[str, Any], lrs: torch.Tensor, order: Optional[torch.Tensor]) -> List[float]:
        plan, state = self.plan, self.optimizer.state
        # the settings of the plan's start: the scheduler has moved the group's past them
        tensors, step = _fused_state.gather(plan.optimizer, settings, state, self.params)
        losses = ops.linear_fit_(
            self.features, self.targets, [p.detach() for p in self.params], tensors,
            lrs=lrs, order=order, batch_size=self.batch_size, loss=plan.loss, reduction=plan.reduction,
            delta=plan.delta, optimizer=plan.optimizer, settings=settings, step=step,
        )
        # a non-finite call is undone from a snapshot, step counts included
        _fused_state.count_steps(plan.optimizer, state, self.params, len(lrs) * self.steps_per_epoch)
        return losses.tolist()

    def epochs_at(self, lrs: Sequence[float]) -> List[float]:
        """One epoch at each learning rate in turn, with the optimizer's settings as they are, and the
        losses before each (non-finite where the epochs stopped, NaN after that): a range test's steps."""
        group = self.optimizer.param_groups[0]
        return self._fit(self.plan.settings(group), torch.tensor(list(lrs), dtype=torch.float64), None)

    def run_epochs(self, state: FitState, count: int, interrupted: Callable[[], bool]) -> None:
        before = _Snapshot(self.params, self.optimizer, self.scheduler, self.generator)
        settings, lrs, order = self._plan(count, interrupted)
        values = self._fit(settings, lrs, order)
        # NaN and inf survive a sum: one Python-level check instead of a scan per epoch
        # (the sum of large finite losses may overflow, hence the scan's default)
        done = len(values) if math.isfinite(sum(values)) else next(
            (i for i, v in enumerate(values) if not math.isfinite(v)), len(values))
        if done < len(values):
            # the kernel kept the last finite step, which may lie inside the failed epoch,
            # and the plan ran ahead of it; go back to the call's start and replay the
            # finite epochs (the kernel is deterministic), so that parameters, buffers,
            # scheduler and generator all end where the failed epoch began
            before.restore()
            if done:
                self._fit(*self._plan(done, lambda: False))
        state.history["loss"].extend(values[:done])
        state.history["lr"].extend(lrs[:done].tolist())
        state.epoch += done
        if done < len(values):
            state.stop(NON_FINITE, _non_finite_detail(values[done], state.epoch + 1))
        elif self.scheduler_failure is not None:
            stop_after_failed_step(state, self.scheduler_failure)


def match_prediction(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if pred.shape == target.shape:
        return pred
    if pred.numel() == target.numel():
        return pred.reshape(target.shape)
    raise ValueError(f"the model's output has shape {tuple(pred.shape)}, which does not fit targets of shape "
                     f"{tuple(target.shape)}")


class Autograd(Runner):
    """Any model, loss and optimizer: forward, loss, backward, step for every batch."""

    def __init__(self, model: nn.Module, loss_fn: Any, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                 y: torch.Tensor, batch_size: Optional[int], shuffle: bool, generator: torch.Generator,
                 scheduler: Any, shard: Optional[Shard] = None):
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.X, self.y = X, y
        # under torchrun X and y are this rank's rows of the fit's; batches are drawn from all of them
        self.shard = shard
        n = X.shape[0] if shard is None else shard.total
        self.rows = n
        self.batch_size = n if batch_size is None or batch_size >= n else batch_size
        self.generator = generator
        self.shuffled = shuffle and self.batch_size < n
        self.sum_reduction = getattr(loss_fn, "reduction", "mean") == "sum"
        self.work_per_epoch = X.numel()
        # epochs check Ctrl-C between them, and a callback that must see each epoch makes calls of one
        self.max_epochs_per_call = _EPOCHS_PER_AUTOGRAD_CALL
        self.before: Optional[_Snapshot] = None
        self.finite: Optional[_FiniteCheck] = None
        # a forward pass costs about 2 FLOPs per parameter per row, its backward twice that
        self.work_per_step = 6 * self.batch_size * sum(p.numel() for p in model.parameters())
        self.needs_closure = requires_closure(optimizer)
        self.elementwise = declared_loss(loss_fn) is not None  # mse, sse, mae, huber: one term per element
        # epochs replay exactly where all their state is in what a snapshot keeps: on the CPU, with an
        # optimizer of torch's or pyfit's (a class of one's own may keep state of its own elsewhere)
        self.replayable = (X.device.type == "cpu" and all(p.device.type == "cpu" for p in model.parameters())
                           and type(optimizer).__module__.split(".")[0] in ("torch", "pyfit"))
        uses_fused_ops = isinstance(loss_fn, (MSELoss, SSELoss)) or isinstance(optimizer, SGD)
        self.name = f"{ops.backend() if uses_fused_ops else 'torch'}:autograd"

    def _batch_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        pred = self.model(xb)
        if self.elementwise and pred.shape != yb.shape and pred.numel() == yb.numel():
            # an elementwise loss has the same value either way round; shaping the target, which
            # needs no gradient, keeps a reshape and its backward out of every step
            return self.loss_fn(pred, yb.reshape(pred.shape), model=self.model)
        return self.loss_fn(match_prediction(pred, yb), yb, model=self.model)

    def _step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> bool:
        """``optimizer.step``, with the closure when given; False when torch refused the step because a
        setting times a state value left the float range (Adam at lr=1e38): it diverged, as a non-finite
        loss does."""
        try:
            if closure is None:
                self.optimizer.step()
            else:
                self.optimizer.step(closure)
        except RuntimeError as error:
            if "without overflow" not in str(error):
                raise
            return False
        return True

    def _backward(self, xb: torch.Tensor, yb: torch.Tensor, rows: int) -> torch.Tensor:
        """The batch's loss, with the params' gradients of it (``rows``: the batch's size over all ranks).

        Under torchrun xb and yb are this rank's rows of the batch, and the loss and
        gradients returned are the whole batch's: every rank's, added together.
        """
        if self.shard is None:
            loss = self._batch_loss(xb, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._batch_loss(xb, yb) if xb.shape[0] else None
        if loss is not None:
            loss.backward()
        # a mean over the batch is the ranks' means weighted by their shares of its rows
        share = 1.0 if self.sum_reduction else xb.shape[0] / rows
        return self.shard.add_gradients(self._trained, loss, share)

    @property
    def _trained(self) -> List[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"] if p.requires_grad]

    def _closure_step(self, xb: torch.Tensor, yb: torch.Tensor, rows: int) -> Optional[torch.Tensor]:
        """``optimizer.step(closure)``; returns the batch's loss at the parameters the step began from
        (the closure's first evaluation), as the plain step records it, or None when the step overflowed."""
        losses: List[torch.Tensor] = []

        def closure() -> torch.Tensor:
            with torch.enable_grad():  # a step may run under no_grad and not turn it back on
                loss = self._backward(xb, yb, rows)
            losses.append(loss.detach())
            return loss

        if not self._step(closure):
            return None
        if not losses:
            raise RuntimeError(f"{type(self.optimizer).__name__} asks for a closure (requires_closure) but its "
                               "step never called it")
        return losses[0]

    def _epoch(self, interrupted: Callable[[], bool]) -> Optional[torch.Tensor]:
        """One epoch; returns its loss (a 0-dim tensor on the data's device: no host sync here; float64
        when summed over minibatches), inf when a step overflowed, or None when interrupted part-way."""
        n = self.rows
        order = _order(self.generator, n) if self.shuffled else None
        total = None
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if self.shard is not None:
                xb, yb = self.shard.batch(self.X, self.y, order, start, stop)
            elif order is None:
                # full batch: the data itself, with no view to make every epoch
                xb, yb = (self.X, self.y) if stop - start == n else (self.X[start:stop], self.y[start:stop])
            else:
                rows = order[start:stop].to(self.X.device)
                xb, yb = self.X[rows], self.y[rows]
            loss = self._take_step(xb, yb, stop - start)
            if loss is None:  # the step overflowed
                return torch.full((), math.inf, dtype=torch.float64, device=self.X.device)
            if start == 0 and stop == n:  # full batch: the loss is the epoch's (read as a float later)
                total = loss.detach()
            else:
                if total is None:
                    total = torch.zeros((), dtype=torch.float64, device=self.X.device)
                total += loss.detach().double() * (1.0 if self.sum_reduction else (stop - start) / n)
            if interrupted() and stop < n:
                return None
        return total

    def _take_step(self, xb: torch.Tensor, yb: torch.Tensor, rows: int) -> Optional[torch.Tensor]:
        """One optimizer step on a batch (of ``rows`` rows over all ranks); its loss, None if it overflowed."""
        if self.needs_closure:
            return self._closure_step(xb, yb, rows)
        loss = self._backward(xb, yb, rows)
        return loss if self._step() else None

    def step_rows(self, start: int, stop: int) -> float:
        """One step on rows ``start..stop-1`` of the fit's rows (all ranks'), in order, as a range test takes
        it: the loss before it (inf where it overflowed)."""
        if self.shard is not None:
            xb, yb = self.shard.batch(self.X, self.y, None, start, stop)
        else:
            xb, yb = self.X[start:stop], self.y[start:stop]
        loss = self._take_step(xb, yb, stop - start)
        return math.inf if loss is None else float(loss)

    def _snapshot(self) -> _Snapshot:
        """The snapshot the epochs refresh: kept between calls, so its buffers are allocated once."""
        # the model's parameters and any others the optimizer updates
        params = list(self.model.parameters())
        known = {id(p) for p in params}
        params += [p for group in self.optimizer.param_groups for p in group["params"] if id(p) not in known]
        # a replay goes back to the model's buffers too (batch norm's running statistics)
        kept_tensors = params + (list(self.model.buffers()) if self.replayable else [])
        kept = self.before
        if kept is None or len(kept.live) != len(kept_tensors) or any(
                a is not b for a, b in zip(kept.live, kept_tensors)):
            # the scheduler and torch's generator go back only with a replay: a checked epoch is undone
            # before its scheduler step, and draws no random numbers after its end
            kept = self.before = _Snapshot(kept_tensors, self.optimizer,
                                           scheduler=self.scheduler if self.replayable else None,
                                           generator=self.generator if self.shuffled else None,
                                           global_rng=self.replayable)
            self.finite = _FiniteCheck(params)
        else:
            kept.take()
        return kept

    def run_epochs(self, state: FitState, count: int, interrupted: Callable[[], bool]) -> None:
        # callbacks between calls may change the mode, the params or the optimizer; nothing inside a call does
        self.model.train()
        if not self.replayable:
            _record(state, *self._epochs(count, interrupted, checked=True)[:3])
            return
        # On the CPU the epochs are deterministic given the snapshot (params, optimizer and scheduler
        # state, row orders, torch's random numbers), so the guard costs one snapshot and one check of
        # the params per call: should a loss or a parameter turn non-finite, the call goes back to its
        # start and replays its epochs with a check after each, to stop where the last finite one ended.
        before = self._snapshot()
        losses, lrs, stop, finite = self._epochs(count, interrupted, checked=False)
        if finite and self.finite.params_finite():
            _record(state, losses, lrs, stop)
            return
        before.restore()
        self.before = None
        _record(state, *self._epochs(count, interrupted, checked=True)[:3])

    def _epochs(self, count: int, interrupted: Callable[[], bool], checked: bool):
        """Up to ``count`` epochs: their losses and lrs, how the call stopped early (a function of the
        fit's state, for ``_record``) or None, and False when an unchecked call ended at a non-finite
        loss (not counted; the caller replays). ``checked`` takes a snapshot before each epoch and checks
        the loss and the params after it: a non-finite epoch is undone and stops the fit."""
        losses: List[float] = []
        lrs: List[float] = []
        before = self._snapshot() if checked else None
        for done in range(count):
            if done:
                if interrupted():  # run() reports it, after the epochs done
                    break
                if before is not None:
                    before.take()
            lr = float(self.optimizer.param_groups[0]["lr"])
            total = self._epoch(interrupted)
            if total is None:
                return losses, lrs, lambda state: state.stop(
                    INTERRUPTED, f"interrupted during epoch {state.epoch + 1}, which is not counted"), True
            if before is None:
                loss = float(total)
                finite = math.isfinite(loss)
            else:
                loss, finite = self.finite(total)
            if not finite:
                if before is None:
                    return losses, lrs, None, False
                # the scheduler has not stepped for this epoch; the rest goes back here
                before.restore()
                self.before = None
                return losses, lrs, lambda state: state.stop(
                    NON_FINITE, _non_finite_detail(loss, state.epoch + 1)), True
            losses.append(loss)
            lrs.append(lr)
            failure = self.step_scheduler()
            if failure is not None:
                return losses, lrs, lambda state: stop_after_failed_step(state, failure), True
        return losses, lrs, None, True


def _record(state: FitState, losses: List[float], lrs: List[float], stop: Optional[Callable[[FitState], None]]):
    """Add a call's epochs to the fit's history, then stop the fit as the call ended, if it did."""
    state.history["loss"].extend(losses)
    state.history["lr"].extend(lrs)
    state.epoch += len(losses)
    if stop is not None:
        stop(state)


def choose(model, loss_fn, optimizer, X, y, batch_size, shuffle, generator, *, precomputed_scheduler,
           shard: Optional[Shard] = None) -> Runner:
    """The fastest runner that computes exactly what autograd with this optimizer would."""
    if shard is not None:
        from ._summed_linear import SummedLinear, summed_plan

        summed = summed_plan(model, loss_fn, optimizer, X)
        if summed is not None:
            return SummedLinear(model, summed, loss_fn, optimizer, X, y, batch_size, shuffle, generator,
                                precomputed_scheduler, shard)
        return Autograd(model, loss_fn, optimizer, X, y, batch_size, shuffle, generator, precomputed_scheduler,
                        shard)
    plan = fusion_plan(model, loss_fn, optimizer, X)
    if plan is not None:
        return FusedLinear(model, plan, optimizer, X, y, batch_size, shuffle, generator,
                           precomputed_scheduler)
    return Autograd(model, loss_fn, optimizer, X, y, batch_size, shuffle, generator, precomputed_scheduler)


@contextmanager
def _interrupt_flag() -> Iterator[Callable[[], bool]]:
    """Turn the first Ctrl-C into a request to stop after the current step; a second one aborts."""
    hits = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if hits:
            raise KeyboardInterrupt
        hits.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_bar(progress: Optional[bool], epochs: int):
    show = progress if progress is not None else (epochs >= 100 and sys.stderr.isatty())
    if not show:
        return None
    from tqdm.auto import tqdm

    # delay: a fit that ends within a second never draws a bar
    return tqdm(total=epochs, unit="epoch", delay=0 if progress else 1.0, leave=False, dynamic_ncols=True)


def run(runner: Runner, state: FitState, callbacks: List[Any], progress: Optional[bool], *,
        checkpoint_every: Optional[int] = None, save: Optional[Callable[[FitState], None]] = None,
        world: Any = None) -> None:
    """Drive ``runner`` to the end of the fit, running callbacks and honouring stop requests.

    With ``save`` and ``checkpoint_every``, ``save(state)`` runs after every epoch
    that is a multiple of ``checkpoint_every`` (chunks end there), except the last:
    the caller saves the finished fit itself.
    """
    for callback in callbacks:
        callback.on_fit_start(state)
    per_epoch = any(getattr(callback, "per_epoch", True) for callback in callbacks)
    bar = _progress_bar(progress if world is None or world.writes else False, state.epochs - state.epoch)
    chunk = max(1, min(runner.max_epochs_per_call, _WORK_PER_CALL // max(runner.work_per_epoch, 1)))
    # a callback that checks every so many epochs (a convergence test) ends the chunks on multiples of
    # that, so a resumed fit is checked after the same epochs as an unbroken one
    period = min([int(callback.epochs_per_check) for callback in callbacks
                  if getattr(callback, "epochs_per_check", None)], default=None)
    if per_epoch:
        chunk = 1
    elif bar is not None:
        chunk = min(chunk, max(1, state.epochs // 100))
    every = checkpoint_every if save is not None else None
    try:
        with _interrupt_flag() as own_flag:
            interrupted = own_flag
            shard = getattr(runner, "shard", None)
            if shard is not None and shard.world is not None:
                # under torchrun a Ctrl-C on any rank stops them all after the same step: the request
                # travels with the step's sums (the ranks must agree on where to stop, not just stop)
                shard.own_request = own_flag
                interrupted = lambda: shard.stop_requested  # noqa: E731
            while state.epoch < state.epochs and state.stop_reason is None:
                before = state.epoch
                count = min(chunk, state.epochs - state.epoch)
                if every:  # end the chunk on the next multiple of checkpoint_every
                    count = min(count, every - state.epoch % every)
                if period:
                    count = min(count, period - state.epoch % period)
                runner.run_epochs(state, count, interrupted)
                if bar is not None:
                    bar.update(state.epoch - before)
                    if state.history["loss"]:
                        bar.set_postfix(loss=f"{state.loss:.4g}", refresh=False)
                if state.epoch > before:
                    for callback in callbacks:
                        callback.on_epoch_end(state)
                if interrupted():
                    state.stop(INTERRUPTED, f"interrupted after epoch {state.epoch}")
                finishing = state.stop_reason is not None or state.epoch >= state.epochs
                if every and state.epoch > before and state.epoch % every == 0 and not finishing:
                    save(state)
    finally:
        if bar is not None:
            bar.close()
    for callback in callbacks:
        callback.on_fit_end(state)
