"""Image grids and plots (PNG via matplotlib's Agg backend; no screen needed)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from . import backend

__all__ = ["to_unit_range", "make_grid", "save_grid", "plot_losses"]


def to_unit_range(images, output: str):
    """Pixels of a generator with the given output activation -> [0, 1]."""
    images = backend.to_numpy(images).astype(np.float32)
    if output == "tanh":
        images = (images + 1.0) * 0.5
    return np.clip(images, 0.0, 1.0)


def make_grid(images, nrow: int, pad: int = 2) -> np.ndarray:
    """(N, 1, H, W) in [0, 1] -> one (rows*(H+pad)+pad, nrow*(W+pad)+pad) image."""
    images = np.asarray(images)
    n, _, h, w = images.shape
    ncol = nrow
    nrows = -(-n // ncol)
    canvas = np.ones((nrows * ncol, h + pad, w + pad), np.float32) * 0.5
    canvas[:n, :h, :w] = images[:, 0]
    grid = canvas.reshape(nrows, ncol, h + pad, w + pad).transpose(0, 2, 1, 3).reshape(nrows * (h + pad), ncol * (w + pad))
    return np.pad(grid, ((pad, 0), (pad, 0)), constant_values=0.5)


def save_grid(images, path, nrow: int, output: str = "tanh", scale: int = 2) -> Path:
    """Save generator images as a grayscale PNG grid (atomic write)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .atomic import atomic_write_bytes
    import io
    grid = make_grid(to_unit_range(images, output), nrow)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    plt.imsave(buf, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_losses(metrics_csv, path, probabilities: bool = True) -> Path:
    """Plot D and G losses and mean D(x), D(G(z)) against the step from a metrics CSV (atomic write).
    ``probabilities``: D's outputs are probabilities in [0, 1] (BCE), else raw critic scores."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    step = np.array([float(r["step"]) for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("d_loss", "D loss"), ("g_loss", "G loss")):
        ax1.plot(step, [float(r[key]) for r in rows], label=label, lw=1)
    ax1.set_xlabel("step"), ax1.set_ylabel("loss"), ax1.legend(), ax1.grid(alpha=0.3)
    for key, label in (("d_real", "mean D(x)"), ("d_fake", "mean D(G(z))")):
        ax2.plot(step, [float(r[key]) for r in rows], label=label, lw=1)
    if probabilities:   # BCE: D's outputs are probabilities; other losses log raw critic scores
        ax2.set_ylim(0, 1)
    else:
        ax2.set_ylabel("critic score")
    ax2.set_xlabel("step"), ax2.legend(), ax2.grid(alpha=0.3)
    fig.tight_layout()
    import io
    from .atomic import atomic_write_bytes
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
