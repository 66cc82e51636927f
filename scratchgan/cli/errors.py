"""The exit-code policy: the codes, UsageError, and how main() reports a failure (once, in a data-parallel run)."""
from __future__ import annotations

import errno
import sys
import threading

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _PerThread(threading.local):
    """A one-slot list, read and set as x[0], with a value for each thread: each rank of
    `train --ranks N` (ranks that are threads) has its own."""

    def __init__(self, default):
        self.value = default

    def __getitem__(self, index):
        return self.value

    def __setitem__(self, index, value):
        self.value = value


# The ranks of a data-parallel command (train and bench under mpiexec, train --ranks), for the error paths.
_RANKS = _PerThread(None)
# True while a data-parallel train checks its flags, run folder, data and model, before rank 0 changes
# anything: an error then is compared among the ranks (_agree), said once by rank 0, and ends no rank.
_CHECKING = _PerThread(False)

_DEVICE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.ENOMEM}


class UsageError(ValueError):
    """A flag's value that does not fit the run or the situation (exit code 2)."""


def _error(message) -> None:
    """One line on stderr: "error: ..." (a multi-line message is joined)."""
    text = " ".join(str(message).split("\n")).strip()
    print(f"error: {text}", file=sys.stderr, flush=True)


class ChecksFailed(Exception):
    """Some ranks of a data-parallel train failed their checks: rank 0 says ``lines``, every rank exits with ``code``."""

    def __init__(self, code, lines):
        super().__init__("; ".join(lines))
        self.code, self.lines = code, lines


def _agree(comm, failure=None) -> None:
    """The ranks compare the outcome of their checks before training: one allgather of each rank's
    (exit code, message), or None where its checks passed. Raises ChecksFailed when any failed: a
    failure every rank met alike is one line, else one line per failed rank, naming it."""
    _CHECKING[0] = False
    everyone = comm.allgather(failure)
    failed = [(rank, f) for rank, f in enumerate(everyone) if f is not None]
    if not failed:
        return
    if len(failed) == comm.size and len({message for _, (_, message) in failed}) == 1:
        lines = [failed[0][1][1]]
    else:
        lines = [f"rank {rank} of {comm.size}: {message}" for rank, (_, message) in failed]
    raise ChecksFailed(max(code for _, (code, _) in failed), lines)


def guarded(args, work, reset_dtype=True) -> int:
    """Run ``work()`` (a command) and return its exit code; every anticipated failure becomes one
    "error:" line and its code (_failed). ``reset_dtype``: give in-process callers the float32
    default back afterwards (not per rank: the ranks of one process share it)."""
    import numpy as np
    from ..backend import BackendError, set_default_dtype
    from ..data import DataError
    from ..evaluation.judge import JudgeError
    from ..evaluation.metrics import EvaluationDataMissing
    from ..layers.base import DoubleBackwardError
    from ..training import DivergenceError
    from ..training.checkpoint import CheckpointError
    from ..training.distributed import DistributedError, ReplicaDriftError
    from ..training.runfolder import RunFolderError
    _RANKS[0], _CHECKING[0] = None, False
    try:
        return work()
    except KeyboardInterrupt as exc:  # train: a second Ctrl-C (a save in progress is never interrupted)
        return _failed(exc, 128 + 2, "interrupted" + ("; the newest complete checkpoint is kept"
                                                      if args.command == "train" else ""))
    except (BackendError, CheckpointError, DataError, JudgeError, EvaluationDataMissing, RunFolderError,
            DoubleBackwardError, DistributedError, ValueError) as exc:   # DoubleBackwardError: a WGAN-GP critic it cannot penalise
        return _failed(exc, EXIT_USAGE)
    except (DivergenceError, ReplicaDriftError) as exc:
        return _failed(exc, EXIT_FAILED)
    except ChecksFailed as exc:
        return _failed(exc, exc.code)
    except MemoryError as exc:
        return _failed(exc, EXIT_FAILED, "not enough memory for this model, batch or sample count; choose smaller ones")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        # The device failed under the work (disk full, I/O error, read-only remount): 1.
        # A path given that is missing, unreadable, too long or not writable: an input error, 2.
        return _failed(exc, EXIT_FAILED if exc.errno in _DEVICE_ERRORS else EXIT_USAGE, f"{where}{exc.strerror or exc}")
    except Exception as exc:
        if _RANKS[0] is None or _RANKS[0].size == 1:
            raise                      # a bug: the traceback says where
        import traceback
        traceback.print_exc()
        return _failed(exc, EXIT_FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        if reset_dtype:
            set_default_dtype(np.float32)


def _failed(exc, code, message=None) -> int | None:
    """Report an error and return the exit code. In a data-parallel run an error every rank meets
    at the same point (a usage error, the divergence guard, ...) is said once, by rank 0, and so is
    any error while the ranks check their flags, run folder and data (they compare, _agree); any
    other is said by the rank it happened on, which then ends all ranks (MPI abort), so none is
    left waiting in a collective."""
    from ..training.distributed import DistributedError, RankAborted, ReplicaDriftError
    from ..training import DivergenceError
    comm = _RANKS[0]
    if comm is None or comm.size == 1:
        _error(message or exc)
        return code
    if isinstance(exc, RankAborted):   # a rank that is a thread, ended by another: that one says why and
        return None                    # gives the exit code
    if _CHECKING[0]:
        try:
            _agree(comm, (code, " ".join(str(message or exc).split("\n")).strip()))
        except ChecksFailed as agreed:
            exc, code = agreed, agreed.code
    if isinstance(exc, ChecksFailed):
        for line in exc.lines if comm.rank == 0 else ():
            _error(line)
        return exc.code
    if isinstance(exc, (UsageError, DivergenceError, ReplicaDriftError, DistributedError)):
        if comm.rank == 0:
            _error(message or exc)
        return code
    _error(f"rank {comm.rank} of {comm.size}: {message or exc}; ending all ranks")
    comm.abort(code)
    return code
