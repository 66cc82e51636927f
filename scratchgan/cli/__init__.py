"""The command line: a thin layer over the library (each command calls public functions).

    scratchgan train --model dcgan --steps 2000 --out runs/dcgan
    scratchgan sample runs/dcgan
    scratchgan interpolate runs/dcgan --mode slerp
    scratchgan inpaint runs/cgan --mask bottom --data-dir ../shared/data/mnist
    scratchgan evaluate runs/dcgan --data-dir ../shared/data/mnist
    scratchgan judge train --dataset folder:~/pictures --channels 3 --image-size 32
    scratchgan gradcheck
    scratchgan bench

Every value is checked where it is parsed, and every anticipated failure ends in one line on
stderr starting "error:" and an exit code (docs/reliability.md):

    0  done                          1  the work failed (training diverged, a gradient check
    2  usage or input error              failed, a write failed mid-run: disk full, ...)
       (bad flag value, missing or   130 / 143  stopped by Ctrl-C / SIGTERM (train saves first)
       bad file, unwritable output)
"""
from __future__ import annotations

import sys

from . import bench, evaluate, gradcheck, inpaint, interpolate, judge, sample, train
from .args import _Parser
from .errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, guarded
from .train import RECIPES

__all__ = ["main", "build_parser", "UsageError", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "RECIPES"]


def build_parser():
    from .. import __version__
    p = _Parser(prog="scratchgan", description=__doc__.split("\n")[0],
                epilog="exit codes: 0 done, 1 the work failed, 2 usage or input error, 130/143 stopped by "
                       "Ctrl-C/SIGTERM (docs/reliability.md)")
    p.add_argument("--version", action="version", version=f"scratchgan {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in (train, sample, interpolate, inpaint, gradcheck, bench, evaluate, judge):   # the order of --help
        command.add_parser(sub)
    return p


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2) return their code
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    from ..backend import tune_host_allocator
    tune_host_allocator()  # the command owns its process: reuse freed host memory (docs/performance.md)
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")   # a path that is not UTF-8 prints as its own bytes
    return guarded(args, lambda: args.func(args))
