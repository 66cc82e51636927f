"""The judge: a small LeNet-style classifier, built and trained with scratchgan's own
layers, that scores generated images (classifier score, FID in its feature space, class
histograms, label accuracy of a conditional GAN; see ``scratchgan.metrics``).

    Conv2D(1, C1, 5, padding=2) - ReLU - MaxPool2D(2)        28x28 -> 14x14
    Conv2D(C1, C2, 5, padding=2) - ReLU - MaxPool2D(2)       14x14 -> 7x7
    Flatten - Dense(C2*49, H) - ReLU                         the features (H-d)
    Dropout(p) - Dense(H, 10)                                the logits

That is the shipped MNIST / Fashion-MNIST judge. ``build_judge`` makes the same shape of net for
any image shape (C, S, S): one Conv-ReLU-MaxPool stage per entry of ``channels`` (kernel
``kernel``), so S / 2^stages must be whole. Its head predicts either classes (``task="classes"``)
or which of four rotations an image was given (``task="rotation"``, Gidaris et al. 2018: no
labels needed); ``scratchgan.dataset_judge`` trains and caches one for any data set.

The judge works in ONE pixel range, [0, 1] (white digit on black, as MNIST's uint8 / 255).
``to_judge_range(images, output)`` maps a generator's output ("tanh": [-1, 1] or "sigmoid":
[0, 1]) into it exactly; values outside are clipped.

Shipped weights: ``scratchgan/judges/<name>.npz`` (float32, read with ``allow_pickle=False``)
with ``<name>.json`` beside it, which holds the architecture, the sha256 of the .npz, the test
accuracy and the exact command that made it (``examples/train_judge.py``). ``load_judge``
refuses a file whose sha256 does not match.

    judge = load_judge("mnist")
    probs = judge.probs(to_judge_range(gan.generate(1000), gan.output))
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
import time
from pathlib import Path

import numpy as np

from .. import backend, losses
from ..layers import Conv2D, Dense, Dropout, Flatten, ReLU, Sequential
from ..layers.pooling import MaxPool2D
from ..init import parameter_budget
from ..optim import Adam
from ..files.safeio import UnsafeFileError, npz_members, read_bytes

__all__ = ["Judge", "JudgeError", "build_judge", "train_judge", "load_judge", "save_judge",
           "to_judge_range", "shift_augment", "rotate_batch", "rotation_accuracy", "JUDGES_DIR", "TASKS"]

JUDGES_DIR = Path(__file__).resolve().parent / "judges"


class JudgeError(ValueError):
    """Shipped judge weights are missing, corrupted or do not fit the architecture."""


def to_judge_range(images, output: str):
    """Generator pixels -> the judge's range [0, 1], on the images' own backend.

    output: "tanh" (x in [-1, 1] -> (x + 1) / 2) or "sigmoid" (x in [0, 1], unchanged);
    the result is clipped to [0, 1]. Both maps are exact on the data's grey levels:
    ``Dataset.as_float("tanh")`` mapped here equals ``as_float("sigmoid")`` to float rounding.
    """
    xp = backend.array_module(images)
    if output == "tanh":
        images = (images + 1) * 0.5
    elif output != "sigmoid":
        raise ValueError(f"to_judge_range: output must be 'tanh' or 'sigmoid', got {output!r}")
    return xp.clip(images, 0.0, 1.0)


class Judge:
    """A trained classifier: ``logits``, ``probs``, ``predict`` and ``features`` of (N, 1, 28, 28)
    images in [0, 1], evaluated in eval mode in batches (memory stays ~batch-sized).

    Inputs are moved to the judge's backend (``judge.to("cupy")`` to run it on a GPU).
    """

    def __init__(self, net: Sequential, arch: dict, classes=None, info=None, extra=None):
        self.net, self.arch = net, dict(arch)
        self.classes = list(classes) if classes is not None else [str(i) for i in range(arch["num_classes"])]
        self.info = dict(info or {})
        self.extra = dict(extra or {})   # host arrays saved beside the weights (e.g. cluster centroids)
        # Layers up to and including the ReLU after the hidden Dense: the feature extractor.
        self.n_feature_layers = len(net) - 2 if arch.get("dropout", 0) else len(net) - 1
        self.net.eval()

    @property
    def num_classes(self) -> int:
        return self.arch["num_classes"]

    @property
    def feature_dim(self) -> int:
        return self.arch["hidden"]

    @property
    def image_shape(self) -> tuple:
        return tuple(self.arch.get("image_shape", (1, 28, 28)))

    @property
    def task(self) -> str:
        """"classes" (the logits are classes) or "rotation" (0, 90, 180, 270 degrees)."""
        return self.arch.get("task", "classes")

    def to(self, backend_name: str) -> "Judge":
        self.net.to(backend_name)
        return self

    def _xp(self):
        return backend.array_module(*(p for _, p, _ in self.net.named_parameters()))

    def _run(self, x, batch, with_logits=True, with_features=False):
        xp = self._xp()
        x = xp.asarray(backend.to_numpy(x)) if xp is np else xp.asarray(x)
        if x.ndim == 3:
            x = x[:, None]
        shape = self.image_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"judge: expected images of shape (N, {', '.join(map(str, shape))}) in [0, 1], "
                             f"got {tuple(x.shape)}")
        dtype = self.net.dtype
        body = self.net.layers[:self.n_feature_layers]
        head = self.net.layers[self.n_feature_layers:] if with_logits else []
        mode = self.net.training
        self.net.eval()
        feats, logits = [], []
        try:
            for i in range(0, len(x), batch):
                h = _as_unit(x[i:i + batch], dtype)
                for layer in body:
                    h = layer(h)
                if with_features:
                    feats.append(h)
                for layer in head:
                    h = layer(h)
                if with_logits:
                    logits.append(h)
        finally:
            self.net.train(mode)

        def cat(parts, width):
            return xp.concatenate(parts) if parts else xp.zeros((0, width), dtype)
        return cat(feats, self.feature_dim), cat(logits, self.num_classes)

    def features_and_logits(self, x, batch: int = 200):
        """(features, logits) in one pass over the images."""
        return self._run(x, batch, with_logits=True, with_features=True)

    def logits(self, x, batch: int = 200):
        """(N, num_classes) logits, on the judge's backend."""
        return self._run(x, batch)[1]

    def features(self, x, batch: int = 200):
        """(N, hidden) penultimate activations (after the hidden ReLU), on the judge's backend."""
        return self._run(x, batch, with_logits=False, with_features=True)[0]

    def probs(self, x, batch: int = 200):
        """(N, num_classes) softmax probabilities."""
        return softmax(self.logits(x, batch))

    def predict(self, x, batch: int = 200):
        """(N,) predicted labels."""
        return self.logits(x, batch).argmax(axis=1)

    def accuracy(self, x, labels, batch: int = 200) -> float:
        pred = backend.to_numpy(self.predict(x, batch))
        return float(np.mean(pred == np.asarray(backend.to_numpy(labels))))

    def __repr__(self):
        return f"Judge({self.arch}, test_accuracy={self.info.get('test_accuracy')})"


