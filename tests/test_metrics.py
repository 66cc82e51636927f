"""Metrics against known answers, and evaluate_run end to end on a tiny run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

from scratchgan import backend
from scratchgan.evaluation import metrics

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
HAS_TEST_SET = (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists()


def _random_spd(rng, d, rank=None):
    A = rng.standard_normal((d, rank or d))
    return A @ A.T + (1e-3 * np.eye(d) if rank is None else 0.0)


# --------------------------------------------------------------------------- Frechet distance

def test_frechet_identical_is_zero():
    rng = np.random.default_rng(0)
    mu, S = rng.standard_normal(6), _random_spd(rng, 6)
    assert metrics.frechet_distance(mu, S, mu, S) == pytest.approx(0.0, abs=1e-9)


@given(d=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_frechet_diagonal_closed_form(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.uniform(0.01, 4.0, d), rng.uniform(0.01, 4.0, d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(d=st.integers(2, 8), seed=st.integers(0, 2**31 - 1))
def test_frechet_commuting_covariances(d, seed):
    """S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: the distance is that of the diagonals."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.01, 4.0, d), rng.uniform(0.01, 4.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = metrics.frechet_distance(mu1, Q @ np.diag(a) @ Q.T, mu2, Q @ np.diag(b) @ Q.T)
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-10)


@given(d=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_frechet_matches_scipy_sqrtm(d, seed):
    rng = np.random.default_rng(seed)
    S1, S2 = _random_spd(rng, d), _random_spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    covmean = scipy.linalg.sqrtm(S1 @ S2)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(S1) + np.trace(S2) - 2 * np.trace(covmean).real
    assert metrics.frechet_distance(mu1, S1, mu2, S2) == pytest.approx(expected, rel=1e-7, abs=1e-8)


def test_frechet_rank_deficient_is_finite_and_nonnegative():
    """Fewer samples than dimensions: singular covariances (tiny negative eigenvalues) must not
    give NaN (scipy's sqrtm route can return complex values there)."""
    rng = np.random.default_rng(3)
    S1, S2 = _random_spd(rng, 20, rank=5), _random_spd(rng, 20, rank=3)
    d = metrics.frechet_distance(np.zeros(20), S1, np.zeros(20), S2)
    assert math.isfinite(d) and d >= 0
    assert metrics.frechet_distance(np.zeros(20), S1, np.zeros(20), S1) == pytest.approx(0.0, abs=1e-7)


def test_frechet_shape_error():
    with pytest.raises(ValueError, match="shapes"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fid_of_samples():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20000, 4))
    b = rng.standard_normal((20000, 4)) * 2.0 + 1.0   # N(1, 4 I): distance 4 * 1 + 4 * (2 - 1)^2 = 8
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-9)
    assert metrics.fid(a, rng.standard_normal((20000, 4))) < 0.01
    assert metrics.fid(a, b) == pytest.approx(8.0, rel=0.03)
    mu, S = metrics.gaussian_stats(a)
    assert mu.dtype == np.float64 and S.shape == (4, 4)


# --------------------------------------------------------------------------- classifier statistics

