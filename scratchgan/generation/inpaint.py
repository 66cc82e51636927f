"""Image completion with a trained GAN (semantic inpainting, Yeh et al. 2017).

Given images x (N, C, H, W) in the generator's pixel range, grey (C = 1) or RGB (C = 3),
and a binary (H, W) mask M of the KNOWN pixels (1 = known, 0 = missing; the same for every
channel), search the latent space for the code whose image agrees with
the known pixels and that D finds realistic:

    L(z) = || W * M * (G(z) - x) ||_1  +  lam * perceptual(D(G(z)))              (per image)

    (the L1 norm sums over every channel of every pixel)

    W            the paper's importance weights: for a known pixel, the fraction of
                 MISSING pixels in the 7x7 window around it (counting only pixels inside
                 the image); 0 for missing pixels. weighted=False gives W = 1.
    perceptual   "minimax":       log(1 - D(G(z))) = -softplus(l)   (the paper's prior loss)
                 "nonsaturating": -log D(G(z))     =  softplus(-l)  (the default: it does not
                                  saturate when D confidently rejects G(z))
                 with l = D's logit, computed by scratchgan.losses.

z is found by hand-written Adam on dL/dz, which comes from the library's own backward
passes: dL/dG(z) = W*M*sign(G(z) - x) + lam * D.backward(dperceptual/dl) (the image part of
D's input gradient), then G.backward of that down to G's input, whose first latent_dim
columns are dL/dz (the rest belongs to the one-hot label of a conditional model). After each
step z is clipped to the prior's support ([-1, 1] for uniform noise; no clip for normal
noise unless ``clip`` is given). Several random restarts per image run in one vectorised
batch (restarts x images) and the restart with the lowest final loss is kept. G and D run
in eval mode (BatchNorm running statistics, no Dropout) and their weights never change.

Blending is the plain overlay  completed = M * x + (1 - M) * G(z)  (no Poisson blending):
known pixels are copied exactly.

    mask = make_mask("center", shape=gan.image_shape) # (H, W) float32, 1 = known
    res = inpaint(gan, images, mask, steps=500)       # images: (N, *gan.image_shape)
    completion_error(res.completed, images, mask)     # mean |error| on the missing pixels
    completion_error(mean_image_fill(train, images, mask), images, mask)   # the baseline
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend, losses
from ..files.safeio import UnsafeFileError, open_image, read_npy

__all__ = ["MASK_KINDS", "DEFAULT_FRACTION", "make_mask", "context_weights", "InpaintResult", "inpaint",
           "inpaint_loss_and_grad", "completion_error", "mean_image_fill", "masked_images"]

MASK_KINDS = ("center", "left", "right", "top", "bottom", "random")
# Fraction of MISSING pixels when none is given: a centre square of a quarter of the image,
# half the image for the sides, and 80% of the pixels for "random" (as in Yeh et al.).
DEFAULT_FRACTION = {"center": 0.25, "left": 0.5, "right": 0.5, "top": 0.5, "bottom": 0.5, "random": 0.8}
PERCEPTUAL = ("nonsaturating", "minimax")
WINDOW = 7
HALVING_AT = (1 / 8, 1 / 4, 1 / 2)   # inpaint(halving=True): the fractions of the steps after which half are dropped


# ----------------------------------------------------------------------------- masks
def make_mask(kind, shape=(28, 28), rng=None, seed=0, fraction=None) -> np.ndarray:
    """A binary (H, W) float32 mask of the KNOWN pixels (1 = known, 0 = missing).

    kind: "center"  a centred square of about ``fraction`` of the pixels is missing (0.25);
          "left" / "right" / "top" / "bottom"  that side is missing, round(fraction * W)
                  columns or round(fraction * H) rows of it (0.5);
          "random"  exactly round(fraction * H * W) pixels chosen at random are missing (0.8),
                  from ``rng`` (a numpy Generator) or ``seed``;
          a path to a .npy file (values: 1/True = known, 0 = missing) or to an image file
                  (PNG, ...: white = known, black = missing, thresholded at half intensity);
          an array, validated and returned as a mask.
    ``shape`` is (H, W), or an image shape (C, H, W) such as ``gan.image_shape`` (the mask is
    (H, W) and covers every channel); a loaded or given mask must have exactly (H, W).
    """
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"make_mask: shape must be (H, W) or (C, H, W) with positive sizes, got {shape!r}") from None
    if len(shape) == 3:
        shape = shape[1:]
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"make_mask: shape must be (H, W) or (C, H, W) with positive sizes, got {shape}")
    h, w = shape
    if not isinstance(kind, (str, Path)):
        return _check_mask_array(backend.to_numpy(kind), shape, "make_mask: the given mask")
    if isinstance(kind, str) and kind in MASK_KINDS:
        f = DEFAULT_FRACTION[kind] if fraction is None else float(fraction)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"make_mask: fraction (of missing pixels) must be in [0, 1], got {fraction}")
        mask = np.ones(shape, np.float32)
        if kind == "center":
            mh, mw = int(round(h * np.sqrt(f))), int(round(w * np.sqrt(f)))
            top, left = (h - mh) // 2, (w - mw) // 2
            mask[top:top + mh, left:left + mw] = 0
        elif kind in ("left", "right"):
            k = int(round(w * f))
            mask[:, :k] = 0 if kind == "left" else 1
            if kind == "right" and k:
                mask[:, w - k:] = 0
        elif kind in ("top", "bottom"):
            k = int(round(h * f))
            if kind == "top":
                mask[:k] = 0
            elif k:
                mask[h - k:] = 0
        else:  # random
            rng = np.random.default_rng(seed) if rng is None else rng
            missing = rng.permutation(h * w)[:int(round(f * h * w))]
            mask.reshape(-1)[missing] = 0
        return mask
    path = Path(kind)
    if not path.suffix:
        raise ValueError(f"make_mask: unknown mask kind {kind!r}; choose from {', '.join(MASK_KINDS)}, "
                         "or give a .npy / .png file")
    if not path.exists():
        raise ValueError(f"make_mask: mask file {str(path)!r} not found (kinds: {', '.join(MASK_KINDS)})")
    if path.suffix.lower() == ".npy":
        try:
            arr = read_npy(path, "make_mask:")
        except UnsafeFileError as exc:   # a FIFO, a header that lies about its size, pickled objects
            raise ValueError(f"make_mask: {path}: not a plain NumPy array file ({exc.reason})") from None
        except (ValueError, OSError, EOFError) as exc:    # empty, truncated, not .npy at all
            raise ValueError(f"make_mask: {path}: not a plain NumPy array file ({exc})") from None
        return _check_mask_array(arr, shape, f"make_mask: {path}")
    try:   # PNG or JPEG by content: no other decoder is ever handed the file
        with open_image(path, what="make_mask:") as img:
            gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except UnsafeFileError:
        raise
    except Exception as exc:  # PIL's UnidentifiedImageError, OSError, ...
        raise ValueError(f"make_mask: cannot read {path} as a PNG or JPEG image ({exc})") from None
    if gray.shape != shape:
        raise ValueError(f"make_mask: {path} is {gray.shape[1]}x{gray.shape[0]} pixels, expected "
                         f"{shape[1]}x{shape[0]} (W x H)")
    return (gray >= 0.5).astype(np.float32)


def _check_mask_array(arr, shape, what):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what}: expected a numeric or boolean array, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape:
        raise ValueError(f"{what}: expected a mask of shape {shape}, got {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{what}: a mask must hold only 0 (missing) and 1 (known)")
    return arr


def _mask_nchw(mask, n, hw, what="mask"):
    """Host (N or 1, 1, H, W) float32 mask from (H, W), (1, H, W), (N, H, W) or (N, 1, H, W)."""
    m = backend.to_numpy(mask)
    if m.dtype.kind not in "biuf":
        raise ValueError(f"{what}: expected a numeric or boolean array, got dtype {m.dtype}")
    m = m.astype(np.float32)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None] if m.shape[0] == n and m.shape[0] != 1 else m[None] if m.shape[0] == 1 else None
    elif m.ndim != 4 or m.shape[1] != 1:
        m = None
    if m is None or m.shape[2:] != tuple(hw) or m.shape[0] not in (1, n):
        raise ValueError(f"{what}: expected shape (H, W) = {tuple(hw)}, (1, H, W) or (N, 1, H, W) with "
                         f"N = {n}, got {tuple(np.shape(mask))}")
    if not np.all((m == 0) | (m == 1)):
        raise ValueError(f"{what}: a mask must hold only 0 (missing) and 1 (known)")
    return m


def context_weights(mask, window=WINDOW) -> np.ndarray:
    """The paper's weights W for the contextual loss, same shape as ``mask`` (host arrays).

    W_i = (missing pixels in the window x window neighbourhood of i) / (pixels of that
    neighbourhood inside the image) for a known pixel i, and 0 for a missing one: known
    pixels next to the hole count most, those far from it not at all.
    """
    m = backend.to_numpy(mask).astype(np.float64)
    h, w = m.shape[-2:]
    r = window // 2
    pad = [(0, 0)] * (m.ndim - 2) + [(r, r), (r, r)]
    missing = np.pad(1.0 - m, pad)
    inside = np.pad(np.ones_like(m), pad)
    num = np.zeros_like(m)
    den = np.zeros_like(m)
    for dy in range(window):
        for dx in range(window):
            num += missing[..., dy:dy + h, dx:dx + w]
            den += inside[..., dy:dy + h, dx:dx + w]
    return (m * num / den).astype(np.float32)


# ----------------------------------------------------------------------------- the loss
def _model_xp(gan):
    return backend.array_module(*(p for _, p, _ in gan.G.named_parameters()))


def _on(xp, a, dtype=None):
    """``a`` on the namespace ``xp`` (host <-> device copy at this boundary only)."""
    if xp is np:
        return np.asarray(backend.to_numpy(a), dtype=dtype)
    return xp.asarray(a, dtype=dtype)


@contextlib.contextmanager
def _eval_mode(gan):
    """G and D in eval mode; every module gets its own mode back afterwards."""
    modes = [(m, m.training) for net in (gan.G, gan.D) for _, m in net.named_modules()]
    gan.G.eval()
    gan.D.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def inpaint_loss_and_grad(gan, z, images, weights, labels=None, lam=0.1, perceptual="nonsaturating"):
    """Per-image loss L(z) (n,), its gradient dL/dz (n, latent_dim) and G(z).

    ``images`` (n, C, H, W) are the targets, ``weights`` = W * M broadcastable to them, e.g.
    (n, 1, H, W) for every channel (0 on missing pixels), ``labels`` (n,) for a conditional
    model. Each z_i affects only L_i (eval mode: no batch statistics), so dL/dz is also the
    gradient of sum(L). Runs G and D as they are: call it inside eval mode (``inpaint`` does).
    Only input gradients are formed (``backward_input``): G's and D's .grads are not touched.
    """
    if perceptual not in PERCEPTUAL:
        raise ValueError(f"perceptual must be one of {PERCEPTUAL}, got {perceptual!r}")
    xp = backend.array_module(z, images)
    n = len(z)
    fake, g_cache = gan.G.forward(gan.g_input(z, labels))
    diff = fake - images
    context = (weights * xp.abs(diff)).reshape(n, -1).sum(axis=1)
    dfake = weights * xp.sign(diff)
    loss = context
    if lam:
        logits, d_cache = gan.D.forward(gan.d_input(fake, labels))
        _, dlogits = losses.G_LOSSES[perceptual](logits)          # gradient of the MEAN over n
        if perceptual == "nonsaturating":
            per_item = losses.softplus(-logits)                  # -log sigmoid(l)
        else:
            per_item = -losses.softplus(logits)                  # log(1 - sigmoid(l))
        loss = context + lam * per_item.reshape(n)
        dlogits *= lam * n                                       # -> gradient of each item's own loss
        d_in = gan.D.backward_input(dlogits, d_cache)                # no weight gradients: the weights stay
        dfake = dfake + gan.d_input_grad_to_images(d_in, fake.shape)
    dg_in = gan.G.backward_input(dfake, g_cache)
    return loss, dg_in[:, :gan.latent_dim], fake


# ----------------------------------------------------------------------------- the search
@dataclass
class InpaintResult:
    """What ``inpaint`` found, on the model's backend (numpy or cupy arrays).

    completed (N, C, H, W)   M * x + (1 - M) * G(z): the known pixels exactly, G's elsewhere
    generated (N, C, H, W)   G(z) of the kept restart
    z (N, latent_dim)        the kept code per image
    losses (steps + 1, N)    L of the kept restart at every step (row 0: the initial z; the
                             last row: the final z, by which the restart was chosen)
    labels (N,) or None      the label used per image (conditional models)
    restart_losses (C, N)    the final loss of every candidate (with halving, of a dropped one
                             its loss at the step it was dropped): C = restarts, or restarts x
                             num_classes when a conditional model searched the labels (candidate
                             block b used label b % num_classes)
    """
    completed: object
    generated: object
    z: object
    losses: object
    labels: object = None
    restart_losses: object = None


def _check_images(gan, images):
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[1:] != tuple(gan.image_shape):
        raise ValueError(f"inpaint: expected images of shape (N, {', '.join(map(str, gan.image_shape))}), "
                         f"got {shape}" + (" (add the channel axis: images[:, None])" if len(shape) == 3 else ""))
    if shape[0] == 0:
        raise ValueError("inpaint: no images given")
    if np.dtype(images.dtype).kind != "f":
        raise ValueError(f"inpaint: expected floating images in the generator's pixel range, got dtype "
                         f"{images.dtype} (scale them, e.g. Dataset.as_float(scale={gan.output!r}))")
    lo, hi = (-1.0, 1.0) if gan.output == "tanh" else (0.0, 1.0)
    xp = backend.array_module(images)
    mn, mx = float(xp.min(images)), float(xp.max(images))
    if not (np.isfinite(mn) and np.isfinite(mx)) or mn < lo - 1e-3 or mx > hi + 1e-3:
        raise ValueError(f"inpaint: images must lie in the generator's pixel range [{lo:g}, {hi:g}] "
                         f"({gan.output} output), got values in [{mn:g}, {mx:g}]")


def _check_labels(gan, labels, n):
    if labels is None:
        return None
    if not gan.conditional:
        raise ValueError("inpaint: labels were given but the model is not conditional")
    lab = backend.to_numpy(labels)
    if lab.dtype.kind not in "iu" or lab.shape != (n,):
        raise ValueError(f"inpaint: labels must be {n} integers, got shape {lab.shape} dtype {lab.dtype}")
    if n and (lab.min() < 0 or lab.max() >= gan.num_classes):
        raise ValueError(f"inpaint: labels must be in [0, {gan.num_classes}), got [{lab.min()}, {lab.max()}]")
    return lab.astype(np.int64)


def _progress_bar(total):
    import sys
    from tqdm import tqdm
    # On a terminal a live bar; in a log file (not a TTY) a line every 10% instead of every refresh.
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc="inpainting", unit="step", dynamic_ncols=True, mininterval=0.1 if tty else 5.0,
                miniters=None if tty else max(1, total // 10))


def inpaint(gan, images, mask, steps=500, lr=0.03, lam=0.1, restarts=8, perceptual="nonsaturating",
            weighted=True, labels=None, seed=0, clip="auto", betas=(0.9, 0.999), eps=1e-8,
            progress=False, halving=False) -> InpaintResult:
    """Complete the missing pixels (mask == 0) of ``images`` with the generator of ``gan``.

    images   (N, C, H, W) floats in the generator's pixel range ([-1, 1] tanh, [0, 1] sigmoid),
             (C, H, W) = gan.image_shape (grey or RGB)
    mask     known pixels = 1: (H, W) for all images or (N, 1, H, W) per image (see make_mask),
             the same for every channel; H and W those of gan.image_shape
    steps, lr, betas, eps   Adam on z; lam the weight of the perceptual (D) term
    restarts random initial codes per image, all optimised together; the lowest final L wins
    perceptual "nonsaturating" (-log D(G(z))) or "minimax" (log(1 - D(G(z))), the paper's)
    weighted the paper's 7x7 importance weights W (True) or W = 1 (False)
    labels   conditional models: (N,) the class of each image, or None to try every class
             (restarts x num_classes candidates per image; result.labels holds the winner)
    clip     "auto": [-1, 1] for uniform noise, none for normal; a number c: [-c, c]; None: none
    seed     the initial codes come from backend.random_generator(xp, seed, 0)
    progress a progress bar of the steps on stderr (tqdm, as training shows)
    halving  successive halving of the candidates: after steps/8, steps/4 and steps/2 each image
             keeps the better half of its candidates (by their loss at that step) and drops the rest,
             so 8 restarts cost about what 2.5 run to the end do (HALVING_AT). The winner is the
             survivor with the lowest final loss; restart_losses holds each candidate's last loss
             (the one it was dropped with). False: every candidate runs every step.
    """
    if perceptual not in PERCEPTUAL:
        raise ValueError(f"inpaint: perceptual must be one of {PERCEPTUAL}, got {perceptual!r}")
    if int(steps) < 0 or int(restarts) < 1:
        raise ValueError(f"inpaint: need steps >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}")
    steps, restarts = int(steps), int(restarts)
    if clip == "auto":
        clip = 1.0 if gan.noise == "uniform" else None
    _check_images(gan, images)
    xp, dtype = _model_xp(gan), gan.G.dtype
    n = len(images)
    m_host = _mask_nchw(mask, n, gan.image_shape[1:])
    w_host = context_weights(m_host) if weighted else m_host
    lab = _check_labels(gan, labels, n)

    # Candidates in blocks of N: candidate b * N + i is block b's start for image i. Block b
    # uses label b % K when the labels are unknown (every class, restarts times), else labels.
    per_image = restarts * gan.num_classes if gan.conditional and lab is None else restarts
    x = _on(xp, images, dtype)
    x_all = xp.concatenate([x] * per_image)
    w_all = _on(xp, np.concatenate([np.broadcast_to(w_host, (n,) + w_host.shape[1:])] * per_image), dtype)
    y_all = None
    if gan.conditional:
        y_all = xp.asarray(np.concatenate([np.full(n, b % gan.num_classes) if lab is None else lab
                                           for b in range(per_image)]))
    z = gan.sample_noise(per_image * n, backend.random_generator(xp, seed, 0))
    if clip is not None:
        z = xp.clip(z, -clip, clip)

    b1, b2 = betas
    m1, m2 = xp.zeros_like(z), xp.zeros_like(z)
    history = xp.zeros((steps + 1, per_image * n), dtype=dtype)
    last = xp.zeros(per_image * n, dtype=dtype)         # each candidate's latest loss
    alive = xp.arange(per_image * n)                    # the candidates still searched, in blocks of n
    cuts = {max(1, round(steps * f)) for f in HALVING_AT} if halving else set()
    bar = _progress_bar(steps) if progress else None
    with _eval_mode(gan):
        try:
            for t in range(1, steps + 1):
                loss, g, _ = inpaint_loss_and_grad(gan, z, x_all, w_all, y_all, lam, perceptual)
                history[t - 1, alive] = loss
                last[alive] = loss
                m1 *= b1
                m1 += (1 - b1) * g
                m2 *= b2
                m2 += (1 - b2) * (g * g)
                denom = xp.sqrt(m2 / (1 - b2 ** t))
                denom += eps
                z = z - (lr / (1 - b1 ** t)) * (m1 / denom)
                if clip is not None:
                    z = xp.clip(z, -clip, clip)
                k = len(alive) // n
                if t in cuts and k > 1:   # each image keeps the better half of its k candidates
                    order = xp.argsort(loss.reshape(k, n), axis=0, kind="stable")[:(k + 1) // 2]
                    keep = (order * n + xp.arange(n)).reshape(-1)          # positions, again in blocks of n
                    z, m1, m2, x_all, w_all, alive = z[keep], m1[keep], m2[keep], x_all[keep], w_all[keep], alive[keep]
                    y_all = None if y_all is None else y_all[keep]
                if bar is not None:
                    bar.update(1)
            loss, _, fake = inpaint_loss_and_grad(gan, z, x_all, w_all, y_all, lam, perceptual)
            history[steps, alive] = loss
            last[alive] = loss
        finally:
            if bar is not None:
                bar.close()

    best = xp.argmin(loss.reshape(-1, n), axis=0)                    # (N,): among the survivors
    pos = best * n + xp.arange(n)
    idx = alive[pos]                                                 # the winners' candidate numbers
    generated = fake[pos]
    m_dev = _on(xp, m_host, dtype)
    completed = xp.where(m_dev > 0, x, generated)
    return InpaintResult(completed=completed, generated=generated, z=z[pos], losses=history[:, idx],
                         labels=None if y_all is None else y_all[pos], restart_losses=last.reshape(per_image, n))


# ----------------------------------------------------------------------------- evaluation
def masked_images(images, mask, fill=None):
    """The images with their missing pixels set to ``fill`` (default: the range's minimum),
    for figures."""
    xp = backend.array_module(images)
    m = _on(xp, _mask_nchw(mask, len(images), images.shape[2:]), images.dtype)
    if fill is None:
        fill = float(xp.min(images)) if images.size else 0.0
    return xp.where(m > 0, images, xp.asarray(fill, dtype=images.dtype))


def completion_error(completed, original, mask, per_image=False):
    """Mean absolute error over the MISSING pixels only (mask == 0), in the images' units.

    Pooled over all missing pixels of all images (a float), or one value per image
    (per_image=True, a host array); every channel of a missing pixel counts. Images: (N, C, H, W),
    the same shape; mask (H, W) or (N, 1, H, W).
    """
    if tuple(completed.shape) != tuple(original.shape) or len(completed.shape) != 4:
        raise ValueError(f"completion_error: expected two (N, C, H, W) arrays of one shape, got "
                         f"{tuple(completed.shape)} and {tuple(original.shape)}")
    c = backend.to_numpy(completed).astype(np.float64)
    o = backend.to_numpy(original).astype(np.float64)
    missing = np.broadcast_to(1.0 - _mask_nchw(mask, len(c), c.shape[2:]), c.shape)
    if not missing.any():
        raise ValueError("completion_error: the mask has no missing pixels")
    err = np.abs(c - o) * missing
    if per_image:
        return err.reshape(len(c), -1).sum(1) / np.maximum(missing.reshape(len(c), -1).sum(1), 1)
    return float(err.sum() / missing.sum())


def mean_image_fill(train_images, images, mask):
    """The baseline: missing pixels of ``images`` replaced by the mean training image."""
    if len(train_images.shape) != 4 or tuple(train_images.shape[1:]) != tuple(images.shape[1:]):
        raise ValueError(f"mean_image_fill: train images {tuple(train_images.shape)} and images "
                         f"{tuple(images.shape)} must both be (N, C, H, W) of one image shape")
    xp = backend.array_module(images)
    mean = _on(xp, backend.to_numpy(train_images).astype(np.float64).mean(axis=0, keepdims=True), images.dtype)
    m = _on(xp, _mask_nchw(mask, len(images), images.shape[2:]), images.dtype)
    return xp.where(m > 0, images, mean)
