"""The array backend: NumPy on the CPU (default) or CuPy on a CUDA GPU.

One switch selects where *new* arrays are made (parameters, noise, data batches):

    scratchgan.backend.use("cupy")          # or "numpy"
    SCRATCHGAN_BACKEND=cupy python ...      # read once at import
    scratchgan train --backend cupy

Layer code never imports numpy or cupy for its arithmetic. It asks the arrays it is
given which namespace they live in (``array_module(X, W)``, CuPy's
``get_array_module`` idea), so the same code runs on both, and a NumPy array meeting
a CuPy array is an error instead of a silent host-device copy.
"""
from __future__ import annotations

import os
import time

import numpy as np

__all__ = [
    "use", "name", "xp", "array_module", "asarray", "to_numpy", "is_cupy_array",
    "default_dtype", "set_default_dtype", "random_generator", "random_uint16", "synchronize",
    "as_strided", "tune_host_allocator", "set_threads", "threads", "blas_description", "in_threads", "available_cores",
    "idle_cores", "BackendError",
]


class BackendError(RuntimeError):
    """Raised when the requested backend cannot be used, or arrays of two backends meet."""


_state = {"name": "numpy", "xp": np, "dtype": np.dtype(np.float32), "env_error": None}
_cupy = None  # the cupy module once it has been imported successfully


