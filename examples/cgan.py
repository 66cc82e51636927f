"""A conditional GAN (Mirza & Osindero 2014): the one-hot label joins z (128+10) and the
image (784+10), so you ask for a digit and get that digit.

    python examples/cgan.py --steps 10000 --out runs/example-cgan
"""
import argparse

from scratchgan import data, models
from scratchgan.files.images import save_grid
from scratchgan.training import TrainConfig, Trainer

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--steps", type=int, default=10000)
p.add_argument("--out", default="runs/example-cgan")
args = p.parse_args()

gan = models.cgan()
ds = data.load_dataset("mnist")
config = TrainConfig(model="cgan", steps=args.steps, batch_size=64, sample_every=1000)
trainer = Trainer(gan, ds.as_float(scale="tanh"), ds.labels, config, run_dir=args.out)
print(trainer.train())

# Ask for each digit: row d of the grid holds ten samples of digit d.
import numpy as np
labels = np.repeat(np.arange(10), 10)
save_grid(gan.generate(len(labels), seed=7, labels=labels), f"{args.out}/by_label.png", nrow=10, output=gan.output)
print(f"samples by label: {args.out}/by_label.png")
