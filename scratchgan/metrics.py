"""Sample-quality metrics for GANs, scored by the judge (``scratchgan.judge``), and
``evaluate_run``, which computes them all for a trained run next to real-data ceilings.

Statistics are computed in float64 on the host. Distances (k-NN, nearest neighbours) are
computed on the arrays' own backend (NumPy or CuPy) in chunks, so memory stays bounded.

    frechet_distance   ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
    fid                the Frechet distance between Gaussians fitted to two feature sets
                       (here in the judge's 128-d feature space: NOT comparable to the
                       Inception-v3 FIDs of papers, only to other numbers of this judge)
    classifier_score   the Inception Score with the judge's softmax:
                       exp(E_x KL(p(y|x) || p(y))), mean and std over splits; 10 at best
    class_histogram    share of samples per predicted class, the smallest share, KL(hist || uniform)
    label_accuracy     conditional GANs: does the judge read the label that was asked for?
    precision_recall_knn   improved precision and recall (Kynkaanniemi et al. 2019)
    nearest_neighbour_distances   memorisation: how close samples lie to training images
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from . import backend

__all__ = ["gaussian_stats", "frechet_distance", "fid", "classifier_score", "class_histogram",
           "label_accuracy", "pairwise_sq_distances", "kth_nn_radii", "precision_recall_knn",
           "nearest_neighbour_distances", "real_reference", "check_judgeable", "evaluate_run", "format_report",
           "EvaluationDataMissing"]


# --------------------------------------------------------------------------- Frechet distance

def _host64(a) -> np.ndarray:
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


def gaussian_stats(features):
    """Mean (d,) and covariance (d, d) of (N, d) features, float64 on the host (N - 1 normalised)."""
    f = _host64(features)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"gaussian_stats: expected (N >= 2, d) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrtm_psd(S):
    """The symmetric square root of a symmetric positive semi-definite matrix by
    eigendecomposition; eigenvalues below zero (rounding) are clipped to 0."""
    S = 0.5 * (S + S.T)
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):

        d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

    Computed stably in float64 without a general (non-symmetric) matrix square root: the
    symmetric square root S1^1/2 comes from an eigendecomposition of S1, and the trace of
    the square root of the symmetric PSD matrix M = S1^1/2 S2 S1^1/2 is the sum of the square
    roots of its eigenvalues. Negative eigenvalues (rounding, or rank-deficient covariances
    from fewer samples than dimensions) are clipped to 0 in both steps. The result is
    clipped at 0. (tr((S1 S2)^1/2), as written in the FID paper, equals the same trace.)
    """
    mu1, mu2 = np.asarray(mu1, np.float64).ravel(), np.asarray(mu2, np.float64).ravel()
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes do not fit: mu {mu1.shape}, {mu2.shape}; "
                         f"sigma {s1.shape}, {s2.shape}")
    r1 = _sqrtm_psd(s1)
    M = r1 @ (0.5 * (s2 + s2.T)) @ r1
    eig = np.linalg.eigvalsh(0.5 * (M + M.T))
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    d2 = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * tr_covmean
    return max(d2, 0.0)


