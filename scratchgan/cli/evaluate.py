"""scratchgan evaluate: score a run with a judge (FID, KID, precision/recall, ...) and add the numbers to its report."""
from __future__ import annotations

import json
import sys

from .args import _add_backend, _integer, _path, _use_backend
from .errors import EXIT_OK


def cmd_evaluate(args):
    from ..evaluation import metrics
    _use_backend(args, heavy=True)
    # progress goes to stderr, so that stdout holds only the report (or only the JSON)
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = metrics.evaluate_run(args.run_dir, n=args.n, seed=args.seed, batch=args.batch, data_dir=args.data_dir,
                                  n_real=args.n_real, progress=progress, use_ema=not args.no_ema,
                                  dataset=args.dataset)
    from ..training.report import write_report
    write_report(args.run_dir)      # report.html gains the evaluation numbers
    print(json.dumps(result, indent=2) if args.json else metrics.format_report(result))
    return EXIT_OK


def add_parser(sub):
    e = sub.add_parser("evaluate", help="score a run with a judge (shipped for MNIST/Fashion-MNIST, else trained on "
                                        "the run's data and cached): FID, KID, precision/recall, density/coverage, "
                                        "memorisation, with error bars, next to real data and noise")
    e.add_argument("run_dir", type=_path)
    e.add_argument("--n", type=_integer(10, 100000), default=10000,
                   help="generated samples (cgan: n/10 per class) (default: 10000)")
    e.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0, help="(default: 0)")
    e.add_argument("--batch", type=_integer(1, 10000), default=500, help="judge batch size (default: 500)")
    e.add_argument("--data-dir", default=None, type=_path,
                   help="folder holding the official test set, t10k-*-ubyte.gz (default: $SCRATCHGAN_DATA or the cache)")
    e.add_argument("--n-real", type=_integer(10), default=None,
                   help="use only the first N real test/train images (default: all)")
    e.add_argument("--json", action="store_true", help="print the whole result as JSON (progress goes to stderr)")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    e.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    e.add_argument("--dataset", default=None, type=_path,
                   help="the run's training data, when it is not where the run recorded it (e.g. folder:PATH "
                        "after the folder moved) (default: the run's)")
    _add_backend(e)
    e.set_defaults(func=cmd_evaluate)
