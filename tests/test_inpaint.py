"""Image completion (scratchgan.generation.inpaint): masks, the contextual weights, the gradient dL/dz
against float64 central differences (through D and G, for mlp, cgan and dcgan, grey and RGB,
28 to 64 pixels), the search (restarts, clipping, loss going down, known pixels kept in every
channel), clear errors, and, on a briefly
trained mlp, completion errors on held-out digits well below the mean-image fill."""
from __future__ import annotations

import numpy as np
import pytest

from scratchgan import backend, data, models
from scratchgan.generation import inpaint as ip
from scratchgan.training import TrainConfig, Trainer


def _np(a):
    return backend.to_numpy(a)


# ---------------------------------------------------------------------------- masks
@pytest.mark.parametrize("kind,missing", [
    ("center", (slice(7, 21), slice(7, 21))),
    ("left", (slice(None), slice(0, 14))),
    ("right", (slice(None), slice(14, 28))),
    ("top", (slice(0, 14), slice(None))),
    ("bottom", (slice(14, 28), slice(None))),
])
def test_region_masks(kind, missing):
    m = ip.make_mask(kind)
    assert m.shape == (28, 28) and m.dtype == np.float32
    expected = np.ones((28, 28), np.float32)
    expected[missing] = 0
    np.testing.assert_array_equal(m, expected)


def test_mask_fractions_and_shapes():
    assert ip.make_mask("center").mean() == pytest.approx(1 - 14 * 14 / 784)       # a quarter missing
    assert (ip.make_mask("center", fraction=0.5) == 0).sum() == 20 * 20               # round(28 sqrt .5) = 20
    assert (ip.make_mask("left", fraction=0.25) == 0).sum() == 7 * 28
    assert np.all(ip.make_mask("left", fraction=0.25)[:, :7] == 0)
    assert np.all(ip.make_mask("bottom", fraction=0.25)[21:] == 0) and ip.make_mask("bottom", fraction=0.25)[:21].all()
    m = ip.make_mask("top", shape=(10, 6), fraction=0.3)
    assert m.shape == (10, 6) and np.all(m[:3] == 0) and m[3:].all()
    assert ip.make_mask("right", fraction=0.0).all() and not ip.make_mask("right", fraction=1.0).any()


def test_random_mask_has_the_exact_known_fraction_and_follows_the_seed():
    m = ip.make_mask("random")
    assert (m == 0).sum() == round(0.8 * 784)                                          # 80% missing by default
    assert (ip.make_mask("random", fraction=0.3, seed=1) == 0).sum() == round(0.3 * 784)
    np.testing.assert_array_equal(ip.make_mask("random", seed=5), ip.make_mask("random", seed=5))
    assert not np.array_equal(ip.make_mask("random", seed=5), ip.make_mask("random", seed=6))
    a = ip.make_mask("random", rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a, ip.make_mask("random", rng=np.random.default_rng(9)))
    assert set(np.unique(m)) == {0.0, 1.0}


def test_masks_from_npy_and_png_files(tmp_path):
    want = ip.make_mask("random", seed=3, fraction=0.4)
    np.save(tmp_path / "m.npy", want.astype(bool))
    np.testing.assert_array_equal(ip.make_mask(str(tmp_path / "m.npy")), want)
    from PIL import Image
    Image.fromarray((want * 255).astype(np.uint8)).save(tmp_path / "m.png")          # white = known
    np.testing.assert_array_equal(ip.make_mask(tmp_path / "m.png"), want)
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="28x20 pixels, expected 28x28"):
        ip.make_mask(tmp_path / "small.png")
    np.save(tmp_path / "gray.npy", np.full((28, 28), 0.5))
    with pytest.raises(ValueError, match="only 0 .missing. and 1 .known."):
        ip.make_mask(tmp_path / "gray.npy")
    with pytest.raises(ValueError, match="not found"):
        ip.make_mask(tmp_path / "nothing.npy")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        ip.make_mask(tmp_path / "junk.png")
    (tmp_path / "empty.npy").write_bytes(b"")                      # was an EOFError from np.load
    (tmp_path / "cut.npy").write_bytes((tmp_path / "m.npy").read_bytes()[:90])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name in ("empty.npy", "cut.npy", "obj.npy"):
        with pytest.raises(ValueError, match=f"make_mask: .*{name}: not a plain NumPy array file"):
            ip.make_mask(tmp_path / name)


