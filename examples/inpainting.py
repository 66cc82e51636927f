"""Image completion with a trained GAN (Yeh et al. 2017): find the z whose G(z) matches the
known pixels of a held-out digit (and looks real to D), then fill the hole with G(z).

    python examples/inpainting.py --run runs/mlp             # a trained run folder
    python examples/inpainting.py --train-steps 3000         # no run: train a small mlp first
    python examples/inpainting.py --run runs/cgan --data-dir ../shared/data --n 100

Held-out digits: the MNIST test set when it can be found (--data-dir, $SCRATCHGAN_DATA or
the cache), else the last 1,000 images of the bundled sample; a model trained here then
sees only the first 9,000 (a run trained on all 10,000 bundled images must be evaluated
on the test set, which the script insists on). For every mask kind it prints the mean
absolute error on the missing pixels (in [0, 1] pixel units) of the GAN completion and of
the mean-image fill, and saves the figure: per mask kind, rows of
original | masked | completed | mean-fill.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from scratchgan import backend, data, models
from scratchgan.generation import inpaint as ip
from scratchgan.files.images import save_grid
from scratchgan.training import TrainConfig, Trainer, load_run

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--run", default=None, help="a run folder (scratchgan train --out ...); default: train one")
p.add_argument("--model", default="mlp", choices=["mlp", "cgan", "dcgan"], help="model to train without --run")
p.add_argument("--train-steps", type=int, default=3000)
p.add_argument("--data-dir", default=None, help="folder with the MNIST test files (t10k-*)")
p.add_argument("--masks", default=",".join(ip.MASK_KINDS), help="mask kinds (or .png/.npy files), comma separated")
p.add_argument("--n", type=int, default=100, help="held-out digits to complete")
p.add_argument("--show", type=int, default=6, help="digits per mask kind in the figure")
p.add_argument("--steps", type=int, default=500)
p.add_argument("--lr", type=float, default=0.03)
p.add_argument("--restarts", type=int, default=8)
p.add_argument("--lam", type=float, default=0.1)
p.add_argument("--perceptual", default="nonsaturating", choices=["nonsaturating", "minimax"])
p.add_argument("--unweighted", action="store_true", help="W = 1 instead of the 7x7 importance weights")
p.add_argument("--use-labels", action="store_true", help="cgan: give the true labels (default: try every class)")
p.add_argument("--out", default="inpainting.png")
p.add_argument("--json", default=None, help="also write the errors to this JSON file")
args = p.parse_args()

bundled = data.load_dataset("mnist-bundled")
try:
    test_ds = data.load_dataset("mnist", split="test", data_dir=args.data_dir, progress=False)
except data.DataNotFound:
    test_ds = None

if args.run:
    gan, meta = load_run(args.run)
    trained_on = meta["train"]
    if test_ds is None:
        raise SystemExit("the MNIST test set was not found (give --data-dir): a run trained on the bundled "
                         "sample may have seen all of its images")
    print(f"model: {gan.kind} from {args.run} (step {meta['step']})")
else:
    gan = models.build(args.model, seed=0)
    x_train = bundled.as_float(scale=gan.output)[:9000]
    print(f"training a {args.model} for {args.train_steps} steps on the first 9,000 bundled images ...")
    t0 = time.perf_counter()
    Trainer(gan, x_train, bundled.labels[:9000],
            TrainConfig(model=args.model, steps=args.train_steps), quiet=True).train()
    print(f"  {time.perf_counter() - t0:.0f} s")

scale = gan.output
train_images = bundled.as_float(scale=scale)[:9000]
if test_ds is not None:
    held, held_labels, source = test_ds.as_float(scale=scale), test_ds.labels, "MNIST test set"
else:
    held, held_labels, source = bundled.as_float(scale=scale)[9000:], bundled.labels[9000:], \
        "last 1,000 bundled images"
held, held_labels = held[:args.n], held_labels[:args.n]
print(f"held-out digits: {len(held)} from the {source}")

unit = 0.5 if scale == "tanh" else 1.0          # errors reported in [0, 1] pixel units
rows, results = [], {}
kw = dict(steps=args.steps, lr=args.lr, restarts=args.restarts, lam=args.lam, perceptual=args.perceptual,
          weighted=not args.unweighted)
for kind in args.masks.split(","):
    mask = ip.make_mask(kind, seed=0)
    t0 = time.perf_counter()
    labels = held_labels if gan.conditional and args.use_labels else None
    res = ip.inpaint(gan, held, mask, labels=labels, **kw)
    fill = ip.mean_image_fill(train_images, held, mask)
    err = ip.completion_error(res.completed, held, mask) * unit
    base = ip.completion_error(fill, held, mask) * unit
    results[kind] = dict(gan=err, mean_fill=base, ratio=err / base, missing=float(1 - mask.mean()))
    note = ""
    if res.labels is not None and labels is None:
        note = f", chosen class = true class for {np.mean(backend.to_numpy(res.labels) == held_labels):.0%}"
    print(f"{kind:>8}: missing {1 - mask.mean():.0%}  GAN {err:.4f}  mean-fill {base:.4f}  "
          f"ratio {err / base:.2f}  ({time.perf_counter() - t0:.0f} s{note})", flush=True)
    k = args.show
    masked = ip.masked_images(held[:k], mask, fill=0.0 if scale == "sigmoid" else -1.0)
    # one figure row per digit: original | masked | completed | mean-fill
    for i in range(k):
        rows += [held[i:i + 1], masked[i:i + 1], backend.to_numpy(res.completed[i:i + 1]), fill[i:i + 1]]

grid = np.concatenate([backend.to_numpy(r) for r in rows])
per_row = 2 if args.show % 2 == 0 else 1
out = save_grid(grid, args.out, nrow=4 * per_row, output=scale, scale=3)
print(f"figure: {out}  ({per_row} digit(s) per row: original | masked | completed | mean-fill, "
      f"{args.show} digits per mask kind in the order {args.masks})")
if args.json:
    Path(args.json).write_text(json.dumps(dict(settings=kw, source=source, n=len(held), results=results), indent=2))