def _as_unit(x, dtype):
    """A batch as ``dtype`` in [0, 1]: uint8 pixels are divided by 255 (so whole data sets can stay uint8)."""
    return x.astype(dtype) * (1.0 / 255.0) if x.dtype == np.uint8 else x.astype(dtype, copy=False)


def rotate_batch(images, rng):
    """Each (N, C, S, S) image turned by its own k * 90 degrees, k uniform in 0..3: (rotated, k).
    Vectorised: the four turns of the batch are stacked and one fancy index picks one per image."""
    xp = backend.array_module(images)
    k = rng.integers(0, 4, size=len(images))
    turns = xp.stack([xp.rot90(images, t, axes=(2, 3)) for t in range(4)])
    return turns[xp.asarray(k), xp.arange(len(images))], xp.asarray(k)


def softmax(logits):
    xp = backend.array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


DEFAULT_ARCH = dict(channels=[32, 64], hidden=128, dropout=0.3, num_classes=10)


TASKS = ("classes", "rotation")


def build_judge(seed: int = 0, channels=(32, 64), hidden: int = 128, dropout: float = 0.3,
                num_classes: int = 10, dtype=None, image_shape=(1, 28, 28), kernel: int = 5,
                task: str = "classes") -> Judge:
    """An untrained judge (weights drawn from ``seed``) with the architecture of the module doc:
    one Conv(kernel)-ReLU-MaxPool(2) stage per entry of ``channels`` for (C, S, S) images."""
    c_in, size, width = (int(d) for d in image_shape)
    stages = len(channels)
    if size != width or size % (1 << stages) or kernel % 2 == 0 or task not in TASKS:
        raise ValueError(f"build_judge: needs square images whose side divides by 2^{stages} ({len(channels)} "
                         f"stages), an odd kernel and a task in {TASKS}; got image_shape {tuple(image_shape)}, "
                         f"kernel {kernel}, task {task!r}")
    rng = np.random.default_rng(seed)
    init = "he_uniform"  # ReLU network
    layers, c = [], c_in
    for c_out in channels:
        layers += [Conv2D(c, int(c_out), kernel, padding=kernel // 2, init=init, rng=rng, dtype=dtype), ReLU(),
                   MaxPool2D(2)]
        c = int(c_out)
    side = size >> stages
    layers += [Flatten(), Dense(c * side * side, hidden, init=init, rng=rng, dtype=dtype), ReLU()]
    if dropout:
        layers.append(Dropout(dropout, seed=seed * 1000 + 7))
    layers.append(Dense(hidden, num_classes, init=init, rng=rng, dtype=dtype))
    arch = dict(channels=[int(ch) for ch in channels], hidden=int(hidden), dropout=float(dropout),
                num_classes=int(num_classes))
    # recorded only where they differ from the shipped judges', whose .json stay as they are
    if (tuple(int(d) for d in image_shape), kernel, task) != ((1, 28, 28), 5, "classes"):
        arch.update(image_shape=[c_in, size, width], kernel=int(kernel), task=task)
    return Judge(Sequential(*layers), arch)


def shift_augment(images, max_shift: int, rng):
    """Shift each (N, 1, H, W) image by its own random (dy, dx) in [-max_shift, max_shift]^2,
    filling with 0 (background). Vectorised: one strided view of the zero-padded batch holds
    every shifted copy; a fancy index picks one per image."""
    if max_shift <= 0:
        return images
    xp = backend.array_module(images)
    n, c, h, w = images.shape
    s = max_shift
    padded = xp.ascontiguousarray(xp.pad(images, ((0, 0), (0, 0), (s, s), (s, s))))
    sN, sC, sH, sW = padded.strides
    view = backend.as_strided(padded, (n, 2 * s + 1, 2 * s + 1, c, h, w), (sN, sH, sW, sC, sH, sW))
    dy = xp.asarray(rng.integers(0, 2 * s + 1, size=n))
    dx = xp.asarray(rng.integers(0, 2 * s + 1, size=n))
    return view[xp.arange(n), dy, dx]


def train_judge(images, labels, epochs: int = 12, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                max_shift: int = 2, lr_final: float = 2e-5, judge: Judge | None = None,
                test=None, eval_every: int = 1, log=print, bar=None, **arch) -> Judge:
    """Train a judge with softmax cross-entropy and Adam.

    images: (N, C, S, S) float in [0, 1] or uint8 (0..255, converted a batch at a time), host or
    device; labels: (N,) ints (ignored by a rotation judge, whose labels are the turns it draws:
    ``rotate_batch``). ``bar``: a callable given the number of steps done after each step.
    The learning rate follows a cosine from ``lr`` down to ``lr_final`` over all steps; every
    batch is shifted by up to ``max_shift`` pixels (``shift_augment``). ``test=(x, y)``
    reports test accuracy every ``eval_every`` epochs and after the last one (for the log
    only: nothing is selected on it, the final weights are returned).
    Returns the trained judge in eval mode with ``info`` (epochs, seconds, train settings).
    """
    judge = judge or build_judge(seed, **arch)
    net = judge.net
    xp = judge._xp()
    x_all = xp.asarray(backend.to_numpy(images) if xp is np else images)
    if x_all.dtype != np.uint8:
        x_all = x_all.astype(net.dtype, copy=False)
    rotation = judge.task == "rotation"
    y_all = None if rotation else xp.asarray(np.asarray(backend.to_numpy(labels), dtype=np.int64))
    n = len(x_all)
    steps_per_epoch = n // batch_size
    total = epochs * steps_per_epoch
    opt = Adam(net, lr=lr)
    aug_rng = np.random.default_rng([seed, 1])
    t0 = time.perf_counter()
    step = 0
    history = []
    for epoch in range(epochs):
        net.train()
        order = xp.asarray(np.random.default_rng([seed, 2, epoch]).permutation(n))
        run_loss, run_acc = 0.0, 0.0
        for b in range(steps_per_epoch):
            opt.lr = lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * step / total))
            idx = order[b * batch_size:(b + 1) * batch_size]
            x = shift_augment(_as_unit(x_all[idx], net.dtype), max_shift, aug_rng)
            if rotation:
                x, y = rotate_batch(x, aug_rng)
            else:
                y = y_all[idx]
            net.zero_grad()
            logits, cache = net.forward(x)
            loss, dlogits = losses.softmax_cross_entropy(logits, y)
            net.backward(dlogits, cache)
            opt.step()
            run_loss += float(loss)
            run_acc += float((logits.argmax(axis=1) == y).mean())
            step += 1
            if bar is not None:
                bar(step)
        net.eval()
        row = dict(epoch=epoch + 1, loss=run_loss / steps_per_epoch, train_acc=run_acc / steps_per_epoch,
                   lr=opt.lr, time_s=time.perf_counter() - t0)
        if test is not None and eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            row["test_acc"] = (rotation_accuracy(judge, test[0], seed) if rotation
                               else judge.accuracy(test[0], test[1]))
        history.append(row)
        if log:
            log("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    judge.info.update(epochs=epochs, batch_size=batch_size, lr=lr, lr_final=lr_final, seed=seed,
                      max_shift=max_shift, train_size=n, train_seconds=round(time.perf_counter() - t0, 1),
                      history=history)
    return judge


