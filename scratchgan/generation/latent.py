"""Latent-space walks: straight lines and great circles between two z, a sweep of one
latent dimension with the others held, and (conditional models) one z across every label.

    lerp(z0, z1, t)  = (1 - t) z0 + t z1
    slerp(z0, z1, t) = sin((1 - t) w) / sin w * z0 + sin(t w) / sin w * z1,   cos w = <z0, z1> / (|z0| |z1|)

slerp keeps |z| near the typical radius sqrt(d) of a Gaussian latent, where a straight line
through the origin's neighbourhood passes through unlikely, low-norm codes (White 2016).
For endpoints of equal norm r every slerp point has norm r.

Codes (functions returning z):   interpolate, sweep, class_sweep
Images (functions calling G):    walk (any mode, as a grid's rows), between (two given codes)
PNG grids:                       save_walk (one row per walk; what `scratchgan interpolate` writes)

    z = latent.slerp(z0, z1, np.linspace(0, 1, 8))            # (8, d)
    images, z, labels = latent.walk(gan, "sweep", dim=3)       # (rows*steps, *gan.image_shape)
    latent.save_walk(gan, "classes.png", mode="classes")       # cgan: one z per row, labels 0..9 across
"""
from __future__ import annotations

import numpy as np

from .. import backend

__all__ = ["MODES", "lerp", "slerp", "interpolate", "sweep", "class_sweep", "render", "walk", "between", "save_walk"]

MODES = ("slerp", "linear", "sweep", "classes")


def _endpoints(z0, z1, fn):
    xp = backend.array_module(z0, z1)
    z0, z1 = xp.asarray(z0), xp.asarray(z1)
    if z0.ndim != 1 or z0.shape != z1.shape:
        raise ValueError(f"{fn}: z0 and z1 must be 1-D codes of one length, got shapes "
                         f"{tuple(z0.shape)} and {tuple(z1.shape)}")
    return xp, z0, z1


def _times(xp, t, dtype):
    t = xp.asarray(t, dtype=dtype)
    if t.ndim > 1:
        raise ValueError(f"t must be a number or a 1-D sequence, got shape {tuple(t.shape)}")
    return t


def _float_dtype(z0):
    return z0.dtype if np.dtype(z0.dtype).kind == "f" else np.float64


def lerp(z0, z1, t):
    """Points (1 - t) z0 + t z1: (len(t), d) for a sequence t, (d,) for a number t.

    Works on NumPy or CuPy codes (the result lives where z0 and z1 do)."""
    xp, z0, z1 = _endpoints(z0, z1, "lerp")
    t = _times(xp, t, _float_dtype(z0))
    tt = t[..., None]
    return (1 - tt) * z0 + tt * z1


def slerp(z0, z1, t, eps=1e-6):
    """Points on the great circle from z0 (t = 0) to z1 (t = 1): (len(t), d), or (d,) for a number t.

    Falls back to lerp when the angle between z0 and z1 is within ``eps`` of 0 or pi (the
    circle is then not defined by the two codes) or when either code is zero.
    """
    xp, z0, z1 = _endpoints(z0, z1, "slerp")
    t = _times(xp, t, _float_dtype(z0))
    n0, n1 = float(xp.linalg.norm(z0)), float(xp.linalg.norm(z1))
    if n0 == 0.0 or n1 == 0.0:
        return lerp(z0, z1, t)
    cos_w = float(xp.dot(z0, z1)) / (n0 * n1)
    w = float(np.arccos(np.clip(cos_w, -1.0, 1.0)))
    if w < eps or np.pi - w < eps:
        return lerp(z0, z1, t)
    tt = t[..., None]
    return (xp.sin((1 - tt) * w) * z0 + xp.sin(tt * w) * z1) / np.sin(w)


def _host_noise(gan, n, seed):
    return backend.to_numpy(gan.sample_noise(n, backend.random_generator(np, seed, 0))).astype(np.float64)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_counts(fn, **counts):
    for name, v in counts.items():
        if not _is_int(v) or v < 1:
            raise ValueError(f"{fn}: {name} must be a positive integer, got {v!r}")