def test_bad_mask_kinds_are_clear_errors():
    with pytest.raises(ValueError, match="unknown mask kind 'middle'; choose from center, left"):
        ip.make_mask("middle")
    with pytest.raises(ValueError, match=r"fraction .* must be in \[0, 1\]"):
        ip.make_mask("center", fraction=1.5)
    with pytest.raises(ValueError, match=r"expected a mask of shape \(28, 28\)"):
        ip.make_mask(np.ones((27, 28)))


def test_context_weights_count_missing_neighbours():
    m = ip.make_mask("bottom")                                # rows 14..27 missing
    w = ip.context_weights(m)
    assert w.shape == m.shape
    assert np.all(w[14:] == 0)                                # missing pixels: no weight
    assert np.all(w[:11] == 0)                                # known, 3+ rows from the hole: no weight
    assert w[13, 10] == pytest.approx(21 / 49)                # window rows 10..16: 3 missing rows of 7
    assert w[11, 10] == pytest.approx(7 / 49)
    assert w[13, 0] == pytest.approx(12 / 28)                 # corner: 7 x 4 window inside the image
    assert np.all(ip.context_weights(np.ones((28, 28))) == 0)


# ---------------------------------------------------------------------------- the gradient
def _tiny(kind):
    if kind == "mlp":
        return models.mlp(latent_dim=5, g_hidden=(12,), d_hidden=(10,), seed=1)
    if kind == "cgan":
        return models.cgan(latent_dim=4, g_hidden=(12,), d_hidden=(10,), seed=1)
    gan = models.dcgan(latent_dim=3, g_channels=(4, 3, 2), d_channels=(2, 3), init="glorot_uniform", seed=1)
    rng = np.random.default_rng(2)
    for name, buf in gan.G.named_buffers():                    # non-trivial running statistics
        if name.endswith("running_mean"):
            buf[...] = rng.normal(0, 0.3, buf.shape)
        elif name.endswith("running_var"):
            buf[...] = rng.uniform(0.5, 2.0, buf.shape)
    return gan


def _numeric_grad(f, z, h=1e-6):
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += h
        zm[i] -= h
        g[i] = (f(zp) - f(zm)) / (2 * h)
    return g


@pytest.mark.parametrize("kind", ["mlp", "cgan", "dcgan"])
@pytest.mark.parametrize("perceptual", ["nonsaturating", "minimax"])
@pytest.mark.parametrize("context", ["weighted", "off"])
def test_dL_dz_matches_central_differences(kind, perceptual, context):
    """The gradient the optimiser uses = float64 central differences of sum_i L_i(z).

    context="off" (all weights 0) leaves only lam * perceptual: its gradient comes entirely
    through D.backward and G.backward, so this checks the path through D."""
    backend.set_default_dtype(np.float64)
    gan = _tiny(kind).astype(np.float64)
    rng = np.random.default_rng(0)
    n = 3
    lo = -1.0 if gan.output == "tanh" else 0.0
    x = backend.asarray(rng.uniform(lo, 1.0, (n, 1, 28, 28)))
    w = ip.context_weights(ip.make_mask("center"))[None, None].astype(np.float64)
    if context == "off":
        w = np.zeros_like(w)
    w = backend.asarray(w)
    labels = backend.asarray(np.array([1, 4, 7])) if gan.conditional else None
    z = rng.standard_normal((n, gan.latent_dim))
    lam = 0.5
    with ip._eval_mode(gan):
        loss, grad, fake = ip.inpaint_loss_and_grad(gan, backend.asarray(z), x, w, labels, lam, perceptual)

        def total(zz):
            return float(ip.inpaint_loss_and_grad(gan, backend.asarray(zz), x, w, labels, lam, perceptual)[0].sum())
        num = _numeric_grad(total, z)
        logits = _np(gan.D(gan.d_input(fake, labels))).reshape(n)      # eval mode: no Dropout
    grad = _np(grad)
    assert grad.shape == z.shape and np.abs(grad).max() > 1e-6
    # Entries far below the largest are dominated by the central difference's rounding noise
    # (~1e-16 * |L| / h ~ 1e-10 here): judge them against the gradient's scale, not their own.
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-5 * np.abs(num).max())
    # the loss is what the docstring says: context + lam * perceptual on D's logit
    per = np.logaddexp(0, -logits) if perceptual == "nonsaturating" else -np.logaddexp(0, logits)
    ctx = (_np(w) * np.abs(_np(fake) - _np(x))).reshape(n, -1).sum(1)
    np.testing.assert_allclose(_np(loss), ctx + lam * per, rtol=1e-10)


