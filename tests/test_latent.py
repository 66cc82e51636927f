"""Latent walks: lerp/slerp geometry, sweeps that move one dimension, class sweeps that hold z,
and the PNG grids (their pixel size gives rows x columns)."""
from __future__ import annotations

import numpy as np
import pytest

from scratchgan import backend, models
from scratchgan.generation import latent

PAD, SCALE, SIDE = 2, 2, 28     # images.make_grid padding, save_grid's default scale


def _grid_shape(rows, cols):
    return ((rows * (SIDE + PAD) + PAD) * SCALE, (cols * (SIDE + PAD) + PAD) * SCALE)


def _png_shape(path):
    from PIL import Image
    with Image.open(path) as img:
        return img.size[1], img.size[0]


@pytest.fixture(scope="module")
def tiny_mlp():
    return models.mlp(latent_dim=6, g_hidden=(8,), d_hidden=(8,), seed=0)


@pytest.fixture(scope="module")
def tiny_cgan():
    return models.cgan(latent_dim=5, g_hidden=(8,), d_hidden=(8,), seed=0)


# ---------------------------------------------------------------------------- lerp / slerp
def test_slerp_endpoints_are_the_codes():
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal(16), rng.standard_normal(16)
    path = latent.slerp(z0, z1, [0.0, 1.0])
    np.testing.assert_allclose(path[0], z0, atol=1e-12)
    np.testing.assert_allclose(path[1], z1, atol=1e-12)
    np.testing.assert_allclose(latent.slerp(z0, z1, 0.0), z0, atol=1e-12)   # a number t -> one code
    assert latent.slerp(z0, z1, 0.5).shape == (16,)


def test_slerp_keeps_the_norm_of_equal_norm_endpoints_and_lerp_does_not():
    rng = np.random.default_rng(1)
    z0, z1 = rng.standard_normal(32), rng.standard_normal(32)
    z1 *= np.linalg.norm(z0) / np.linalg.norm(z1)
    t = np.linspace(0, 1, 11)
    norms = np.linalg.norm(latent.slerp(z0, z1, t), axis=1)
    np.testing.assert_allclose(norms, np.linalg.norm(z0), rtol=1e-12)
    assert np.linalg.norm(latent.lerp(z0, z1, 0.5)) < 0.9 * np.linalg.norm(z0)  # the chord dips inside
    # equal angular steps: consecutive points are equally far apart on the circle
    path = latent.slerp(z0, z1, t)
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-10)


def test_slerp_parallel_antiparallel_and_zero_codes_fall_back_to_lerp():
    z = np.array([1.0, 2.0, -0.5])
    for z1 in (2 * z, -z, np.zeros(3)):
        got = latent.slerp(z, z1, [0.0, 0.3, 1.0])
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, latent.lerp(z, z1, [0.0, 0.3, 1.0]))


def test_lerp_midpoints_and_bad_shapes():
    z0, z1 = np.array([0.0, 2.0, -4.0]), np.array([2.0, 6.0, 0.0])
    np.testing.assert_allclose(latent.lerp(z0, z1, [0.5]), [[1.0, 4.0, -2.0]])
    np.testing.assert_allclose(latent.lerp(z0, z1, [0.25, 0.75]), [[0.5, 3.0, -3.0], [1.5, 5.0, -1.0]])
    with pytest.raises(ValueError, match="1-D codes of one length"):
        latent.lerp(z0, z1[:2], [0.5])
    with pytest.raises(ValueError, match="1-D codes"):
        latent.slerp(z0[None], z1[None], [0.5])


# ---------------------------------------------------------------------------- codes
def test_interpolate_rows_start_and_end_at_random_codes(tiny_mlp):
    for mode, fn in (("slerp", latent.slerp), ("linear", latent.lerp)):
        z = latent.interpolate(tiny_mlp, rows=3, steps=5, seed=4, mode=mode).reshape(3, 5, -1)
        ends = latent._host_noise(tiny_mlp, 6, 4)
        for r in range(3):
            np.testing.assert_allclose(z[r], fn(ends[2 * r], ends[2 * r + 1], np.linspace(0, 1, 5)))
    with pytest.raises(ValueError, match="mode"):
        latent.interpolate(tiny_mlp, mode="cubic")


