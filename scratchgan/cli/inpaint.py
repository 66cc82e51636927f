"""scratchgan inpaint: complete the missing part of images with a trained GAN (Yeh et al. 2017)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .args import UsageError, _add_backend, _integer, _number, _output_file, _path, _use_backend
from .errors import EXIT_OK


def _read_images(path: Path, channels: int = 1, size: int = 28):
    """Images to complete from a .npy array or an image file -> (N, C, H, W) floats in [0, 1].

    Grey runs: .npy (H, W), (N, H, W) or (N, 1, H, W); RGB runs: .npy (3, H, W) or (N, 3, H, W)
    (the library's NCHW). An image file (PNG, JPEG) is decoded as an image folder's pictures are
    for training: converted to grey or RGB, centre-cropped and resized to ``size``."""
    from ..files.safeio import UnsafeFileError, read_npy
    if not path.exists():
        raise UsageError(f"--images {path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            raw = read_npy(path, "--images")
        except UnsafeFileError as exc:
            raise UsageError(f"--images {path}: not a plain NumPy array file ({exc.reason})") from None
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"--images {path}: not a plain NumPy array file ({exc})") from None
        if not isinstance(raw, np.ndarray) or raw.dtype.kind not in "biuf":
            raise UsageError(f"--images {path}: expected a numeric array, got dtype {getattr(raw, 'dtype', None)}")
    else:
        from ..data import DataError
        from ..data.folder import read_picture
        try:
            raw = read_picture(path, channels, size)     # (1, C, size, size) uint8
        except DataError as exc:
            raise UsageError(f"--images {exc}") from None
    if channels == 1:
        ok = raw.ndim in (2, 3) or (raw.ndim == 4 and raw.shape[1] == 1)
        want = "(H, W), (N, H, W) or (N, 1, H, W)"
    else:
        ok = (raw.ndim == 3 and raw.shape[0] == 3) or (raw.ndim == 4 and raw.shape[1] == 3)
        want = "(3, H, W) or (N, 3, H, W)"
    if not ok or raw.size == 0:
        raise UsageError(f"--images {path}: expected {want} images for this run, got shape {raw.shape}")
    raw = raw.reshape((-1, channels) + raw.shape[-2:])
    unit = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)
    if not np.isfinite(unit).all():
        raise UsageError(f"--images {path}: holds NaN or inf values")
    return unit


def cmd_inpaint(args):
    """Complete the missing part of images with a trained GAN (a thin layer over scratchgan.inpaint)."""
    from .. import backend, data
    from ..generation import inpaint
    from ..files.images import save_grid
    from ..training import load_run
    _use_backend(args, heavy=True)
    gan, meta = load_run(args.run_dir, use_ema=not args.no_ema)
    out = _output_file(args.out or Path(args.run_dir) / f"inpaint_{Path(str(args.mask)).stem}.png", "--out")
    labels = None
    if args.images:                       # your own images: .npy (N, 28, 28) or (N, 1, 28, 28), or one PNG
        unit = _read_images(Path(args.images), gan.image_shape[0], gan.image_shape[-1])
        images = unit * 2.0 - 1.0 if gan.output == "tanh" else unit
        source = str(args.images)
    elif tuple(gan.image_shape) != (1, 28, 28):
        raise UsageError(f"this run's images are {'x'.join(map(str, gan.image_shape))}: give the images to "
                         "complete with --images (the MNIST test set only fits 1x28x28 runs)")
    else:                                 # held-out digits: the MNIST test set, never trained on
        try:
            ds = data.load_dataset("mnist", split="test", data_dir=args.data_dir, progress=False)
        except data.DataNotFound:
            raise UsageError("the MNIST test set was not found: give --data-dir DIR (a folder with "
                             "t10k-images-idx3-ubyte.gz) or your own images with --images") from None
        if args.start >= len(ds):
            raise UsageError(f"--start {args.start}: the test set has {len(ds)} digits (0..{len(ds) - 1})")
        images = ds.as_float(scale=gan.output)[args.start:args.start + args.n]
        if gan.conditional and args.use_labels:
            labels = ds.labels[args.start:args.start + args.n]
        source = f"MNIST test digits {args.start}..{args.start + len(images) - 1}"
    mask = inpaint.make_mask(args.mask, shape=images.shape[2:], seed=args.seed, fraction=args.fraction)
    res = inpaint.inpaint(gan, images, mask, steps=args.steps, lr=args.lr, lam=args.lam, restarts=args.restarts,
                          perceptual=args.perceptual, weighted=not args.unweighted, labels=labels, seed=args.seed,
                          progress=True, halving=not args.no_halving)
    completed = backend.to_numpy(res.completed)
    unit = 0.5 if gan.output == "tanh" else 1.0            # errors in [0, 1] pixel units
    err = inpaint.completion_error(completed, images, mask) * unit
    base = None
    if tuple(gan.image_shape) == (1, 28, 28):               # the baseline: fill with the mean training digit
        train = data.load_dataset("mnist-bundled").as_float(scale=gan.output)
        base = inpaint.completion_error(inpaint.mean_image_fill(train, images, mask), images, mask) * unit
    masked = inpaint.masked_images(images, mask, fill=-1.0 if gan.output == "tanh" else 0.0)
    per_row = 4                                             # digits per row: original | masked | completed
    grid = np.stack([images, masked, completed], axis=1).reshape((-1,) + images.shape[1:])
    save_grid(grid, out, nrow=3 * min(per_row, len(images)), output=gan.output)
    if args.save_npy:
        from ..files.atomic import atomic_write_bytes
        import io
        buf = io.BytesIO()
        np.save(buf, completed)
        atomic_write_bytes(out.with_suffix(".npy"), buf.getvalue())
    print(f"wrote {out} ({len(images)} image{'s' * (len(images) != 1)} from {source}; original | masked | completed; "
          f"{1 - float(mask.mean()):.0%} of the pixels missing)")
    if base is None:
        print(f"mean |error| on the missing pixels: GAN {err:.4f}")
    else:
        print(f"mean |error| on the missing pixels: GAN {err:.4f}, mean-image fill {base:.4f} "
              f"(ratio {err / max(base, 1e-12):.2f})")
    if res.labels is not None:
        print("labels used: " + " ".join(str(int(v)) for v in backend.to_numpy(res.labels)))
    return EXIT_OK


def add_parser(sub):
    from ..generation.inpaint import MASK_KINDS
    n = sub.add_parser("inpaint", help="complete the missing part of images with a trained GAN (Yeh et al. 2017)")
    n.add_argument("run_dir", type=_path)
    n.add_argument("--mask", default="center", type=_path,
                   help=f"{', '.join(MASK_KINDS)}, or a .png/.npy file (white/1 = known) (default: center)")
    n.add_argument("--fraction", type=_number(0, 1), default=None,
                   help="fraction of MISSING pixels (default: center 0.25, sides 0.5, random 0.8)")
    n.add_argument("--images", default=None, type=_path,
                   help="images to complete: a .npy array (N, C, H, W) of the run's size, or a PNG/JPEG file, "
                        "cropped and resized as an image folder is for training (default: MNIST test digits)")
    n.add_argument("--data-dir", default=None, type=_path,
                   help="folder holding the MNIST test files, t10k-* (default: $SCRATCHGAN_DATA or the cache)")
    n.add_argument("--n", type=_integer(1, 10000), default=16, help="test digits to complete (default: 16)")
    n.add_argument("--start", type=_integer(0), default=0, help="index of the first test digit (default: 0)")
    n.add_argument("--steps", type=_integer(1, 100000), default=500, help="Adam steps on z (default: 500)")
    n.add_argument("--lr", type=_number(0, lo_open=True), default=0.03, help="(default: 0.03)")
    n.add_argument("--restarts", type=_integer(1, 256), default=8,
                   help="random starting codes per image; the best is kept (default: 8)")
    n.add_argument("--lam", type=_number(0), default=0.1,
                   help="weight of the perceptual (discriminator) loss (default: 0.1)")
    n.add_argument("--perceptual", choices=["nonsaturating", "minimax"], default="nonsaturating",
                   help="(default: nonsaturating)")
    n.add_argument("--unweighted", action="store_true", help="plain L1 on the known pixels (no 7x7 weights)")
    n.add_argument("--no-halving", action="store_true",
                   help="run every restart to the end (default: after 1/8, 1/4 and 1/2 of the steps each image "
                        "keeps the better half of its restarts, about 3x less work for 8)")
    n.add_argument("--use-labels", action="store_true",
                   help="cgan: condition on the test digits' true labels (default: try every class)")
    n.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0, help="(default: 0)")
    n.add_argument("--out", default=None, type=_path, help="PNG to write (default: RUN/inpaint_MASK.png)")
    n.add_argument("--save-npy", action="store_true", help="also save the completed images next to the PNG")
    n.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    _add_backend(n)
    n.set_defaults(func=cmd_inpaint)
