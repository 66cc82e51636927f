"""What more than one command uses: the flags' value parsers, the parser class, --backend/--threads, and small helpers."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .errors import _RANKS, EXIT_USAGE, UsageError


# --------------------------------------------------------------------------- value parsers
def _integer(lo, hi=None):
    def parse(text):
        what = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


def _number(lo, hi=math.inf, lo_open=False, hi_open=False):
    interval = (f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}" if hi < math.inf
                else f"{'>' if lo_open else '>='} {lo:g}")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {'in ' * (hi < math.inf)}{interval}, "
                                             f"got {text!r}") from None
        inside = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
        if not math.isfinite(value) or not inside:
            raise argparse.ArgumentTypeError(f"expected a number {'in ' * (hi < math.inf)}{interval}, got {text!r}")
        return value
    return parse


def _int_list(lo, hi, max_len):
    def parse(text):
        parts = [t.strip() for t in text.split(",")]
        try:
            values = [int(t) for t in parts]
        except ValueError:
            values = None
        if not values or len(values) > max_len or any(v < lo or v > hi for v in values):
            raise argparse.ArgumentTypeError(f"expected 1 to {max_len} comma-separated integers in {lo}..{hi}, "
                                             f"got {text!r}")
        return values
    return parse


def _path(text):
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return text


def _classes(text):
    parts = [t.strip() for t in text.split(",")]
    if not all(parts) or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected class labels or names separated by commas, e.g. 2 or 0,1,2; "
                                         f"got {text!r}")
    return [int(c) if c.isdigit() else c for c in parts]


def _image_shapes(text):
    shapes = []
    for part in text.split(","):
        dims = part.strip().lower().split("x")
        if len(dims) != 3 or not all(d.isdigit() for d in dims) or int(dims[0]) not in (1, 3) \
                or dims[1] != dims[2] or int(dims[1]) not in (28, 32, 64):
            raise argparse.ArgumentTypeError(f"expected CxHxW shapes with C 1 or 3 and H = W in 28, 32, 64, "
                                             f"e.g. 3x32x32; got {part!r}")
        shapes.append(tuple(int(d) for d in dims))
    return shapes


def _image_shape(text):
    """One CxHxW shape (``_image_shapes``' rules), e.g. 3x64x64."""
    shapes = _image_shapes(text)
    if len(shapes) != 1:
        raise argparse.ArgumentTypeError(f"expected one CxHxW shape, e.g. 3x64x64; got {text!r}")
    return shapes[0]


def _names(choices):
    def parse(text):
        names = [t.strip() for t in text.split(",")]
        if not names or any(n not in choices for n in names):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}; got {text!r}")
        return names
    return parse


_threads = _integer(1, 1024)   # --threads and $SCRATCHGAN_THREADS


# --------------------------------------------------------------------------- helpers
# Set by the user, these fix the BLAS library's threads before NumPy loads it; scratchgan then leaves them.
_BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _use_backend(args, comm=None, heavy=False):
    """The backend (--backend, $SCRATCHGAN_BACKEND) and the BLAS threads: --threads, else
    $SCRATCHGAN_THREADS; under mpiexec the machine's cores shared among its ranks (``comm``), so
    that ranks do not fight over them; else, for the ``heavy`` commands (train, bench, evaluate, inpaint), the cores
    other processes leave idle when it starts (backend.idle_cores; docs/performance.md): BLAS
    threads on a core another process holds wait for it and slow every product several times.
    Where $OPENBLAS_NUM_THREADS (or OMP_, MKL_, BLIS_) is set, that choice stands."""
    from .. import backend
    if args.backend:
        backend.use(args.backend)
    else:
        backend.name()  # a bad SCRATCHGAN_BACKEND is reported here, as an error line
    n = getattr(args, "threads", None)
    if n is None and os.environ.get("SCRATCHGAN_THREADS"):
        text = os.environ["SCRATCHGAN_THREADS"]
        try:
            n = _threads(text.strip())        # the range of --threads
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"SCRATCHGAN_THREADS: {exc}") from None
    if n is None and comm is not None and comm.size > 1:
        n = max(1, backend.available_cores() // comm.local_size())
    if n is None and heavy and backend.name() == "numpy" and not any(os.environ.get(v) for v in _BLAS_VARIABLES):
        cores, idle = backend.available_cores(), backend.idle_cores()
        if idle < cores:
            n = idle
            _note(f"{cores - idle} of {cores} cores are busy with other processes: using {idle} thread(s) for "
                  f"matrix products (--threads N to choose)")
    if n is not None:
        backend.set_threads(n)


def _note(msg):
    """A "note: ..." line on stderr (from rank 0 alone in a data-parallel run)."""
    if _RANKS[0] is None or _RANKS[0].rank == 0:
        print(f"note: {msg}", file=sys.stderr, flush=True)


def _say(args, msg):
    if not getattr(args, "quiet", False):
        print(msg, flush=True)


def _output_file(path, flag) -> Path:
    """Check an output file's place before the work that makes it."""
    from ..training.runfolder import check_writable
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    check_writable(path.parent, f"{flag} {path}")
    return path


def _check_label(gan, label, flag="--label"):
    if label is None:
        return
    if not gan.conditional:
        raise UsageError(f"{flag} {label}: this run's model ({gan.kind}) is unconditional; {flag} applies to "
                         "conditional (cgan) runs")
    if not 0 <= label < gan.num_classes:
        raise UsageError(f"{flag}: expected a class in 0..{gan.num_classes - 1} for this run, got {label}")


def _rate(value):
    """A learning rate as written in papers: 0.0005 -> '5e-4' (2.5e-4 keeps its digits)."""
    short = f"{value:.0e}"
    return (short if float(short) == value else f"{value:g}").replace("e-0", "e-")


def _show(value):
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _class_label(gan, meta, label, flag="--label"):
    """--label as a class index: an integer, or a class name of the run (e.g. A for EMNIST letters)."""
    if label is None:
        return None
    if not gan.conditional:
        _check_label(gan, label, flag)     # refused as unconditional, whatever the label (a name too)
    names = meta.get("class_names") if isinstance(meta.get("class_names"), list) else None
    if names and not label.lstrip("-").isdigit():
        folded = [str(n).lower() for n in names]
        if label.lower() in folded:
            index = folded.index(label.lower())
            _check_label(gan, index, flag)
            return index
    try:
        index = int(label)
    except ValueError:
        known = f"; its classes: {', '.join(map(str, names))}" if names else ""
        raise UsageError(f"{flag} {label!r}: not a class of this run{known}") from None
    _check_label(gan, index, flag)
    return index


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line: "error: argument --steps: expected ...". """

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see: {self.prog} --help)\n")


def _add_backend(p):
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $SCRATCHGAN_BACKEND, else numpy)")
    p.add_argument("--threads", type=_threads, default=None,
                   help="threads for the CPU's matrix products (default: $SCRATCHGAN_THREADS; else train, bench, "
                        "evaluate and inpaint use the cores other processes leave idle, the other commands the "
                        "BLAS library's choice; under mpiexec the machine's cores divided among its ranks)")