# ---------------------------------------------------------------------------- the search
@pytest.fixture(scope="module")
def small():
    gan = models.mlp(latent_dim=8, g_hidden=(16,), d_hidden=(16,), seed=3)
    x = gan.generate(5, seed=11)                        # targets G can reach: the loss can fall far
    return gan, x


def test_loss_decreases_and_known_pixels_are_kept_exactly(small):
    gan, x = small
    mask = ip.make_mask("center")
    res = ip.inpaint(gan, x, mask, steps=60, restarts=3, lr=0.05)
    L = _np(res.losses)
    assert L.shape == (61, 5)
    assert np.all(L[-1] < 0.9 * L[0])                              # every image's loss went down
    assert L[-10:].mean() < L[:10].mean()
    known = np.broadcast_to(mask > 0, x.shape)
    np.testing.assert_array_equal(_np(res.completed)[known], _np(x)[known])   # bit-exact
    np.testing.assert_array_equal(_np(res.completed)[~known], _np(res.generated)[~known])
    np.testing.assert_allclose(_np(res.generated), _np(gan.generate(z=res.z)), rtol=1e-5, atol=1e-6)
    assert res.completed.dtype == np.float32 and res.z.shape == (5, 8)


def test_the_best_restart_is_kept(small):
    gan, x = small
    mask = ip.make_mask("left")
    res = ip.inpaint(gan, x, mask, steps=30, restarts=4)
    final = _np(res.restart_losses)
    assert final.shape == (4, 5)
    np.testing.assert_allclose(_np(res.losses)[-1], final.min(axis=0))
    # one restart is the first block of the four (same seed, same first draws): never better
    one = ip.inpaint(gan, x, mask, steps=30, restarts=1)
    np.testing.assert_allclose(_np(one.restart_losses)[0], final[0], rtol=1e-4)
    assert np.all(_np(one.losses)[-1] >= _np(res.losses)[-1] - 1e-4)


def test_images_are_completed_independently(small):
    gan, x = small
    mask = ip.make_mask("random", seed=2, fraction=0.5)
    both = ip.inpaint(gan, x, mask, steps=20, restarts=2)
    # per-image masks (N, 1, H, W) equal to the shared one give the same answer
    per = ip.inpaint(gan, x, np.broadcast_to(mask, (5, 1, 28, 28)), steps=20, restarts=2)
    np.testing.assert_allclose(_np(per.completed), _np(both.completed), rtol=1e-5, atol=1e-6)
    # a different image in slot 0 does not change the others' result (restart codes are kept per slot)
    x2 = x.copy()
    x2[0] = 1.0 - x2[0]
    other = ip.inpaint(gan, x2, mask, steps=20, restarts=2)
    np.testing.assert_allclose(_np(other.z)[1:], _np(both.z)[1:], rtol=1e-4, atol=1e-5)


def test_uniform_noise_codes_stay_in_the_prior_support():
    gan = models.mlp(latent_dim=6, g_hidden=(16,), d_hidden=(16,), noise="uniform", seed=0)
    x = gan.generate(4, seed=1) * 0 + 1.0                    # a far target pushes z outwards
    res = ip.inpaint(gan, x, ip.make_mask("top"), steps=40, lr=0.5, restarts=2)
    z = _np(res.z)
    assert np.abs(z).max() <= 1.0 and np.isclose(np.abs(z).max(), 1.0)
    free = ip.inpaint(gan, x, ip.make_mask("top"), steps=40, lr=0.5, restarts=2, clip=None)
    assert np.abs(_np(free.z)).max() > 1.0