def test_classifier_score_extremes():
    K, n = 10, 10000
    confident_uniform = np.eye(K)[np.arange(n) % K]
    mean, std = metrics.classifier_score(confident_uniform)
    assert mean == pytest.approx(10.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    one_class = np.eye(K)[np.zeros(n, dtype=int)]
    assert metrics.classifier_score(one_class)[0] == pytest.approx(1.0)
    undecided = np.full((n, K), 1.0 / K)
    assert metrics.classifier_score(undecided)[0] == pytest.approx(1.0)


def test_classifier_score_two_classes_known_value():
    # half the samples sure of class 0, half sure of class 1: exp(log 2) = 2 in every split
    p = np.eye(10)[np.arange(1000) % 2]
    assert metrics.classifier_score(p, splits=10)[0] == pytest.approx(2.0)
    # soft predictions p(y|x) = (0.75, 0.25) / (0.25, 0.75): KL = 0.75 log 1.5 + 0.25 log 0.5
    q = np.zeros((1000, 10))
    q[::2, :2] = [0.75, 0.25]
    q[1::2, :2] = [0.25, 0.75]
    expected = math.exp(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert metrics.classifier_score(q, splits=10)[0] == pytest.approx(expected, rel=1e-12)


def test_class_histogram():
    h = metrics.class_histogram(np.array([0, 0, 1, 1, 2, 2, 3, 3]), 4)
    assert h["shares"] == [0.25] * 4 and h["min_share"] == 0.25 and h["kl_uniform"] == pytest.approx(0.0)
    h = metrics.class_histogram(np.full(50, 7), 10)
    assert h["min_share"] == 0.0 and h["shares"][7] == 1.0 and h["kl_uniform"] == pytest.approx(math.log(10))
    h = metrics.class_histogram(np.array([0, 0, 0, 1]), 2)
    assert h["min_class"] == 1 and h["kl_uniform"] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_label_accuracy():
    target = np.repeat(np.arange(3), 4)
    pred = target.copy()
    pred[[0, 4, 5]] = 2           # class 0: 3/4 right, class 1: 2/4, class 2: 4/4
    la = metrics.label_accuracy(pred, target)
    assert la["overall"] == pytest.approx(9 / 12)
    assert la["per_class"] == [0.75, 0.5, 1.0] and la["worst"] == 0.5 and la["worst_class"] == 1


# --------------------------------------------------------------------------- distances

def _brute_nn(q, r):
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(axis=2))
    return d


@pytest.mark.parametrize("chunk,ref_chunk", [(1, 10000), (7, 2), (7, 10), (1000, 31)])
def test_nearest_neighbours_against_brute_force(chunk, ref_chunk):
    rng = np.random.default_rng(0)
    q, r = rng.standard_normal((23, 5)), rng.standard_normal((31, 5))
    d, idx = metrics.nearest_neighbour_distances(backend.asarray(q), backend.asarray(r), k=3, chunk=chunk,
                                                 ref_chunk=ref_chunk)
    full = _brute_nn(q, r)
    order = np.argsort(full, axis=1)[:, :3]
    np.testing.assert_array_equal(backend.to_numpy(idx), order)
    np.testing.assert_allclose(backend.to_numpy(d), np.take_along_axis(full, order, axis=1), rtol=1e-9, atol=1e-9)


def test_nearest_neighbours_of_copies_are_zero():
    rng = np.random.default_rng(1)
    r = rng.uniform(0, 1, (50, 1, 28, 28))
    d, idx = metrics.nearest_neighbour_distances(r[[4, 9]], r)
    np.testing.assert_allclose(backend.to_numpy(d)[:, 0], 0.0, atol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(idx)[:, 0], [4, 9])


def _brute_pr(real, fake, k):
    drr, dff, dfr = _brute_nn(real, real), _brute_nn(fake, fake), _brute_nn(fake, real)
    r_real = np.sort(drr, axis=1)[:, k]
    r_fake = np.sort(dff, axis=1)[:, k]
    precision = np.mean((dfr <= r_real[None, :]).any(axis=1))
    recall = np.mean((dfr <= r_fake[:, None]).any(axis=0))
    return precision, recall


@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 4), shift=st.floats(0.0, 3.0))
def test_precision_recall_against_brute_force(seed, k, shift):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((40, 3))
    fake = rng.standard_normal((30, 3)) * 0.5 + shift
    got = metrics.precision_recall_knn(real, fake, k=k, chunk=7)
    p, r = _brute_pr(real, fake, k)
    assert got["precision"] == pytest.approx(p) and got["recall"] == pytest.approx(r)


def test_precision_recall_extremes():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 4))
    same = metrics.precision_recall_knn(real, real.copy())
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    far = metrics.precision_recall_knn(real, real + 100.0)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    # mode collapse: every fake sits at one real point: high precision, recall ~ a few points
    collapsed = real[:1] + 1e-3 * rng.standard_normal((300, 4))
    pr = metrics.precision_recall_knn(real, collapsed)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.05


def test_runs_on_the_cupy_backend(xp_backend):
    rng = np.random.default_rng(0)
    q, r = rng.standard_normal((20, 4)), rng.standard_normal((25, 4))
    d, _ = metrics.nearest_neighbour_distances(backend.asarray(q), backend.asarray(r), k=2, chunk=6)
    np.testing.assert_allclose(backend.to_numpy(d), np.sort(_brute_nn(q, r), axis=1)[:, :2], rtol=1e-9)
    got = metrics.precision_recall_knn(backend.asarray(r), backend.asarray(q), k=3, chunk=6)
    assert (got["precision"], got["recall"]) == pytest.approx(_brute_pr(r, q, 3))


