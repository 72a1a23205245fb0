"""The two ways ``fit`` runs epochs, and the loop that drives either.

* fused linear: a model linear in its parameters, a squared-error loss and
  pyfit's SGD run as ``ops.linear_fit_``: one read of the data per step, many
  epochs per call when no callback needs to see each epoch.
* autograd: any model, loss and optimizer, through torch's autograd; pyfit's MSE
  and SGD still run their fused ops there.

Both draw minibatch orders from the same generator in the same sequence, record
an epoch's loss as measured before that epoch's updates, and stop on a
non-finite loss with the parameters of before the failure.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional

import torch
from torch import nn

from . import ops
from .callbacks import INTERRUPTED, NON_FINITE, FitState
from .losses import MSELoss, SSELoss
from .optimizers import SGD

# about this many multiply-adds per fused call keeps Ctrl-C and progress responsive
_WORK_PER_CALL = 200_000_000


def _orders(generator: torch.Generator, n: int, epochs: int, shuffle: bool, minibatch: bool) -> Optional[torch.Tensor]:
    if not (shuffle and minibatch):
        return None
    return torch.stack([torch.randperm(n, generator=generator) for _ in range(epochs)])


def _lrs_for(state: FitState, count: int, scheduler: Any) -> torch.Tensor:
    """The (count,) float64 learning rates of the next epochs, stepping an epoch-only scheduler."""
    group = state.optimizer.param_groups[0]
    if scheduler is None:
        return torch.full((count,), float(group["lr"]), dtype=torch.float64)
    # the fused call performs this optimizer's steps; tell torch's scheduler so it
    # does not warn that it is stepped before the optimizer
    state.optimizer._opt_called = True
    lrs = []
    for _ in range(count):
        lrs.append(float(group["lr"]))
        scheduler.step()
    return torch.tensor(lrs, dtype=torch.float64)


class Runner:
    name = "runner"
    work_per_epoch = 1

    def run_epochs(self, state: FitState, count: int, interrupted: Callable[[], bool]) -> None:
        raise NotImplementedError


class FusedLinear(Runner):
    """Whole epochs of a linear-in-parameters model in one compiled call."""

    def __init__(self, model: nn.Module, reduction: str, optimizer: SGD, X: torch.Tensor, y: torch.Tensor,
                 batch_size: Optional[int], shuffle: bool, generator: torch.Generator, scheduler: Any):
        with torch.no_grad():
            self.features = model.design_matrix(X).contiguous()
        self.targets = y.reshape(y.shape[0], -1).contiguous()
        self.weight, self.bias = model.weight, model.bias
        self.optimizer, self.reduction, self.scheduler = optimizer, reduction, scheduler
        n = X.shape[0]
        self.batch_size = None if batch_size is None or batch_size >= n else batch_size
        self.shuffle, self.generator = shuffle, generator
        self.work_per_epoch = self.features.numel() * self.targets.shape[1]
        self.name = f"{ops.backend()}:fused-linear"

    def _buffers(self, momentum: float):
        if momentum == 0:
            return None, None, True
        params = [p for p in (self.weight, self.bias) if p is not None]
        found = [self.optimizer.state[p].get("momentum_buffer") for p in params]
        first = found[0] is None
        buffers = [torch.zeros_like(p) if b is None else b for p, b in zip(params, found)]
        for p, b in zip(params, buffers):
            self.optimizer.state[p]["momentum_buffer"] = b
        return buffers[0], (buffers[1] if self.bias is not None else None), first

    def run_epochs(self, state: FitState, count: int, interrupted: Callable[[], bool]) -> None:
        group = self.optimizer.param_groups[0]
        lrs = _lrs_for(state, count, self.scheduler)
        order = _orders(self.generator, self.features.shape[0], count, self.shuffle, self.batch_size is not None)
        if order is not None:
            order = order.to(self.features.device)
        weight_buf, bias_buf, first = self._buffers(group["momentum"])
        losses = ops.linear_fit_(
            self.features, self.targets, self.weight.detach(),
            None if self.bias is None else self.bias.detach(), weight_buf, bias_buf,
            lrs=lrs, order=order, batch_size=self.batch_size,
            momentum=group["momentum"], dampening=group["dampening"], nesterov=group["nesterov"],
            weight_decay=group["weight_decay"], maximize=group["maximize"], first_step=first,
            reduction=self.reduction,
        )
        values = losses.tolist()
        # NaN and inf survive a sum: one Python-level check instead of a scan per epoch
        done = count if math.isfinite(sum(values)) else next(
            (i for i, v in enumerate(values) if not math.isfinite(v)), count)
        state.history["loss"].extend(values[:done])
        state.history["lr"].extend(lrs[:done].tolist())
        state.epoch += done
        if done < count:
            state.stop(NON_FINITE, f"the loss became {float(losses[done])} in epoch {state.epoch + 1}; the model "
                                   "keeps the parameters of its last finite step")


def _match_prediction(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
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
                 scheduler: Any):
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.X, self.y = X, y
        n = X.shape[0]
        self.batch_size = n if batch_size is None or batch_size >= n else batch_size
        self.shuffle, self.generator = shuffle, generator
        self.sum_reduction = getattr(loss_fn, "reduction", "mean") == "sum"
        self.work_per_epoch = X.numel()
        uses_fused_ops = isinstance(loss_fn, (MSELoss, SSELoss)) or isinstance(optimizer, SGD)
        self.name = f"{ops.backend() if uses_fused_ops else 'torch'}:autograd"

    def _epoch(self, interrupted: Callable[[], bool]) -> Optional[float]:
        """One epoch; returns its loss, or None when interrupted part-way."""
        n = self.X.shape[0]
        order = _orders(self.generator, n, 1, self.shuffle, self.batch_size < n)
        total = torch.zeros((), dtype=torch.float64, device=self.X.device)
        self.model.train()
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if order is None:
                xb, yb = self.X[start:stop], self.y[start:stop]
            else:
                rows = order[0, start:stop].to(self.X.device)
                xb, yb = self.X[rows], self.y[rows]
            pred = _match_prediction(self.model(xb), yb)
            loss = self.loss_fn(pred, yb, model=self.model)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach().double() * (1.0 if self.sum_reduction else (stop - start) / n)
            if interrupted() and stop < n:
                return None
        return float(total)

    def run_epochs(self, state: FitState, count: int, interrupted: Callable[[], bool]) -> None:
        params = [p for p in self.model.parameters()]
        for _ in range(count):
            saved = [p.detach().clone() for p in params]
            lr = float(self.optimizer.param_groups[0]["lr"])
            loss = self._epoch(interrupted)
            if loss is None:
                state.stop(INTERRUPTED, f"interrupted during epoch {state.epoch + 1}, which is not counted")
                return
            if not math.isfinite(loss) or not all(bool(torch.isfinite(p).all()) for p in params):
                with torch.no_grad():
                    for p, old in zip(params, saved):
                        p.copy_(old)
                state.stop(NON_FINITE, f"the loss became {loss} in epoch {state.epoch + 1}; the model keeps "
                                       "the parameters it had before that epoch")
                return
            state.history["loss"].append(loss)
            state.history["lr"].append(lr)
            state.epoch += 1
            if self.scheduler is not None:
                self.scheduler.step()


def _fusable(model: nn.Module, loss_fn: Any, optimizer: torch.optim.Optimizer, X: torch.Tensor) -> bool:
    if not callable(getattr(model, "design_matrix", None)):
        return False
    if getattr(loss_fn, "fused_reduction", None) not in ("mean", "sum"):
        return False
    if type(optimizer) is not SGD or len(optimizer.param_groups) != 1:
        return False
    weight, bias = getattr(model, "weight", None), getattr(model, "bias", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return False
    expected = {id(weight)} | ({id(bias)} if bias is not None else set())
    group_params = {id(p) for p in optimizer.param_groups[0]["params"]}
    model_params = {id(p) for p in model.parameters()}
    if group_params != expected or model_params != expected:
        return False
    if optimizer.param_groups[0]["momentum"] != 0:
        # the fused step keeps weight's and bias's buffers in step; a half-made state is left to autograd
        has = [optimizer.state[p].get("momentum_buffer") is not None for p in (weight, bias) if p is not None]
        if len(set(has)) > 1:
            return False
    return X.dtype in (torch.float32, torch.float64)


def choose(model, loss_fn, optimizer, X, y, batch_size, shuffle, generator, *, precomputed_scheduler) -> Runner:
    """The fastest correct runner for this fit."""
    if _fusable(model, loss_fn, optimizer, X):
        return FusedLinear(model, loss_fn.fused_reduction, optimizer, X, y, batch_size, shuffle, generator,
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
        checkpoint_every: Optional[int] = None, save: Optional[Callable[[FitState], None]] = None) -> None:
    """Drive ``runner`` to the end of the fit, running callbacks and honouring stop requests.

    With ``save`` and ``checkpoint_every``, ``save(state)`` runs after every epoch
    that is a multiple of ``checkpoint_every`` (chunks end there), except the last:
    the caller saves the finished fit itself.
    """
    for callback in callbacks:
        callback.on_fit_start(state)
    per_epoch = any(getattr(callback, "per_epoch", True) for callback in callbacks)
    bar = _progress_bar(progress, state.epochs - state.epoch)
    chunk = max(1, _WORK_PER_CALL // max(runner.work_per_epoch, 1))
    if per_epoch or isinstance(runner, Autograd):
        chunk = 1
    elif bar is not None:
        chunk = min(chunk, max(1, state.epochs // 100))
    every = checkpoint_every if save is not None else None
    try:
        with _interrupt_flag() as interrupted:
            while state.epoch < state.epochs and state.stop_reason is None:
                before = state.epoch
                count = min(chunk, state.epochs - state.epoch)
                if every:  # end the chunk on the next multiple of checkpoint_every
                    count = min(count, every - state.epoch % every)
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