def test_conditional_model_with_and_without_labels():
    gan = models.cgan(latent_dim=4, g_hidden=(12,), d_hidden=(10,), seed=2)
    x = gan.generate(3, seed=4, labels=np.array([2, 5, 9]))
    mask = ip.make_mask("bottom")
    res = ip.inpaint(gan, x, mask, labels=np.array([2, 5, 9]), steps=10, restarts=2)
    assert list(_np(res.labels)) == [2, 5, 9] and _np(res.restart_losses).shape == (2, 3)
    search = ip.inpaint(gan, x, mask, steps=10, restarts=2)    # every class tried for every image
    assert _np(search.restart_losses).shape == (20, 3)
    assert np.all((0 <= _np(search.labels)) & (_np(search.labels) < 10))
    blocks = _np(search.restart_losses).argmin(axis=0)
    np.testing.assert_array_equal(_np(search.labels), blocks % 10)


def test_the_model_is_left_as_it_was(small):
    gan, x = small
    gan.G.train()
    gan.D.eval()
    before = {k: _np(v).copy() for k, v in {**gan.G.state_dict(), **{"D" + k: v for k, v in gan.D.state_dict().items()}}.items()}
    ip.inpaint(gan, x, ip.make_mask("center"), steps=5, restarts=2)
    assert gan.G.training and not gan.D.training
    after = {**gan.G.state_dict(), **{"D" + k: v for k, v in gan.D.state_dict().items()}}
    for k, v in after.items():
        np.testing.assert_array_equal(_np(v), before[k])
    assert all(not _np(g).any() for _, _, g in list(gan.G.named_parameters()) + list(gan.D.named_parameters()))


