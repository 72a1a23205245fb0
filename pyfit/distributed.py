"""Fitting on several processes under ``torchrun``: the ranks, each rank's rows, and the sums they share.

Started by ``torchrun --nproc-per-node N``, every process runs the same script
(or ``python -m pyfit fit``) and :func:`pyfit.fit` runs data-parallel on
torch.distributed: rank r fits on its own contiguous shard of the rows
(:meth:`World.shard`), and every step adds the ranks' gradient sums and losses
together before the one optimizer update they all apply, so every rank holds
the same parameters after every step. Nothing here is of pyfit's own making:
the process group is torch's (gloo for CPU tensors, NCCL for CUDA ones where
torch has it), set up from the environment torchrun exports.

A rank that dies or stops answering makes the others fail within the
timeout (:func:`init`, ``PYFIT_TIMEOUT`` seconds, 300 by default) with a
:class:`~pyfit.errors.DistributedError` that says so, instead of waiting forever.
"""

from __future__ import annotations

import atexit
import datetime
import gc
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch

from .errors import DistributedError, InputError
from .validation import check_positive

DEFAULT_TIMEOUT = 300.0  # seconds a rank waits for the others at any one exchange
_TIMEOUT_VARIABLE = "PYFIT_TIMEOUT"


@dataclass(frozen=True)
class World:
    """The ranks of a data-parallel fit, as this process sees them."""

    rank: int
    size: int
    timeout: float  # seconds

    @property
    def writes(self) -> bool:
        """Whether this rank writes what a fit leaves behind (checkpoints, plots, the summary): rank 0."""
        return self.rank == 0

    def shard(self, rows: int) -> Tuple[int, int]:
        """This rank's rows ``[start, stop)`` of ``rows``: contiguous, in rank order, sizes differing by at most 1."""
        return rows * self.rank // self.size, rows * (self.rank + 1) // self.size

    def sum(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (every rank gets the same values); ``what`` names it in
        the error should a rank not take part."""
        return self._collective(lambda: torch.distributed.all_reduce(tensor), what, tensor)

    def max(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """The elementwise largest over the ranks, in place."""
        return self._collective(
            lambda: torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX), what, tensor)

    def gather(self, tensor: torch.Tensor, what: str) -> List[torch.Tensor]:
        """Every rank's ``tensor`` (same shape on all), in rank order."""
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        return self._collective(lambda: torch.distributed.all_gather(parts, tensor), what, parts)

    def copy_from_rank_0(self, tensors: List[torch.Tensor], what: str) -> None:
        """Overwrite ``tensors`` (the same shapes on every rank) with rank 0's, in place, in one exchange."""
        dense = [t for t in tensors if t.numel()]
        if not dense:
            return
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in dense])
        self._collective(lambda: torch.distributed.broadcast(flat, src=0), what, None)
        with torch.no_grad():
            offset = 0
            for t in dense:
                t.copy_(flat[offset:offset + t.numel()].view(t.shape))
                offset += t.numel()

    def agree(self, value: Any, what: str) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        box = [value]
        return self._collective(lambda: torch.distributed.broadcast_object_list(box, src=0), what, box)[0]

    def _collective(self, run, what: str, result: Any) -> Any:
        try:
            run()
        except RuntimeError as error:  # gloo and NCCL report a lost or silent peer as a RuntimeError
            global _lost
            _lost = True
            detail = (str(error).strip().splitlines() or [""])[0][:200]
            raise DistributedError(
                f"rank {self.rank} of {self.size} lost the other ranks while exchanging {what}: one of them has "
                f"died, hung (no answer within the {self.timeout:g} s timeout) or failed on its own (see its "
                f"output), so this rank stops too. A checkpoint written before this point is intact: resume "
                f"from it, with any number of ranks. ({detail})") from None
        return result


def _timeout_from_environment() -> float:
    text = os.environ.get(_TIMEOUT_VARIABLE)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise InputError(f"{_TIMEOUT_VARIABLE}={text!r}: expected a positive number of seconds")
    return value


def _launched_size() -> int:
    """The WORLD_SIZE torchrun exported, 1 when not started by it."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(text)
    except ValueError:
        raise InputError(f"WORLD_SIZE={text!r} is not a number of processes") from None


_timeout: Optional[float] = None  # what init set up the process group with
_lost = False  # whether a rank was lost: nothing more to exchange


def init(timeout: Optional[float] = None) -> Optional[World]:
    """Join the process group torchrun describes in the environment; None when this is the only process.

    Called by :func:`pyfit.fit` on first use; call it yourself first to choose the
    ``timeout`` (seconds; ``PYFIT_TIMEOUT`` by default, else 300). A process group you
    set up yourself with ``torch.distributed.init_process_group`` is used as it is.
    """
    global _timeout
    if timeout is not None:
        check_positive("timeout", timeout)
    dist = torch.distributed
    if not dist.is_available():
        if _launched_size() > 1:
            raise DistributedError("this torch was built without torch.distributed; it cannot fit on "
                                   f"{_launched_size()} processes")
        return None
    if not dist.is_initialized():
        if _launched_size() <= 1:
            return None
        for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise DistributedError(f"WORLD_SIZE is {_launched_size()} but {name} is not set: start the "
                                       "processes with torchrun, which sets both")
        _timeout = float(timeout) if timeout is not None else _timeout_from_environment()
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=_timeout))
        # leaving the group at exit, not in the interpreter's teardown, where gloo may abort the process
        atexit.register(_leave)
    if dist.get_world_size() <= 1:
        return None
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 timeout=_timeout if _timeout is not None else _group_timeout())


def _leave() -> None:
    """Leave the process group at exit: all ranks together (a rank whose peer has already torn down its
    connections may abort in gloo's teardown), except after a lost rank, when there is no one to wait for."""
    if not torch.distributed.is_initialized():
        return
    if not _lost:
        try:
            torch.distributed.barrier()
        except RuntimeError:
            pass
    torch.distributed.destroy_process_group()
    # what the group's work still holds (tensors that reference Python objects) goes now, while the
    # interpreter is whole, not in its teardown
    gc.collect()


def _group_timeout() -> float:
    """The timeout of a process group the user set up (torch's default when it cannot be read)."""
    try:
        from torch.distributed.distributed_c10d import _get_default_group

        return _get_default_group().options._timeout.total_seconds()
    except Exception:  # the attribute differs between torch versions; the value only goes into messages
        return 1800.0


def current() -> Optional[World]:
    """The world of this process (joining torchrun's on first call), or None when it runs alone."""
    return init()