def _import_cupy():
    """Import CuPy and make sure a GPU is visible; fail at once with a clear message."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
    except ImportError as exc:
        raise BackendError(
            "backend 'cupy' requested but CuPy is not installed. Install the extra with "
            "`pip install scratchgan[gpu]` (or a cupy-cudaXXx wheel matching your CUDA), "
            "or use the default backend 'numpy'."
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when no driver/device
        raise BackendError(f"backend 'cupy' requested but no CUDA GPU is usable: {exc}") from exc
    if count < 1:
        raise BackendError("backend 'cupy' requested but no CUDA GPU is visible")
    _cupy = cupy
    return cupy


def use(backend: str) -> None:
    """Select the backend for new arrays: "numpy" or "cupy"."""
    backend = str(backend).lower()
    if backend == "numpy":
        _state.update(name="numpy", xp=np)
    elif backend == "cupy":
        _state.update(name="cupy", xp=_import_cupy())
    else:
        raise BackendError(f"unknown backend {backend!r}: expected 'numpy' or 'cupy'")
    _state["env_error"] = None   # an explicit choice replaces a bad SCRATCHGAN_BACKEND


def name() -> str:
    """The name of the selected backend."""
    _check_environment()
    return _state["name"]


def xp():
    """The array namespace (numpy or cupy) of the selected backend."""
    _check_environment()
    return _state["xp"]


def is_cupy_array(a) -> bool:
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def array_module(*arrays):
    """The namespace the given arrays live in; error if NumPy and CuPy arrays are mixed."""
    if _cupy is None:  # CuPy never imported: every array is a NumPy array (the per-layer fast path)
        return np
    on_gpu = [is_cupy_array(a) for a in arrays if a is not None and not np.isscalar(a)]
    if any(on_gpu):
        if not all(on_gpu):
            raise BackendError(
                "NumPy and CuPy arrays were mixed in one operation; move them to one "
                "backend first (scratchgan.backend.asarray / module.to(...))"
            )
        return _cupy
    return np


def asarray(a, dtype=None):
    """``a`` as an array of the selected backend (copies between host and device as needed)."""
    target = xp()
    if target is np and is_cupy_array(a):
        a = a.get()
    return target.asarray(a, dtype=dtype)


def to_numpy(a) -> np.ndarray:
    """A host (NumPy) copy or view of ``a``."""
    return a.get() if is_cupy_array(a) else np.asarray(a)


def default_dtype() -> np.dtype:
    """The floating dtype new parameters and data get (float32 unless changed)."""
    return _state["dtype"]


def set_default_dtype(dtype) -> None:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise BackendError(f"default dtype must be float32 or float64, got {dtype}")
    _state["dtype"] = dtype


def random_generator(xp_module, seed: int, counter: int):
    """A generator determined by (seed, counter) on the given namespace.

    Layers and the trainer keep only two integers of random state, so random streams
    are exactly reproducible after a checkpoint/resume on either backend.
    """
    if xp_module is np:
        return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(counter)])
    # CuPy's default_rng takes one integer: mix the pair with a large odd multiplier.
    return xp_module.random.default_rng((int(seed) * 0x9E3779B1 + int(counter)) % (2**63))


def random_uint16(rng, shape, first_row: int = 0, total_rows=None):
    """Uniform 16-bit integers of ``shape``: rows ``first_row ..`` of a draw of
    ``(total_rows,) + shape[1:]`` values (the whole draw by default), so that each rank of a
    data-parallel run draws its part of the global batch's values (distributed.py).

    On NumPy every 64-bit output of the generator (PCG64) gives four values, its bytes read as
    little-endian 16-bit integers, and a rank advances the generator past the earlier rows
    instead of drawing them. On CuPy the values are floor(65536 u) of float32 uniforms u (the
    whole draw, then its rows), as its generators cannot be advanced."""
    shape = tuple(int(d) for d in shape)
    total_rows = shape[0] if total_rows is None else int(total_rows)
    per_row = int(np.prod(shape[1:], dtype=np.int64))
    if not (isinstance(rng, np.random.Generator) and isinstance(rng.bit_generator, np.random.PCG64)):
        u = rng.random((total_rows,) + shape[1:], dtype=np.float32)[first_row:first_row + shape[0]]
        return (u * 65536.0).astype(np.uint16)
    skip, count = first_row * per_row, shape[0] * per_row
    if skip // 4:
        rng.bit_generator.advance(skip // 4)
    words = rng.bit_generator.random_raw(-(-(skip % 4 + count) // 4))
    return words.view("<u2")[skip % 4:skip % 4 + count].reshape(shape)


def synchronize(xp_module=None) -> None:
    """Wait for the GPU to finish queued work (no-op on NumPy); for honest timings."""
    if (xp_module or _state["xp"]) is not np and _cupy is not None:
        _cupy.cuda.get_current_stream().synchronize()


def as_strided(a, shape, strides):
    """A strided view of ``a`` on its own backend (read only use)."""
    if is_cupy_array(a):
        return _cupy.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)
    return np.lib.stride_tricks.as_strided(a, shape=shape, strides=strides, writeable=False)


def tune_host_allocator() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of giving it back to the kernel.

    NumPy takes every array from malloc. By default glibc serves large blocks (128 KiB, rising
    to at most 32 MiB) with fresh mmap()s and unmaps them on free, so every large temporary
    of a training step (im2col columns, masks, activations) is paid again in page faults
    and page zeroing: 15-20% of a DCGAN step on this project's machine (docs/performance.md).
    This raises the mmap threshold to 256 MiB and the trim threshold to 1 GiB: freed blocks
    are reused and the process keeps about its peak working set. It also keeps every thread on
    the one main heap: a 3x32x32 DCGAN step on two ranks that are threads (ThreadRanks) took
    182 ms with a heap per thread, 164 ms with one (a thread's heap grows in pieces of at most
    64 MiB, so large temporaries likely came from fresh mappings).

    It changes the whole process, so importing scratchgan never does it; the command line
    does, and scripts call it once at the start. Returns False where it does not apply
    (no glibc). CuPy arrays are unaffected: CuPy pools device memory itself.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
    return (bool(mallopt(M_MMAP_THRESHOLD, 256 * 2**20)) and bool(mallopt(M_TRIM_THRESHOLD, 2**30))
            and bool(mallopt(M_ARENA_MAX, 1)))


_thread_limit = []   # the threadpoolctl limit in force (kept alive: dropping it would not undo it)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def idle_cores(interval: float = 0.2) -> int:
    """How many of this process's cores other processes leave free: their busy time over
    ``interval`` seconds, read from /proc/stat while this process sleeps, in whole cores (at
    least 1). Where /proc/stat cannot be read (not Linux), all available cores."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def ticks():
        with open("/proc/stat", encoding="ascii") as f:    # "cpuN user nice system idle iowait irq softirq steal ..."
            rows = (line.split() for line in f if line.startswith("cpu") and line[3].isdigit())
            return {int(r[0][3:]): (sum(map(int, r[1:9])), int(r[4]) + int(r[5])) for r in rows}
    try:
        before = ticks()
        time.sleep(interval)
        after = ticks()
        busy = 0.0
        for c in cores:
            total, idle = after[c][0] - before[c][0], after[c][1] - before[c][1]
            busy += (total - idle) / total if total > 0 else 0.0
    except (OSError, KeyError, ValueError, IndexError):
        return available_cores()
    return max(1, len(cores) - round(busy))