def test_bad_inputs_are_clear_errors(small):
    gan, x = small
    mask = ip.make_mask("center")
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\).*add the channel axis"):
        ip.inpaint(gan, x[:, 0], mask)
    with pytest.raises(ValueError, match="dtype uint8"):
        ip.inpaint(gan, (np.ones((2, 1, 28, 28)) * 255).astype(np.uint8), mask)
    with pytest.raises(ValueError, match=r"pixel range \[0, 1\]"):
        ip.inpaint(gan, _np(x) * 255, mask)
    with pytest.raises(ValueError, match=r"mask: expected shape \(H, W\) = \(28, 28\)"):
        ip.inpaint(gan, x, np.ones((14, 14)))
    with pytest.raises(ValueError, match="mask: expected shape"):
        ip.inpaint(gan, x, np.ones((3, 1, 28, 28)))            # 3 masks for 5 images
    with pytest.raises(ValueError, match="only 0 .missing. and 1 .known."):
        ip.inpaint(gan, x, mask * 0.5)
    with pytest.raises(ValueError, match="not conditional"):
        ip.inpaint(gan, x, mask, labels=np.zeros(5, int))
    with pytest.raises(ValueError, match="perceptual must be one of"):
        ip.inpaint(gan, x, mask, perceptual="wasserstein")
    cg = models.cgan(latent_dim=4, g_hidden=(8,), d_hidden=(8,))
    xc = cg.generate(2, seed=0, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        ip.inpaint(cg, xc, mask, labels=np.array([0, 10]))
    with pytest.raises(ValueError, match="labels must be 2 integers"):
        ip.inpaint(cg, xc, mask, labels=np.array([0.0, 1.0]))


def test_inpaint_runs_on_the_selected_backend(xp_backend):
    """Model, images and results on one backend (CuPy: skipped without a GPU)."""
    gan = models.cgan(latent_dim=4, g_hidden=(12,), d_hidden=(10,), seed=2)
    x = gan.generate(3, seed=4, labels=backend.xp().asarray([2, 5, 9]))
    mask = ip.make_mask("top")
    res = ip.inpaint(gan, x, mask, steps=5, restarts=2)
    assert backend.array_module(res.completed, res.z, res.losses) is backend.xp()
    known = np.broadcast_to(mask > 0, x.shape)
    np.testing.assert_array_equal(_np(res.completed)[known], _np(x)[known])
    host = ip.inpaint(gan, _np(x), mask, steps=5, restarts=2)    # host images are moved to the model
    np.testing.assert_allclose(_np(host.completed), _np(res.completed), rtol=1e-6)
    fill = ip.mean_image_fill(x, x, mask)
    assert backend.array_module(fill) is backend.xp()
    assert ip.completion_error(res.completed, x, mask) >= 0


def test_completion_error_and_mean_fill():
    rng = np.random.default_rng(0)
    orig = rng.uniform(0, 1, (2, 1, 4, 4))
    mask = np.ones((4, 4))
    mask[:, :2] = 0                                           # 8 missing pixels per image
    done = orig.copy()
    done[0, 0, 0, 0] += 0.8                                   # 0.8 error in a missing pixel
    done[1, 0, 3, 3] += 5.0                                   # errors on known pixels do not count
    assert ip.completion_error(done, orig, mask) == pytest.approx(0.8 / 16)
    np.testing.assert_allclose(ip.completion_error(done, orig, mask, per_image=True), [0.1, 0.0])
    train = rng.uniform(0, 1, (50, 1, 4, 4))
    fill = ip.mean_image_fill(train, orig, mask)
    np.testing.assert_array_equal(fill[..., 2:], orig[..., 2:])
    np.testing.assert_allclose(fill[0, 0, :, :2], train.mean(0)[0, :, :2])
    with pytest.raises(ValueError, match="no missing pixels"):
        ip.completion_error(done, orig, np.ones((4, 4)))
    with pytest.raises(ValueError, match="of one shape"):
        ip.completion_error(done[:1], orig, mask)


# ---------------------------------------------------------------------------- any image shape, RGB
def _tiny_shaped(kind, shape):
    if kind == "mlp":
        return models.mlp(latent_dim=5, g_hidden=(12,), d_hidden=(10,), image_shape=shape, seed=1)
    if kind == "cgan":
        return models.cgan(latent_dim=4, g_hidden=(12,), d_hidden=(10,), num_classes=26, image_shape=shape, seed=1)
    g, d = {28: ((4, 3, 2), (2, 3)), 32: ((4, 3, 2), (2, 3, 4)), 64: ((4, 3, 2, 2), (2, 2, 3, 4))}[shape[1]]
    gan = models.dcgan(latent_dim=3, g_channels=g, d_channels=d, init="glorot_uniform", image_shape=shape, seed=1)
    rng = np.random.default_rng(2)
    for name, buf in gan.G.named_buffers():
        if name.endswith("running_mean"):
            buf[...] = rng.normal(0, 0.3, buf.shape)
        elif name.endswith("running_var"):
            buf[...] = rng.uniform(0.5, 2.0, buf.shape)
    return gan


@pytest.mark.parametrize("kind,shape", [("mlp", (3, 8, 6)), ("cgan", (3, 10, 10)), ("dcgan", (3, 32, 32)),
                                        ("dcgan", (1, 64, 64))])
def test_dL_dz_of_rgb_and_larger_images_matches_central_differences(kind, shape):
    """The same check as above for other image shapes: the context term sums |G(z) - x| over
    every channel of every known pixel, weighted by the (H, W) mask's weights."""
    backend.set_default_dtype(np.float64)
    gan = _tiny_shaped(kind, shape).astype(np.float64)
    rng = np.random.default_rng(0)
    n = 2
    lo = -1.0 if gan.output == "tanh" else 0.0
    x = backend.asarray(rng.uniform(lo, 1.0, (n,) + shape))
    mask = ip.make_mask("center", shape=gan.image_shape)
    assert mask.shape == shape[1:]
    w = backend.asarray(ip.context_weights(mask)[None, None].astype(np.float64))
    labels = backend.asarray(np.array([3, 25])) if gan.conditional else None
    z = rng.standard_normal((n, gan.latent_dim))
    with ip._eval_mode(gan):
        loss, grad, fake = ip.inpaint_loss_and_grad(gan, backend.asarray(z), x, w, labels, 0.5)
        num = _numeric_grad(lambda zz: float(ip.inpaint_loss_and_grad(gan, backend.asarray(zz), x, w, labels,
                                                                        0.5)[0].sum()), z)
        logits = _np(gan.D(gan.d_input(fake, labels))).reshape(n)
    grad = _np(grad)
    assert grad.shape == z.shape and np.abs(grad).max() > 1e-6
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-5 * np.abs(num).max())
    diff = np.abs(_np(fake) - _np(x))                                     # (n, C, H, W)
    ctx = sum((_np(w)[:, 0] * diff[:, c]).reshape(n, -1).sum(1) for c in range(shape[0]))
    np.testing.assert_allclose(_np(loss), ctx + 0.5 * np.logaddexp(0, -logits), rtol=1e-10)


