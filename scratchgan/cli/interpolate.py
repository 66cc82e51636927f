"""scratchgan interpolate: latent walks of a trained run (line/slerp between two z, a sweep of one dimension, the classes)."""
from __future__ import annotations

from pathlib import Path

from .args import UsageError, _add_backend, _class_label, _integer, _output_file, _path, _use_backend
from .errors import EXIT_OK


def cmd_interpolate(args):
    from ..generation import latent
    from ..training import load_run
    _use_backend(args)
    gan, meta = load_run(args.run_dir, use_ema=not args.no_ema)
    args.label = _class_label(gan, meta, args.label)
    if args.dim >= gan.latent_dim:
        raise UsageError(f"--dim: expected a latent dimension in 0..{gan.latent_dim - 1} for this run, got {args.dim}")
    if args.mode == "classes" and not gan.conditional:
        raise UsageError(f"--mode classes needs a conditional (cgan) run; this run's model is {gan.kind}")
    out = _output_file(args.out or Path(args.run_dir) / f"interpolate_{args.mode}.png", "--out")
    latent.save_walk(gan, out, mode=args.mode, steps=args.steps, rows=args.rows, seed=args.seed,
                     dim=args.dim, label=args.label)
    print(f"wrote {out}")
    return EXIT_OK


def add_parser(sub):
    i = sub.add_parser("interpolate", help="latent walks: line/slerp between two z, or a sweep of one dimension")
    i.add_argument("run_dir", type=_path)
    i.add_argument("--mode", choices=["linear", "slerp", "sweep", "classes"], default="slerp",
                   help="(default: slerp)")
    i.add_argument("--steps", type=_integer(2, 100), default=10, help="images per row (default: 10)")
    i.add_argument("--rows", type=_integer(1, 100), default=8, help="(default: 8)")
    i.add_argument("--dim", type=_integer(0), default=0, help="sweep: the latent dimension to vary (default: 0)")
    i.add_argument("--label", type=_path, default=None,
                   help="cgan: the class for linear/slerp/sweep, by index or name (default: a different class per row)")
    i.add_argument("--seed", type=_integer(0, 2**32 - 1), default=1, help="(default: 1)")
    i.add_argument("--out", default=None, type=_path, help="PNG to write (default: RUN/interpolate_MODE.png)")
    i.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    _add_backend(i)
    i.set_defaults(func=cmd_interpolate)
