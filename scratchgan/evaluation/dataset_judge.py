"""A judge for any data set: trained on the data itself with scratchgan's own layers, cached by the
data's checksum, so that ``evaluate`` scores every run, not only MNIST and Fashion-MNIST ones.

    data with classes (a subfolder per class)   a classifier of those classes
    data without classes                         a rotation predictor (Gidaris et al. 2018): which of
                                                 0, 90, 180, 270 degrees was an image turned by?

The net is ``judge.build_judge`` sized for the images (``judge_arch``); its 128-d penultimate
features are where FID, KID, precision/recall and density/coverage are measured. A fixed share of
the data (``held_out_split``: 20%, at most 10,000 images, drawn from the seed) is never trained on:
it gives the judge's own held-out accuracy and is the real reference ``evaluate`` compares
generated samples with. Unlabelled judges also carry ``CLUSTERS`` k-means centroids of the
training images' features, so that generated samples get a cluster histogram where labelled ones
get a class histogram.

Cache: ``cache_dir("judges")/<key>.npz`` + ``.json`` (``judge.save_judge``: float32 arrays read
with ``allow_pickle=False``, sha256 recorded and checked, both files written atomically). The key
is a sha256 of the decoded images, labels, class names and the training settings, so any change to
the data or the settings makes (and uses) a new judge; a damaged or foreign file is warned about
and trained again.

    judge, split = judge_for_dataset(ds, progress=print)
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from .. import backend
from .judge import Judge, JudgeError, build_judge, load_judge, save_judge, train_judge

__all__ = ["judge_arch", "train_settings", "held_out_split", "data_key", "judge_for_dataset", "kmeans",
           "JUDGE_VERSION", "CLUSTERS"]

JUDGE_VERSION = 1          # part of the cache key: bump when training changes
HELD_OUT_SHARE = 0.2
HELD_OUT_MAX = 10000
TARGET_STEPS = 1200        # training steps aimed at, whatever the data's size (2..30 epochs)
CLUSTERS = 10


def judge_arch(image_shape, num_classes: int) -> dict:
    """``build_judge`` arguments for (C, S, S) images: 3x3 kernels, two stages (32, 64 channels) for
    28 and 32 pixels, three (16, 32, 64) for 64; a classifier of ``num_classes`` >= 2 classes, else
    a rotation predictor (4 outputs)."""
    c, s, w = (int(d) for d in image_shape)
    if c not in (1, 3) or s != w or s not in (28, 32, 64):
        raise ValueError(f"judge_arch: images must be 1 or 3 channels of 28, 32 or 64 square pixels, "
                         f"got {c}x{s}x{w}")
    task = "classes" if num_classes >= 2 else "rotation"
    return dict(channels=[32, 64] if s <= 32 else [16, 32, 64], kernel=3, hidden=128, dropout=0.3,
                image_shape=[c, s, w], task=task, num_classes=int(num_classes) if task == "classes" else 4)


def train_settings(n_train: int, seed: int = 0) -> dict:
    """``train_judge`` settings: batch 64, Adam 2e-3 cosine to 2e-5, shifts of 2 pixels, epochs
    so that about TARGET_STEPS steps are taken (at least 2 epochs, at most 30)."""
    steps_per_epoch = max(1, n_train // 64)
    epochs = int(min(30, max(2, math.ceil(TARGET_STEPS / steps_per_epoch))))
    return dict(epochs=epochs, batch_size=64, lr=2e-3, lr_final=2e-5, max_shift=2, seed=int(seed))


def held_out_split(n: int, seed: int = 0):
    """(train indices, held-out indices), both sorted: a seeded permutation's last
    min(20%, 10,000) items (at least 1 and at most n - 1) are held out."""
    if n < 2:
        raise ValueError(f"held_out_split: a judge needs at least 2 images, got {n}")
    n_held = min(max(1, int(round(n * HELD_OUT_SHARE))), HELD_OUT_MAX, n - 1)
    order = np.random.default_rng([seed, 4]).permutation(n)
    return np.sort(order[:n - n_held]), np.sort(order[n - n_held:])


def data_key(images, labels, classes, settings: dict) -> str:
    """sha256 of the uint8 images (with their shape), labels, class names and the judge's settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"shape": list(images.shape), "dtype": str(images.dtype), "classes": list(classes),
                         "settings": settings, "version": JUDGE_VERSION}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(np.asarray(labels, np.int64)).data)
    return h.hexdigest()


