"""The command line: a thin layer over the library (each command calls public functions).

    scratchgan train --model dcgan --steps 2000 --out runs/dcgan
    scratchgan sample runs/dcgan
    scratchgan interpolate runs/dcgan --mode slerp
    scratchgan inpaint runs/cgan --mask bottom --data-dir ../shared/data/mnist
    scratchgan evaluate runs/dcgan --data-dir ../shared/data/mnist
    scratchgan gradcheck
    scratchgan bench
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# Steps for which a CPU run of a few minutes already shows digit-like samples.
DEFAULT_STEPS = {"mlp": 10000, "cgan": 10000, "dcgan": 1000}
DEFAULT_BATCH = {"mlp": 64, "cgan": 64, "dcgan": 64}


def _add_backend(p):
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $SCRATCHGAN_BACKEND or numpy)")


def _use_backend(args):
    from . import backend
    if args.backend:
        backend.use(args.backend)


def _parse_classes(text):
    return [int(c) if c.strip().isdigit() else c.strip() for c in text.split(",")] if text else None


def cmd_train(args):
    from . import backend, data, models
    from .checkpoint import latest_checkpoint
    from .training import TrainConfig, Trainer
    _use_backend(args)
    out = Path(args.out or f"runs/{args.model}")
    has_ckpt = (out / "checkpoints").exists() and latest_checkpoint(out / "checkpoints") is not None
    if args.resume:
        if not has_ckpt:
            sys.exit(f"--resume: no checkpoint in {out / 'checkpoints'}")
        meta = json.loads((out / "config.json").read_text())
        cfg = TrainConfig.from_dict(meta["train"])
        if args.steps is not None:
            cfg.steps, cfg.epochs = args.steps, None
        if args.epochs is not None:
            cfg.epochs = args.epochs
    else:
        if has_ckpt and not args.overwrite:
            sys.exit(f"{out} already holds a run: continue it with --resume, or choose another --out "
                     "(or --overwrite)")
        model_args = {}
        if args.latent_dim is not None:
            model_args["latent_dim"] = args.latent_dim
        if args.noise is not None:
            model_args["noise"] = args.noise
        if args.upsample is not None:
            model_args["upsample"] = args.upsample
        if args.g_hidden:
            model_args["g_hidden"] = [int(v) for v in args.g_hidden.split(",")]
        if args.d_hidden:
            model_args["d_hidden"] = [int(v) for v in args.d_hidden.split(",")]
        cfg = TrainConfig(
            model=args.model, model_args=model_args, dataset=args.dataset, classes=_parse_classes(args.classes),
            steps=args.steps if args.steps is not None else DEFAULT_STEPS[args.model], epochs=args.epochs,
            batch_size=args.batch_size or DEFAULT_BATCH[args.model], lr=args.lr, beta1=args.beta1, k=args.k,
            g_loss=args.g_loss, label_smoothing=args.label_smoothing, seed=args.seed,
            backend=backend.name(), log_every=args.log_every, sample_every=args.sample_every,
            checkpoint_every=args.checkpoint_every, dtype=args.dtype)
        if has_ckpt and args.overwrite:
            import shutil
            shutil.rmtree(out)
    backend.set_default_dtype(cfg.dtype)  # a resumed run keeps the dtype it was started with
    gan = models.build(cfg.model, seed=cfg.seed, **cfg.model_args)
    import warnings
    with warnings.catch_warnings():  # the note below says it plainly, without a warning's source line
        warnings.simplefilter("ignore", UserWarning)
        ds = data.load_dataset(cfg.dataset, split="train", data_dir=args.data_dir, download=args.download,
                               classes=cfg.classes, progress=not args.quiet)
    if ds.is_bundled:  # said even with --quiet
        print(f"note: training on the {ds.source}; for the full data set use --data-dir DIR, "
              "$SCRATCHGAN_DATA or --download", file=sys.stderr)
    scale = "tanh" if gan.output == "tanh" else "sigmoid"
    if not args.quiet:
        print(f"data: {ds.name} ({ds.split}), {len(ds):,} images from {ds.source}")
        print(f"model: {cfg.model} on {backend.name()}  ->  {out}")
        gan.G.summary((gan.latent_dim + gan.num_classes,))
        gan.D.summary((784 + gan.num_classes,) if gan.conditional else gan.image_shape)
    trainer = Trainer(gan, ds.as_float(scale=scale, dtype=backend.default_dtype()), ds.labels, cfg, run_dir=out,
                      quiet=args.quiet, data_note=ds.source)
    if args.resume:
        trainer.resume()
    last = trainer.train()
    if not args.quiet:
        print(f"done: step {trainer.step}; samples in {out / 'samples.png'}, losses in {out / 'losses.png'}, "
              f"checkpoints in {out / 'checkpoints'}")
        if last:
            print("last: " + ", ".join(f"{k}={v}" for k, v in last.items()))
    return 0


def cmd_sample(args):
    from .images import save_grid
    from .training import load_run
    _use_backend(args)
    gan, meta = load_run(args.run_dir)
    labels = None
    if gan.conditional:
        if args.label is not None:
            labels = np.full(args.n, args.label)
        else:
            labels = np.repeat(np.arange(gan.num_classes), max(1, args.n // gan.num_classes))
    from . import backend
    n = len(labels) if labels is not None else args.n
    images = gan.generate(n, seed=args.seed, labels=None if labels is None else backend.asarray(labels))
    nrow = max(1, args.n // gan.num_classes) if gan.conditional and args.label is None else int(np.ceil(np.sqrt(n)))
    out = Path(args.out or Path(args.run_dir) / f"sample_seed{args.seed}.png")
    save_grid(images, out, nrow=nrow, output=gan.output)
    print(f"wrote {out} ({n} samples, step {meta['step']})")
    return 0


def cmd_interpolate(args):
    from . import latent
    from .training import load_run
    _use_backend(args)
    gan, meta = load_run(args.run_dir)
    out = Path(args.out or Path(args.run_dir) / f"interpolate_{args.mode}.png")
    latent.save_walk(gan, out, mode=args.mode, steps=args.steps, rows=args.rows, seed=args.seed,
                     dim=args.dim, label=args.label)
    print(f"wrote {out}")
    return 0


def cmd_evaluate(args):
    from . import metrics
    _use_backend(args)
    result = metrics.evaluate_run(args.run_dir, n=args.n, seed=args.seed, batch=args.batch, data_dir=args.data_dir,
                                  n_real=args.n_real, progress=None if args.quiet else print)
    print(json.dumps(result, indent=2) if args.json else metrics.format_report(result))
    return 0


def cmd_inpaint(args):
    """Complete the missing part of digits with a trained GAN (a thin layer over scratchgan.inpaint)."""
    from . import backend, data, inpaint
    from .images import save_grid
    from .training import load_run
    _use_backend(args)
    gan, meta = load_run(args.run_dir)
    labels = None
    if args.images:                       # your own digits: .npy (N, 28, 28) or (N, 1, 28, 28), or one PNG
        path = Path(args.images)
        if path.suffix.lower() == ".npy":
            raw = np.load(path, allow_pickle=False)
        else:
            import matplotlib.image as mpimg
            raw = mpimg.imread(path)      # PNG -> float in [0, 1]
            if raw.ndim == 3:
                raw = raw[..., :3].mean(axis=-1)
        if raw.ndim in (2, 3):
            raw = raw.reshape((-1, 1) + raw.shape[-2:])
        unit = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)  # -> [0, 1]
        images = unit * 2.0 - 1.0 if gan.output == "tanh" else unit
        source = str(path)
    else:                                 # held-out digits: the MNIST test set, never trained on
        try:
            ds = data.load_dataset("mnist", split="test", data_dir=args.data_dir, progress=False)
        except data.DataNotFound:
            raise ValueError("the MNIST test set was not found: give --data-dir DIR (a folder with "
                             "t10k-images-idx3-ubyte.gz) or your own digits with --images") from None
        images = ds.as_float(scale=gan.output)[args.start:args.start + args.n]
        if gan.conditional and args.use_labels:
            labels = ds.labels[args.start:args.start + args.n]
        source = f"MNIST test digits {args.start}..{args.start + len(images) - 1}"
    mask = inpaint.make_mask(args.mask, shape=images.shape[2:], seed=args.seed, fraction=args.fraction)
    res = inpaint.inpaint(gan, images, mask, steps=args.steps, lr=args.lr, lam=args.lam, restarts=args.restarts,
                          perceptual=args.perceptual, weighted=not args.unweighted, labels=labels, seed=args.seed)
    completed = backend.to_numpy(res.completed)
    train = data.load_dataset("mnist-bundled").as_float(scale=gan.output)
    unit = 0.5 if gan.output == "tanh" else 1.0            # errors in [0, 1] pixel units
    err = inpaint.completion_error(completed, images, mask) * unit
    base = inpaint.completion_error(inpaint.mean_image_fill(train, images, mask), images, mask) * unit
    masked = inpaint.masked_images(images, mask, fill=-1.0 if gan.output == "tanh" else 0.0)
    per_row = 4                                             # digits per row: original | masked | completed
    grid = np.stack([images, masked, completed], axis=1).reshape((-1,) + images.shape[1:])
    out = Path(args.out or Path(args.run_dir) / f"inpaint_{Path(str(args.mask)).stem}.png")
    save_grid(grid, out, nrow=3 * min(per_row, len(images)), output=gan.output)
    if args.save_npy:
        np.save(out.with_suffix(".npy"), completed)
    print(f"wrote {out} ({len(images)} images from {source}; original | masked | completed; "
          f"{1 - float(mask.mean()):.0%} of the pixels missing)")
    print(f"mean |error| on the missing pixels: GAN {err:.4f}, mean-image fill {base:.4f} "
          f"(ratio {err / max(base, 1e-12):.2f})")
    if res.labels is not None:
        print("labels used: " + " ".join(str(int(v)) for v in backend.to_numpy(res.labels)))
    return 0


def cmd_gradcheck(args):
    from .gradcheck_suite import run_suite
    _use_backend(args)
    ok = run_suite(verbose=True)
    return 0 if ok else 1


def cmd_bench(args):
    from .bench import main as bench_main
    _use_backend(args)
    return bench_main(args)


def build_parser():
    p = argparse.ArgumentParser(prog="scratchgan", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GAN and write a run folder")
    t.add_argument("--model", choices=["mlp", "cgan", "dcgan"], default="mlp")
    t.add_argument("--dataset", default="mnist", help="mnist, mnist-bundled, fashion-mnist, emnist-letters")
    t.add_argument("--data-dir", default=None, help="folder holding the data set's IDX files")
    t.add_argument("--download", action="store_true", help="download the data set if it is not found")
    t.add_argument("--classes", default=None, help="keep only these classes, e.g. 2 or 0,1,2")
    t.add_argument("--steps", type=int, default=None, help="generator steps (default per model)")
    t.add_argument("--epochs", type=float, default=None, help="train for this many epochs instead of --steps")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--beta1", type=float, default=0.5)
    t.add_argument("--k", type=int, default=1, help="discriminator steps per generator step")
    t.add_argument("--g-loss", choices=["nonsaturating", "minimax"], default="nonsaturating")
    t.add_argument("--label-smoothing", type=float, default=0.0, help="one-sided: real target = 1 - this")
    t.add_argument("--latent-dim", type=int, default=None)
    t.add_argument("--noise", choices=["normal", "uniform"], default=None)
    t.add_argument("--upsample", choices=["transposed", "nearest"], default=None, help="dcgan only")
    t.add_argument("--g-hidden", default=None, help="mlp/cgan generator widths, e.g. 200,500")
    t.add_argument("--d-hidden", default=None, help="mlp/cgan discriminator widths, e.g. 500,200")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="run folder (default runs/MODEL)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--sample-every", type=int, default=500)
    t.add_argument("--checkpoint-every", type=int, default=1000)
    t.add_argument("--quiet", action="store_true", help="no progress bar or summaries")
    _add_backend(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="a grid of new samples from a trained run")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--label", type=int, default=None, help="cgan: the class to draw (default: every class)")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--out", default=None)
    _add_backend(s)
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("interpolate", help="latent walks: line/slerp between two z, or a sweep of one dimension")
    i.add_argument("run_dir")
    i.add_argument("--mode", choices=["linear", "slerp", "sweep", "classes"], default="slerp")
    i.add_argument("--steps", type=int, default=10)
    i.add_argument("--rows", type=int, default=8)
    i.add_argument("--dim", type=int, default=0, help="sweep: the latent dimension to vary")
    i.add_argument("--label", type=int, default=None, help="cgan: the class for linear/slerp/sweep")
    i.add_argument("--seed", type=int, default=1)
    i.add_argument("--out", default=None)
    _add_backend(i)
    i.set_defaults(func=cmd_interpolate)

    n = sub.add_parser("inpaint", help="complete the missing part of digits with a trained GAN (Yeh et al. 2017)")
    n.add_argument("run_dir")
    n.add_argument("--mask", default="center",
                   help="center, left, right, top, bottom, random, or a .png/.npy file (white/1 = known)")
    n.add_argument("--fraction", type=float, default=None,
                   help="fraction of MISSING pixels (default: center 0.25, sides 0.5, random 0.8)")
    n.add_argument("--images", default=None, help=".npy or .png digits to complete (default: MNIST test digits)")
    n.add_argument("--data-dir", default=None, help="folder holding the MNIST test files (t10k-*)")
    n.add_argument("--n", type=int, default=16, help="test digits to complete")
    n.add_argument("--start", type=int, default=0, help="index of the first test digit")
    n.add_argument("--steps", type=int, default=500, help="Adam steps on z")
    n.add_argument("--lr", type=float, default=0.03)
    n.add_argument("--restarts", type=int, default=8, help="random starting codes per image; the best is kept")
    n.add_argument("--lam", type=float, default=0.1, help="weight of the perceptual (discriminator) loss")
    n.add_argument("--perceptual", choices=["nonsaturating", "minimax"], default="nonsaturating")
    n.add_argument("--unweighted", action="store_true", help="plain L1 on the known pixels (no 7x7 weights)")
    n.add_argument("--use-labels", action="store_true",
                   help="cgan: condition on the test digits' true labels (default: try every class)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--out", default=None, help="PNG to write (default RUN/inpaint_MASK.png)")
    n.add_argument("--save-npy", action="store_true", help="also save the completed images next to the PNG")
    _add_backend(n)
    n.set_defaults(func=cmd_inpaint)

    g = sub.add_parser("gradcheck", help="check every layer's backward pass by central differences")
    _add_backend(g)
    g.set_defaults(func=cmd_gradcheck)

    b = sub.add_parser("bench", help="time training iterations and layers")
    b.add_argument("--models", default="mlp,dcgan")
    b.add_argument("--batch-sizes", default="16,64,256")
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--layers", action="store_true", help="per-layer forward/backward times (DCGAN sizes)")
    b.add_argument("--json", action="store_true")
    _add_backend(b)
    b.set_defaults(func=cmd_bench)
    e = sub.add_parser("evaluate", help="score a run with the judge: FID, classifier score, precision/recall, "
                                        "memorisation, next to real-data ceilings")
    e.add_argument("run_dir")
    e.add_argument("--n", type=int, default=10000, help="generated samples (cgan: n/10 per class)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch", type=int, default=500)
    e.add_argument("--data-dir", default=None, help="folder holding the official test set (t10k-*-ubyte.gz)")
    e.add_argument("--n-real", type=int, default=None, help="use only the first N real test/train images")
    e.add_argument("--json", action="store_true", help="print the whole result as JSON")
    e.add_argument("--quiet", action="store_true")
    _add_backend(e)
    e.set_defaults(func=cmd_evaluate)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .backend import BackendError, set_default_dtype, tune_host_allocator
    tune_host_allocator()  # the command owns its process: reuse freed host memory (docs/performance.md)
    from .checkpoint import CheckpointError
    from .data import DataError
    from .judge import JudgeError
    from .metrics import EvaluationDataMissing
    from .training import DivergenceError
    try:
        return args.func(args)
    except (BackendError, CheckpointError, DataError, DivergenceError, JudgeError, EvaluationDataMissing,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        set_default_dtype(np.float32)  # in-process callers (tests, notebooks) get the default back


if __name__ == "__main__":
    sys.exit(main())
