"""A GAN on the line: p_data is a mixture of two Gaussians; watch p_g move onto p_data.

The classic picture of Goodfellow et al. (2014, Figure 1): the data density (black), the
generator's density (green) and the discriminator's D(x) (blue, dashed) at several moments
of training. At the optimum D(x) = p_data / (p_data + p_g) = 1/2 wherever p_g = p_data.

    python examples/toy1d.py --steps 3000 --out runs/toy1d.png
"""
import argparse

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import scratchgan as sg
from scratchgan.layers.activations import sigmoid

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="runs/toy1d.png")
args = p.parse_args()

rng = np.random.default_rng(args.seed)
MODES, STD = np.array([-2.0, 2.0]), 0.4


def sample_data(n):
    return (rng.choice(MODES, size=(n, 1)) + STD * rng.standard_normal((n, 1))).astype(np.float32)


def data_density(x):
    return sum(np.exp(-0.5 * ((x - m) / STD) ** 2) for m in MODES) / (len(MODES) * STD * np.sqrt(2 * np.pi))


G = sg.Sequential(sg.Dense(4, 64, rng=1), sg.LeakyReLU(0.2), sg.Dense(64, 64, rng=2), sg.LeakyReLU(0.2),
                  sg.Dense(64, 1, rng=3))
D = sg.Sequential(sg.Dense(1, 64, rng=4), sg.LeakyReLU(0.2), sg.Dense(64, 64, rng=5), sg.LeakyReLU(0.2),
                  sg.Dense(64, 1, rng=6))
opt_G, opt_D = sg.Adam(G, lr=1e-3, betas=(0.5, 0.999)), sg.Adam(D, lr=1e-3, betas=(0.5, 0.999))
xs = np.linspace(-4, 4, 400, dtype=np.float32)[:, None]
snapshots = {0, args.steps // 20, args.steps // 4, args.steps}
panels = []


def snapshot(step):
    z = rng.standard_normal((20000, 4)).astype(np.float32)
    panels.append((step, G(z)[:, 0], sigmoid(D(xs))[:, 0]))


for step in range(args.steps + 1):
    if step in snapshots:
        snapshot(step)
    if step == args.steps:
        break
    # D step: push D(x) up on data, down on fakes.
    fake, g_cache = G.forward(rng.standard_normal((args.batch, 4)).astype(np.float32))
    D.zero_grad()
    lr_, cr = D.forward(sample_data(args.batch))
    lf_, cf = D.forward(fake)
    d_loss, d_real, d_fake = sg.losses.d_loss(lr_, lf_)
    D.backward(d_real, cr)
    D.backward(d_fake, cf)
    opt_D.step()
    # G step (non-saturating): push D(G(z)) up, back-propagating through D into G.
    lf_, cf = D.forward(fake)
    g_loss, dlogits = sg.losses.g_loss_nonsaturating(lf_)
    G.zero_grad()
    G.backward(D.backward(dlogits, cf), g_cache)
    opt_G.step()

fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), sharey=True)
for ax, (step, samples, d_of_x) in zip(axes, panels):
    ax.plot(xs[:, 0], data_density(xs[:, 0]), "k", lw=1.5, label="p_data")
    ax.hist(samples, bins=120, range=(-4, 4), density=True, color="g", alpha=0.5, label="p_g")
    ax.plot(xs[:, 0], d_of_x, "b--", lw=1.5, label="D(x)")
    ax.set_title(f"step {step}")
    ax.set_ylim(0, 1.2)
axes[0].legend(loc="upper left", fontsize=8)
fig.tight_layout()
import os
os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
fig.savefig(args.out, dpi=90)
print(f"wrote {args.out}")