def test_rgb_inpainting_keeps_every_channel_of_the_known_pixels():
    gan = _tiny_shaped("dcgan", (3, 32, 32))
    x = gan.generate(3, seed=11)
    mask = ip.make_mask("left", shape=gan.image_shape)              # (C, H, W) -> an (H, W) mask
    assert mask.shape == (32, 32) and (mask == 0).sum() == 16 * 32
    res = ip.inpaint(gan, x, mask, steps=15, restarts=2, lr=0.05)
    assert res.completed.shape == res.generated.shape == (3, 3, 32, 32)
    L = _np(res.losses)
    assert L.shape == (16, 3) and np.all(L[-1] < L[0])
    known = np.broadcast_to(mask > 0, x.shape)                      # the same pixels in every channel
    np.testing.assert_array_equal(_np(res.completed)[known], _np(x)[known])
    np.testing.assert_array_equal(_np(res.completed)[~known], _np(res.generated)[~known])
    masked = _np(ip.masked_images(x, mask, fill=-1.0))
    assert np.all(masked[..., :16] == -1.0) and np.array_equal(masked[..., 16:], _np(x)[..., 16:])
    # the baseline and the error follow the shape too
    fill = _np(ip.mean_image_fill(x, x, mask))
    mean = _np(x).astype(np.float64).mean(0)
    np.testing.assert_allclose(fill[0, :, :, :16], mean[:, :, :16], rtol=1e-6, atol=1e-7)
    assert ip.completion_error(res.completed, x, mask) > 0


def test_rgb_completion_error_counts_every_channel():
    orig = np.zeros((1, 3, 2, 2))
    mask = np.array([[1.0, 0.0], [1.0, 1.0]])                       # one missing pixel, three values
    done = orig.copy()
    done[0, 2, 0, 1] = 0.6                                          # blue is wrong by 0.6
    done[0, 0, 1, 1] = 9.0                                          # known pixels do not count
    assert ip.completion_error(done, orig, mask) == pytest.approx(0.6 / 3)


def test_a_mask_must_have_the_models_image_size(tmp_path):
    gan = _tiny_shaped("mlp", (3, 8, 6))
    x = gan.generate(2, seed=0)
    with pytest.raises(ValueError, match=r"mask: expected shape \(H, W\) = \(8, 6\)"):
        ip.inpaint(gan, x, ip.make_mask("center"), steps=1)          # a 28x28 mask for 8x6 images
    np.save(tmp_path / "m.npy", np.ones((28, 28)))
    with pytest.raises(ValueError, match=r"expected a mask of shape \(8, 6\), got \(28, 28\)"):
        ip.make_mask(tmp_path / "m.npy", shape=gan.image_shape)
    from PIL import Image
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"is 28x28 pixels, expected 6x8 \(W x H\)"):
        ip.make_mask(tmp_path / "m.png", shape=gan.image_shape)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 8, 6\), got \(2, 1, 8, 6\)"):
        ip.inpaint(gan, _np(x)[:, :1], ip.make_mask("center", shape=(8, 6)))
    for bad in ((8,), (1, 2, 8, 6), "8x6", (0, 6)):
        with pytest.raises(ValueError, match=r"shape must be \(H, W\) or \(C, H, W\) with positive sizes"):
            ip.make_mask("center", shape=bad)


