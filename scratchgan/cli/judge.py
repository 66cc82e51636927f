"""scratchgan judge train: train the judge evaluate uses for a data set (or find it in the cache)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .args import UsageError, _add_backend, _integer, _Parser, _path, _use_backend
from .errors import EXIT_OK
from ..training.recipes import FOLDER


def cmd_judge(args):
    """judge train: train (or find in the cache) the judge of a data set, as evaluate would."""
    from ..evaluation.dataset_judge import describe, judge_for_dataset
    _use_backend(args, heavy=True)
    if args.dataset.startswith(FOLDER):
        from .. import data
        path = args.dataset[len(FOLDER):]
        if not path:
            raise UsageError("--dataset folder:PATH: give the folder, e.g. --dataset folder:~/pictures")
        ds = data.image_folder(Path(path).expanduser(), channels=args.channels, image_size=args.image_size,
                               skip_bad=True, progress=not args.quiet)
    else:
        from .. import data
        ds = data.load_dataset(args.dataset, split="train", data_dir=args.data_dir, progress=not args.quiet)
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    command = (f"scratchgan judge train --dataset {args.dataset} --channels {args.channels} "
               f"--image-size {args.image_size}")
    judge, _ = judge_for_dataset(ds, seed=args.seed, progress=progress, bar=not args.quiet, command=command,
                                 retrain=args.retrain)
    print(json.dumps(describe(judge), indent=2))
    return EXIT_OK


def add_parser(sub):
    j = sub.add_parser("judge", help="the judge of a data set: a small net trained on it, cached by its checksum")
    jsub = j.add_subparsers(dest="judge_command", required=True, parser_class=_Parser)
    jt = jsub.add_parser("train", help="train the judge evaluate uses for a data set (or find it in the cache)")
    jt.add_argument("--dataset", required=True, type=_path,
                    help="folder:PATH (a subfolder per class: a classifier; none: a rotation predictor) or a "
                         "data set name")
    jt.add_argument("--channels", type=int, choices=[1, 3], default=3,
                    help="folder:PATH: grey (1) or RGB (3) (default: 3)")
    jt.add_argument("--image-size", type=int, choices=[28, 32, 64], default=32,
                    help="folder:PATH: the run's image size (default: 32)")
    jt.add_argument("--data-dir", default=None, type=_path, help="a named data set's folder (as for train)")
    jt.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0, help="(default: 0)")
    jt.add_argument("--retrain", action="store_true", help="train again even when the cache holds this judge")
    jt.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    _add_backend(jt)
    jt.set_defaults(func=cmd_judge)
