"""Data-parallel training across processes with MPI (mpi4py): every rank holds the same G and D,
takes its slice of each global batch, and one all-reduce of each network's flat gradient buffer per
optimiser step turns the ranks' gradients into the gradient of the whole batch:

    B = N b items per step, rank r takes items r b .. (r + 1) b - 1
    g_r = gradient of the mean loss over rank r's items       g = (1 / N) sum_r g_r

Every rank then takes the same optimiser step, so the replicas stay identical. The N-rank step is
the 1-rank step of the same global batch, not an approximation of it (docs/distributed.md):
- data order, noise and labels are drawn for the global batch from the same (seed, counter)
  streams as in one process, and each rank keeps its rows;
- Dropout draws only its rows of the global batch's mask (the stream skipped ahead to the first
  of them, backend.random_uint16), so masks are those of the 1-rank run;
- layers that look across the batch (BatchNorm, MinibatchStd) all-reduce their per-channel sums
  in forward and backward (``comm`` set by ``data_parallel``): SyncBatchNorm.

Run ``mpiexec -n N scratchgan train ...``; without mpi4py or outside mpiexec the ``Communicator``
of one process is used and every reduction is the identity. ``ThreadRanks`` runs the same ranks as
threads of one process (``scratchgan train --ranks N``), no MPI needed: NumPy releases the GIL in
its loops, so each rank's copies and element-wise passes get a core of their own, which BLAS's
threads never give them (docs/distributed.md, "Ranks as threads").
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import zlib

import numpy as np

from .. import backend

__all__ = ["Communicator", "MPICommunicator", "ThreadCommunicator", "ThreadRanks", "DistributedError",
           "RankAborted", "ReplicaDriftError", "launched_size", "from_environment", "data_parallel", "check_replicas",
           "agree_step"]

# Under load MPI_Abort could end the job before mpiexec had forwarded the failing rank's last lines
# (about 1 run in 12 of test_a_failing_or_drifting_rank_... with a busy core): a rank waits this long first.
ABORT_GRACE_S = 0.2

# Set by mpiexec for each rank: MPICH's and Intel MPI's Hydra (PMI), Open MPI, MVAPICH.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class DistributedError(RuntimeError):
    """A data-parallel run cannot start (no mpi4py, a batch that does not split over the ranks)."""


class RankAborted(DistributedError):
    """Raised in a rank that is a thread when another rank ended the run (ThreadRanks): that rank
    reports why."""


class ReplicaDriftError(RuntimeError):
    """The ranks' copies of the networks are no longer identical."""


class Communicator:
    """One process: rank 0 of 1, every reduction the identity. The base of MPICommunicator, and what
    a Trainer uses when it is given none.

    ``reduce_seconds``, ``reduce_bytes`` and ``reduce_calls`` add up the all-reduces made so far
    (``scratchgan bench --distributed`` reads them)."""

    rank, size = 0, 1

    def __init__(self):
        self.reduce_seconds, self.reduce_bytes, self.reduce_calls = 0.0, 0, 0

    def allreduce_sum(self, a):
        """Replace the array ``a`` (contiguous) by its sum over the ranks, in place; returns it."""
        return a

    def allreduce_mean(self, a):
        """Replace ``a`` by its mean over the ranks, in place (the data-parallel gradient); returns it."""
        self.allreduce_sum(a)
        if self.size > 1:
            a *= 1.0 / self.size
        return a

    def allgather(self, obj) -> list:
        """Every rank's ``obj`` (a small picklable value), in rank order."""
        return [obj]

    def barrier(self) -> None:
        pass

    def abort(self, code: int) -> None:
        """End every rank now with exit status ``code``."""
        raise SystemExit(code)

    def local_size(self) -> int:
        """How many ranks run on this machine (they share its cores)."""
        return 1

    def rows(self, global_batch: int) -> slice:
        """This rank's rows of a global batch of ``global_batch`` items."""
        if global_batch % self.size:
            raise DistributedError(f"a batch of {global_batch} does not split evenly over {self.size} ranks; "
                                   f"choose a batch size that is a multiple of {self.size}")
        b = global_batch // self.size
        return slice(self.rank * b, (self.rank + 1) * b)

    def __deepcopy__(self, memo):
        return self                # a handle on the ranks, shared by copies of a model (EMA's)

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (COMM_WORLD unless given). Host arrays are reduced in place
    by MPI; a CuPy array goes through a host copy (a CUDA-aware MPI is not assumed)."""

    def __init__(self, comm=None):
        super().__init__()
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedError("data-parallel training needs mpi4py and an MPI library: "
                                   "pip install 'scratchgan[mpi]'") from exc
        self._MPI = MPI
        self._comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()

    def allreduce_sum(self, a):
        t0 = time.perf_counter()
        if backend.is_cupy_array(a):
            host = backend.to_numpy(a)
            self._comm.Allreduce(self._MPI.IN_PLACE, host, op=self._MPI.SUM)
            a[...] = backend.array_module(a).asarray(host)
        else:
            if not a.flags.c_contiguous:
                raise ValueError(f"allreduce_sum: the array must be contiguous (shape {a.shape})")
            self._comm.Allreduce(self._MPI.IN_PLACE, a, op=self._MPI.SUM)
        self.reduce_seconds += time.perf_counter() - t0
        self.reduce_bytes += a.nbytes
        self.reduce_calls += 1
        return a

    def allgather(self, obj) -> list:
        return self._comm.allgather(obj)

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)   # mpiexec forwards this rank's error line before MPI_Abort ends the job
        self._comm.Abort(code)

    def local_size(self) -> int:
        node = self._comm.Split_type(self._MPI.COMM_TYPE_SHARED)
        try:
            return node.Get_size()
        finally:
            node.Free()


class ThreadCommunicator(Communicator):
    """Rank ``rank`` of a ThreadRanks' ranks, threads of this process. A reduction waits for every
    rank, then each adds all the ranks' arrays up in rank order, so every rank gets the same bits:
    for two ranks, the bits of MPI's sum (a0 + a1 either way round)."""

    def __init__(self, ranks: "ThreadRanks", rank: int):
        super().__init__()
        self._ranks, self.rank, self.size = ranks, rank, ranks.size

    def _exchange(self, value) -> list:
        """Every rank's ``value`` in rank order, once every rank has given its own."""
        self._ranks.slots[self.rank] = value
        self._ranks.wait()
        return list(self._ranks.slots)

    def allreduce_sum(self, a):
        t0 = time.perf_counter()
        if not a.flags.c_contiguous:
            raise ValueError(f"allreduce_sum: the array must be contiguous (shape {a.shape})")
        arrays = self._exchange(a)
        total = arrays[0].copy()
        for other in arrays[1:]:
            total += other
        self._ranks.wait()                  # every rank has read every array before any is overwritten
        a[...] = total
        self.reduce_seconds += time.perf_counter() - t0
        self.reduce_bytes += a.nbytes
        self.reduce_calls += 1
        return a

    def allgather(self, obj) -> list:
        everyone = self._exchange(obj)
        self._ranks.wait()
        return everyone

    def barrier(self) -> None:
        self._ranks.wait()

    def abort(self, code: int) -> None:
        """End this rank with ``code``; every other rank raises RankAborted at its next wait."""
        self._ranks.barrier.abort()
        raise SystemExit(code)

    def local_size(self) -> int:
        return self.size


