"""A procedurally drawn RGB data set: one coloured shape per image, one subfolder per class.

`make_shapes_folder(path, n, size, seed)` draws `n` PNG images with Pillow's ImageDraw: on a
random light or dark background, one shape (a disc, a square, a triangle, ...) of a random
colour, size, position and rotation. Image i is of class `classes[i % len(classes)]` and is saved
as `<class>/<i>.png`, so `image_folder` takes the labels from the folders. The same seed gives
the same files, byte for byte, with the same Pillow. It is the offline RGB data for the tests and
the docs: a GAN learns it in minutes, and a wrong colour channel or a flipped axis shows at once.
"""
from __future__ import annotations

import colorsys
import io
import math
import os
from pathlib import Path

import numpy as np

from ..files.atomic import atomic_write_bytes

__all__ = ["make_shapes_folder", "SHAPES"]

SHAPES = ("disc", "square", "triangle", "ring", "cross")
_SUPERSAMPLE = 4      # drawn 4x larger, then box-filtered down: smooth edges
# outer radius relative to a disc's, so that the shapes cover similar areas
_REACH = {"disc": 1.0, "ring": 1.0, "square": 1.15, "triangle": 1.3, "cross": 1.15}


def _check(path, n, size, seed, classes):
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"make_shapes_folder: path must be a folder name, got {path!r}")
    for name, value, lo in (("n", n, 1), ("size", size, 8), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
            raise ValueError(f"make_shapes_folder: {name} must be an integer >= {lo}, got {value!r}")
    if size > 1024:
        raise ValueError(f"make_shapes_folder: size must be at most 1024, got {size}")
    if isinstance(classes, str) or not classes or \
            any(c not in SHAPES for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"make_shapes_folder: classes must be distinct names from {', '.join(SHAPES)}, "
                         f"got {classes!r}")
    folder = Path(path).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"make_shapes_folder: {folder} exists and is not an empty folder")
    return folder


def _polygon(cx, cy, radius, angle, k):
    return [(cx + radius * math.cos(angle + 2 * math.pi * j / k), cy + radius * math.sin(angle + 2 * math.pi * j / k))
            for j in range(k)]


def _rotated_rect(cx, cy, half_len, half_wid, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + c * x - s * y, cy + s * x + c * y)
            for x, y in ((-half_len, -half_wid), (half_len, -half_wid), (half_len, half_wid), (-half_len, half_wid))]


def draw_shape(kind: str, size: int, rng: np.random.Generator):
    """One size x size RGB Pillow image of `kind`, drawn from `rng`."""
    from PIL import Image, ImageDraw
    if kind not in SHAPES:
        raise ValueError(f"draw_shape: kind must be one of {', '.join(SHAPES)}, got {kind!r}")
    dark = bool(rng.random() < 0.5)
    base = rng.uniform(0, 70, 3) if dark else rng.uniform(185, 255, 3)
    background = tuple(int(v) for v in base)
    hue, sat = rng.random(), rng.uniform(0.6, 1.0)
    value = rng.uniform(0.75, 1.0) if dark else rng.uniform(0.45, 0.8)
    colour = tuple(int(round(255 * v)) for v in colorsys.hsv_to_rgb(hue, sat, value))
    r = min(rng.uniform(0.2, 0.4) * _REACH[kind], 0.45) * size   # the outer radius, in pixels
    r = min(r, size / 2 - 1.5)                                   # leaves room for the centre
    cx, cy = (rng.uniform(r + 1, size - r - 1) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)

    big = size * _SUPERSAMPLE
    im = Image.new("RGB", (big, big), background)
    d = ImageDraw.Draw(im)
    S = _SUPERSAMPLE
    cx, cy, r = cx * S, cy * S, r * S
    if kind == "disc":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif kind == "ring":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        inner = 0.55 * r
        d.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=background)
    elif kind == "square":
        d.polygon(_polygon(cx, cy, r, angle, 4), fill=colour)
    elif kind == "triangle":
        d.polygon(_polygon(cx, cy, r, angle, 3), fill=colour)
    else:   # cross
        d.polygon(_rotated_rect(cx, cy, r, 0.3 * r, angle), fill=colour)
        d.polygon(_rotated_rect(cx, cy, r, 0.3 * r, angle + math.pi / 2), fill=colour)
    return im.reduce(S)                                  # a box filter: antialiased edges


def make_shapes_folder(path, n: int = 1000, size: int = 32, seed: int = 0,
                       classes=("disc", "square", "triangle")) -> Path:
    """Write `n` PNGs of coloured shapes to `path`/<class>/<index>.png; -> the folder.

    `path` must not exist or be an empty folder. Image i is class `classes[i % len(classes)]`,
    drawn from the generator `numpy.random.default_rng([seed, i])`: deterministic for a seed,
    and the first images of a larger set equal those of a smaller one.
    """
    folder = _check(path, n, size, seed, classes)
    classes = tuple(classes)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
    width = len(str(n - 1))
    for i in range(n):
        kind = classes[i % len(classes)]
        im = draw_shape(kind, size, np.random.default_rng([seed, i]))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        atomic_write_bytes(folder / kind / f"{i:0{width}d}.png", buf.getvalue())
    return folder
