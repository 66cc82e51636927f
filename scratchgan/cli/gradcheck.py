"""scratchgan gradcheck: check every layer's backward pass by central differences."""
from __future__ import annotations

from .args import _add_backend, _use_backend
from .errors import EXIT_FAILED, EXIT_OK


def cmd_gradcheck(args):
    from ..gradcheck_suite import run_suite
    _use_backend(args)
    ok = run_suite(verbose=True)
    return EXIT_OK if ok else EXIT_FAILED


def add_parser(sub):
    g = sub.add_parser("gradcheck", help="check every layer's backward pass by central differences")
    _add_backend(g)
    g.set_defaults(func=cmd_gradcheck)