class ThreadRanks:
    """``size`` data-parallel ranks as threads of this process. ``comms[r]`` is rank r's communicator
    (for rank r's Trainer); ``run(fn)`` calls ``fn(comms[r])`` on every rank at once, rank 0 in the
    calling thread (the one signals reach), and returns the results in rank order. An exception in a rank ends
    the others at their next wait (RankAborted) and is raised. The BLAS threads are the process's:
    give each rank its share of the cores, ``backend.set_threads(cores // size)``."""

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DistributedError(f"ranks must be an integer >= 1, got {size!r}")
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots = [None] * size
        self.comms = [ThreadCommunicator(self, r) for r in range(size)]

    def wait(self) -> None:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            raise RankAborted("another rank ended the run") from None

    def run(self, fn):
        results, errors = backend.in_threads(lambda r: fn(self.comms[r]), self.size,
                                             on_error=self.barrier.abort)   # no rank may wait for a failed one
        if self.barrier.broken:
            self.barrier.reset()            # ready for the next run
        failed = [e for e in errors if e is not None]
        if failed:                          # the cause, not the others' RankAborted
            raise next((e for e in failed if not isinstance(e, RankAborted)), failed[0])
        return results


def launched_size() -> int:
    """The number of ranks mpiexec started this process among (1 when not started by mpiexec)."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def from_environment(required: bool = False) -> Communicator:
    """The communicator of this process: MPI's when mpiexec started it with more than one rank (or
    when ``required``, as with --distributed), else the one-process Communicator."""
    size = launched_size()
    if size <= 1 and not required:
        return Communicator()
    try:
        return MPICommunicator()
    except DistributedError as exc:
        raise DistributedError(f"started by mpiexec with {size} ranks, but {exc}" if size > 1 else str(exc)) from None


def data_parallel(net, comm: Communicator):
    """Give every layer of ``net`` the communicator (``Module.comm``), so that the layers that look
    across the batch reduce over all ranks and Dropout draws its rows of the global mask. Returns
    ``net``. With the one-process Communicator the layers behave as without it."""
    for _, m in net.named_modules():
        m.comm = comm if comm.size > 1 else None
    return net


def check_replicas(comm: Communicator, arrays: dict, step: int) -> None:
    """Raise ReplicaDriftError on every rank unless each array (by name) is bitwise the same on
    every rank: one CRC-32 per array and one small allgather, cheap enough for every few steps."""
    sums = {name: zlib.crc32(np.ascontiguousarray(backend.to_numpy(a)).view(np.uint8)) for name, a in arrays.items()}
    everyone = comm.allgather(sums)
    differ = {r: sorted(k for k in s if s[k] != everyone[0].get(k)) for r, s in enumerate(everyone)}
    differ = {r: names for r, names in differ.items() if names}
    if differ:
        where = "; ".join(f"rank {r}: {', '.join(names)}" for r, names in differ.items())
        raise ReplicaDriftError(f"step {step}: the ranks' copies of the networks differ from rank 0's ({where}); "
                                "the replicas must stay identical, so the run stops (docs/distributed.md)")


def agree_step(comm: Communicator, outputs: dict, requested, timed_out: bool):
    """One small all-reduce per step: the step's losses averaged over the ranks (each rank's are of
    its rows), and a stop (Ctrl-C, SIGTERM: ``requested``; the time limit) seen by any rank taken by
    all of them. Returns (values, the signal every rank stops on or None, timed_out)."""
    names = list(outputs)
    v = np.array([float(outputs[k]) for k in names]
                 + [requested == signal.SIGINT, requested == signal.SIGTERM, timed_out], dtype=np.float64)
    comm.allreduce_sum(v)
    values = {k: float(x) / comm.size for k, x in zip(names, v)}
    signum = signal.SIGINT if v[-3] else signal.SIGTERM if v[-2] else None
    return values, signum, bool(v[-1])