def fid(features_a, features_b) -> float:
    """Frechet distance between Gaussians fitted to two (N, d) feature sets."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


# --------------------------------------------------------------------------- classifier statistics

def classifier_score(probs, splits: int = 10):
    """Inception Score with the judge: exp(E_x KL(p(y|x) || p(y))) on each of ``splits`` equal
    parts of the samples (p(y) is the part's mean prediction). Returns (mean, std) over the
    parts. 1 for constant predictions; at most the number of classes (confident and uniform)."""
    p = _host64(probs)
    if p.ndim != 2 or len(p) < splits:
        raise ValueError(f"classifier_score: expected (N >= splits, K) probabilities, got {p.shape}")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        # 0 * log 0 = 0: a zero probability contributes nothing
        logp = np.log(np.clip(part, 1e-300, None))
        logpy = np.log(np.clip(py, 1e-300, None))
        kl = (part * (logp - logpy)).sum(axis=1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def class_histogram(pred_labels, num_classes: int) -> dict:
    """Shares of the predicted classes: {"shares": [K], "min_share", "min_class", "kl_uniform"}.

    kl_uniform = KL(hist || uniform) = sum_k h_k log(K h_k) (0 log 0 = 0): 0 when every class
    is equally common, log K when all samples fall into one class.
    """
    pred = np.asarray(backend.to_numpy(pred_labels)).astype(np.int64).ravel()
    if pred.size == 0:
        raise ValueError("class_histogram: no labels")
    h = np.bincount(pred, minlength=num_classes)[:num_classes] / pred.size
    nz = h > 0
    kl = float((h[nz] * np.log(num_classes * h[nz])).sum())
    return {"shares": [float(v) for v in h], "min_share": float(h.min()), "min_class": int(h.argmin()),
            "kl_uniform": kl}


def label_accuracy(pred, target, num_classes: int | None = None) -> dict:
    """Share of items whose predicted label equals the target: overall and per class
    (target class), with the worst class. {"overall", "per_class", "worst", "worst_class"}."""
    pred = np.asarray(backend.to_numpy(pred)).astype(np.int64).ravel()
    target = np.asarray(backend.to_numpy(target)).astype(np.int64).ravel()
    if pred.shape != target.shape or pred.size == 0:
        raise ValueError(f"label_accuracy: pred {pred.shape} and target {target.shape} must be equal and non-empty")
    k = num_classes or int(target.max()) + 1
    per = [float(np.mean(pred[target == c] == c)) if np.any(target == c) else float("nan") for c in range(k)]
    valid = [(a, c) for c, a in enumerate(per) if not math.isnan(a)]
    worst, worst_c = min(valid)
    return {"overall": float(np.mean(pred == target)), "per_class": per, "worst": worst, "worst_class": worst_c}


# --------------------------------------------------------------------------- distances

def _as_float64(a):
    xp = backend.array_module(a)
    return xp.asarray(a, dtype=xp.float64).reshape(len(a), -1)


def pairwise_sq_distances(a, b, b_sq=None):
    """(len(a), len(b)) squared Euclidean distances, |a|^2 + |b|^2 - 2 a.b, clipped at 0."""
    xp = backend.array_module(a, b)
    a_sq = (a * a).sum(axis=1)[:, None]
    if b_sq is None:
        b_sq = (b * b).sum(axis=1)
    d = a_sq + b_sq[None, :] - 2.0 * (a @ b.T)
    return xp.maximum(d, 0.0, out=d)


def _chunks(n, chunk):
    return ((i, min(i + chunk, n)) for i in range(0, n, chunk))


def _smallest_k(d, k, xp):
    """Column indices (rows, k) of the k smallest entries of each row of d, in increasing order."""
    if k < d.shape[1]:
        part = xp.argpartition(d, k - 1, axis=1)[:, :k]
    else:
        part = xp.broadcast_to(xp.arange(d.shape[1]), d.shape).copy()
    order = xp.argsort(xp.take_along_axis(d, part, axis=1), axis=1)
    return xp.take_along_axis(part, order, axis=1)


def nearest_neighbour_distances(query, reference, k: int = 1, chunk: int = 500, ref_chunk: int = 10000):
    """Euclidean distances (N, k) from each query item to its k nearest reference items, and
    their indices (N, k), nearest first. Items are flattened (pixels or features); float64.

    Distances are computed for ``chunk`` queries against ``ref_chunk`` reference items at a time,
    keeping the k best so far, so memory stays ~ chunk * ref_chunk whatever the sizes (a 60,000-
    image training set is never copied to float64 at once). Arrays stay on their backend.
    """
    xp = backend.array_module(query, reference)
    nq, nr = len(query), len(reference)
    q = _as_float64(query)
    if q.shape[1] != int(np.prod(reference.shape[1:])):
        raise ValueError(f"nearest_neighbour_distances: query items have {q.shape[1]} values, reference "
                         f"{int(np.prod(reference.shape[1:]))}")
    if not 1 <= k <= nr:
        raise ValueError(f"nearest_neighbour_distances: k must be in [1, {nr}], got {k}")
    best_d = xp.full((nq, k), xp.inf)
    best_i = xp.zeros((nq, k), dtype=xp.int64)
    for a, b in _chunks(nr, ref_chunk):
        r = _as_float64(reference[a:b])
        r_sq = (r * r).sum(axis=1)
        for i, j in _chunks(nq, chunk):
            d = xp.concatenate([best_d[i:j], pairwise_sq_distances(q[i:j], r, r_sq)], axis=1)
            cand = xp.concatenate([best_i[i:j], xp.broadcast_to(xp.arange(a, b), (j - i, b - a))], axis=1)
            pick = _smallest_k(d, k, xp)
            best_d[i:j] = xp.take_along_axis(d, pick, axis=1)
            best_i[i:j] = xp.take_along_axis(cand, pick, axis=1)
    return xp.sqrt(best_d), best_i


def kth_nn_radii(features, k: int = 3, chunk: int = 500):
    """Distance from each item to its k-th nearest OTHER item of the same set (N,)."""
    f = _as_float64(features)
    if len(f) <= k:
        raise ValueError(f"kth_nn_radii: need more than k={k} items, got {len(f)}")
    d, _ = nearest_neighbour_distances(f, f, k=k + 1, chunk=chunk)  # the item itself is at distance 0
    return d[:, k]


def precision_recall_knn(real_feats, fake_feats, k: int = 3, chunk: int = 500, real_radii=None) -> dict:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its items with radius the distance to
    the item's k-th nearest neighbour in the same set. precision = share of fake items inside
    the real manifold (quality); recall = share of real items inside the fake manifold
    (coverage). Distances are computed chunk by chunk (memory ~ chunk * N). ``real_radii``:
    the real set's ``kth_nn_radii`` when already known (they do not depend on the fakes).
    """
    real, fake = _as_float64(real_feats), _as_float64(fake_feats)
    xp = backend.array_module(real, fake)
    r_real = kth_nn_radii(real, k, chunk) if real_radii is None else xp.asarray(real_radii, dtype=xp.float64)
    r_fake = kth_nn_radii(fake, k, chunk)
    real_sq = (real * real).sum(axis=1)
    fake_in = xp.zeros(len(fake), dtype=bool)
    real_in = xp.zeros(len(real), dtype=bool)
    for i, j in _chunks(len(fake), chunk):
        d = xp.sqrt(pairwise_sq_distances(fake[i:j], real, real_sq))        # (chunk, N_real)
        fake_in[i:j] = (d <= r_real[None, :]).any(axis=1)
        real_in |= (d <= r_fake[i:j, None]).any(axis=0)
    return {"precision": float(fake_in.mean()), "recall": float(real_in.mean()), "k": k}


# --------------------------------------------------------------------------- evaluate a run

class EvaluationDataMissing(FileNotFoundError):
    """The real test images needed for the reference numbers are not on this machine."""


_REAL_CACHE: dict = {}


def _load_real(dataset, data_dir, n_real, train_dataset, classes):
    """Test images (the reference) and training images (memorisation), both in [0, 1]."""
    from .data import load_dataset
    from .data.datasets import DataError
    test_name = "mnist" if dataset in ("mnist", "mnist-bundled") else dataset
    try:
        test = load_dataset(test_name, split="test", data_dir=data_dir, progress=False, classes=classes)
    except DataError as exc:
        raise EvaluationDataMissing(
            f"evaluate_run needs the official {test_name} test set (10,000 images) as the reference, and it "
            f"was not found: {str(exc).splitlines()[0]}\nGet it with `scratchgan train --dataset {test_name} "
            f"--download` (or download t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from the "
            f"official MNIST mirrors) and pass its folder as data_dir / --data-dir, or set SCRATCHGAN_DATA."
        ) from None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bundled-sample fallback is what the run trained on
        train = load_dataset(train_dataset, split="train", data_dir=data_dir, progress=False, classes=classes)
    n_test = len(test) if n_real is None else min(n_real, len(test))
    n_train = len(train) if n_real is None else min(n_real, len(train))
    # the first n of each split (the whole 10,000-image test set by default)
    return (test.as_float("sigmoid")[:n_test], test.labels[:n_test], train.as_float("sigmoid")[:n_train],
            train.labels[:n_train], test.source, train.source)


def _generate(gan, n, seed, batch, labels=None):
    """n images from G in batches (eval mode), noise drawn once from (seed, 0) as gan.generate."""
    xp = backend.array_module(*(p for _, p, _ in gan.G.named_parameters()))
    z = gan.sample_noise(n, backend.random_generator(xp, seed, 0))
    out = []
    for i, j in _chunks(n, batch):
        out.append(gan.generate(z=z[i:j], labels=None if labels is None else labels[i:j]))
    return xp.concatenate(out)


def _nn_grid(path, queries, train_images, nn_idx, nn_dist, rows=8, neighbours=5):
    """PNG: each row is a generated sample followed by its nearest training images. The first
    half of the rows are the samples closest to the training set, the rest the first samples."""
    from .images import save_grid
    dist = backend.to_numpy(nn_dist[:, 0])
    closest = np.argsort(dist)[:rows // 2]
    rest = [i for i in range(len(dist)) if i not in set(closest.tolist())][:rows - len(closest)]
    chosen = np.concatenate([closest, np.asarray(rest, dtype=np.int64)])
    idx = backend.to_numpy(nn_idx)
    q, t = backend.to_numpy(queries), backend.to_numpy(train_images)
    tiles = []
    for i in chosen:
        tiles.append(q[i])
        tiles.extend(t[idx[i, :neighbours]])
    save_grid(np.stack(tiles), path, nrow=1 + neighbours, output="sigmoid")
    return [int(i) for i in chosen]


def real_reference(dataset: str = "mnist", data_dir=None, judge=None, batch: int = 500, k: int = 3,
                   splits: int = 10, n_real: int | None = None, nn_queries: int = 2000, classes=None,
                   seed: int = 0, progress=None) -> dict:
    """The real-data ceilings and the noise floor that ``evaluate_run`` prints beside a GAN's numbers.

    With the official test images as the reference (the first ``n_real``; all 10,000 by default):
    ``summary`` holds the same metrics for real data (FID of the training images vs the test
    images: the floor a perfect generator could reach with this many samples; classifier score
    and class histogram of the test images; precision/recall of train vs test; the test images'
    median nearest-neighbour distance to the training set; the judge's test accuracy), and
    ``noise`` the FID and classifier score of uniform-noise images U[0, 1]. FID and precision/
    recall use as many training images as test images (the first ones), so that the real
    numbers have the sample size of a 10,000-sample GAN evaluation; the nearest-neighbour
    (memorisation) distances use the whole training set. The arrays needed to
    score generated samples are kept too. Cached in memory per arguments (one entry).
    """
    from .judge import load_judge
    say = progress or (lambda msg: None)
    judge_name = "mnist" if dataset in ("mnist", "mnist-bundled") else dataset
    judge = judge or load_judge(judge_name)
    judge.to(backend.name())
    key = (judge.info.get("sha256"), dataset, str(data_dir), n_real, str(classes), backend.name(), k, splits,
           nn_queries, seed, batch)
    if key in _REAL_CACHE:
        return _REAL_CACHE[key]
    say("reference: real test and training images")
    t0 = time.perf_counter()
    x_test, y_test, x_train, _, test_src, train_src = _load_real(dataset, data_dir, n_real, dataset, classes)
    x_test, x_train = backend.asarray(x_test), backend.asarray(x_train)
    f_test, logits_test = judge.features_and_logits(x_test, batch)
    f_train = judge.features(x_train, batch)
    p_test = _softmax_host(logits_test)
    pred_test = p_test.argmax(axis=1)
    noise = backend.random_generator(backend.xp(), seed + 12345, 0).random(x_test.shape, dtype=np.float32)
    f_noise, logits_noise = judge.features_and_logits(noise, batch)
    nq = min(nn_queries, len(x_test))
    nn_pix_test, _ = nearest_neighbour_distances(x_test[:nq], x_train, k=1)
    nn_feat_test, _ = nearest_neighbour_distances(f_test[:nq], f_train, k=1)
    stats_test = gaussian_stats(f_test)
    radii_test = kth_nn_radii(f_test, k)
    real = dict(
        x_train=x_train, f_test=f_test, f_train=f_train, stats_test=stats_test, radii_test=radii_test,
        test_source=test_src,
        train_source=train_src, n_test=len(x_test), n_train=len(x_train), n_nn=nq,
        summary={
            "fid": frechet_distance(*gaussian_stats(f_train[:len(x_test)]), *stats_test),
            "classifier_score": classifier_score(p_test, splits),
            "class_histogram": class_histogram(pred_test, judge.num_classes),
            "judge_accuracy": float(np.mean(pred_test == np.asarray(y_test))),
            **precision_recall_knn(f_test, f_train[:len(x_test)], k=k, real_radii=radii_test),
            "nn_pixel_median": float(np.median(backend.to_numpy(nn_pix_test))),
            "nn_feature_median": float(np.median(backend.to_numpy(nn_feat_test))),
        },
        noise={"fid": frechet_distance(*gaussian_stats(f_noise), *stats_test),
               "classifier_score": classifier_score(_softmax_host(logits_noise), splits)},
        seconds=round(time.perf_counter() - t0, 1),
    )
    _REAL_CACHE.clear()
    _REAL_CACHE[key] = real
    return real


def check_judgeable(gan, run_dir=None):
    """ValueError unless the model's images are 1x28x28, the only shape the shipped judges
    (MNIST and Fashion-MNIST classifiers) can score; raised before any work is done."""
    shape = tuple(int(d) for d in gan.image_shape)
    if shape != (1, 28, 28):
        where = f"{run_dir}: " if run_dir is not None else ""
        raise ValueError(f"{where}this run's images are {'x'.join(map(str, shape))} ({shape[0]} channel"
                         f"{'s' if shape[0] != 1 else ''}, {shape[1]}x{shape[2]} pixels); the shipped judges are for "
                         f"1x28x28 MNIST / Fashion-MNIST images only, so evaluate cannot score it")


def evaluate_run(run_dir, n: int = 10000, seed: int = 0, batch: int = 500, data_dir=None, judge=None,
                 checkpoint=None, k: int = 3, splits: int = 10, n_real: int | None = None,
                 nn_queries: int = 2000, write: bool = True, progress=None, use_ema: bool = True) -> dict:
    """Score a run's generator with the judge, next to real-data ceilings and a noise floor.
    The generator is the moving average of G's weights when the run kept one (``use_ema``).

    Generates ``n`` samples (a conditional model: n / num_classes per class, and the judge's
    label accuracy on them), scores them against the real test images (the official 10,000
    test images by default; ``n_real`` uses only the first n_real test and training images) and
    reports beside every number the same metric for real data:

        FID                gen vs test       | train vs test (the floor) | uniform noise vs test
        classifier score   gen               | test images               | noise images
        class histogram    gen predictions   | test predictions
        precision/recall   gen vs test       | train vs test
        memorisation       median NN distance, pixels and features, of gen -> train
                           vs test -> train (first ``nn_queries`` items)

    Writes RUN_DIR/evaluation.json and RUN_DIR/nearest_neighbours.png (each row: a generated
    sample, then its 5 nearest training images in pixel space). Runs on the run's backend
    (the selected one); statistics are taken on the host in float64. A run whose images are
    not 1x28x28 is refused at once with a ValueError (``check_judgeable``): the judges read
    only those.
    """
    from .judge import load_judge, to_judge_range
    from .training import load_run
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    gan, meta = load_run(run_dir, checkpoint, use_ema=use_ema)
    check_judgeable(gan, run_dir)
    if write:  # find out now, not after minutes of work, that the results cannot be written
        from .runfolder import check_writable
        check_writable(run_dir, "evaluate")
    train_cfg = meta.get("train", {})
    if not isinstance(train_cfg, dict):
        train_cfg = {}
    from .data.datasets import get_spec
    dataset = get_spec(train_cfg.get("dataset", "mnist")).name   # a registered name, never a path
    judge_name = "mnist" if dataset in ("mnist", "mnist-bundled") else dataset
    judge = judge or load_judge(judge_name)
    judge.to(backend.name())
    num_classes = judge.num_classes

    real = real_reference(dataset, data_dir=data_dir, judge=judge, batch=batch, k=k, splits=splits,
                          n_real=n_real, nn_queries=nn_queries, classes=train_cfg.get("classes"), progress=say)

    say(f"generating {n} samples")
    labels = None
    if gan.conditional:
        per = max(1, n // gan.num_classes)
        # Interleaved (0, 1, ..., 9, 0, 1, ...), not grouped: every split of the classifier score
        # and every prefix used for nearest-neighbour queries then holds all classes equally.
        labels = backend.xp().tile(backend.xp().arange(gan.num_classes), per)
        n = len(labels)
    images = to_judge_range(_generate(gan, n, seed, batch, labels), gan.output)
    f_gen, logits_gen = judge.features_and_logits(images, batch)
    p_gen = _softmax_host(logits_gen)
    pred_gen = p_gen.argmax(axis=1)
    say("metrics")
    nq = min(nn_queries, n)
    nn_pix, nn_idx = nearest_neighbour_distances(images[:nq], real["x_train"], k=5)
    nn_feat, _ = nearest_neighbour_distances(f_gen[:nq], real["f_train"], k=1)
    gen = {
        "fid": frechet_distance(*gaussian_stats(f_gen), *real["stats_test"]),
        "classifier_score": classifier_score(p_gen, min(splits, n)),
        "class_histogram": class_histogram(pred_gen, num_classes),
        **precision_recall_knn(real["f_test"], f_gen, k=k, real_radii=real["radii_test"]),
        "nn_pixel_median": float(np.median(backend.to_numpy(nn_pix[:, 0]))),
        "nn_feature_median": float(np.median(backend.to_numpy(nn_feat[:, 0]))),
    }
    if labels is not None:
        gen["label_accuracy"] = label_accuracy(pred_gen, backend.to_numpy(labels), gan.num_classes)
    ref = real["summary"]
    result = {
        "run_dir": str(run_dir), "step": meta.get("step"), "model": meta.get("model", {}).get("kind"),
        "weights": meta.get("weights"),
        "dataset": dataset, "n": int(n), "seed": seed, "backend": backend.name(),
        "judge": {"name": judge_name, "test_accuracy": judge.info.get("test_accuracy"),
                  "sha256": judge.info.get("sha256")},
        "reference": {"test": real["test_source"], "train": real["train_source"], "n_test": real["n_test"],
                      "n_train": real["n_train"], "nn_queries": real["n_nn"]},
        "generated": gen,
        "real": ref,
        "noise": real["noise"],
        "memorisation": {
            "pixel_ratio": gen["nn_pixel_median"] / ref["nn_pixel_median"] if ref["nn_pixel_median"] else None,
            "feature_ratio": gen["nn_feature_median"] / ref["nn_feature_median"] if ref["nn_feature_median"] else None,
            "note": "median distance of generated samples to their nearest training image divided by the "
                    "same for real test images: well below 1 suggests copying of training images",
        },
    }
    if write:
        grid = run_dir / "nearest_neighbours.png"
        result["nn_grid"] = {"path": str(grid), "rows": _nn_grid(grid, images[:nq], real["x_train"], nn_idx, nn_pix)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if write:
        from .atomic import atomic_write_bytes
        atomic_write_bytes(run_dir / "evaluation.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def _softmax_host(logits) -> np.ndarray:
    z = _host64(logits)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def format_report(result: dict) -> str:
    """A text table: each metric for the generated samples, real data and noise images."""
    g, r, nz = result["generated"], result["real"], result["noise"]

    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    def cs(v):
        return "-" if v is None else f"{v[0]:.3f} +- {v[1]:.3f}"

    rows = [
        ("FID (judge features, vs test)", f(g["fid"]), f(r["fid"]) + "  (train)", f(nz["fid"])),
        ("classifier score (max 10)", cs(g["classifier_score"]), cs(r["classifier_score"]),
         cs(nz["classifier_score"])),
        ("smallest class share", f(g["class_histogram"]["min_share"]), f(r["class_histogram"]["min_share"]), "-"),
        ("KL(class hist || uniform)", f(g["class_histogram"]["kl_uniform"], "{:.4f}"),
         f(r["class_histogram"]["kl_uniform"], "{:.4f}"), "-"),
        (f"precision (k={g.get('k', 3)})", f(g["precision"]), f(r["precision"]) + "  (train)", "-"),
        (f"recall (k={g.get('k', 3)})", f(g["recall"]), f(r["recall"]) + "  (train)", "-"),
        ("median NN dist to train, pixels", f(g["nn_pixel_median"]), f(r["nn_pixel_median"]) + "  (test)", "-"),
        ("median NN dist to train, features", f(g["nn_feature_median"]), f(r["nn_feature_median"]) + "  (test)", "-"),
    ]
    if "label_accuracy" in g:
        la = g["label_accuracy"]
        rows.append(("label accuracy (worst class)", f"{la['overall']:.3f} ({la['worst']:.3f}: {la['worst_class']})",
                     f(r["judge_accuracy"]) + "  (judge)", "-"))
    head = ("metric", f"generated (n={result['n']})", "real", "noise")
    w = [max(len(str(row[i])) for row in rows + [head]) for i in range(4)]
    line = "  ".join("-" * x for x in w)
    out = [f"{result.get('model')} run {result['run_dir']} at step {result.get('step')}, judge "
           f"'{result['judge']['name']}' (test accuracy {result['judge']['test_accuracy']}), reference: "
           f"{result['reference']['n_test']:,} test images",
           line, "  ".join(str(h).ljust(x) for h, x in zip(head, w)), line]
    out += ["  ".join(str(c).ljust(x) for c, x in zip(row, w)) for row in rows]
    out.append(line)
    m = result["memorisation"]
    if m.get("pixel_ratio") is not None:
        out.append(f"memorisation: NN-distance ratio generated/test = {m['pixel_ratio']:.3f} (pixels), "
                   f"{m['feature_ratio']:.3f} (features); < 1 means closer to training images than real test images are")
    if "nn_grid" in result:
        out.append(f"nearest-neighbour grid: {result['nn_grid']['path']}")
    return "\n".join(out)
