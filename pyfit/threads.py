"""How many of torch's CPU threads a fit runs on.

A small fit's steps are too short for torch's thread pool to pay: waking and
joining the threads costs more than they save, and on a busy machine a step that
waits for a descheduled thread takes many times longer. So a fit runs on as many
threads as its work per step can keep busy (never more than torch is set to use),
or on the number the user gives, and torch's setting is put back when the fit ends,
however it ends (an error, Ctrl-C).

``torch.set_num_threads`` is process-wide: fits run at the same time from several
Python threads share it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch

# floating-point operations one thread should have per step before another is worth
# waking: about 0.1-0.5 ms of work, well above the pool's start-up cost per parallel region
WORK_PER_THREAD = 4_000_000


def threads_for(work_per_step: float, available: int) -> int:
    """The threads a fit with ``work_per_step`` FLOPs per step keeps busy, from 1 to ``available``.

    >>> threads_for(1_000, 8), threads_for(10 * WORK_PER_THREAD, 8), threads_for(10 ** 12, 8)
    (1, 8, 8)
    """
    return max(1, min(available, int(work_per_step // WORK_PER_THREAD)))


@contextmanager
def fit_threads(work_per_step: float, threads: Optional[int] = None) -> Iterator[int]:
    """Run the body on ``threads`` CPU threads, or on as many as ``work_per_step`` pays for; yields the number.

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with fit_threads(10.0) as n:
    ...     n, torch.get_num_threads()
    (1, 1)
    >>> torch.get_num_threads() == before
    True
    """
    before = torch.get_num_threads()
    chosen = threads if threads is not None else threads_for(work_per_step, before)
    if chosen == before:  # nothing to change, nothing to put back
        yield chosen
        return
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)
