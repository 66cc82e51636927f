"""scratchgan sample: a grid of new samples from a trained run."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .args import _add_backend, _class_label, _integer, _output_file, _path, _use_backend
from .errors import EXIT_OK


def cmd_sample(args):
    from .. import backend
    from ..files.images import save_grid
    from ..training import load_run
    _use_backend(args)
    gan, meta = load_run(args.run_dir, use_ema=not args.no_ema)
    args.label = _class_label(gan, meta, args.label)
    out = _output_file(args.out or Path(args.run_dir) / f"sample_seed{args.seed}.png", "--out")
    labels = None
    if gan.conditional:
        if args.label is not None:
            labels = np.full(args.n, args.label)
        else:
            labels = np.repeat(np.arange(gan.num_classes), max(1, args.n // gan.num_classes))
    n = len(labels) if labels is not None else args.n
    images = gan.generate(n, seed=args.seed, labels=None if labels is None else backend.asarray(labels))
    nrow = max(1, args.n // gan.num_classes) if gan.conditional and args.label is None else int(np.ceil(np.sqrt(n)))
    save_grid(images, out, nrow=nrow, output=gan.output)
    print(f"wrote {out} ({n} samples, step {meta['step']})")
    return EXIT_OK


def add_parser(sub):
    s = sub.add_parser("sample", help="a grid of new samples from a trained run")
    s.add_argument("run_dir", type=_path)
    s.add_argument("--n", type=_integer(1, 10000), default=64, help="samples (default: 64)")
    s.add_argument("--label", type=_path, default=None,
                   help="cgan: the class to draw, by index or name, e.g. 7 or A (default: every class)")
    s.add_argument("--seed", type=_integer(0, 2**32 - 1), default=1, help="(default: 1)")
    s.add_argument("--out", default=None, type=_path, help="PNG to write (default: RUN/sample_seedSEED.png)")
    s.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    _add_backend(s)
    s.set_defaults(func=cmd_sample)
