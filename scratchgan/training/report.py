"""Watching a run: the monitor grid, the progress animation and the run's report page.

    monitor.png, monitor/step_NNNNNNN.png   a fixed batch of real images and a fixed batch of
                                            generated ones, each labelled with D's belief
    progress.gif                            the sample grids of samples/, in step order
    report.html                             one self-contained page: config, grids, losses,
                                            evaluation numbers, checkpoints

The trainer rebuilds all three at every ``sample_every`` steps (``Trainer.on_interval``);
``write_report(run_dir)`` can also be called on its own, e.g. after ``evaluate`` wrote
evaluation.json. Every file is written atomically. docs/monitoring.md shows how to read them.

D's belief is measured in eval mode (no Dropout, BatchNorm's running statistics), and every
module of D gets its own mode back afterwards, so drawing a grid never changes training: no
Dropout counter moves, no running statistic or spectral-norm vector is updated.
"""
from __future__ import annotations

import csv
import datetime
import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .. import backend
from ..files.atomic import atomic_write_bytes
from ..files.images import to_unit_range
from ..files.safeio import RUN_IMAGE_FORMATS, UnsafeFileError, open_image, open_regular
from ..layers.activations import sigmoid

__all__ = ["MONITOR_SIZE", "REFRESH_S", "MonitorGrid", "d_outputs", "monitor_grid", "sample_grids",
           "progress_animation", "write_report"]

MONITOR_SIZE = 16          # real and generated images in the monitor grid, each
MAX_FRAMES = 60            # progress.gif: at most this many frames, evenly spaced over the run
MAX_PIXELS = 8_000_000     # ... and at most this many pixels in all its frames together
FRAME_MS, HOLD_MS = 400, 2000
REFRESH_S = 30             # report.html of a run still training reloads itself this often
MAX_READ = 1 << 20         # config.json, evaluation.json, a checkpoint's .json: read at most 1 MiB
RIGHT, WRONG = "#1a9850", "#d73027"     # frame colours: green where D is right, red where it is wrong
_STEP_PNG = re.compile(r"^step_(\d{7,})\.png$")


# ---------------------------------------------------------------------------- D's belief
def d_outputs(gan, images, labels=None, probabilities: bool = True) -> np.ndarray:
    """D's output for each image as a host array of shape (N,), in D's dtype: sigmoid(logit),
    the probability of "real", when ``probabilities`` (the BCE family), else the raw score.

    D runs in eval mode; each of its modules gets its own mode back afterwards. A conditional
    model's input is built with ``gan.d_input(images, labels)``."""
    D = gan.D
    modes = [(m, m.training) for _, m in D.named_modules()]
    D.eval()
    try:
        out = D(gan.d_input(images, labels))
    finally:
        for m, mode in modes:
            m.training = mode
    if out.shape != (len(images), 1):
        raise ValueError(f"d_outputs: D must give one output per image, shape ({len(images)}, 1); got {out.shape}")
    out = out[:, 0]
    return backend.to_numpy(sigmoid(out) if probabilities else out)


@dataclass
class MonitorGrid:
    """What ``monitor_grid`` drew. ``*_values`` are exactly D's outputs for the images shown
    (``d_outputs``); a tile is right (green frame) when a real image scores >= ``threshold`` and a
    generated one below it, wrong (red) otherwise. ``threshold`` is 0.5 for probabilities and the
    midpoint of the two means for raw scores."""
    step: int | None
    probabilities: bool
    threshold: float
    mean_real: float
    mean_fake: float
    real_values: np.ndarray
    fake_values: np.ndarray
    real_correct: np.ndarray
    fake_correct: np.ndarray
    real_frames: list                 # the colour of each tile's frame, as drawn
    fake_frames: list
    real_names: list | None           # each tile's class name (conditional models), as drawn
    fake_names: list | None
    real_texts: list                  # the value printed under each tile
    fake_texts: list
    title: str
    png: bytes = field(repr=False, default=b"")
    paths: list = field(default_factory=list)