def rotation_accuracy(judge: Judge, images, seed: int = 0, batch: int = 200) -> float:
    """Share of images whose turn (one drawn per image from ``seed``) a rotation judge names."""
    xp = judge._xp()
    rng = np.random.default_rng([seed, 3])
    right = 0
    for i in range(0, len(images), batch):
        x, k = rotate_batch(_as_unit(xp.asarray(images[i:i + batch]), judge.net.dtype), rng)
        right += int((judge.predict(x, batch) == k).sum())
    return right / max(len(images), 1)


# --------------------------------------------------------------------------- files

def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


EXTRA = "extra/"   # .npz names of ``judge.extra`` arrays, apart from the weights


def save_judge(judge: Judge, path, **info) -> Path:
    """Write ``path`` (.npz, float32 weights and ``judge.extra``) and ``path.json`` (architecture,
    sha256, info), each atomically (temporary file, then rename), the .npz first."""
    from ..files.atomic import atomic_write_bytes
    path = Path(path).with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: backend.to_numpy(v).astype(np.float32) for k, v in judge.net.state_dict().items()
             if np.dtype(v.dtype).kind == "f"}
    state.update({EXTRA + k: np.asarray(backend.to_numpy(v), np.float32) for k, v in judge.extra.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **state)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    meta = dict(format="scratchgan-judge-1", arch=judge.arch, classes=judge.classes,
                sha256=hashlib.sha256(data).hexdigest(),
                **{k: v for k, v in {**judge.info, **info}.items() if k != "history"})
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
    return path


def load_judge(name: str = "mnist", path=None, verify: bool = True, dtype=np.float32) -> Judge:
    """The shipped judge ``name`` ("mnist", "fashion-mnist"), or the one at ``path`` (.npz).

    The .npz is read with ``allow_pickle=False`` after its sha256 has been checked against
    the .json beside it; a mismatch raises JudgeError. The judge is put on the selected backend.
    """
    shipped = sorted(p.stem for p in JUDGES_DIR.glob("*.npz"))
    if path is None and name not in shipped:   # a name, never a path (it may come from a run folder)
        raise JudgeError(f"no shipped judge {str(name)[:80]!r}; shipped judges: {shipped}. "
                         f"Train one with examples/train_judge.py and pass its path")
    path = Path(path) if path is not None else JUDGES_DIR / f"{name}.npz"
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise JudgeError(f"judge {str(path)!r} (or its .json) not found; shipped judges: {shipped}. "
                         f"Train one with examples/train_judge.py")
    try:   # a cached judge is a file in the user's cache: opened as any untrusted file (safeio)
        meta = json.loads(read_bytes(meta_path, "judge record", 16 << 20))
        data = read_bytes(path, "judge weights")
    except (ValueError, OSError) as exc:     # UnsafeFileError (a FIFO, ...), not JSON
        raise JudgeError(f"judge {path}: cannot read it ({exc})") from None
    try:
        arch = meta["arch"]
        build_args = dict(channels=list(arch["channels"]), hidden=int(arch["hidden"]), dropout=float(arch["dropout"]),
                          num_classes=int(arch["num_classes"]), image_shape=tuple(arch.get("image_shape", (1, 28, 28))),
                          kernel=int(arch.get("kernel", 5)), task=arch.get("task", "classes"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise JudgeError(f"judge record {meta_path} is not a judge's .json ({type(exc).__name__}: {exc})") from None
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.get("sha256"):
            raise JudgeError(f"judge weights {path} are corrupted or were replaced: sha256 {digest} does not "
                             f"match {meta.get('sha256')} recorded in {meta_path.name}. Reinstall scratchgan or "
                             f"retrain with: {meta.get('command', 'examples/train_judge.py')}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = npz_members(zf, "judge weights", path)     # headers against sizes, before numpy allocates
    except (UnsafeFileError, ValueError, zipfile.BadZipFile) as exc:
        raise JudgeError(f"judge weights {path} are not a plain-array file ({exc})") from None
    try:   # no larger than the weights the .npz carries (its .json is not covered by the checksum)
        with parameter_budget(sum(math.prod(shape) for _, shape, _ in members), "the judge its record describes"):
            judge = build_judge(0, dtype=dtype, **build_args)
    except ValueError as exc:
        raise JudgeError(f"judge record {meta_path}: {exc}") from None
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    judge.extra = {k[len(EXTRA):]: state.pop(k) for k in list(state) if k.startswith(EXTRA)}
    own = judge.net.state_dict()
    for k, v in own.items():  # non-float buffers (Dropout's counter) are not shipped
        if k not in state and np.dtype(v.dtype).kind != "f":
            state[k] = backend.to_numpy(v)
    try:
        judge.net.load_state_dict(state)
    except (KeyError, ValueError) as exc:
        raise JudgeError(f"judge weights {path} do not fit the architecture {arch}: {exc}") from None
    judge.classes = meta.get("classes", judge.classes)
    judge.info = {k: v for k, v in meta.items() if k not in ("arch", "classes", "format")}
    judge.net.eval()
    return judge
