"""The 2-D mode-collapse benchmark: a mixture of Gaussians a GAN should cover.

    "ring": 8 Gaussians evenly spaced on the unit circle, std 0.01
    "grid": 25 Gaussians on {-4, -2, 0, 2, 4}^2, std 0.05

(Many papers use the ring with radius 2 and std 0.02: the same shape scaled by 2.)

Metrics on a batch of generated points (2,500 by default, as in VEEGAN / PacGAN / Unrolled GAN):
a point is *high quality* when it lies within 3 standard deviations of its nearest mode; a mode
is *covered* when at least one high-quality point is nearest to it. ``mode_metrics`` reports both.

The GAN is a small MLP built from scratchgan layers and trained by ``train_toy_gan`` with the
library's own ``Trainer`` (so every loss family runs exactly the code MNIST runs):

    G: z (latent_dim) -> 128 -> ReLU -> 128 -> ReLU -> 2
    D: 2 -> 128 -> LeakyReLU(0.2) -> 128 -> LeakyReLU(0.2) -> 1 (a logit or critic score)

``TOY_RECIPES`` holds each loss family's settings for these toys, from the papers' own toy
experiments where they have them (WGAN-GP: lambda 0.1, 5 critic steps, Adam 1e-4 (0.5, 0.9)).
"""
from __future__ import annotations

import time

import numpy as np

from .. import backend
from ..layers import Dense, LeakyReLU, ReLU, Sequential, spectral_norm as _sn

__all__ = ["ring_modes", "grid_modes", "DATASETS", "sample_mixture", "mode_metrics", "build_toy_gan",
           "train_toy_gan", "TOY_RECIPES"]


def ring_modes(n_modes: int = 8, radius: float = 1.0) -> np.ndarray:
    """(n_modes, 2) points evenly spaced on a circle, the first at (radius, 0)."""
    a = 2 * np.pi * np.arange(n_modes) / n_modes
    return radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def grid_modes(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> np.ndarray:
    """(len(values)^2, 2) points of the grid values x values."""
    v = np.asarray(values, dtype=np.float64)
    gx, gy = np.meshgrid(v, v, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


DATASETS = {
    "ring": (ring_modes(8, 1.0), 0.01),
    "grid": (grid_modes(), 0.05),
}


def _dataset(name):
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown toy data set {name!r}; choose from {sorted(DATASETS)}") from None


def sample_mixture(modes, std: float, n: int, rng) -> np.ndarray:
    """(n, 2) float64 points: a uniformly chosen mode plus N(0, std^2 I) noise."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    modes = np.asarray(modes, dtype=np.float64)
    return modes[rng.integers(0, len(modes), size=n)] + std * rng.standard_normal((n, modes.shape[1]))


def mode_metrics(samples, modes, std: float, threshold: float = 3.0) -> dict:
    """Modes covered and high-quality fraction of a set of points.

    A point is high quality when its distance to the nearest mode is <= threshold * std; a mode
    is covered when at least one high-quality point has it as its nearest mode.
    Returns {"modes_covered", "n_modes", "hq_fraction", "counts"} (counts: high-quality points
    per mode).
    """
    x = np.asarray(backend.to_numpy(samples), dtype=np.float64)
    modes = np.asarray(modes, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != modes.shape[1] or len(x) == 0:
        raise ValueError(f"mode_metrics: expected (N > 0, {modes.shape[1]}) samples, got {x.shape}")
    d = np.sqrt(((x[:, None, :] - modes[None, :, :]) ** 2).sum(axis=2))     # (N, modes)
    nearest = d.argmin(axis=1)
    hq = d[np.arange(len(x)), nearest] <= threshold * std
    counts = np.bincount(nearest[hq], minlength=len(modes))
    return {"modes_covered": int((counts > 0).sum()), "n_modes": len(modes), "hq_fraction": float(hq.mean()),
            "counts": [int(c) for c in counts]}


def build_toy_gan(latent_dim: int = 2, hidden: int = 128, seed: int = 0, spectral_norm: bool = False):
    """(G, D) for 2-D data; see the module docstring. spectral_norm wraps D's Dense layers."""
    rng = np.random.default_rng(seed)
    G = Sequential(Dense(latent_dim, hidden, rng=rng), ReLU(), Dense(hidden, hidden, rng=rng), ReLU(),
                   Dense(hidden, 2, rng=rng))
    D = [Dense(2, hidden, rng=rng), LeakyReLU(0.2), Dense(hidden, hidden, rng=rng), LeakyReLU(0.2),
         Dense(hidden, 1, rng=rng)]
    D = Sequential(*[_sn(m, seed=i) if spectral_norm and isinstance(m, Dense) else m for i, m in enumerate(D)])
    return G, D


TOY_RECIPES = {
    "bce": dict(lr=1e-3, beta1=0.5, beta2=0.999, k=1),
    "lsgan": dict(lr=1e-3, beta1=0.5, beta2=0.999, k=1),
    "hinge": dict(lr=1e-3, beta1=0.5, beta2=0.999, k=1),
    "wgan": dict(optimizer="rmsprop", lr=5e-5, k=5, clip=0.01),
    "wgan-gp": dict(lr=1e-4, beta1=0.5, beta2=0.9, k=5, gp_weight=0.1),
}


def train_toy_gan(dataset: str = "ring", steps: int = 2000, batch_size: int = 256, loss: str = "bce",
                  latent_dim: int = 2, hidden: int = 128, seed: int = 0, n_eval: int = 2500,
                  threshold: float = 3.0, spectral_norm: bool = False, **settings) -> dict:
    """Train the toy GAN on a mixture with ``loss`` and score ``n_eval`` samples with ``mode_metrics``.

    ``steps`` generator steps, each after ``k`` D steps on fresh real points (a sample of
    steps * k * batch_size points drawn once from the mixture) and fresh fakes, z ~ N(0, I).
    ``settings`` override ``TOY_RECIPES[loss]`` (lr, beta1, beta2, k, clip, gp_weight, optimizer).
    Returns the metrics plus the settings, the samples (host float64) and the time taken.
    """
    from ..models import GAN
    from ..training import TrainConfig, Trainer
    modes, std = _dataset(dataset)
    recipe = {**TOY_RECIPES[loss], **settings} if loss in TOY_RECIPES else dict(settings)
    G, D = build_toy_gan(latent_dim, hidden, seed, spectral_norm)
    gan = GAN("toy2d", G, D, latent_dim, output="linear", image_shape=(2,))
    config = TrainConfig(model="toy2d", loss=loss, steps=max(steps, 1), batch_size=batch_size, seed=seed,
                         log_every=max(steps, 1), **recipe)
    n_points = max(steps, 1) * config.k * batch_size
    points = sample_mixture(modes, std, n_points, np.random.default_rng([seed, 1])).astype(G.dtype)
    trainer = Trainer(gan, points, None, config, quiet=True)
    t0 = time.perf_counter()
    trainer.train(steps=steps)
    seconds = time.perf_counter() - t0
    xp = backend.xp()
    z = backend.random_generator(xp, seed + 1, 2**31 - 1).standard_normal((n_eval, latent_dim), dtype=G.dtype)
    samples = np.asarray(backend.to_numpy(G(z)), dtype=np.float64)
    result = mode_metrics(samples, modes, std, threshold)
    result.update(dataset=dataset, loss=loss, steps=steps, batch_size=batch_size, **recipe,
                  spectral_norm=spectral_norm, latent_dim=latent_dim, hidden=hidden, seed=seed, n_eval=n_eval,
                  seconds=round(seconds, 2), samples=samples)
    return result
