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
    density_coverage   density and coverage (Naeem et al. 2020): k-NN balls around REAL items only
    kid                kernel inception distance (Binkowski et al. 2018): the unbiased MMD^2 with
                       the kernel (x.y / d + 1)^3, mean and std over random subsets
    bootstrap_std      the spread of a mean (or of FID) over resamples: the error bars
    nearest_neighbour_distances   memorisation: how close samples lie to training images

Every run is scored: MNIST / Fashion-MNIST runs by the shipped judges against the official test
set, every other run (image folders, other data sets) by a judge trained on the run's own data
(``scratchgan.dataset_judge``) against the 20% of that data the judge never saw.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from .. import backend

__all__ = ["gaussian_stats", "frechet_distance", "fid", "classifier_score", "class_histogram",
           "label_accuracy", "pairwise_sq_distances", "kth_nn_radii", "precision_recall_knn",
           "nearest_neighbour_distances", "real_reference", "check_judgeable", "evaluate_run", "format_report",
           "EvaluationDataMissing", "mmd2_unbiased", "kid", "density_coverage", "bootstrap_std", "fid_bootstrap"]


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


def fid_bootstrap(features, ref_stats, resamples: int = 20, seed: int = 0):
    """(FID, std of FID over ``resamples`` bootstrap resamples of ``features``) against fixed
    reference statistics (mu, sigma): how much the number moves with the draw of the samples."""
    f = _host64(features)
    value = frechet_distance(*gaussian_stats(f), *ref_stats)
    rng = np.random.default_rng([seed, 7])
    draws = [frechet_distance(*gaussian_stats(f[rng.integers(0, len(f), len(f))]), *ref_stats)
             for _ in range(resamples)]
    return value, float(np.std(draws, ddof=1)) if resamples > 1 else 0.0


def bootstrap_std(values, resamples: int = 200, seed: int = 0) -> float:
    """Standard deviation of the mean of ``values`` (N,) over bootstrap resamples (vectorised)."""
    v = np.asarray(backend.to_numpy(values), np.float64).ravel()
    if v.size < 2:
        return 0.0
    rng = np.random.default_rng([seed, 8])
    means = np.stack([v[rng.integers(0, v.size, v.size)].mean() for _ in range(resamples)]) \
        if v.size * resamples > 5e7 else v[rng.integers(0, v.size, (resamples, v.size))].mean(axis=1)
    return float(np.std(means, ddof=1))


# --------------------------------------------------------------------------- kernel distance

def _poly_kernel(a, b, d):
    return (a @ b.T / d + 1.0) ** 3


