"""DCGAN (Radford et al. 2015) for MNIST, as in the TensorFlow tutorial, with the Python API.

G: z(100) -> Dense 7*7*256 -> BatchNorm -> LeakyReLU -> (256,7,7) -> transposed convolutions
(5x5; stride 1, 2, 2) with BatchNorm and LeakyReLU -> 1x28x28 -> tanh.
D: 5x5 stride-2 convolutions 64 -> 128 with LeakyReLU and Dropout -> Dense 1.

    python examples/dcgan.py --steps 2000 --out runs/example-dcgan
    python examples/dcgan.py --upsample nearest      # Upsample2D + Conv2D instead
"""
import argparse

from scratchgan import backend, data, models
from scratchgan.training import TrainConfig, Trainer

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--upsample", choices=["transposed", "nearest"], default="transposed")
p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
p.add_argument("--out", default="runs/example-dcgan")
args = p.parse_args()

backend.use(args.backend)
backend.tune_host_allocator()  # reuse freed memory: fewer page faults per step (docs/performance.md)
gan = models.dcgan(upsample=args.upsample)
gan.G.summary((100,))
gan.D.summary((1, 28, 28))

ds = data.load_dataset("mnist")
config = TrainConfig(model="dcgan", model_args={"upsample": args.upsample}, steps=args.steps,
                     batch_size=64, lr=2e-4, beta1=0.5, sample_every=250, checkpoint_every=500,
                     backend=args.backend)
trainer = Trainer(gan, ds.as_float(scale="tanh"), ds.labels, config, run_dir=args.out)
print(trainer.train())
print(f"samples: {args.out}/samples.png")