def kmeans(x, k: int, iters: int = 25, seed: int = 0) -> np.ndarray:
    """(k, d) centroids of (N, d) points by Lloyd's algorithm from k seeded distinct points
    (an empty cluster takes the point farthest from its centroid). Float64 on the host."""
    x = np.asarray(backend.to_numpy(x), np.float64)
    k = min(k, len(x))
    c = x[np.random.default_rng([seed, 5]).choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        d = (x * x).sum(1)[:, None] + (c * c).sum(1)[None] - 2 * x @ c.T
        assign = d.argmin(1)
        for j in range(k):                    # k is 10: a loop over clusters, not items
            members = assign == j
            c[j] = x[members].mean(0) if members.any() else x[d[np.arange(len(x)), assign].argmax()]
    return c


def cluster_of(centroids, features) -> np.ndarray:
    """(N,) index of each feature vector's nearest centroid."""
    f = np.asarray(backend.to_numpy(features), np.float64)
    c = np.asarray(centroids, np.float64)
    return ((f * f).sum(1)[:, None] + (c * c).sum(1)[None] - 2 * f @ c.T).argmin(1)


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar over training steps on stderr, or a no-op."""
    if not enabled:
        return None, (lambda: None)
    from tqdm import tqdm
    bar = tqdm(total=total, desc="training the judge", unit="step", dynamic_ncols=True, leave=False)

    def update(step):
        if step == total or step % 20 == 0:   # a refresh every step would cost more than a small step
            bar.n = step
            bar.refresh()
    return update, bar.close


def judge_for_dataset(ds, seed: int = 0, cache=True, progress=None, bar: bool = False, command: str = "",
                      retrain: bool = False):
    """(judge, split) for a ``Dataset`` (uint8 images, labels, classes): the cached judge of exactly
    this data and these settings, or a new one trained (and cached) now.

    split: {"train": indices, "held_out": indices} into ds (``held_out_split``).
    cache: True: ``cache_dir("judges")``; a folder: there; False: train, keep nothing.
    progress: called with one line of news (found in the cache, or training and its time);
    bar: a progress bar of the training steps on stderr. ``retrain``: ignore a cached judge.
    """
    from ..data.datasets import cache_dir
    say = progress or (lambda msg: None)
    images = ds.images if ds.images.ndim == 4 else ds.images[:, None]
    labelled = len(ds.classes) >= 2 and len(np.unique(ds.labels)) >= 2   # one class kept: nothing to classify
    arch = judge_arch(images.shape[1:], len(ds.classes) if labelled else 1)
    tr, held = held_out_split(len(images), seed)
    settings = dict(arch=arch, train=train_settings(len(tr), seed))
    key = data_key(images, ds.labels, ds.classes, settings)
    split = {"train": tr, "held_out": held}
    path = None
    if cache is not False and cache is not None:
        folder = cache_dir("judges") if cache is True else Path(cache).expanduser()
        path = folder / f"judge-{key[:24]}.npz"
        if not retrain and path.exists():
            try:
                judge = load_judge(path=path)
                if judge.info.get("data_key") != key:
                    raise JudgeError(f"it was made for other data (key {str(judge.info.get('data_key'))[:24]})")
                say(f"judge: {path} (made for this data; held-out {judge.task} accuracy "
                    f"{judge.info.get('held_out_accuracy')})")
                return judge.to(backend.name()), split
            except (JudgeError, OSError, ValueError, KeyError) as exc:
                warnings.warn(f"cached judge {path} cannot be used ({exc}); training it again", UserWarning,
                              stacklevel=2)
    say(f"judge: none cached for this data; training a {arch['task']} judge on {len(tr):,} of its "
        f"{len(images):,} images ({len(held):,} held out)")
    judge = build_judge(seed, **arch)
    judge.to(backend.name())
    x_train, y_train = images[tr], ds.labels[tr]
    total = settings["train"]["epochs"] * (len(tr) // settings["train"]["batch_size"])
    update, close = _progress_bar(total, bar)
    t0 = time.perf_counter()
    try:
        judge = train_judge(x_train, y_train, judge=judge, log=None, bar=update, **settings["train"])
    finally:
        close()
    if judge.task == "rotation":
        from .judge import rotation_accuracy
        acc = rotation_accuracy(judge, images[held], seed)
        feats = judge.features(x_train[np.random.default_rng([seed, 6]).permutation(len(tr))[:5000]])
        judge.extra["cluster_centroids"] = kmeans(feats, CLUSTERS, seed=seed).astype(np.float32)
    else:
        acc = judge.accuracy(images[held], ds.labels[held])
    seconds = time.perf_counter() - t0
    judge.classes = list(ds.classes) if labelled else ["0", "90", "180", "270"]
    judge.info.update(data_key=key, data=str(ds.source), n_images=int(len(images)), n_held_out=int(len(held)),
                      held_out_accuracy=round(float(acc), 4), train_seconds=round(seconds, 1),
                      command=command or "scratchgan.dataset_judge.judge_for_dataset", backend=backend.name())
    judge.info.pop("history", None)
    say(f"judge: trained in {seconds:.0f} s; held-out {judge.task} accuracy {acc:.4f}"
        + (f"; saved as {path}" if path is not None else ""))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_judge(judge, path)
            judge.info["sha256"] = json.loads(path.with_suffix(".json").read_text())["sha256"]
        except OSError as exc:
            warnings.warn(f"cannot cache the judge in {path.parent} ({exc.strerror or exc}); it is used "
                          "without being kept", UserWarning, stacklevel=2)
    judge.net.eval()
    return judge, split


def describe(judge: Judge) -> dict:
    """The judge's identity for evaluation.json."""
    keep = ("data_key", "held_out_accuracy", "n_images", "n_held_out", "train_seconds", "command", "sha256")
    return {"task": judge.task, "arch": judge.arch, **{k: judge.info.get(k) for k in keep}}