# ---------------------------------------------------------------------------- a trained model
@pytest.fixture(scope="module")
def trained():
    """An mlp trained briefly (1,000 steps, 7-16 s on two shared cores) on the first 9,000 bundled digits;
    the last 1,000 are held out and never seen in training."""
    ds = data.load_dataset("mnist-bundled")
    images = ds.as_float(scale="sigmoid")
    gan = models.mlp(latent_dim=32, g_hidden=(128,), d_hidden=(128,), seed=0)
    cfg = TrainConfig(model="mlp", steps=1000, batch_size=64, lr=5e-4, seed=0)
    Trainer(gan, images[:9000], ds.labels[:9000], cfg, quiet=True).train()
    return gan, images[:9000], images[9000:9064]


@pytest.mark.slow
@pytest.mark.parametrize("kind,weighted,bound", [("bottom", False, 0.9), ("random", True, 0.8)])
def test_completion_beats_the_mean_image_on_held_out_digits(trained, kind, weighted, bound):
    gan, train, held = trained
    mask = ip.make_mask(kind, seed=0)
    res = ip.inpaint(gan, held, mask, steps=200, restarts=4, weighted=weighted)
    err = ip.completion_error(res.completed, held, mask)
    base = ip.completion_error(ip.mean_image_fill(train, held, mask), held, mask)
    ratio = err / base
    print(f"\n{kind} mask (weighted={weighted}): GAN {err:.4f} vs mean fill {base:.4f}, ratio {ratio:.3f}")
    assert ratio < bound
    # and the search did the work: the best of the same starting codes, unoptimised, completes worse
    # (measured: 8-20% worse; a single random code is worse than the mean fill)
    start = ip.inpaint(gan, held, mask, steps=0, restarts=4, weighted=weighted)
    assert err < 0.95 * ip.completion_error(start.completed, held, mask)


def test_inpaint_leaves_weight_gradients_alone():
    """The search forms input gradients only (backward_input): G's and D's .grads stay as they were."""
    gan = models.build("dcgan", image_shape=(3, 32, 32), seed=0, spectral_norm=True, dropout=0.0)
    for _, p, g in [*gan.G.named_parameters(), *gan.D.named_parameters()]:
        g[...] = 0.5
    images = np.zeros((1, 3, 32, 32), np.float32)
    ip.inpaint(gan, images, ip.make_mask("center", (32, 32)), steps=2, restarts=2)
    assert all(float(abs(g - 0.5).max()) == 0 for _, _, g in [*gan.G.named_parameters(), *gan.D.named_parameters()])


def test_halving_keeps_the_better_half_and_the_winner_runs_every_step(monkeypatch):
    gan = models.build("dcgan", seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 28, 28)).astype(np.float32)
    mask = ip.make_mask("center")
    full = ip.inpaint(gan, x, mask, steps=16, restarts=8)
    np.testing.assert_array_equal(_np(ip.inpaint(gan, x, mask, steps=16, restarts=8, halving=False).completed),
                                  _np(full.completed))
    sizes, real = [], ip.inpaint_loss_and_grad

    def counting(gan_, z, *args):
        sizes.append(len(z))
        return real(gan_, z, *args)
    monkeypatch.setattr(ip, "inpaint_loss_and_grad", counting)
    half = ip.inpaint(gan, x, mask, steps=16, restarts=8, halving=True)
    # cuts after steps 2, 4 and 8 (16/8, 16/4, 16/2): 8, 4, 2, then 1 candidate per image
    assert sizes == [16] * 2 + [8] * 2 + [4] * 4 + [2] * 8 + [2]
    h, last = _np(half.losses), _np(half.restart_losses)
    assert h.shape == (17, 2) and np.all(h != 0)                     # the winner was searched at every step
    assert last.shape == (8, 2)
    assert np.all(h[-1] <= last.max(axis=0))