# --------------------------------------------------------------------------- KID, density/coverage, error bars

def _brute_mmd2(x, y):
    """The unbiased MMD^2 of Binkowski et al. (2018, eq. 3) with k(a, b) = (a.b / d + 1)^3, by
    explicit double sums over the index pairs."""
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


@given(st.integers(2, 12), st.integers(2, 12), st.integers(1, 6), st.integers(0, 10**6))
def test_mmd2_unbiased_is_the_double_sum(m, n, d, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((m, d)), rng.standard_normal((n, d)) + rng.uniform(-1, 1)
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(_brute_mmd2(x, y), rel=1e-9, abs=1e-9)


def test_kid_is_unbiased_where_fid_is_not():
    """Two samples of ONE distribution: KID's mean over many draws is ~0 at any size (unbiased),
    FID's is clearly positive at small n (biased), and KID's subsets give a spread."""
    rng = np.random.default_rng(0)
    kids, fids = [], []
    for _ in range(30):
        a, b = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
        kids.append(metrics.mmd2_unbiased(a, b))
        fids.append(metrics.fid(a, b))
    assert abs(np.mean(kids)) < 3 * np.std(kids) / np.sqrt(len(kids))
    assert np.mean(fids) > 10 * np.std(fids) / np.sqrt(len(fids))
    mean, std = metrics.kid(rng.standard_normal((200, 8)), rng.standard_normal((200, 8)) + 1.0, subsets=20,
                            subset_size=50)
    assert mean > 5 * std > 0
    with pytest.raises(ValueError, match="mmd2_unbiased: expected"):
        metrics.mmd2_unbiased(np.zeros((1, 3)), np.zeros((4, 3)))


def test_density_coverage_on_a_hand_made_set():
    """Reals at 0, 1, ..., 9 on a line, k = 2: the inner balls have radius 1, the end balls 2.
    A fake at 0.5 lies in the balls of 0 and 1; a fake at 20 in none. density = (2 + 0) / (k M)
    = 0.5, coverage = 2 of 10 real balls hold a fake = 0.2."""
    real = np.arange(10, dtype=np.float64)[:, None]
    fake = np.array([[0.5], [20.0]])
    got = metrics.density_coverage(real, fake, k=2)
    assert (got["density"], got["coverage"]) == pytest.approx((0.5, 0.2))
    # fakes exactly on every real: each lies in its own ball and its neighbours' (k + 1 balls inside:
    # 3 for the inner points, also 3 for the ends, whose radius 2 reaches two points)
    got = metrics.density_coverage(real, real.copy(), k=2)
    assert got["coverage"] == 1.0 and got["density"] == pytest.approx(3 * 10 / (2 * 10))
    # far fakes: nothing covered; precision agrees (no fake in any real ball)
    far = real + 100
    assert metrics.density_coverage(real, far, k=2)["coverage"] == 0.0
    assert metrics.precision_recall_knn(real, far, k=2)["precision"] == 0.0


def test_bootstrap_std_and_fid_bootstrap():
    assert metrics.bootstrap_std(np.ones(100)) == 0.0
    coin = np.arange(400) % 2                                   # a share of 0.5 over 400 items
    assert metrics.bootstrap_std(coin, resamples=400) == pytest.approx(np.sqrt(0.25 / 400), rel=0.15)
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((500, 4))
    f = rng.standard_normal((300, 4)) + 0.3
    value, std = metrics.fid_bootstrap(f, metrics.gaussian_stats(ref), resamples=10)
    assert value == pytest.approx(metrics.fid(f, ref)) and 0 < std < value


def test_class_histogram_distance_to_the_reference():
    h = metrics.class_histogram(np.array([0, 0, 1, 1]), 3, reference=[0.5, 0.5, 0.0])
    assert h["tv_reference"] == 0.0
    h = metrics.class_histogram(np.array([2, 2, 2, 2]), 3, reference=[0.5, 0.5, 0.0])
    assert h["tv_reference"] == 1.0


# --------------------------------------------------------------------------- evaluate_run

# a small reference keeps the test quick; the same arguments let the two tests share it
SMALL = dict(seed=0, data_dir=SHARED_MNIST, n_real=500, splits=5, nn_queries=200)


def _tiny(tmp_path_factory, kind, **model_args):
    from scratchgan import data, models
    from scratchgan.training import TrainConfig, Trainer
    run = tmp_path_factory.mktemp("run") / kind
    gan = models.build(kind, seed=0, **model_args)
    ds = data.load_dataset("mnist-bundled", split="train", progress=False)
    cfg = TrainConfig(model=kind, model_args=model_args, dataset="mnist", steps=60 if kind == "mlp" else 5,
                      batch_size=64, log_every=20, sample_every=1000, checkpoint_every=1000)
    Trainer(gan, ds.as_float(gan.output)[:2000], ds.labels[:2000], cfg, run_dir=run, quiet=True).train()
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _tiny(tmp_path_factory, "mlp", latent_dim=16, g_hidden=[64], d_hidden=[64])


@pytest.mark.skipif(not HAS_TEST_SET, reason=f"MNIST test set not found in {SHARED_MNIST}")
def test_evaluate_run_on_a_tiny_run(tiny_run):
    result = metrics.evaluate_run(tiny_run, n=500, **SMALL)
    g, real, noise = result["generated"], result["real"], result["noise"]

    def finite(d):
        return all(math.isfinite(v) for v in (d["fid"], d["classifier_score"][0], d["classifier_score"][1]))
    assert finite(g) and finite(real) and finite(noise)
    for key in ("precision", "recall", "nn_pixel_median", "nn_feature_median"):
        assert math.isfinite(g[key]) and math.isfinite(real[key])
    # real data scores far better than noise images
    assert real["fid"] < 0.2 * noise["fid"]
    assert real["classifier_score"][0] > 7.0 > 2.0 > noise["classifier_score"][0]
    assert real["precision"] > 0.5 and real["recall"] > 0.5
    assert real["judge_accuracy"] > 0.95
    # 60 steps of a tiny GAN: worse than real data
    assert g["fid"] > real["fid"]
    # KID and density/coverage beside them, every headline number with an error bar
    assert real["kid"][0] < min(g["kid"][0], noise["kid"][0]) and all(d["kid"][1] > 0 for d in (g, real, noise))
    assert real["coverage"] > 0.5 > max(g["coverage"], noise["coverage"]) and 0.5 < real["density"] < 1.5
    for key in ("fid", "precision", "recall", "density", "coverage"):
        assert real[key + "_std"] > 0 and g[key + "_std"] >= 0      # a share of 0 has no spread
    assert g["fid_std"] > 0
    saved = json.loads((tiny_run / "evaluation.json").read_text())
    assert saved["generated"]["fid"] == pytest.approx(g["fid"])
    assert (tiny_run / "nearest_neighbours.png").exists()
    text = metrics.format_report(result)
    assert "classifier score" in text and "FID" in text and f"{g['fid']:.3f} +- {g['fid_std']:.3f}" in text
    assert "KID" in text and "coverage" in text and "density" in text


@pytest.mark.skipif(not HAS_TEST_SET, reason=f"MNIST test set not found in {SHARED_MNIST}")
def test_evaluate_run_conditional_reports_label_accuracy(tmp_path_factory):
    run = _tiny(tmp_path_factory, "cgan", latent_dim=8, g_hidden=[32], d_hidden=[32])
    result = metrics.evaluate_run(run, n=200, **SMALL)
    la = result["generated"]["label_accuracy"]
    assert result["n"] == 200 and len(la["per_class"]) == 10
    assert 0.0 <= la["worst"] <= la["overall"] <= 1.0
    assert "label accuracy" in metrics.format_report(result)


def test_evaluate_run_explains_a_missing_test_set(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHGAN_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    metrics._REAL_CACHE.clear()
    with pytest.raises(metrics.EvaluationDataMissing, match="test set"):
        metrics.evaluate_run(tiny_run, n=100, data_dir=tmp_path / "nowhere")


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 28, 28)])
def test_evaluate_run_refuses_a_model_that_does_not_fit_its_data_before_any_work(shape, tmp_path, monkeypatch):
    """A run whose model makes another shape than its recorded data set is refused, naming both,
    before a judge is trained or a sample drawn, and without writing anything."""
    from scratchgan import models
    from scratchgan.evaluation import dataset_judge
    from scratchgan.training import TrainConfig, Trainer
    run = tmp_path / "run"
    gan = models.mlp(latent_dim=4, g_hidden=[8], d_hidden=[8], image_shape=shape, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (8,) + shape).astype(np.float32)
    cfg = TrainConfig(model="mlp", model_args=dict(latent_dim=4, g_hidden=[8], d_hidden=[8], image_shape=list(shape)),
                      dataset="mnist", steps=1, batch_size=4, log_every=1, sample_every=1000, checkpoint_every=1)
    Trainer(gan, x, None, cfg, run_dir=run, quiet=True).train()

    def no_work(*args, **kwargs):
        raise AssertionError("evaluate_run started work before refusing the run")
    monkeypatch.setattr(dataset_judge, "judge_for_dataset", no_work)
    monkeypatch.setattr(metrics, "real_reference", no_work)
    monkeypatch.setattr(metrics, "_generate", no_work)
    c, h, w = shape
    with pytest.raises(ValueError, match=rf"mnist: its images are 1x28x28, the run's model makes {c}x{h}x{w}"):
        metrics.evaluate_run(run, n=10, data_dir=tmp_path)
    assert not (run / "evaluation.json").exists() and not (run / "nearest_neighbours.png").exists()


