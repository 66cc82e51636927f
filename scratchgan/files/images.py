"""Image grids and plots (PNG via matplotlib's Agg backend; no screen needed)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .. import backend

__all__ = ["to_unit_range", "make_grid", "grid_png", "save_grid", "plot_losses"]


def to_unit_range(images, output: str):
    """Pixels of a generator with the given output activation -> [0, 1]."""
    images = backend.to_numpy(images).astype(np.float32)
    if output == "tanh":
        images = (images + 1.0) * 0.5
    return np.clip(images, 0.0, 1.0)


def _check_images(images, fn):
    shape = tuple(np.shape(images))
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise ValueError(f"{fn}: expected images of shape (N, C, H, W) with C = 1 (grey) or 3 (RGB), "
                         f"got shape {shape}")


def _check_count(value, name, fn, minimum):
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {value!r}")


def make_grid(images, nrow: int, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one image of ``nrow`` images per row, ``pad`` grey (0.5) pixels
    between and around them: (rows*(H+pad)+pad, nrow*(W+pad)+pad) for C = 1 (grey), the same
    with a last axis of 3 for C = 3 (RGB, channels last as image files hold them)."""
    _check_images(images, "make_grid")
    _check_count(nrow, "nrow", "make_grid", 1)
    _check_count(pad, "pad", "make_grid", 0)
    images = np.asarray(images)
    n, c, h, w = images.shape
    ncol = nrow
    nrows = -(-n // ncol)
    canvas = np.ones((nrows * ncol, h + pad, w + pad, c), np.float32) * 0.5
    canvas[:n, :h, :w] = images.transpose(0, 2, 3, 1)
    grid = canvas.reshape(nrows, ncol, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4).reshape(
        nrows * (h + pad), ncol * (w + pad), c)
    grid = np.pad(grid, ((pad, 0), (pad, 0), (0, 0)), constant_values=0.5)
    return grid[..., 0] if c == 1 else grid


def grid_png(images, nrow: int, output: str = "tanh", scale: int = 2) -> bytes:
    """The PNG file's bytes of ``save_grid``: grey images as matplotlib's grey colour map
    writes them, RGB images as an 8-bit RGB PNG."""
    _check_images(images, "save_grid")
    _check_count(scale, "scale", "save_grid", 1)
    if len(images) == 0:
        raise ValueError("save_grid: no images to draw (got an empty batch)")
    grid = make_grid(to_unit_range(images, output), nrow)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    if grid.ndim == 2:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plt.imsave(buf, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    else:
        from PIL import Image
        Image.fromarray(np.floor(grid * 255.0 + 0.5).astype(np.uint8), "RGB").save(buf, format="png")
    return buf.getvalue()


def save_grid(images, path, nrow: int, output: str = "tanh", scale: int = 2) -> Path:
    """Save generator images (N, C, H, W), C = 1 or 3, as a PNG grid (atomic write): grey or RGB.

    ``output``: the generator's output activation ("tanh": pixels in [-1, 1], "sigmoid": [0, 1]);
    each pixel becomes ``scale`` x ``scale`` pixels of the file."""
    from .atomic import atomic_write_bytes
    data = grid_png(images, nrow, output, scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def plot_losses(metrics_csv, path, probabilities: bool = True) -> Path:
    """Plot D and G losses and mean D(x), D(G(z)) against the step from a metrics CSV (atomic write).
    ``probabilities``: D's outputs are probabilities in [0, 1] (BCE), else raw critic scores."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .safeio import read_bytes
    text = read_bytes(metrics_csv, "metrics log").decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
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
    from .atomic import atomic_write_bytes
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