def mmd2_unbiased(x, y) -> float:
    """The unbiased estimator of MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3:

        1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j)

    (Binkowski et al. 2018, eq. 3, the kernel of KID). Float64 on the host."""
    x, y = _host64(x), _host64(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise ValueError(f"mmd2_unbiased: expected (m >= 2, d) and (n >= 2, d) features, got {x.shape}, {y.shape}")
    d, m, n = x.shape[1], len(x), len(y)
    kxx, kyy, kxy = _poly_kernel(x, x, d), _poly_kernel(y, y, d), _poly_kernel(x, y, d)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(features_a, features_b, subsets: int = 100, subset_size: int = 1000, seed: int = 0):
    """Kernel Inception Distance: ``mmd2_unbiased`` on ``subsets`` random subsets of
    m = min(subset_size, N_a // 2, N_b // 2) items of each set (drawn without replacement: at most
    half of a set, so that the subsets differ and their std means something); (mean, std) over
    them. Unbiased at any sample size, so small runs compare fairly; can be slightly negative."""
    a, b = _host64(features_a), _host64(features_b)
    m = max(2, min(subset_size, len(a) // 2, len(b) // 2))
    rng = np.random.default_rng([seed, 9])
    vals = [mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
            for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if subsets > 1 else 0.0


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


def class_histogram(pred_labels, num_classes: int, reference=None) -> dict:
    """Shares of the predicted classes: {"shares": [K], "min_share", "min_class", "kl_uniform"}
    (+ "tv_reference" when ``reference`` shares are given).

    kl_uniform = KL(hist || uniform) = sum_k h_k log(K h_k) (0 log 0 = 0): 0 when every class
    is equally common, log K when all samples fall into one class. tv_reference = 1/2 sum_k
    |h_k - r_k|, the share of samples that would have to change class to match the reference's
    histogram (unbalanced classes, or clusters): 0 to 1.
    """
    pred = np.asarray(backend.to_numpy(pred_labels)).astype(np.int64).ravel()
    if pred.size == 0:
        raise ValueError("class_histogram: no labels")
    h = np.bincount(pred, minlength=num_classes)[:num_classes] / pred.size
    nz = h > 0
    kl = float((h[nz] * np.log(num_classes * h[nz])).sum())
    out = {"shares": [float(v) for v in h], "min_share": float(h.min()), "min_class": int(h.argmin()),
           "kl_uniform": kl}
    if reference is not None:
        out["tv_reference"] = float(0.5 * np.abs(h - np.asarray(reference, np.float64)).sum())
    return out


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


def _ball_counts(real, fake, radii_real, radii_fake=None, chunk: int = 500, radii_real2=None):
    """One chunked pass over the (fake, real) distances: per fake item the number of real balls
    (radius ``radii_real``) it lies in, per real item whether it lies in any fake ball
    (``radii_fake``), and whether any fake lies in its own ball. ``radii_real2``: the counts and
    "covered" flags for a second set of real radii too, from the same distances (appended)."""
    xp = backend.array_module(real, fake)
    real_sq = (real * real).sum(axis=1)
    radii = [radii_real] + ([radii_real2] if radii_real2 is not None else [])
    counts = [xp.zeros(len(fake), dtype=xp.int64) for _ in radii]
    covered = [xp.zeros(len(real), dtype=bool) for _ in radii]
    in_fake = xp.zeros(len(real), dtype=bool)
    for i, j in _chunks(len(fake), chunk):
        d = xp.sqrt(pairwise_sq_distances(fake[i:j], real, real_sq))        # (chunk, N_real)
        for r, c, cov in zip(radii, counts, covered):
            inside = d <= r[None, :]
            c[i:j] = inside.sum(axis=1)
            cov |= inside.any(axis=0)
        if radii_fake is not None:
            in_fake |= (d <= radii_fake[i:j, None]).any(axis=0)
    out = (counts[0], in_fake, covered[0])
    return out + (counts[1], covered[1]) if radii_real2 is not None else out


def density_coverage(real_feats, fake_feats, k: int = 5, chunk: int = 500, real_radii=None,
                     per_item: bool = False) -> dict:
    """Density and coverage (Naeem et al. 2020), with B(x, r) the ball around real item x_i of
    radius r_i = distance to its k-th nearest real neighbour:

        density  = 1/(k M) sum_j sum_i 1[y_j in B(x_i, r_i)]     (1 when fakes are as dense as reals)
        coverage = 1/N sum_i 1[exists j: y_j in B(x_i, r_i)]     (share of real balls holding a fake)

    Only real balls are used, so a few outlying fakes cannot inflate either (unlike recall).
    ``per_item``: also the per-fake counts and per-real indicators (for error bars)."""
    real, fake = _as_float64(real_feats), _as_float64(fake_feats)
    xp = backend.array_module(real, fake)
    r_real = kth_nn_radii(real, k, chunk) if real_radii is None else xp.asarray(real_radii, dtype=xp.float64)
    counts, _, covered = _ball_counts(real, fake, r_real, None, chunk)
    out = {"density": float(counts.mean()) / k, "coverage": float(covered.mean()), "k": k}
    if per_item:
        out.update(counts=backend.to_numpy(counts), covered=backend.to_numpy(covered))
    return out


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
    counts, real_in, _ = _ball_counts(real, fake, r_real, r_fake, chunk)
    return {"precision": float((counts > 0).mean()), "recall": float(real_in.mean()), "k": k}


# --------------------------------------------------------------------------- evaluate a run

class EvaluationDataMissing(FileNotFoundError):
    """The real test images needed for the reference numbers are not on this machine."""


_REAL_CACHE: dict = {}


def _load_real(dataset, data_dir, n_real, train_dataset, classes):
    """Test images (the reference) and training images (memorisation), both in [0, 1]."""
    from ..data import load_dataset
    from ..data.datasets import DataError
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
    from ..files.images import save_grid
    dist = backend.to_numpy(nn_dist[:, 0])
    closest = np.argsort(dist)[:rows // 2]
    rest = [i for i in range(len(dist)) if i not in set(closest.tolist())][:rows - len(closest)]
    chosen = np.concatenate([closest, np.asarray(rest, dtype=np.int64)])
    idx = backend.to_numpy(nn_idx)
    q, t = backend.to_numpy(queries), backend.to_numpy(train_images)
    t = t.astype(np.float32) / 255 if t.dtype == np.uint8 else t
    tiles = []
    for i in chosen:
        tiles.append(q[i])
        tiles.extend(t[idx[i, :neighbours]].reshape(-1, *q.shape[1:]))
    save_grid(np.stack(tiles), path, nrow=1 + neighbours, output="sigmoid")
    return [int(i) for i in chosen]


K_DC = 5            # density/coverage: k of the real balls (Naeem et al. 2020 use 5)
FID_RESAMPLES = 20  # bootstrap resamples for FID's error bar
MIN_REFERENCE = 10  # real reference images needed for k-NN metrics and KID


def _unit(x):
    """uint8 pixels -> float32 in [0, 1]; float images unchanged (on their backend)."""
    return x.astype(np.float32) * np.float32(1 / 255) if x.dtype == np.uint8 else x


def _pixel_nn(query, train, k):
    """Nearest training images in pixel space ([0, 1] units); uint8 training images stay uint8
    (read a chunk at a time by nearest_neighbour_distances), the queries are scaled to match."""
    if train.dtype == np.uint8:
        d, i = nearest_neighbour_distances(_unit(query) * 255.0, train, k=k)
        return d / 255.0, i
    return nearest_neighbour_distances(_unit(query), train, k=k)


def _distance_scores(f, real, k: int, seed: int) -> dict:
    """FID (with its bootstrap std), KID (mean, std over subsets), precision/recall and
    density/coverage (with bootstrap stds) of one feature set against the real reference."""
    fid_v, fid_s = fid_bootstrap(f, real["stats_test"], FID_RESAMPLES, seed)
    f64 = _as_float64(f)
    ref = real["f_test64"]
    counts_pr, real_in, _, counts_dc, covered = _ball_counts(ref, f64, real["radii_pr"], kth_nn_radii(f64, k),
                                                             radii_real2=real["radii_dc"])
    fake_in = backend.to_numpy(counts_pr > 0)
    real_in, counts_dc, covered = (backend.to_numpy(a) for a in (real_in, counts_dc, covered))
    return {
        "fid": fid_v, "fid_std": fid_s,
        "kid": list(kid(f, real["f_test"], seed=seed)),
        "precision": float(fake_in.mean()), "precision_std": bootstrap_std(fake_in, seed=seed),
        "recall": float(real_in.mean()), "recall_std": bootstrap_std(real_in, seed=seed),
        "density": float(counts_dc.mean()) / K_DC, "density_std": bootstrap_std(counts_dc, seed=seed) / K_DC,
        "coverage": float(covered.mean()), "coverage_std": bootstrap_std(covered, seed=seed),
        "k": k, "k_dc": K_DC,
    }


def _label_scores(f, logits, judge, real, splits: int) -> dict:
    """A classifier judge: classifier score and the histogram of predicted classes. A rotation
    judge: the histogram of the nearest k-means cluster of the features (its unlabelled analogue).
    Both histograms carry tv_reference, the total variation distance to the real reference's."""
    ref_hist = real.get("hist_test")
    if judge.task == "classes":
        p = _softmax_host(logits)
        return {"classifier_score": classifier_score(p, min(splits, len(p))),
                "class_histogram": class_histogram(p.argmax(axis=1), judge.num_classes, ref_hist)}
    from .dataset_judge import cluster_of
    centroids = judge.extra["cluster_centroids"]
    return {"cluster_histogram": class_histogram(cluster_of(centroids, f), len(centroids), ref_hist)}


def _reference(judge, x_test, y_test, x_train, *, batch, k, splits, nn_queries, seed, say) -> dict:
    """Features, radii and the real and noise numbers of a reference (x_test) and training set."""
    n_test = len(x_test)
    if n_test < MIN_REFERENCE:
        raise ValueError(f"evaluate: the real reference holds {n_test} images; at least {MIN_REFERENCE} are needed "
                         f"(a data set of at least {MIN_REFERENCE * 5} images, of which 20% are held out)")
    say(f"reference: features of {n_test:,} real reference and {len(x_train):,} training images")
    f_test, logits_test = judge.features_and_logits(x_test, batch)
    f_train = judge.features(x_train, batch)
    f_test64 = _as_float64(f_test)
    d, _ = nearest_neighbour_distances(f_test64, f_test64, k=min(max(k, K_DC) + 1, n_test))
    real = dict(x_train=x_train, f_test=f_test, f_train=f_train, f_test64=f_test64, stats_test=gaussian_stats(f_test),
                radii_pr=d[:, min(k, n_test - 1)], radii_dc=d[:, min(K_DC, n_test - 1)])
    test_labels = _label_scores(f_test, logits_test, judge, real, splits)
    hist = test_labels.get("class_histogram") or test_labels["cluster_histogram"]
    real["hist_test"] = hist["shares"]
    test_labels = _label_scores(f_test, logits_test, judge, real, splits)   # now with its own tv_reference (0)
    if judge.task == "classes":
        accuracy = float(np.mean(_host64(logits_test).argmax(axis=1) == np.asarray(backend.to_numpy(y_test))))
    else:
        from .judge import rotation_accuracy
        accuracy = rotation_accuracy(judge, x_test, seed)
    noise = backend.random_generator(backend.xp(), seed + 12345, 0).random(x_test.shape, dtype=np.float32)
    f_noise, logits_noise = judge.features_and_logits(noise, batch)
    nq = min(nn_queries, n_test)
    nn_pix_test, _ = _pixel_nn(x_test[:nq], x_train, 1)
    nn_feat_test, _ = nearest_neighbour_distances(f_test[:nq], f_train, k=1)
    say("reference: real and noise numbers")
    real.update(
        n_test=n_test, n_train=len(x_train), n_nn=nq,
        summary={
            **_distance_scores(f_train[:n_test], real, k, seed),
            **test_labels,
            "judge_accuracy": accuracy,
            "nn_pixel_median": float(np.median(backend.to_numpy(nn_pix_test))),
            "nn_feature_median": float(np.median(backend.to_numpy(nn_feat_test))),
        },
        noise={**_distance_scores(f_noise, real, k, seed), **_label_scores(f_noise, logits_noise, judge, real, splits)},
    )
    return real


def real_reference(dataset: str = "mnist", data_dir=None, judge=None, batch: int = 500, k: int = 3,
                   splits: int = 10, n_real: int | None = None, nn_queries: int = 2000, classes=None,
                   seed: int = 0, progress=None) -> dict:
    """The real-data floor and the noise ceiling that ``evaluate_run`` prints beside an MNIST or
    Fashion-MNIST GAN's numbers, with the shipped judge.

    With the official test images as the reference (the first ``n_real``; all 10,000 by default):
    ``summary`` holds the same metrics for real data (FID, KID, precision/recall and density/
    coverage of the training images vs the test images: the floor a perfect generator could reach
    with this many samples; classifier score and class histogram of the test images; the test
    images' median nearest-neighbour distance to the training set; the judge's test accuracy), and
    ``noise`` the same for uniform-noise images U[0, 1]. The distance metrics use as many training
    images as test images (the first ones), so that the real numbers have the sample size of a
    10,000-sample GAN evaluation; the nearest-neighbour (memorisation) distances use the whole
    training set. The arrays needed to score generated samples are kept too. Cached in memory per
    arguments (one entry).
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
    real = _reference(judge, x_test, y_test, x_train, batch=batch, k=k, splits=splits, nn_queries=nn_queries,
                      seed=seed, say=say)
    real.update(test_source=test_src, train_source=train_src, seconds=round(time.perf_counter() - t0, 1))
    _REAL_CACHE.clear()
    _REAL_CACHE[key] = real
    return real


SHIPPED_JUDGES = {"mnist": "mnist", "mnist-bundled": "mnist", "fashion-mnist": "fashion-mnist"}
FOLDER = "folder:"


def check_judgeable(gan, run_dir=None):
    """ValueError unless the model's images are grey or RGB squares of 28, 32 or 64 pixels, the
    shapes a judge can be made for (every model scratchgan trains); raised before any work."""
    shape = tuple(int(d) for d in gan.image_shape)
    if shape[0] not in (1, 3) or shape[1] != shape[2] or shape[1] not in (28, 32, 64):
        where = f"{run_dir}: " if run_dir is not None else ""
        raise ValueError(f"{where}this run's images are {'x'.join(map(str, shape))}; a judge can be made for "
                         "1 or 3 channels of 28, 32 or 64 square pixels only")


def _run_data(dataset: str, gan, classes, data_dir, progress: bool):
    """The run's training data, as it trained on it: an image folder at the model's channels and
    size, or a registered data set's training split; only the classes it kept."""
    import warnings
    from ..data import image_folder, load_dataset
    if dataset.startswith(FOLDER):
        c, size, _ = (int(d) for d in gan.image_shape)
        path = dataset[len(FOLDER):]
        ds = image_folder(Path(path).expanduser(), channels=c, image_size=size, skip_bad=True, progress=progress)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = load_dataset(dataset, split="train", data_dir=data_dir, progress=False)
    if tuple(ds.image_shape) != tuple(int(d) for d in gan.image_shape):
        raise ValueError(f"{dataset}: its images are {'x'.join(map(str, ds.image_shape))}, the run's model makes "
                         f"{'x'.join(map(str, gan.image_shape))}")
    return ds.filter_classes(classes) if classes is not None else ds


def dataset_reference(ds, judge, split, *, batch: int = 500, k: int = 3, splits: int = 10, nn_queries: int = 2000,
                      seed: int = 0, progress=None) -> dict:
    """The floor and ceiling for a run on ``ds`` scored by a judge trained on it
    (``dataset_judge.judge_for_dataset``): the reference is the held-out part of the data, the
    training images are the rest."""
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    images = ds.images if ds.images.ndim == 4 else ds.images[:, None]
    x_test = backend.asarray(images[split["held_out"]])
    x_train = backend.asarray(images[split["train"]])
    real = _reference(judge, x_test, ds.labels[split["held_out"]], x_train, batch=batch, k=k, splits=splits,
                      nn_queries=nn_queries, seed=seed, say=say)
    real.update(test_source=f"the {len(x_test):,} images of {ds.source} held out from the judge's training",
                train_source=f"the other {len(x_train):,} images of {ds.source}",
                seconds=round(time.perf_counter() - t0, 1))
    return real


def evaluate_run(run_dir, n: int = 10000, seed: int = 0, batch: int = 500, data_dir=None, judge=None,
                 checkpoint=None, k: int = 3, splits: int = 10, n_real: int | None = None,
                 nn_queries: int = 2000, write: bool = True, progress=None, use_ema: bool = True,
                 dataset: str | None = None, judge_cache=True) -> dict:
    """Score a run's generator with a judge, next to the real-data floor and the noise ceiling.
    The generator is the moving average of G's weights when the run kept one (``use_ema``).

    The judge: for MNIST and Fashion-MNIST runs the shipped one, with the official test set as
    the reference (``n_real`` uses only its first n_real test and training images); for any other
    run (an image folder, another data set) one trained on the run's own training data, made on
    first use and cached (``dataset_judge.judge_for_dataset``), with the 20% of the data it never
    saw as the reference. ``dataset`` overrides the run's recorded data (e.g. folder:PATH when the
    folder has moved); ``judge_cache`` is passed on (True, a folder, or False).

    Generates ``n`` samples (a conditional model: n / num_classes per class, and the judge's
    label accuracy on them), scores them against the real reference and reports beside every
    number the same metric for real data and for uniform noise:

        FID, KID           gen vs reference  | train vs reference (the floor) | noise (the ceiling)
        precision/recall,  gen vs reference  | train vs reference             | noise
          density/coverage
        classifier score,  gen               | reference images               | noise
          class histogram  (unlabelled data: the histogram of k-means clusters of the judge's features)
        memorisation       median NN distance, pixels and features, of gen -> train
                           vs reference -> train (first ``nn_queries`` items)

    Error bars: FID's std over bootstrap resamples of the samples, KID's std over subsets, the
    bootstrap std of precision, recall, density and coverage (``*_std``).
    Writes RUN_DIR/evaluation.json and RUN_DIR/nearest_neighbours.png (each row: a generated
    sample, then its 5 nearest training images in pixel space). Runs on the run's backend
    (the selected one); statistics are taken on the host in float64.
    """
    from .judge import load_judge, to_judge_range
    from ..training import load_run
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    gan, meta = load_run(run_dir, checkpoint, use_ema=use_ema)
    check_judgeable(gan, run_dir)
    if write:  # find out now, not after minutes of work, that the results cannot be written
        from ..training.runfolder import check_writable
        check_writable(run_dir, "evaluate")
    train_cfg = meta.get("train", {})
    if not isinstance(train_cfg, dict):
        train_cfg = {}
    from ..data.datasets import get_spec
    recorded = dataset if dataset is not None else train_cfg.get("dataset", "mnist")
    if not isinstance(recorded, str) or not recorded:
        raise ValueError(f"{run_dir}: the run records no data set; pass one (--dataset)")
    if recorded.startswith(FOLDER):
        dataset = FOLDER + recorded[len(FOLDER):]
    else:
        dataset = get_spec(recorded).name   # a registered name, never a path
    classes = train_cfg.get("classes")
    shipped = SHIPPED_JUDGES.get(dataset) if tuple(gan.image_shape) == (1, 28, 28) else None
    if shipped is not None or judge is not None and dataset in SHIPPED_JUDGES:
        judge_name = shipped
        judge = judge or load_judge(judge_name)
        judge.to(backend.name())
        real = real_reference(dataset, data_dir=data_dir, judge=judge, batch=batch, k=k, splits=splits,
                              n_real=n_real, nn_queries=nn_queries, classes=classes, progress=say)
        judge_info = {"name": judge_name, "test_accuracy": judge.info.get("test_accuracy"),
                      "sha256": judge.info.get("sha256"), "task": "classes"}
    else:
        from .dataset_judge import describe, judge_for_dataset
        ds = _run_data(dataset, gan, classes, data_dir, progress is not None)
        c, size, _ = (int(d) for d in gan.image_shape)
        command = f"scratchgan judge train --dataset {dataset} --channels {c} --image-size {size}"
        if judge is None:
            judge, split = judge_for_dataset(ds, seed=0, cache=judge_cache, progress=say, bar=progress is not None,
                                             command=command)
        else:
            from .dataset_judge import held_out_split
            tr, held = held_out_split(len(ds), 0)
            split = {"train": tr, "held_out": held}
        judge.to(backend.name())
        real = dataset_reference(ds, judge, split, batch=batch, k=k, splits=splits, nn_queries=nn_queries,
                                 progress=say)
        judge_name = "trained on the run's data"
        judge_info = {"name": judge_name, "test_accuracy": judge.info.get("held_out_accuracy"), **describe(judge)}

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
    say("metrics")
    nq = min(nn_queries, n)
    nn_pix, nn_idx = _pixel_nn(images[:nq], real["x_train"], 5)
    nn_feat, _ = nearest_neighbour_distances(f_gen[:nq], real["f_train"], k=1)
    gen = {
        **_distance_scores(f_gen, real, k, seed),
        **_label_scores(f_gen, logits_gen, judge, real, splits),
        "nn_pixel_median": float(np.median(backend.to_numpy(nn_pix[:, 0]))),
        "nn_feature_median": float(np.median(backend.to_numpy(nn_feat[:, 0]))),
    }
    if labels is not None and judge.task == "classes" and judge.num_classes == gan.num_classes:
        gen["label_accuracy"] = label_accuracy(_host64(logits_gen).argmax(axis=1), backend.to_numpy(labels),
                                               gan.num_classes)
    ref = real["summary"]
    result = {
        "run_dir": str(run_dir), "step": meta.get("step"), "model": meta.get("model", {}).get("kind"),
        "weights": meta.get("weights"),
        "dataset": dataset, "n": int(n), "seed": seed, "backend": backend.name(),
        "judge": judge_info,
        "reference": {"test": real["test_source"], "train": real["train_source"], "n_test": real["n_test"],
                      "n_train": real["n_train"], "nn_queries": real["n_nn"]},
        "generated": gen,
        "real": ref,
        "noise": real["noise"],
        "error_bars": "fid_std: std of FID over 20 bootstrap resamples of the samples (reference fixed); kid: "
                      "[mean, std] over 100 subsets; precision/recall/density/coverage _std: bootstrap std of "
                      "the share (per-item indicators resampled, the k-NN radii fixed)",
        "memorisation": {
            "pixel_ratio": gen["nn_pixel_median"] / ref["nn_pixel_median"] if ref["nn_pixel_median"] else None,
            "feature_ratio": gen["nn_feature_median"] / ref["nn_feature_median"] if ref["nn_feature_median"] else None,
            "note": "median distance of generated samples to their nearest training image divided by the "
                    "same for real reference images: well below 1 suggests copying of training images",
        },
    }
    if write:
        grid = run_dir / "nearest_neighbours.png"
        result["nn_grid"] = {"path": str(grid), "rows": _nn_grid(grid, images[:nq], real["x_train"], nn_idx, nn_pix)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if write:
        from ..files.atomic import atomic_write_bytes
        atomic_write_bytes(run_dir / "evaluation.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def _softmax_host(logits) -> np.ndarray:
    z = _host64(logits)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def format_report(result: dict) -> str:
    """A text table: each metric for the generated samples, real data and noise images, with
    error bars (+-) where the result has them."""
    g, r, nz = result["generated"], result["real"], result.get("noise", {})

    def f(d, key, fmt="{:.3f}"):
        v = d.get(key)
        if v is None:
            return "-"
        if isinstance(v, (list, tuple)):                      # [mean, std]
            return f"{fmt.format(v[0])} +- {fmt.format(v[1])}"
        std = d.get(key + "_std")
        return fmt.format(v) + (f" +- {fmt.format(std)}" if std is not None else "")

    def h(d, key):
        hist = d.get("class_histogram") or d.get("cluster_histogram") or {}
        v = hist.get(key)
        return "-" if v is None else f"{v:.4f}"

    what = "class" if "class_histogram" in g else "cluster"
    rows = [
        ("FID (judge features, vs reference)", f(g, "fid"), f(r, "fid") + "  (train)", f(nz, "fid", "{:.1f}")),
        ("KID (unbiased, x 1000)", _milli(g.get("kid")), _milli(r.get("kid")) + "  (train)", _milli(nz.get("kid"))),
    ]
    if "classifier_score" in g:
        rows.append(("classifier score", f(g, "classifier_score"), f(r, "classifier_score"),
                     f(nz, "classifier_score")))
    rows += [
        (f"smallest {what} share", h(g, "min_share"), h(r, "min_share"), h(nz, "min_share")),
        (f"{what} histogram: TV to reference's", h(g, "tv_reference"), h(r, "tv_reference"), h(nz, "tv_reference")),
        (f"precision (k={g.get('k', 3)})", f(g, "precision"), f(r, "precision") + "  (train)", f(nz, "precision")),
        (f"recall (k={g.get('k', 3)})", f(g, "recall"), f(r, "recall") + "  (train)", f(nz, "recall")),
        (f"density (k={g.get('k_dc', K_DC)})", f(g, "density"), f(r, "density") + "  (train)", f(nz, "density")),
        (f"coverage (k={g.get('k_dc', K_DC)})", f(g, "coverage"), f(r, "coverage") + "  (train)", f(nz, "coverage")),
        ("median NN dist to train, pixels", f(g, "nn_pixel_median"), f(r, "nn_pixel_median") + "  (reference)", "-"),
        ("median NN dist to train, features", f(g, "nn_feature_median"),
         f(r, "nn_feature_median") + "  (reference)", "-"),
    ]
    if "label_accuracy" in g:
        la = g["label_accuracy"]
        rows.append(("label accuracy (worst class)", f"{la['overall']:.3f} ({la['worst']:.3f}: {la['worst_class']})",
                     f(r, "judge_accuracy") + "  (judge)", "-"))
    head = ("metric", f"generated (n={result['n']})", "real", "noise")
    w = [max(len(str(row[i])) for row in rows + [head]) for i in range(4)]
    line = "  ".join("-" * x for x in w)
    j = result["judge"]
    task = "rotation" if j.get("task") == "rotation" else "test"
    out = [f"{result.get('model')} run {result['run_dir']} at step {result.get('step')}, judge "
           f"'{j['name']}' ({task} accuracy {j.get('test_accuracy')}), reference: "
           f"{result['reference']['n_test']:,} images ({result['reference']['test']})",
           line, "  ".join(str(x).ljust(y) for x, y in zip(head, w)), line]
    out += ["  ".join(str(c).ljust(x) for c, x in zip(row, w)) for row in rows]
    out.append(line)
    out.append("+-: FID over bootstrap resamples of the samples, KID over subsets, the shares over bootstrap "
               "resamples of the items")
    m = result["memorisation"]
    if m.get("pixel_ratio") is not None:
        out.append(f"memorisation: NN-distance ratio generated/reference = {m['pixel_ratio']:.3f} (pixels), "
                   f"{m['feature_ratio']:.3f} (features); < 1 means closer to training images than real "
                   "reference images are")
    if "nn_grid" in result:
        out.append(f"nearest-neighbour grid: {result['nn_grid']['path']}")
    return "\n".join(out)


def _milli(v) -> str:
    return "-" if not v else f"{1000 * v[0]:.3f} +- {1000 * v[1]:.3f}"