def interpolate(gan, rows=8, steps=10, seed=1, mode="slerp"):
    """(rows*steps, d) host codes: row r walks from one random z to another in ``steps`` steps
    (both ends included), along a great circle ("slerp") or a straight line ("linear")."""
    if mode not in ("slerp", "linear", "lerp"):
        raise ValueError(f"interpolate: mode must be 'slerp' or 'linear', got {mode!r}")
    _check_counts("interpolate", rows=rows, steps=steps)
    ends = _host_noise(gan, 2 * rows, seed)
    t = np.linspace(0.0, 1.0, steps)
    fn = slerp if mode == "slerp" else lerp
    return np.concatenate([fn(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])


def sweep(gan, dim=0, rows=8, steps=10, seed=1, span=2.5):
    """(rows*steps, d) host codes: row r holds one random z and sets z[dim] to ``steps`` evenly
    spaced values in [-span, span] ([-1, 1] for uniform noise); the other dimensions stay."""
    if not _is_int(dim) or not 0 <= dim < gan.latent_dim:
        raise ValueError(f"sweep: dim must be an integer in [0, {gan.latent_dim}), got {dim!r}")
    _check_counts("sweep", rows=rows, steps=steps)
    z = np.repeat(_host_noise(gan, rows, seed), steps, axis=0)
    lo, hi = (-1.0, 1.0) if gan.noise == "uniform" else (-span, span)
    z[:, int(dim)] = np.tile(np.linspace(lo, hi, steps), rows)
    return z


def class_sweep(gan, rows=8, seed=1):
    """Conditional models: (rows*K, d) host codes and (rows*K,) labels; row r holds one z
    (the "style") with the labels 0..K-1 across it."""
    if not gan.conditional:
        raise ValueError(f"class_sweep needs a conditional model (cgan); this {gan.kind} model has no labels")
    _check_counts("class_sweep", rows=rows)
    z = np.repeat(_host_noise(gan, rows, seed), gan.num_classes, axis=0)
    labels = np.tile(np.arange(gan.num_classes), rows)
    return z, labels


def _row_labels(gan, label, rows, steps):
    """Labels for a walk of a conditional model: ``label`` everywhere, or row r -> class r % K."""
    if not gan.conditional:
        if label is not None:
            raise ValueError(f"label={label!r} given, but this {gan.kind} model is not conditional")
        return None
    if label is None:
        return np.repeat(np.arange(rows) % gan.num_classes, steps)
    if not _is_int(label) or not 0 <= label < gan.num_classes:
        raise ValueError(f"label must be an integer in [0, {gan.num_classes}), got {label!r}")
    return np.full(rows * steps, int(label))


def render(gan, z, labels=None):
    """G's images (eval mode) for host or device codes ``z`` (and labels), on the model's backend."""
    xp = backend.array_module(*(p for _, p, _ in gan.G.named_parameters()))
    z_dev = np.asarray(backend.to_numpy(z), dtype=gan.G.dtype) if xp is np else xp.asarray(z, dtype=gan.G.dtype)
    if gan.conditional and labels is None:
        raise ValueError("render: a conditional model needs labels")
    lab = None if labels is None else xp.asarray(backend.to_numpy(labels).astype(np.int64))
    return gan.generate(z=z_dev, labels=lab)


def walk(gan, mode="slerp", steps=10, rows=8, seed=1, dim=0, label=None, span=2.5):
    """Images of a walk: returns (images (rows*steps, C, H, W), z (rows*steps, d), labels or None),
    (C, H, W) = gan.image_shape.

    mode "slerp" / "linear": between pairs of random codes; "sweep": dimension ``dim``;
    "classes" (conditional models): one z per row, every label across (steps = num_classes).
    Conditional models walk with class ``label``, or row r with class r % num_classes.
    """
    if mode not in MODES:
        raise ValueError(f"walk: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "classes":
        z, labels = class_sweep(gan, rows=rows, seed=seed)
    else:
        if mode == "sweep":
            z = sweep(gan, dim=dim, rows=rows, steps=steps, seed=seed, span=span)
        else:
            z = interpolate(gan, rows=rows, steps=steps, seed=seed, mode=mode)
        labels = _row_labels(gan, label, rows, steps)
    return render(gan, z, labels), z, labels


def between(gan, z0, z1, steps=10, mode="slerp", label=None):
    """Images along the walk from the given code z0 to z1 (both included): (steps, C, H, W)."""
    if mode not in ("slerp", "linear", "lerp"):
        raise ValueError(f"between: mode must be 'slerp' or 'linear', got {mode!r}")
    _check_counts("between", steps=steps)
    z0, z1 = backend.to_numpy(z0).astype(np.float64), backend.to_numpy(z1).astype(np.float64)
    if z0.shape != (gan.latent_dim,) or z1.shape != (gan.latent_dim,):
        raise ValueError(f"between: z0 and z1 must have shape ({gan.latent_dim},), got {z0.shape} and {z1.shape}")
    z = (slerp if mode == "slerp" else lerp)(z0, z1, np.linspace(0.0, 1.0, steps))
    return render(gan, z, _row_labels(gan, label, 1, steps))


def save_walk(gan, path, mode="slerp", steps=10, rows=8, seed=1, dim=0, label=None):
    """Render a walk (see ``walk``) as a PNG grid (grey or RGB, as the model's images), one row
    per walk; returns the path.

    The grid has ``rows`` rows of ``steps`` images (num_classes images for mode "classes").
    """
    from ..files.images import save_grid
    images, z, _ = walk(gan, mode=mode, steps=steps, rows=rows, seed=seed, dim=dim, label=label)
    return save_grid(images, path, nrow=len(z) // rows, output=gan.output)