@pytest.mark.parametrize("dim", [0, 3, 5])
def test_sweep_changes_only_the_chosen_dimension(tiny_mlp, dim):
    z = latent.sweep(tiny_mlp, dim=dim, rows=4, steps=7, seed=2).reshape(4, 7, -1)
    others = np.delete(z, dim, axis=2)
    assert np.all(others == others[:, :1])                     # held within each row
    assert not np.allclose(others[0, 0], others[1, 0])          # but each row has its own z
    np.testing.assert_allclose(z[:, :, dim], np.tile(np.linspace(-2.5, 2.5, 7), (4, 1)))


def test_sweep_of_uniform_noise_stays_in_its_support():
    gan = models.mlp(latent_dim=4, g_hidden=(8,), d_hidden=(8,), noise="uniform")
    z = latent.sweep(gan, dim=1, rows=2, steps=5)
    np.testing.assert_allclose(z[:5, 1], np.linspace(-1, 1, 5))


@pytest.mark.parametrize("dim", [-1, 6, 2.0, True, "0"])
def test_bad_dim_is_a_clear_error(tiny_mlp, dim, tmp_path):
    with pytest.raises(ValueError, match=r"dim must be an integer in \[0, 6\)"):
        latent.sweep(tiny_mlp, dim=dim)
    with pytest.raises(ValueError, match="dim"):
        latent.save_walk(tiny_mlp, tmp_path / "x.png", mode="sweep", dim=dim)
    assert not (tmp_path / "x.png").exists()


def test_class_sweep_rows_share_z_and_cover_all_labels(tiny_cgan):
    z, labels = latent.class_sweep(tiny_cgan, rows=3, seed=5)
    assert z.shape == (30, 5) and labels.shape == (30,)
    z, labels = z.reshape(3, 10, 5), labels.reshape(3, 10)
    assert np.all(z == z[:, :1])                                # one z per row
    assert len({tuple(r[0]) for r in z}) == 3                   # different rows, different z
    for row in labels:
        assert sorted(row) == list(range(10))


def test_class_sweep_on_an_unconditional_model_is_a_clear_error(tiny_mlp, tmp_path):
    with pytest.raises(ValueError, match="conditional model"):
        latent.class_sweep(tiny_mlp)
    with pytest.raises(ValueError, match="conditional model"):
        latent.save_walk(tiny_mlp, tmp_path / "c.png", mode="classes")
    with pytest.raises(ValueError, match="not conditional"):
        latent.walk(tiny_mlp, "slerp", label=3)


