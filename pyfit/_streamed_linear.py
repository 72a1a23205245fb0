"""A linear model's epochs on rows streamed from a data file: read a chunk at a time, never held whole.

Full batch, every step reads all of this process's rows again, chunk by chunk,
and adds the compiled loss and gradient sums of the chunks (and then of the
ranks) before its one update: the steps of an in-memory fit, up to the order of
the additions. Minibatches are drawn chunk-wise, so that each chunk is read once
per epoch whatever the batch size: an epoch visits the chunks (in an order drawn
from the fit's generator when shuffling) and takes consecutive batches from each
(its rows in a drawn order when shuffling). Under torchrun each rank gives every
batch its share of the rows (``batch_size`` over the ranks, rounded up) from its
own chunk. Those batches are not an in-memory fit's, which draws them from all
the rows at once.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple, Union

import torch
from torch import nn

from ._file_rows import FileRows
from ._summed_linear import LinearLoss, SummedLinear


class StreamedLinear(SummedLinear):
    """SummedLinear on a data file's rows, read again from the file at every pass over them."""

    def __init__(self, model: nn.Module, loss: LinearLoss, loss_fn: Any, optimizer: torch.optim.Optimizer,
                 source: FileRows, batch_size: Optional[int], shuffle: bool, generator: torch.Generator,
                 scheduler: Any):
        # X and y are the file's first row: the shapes and dtype the runner sets up with
        super().__init__(model, loss, loss_fn, optimizer, source.X, source.y, batch_size, shuffle, generator,
                         scheduler, source.shard)
        self.source = source
        self.own_rows = source.shard.stop - source.shard.start
        self.work_per_epoch = self.own_rows * self.width * self.outputs
        ranks = source.world.size if source.world is not None else 1
        # each rank's share of a batch, and chunks that hold whole shares, the same count on every rank
        self.own_batch = -(-self.batch_size // ranks)
        self.chunk_rows = max(self.own_batch, source.chunk_rows // self.own_batch * self.own_batch)
        self.chunk_count = -(-(-(-self.rows // ranks)) // self.chunk_rows)

    def _design(self, X: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.model.design_matrix(X).contiguous(), y.reshape(y.shape[0], -1).contiguous()

    def _sums(self, rows: Union[slice, torch.Tensor]) -> torch.Tensor:
        """The sums over this rank's rows ``rows`` (a slice of them: all of them for a full-batch step, a
        range test's batch), read from the file a piece at a time."""
        total = torch.zeros(1 + self.outputs * (1 + self.width), dtype=torch.float64)
        for X, y in self.source.pieces(rows.start, rows.stop):
            # the columns of a piece are views of the file's rows: the sums read them in place
            with torch.no_grad():
                features = self.model.design_matrix(X)
            total += self._linear_sums(features, y.reshape(y.shape[0], -1)).to(total.device)
        return total

    def _batch_sums(self) -> Iterator[Tuple[torch.Tensor, int]]:
        if self.batch_size >= self.rows:  # full batch: one step on all the rows
            yield self._sums(slice(0, self.own_rows)), self.own_rows
            return
        chunks = torch.randperm(self.chunk_count, generator=self.generator) if self.shuffled \
            else torch.arange(self.chunk_count)
        empty = torch.zeros(1 + self.outputs * (1 + self.width), dtype=torch.float64)
        for chunk in chunks.tolist():
            begin = min(chunk * self.chunk_rows, self.own_rows)
            end = min(begin + self.chunk_rows, self.own_rows)
            # drawn on every rank alike, whatever its chunk holds, so the generator stays the same everywhere
            order = torch.randperm(self.chunk_rows, generator=self.generator) if self.shuffled else None
            features = targets = None
            if end > begin:
                features, targets = self._design(*next(self.source.chunks(begin, end)))
            for start in range(0, self.chunk_rows, self.own_batch):
                if order is None:
                    rows = torch.arange(start, max(start, min(start + self.own_batch, end - begin)))
                else:
                    rows = order[start:start + self.own_batch]
                    rows = rows[rows < end - begin]
                if rows.numel():
                    yield self._linear_sums(features, targets, rows), rows.numel()
                else:
                    yield empty.clone(), 0
