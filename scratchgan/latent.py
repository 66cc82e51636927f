"""Latent-space walks: straight lines and great circles between two z, a sweep of one
latent dimension with the others held, and (conditional models) one z across every label.

    lerp(z0, z1, t)  = (1 - t) z0 + t z1
    slerp(z0, z1, t) = sin((1 - t) w) / sin w * z0 + sin(t w) / sin w * z1,   cos w = <z0, z1> / (|z0| |z1|)

slerp keeps |z| near the typical radius sqrt(d) of a Gaussian latent, where a straight line
through the origin's neighbourhood passes through unlikely, low-norm codes (White 2016).
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = ["lerp", "slerp", "interpolate", "sweep", "class_sweep", "save_walk"]


def lerp(z0, z1, t):
    """(len(t), d) points on the segment from z0 to z1."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    return (1 - t) * z0[None] + t * z1[None]


def slerp(z0, z1, t):
    """(len(t), d) points on the great circle from z0 to z1 (falls back to lerp when parallel)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    cos_w = np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1))
    w = np.arccos(np.clip(cos_w, -1.0, 1.0))
    if w < 1e-6:
        return lerp(z0, z1, t[:, 0])
    return (np.sin((1 - t) * w) * z0[None] + np.sin(t * w) * z1[None]) / np.sin(w)


def _host_noise(gan, n, seed):
    return backend.to_numpy(gan.sample_noise(n, backend.random_generator(np, seed, 0))).astype(np.float64)


def interpolate(gan, rows=8, steps=10, seed=1, mode="slerp"):
    """(rows*steps, d) latent codes: each row walks between two random z."""
    ends = _host_noise(gan, 2 * rows, seed)
    t = np.linspace(0.0, 1.0, steps)
    walk = slerp if mode == "slerp" else lerp
    return np.concatenate([walk(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])


def sweep(gan, dim=0, rows=8, steps=10, seed=1, span=2.5):
    """(rows*steps, d): each row holds a random z and sets z[dim] to values in [-span, span]."""
    if not 0 <= dim < gan.latent_dim:
        raise ValueError(f"sweep: dim must be in [0, {gan.latent_dim}), got {dim}")
    z = np.repeat(_host_noise(gan, rows, seed), steps, axis=0)
    lo, hi = (-1.0, 1.0) if gan.noise == "uniform" else (-span, span)
    z[:, dim] = np.tile(np.linspace(lo, hi, steps), rows)
    return z


def class_sweep(gan, rows=8, seed=1):
    """Conditional models: (rows*num_classes) codes and labels; one z per row, every label across."""
    if not gan.conditional:
        raise ValueError("class_sweep needs a conditional model (cgan)")
    z = np.repeat(_host_noise(gan, rows, seed), gan.num_classes, axis=0)
    labels = np.tile(np.arange(gan.num_classes), rows)
    return z, labels


def save_walk(gan, path, mode="slerp", steps=10, rows=8, seed=1, dim=0, label=None):
    """Render a walk as a PNG grid: one row per walk."""
    from .images import save_grid
    labels = None
    if mode == "classes":
        z, labels = class_sweep(gan, rows=rows, seed=seed)
        steps = gan.num_classes
    elif mode == "sweep":
        z = sweep(gan, dim=dim, rows=rows, steps=steps, seed=seed)
    else:
        z = interpolate(gan, rows=rows, steps=steps, seed=seed, mode=mode)
    if gan.conditional and labels is None:
        labels = np.full(len(z), 0 if label is None else label)
    xp_z = backend.asarray(z, dtype=gan.G.dtype)
    images = gan.generate(z=xp_z, labels=None if labels is None else backend.asarray(labels))
    return save_grid(images, path, nrow=steps, output=gan.output)
