"""A rank's rows of a data-parallel fit: where they lie among the fit's rows, and what the ranks add up.

Batches are defined over the fit's rows, all ranks' together, exactly as a
single process would draw them (the same generator, seeded alike on every
rank); each rank computes on the rows of each batch that it holds, and the
sums are added over the ranks before the one update every rank applies. So a
fit on any number of ranks takes the steps of the single-process fit, and a
checkpoint resumes on any number of ranks.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple, Union

import torch

from .distributed import World


class Shard:
    """Rows ``[start, stop)`` of ``total``, held by this rank of ``world`` (None: a single process, which holds
    them all but reads them a chunk at a time)."""

    def __init__(self, world: Optional[World], start: int, stop: int, total: int):
        self.world, self.start, self.stop, self.total = world, start, stop, total
        # a stop request (Ctrl-C) rides on every exchange, so that all ranks learn of it at the same step
        # at no extra cost: own_request says whether this rank has one, stop_requested whether any had
        # one at the last exchange
        self.own_request: Callable[[], bool] = lambda: False
        self.stop_requested = False

    def local_rows(self, order: Optional[torch.Tensor], begin: int, end: int) -> Union[slice, torch.Tensor]:
        """This rank's rows of the batch ``order[begin:end]`` (rows ``begin..end-1`` without an order), as
        positions in its own rows: a slice, or an index tensor in the batch's order."""
        if order is None:
            return slice(max(begin, self.start) - self.start, max(min(end, self.stop), self.start) - self.start)
        rows = order[begin:end]
        return rows[(rows >= self.start) & (rows < self.stop)] - self.start

    def batch(self, X: torch.Tensor, y: torch.Tensor, order: Optional[torch.Tensor], begin: int,
              end: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of a batch (see local_rows): its rows of X and y, possibly none."""
        rows = self.local_rows(order, begin, end)
        if isinstance(rows, slice):
            return X[rows], y[rows]
        rows = rows.to(X.device)
        return X[rows], y[rows]

    def sum(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """``tensor`` added over the ranks, in place (with this rank's stop request, see __init__)."""
        if self.world is None:
            self.stop_requested = self.own_request()
            return tensor
        request = torch.full((1,), 1.0 if self.own_request() else 0.0, dtype=tensor.dtype, device=tensor.device)
        both = self.world.sum(torch.cat([tensor.reshape(-1), request]), what)
        tensor.copy_(both[:-1].view(tensor.shape))
        self.stop_requested = bool(both[-1] > 0)
        return tensor

    def add_gradients(self, params: List[torch.Tensor], loss: Optional[torch.Tensor],
                      share: float) -> torch.Tensor:
        """Give every param the gradient of the whole batch: this rank's (of ``loss``, on its rows; None when
        it holds none of them) times ``share``, added over the ranks in float64. Returns the batch's loss."""
        parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).double() for p in params]
        value = loss.detach().double().reshape(1) if loss is not None else torch.zeros(1, dtype=torch.float64)
        flat = torch.cat(parts + [value.to(parts[0].device if parts else value.device)])
        if share != 1.0:
            flat *= share
        self.sum(flat, "the gradients")
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view(p.shape).to(p.dtype)
            offset += p.numel()
        return flat[-1]