def test_check_judgeable_names_the_shapes_a_judge_can_be_made_for():
    from types import SimpleNamespace
    for shape in [(1, 28, 28), (3, 32, 32), (1, 64, 64)]:
        metrics.check_judgeable(SimpleNamespace(image_shape=shape))
    for shape in [(2, 28, 28), (1, 30, 30), (3, 32, 16)]:
        with pytest.raises(ValueError, match="a judge can be made for 1 or 3 channels of 28, 32 or 64"):
            metrics.check_judgeable(SimpleNamespace(image_shape=shape))


def test_evaluation_scores_equal_the_public_metrics():
    """evaluate_run's one-pass scores (precision/recall and density/coverage from the same
    distances, FID and KID with their spreads) are the public functions' numbers."""
    rng = np.random.default_rng(0)
    ref, fake = rng.standard_normal((60, 5)), rng.standard_normal((80, 5)) * 1.3 + 1.0
    d, _ = metrics.nearest_neighbour_distances(ref, ref, k=6)
    real = dict(f_test=ref, f_test64=ref, stats_test=metrics.gaussian_stats(ref), radii_pr=d[:, 3], radii_dc=d[:, 5])
    got = metrics._distance_scores(fake, real, 3, seed=0)
    pr, dc = metrics.precision_recall_knn(ref, fake, k=3), metrics.density_coverage(ref, fake, k=5)
    for key, value in {**pr, **dc}.items():
        if key != "k":
            assert got[key] == pytest.approx(value), key
    assert got["fid"] == pytest.approx(metrics.fid(fake, ref)) and got["kid"] == list(metrics.kid(fake, ref, seed=0))
    assert all(got[key + "_std"] > 0 for key in ("fid", "precision", "recall", "density", "coverage"))


def test_pixel_neighbours_of_uint8_training_images_are_in_unit_pixels():
    """Folder runs keep their training images uint8; memorisation distances are still in [0, 1] pixels."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (30, 3, 4, 4), dtype=np.uint8)
    query = rng.random((7, 3, 4, 4)).astype(np.float32)
    d8, i8 = metrics._pixel_nn(query, train, 2)
    d, i = metrics._pixel_nn(query, train.astype(np.float32) / 255, 2)
    np.testing.assert_allclose(d8, d, rtol=1e-5)
    np.testing.assert_array_equal(i8, i)


def test_every_public_name_of_the_evaluation_modules_exists():
    """`from ... import *` works: __all__ names only what the module defines (it named a dict key)."""
    import importlib
    for name in ("metrics", "judge", "dataset_judge", "toy2d", "bench"):
        module = importlib.import_module(f"scratchgan.evaluation.{name}")
        assert [n for n in module.__all__ if not hasattr(module, n)] == [], name
