"""Start a command under torchrun for the tests, as a user would: ``python -m torch.distributed.run``.

A rank process sometimes aborts as it exits, after its work is done and written,
in torch's teardown of the process group ("terminate called without an active
exception", SIGABRT): on the 2-core development machine about one launch in ten
to twenty under load, with or without pyfit leaving the group itself at exit.
Such a launch, and only such a one, is run once more; anything else is returned
as it ended, for the test to judge.
"""

import subprocess
import sys
from typing import Callable, Dict, List, Optional

EXIT_ABORT = "terminate called without an active exception"


def torchrun(ranks: int, arguments: List[str], *, env: Dict[str, str], limit: float = 240,
             cwd: Optional[str] = None, written: Callable[[], bool] = lambda: False) -> subprocess.CompletedProcess:
    """``arguments`` (a script and its arguments, or ``-m module ...``) on ``ranks`` processes; ``written()``
    says whether the launch's work is all written, which an abort at exit leaves to run again."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               *arguments]
    for attempt in (1, 2):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=limit, cwd=cwd)
        aborted_at_exit = done.returncode != 0 and EXIT_ABORT in done.stderr and "SIGABRT" in done.stderr
        if attempt == 2 or not (aborted_at_exit and written()):
            return done
        print("torchrun: a rank aborted at exit after its work was written; running the launch again",
              file=sys.stderr)
    return done
