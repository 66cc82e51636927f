"""The vanilla GAN of the tutorials (Goodfellow et al. 2014) on one digit, with the Python API.

G: z(100) -> Dense 256 -> ReLU -> Dense 784 -> Sigmoid;  D: 784 -> Dense 256 -> ReLU -> Dense 1.
Trains on the digit 2 alone (as the MLP GAN tutorial does) from the bundled MNIST sample.

    python examples/mlp_gan.py --steps 5000 --out runs/example-mlp
"""
import argparse

from scratchgan import data, models
from scratchgan.training import TrainConfig, Trainer

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--steps", type=int, default=5000)
p.add_argument("--digit", type=int, default=2)
p.add_argument("--deeper", action="store_true", help="G 100-200-500-784, D 784-500-200-1")
p.add_argument("--out", default="runs/example-mlp")
args = p.parse_args()

gan = models.mlp(g_hidden=(200, 500), d_hidden=(500, 200)) if args.deeper else models.mlp()
gan.G.summary((gan.latent_dim,))
gan.D.summary((1, 28, 28))

ds = data.load_dataset("mnist", classes=[args.digit])   # falls back to the bundled sample, and says so
images = ds.as_float(scale="sigmoid")                   # [0, 1], matching G's sigmoid output
config = TrainConfig(model="mlp", classes=[args.digit], steps=args.steps, batch_size=64,
                     lr=2e-4, beta1=0.5, g_loss="nonsaturating", sample_every=1000)
trainer = Trainer(gan, images, ds.labels, config, run_dir=args.out)
print(trainer.train())
print(f"samples: {args.out}/samples.png")
