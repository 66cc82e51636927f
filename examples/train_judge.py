"""Train the judge classifier that scores generated digits, and write its shipped weights.

    python examples/train_judge.py --dataset mnist --epochs 15 --seed 0 --data-dir ../shared/data
    python examples/train_judge.py --dataset fashion-mnist --epochs 6 --seed 0 --train-size 60000

The MNIST judge trains on the FIRST 10,000 MNIST training images (the bundled sample, or the
first 10,000 of the full file when it is present: the same images) and reports its accuracy
on the official 10,000 test images, found with ``load_dataset(..., data_dir=--data-dir)``.
Writes scratchgan/evaluation/judges/<dataset>.npz and .json (architecture, sha256, accuracy, command).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from scratchgan import backend
from scratchgan.data import load_dataset
from scratchgan.evaluation.judge import JUDGES_DIR, save_judge, train_judge


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None, help="folder with the data set's IDX files (test split)")
    p.add_argument("--train-size", type=int, default=10000, help="use the first N training images")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-final", type=float, default=2e-5)
    p.add_argument("--max-shift", type=int, default=2, help="random shifts of up to this many pixels")
    p.add_argument("--channels", default="32,64")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=0, help="log test accuracy every N epochs (0: at the end)")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None)
    p.add_argument("--out", default=None, help="weights file (default scratchgan/evaluation/judges/<dataset>.npz)")
    args = p.parse_args(argv)
    if args.backend:
        backend.use(args.backend)

    train = load_dataset(args.dataset, split="train", data_dir=args.data_dir, progress=False)
    test = load_dataset(args.dataset, split="test", data_dir=args.data_dir, progress=False)
    n = min(args.train_size, len(train))
    x_train = train.as_float("sigmoid")[:n]
    y_train = train.labels[:n]
    x_test, y_test = test.as_float("sigmoid"), test.labels
    print(f"train: {n:,} images of {train.source}; test: {len(test):,} images of {test.source}", flush=True)

    channels = [int(c) for c in args.channels.split(",")]
    t0 = time.perf_counter()
    judge = train_judge(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        lr_final=args.lr_final, seed=args.seed, max_shift=args.max_shift,
                        test=(x_test, y_test) if args.eval_every else None, eval_every=args.eval_every, channels=channels, hidden=args.hidden, dropout=args.dropout,
                        log=lambda s: print(s, flush=True))
    seconds = time.perf_counter() - t0
    pred = backend.to_numpy(judge.predict(x_test))
    acc = float(np.mean(pred == y_test))
    per_class = [float(np.mean(pred[y_test == c] == c)) for c in range(judge.num_classes)]
    judge.classes = list(train.classes)
    command = "python examples/train_judge.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out = Path(args.out) if args.out else JUDGES_DIR / f"{args.dataset}.npz"
    save_judge(judge, out, dataset=args.dataset, test_accuracy=round(acc, 4),
               test_accuracy_per_class=[round(a, 4) for a in per_class], test_size=len(test),
               train_data=f"first {n:,} images of the {train.name} training set", command=command,
               train_seconds=round(seconds, 1), backend=backend.name())
    print(f"test accuracy {acc:.4f} (worst class {min(per_class):.4f}); {seconds:.0f} s; wrote {out} "
          f"({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json').name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
