"""A data file as a fit reads it: this process's rows, in memory or a chunk at a time, and what the fit
needs of all the rows (every chunk's, every rank's) added up.

``pyfit.fit(model, pyfit.open_rows(path, target=...), None)`` reads only the rows
this process fits on: its shard under torchrun, all of them otherwise. Rows that
fit the chunk budget (``chunk_mb``) are read once and kept; more are streamed,
read again in chunks of that budget at every pass, so that memory holds one
chunk whatever the file's size. The feature statistics of ``standardize``, the
design's curvature behind ``lr="auto"`` for SGD, and the closing scores are
computed from sums over the chunks and ranks, so every rank gets the values a
single process reading the whole file would (up to the order of the additions).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ._shard import Shard
from .distributed import World
from .errors import InputError
from .outcome import Predictions
from .row_files import RowFile
from .callbacks import FitState
from .holdout import Validation
from .learning_rate import with_ones
from .metrics import check_metric_names, metrics_from_sums
from .validation import all_finite

Moments = Tuple[float, Tensor, Tensor]  # rows, mean, sum of squared deviations from the mean (float64)


def _moments(values: Tensor) -> Moments:
    values = values.double()
    mean = values.mean(0)
    return values.shape[0], mean, ((values - mean) ** 2).sum(0)


def _combine(a: Moments, b: Moments) -> Moments:
    """The moments of two disjoint sets of rows together (Chan, Golub and LeVeque's update)."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    if n_a == 0:
        return b
    if n_b == 0:
        return a
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta ** 2 * (n_a * n_b / n)


class FileRows:
    """This process's rows of ``file``: in memory when they fit ``chunk_bytes``, else read a chunk at a time."""

    def __init__(self, file: RowFile, world: Optional[World], chunk_bytes: int, dtype: torch.dtype):
        total = file.rows
        start, stop = world.shard(total) if world is not None else (0, total)
        self.file, self.world, self.dtype = file, world, dtype
        self.shard = Shard(world, start, stop, total)
        self.chunk_rows = file.rows_per_chunk(chunk_bytes)
        # decided alike on every rank, from the largest share: ranks that held their rows in memory while
        # others streamed would run different fits
        largest_share = -(-total // (world.size if world is not None else 1))
        self.streamed = largest_share > self.chunk_rows
        # the rows themselves when they fit, else the first one, for the fit's shapes and dtype
        X, y = file.read(start, stop) if not self.streamed else file.read(0, 1)
        self.X, self.y = X.to(dtype), self._targets(y.to(dtype))

    def _targets(self, y: Tensor) -> Tensor:
        """(n,) for one target column, as pyfit.load_data gives it; (n, K) for several."""
        return y[:, 0] if len(self.file.target) == 1 else y

    def chunks(self, begin: int = 0, end: Optional[int] = None) -> Iterator[Tuple[Tensor, Tensor]]:
        """This process's rows ``begin..end-1`` (counted in its own rows; all of them by default) as (X, y) in
        the fit's dtype: all at once when held in memory, else a chunk at a time from the file."""
        own = self.shard.stop - self.shard.start
        end = own if end is None else end
        if not self.streamed:
            yield (self.X, self.y) if (begin, end) == (0, own) else (self.X[begin:end], self.y[begin:end])
            return
        for X, y in self.file.chunks(self.shard.start + begin, self.shard.start + end, self.chunk_rows):
            yield X.to(self.dtype), self._targets(y.to(self.dtype))

    def pieces(self, begin: int = 0, end: Optional[int] = None) -> Iterator[Tuple[Tensor, Tensor]]:
        """:meth:`chunks`, the fast way for one pass over the rows: streamed rows in pieces that may be views of
        one reused buffer (see RowFile.pieces), each valid only until the next is asked for."""
        if not self.streamed:
            yield from self.chunks(begin, end)
            return
        end = self.shard.stop - self.shard.start if end is None else end
        for X, y in self.file.pieces(self.shard.start + begin, self.shard.start + end, self.chunk_rows):
            yield X.to(self.dtype), self._targets(y.to(self.dtype))

    def _all_ranks(self, moments: Moments, what: str) -> Moments:
        if self.world is None:
            return moments
        n, mean, m2 = moments
        parts = self.world.gather(torch.cat([torch.tensor([float(n)], dtype=torch.float64), mean, m2]), what)
        width = mean.numel()
        combined: Moments = (0, torch.zeros_like(mean), torch.zeros_like(m2))
        for part in parts:  # in rank order: the same result on every rank
            combined = _combine(combined, (float(part[0]), part[1:1 + width], part[1 + width:]))
        return combined

    def feature_statistics(self) -> Tuple[Tensor, Tensor]:
        """The features' mean and standard deviation over all the rows (see pyfit.scaling.feature_statistics)."""
        moments: Moments = (0, torch.zeros(self.X.shape[1], dtype=torch.float64),
                            torch.zeros(self.X.shape[1], dtype=torch.float64))
        for X, _ in self.pieces():
            moments = _combine(moments, _moments(X))
        n, mean, m2 = self._all_ranks(moments, "the feature statistics")
        scale = (m2 / n).sqrt()
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return mean.to(self.dtype), scale.to(self.dtype)

    def gram(self, design: Callable[[Tensor], Tensor], bias: bool) -> Tuple[Tensor, float, int]:
        """The Gram matrix Z.T @ Z / N of the design over all the rows (Z with a column of ones for a bias),
        the largest squared row norm of Z, and N."""
        gram, largest = None, torch.zeros(1, dtype=torch.float64)
        for X, _ in self.pieces():
            with torch.no_grad():
                Z = design(X).double()
            Z = with_ones(Z, bias)
            part = Z.T @ Z
            gram = part if gram is None else gram + part
            if Z.shape[0]:
                largest = torch.maximum(largest, (Z ** 2).sum(1).max().reshape(1))
        gram = self.shard.sum(gram.contiguous(), "the design's Gram matrix")
        if self.world is not None:
            self.world.max(largest, "the design's largest row")
        return gram / self.shard.total, float(largest), self.shard.total

    def check_streamable(self, model: nn.Module, loss_fn: Any, optimizer: torch.optim.Optimizer) -> None:
        """Refuse a fit that streamed rows cannot run (they need the compiled sums of a linear model)."""
        from ._summed_linear import summed_plan

        if self.streamed and summed_plan(model, loss_fn, optimizer, self.X) is None:
            raise InputError(f"{self.file.path} has more rows than one chunk holds ({self.chunk_rows}; see chunk_mb), "
                             "and a streamed fit needs a linear or polynomial model under mse, sse, mae or huber, "
                             "with an optimizer that steps without a closure: raise chunk_mb to hold the rows in "
                             "memory, or fit such a model")

    def runner(self, model: nn.Module, loss_fn: Any, optimizer: torch.optim.Optimizer, batch_size: Optional[int],
               shuffle: bool = False, generator: Optional[torch.Generator] = None, scheduler: Any = None):
        """The runner of a fit's epochs on these rows: streamed rows through the compiled sums, rows in memory
        on the fastest path that adds each step's gradient over the ranks."""
        from ._runners import choose
        from ._streamed_linear import StreamedLinear
        from ._summed_linear import summed_plan

        generator = generator if generator is not None else torch.Generator()
        if self.streamed:
            self.check_streamable(model, loss_fn, optimizer)
            return StreamedLinear(model, summed_plan(model, loss_fn, optimizer, self.X), loss_fn, optimizer, self,
                                  batch_size, shuffle, generator, scheduler)
        return choose(model, loss_fn, optimizer, self.X, self.y, batch_size, shuffle, generator,
                      precomputed_scheduler=scheduler, shard=self.shard)

    def scores(self, model: nn.Module, loss_fn: Any) -> Tuple[Dict[str, float], Predictions]:
        """The closing scores (loss, r2, rmse, mae) of ``model`` over all the rows, and what the diagnosis
        reads of its predictions; a mean loss is taken as the rows' mean, as the fit takes it."""
        from ._runners import match_prediction

        mean_loss = getattr(loss_fn, "reduction", "mean") != "sum"
        outputs = 1 if self.y.dim() == 1 else self.y.shape[1]
        empty = (0, torch.zeros(outputs, dtype=torch.float64), torch.zeros(outputs, dtype=torch.float64))
        y_moments, pred_moments = empty, empty
        # loss (weighted by rows for a mean), absolute residuals, not-finite flag, then squared residuals (K)
        sums = torch.zeros(3 + outputs, dtype=torch.float64)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for X, y in self.pieces():
                    if not X.shape[0]:
                        continue
                    pred = match_prediction(model(X), y)
                    loss = float(loss_fn(pred, y, model=model))
                    sums[0] += loss * (X.shape[0] if mean_loss else 1)
                    y64, pred64 = y.double().reshape(y.shape[0], -1), pred.double().reshape(y.shape[0], -1)
                    residual = y64 - pred64
                    sums[1] += residual.abs().sum()
                    sums[2] += 0.0 if all_finite(pred64) else 1.0
                    sums[3:] += (residual ** 2).sum(0)
                    y_moments = _combine(y_moments, _moments(y64))
                    pred_moments = _combine(pred_moments, _moments(pred64))
        finally:
            model.train(was_training)
        self.shard.sum(sums, "the closing scores")
        n, _, m2_y = self._all_ranks(y_moments, "the targets' spread")
        _, _, m2_pred = self._all_ranks(pred_moments, "the predictions' spread")
        scores = {"loss": float(sums[0]) / (n if mean_loss else 1),
                  **metrics_from_sums(int(n), sums[3:].sqrt(), m2_y, sums[1])}
        predictions = Predictions(int(n), float(sums[2]) == 0, (m2_y / n).sqrt(), (m2_pred / n).sqrt())
        return scores, predictions


def auto_lr_over(rows: FileRows):
    """learning_rate.auto_lr over all of a RowFile's rows: SGD on a linear model under a squared error takes
    its step from the Gram matrix of the whole design, anything else the range test's suggestion, its steps
    taken on every chunk and rank's rows."""
    from .learning_rate import gram_bound, is_least_squares_sgd, lr_for_curvature, range_test, shared_steps

    def choose(model, loss_fn, optimizer, settings, X, y, batch_size, build):
        reduction = is_least_squares_sgd(model, loss_fn, optimizer)
        if reduction is None:
            total = rows.shard.total
            batch = total if batch_size is None or batch_size >= total else batch_size
            steps = shared_steps(lambda trial, opt: rows.runner(trial, loss_fn, opt, batch_size), batch, total)
            found = range_test(model, loss_fn, build, X, y, batch_size=batch_size, stepped=steps)
            return found.lr, found.reason
        bias = getattr(model, "bias", None) is not None
        gram, largest_row, n = rows.gram(model.design_matrix, bias)
        outputs = 1 if y.dim() == 1 else y.shape[1]
        return lr_for_curvature(gram_bound(gram), True, largest_row, n, outputs, reduction, batch_size,
                                float(settings.get("weight_decay") or 0.0), float(settings.get("momentum") or 0.0))

    return choose


class RowValidation(Validation):
    """holdout.Validation for a data file's rows: after every epoch the validation file's loss, and each
    metric on the training and validation rows, each from sums over the chunks and ranks."""

    def __init__(self, loss_fn: Any, rows: FileRows, val_rows: Optional[FileRows], metrics: List[str]):
        self.loss_fn, self.rows, self.val_rows = loss_fn, rows, val_rows
        self.metrics = check_metric_names(metrics)

    @property
    def held_out(self) -> bool:
        return self.val_rows is not None

    def on_epoch_end(self, state: FitState) -> None:
        val = self.val_rows.scores(state.model, self.loss_fn)[0] if self.val_rows is not None else None
        if val is not None:
            state.history["val_loss"].append(val["loss"])
        if self.metrics:
            train = self.rows.scores(state.model, self.loss_fn)[0]
            for name in self.metrics:
                state.history[name].append(train[name])
                if val is not None:
                    state.history["val_" + name].append(val[name])


