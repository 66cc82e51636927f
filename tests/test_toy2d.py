"""The 2-D mode benchmark: the data, the metric on hand-made point sets, and a short run."""
from __future__ import annotations

import numpy as np
import pytest

from scratchgan.evaluation import toy2d


def test_ring_and_grid_modes():
    ring, std = toy2d.DATASETS["ring"]
    assert ring.shape == (8, 2) and std == 0.01
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0)
    np.testing.assert_allclose(ring[0], [1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(ring[2], [0.0, 1.0], atol=1e-15)
    grid, std = toy2d.DATASETS["grid"]
    assert grid.shape == (25, 2) and std == 0.05
    assert {tuple(p) for p in grid} == {(x, y) for x in (-4., -2., 0., 2., 4.) for y in (-4., -2., 0., 2., 4.)}


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_all_modes_hit(name):
    modes, std = toy2d.DATASETS[name]
    m = toy2d.mode_metrics(np.repeat(modes, 3, axis=0), modes, std)
    assert m["modes_covered"] == len(modes) and m["hq_fraction"] == 1.0
    assert m["counts"] == [3] * len(modes)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_one_mode_only(name):
    modes, std = toy2d.DATASETS[name]
    pts = modes[3] + std * np.random.default_rng(0).uniform(-1, 1, (100, 2))   # within sqrt(2) std
    m = toy2d.mode_metrics(pts, modes, std)
    assert m["modes_covered"] == 1 and m["hq_fraction"] == 1.0 and m["counts"][3] == 100


def test_points_far_away():
    modes, std = toy2d.DATASETS["ring"]
    pts = np.array([[0.0, 0.0], [5.0, 5.0], [0.5, 0.5]])  # the centre, far out, between modes
    m = toy2d.mode_metrics(pts, modes, std)
    assert m["modes_covered"] == 0 and m["hq_fraction"] == 0.0


def test_three_std_threshold():
    modes, std = toy2d.DATASETS["ring"]
    inside = modes[0] + np.array([2.9 * std, 0.0])
    outside = modes[1] + np.array([3.1 * std, 0.0]) @ np.array([[0.0, 1.0], [-1.0, 0.0]])
    m = toy2d.mode_metrics(np.stack([inside, outside]), modes, std)
    assert m["hq_fraction"] == 0.5 and m["counts"][0] == 1 and m["counts"][1] == 0 and m["modes_covered"] == 1


def test_half_good_half_bad():
    modes, std = toy2d.DATASETS["grid"]
    pts = np.concatenate([modes[:5], modes[:5] + 1.0])   # +1 lies halfway between grid modes
    m = toy2d.mode_metrics(pts, modes, std)
    assert m["modes_covered"] == 5 and m["hq_fraction"] == 0.5


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_real_samples_score_as_expected(name):
    modes, std = toy2d.DATASETS[name]
    x = toy2d.sample_mixture(modes, std, 2500, np.random.default_rng(0))
    m = toy2d.mode_metrics(x, modes, std)
    # P(|N(0, I_2)| <= 3) = 1 - exp(-4.5) = 0.989
    assert m["modes_covered"] == len(modes)
    assert abs(m["hq_fraction"] - (1 - np.exp(-4.5))) < 0.01


def test_bad_input_shape():
    modes, std = toy2d.DATASETS["ring"]
    with pytest.raises(ValueError, match="mode_metrics"):
        toy2d.mode_metrics(np.zeros((4, 3)), modes, std)


def test_short_run_covers_several_ring_modes():
    """A few seconds of training already spreads G over the ring, not onto one mode."""
    r = toy2d.train_toy_gan("ring", steps=400, batch_size=128, seed=0, n_eval=2500)
    assert r["samples"].shape == (2500, 2) and np.all(np.isfinite(r["samples"]))
    assert r["modes_covered"] >= 3, r["counts"]
    # most samples landed near the circle rather than anywhere in the plane
    radius = np.linalg.norm(r["samples"], axis=1)
    assert np.mean(np.abs(radius - 1.0) < 0.25) > 0.5


def test_untrained_generator_covers_little():
    """The metric is not trivially satisfied: zero training steps score poorly."""
    r = toy2d.train_toy_gan("ring", steps=0, seed=0, n_eval=2500)
    assert r["modes_covered"] <= 2 and r["hq_fraction"] < 0.05