def shown(text) -> str:
    """A file or class name as plain text that encodes to UTF-8: the bytes of a name that are not
    UTF-8 (which Python carries as surrogate escapes, os.fsdecode) are written \\xNN, as Python
    prints bytes; any other lone surrogate as \\udNNN. A UTF-8 name is returned unchanged. For
    text only: links use the name's bytes percent-encoded, and JSON keeps the surrogate escapes
    (json.dumps writes them as \\udcNN, which json.loads reads back to the same name)."""
    text = str(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _names(labels, class_names, what):
    if labels is None:
        return None
    labels = backend.to_numpy(labels).astype(np.int64).tolist()
    if class_names is None:
        return [str(label) for label in labels]
    for label in labels:
        if not 0 <= label < len(class_names):
            raise ValueError(f"monitor_grid: {what} holds label {label}, but class_names has {len(class_names)} names "
                             f"(labels 0..{len(class_names) - 1})")
    return [shown(class_names[label]) for label in labels]


def _check_images(images, what):
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4 or shape[1] not in (1, 3) or 0 in shape:
        raise ValueError(f"monitor_grid: {what} must be an array of shape (N, 1 or 3, H, W) with N >= 1, "
                         f"got {'a ' + type(images).__name__ if shape is None else f'shape {tuple(shape)}'}")
    if np.dtype(images.dtype).kind != "f":
        raise ValueError(f"monitor_grid: {what} must hold floating-point pixels, got dtype {images.dtype}")


def _check_labels(labels, n, what, conditional):
    if not conditional:
        return None
    if labels is None:
        raise ValueError(f"monitor_grid: a conditional model needs {what} (one per image), got None")
    if getattr(labels, "shape", None) != (n,):
        raise ValueError(f"monitor_grid: {what} must have shape ({n},), got {getattr(labels, 'shape', type(labels))}")
    return backend.asarray(labels).astype(np.int64)


def _fmt_value(v: float, probabilities: bool) -> str:
    return f"{100.0 * v:.1f}%" if probabilities else f"{v:.3g}"


def monitor_grid(gan, real, fake, real_labels=None, fake_labels=None, *, probabilities: bool = True,
                 class_names=None, step: int | None = None, path=None, loss_name: str = "") -> MonitorGrid:
    """Draw real and generated images side by side, each labelled with D's output, and return
    what was drawn. ``path``: a file or a list of files to write the PNG to (atomically).

    ``real`` and ``fake``: (N, 1 or 3, H, W) arrays in the generator's output range (any N, any
    size; RGB is shown as RGB). A conditional model needs ``real_labels`` and ``fake_labels``;
    each tile then shows its class name (``class_names[label]``, else the label's number)."""
    _check_images(real, "real")
    _check_images(fake, "fake")
    if tuple(real.shape[1:]) != tuple(fake.shape[1:]):
        raise ValueError(f"monitor_grid: real and fake images must have the same (C, H, W), "
                         f"got {tuple(real.shape[1:])} and {tuple(fake.shape[1:])}")
    dtype = gan.D.dtype
    real, fake = backend.asarray(real, dtype=dtype), backend.asarray(fake, dtype=dtype)
    real_labels = _check_labels(real_labels, len(real), "real_labels", gan.conditional)
    fake_labels = _check_labels(fake_labels, len(fake), "fake_labels", gan.conditional)
    real_names = _names(real_labels, class_names, "real_labels")
    fake_names = _names(fake_labels, class_names, "fake_labels")

    real_values = d_outputs(gan, real, real_labels, probabilities)
    fake_values = d_outputs(gan, fake, fake_labels, probabilities)
    mean_real = float(real_values.astype(np.float64).mean())
    mean_fake = float(fake_values.astype(np.float64).mean())
    threshold = 0.5 if probabilities else 0.5 * (mean_real + mean_fake)
    real_correct = real_values.astype(np.float64) >= threshold
    fake_correct = fake_values.astype(np.float64) < threshold
    real_frames = [RIGHT if c else WRONG for c in real_correct.tolist()]
    fake_frames = [RIGHT if c else WRONG for c in fake_correct.tolist()]
    real_texts = [_fmt_value(v, probabilities) for v in real_values.tolist()]
    fake_texts = [_fmt_value(v, probabilities) for v in fake_values.tolist()]

    head = f"step {step:,}: " if step is not None else ""
    if probabilities:
        title = (f"{head}mean D(real) = {_fmt_value(mean_real, True)}, mean D(fake) = {_fmt_value(mean_fake, True)}\n"
                 "D(x) = sigmoid(logit), D's probability that x is real; frame green where D is right "
                 "at 50% (real >= 50%, fake < 50%), red where wrong")
    else:
        title = (f"{head}mean D(real) = {mean_real:.4g}, mean D(fake) = {mean_fake:.4g}"
                 f"{f' ({loss_name} critic scores)' if loss_name else ' (raw critic scores)'}\n"
                 f"raw scores are not probabilities: frame green where D is right against the midpoint "
                 f"{threshold:.4g} of the two means (real above, fake below), red where wrong")

    png = _draw(to_unit_range(real, gan.output), to_unit_range(fake, gan.output),
                (real_texts, fake_texts), (real_frames, fake_frames), (real_names, fake_names),
                (int(real_correct.sum()), int(fake_correct.sum())), title)
    paths = [] if path is None else [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, png)
    return MonitorGrid(step, probabilities, threshold, mean_real, mean_fake, real_values, fake_values,
                       real_correct, fake_correct, real_frames, fake_frames, real_names, fake_names,
                       real_texts, fake_texts, title, png, paths)


def _canvas(tiles, ncol, gaps):
    """(N, C, H, W) in [0, 1] -> one white RGB canvas with the tiles on a grid of cells."""
    n, c, h, w = tiles.shape
    top, bottom, left, right = gaps
    nrow = -(-n // ncol)
    rgb = np.repeat(tiles, 3, axis=1) if c == 1 else tiles
    cells = np.pad(rgb.transpose(0, 2, 3, 1), ((0, nrow * ncol - n), (top, bottom), (left, right), (0, 0)),
                   constant_values=1.0)
    ch, cw = h + top + bottom, w + left + right
    return cells.reshape(nrow, ncol, ch, cw, 3).transpose(0, 2, 1, 3, 4).reshape(nrow * ch, ncol * cw, 3)


def _draw(real, fake, texts, frames, names, right, title) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    n_max = max(len(real), len(fake))
    h, w = real.shape[2:]
    ncol = int(math.ceil(math.sqrt(n_max)))
    nrow = -(-n_max // ncol)
    top, left = max(2, h // 10), max(2, w // 10)
    gaps = (top, max(4, int(round(0.38 * h))), left, left)
    ch, cw = h + gaps[0] + gaps[1], w + 2 * left
    cell_in = min(1.1, 6.0 / ncol)                     # a cell's width in inches
    bw, bh = ncol * cell_in, nrow * cell_in * ch / cw   # one block, inches
    gap, margin, head = 0.5, 0.25, 1.05
    fig_w, fig_h = 2 * bw + gap + 2 * margin, bh + head + margin
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    fig.suptitle(title, fontsize=9, y=1 - 0.12 / fig_h, va="top")
    blocks = ((real, "real images (a fixed batch)"), (fake, "generated (fixed noise)"))
    for b, (tiles, name) in enumerate(blocks):
        ax = fig.add_axes(((margin + b * (bw + gap)) / fig_w, margin / fig_h, bw / fig_w, bh / fig_h))
        canvas = _canvas(tiles, ncol, gaps)
        full = np.ones((nrow * ch, ncol * cw, 3), np.float32)     # both blocks the same size
        full[:canvas.shape[0]] = canvas
        ax.imshow(full, interpolation="nearest", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(f"{name}: D right on {right[b]}/{len(tiles)}", fontsize=9)
        for i in range(len(tiles)):          # one annotation per tile (a few dozen artists)
            r, c = divmod(i, ncol)
            x0, y0 = c * cw + left - 0.5, r * ch + top - 0.5
            ax.add_patch(Rectangle((x0 - 1, y0 - 1), w + 2, h + 2, fill=False, edgecolor=frames[b][i],
                                   linewidth=2.5))
            ax.text(x0 + w / 2, y0 + h + 1 + (gaps[1] - 1) / 2, texts[b][i], ha="center", va="center",
                    fontsize=8, color="black")
            if names[b] is not None:
                ax.text(x0 + 1, y0 + 1, names[b][i], ha="left", va="top", fontsize=8, color="white",
                        bbox=dict(facecolor="black", alpha=0.65, pad=1.0, linewidth=0),
                        usetex=False, parse_math=False)    # a class name is data: "$x$" is not TeX
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ---------------------------------------------------------------------------- progress.gif
def sample_grids(run_dir) -> list:
    """[(step, path)] of the sample grids in RUN_DIR/samples/, oldest first (links are skipped)."""
    folder = Path(run_dir) / "samples"
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for p in entries:
        m = _STEP_PNG.match(p.name)
        if m and not p.is_symlink() and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _even(items, k):
    """At most k of ``items``, evenly spaced, always the first and the last."""
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


def _upscale(im) -> int:
    """The largest k in 4, 3, 2 for which the image is a k-fold nearest-neighbour enlargement
    (as save_grid's ``scale`` makes), else 1: shrinking such a frame by k loses nothing."""
    a = np.asarray(im)
    for k in (4, 3, 2):
        if a.shape[0] % k == 0 and a.shape[1] % k == 0 and np.array_equal(a, a[::k, ::k].repeat(k, 0).repeat(k, 1)):
            return k
    return 1


def progress_animation(run_dir, path=None, max_frames: int = MAX_FRAMES, frame_ms: int = FRAME_MS,
                       hold_ms: int = HOLD_MS, max_side: int = 768, max_pixels: int = MAX_PIXELS):
    """Write RUN_DIR/progress.gif (or ``path``): one frame per sample grid in samples/, in step
    order, each captioned with its step; at most ``max_frames``, evenly spaced over the run
    (always the first and the newest); ``frame_ms`` per frame, the last held ``hold_ms``.

    To stay small, frames are stored at the grids' own resolution (a grid enlarged by whole
    factors is shrunk back; report.html shows it enlarged again), shrunk further by a whole
    factor when wider or taller than ``max_side``, and large frames get fewer of them: at most
    ``max_pixels`` pixels over all frames (but 2 frames at least). A grid that cannot be read is
    left out. Returns the path, or None when there is no grid yet."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"progress_animation: max_frames must be an integer >= 1, got {max_frames!r}")
    from PIL import Image, ImageDraw, ImageFont
    grids = sample_grids(run_dir)
    if not grids:
        return None
    try:
        with open_image(grids[-1][1], RUN_IMAGE_FORMATS) as im:       # the newest grid sets the frame size
            newest = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):   # UnsafeFileError is a ValueError
        newest = None
    factor = size = None
    if newest is not None:
        k = _upscale(newest)
        extra = max(1, math.ceil(max(newest.size) / k / max_side))
        factor, size = k * extra, (max(1, newest.size[0] // (k * extra)), max(1, newest.size[1] // (k * extra)))
        max_frames = min(max_frames, max(2, max_pixels // (size[0] * size[1])))
    frames = []
    for step, p in _even(grids, max_frames):
        try:
            with open_image(p, RUN_IMAGE_FORMATS) as im:
                im = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if factor is None:                           # the newest grid was unreadable: this one sets it
            factor, size = 1, im.size
        if im.size != (size[0] * factor, size[1] * factor):
            im = im.resize((size[0] * factor, size[1] * factor), Image.NEAREST)
        frames.append((step, im.reduce(factor) if factor > 1 else im))
    if not frames:
        return None
    font = ImageFont.load_default()
    strip = 12
    out = []
    for step, im in frames:
        frame = Image.new("RGB", (size[0], size[1] + strip), "white")
        frame.paste(im, (0, strip))
        ImageDraw.Draw(frame).text((2, 0), f"step {step:,}", fill="black", font=font)
        out.append(frame)
    durations = [frame_ms] * (len(out) - 1) + [hold_ms]
    buf = io.BytesIO()
    out[0].save(buf, format="GIF", save_all=True, append_images=out[1:], duration=durations, loop=0)
    path = Path(run_dir) / "progress.gif" if path is None else Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ---------------------------------------------------------------------------- report.html
def _read_json(path: Path):
    """(value, None) or (None, why not): never raises for a missing, large or damaged file."""
    if not path.exists():
        return None, f"{path.name} is not there"
    try:
        if path.is_symlink() or not path.is_file():
            return None, f"{path.name} is not a plain file"
        with open_regular(path) as f:
            data = f.read(MAX_READ + 1)
        if len(data) > MAX_READ:
            return None, f"{path.name} is larger than {MAX_READ:,} bytes"
        return json.loads(data.decode("utf-8")), None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"{path.name} cannot be read ({type(exc).__name__}: {str(exc)[:200]})"


def _e(value) -> str:
    return html.escape(shown(value), quote=True)


def _href(rel: str) -> str:
    return _e(quote(rel.encode("utf-8", "surrogateescape")))


def _value(v) -> str:
    """A config or evaluation value as text: numbers briefly, everything else as JSON."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (int, str)):
        return str(v)
    text = json.dumps(v)
    return text if len(text) <= 300 else text[:300] + " ..."


def _note(text) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _config_section(run: Path) -> str:
    cfg, why = _read_json(run / "config.json")
    if why is not None:
        return _note(f"No configuration shown: {why}.")
    if not isinstance(cfg, dict):
        return _note(f"No configuration shown: config.json holds a {type(cfg).__name__}, not an object.")
    rows = []
    for key, value in cfg.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            rows.append((key, value))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_value(v))}</td></tr>" for k, v in rows[:500])
    return f'<table class="config"><tr><th>setting</th><th>value</th></tr>{body}</table>'


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _number(v) -> str:
    if isinstance(v, bool) or v is None:
        return "-"
    if isinstance(v, (int, float)):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return f"{v[0]:.3f} &plusmn; {v[1]:.3f}"       # classifier score: mean +- std over splits
    return _e(_value(v))


EVAL_ROWS = [   # label, path in "generated", path in "real", path in "noise"; "<last key>_std" is the error bar
    ("FID (lower is better; real: train vs reference)", ("fid",), ("fid",), ("fid",)),
    ("KID (unbiased; lower is better)", ("kid",), ("kid",), ("kid",)),
    ("classifier score", ("classifier_score",), ("classifier_score",), ("classifier_score",)),
    ("smallest class share", ("class_histogram", "min_share"), ("class_histogram", "min_share"), None),
    ("KL(class histogram || uniform)", ("class_histogram", "kl_uniform"), ("class_histogram", "kl_uniform"), None),
    ("smallest cluster share", ("cluster_histogram", "min_share"), ("cluster_histogram", "min_share"), None),
    ("cluster histogram: TV to the reference's", ("cluster_histogram", "tv_reference"),
     ("cluster_histogram", "tv_reference"), ("cluster_histogram", "tv_reference")),
    ("precision", ("precision",), ("precision",), ("precision",)),
    ("recall", ("recall",), ("recall",), ("recall",)),
    ("density", ("density",), ("density",), ("density",)),
    ("coverage", ("coverage",), ("coverage",), ("coverage",)),
    ("median NN distance to train, pixels", ("nn_pixel_median",), ("nn_pixel_median",), None),
    ("median NN distance to train, features", ("nn_feature_median",), ("nn_feature_median",), None),
    ("label accuracy (real: the judge's)", ("label_accuracy", "overall"), ("judge_accuracy",), None),
]


def _with_std(d, path) -> str:
    """The value at ``path`` with its error bar ("<key>_std" beside it), or "-"."""
    v = _get(d, *path)
    if path[-1] == "kid" and isinstance(v, list) and len(v) == 2 \
            and all(isinstance(x, float) and math.isfinite(x) for x in v):
        return f"{v[0]:.4g} &plusmn; {v[1]:.2g}"                 # [mean, std over subsets]
    std = _get(d, *path[:-1], path[-1] + "_std")
    if isinstance(std, (int, float)) and not isinstance(std, bool) and isinstance(v, (int, float)) \
            and not isinstance(v, bool) and math.isfinite(std):
        return f"{v:.4g} &plusmn; {std:.2g}"
    return _number(v)


def _evaluation_section(run: Path) -> str:
    if not (run / "evaluation.json").exists():    # every run can be scored: a folder run by a judge of its data
        return ('<p class="note">No evaluation yet: <code>scratchgan evaluate RUN_DIR</code> writes evaluation.json '
                'and nearest_neighbours.png, and the next report shows them here.</p>')
    ev, why = _read_json(run / "evaluation.json")
    if why is not None:
        return _note(f"No evaluation shown: {why}.")
    if not isinstance(ev, dict) or not isinstance(ev.get("generated"), dict):
        return _note("No evaluation shown: evaluation.json has no 'generated' numbers.")
    rows = []
    for label, g, r, nz in EVAL_ROWS:
        if _get(ev["generated"], *g) is None:
            continue
        cells = [_with_std(ev.get(part), path) if path else "-"
                 for part, path in (("generated", g), ("real", r), ("noise", nz))]
        rows.append(f"<tr><th>{_e(label)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = (f"step {_e(_value(ev.get('step')))}, {_e(_value(ev.get('n')))} samples, data set "
            f"{_e(_value(ev.get('dataset')))}, judge {_e(_value(_get(ev, 'judge', 'name')))}")
    pixels, features = _get(ev, "memorisation", "pixel_ratio"), _get(ev, "memorisation", "feature_ratio")
    extra = (f"<p>Memorisation: nearest-neighbour distance ratio generated/test = {_number(pixels)} (pixels), "
             f"{_number(features)} (the judge's features); well below 1 suggests copies of training images.</p>"
             if pixels is not None or features is not None else "")
    if (run / "nearest_neighbours.png").is_file():
        extra += _figure(run, "nearest_neighbours.png", "nearest training images",
                         "Each row: a generated sample, then its 5 nearest training images in pixel space.")
    judge = ev.get("judge") if isinstance(ev.get("judge"), dict) else {}
    if judge.get("task") in ("classes", "rotation") and judge.get("name") != "mnist" and "data_key" in judge:
        extra += (f"<p>Judge: a {_e(judge['task'])} net trained on this run's data (held-out accuracy "
                  f"{_number(judge.get('held_out_accuracy'))}); the real reference is the data it never saw.</p>")
    extra += ("<p>&plusmn;: FID over bootstrap resamples of the samples, KID over subsets, the shares over "
              "bootstrap resamples of the items.</p>")
    return (f"<p>{head}</p><table><tr><th>metric</th><th>generated</th><th>real data</th><th>uniform noise</th></tr>"
            f"{''.join(rows)}</table>{extra}")


def _metrics_section(run: Path) -> str:
    path = run / "metrics.csv"
    if not path.is_file() or path.is_symlink():
        return _note("No metrics logged yet.")
    try:
        with open_regular(path) as f:
            header = next(csv.reader([f.readline(64 * 1024).decode("utf-8", errors="replace")]))
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            tail = f.read().decode("utf-8", errors="replace").splitlines()
        last = next(csv.reader([tail[-1]])) if len(tail) > 1 else None
    except (OSError, UnsafeFileError, csv.Error, StopIteration):
        return _note("metrics.csv cannot be read.")
    if not last or len(last) != len(header):
        return _note("No complete row in metrics.csv yet.")
    rows = "".join(f"<tr><th>{_e(h)}</th><td>{_e(v)}</td></tr>" for h, v in zip(header[:20], last[:20]))
    return f"<p>The last logged step:</p><table>{rows}</table>"     # one row per value: fits a narrow window


def _checkpoint_section(run: Path) -> str:
    from .checkpoint import CheckpointError, arrays_path, list_checkpoints, read_meta
    items = []
    for step, meta_path in list_checkpoints(run / "checkpoints"):
        if meta_path.is_symlink() or not meta_path.is_file():
            continue
        link = f'<a href="{_href(f"checkpoints/{meta_path.name}")}">{_e(meta_path.name)}</a>'
        try:
            if meta_path.stat().st_size > MAX_READ:
                raise CheckpointError("too large")
            npz = arrays_path(meta_path, read_meta(meta_path))   # a name the checkpoint's checksum backs
            if npz.is_file() and not npz.is_symlink():
                mb = npz.stat().st_size / 1e6
                link += f' and <a href="{_href(f"checkpoints/{npz.name}")}">{_e(npz.name)}</a> ({mb:.2f} MB)'
        except (CheckpointError, OSError):
            link += " (its arrays file is missing or not named by it)"
        items.append(f"<li>step {step:,}: {link}</li>")
    if not items:
        return _note("No checkpoint yet.")
    return f"<ul>{''.join(items)}</ul>"


def _figure(run: Path, rel: str, alt: str, caption: str, width: int | None = None) -> str:
    p = run / rel
    if not p.is_file():
        return _note(f"{rel} is not there yet.")
    size = f' width="{int(width)}"' if width else ""
    return f'<figure><img src="{_href(rel)}" alt="{_e(alt)}"{size}><figcaption>{caption}</figcaption></figure>'


def _width(path: Path):
    """An image's width in pixels from its header, or None."""
    from PIL import Image
    try:   # only PNG: whatever else lies in a shared run folder is never handed to a decoder
        with open_regular(path) as f, Image.open(f, formats=list(RUN_IMAGE_FORMATS)) as im:
            return im.size[0]
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1150px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ccc; }
figure { margin: 0.5em 0; } figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; }
th { text-align: left; background: #f4f4f4; } td { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.note { color: #777; font-style: italic; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
"""


def write_report(run_dir, refresh: int | None = None) -> Path:
    """Write RUN_DIR/report.html, one self-contained page (inline CSS, no JavaScript, images by
    paths relative to the run folder): the latest sample grid, the monitor grid, progress.gif,
    losses.png, the last logged metrics, evaluation.json's numbers beside the real-data
    reference (when it exists), the config and the checkpoints. A missing or damaged file gets
    a note instead of a section. ``refresh``: seconds after which a browser reloads the page
    (while a run is training); None for a finished run. Every string read from a file is
    escaped. Returns the path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"write_report: {run} is not a run folder")
    if refresh is not None and (isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 1):
        raise ValueError(f"write_report: refresh must be None or an integer >= 1 (seconds), got {refresh!r}")
    grids = sample_grids(run)
    latest = f" (step {grids[-1][0]:,})" if grids else ""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    live = (f'<meta http-equiv="refresh" content="{refresh}">' if refresh else "")
    state = (f"training: this page reloads every {refresh} s" if refresh else "not training now")
    parts = [
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{live}"
        f"<title>{_e(run.resolve().name)}: scratchgan run</title><style>{CSS}</style></head><body>",
        f"<h1>scratchgan run <code>{_e(run.resolve().name)}</code></h1>",
        f"<p>Written {now}; {state}.</p>",
        "<h2>Samples</h2><div class=\"row\">",
        _figure(run, "samples.png", "sample grid", f"The newest grid from the fixed noise{latest}."),
        _figure(run, "progress.gif", "progress animation",      # shown as large as the grids it holds
                "The same noise through training, one frame per sample grid.", width=_width(run / "samples.png")),
        "</div><h2>What D believes</h2>",
        _figure(run, "monitor.png", "monitor grid",
                "A fixed real batch and a fixed generated batch, each image with D's output; green frames where "
                "D is right, red where it is wrong (docs/monitoring.md)."),
        "<h2>Losses</h2>",
        _figure(run, "losses.png", "loss curves", "D's and G's losses, and the mean D(x) and D(G(z)), by step."),
        _metrics_section(run),
        "<h2>Evaluation</h2>", _evaluation_section(run),
        "<h2>Configuration</h2>", _config_section(run),
        "<h2>Checkpoints</h2>", _checkpoint_section(run),
        "</body></html>\n",
    ]
    path = run / "report.html"
    atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
    return path