def set_threads(n: int) -> int:
    """Use ``n`` threads in the BLAS library's matrix products (OpenBLAS, MKL, BLIS: whichever
    NumPy loaded), from now on, for the whole process. threadpoolctl does it at run time, for
    every BLAS vendor, where environment variables act only before NumPy is imported.
    Returns the number set. No effect on CuPy, which computes on the GPU."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BackendError(f"threads must be an integer >= 1, got {n!r}")
    from threadpoolctl import threadpool_limits
    _thread_limit[:] = [threadpool_limits(limits=n, user_api="blas")]
    return n


def threads() -> int | None:
    """The BLAS library's thread count now (None when no BLAS is found)."""
    from threadpoolctl import threadpool_info
    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts) if counts else None


def in_threads(fn, n: int, on_error=None) -> tuple[list, list]:
    """Call ``fn(i)`` for i in range(n) at once: fn(0) in the calling thread (the one signals reach),
    each other in a thread of its own. NumPy releases the GIL in its loops, so the calls run on as
    many cores. Returns (results, errors), each in order of i (None where a call raised or did not);
    ``on_error()`` runs in a failing thread as soon as its call raises (to wake calls waiting on it)."""
    import threading
    results, errors = [None] * n, [None] * n

    def call(i):
        try:
            results[i] = fn(i)
        except BaseException as exc:    # SystemExit and KeyboardInterrupt too: the caller decides
            errors[i] = exc
            if on_error is not None:
                on_error()
    others = [threading.Thread(target=call, args=(i,), name=f"scratchgan-{i}", daemon=True) for i in range(1, n)]
    for t in others:
        t.start()
    call(0)
    for t in others:
        t.join()
    return results, errors


def blas_description(threads: bool = True) -> str:
    """NumPy's BLAS library as threadpoolctl sees it, e.g. "OpenBLAS 0.3.31, SkylakeX kernels, 2
    thread(s)" (without the threads if not ``threads``), plus OPENBLAS_CORETYPE where the environment
    sets it: OpenBLAS then runs the kernels it names, not the ones it would pick for this CPU.
    Every timing depends on these; benchmarks print them."""
    from threadpoolctl import threadpool_info
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    pools.sort(key=lambda p: "numpy" not in p.get("filepath", ""))      # NumPy's own first (SciPy may bring another)
    if not pools:
        return "no BLAS library found"
    p = pools[0]
    name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(p.get("internal_api"), p.get("internal_api"))
    text = f"{name} {p.get('version') or '?'}"
    if p.get("architecture"):
        text += f", {p['architecture']} kernels"
    if threads:
        text += f", {p.get('num_threads')} thread(s)"
    if p.get("internal_api") == "openblas" and os.environ.get("OPENBLAS_CORETYPE"):
        text += f" (OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} set in the environment)"
    return text


def _check_environment() -> None:
    """Raise the deferred error of a bad SCRATCHGAN_BACKEND (until use() chooses a backend)."""
    if _state["env_error"] is not None:
        raise _state["env_error"]


_env = os.environ.get("SCRATCHGAN_BACKEND")
if _env:
    # Importing scratchgan never fails because of the environment (`scratchgan --help` must work):
    # a bad value is reported by the first call that needs the backend.
    try:
        use(_env)
    except BackendError as exc:
        _state["env_error"] = BackendError(f"SCRATCHGAN_BACKEND={_env!r}: {exc}")