def test_bad_mode_label_and_counts_are_clear_errors(tiny_cgan, tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        latent.save_walk(tiny_cgan, tmp_path / "m.png", mode="zigzag")
    with pytest.raises(ValueError, match=r"label must be an integer in \[0, 10\)"):
        latent.walk(tiny_cgan, "slerp", label=10)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        latent.walk(tiny_cgan, "linear", steps=0)


# ---------------------------------------------------------------------------- images
def test_class_walk_images_hold_the_style_and_change_the_class(tiny_cgan):
    images, z, labels = latent.walk(tiny_cgan, "classes", rows=2, seed=3)
    assert images.shape == (20, 1, 28, 28)
    images = backend.to_numpy(images)
    # each image is exactly G([z_row, onehot(label)]) ...
    one = tiny_cgan.generate(z=backend.asarray(z[13:14], dtype=np.float32), labels=backend.asarray(labels[13:14]))
    np.testing.assert_allclose(images[13], backend.to_numpy(one)[0], rtol=1e-5, atol=1e-6)
    # ... and the label matters: same z, different classes -> different images
    assert not np.allclose(images[10], images[11])


def test_walk_labels_of_a_conditional_model(tiny_cgan):
    _, _, labels = latent.walk(tiny_cgan, "slerp", rows=3, steps=4)
    assert list(labels) == [0] * 4 + [1] * 4 + [2] * 4           # row r -> class r
    _, _, labels = latent.walk(tiny_cgan, "sweep", rows=2, steps=3, label=7)
    assert list(labels) == [7] * 6


def test_between_walks_from_z0_to_z1(tiny_mlp):
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal(6), rng.standard_normal(6)
    images = backend.to_numpy(latent.between(tiny_mlp, z0, z1, steps=4, mode="linear"))
    ends = backend.to_numpy(tiny_mlp.generate(z=backend.asarray(np.stack([z0, z1]), dtype=np.float32)))
    assert images.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(images[[0, -1]], ends, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        latent.between(tiny_mlp, z0[:5], z1, steps=3)


@pytest.mark.parametrize("mode,rows,steps,cols", [("slerp", 2, 5, 5), ("linear", 3, 4, 4),
                                                  ("sweep", 2, 6, 6), ("classes", 3, 4, 10)])
def test_save_walk_writes_a_grid_of_the_right_size(tiny_mlp, tiny_cgan, tmp_path, mode, rows, steps, cols):
    gan = tiny_cgan if mode == "classes" else tiny_mlp
    out = latent.save_walk(gan, tmp_path / f"{mode}.png", mode=mode, rows=rows, steps=steps, dim=2)
    assert out == tmp_path / f"{mode}.png"
    assert _png_shape(out) == _grid_shape(rows, cols)


def test_save_walk_of_a_conditional_model_in_every_mode(tiny_cgan, tmp_path):
    for mode in ("slerp", "linear", "sweep"):
        out = latent.save_walk(tiny_cgan, tmp_path / f"{mode}.png", mode=mode, rows=2, steps=3, label=4)
        assert _png_shape(out) == _grid_shape(2, 3)


def test_walks_do_not_change_the_model_or_its_modes(tiny_mlp):
    before = {k: backend.to_numpy(v).copy() for k, v in tiny_mlp.G.state_dict().items()}
    tiny_mlp.G.train()
    latent.walk(tiny_mlp, "slerp", rows=1, steps=3)
    assert tiny_mlp.G.training
    for k, v in tiny_mlp.G.state_dict().items():
        np.testing.assert_array_equal(backend.to_numpy(v), before[k])


def test_walks_on_the_selected_backend(xp_backend, tmp_path):
    """lerp/slerp on the backend's arrays stay there; walks render on it (CuPy: needs a GPU)."""
    xp = backend.xp()
    z0, z1 = xp.asarray([3.0, 0.0, 4.0]), xp.asarray([0.0, 5.0, 0.0])
    path = latent.slerp(z0, z1, [0.0, 0.5, 1.0])
    assert backend.array_module(path) is xp
    np.testing.assert_allclose(backend.to_numpy(xp.linalg.norm(path, axis=1)), 5.0)
    gan = models.cgan(latent_dim=5, g_hidden=(8,), d_hidden=(8,), seed=0)
    images, _, _ = latent.walk(gan, "classes", rows=2)
    assert backend.array_module(images) is xp and images.shape == (20, 1, 28, 28)
    assert _png_shape(latent.save_walk(gan, tmp_path / "w.png", mode="sweep", rows=2, steps=3)) == _grid_shape(2, 3)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 64, 64), (3, 28, 28)])
def test_walks_follow_the_models_image_shape(shape, tmp_path):
    """Walks of grey or RGB models of any size: images of the model's shape, and grids whose
    pixel size follows it (RGB models give RGB PNGs)."""
    from PIL import Image
    g, d = {28: ((4, 3, 2), (2, 3)), 32: ((4, 3, 2), (2, 3, 4)), 64: ((4, 3, 2, 2), (2, 2, 3, 4))}[shape[1]]
    gan = models.dcgan(latent_dim=6, g_channels=g, d_channels=d, image_shape=shape, seed=0)
    images, z, _ = latent.walk(gan, "sweep", rows=2, steps=3, dim=1)
    assert tuple(images.shape) == (6,) + shape and z.shape == (6, 6)
    ends = backend.to_numpy(latent.between(gan, z[0], z[2], steps=3, mode="linear"))
    assert ends.shape == (3,) + shape
    np.testing.assert_allclose(ends, backend.to_numpy(images[:3]), rtol=1e-5, atol=1e-6)
    out = latent.save_walk(gan, tmp_path / "walk.png", mode="slerp", rows=2, steps=4)
    with Image.open(out) as img:
        assert img.mode == ("RGB" if shape[0] == 3 else "RGBA")
        side = shape[1]
        assert (img.size[1], img.size[0]) == ((2 * (side + PAD) + PAD) * SCALE, (4 * (side + PAD) + PAD) * SCALE)


def test_class_walk_of_a_26_letter_rgb_cgan(tmp_path):
    gan = models.cgan(latent_dim=5, g_hidden=(8,), d_hidden=(8,), num_classes=26, image_shape=(3, 12, 10), seed=0)
    images, z, labels = latent.walk(gan, "classes", rows=2)
    assert tuple(images.shape) == (52, 3, 12, 10) and list(labels[:26]) == list(range(26))
    out = latent.save_walk(gan, tmp_path / "letters.png", mode="classes", rows=2)
    assert _png_shape(out) == ((2 * (12 + PAD) + PAD) * SCALE, (26 * (10 + PAD) + PAD) * SCALE)
