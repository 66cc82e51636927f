"""The three model builders (mlp, cgan, dcgan) and the GAN helper object.

Shapes and value ranges of G and D, the architecture each docstring promises (layer by
layer, with exact parameter counts), summaries, seeding, the conditional inputs
(g_input / d_input / one-hot / d_input_grad_to_images, the latter checked against a
float64 finite difference), dtype casting and the noise distributions.
"""
from __future__ import annotations

import numpy as np
import pytest

from scratchgan import backend, models
from scratchgan.layers import (BatchNorm1d, BatchNorm2d, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten,
                               LeakyReLU, ReLU, Reshape, Sigmoid, Tanh, Upsample2D)

T = backend.to_numpy


def _z(gan, n, seed=0, scale=1.0):
    z = np.random.default_rng(seed).standard_normal((n, gan.latent_dim)) * scale
    return backend.asarray(z, dtype=gan.G.dtype)


def _weights(gan):
    return {f"{net}.{k}": T(v).copy() for net, m in (("G", gan.G), ("D", gan.D)) for k, v in m.state_dict().items()}


BUILDS = [
    ("mlp", {}),
    ("mlp", dict(g_hidden=(200, 500), d_hidden=(500, 200))),
    ("mlp", dict(latent_dim=16, noise="uniform")),
    ("cgan", {}),
    ("cgan", dict(latent_dim=64, noise="uniform")),
    ("dcgan", dict(upsample="transposed")),
    ("dcgan", dict(upsample="nearest")),
    ("dcgan", dict(noise="uniform", latent_dim=32)),
]


# ---------------------------------------------------------------------------- shapes and ranges
@pytest.mark.parametrize("kind,kwargs", BUILDS, ids=[f"{k}-{'-'.join(map(str, kw.values())) or 'default'}"
                                                    for k, kw in BUILDS])
def test_generator_and_discriminator_shapes_and_ranges(kind, kwargs):
    gan = models.build(kind, seed=0, **kwargs)
    n = 4
    assert gan.kind == kind
    assert gan.latent_dim == kwargs.get("latent_dim", 128 if kind == "cgan" else 100)
    assert gan.noise == kwargs.get("noise", "normal")
    labels = backend.asarray(np.array([0, 3, 7, 9])) if gan.conditional else None
    # Large z saturates the output activation: a missing Sigmoid/Tanh would leave the range.
    for scale in (1.0, 50.0):
        z = _z(gan, n, scale=scale)
        for mode in ("train", "eval"):
            getattr(gan.G, mode)()
            img = T(gan.G(gan.g_input(z, labels)))
            assert img.shape == (n, 1, 28, 28)
            assert np.all(np.isfinite(img))
            if gan.output == "sigmoid":
                assert img.min() >= 0.0 and img.max() <= 1.0
            else:
                assert img.min() >= -1.0 and img.max() <= 1.0
        gan.G.train()
    if scale == 50.0 and kind != "dcgan":  # saturated: the range is really used (BN rescales dcgan)
        lo, hi = (0.0, 1.0) if gan.output == "sigmoid" else (-1.0, 1.0)
        assert np.isclose(img.min(), lo, atol=1e-3) and np.isclose(img.max(), hi, atol=1e-3)
    assert gan.output == ("sigmoid" if kind == "mlp" else "tanh")
    # D: one raw logit per item (no sigmoid at the end: BCE is computed on logits)
    images = backend.asarray(np.random.default_rng(1).uniform(-1, 1, (n, 1, 28, 28)) * 30, dtype=gan.D.dtype)
    logits = T(gan.D(gan.d_input(images, labels)))
    assert logits.shape == (n, 1)
    assert np.all(np.isfinite(logits))
    assert not isinstance(gan.D.layers[-1], (Sigmoid, Tanh))
    assert isinstance(gan.D.layers[-1], Dense) and gan.D.layers[-1].out_features == 1
    # generate(): eval mode, (N, 1, 28, 28), leaves G in train mode
    out = T(gan.generate(3, seed=5))
    assert out.shape == (3, 1, 28, 28)
    assert gan.G.training


def test_generate_is_deterministic_and_does_not_touch_state():
    gan = models.dcgan(g_channels=(8, 4, 2), d_channels=(2, 4), seed=0)
    gan.G.forward(_z(gan, 8))  # move running stats away from their initial values
    before = _weights(gan)
    a, b = T(gan.generate(6, seed=3)), T(gan.generate(6, seed=3))
    c = T(gan.generate(6, seed=4))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    after = _weights(gan)
    assert all(np.array_equal(before[k], after[k]) for k in before), "generate() changed weights or BN statistics"
    # eval mode: items do not interact (running statistics, not batch statistics)
    z = _z(gan, 6, seed=9)
    full = T(gan.generate(z=z))
    part = T(gan.generate(z=z[:2]))
    np.testing.assert_allclose(full[:2], part, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- architecture
def _kinds(seq):
    return [type(layer) for layer in seq.layers]


def test_mlp_architecture():
    gan = models.mlp(seed=0)
    G, D = gan.G, gan.D
    assert _kinds(G) == [Dense, ReLU, Dense, Sigmoid, Reshape]
    assert (G[0].in_features, G[0].out_features) == (100, 256)
    assert (G[2].in_features, G[2].out_features) == (256, 784)
    assert G[4].shape == (1, 28, 28)
    assert _kinds(D) == [Flatten, Dense, ReLU, Dense]
    assert (D[1].in_features, D[1].out_features) == (784, 256)
    assert (D[3].in_features, D[3].out_features) == (256, 1)
    assert G.num_parameters() == 100 * 256 + 256 + 256 * 784 + 784
    assert D.num_parameters() == 784 * 256 + 256 + 256 + 1
    assert gan.num_classes == 0 and not gan.conditional


def test_mlp_deeper_architecture():
    gan = models.mlp(g_hidden=(200, 500), d_hidden=(500, 200), seed=0)
    G, D = gan.G, gan.D
    assert _kinds(G) == [Dense, ReLU, Dense, ReLU, Dense, Sigmoid, Reshape]
    assert [(m.in_features, m.out_features) for m in G.layers if isinstance(m, Dense)] == \
        [(100, 200), (200, 500), (500, 784)]
    assert _kinds(D) == [Flatten, Dense, ReLU, Dense, ReLU, Dense]
    assert [(m.in_features, m.out_features) for m in D.layers if isinstance(m, Dense)] == \
        [(784, 500), (500, 200), (200, 1)]


def test_cgan_architecture():
    gan = models.cgan(seed=0)
    G, D = gan.G, gan.D
    assert gan.conditional and gan.num_classes == 10 and gan.latent_dim == 128
    assert _kinds(G) == [Dense, LeakyReLU, Dense, LeakyReLU, Dense, Tanh, Reshape]
    assert [(m.in_features, m.out_features) for m in G.layers if isinstance(m, Dense)] == \
        [(128 + 10, 256), (256, 512), (512, 784)]
    assert _kinds(D) == [Dense, LeakyReLU, Dropout, Dense, LeakyReLU, Dropout, Dense]
    assert [(m.in_features, m.out_features) for m in D.layers if isinstance(m, Dense)] == \
        [(784 + 10, 512), (512, 256), (256, 1)]
    assert all(m.negative_slope == 0.2 for m in G.layers + D.layers if isinstance(m, LeakyReLU))
    drops = [m for m in D.layers if isinstance(m, Dropout)]
    assert all(m.p == 0.3 for m in drops)
    assert drops[0].seed != drops[1].seed, "both Dropout layers would draw the same masks"
    assert G.num_parameters() == 138 * 256 + 256 + 256 * 512 + 512 + 512 * 784 + 784
    assert D.num_parameters() == 794 * 512 + 512 + 512 * 256 + 256 + 256 + 1


def _dcgan_g_params(latent, c0, c1, c2):
    return (latent * 49 * c0 + 2 * 49 * c0      # Dense without bias + BatchNorm1d
            + c0 * c1 * 25 + 2 * c1              # stride-1 ConvT without bias + BN
            + c1 * c2 * 25 + 2 * c2              # stride-2 ConvT without bias + BN
            + c2 * 1 * 25 + 1)                   # last ConvT with bias


def test_dcgan_architecture_transposed():
    gan = models.dcgan(seed=0)
    G, D = gan.G, gan.D
    assert _kinds(G) == [Dense, BatchNorm1d, LeakyReLU, Reshape,
                         ConvTranspose2D, BatchNorm2d, LeakyReLU,
                         ConvTranspose2D, BatchNorm2d, LeakyReLU,
                         ConvTranspose2D, Tanh]
    dense = G[0]
    assert (dense.in_features, dense.out_features, dense.use_bias) == (100, 12544, False)
    assert "bias" not in dense.params
    assert G[1].num_features == 12544
    assert G[3].shape == (256, 7, 7)
    ct1, ct2, ct3 = G[4], G[7], G[10]
    assert (ct1.in_channels, ct1.out_channels, ct1.kernel_size, ct1.stride, ct1.padding, ct1.output_padding,
            ct1.use_bias) == (256, 128, (5, 5), (1, 1), (2, 2), (0, 0), False)
    assert (ct2.in_channels, ct2.out_channels, ct2.kernel_size, ct2.stride, ct2.padding, ct2.output_padding,
            ct2.use_bias) == (128, 64, (5, 5), (2, 2), (2, 2), (1, 1), False)
    assert (ct3.in_channels, ct3.out_channels, ct3.kernel_size, ct3.stride, ct3.padding, ct3.output_padding,
            ct3.use_bias) == (64, 1, (5, 5), (2, 2), (2, 2), (1, 1), True)
    assert T(ct1.params["weight"]).shape == (256, 128, 5, 5)  # (in, out, kh, kw)
    assert G[5].num_features == 128 and G[8].num_features == 64
    assert all(m.negative_slope == 0.2 for m in G.layers + D.layers if isinstance(m, LeakyReLU))
    assert _kinds(D) == [Conv2D, LeakyReLU, Dropout, Conv2D, LeakyReLU, Dropout, Flatten, Dense]
    c1, c2 = D[0], D[3]
    assert (c1.in_channels, c1.out_channels, c1.kernel_size, c1.stride, c1.padding) == (1, 64, (5, 5), (2, 2), (2, 2))
    assert (c2.in_channels, c2.out_channels, c2.kernel_size, c2.stride, c2.padding) == (64, 128, (5, 5), (2, 2), (2, 2))
    assert c1.use_bias and c2.use_bias
    assert D[2].p == 0.3 and D[5].p == 0.3
    assert (D[7].in_features, D[7].out_features) == (128 * 7 * 7, 1)
    assert G.num_parameters() == _dcgan_g_params(100, 256, 128, 64) == 2_305_473
    assert D.num_parameters() == (25 * 64 + 64) + (64 * 128 * 25 + 128) + (6272 + 1) == 212_865
    # intermediate shapes: 7x7 -> 7x7 -> 14x14 -> 28x28 and 28 -> 14 -> 7 in D
    X = _z(gan, 2)
    shapes = []
    gan.G.eval()
    for layer in G.layers:
        X = layer(X)
        shapes.append(tuple(X.shape[1:]))
    assert shapes[3] == (256, 7, 7) and shapes[4] == (128, 7, 7) and shapes[7] == (64, 14, 14)
    assert shapes[10] == (1, 28, 28)
    dshapes = []
    for layer in D.layers:
        X = layer(X)
        dshapes.append(tuple(X.shape[1:]))
    assert dshapes[0] == (64, 14, 14) and dshapes[3] == (128, 7, 7) and dshapes[-1] == (1,)


def test_dcgan_architecture_nearest():
    gan = models.dcgan(upsample="nearest", seed=0)
    G = gan.G
    assert _kinds(G) == [Dense, BatchNorm1d, LeakyReLU, Reshape,
                         ConvTranspose2D, BatchNorm2d, LeakyReLU,
                         Upsample2D, Conv2D, BatchNorm2d, LeakyReLU,
                         Upsample2D, Conv2D, Tanh]
    assert G[7].scale_factor == 2 and G[11].scale_factor == 2
    assert (G[8].in_channels, G[8].out_channels, G[8].kernel_size, G[8].stride, G[8].padding, G[8].use_bias) == \
        (128, 64, (5, 5), (1, 1), (2, 2), False)
    assert (G[12].in_channels, G[12].out_channels, G[12].use_bias) == (64, 1, True)
    # same parameter count as the transposed variant (a 5x5 conv has as many weights)
    assert G.num_parameters() == _dcgan_g_params(100, 256, 128, 64)


def test_dcgan_rejects_unknown_upsample_and_build_rejects_unknown_model():
    with pytest.raises(ValueError, match="upsample"):
        models.dcgan(upsample="bilinear")
    with pytest.raises(ValueError, match="unknown model 'vae'"):
        models.build("vae")


def test_dcgan_init_is_normal_002_and_small_variant_sizes():
    gan = models.dcgan(seed=0)
    w = T(gan.G[0].params["weight"])
    assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3
    assert np.all(T(gan.G[1].params["weight"]) == 1) and np.all(T(gan.G[1].params["bias"]) == 0)
    tiny = models.dcgan(latent_dim=10, g_channels=(8, 4, 2), d_channels=(2, 4), seed=0)
    assert tiny.G.num_parameters() == _dcgan_g_params(10, 8, 4, 2)
    assert (tiny.D[7].in_features, tiny.D[7].out_features) == (4 * 49, 1)


# ---------------------------------------------------------------------------- summary
@pytest.mark.parametrize("kind", ["mlp", "cgan", "dcgan"])
def test_summary_lists_layers_and_total(kind):
    gan = models.build(kind, seed=0)
    before = _weights(gan)
    printed = []
    g_in = (gan.latent_dim + gan.num_classes,)
    d_in = (784 + gan.num_classes,) if gan.conditional else (1, 28, 28)
    assert gan.d_input_shape == d_in and gan.image_shape == (1, 28, 28)
    for net, shape in ((gan.G, g_in), (gan.D, d_in)):
        text = net.summary(shape, print_fn=printed.append)
        assert printed[-1] == text
        for i, layer in enumerate(net.layers):
            assert f"{i}: {layer!r}" in text
        assert f"Total params: {net.num_parameters():,}" in text
        # the per-layer column adds up to the total
        rows = [line for line in text.splitlines() if line[:1].isdigit()]
        assert len(rows) == len(net.layers)
        assert sum(int(r.split()[-1].replace(",", "")) for r in rows) == net.num_parameters()
        assert net.training  # mode restored
    assert "(None, 1, 28, 28)" in gan.G.summary(g_in, print_fn=None)
    assert "(None, 1)" in gan.D.summary(d_in, print_fn=None)
    if kind == "dcgan":
        text = gan.G.summary(g_in, print_fn=None)
        assert "Dense(100, 12544, bias=False)" in text and "(None, 256, 7, 7)" in text
        assert "Total params: 2,305,473" in text
    after = _weights(gan)
    assert all(np.array_equal(before[k], after[k]) for k in before), "summary() changed state"


# ---------------------------------------------------------------------------- seeding
@pytest.mark.parametrize("kind", ["mlp", "cgan", "dcgan"])
def test_same_seed_same_weights_different_seed_different(kind):
    small = dict(mlp=dict(g_hidden=(16,), d_hidden=(16,)), cgan=dict(g_hidden=(16,), d_hidden=(16,)),
                 dcgan=dict(g_channels=(8, 4, 2), d_channels=(2, 4)))[kind]
    a, b, c = (_weights(models.build(kind, seed=s, **small)) for s in (7, 7, 8))
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    params = [k for k in a if k.endswith("weight") and np.std(a[k]) > 0]
    assert params and all(not np.array_equal(a[k], c[k]) for k in params)
    # the Dropout seeds follow the model seed too
    ga, gc = models.build(kind, seed=7, **small), models.build(kind, seed=8, **small)
    da = [m.seed for m in ga.D.layers if isinstance(m, Dropout)]
    dc = [m.seed for m in gc.D.layers if isinstance(m, Dropout)]
    assert da == dc == [] or da != dc


@pytest.mark.parametrize("kind", ["mlp", "cgan", "dcgan"])
def test_config_rebuilds_the_same_model(kind):
    """GAN.config holds the builder's arguments: build(kind, **config) gives the same weights."""
    small = dict(mlp=dict(g_hidden=(16,), d_hidden=(16,), noise="uniform"),
                 cgan=dict(g_hidden=(16,), d_hidden=(16,), latent_dim=12, dropout=0.1),
                 dcgan=dict(g_channels=(8, 4, 2), d_channels=(2, 4), upsample="nearest", latent_dim=9))[kind]
    gan = models.build(kind, seed=3, **small)
    again = models.build(gan.kind, **gan.config)
    a, b = _weights(gan), _weights(again)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (again.latent_dim, again.noise, again.output, again.num_classes) == \
        (gan.latent_dim, gan.noise, gan.output, gan.num_classes)


# ---------------------------------------------------------------------------- conditional inputs
def test_g_input_and_d_input_shapes_and_one_hot():
    gan = models.cgan(g_hidden=(16,), d_hidden=(16,), seed=0)
    labels = backend.asarray(np.array([3, 0, 9, 3]))
    z = _z(gan, 4)
    gi = T(gan.g_input(z, labels))
    assert gi.shape == (4, 128 + 10) and gi.dtype == np.float32
    np.testing.assert_array_equal(gi[:, :128], T(z))
    np.testing.assert_array_equal(gi[:, 128:], np.eye(10, dtype=np.float32)[[3, 0, 9, 3]])
    images = backend.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 1, 28, 28)), dtype=np.float32)
    di = T(gan.d_input(images, labels))
    assert di.shape == (4, 784 + 10)
    np.testing.assert_array_equal(di[:, :784], T(images).reshape(4, 784))
    np.testing.assert_array_equal(di[:, 784:], np.eye(10, dtype=np.float32)[[3, 0, 9, 3]])
    assert T(gan.one_hot(labels)).sum(axis=1).tolist() == [1, 1, 1, 1]
    # unconditional models pass their inputs through unchanged
    plain = models.mlp(g_hidden=(16,), d_hidden=(16,), seed=0)
    zz = _z(plain, 2)
    assert plain.g_input(zz) is zz and plain.d_input(images) is images
    assert plain.d_input_grad_to_images(images, images.shape) is images


def test_cgan_generate_with_chosen_labels():
    gan = models.cgan(g_hidden=(16,), d_hidden=(16,), seed=0)
    z = _z(gan, 3, seed=1)
    threes = T(gan.generate(z=z, labels=[3, 3, 3]))
    sevens = T(gan.generate(z=z, labels=np.array([7, 7, 7])))
    expected = T(gan.G(gan.g_input(z, backend.asarray(np.array([3, 3, 3])))))
    np.testing.assert_array_equal(threes, expected)
    assert threes.shape == (3, 1, 28, 28)
    assert not np.allclose(threes, sevens), "the label has no effect on the generated images"
    # the label is what differs, not the noise: same z, same label -> same image
    np.testing.assert_allclose(T(gan.generate(z=z[:1], labels=[3])), threes[:1], rtol=1e-5, atol=1e-6)
    # default labels cycle through the classes
    default = T(gan.generate(12, seed=2))
    z12 = gan.sample_noise(12, backend.random_generator(backend.xp(), 2, 0))
    cyc = T(gan.generate(z=z12, labels=np.arange(12) % 10))
    np.testing.assert_array_equal(default, cyc)


def test_d_input_grad_to_images_matches_finite_difference():
    """dL/dimages through d_input + D (cgan, float64) by central differences."""
    gan = models.cgan(g_hidden=(8,), d_hidden=(12, 6), dropout=0.0, seed=0).astype(np.float64)
    rng = np.random.default_rng(0)
    images = backend.asarray(rng.uniform(-1, 1, (3, 1, 28, 28)))
    labels = backend.asarray(np.array([1, 4, 8]))
    R = backend.asarray(rng.standard_normal((3, 1)))

    def L(imgs):
        return float((gan.D(gan.d_input(imgs, labels)) * R).sum())

    gan.D.zero_grad()
    logits, cache = gan.D.forward(gan.d_input(images, labels))
    d_in = gan.D.backward(R, cache)
    assert T(d_in).shape == (3, 794)
    d_img = T(gan.d_input_grad_to_images(d_in, images.shape))
    assert d_img.shape == (3, 1, 28, 28)
    flat = images.reshape(-1)
    h = 1e-6
    idx = rng.choice(flat.size, 40, replace=False)
    numeric = []
    for i in idx:
        old = float(flat[i])
        flat[i] = old + h
        plus = L(images)
        flat[i] = old - h
        minus = L(images)
        flat[i] = old
        numeric.append((plus - minus) / (2 * h))
    np.testing.assert_allclose(d_img.reshape(-1)[idx], numeric, rtol=1e-6, atol=1e-9)
    # it is the image part: the label columns are dropped, not mixed in
    np.testing.assert_array_equal(d_img.reshape(3, -1), T(d_in)[:, :784])


# ---------------------------------------------------------------------------- dtype and noise
@pytest.mark.parametrize("kind", ["mlp", "cgan", "dcgan"])
def test_astype_float64(kind):
    small = dict(mlp=dict(g_hidden=(16,), d_hidden=(16,)), cgan=dict(g_hidden=(16,), d_hidden=(16,)),
                 dcgan=dict(g_channels=(8, 4, 2), d_channels=(2, 4)))[kind]
    gan = models.build(kind, seed=0, **small)
    w32 = _weights(gan)
    assert gan.G.dtype == np.float32 and gan.D.dtype == np.float32
    assert gan.astype(np.float64) is gan
    assert gan.G.dtype == np.float64 and gan.D.dtype == np.float64
    for net in (gan.G, gan.D):
        for name, a in net.state_dict().items():
            if np.dtype(a.dtype).kind == "f":
                assert a.dtype == np.float64, name
        for _, _, g in net.named_parameters():
            assert g.dtype == np.float64
    w64 = _weights(gan)
    assert all(np.array_equal(w32[k].astype(np.float64), w64[k]) for k in w32)
    z = gan.sample_noise(2, backend.random_generator(backend.xp(), 0, 0))
    assert z.dtype == np.float64
    assert gan.generate(2).dtype == np.float64
    labels = backend.asarray(np.array([1, 2])) if gan.conditional else None
    logits = gan.D(gan.d_input(gan.generate(2), labels))
    assert logits.dtype == np.float64 and tuple(logits.shape) == (2, 1)


def test_sample_noise_distributions():
    xp = backend.xp()
    uni = models.mlp(g_hidden=(16,), d_hidden=(16,), noise="uniform", latent_dim=50, seed=0)
    z = T(uni.sample_noise(2000, backend.random_generator(xp, 0, 0)))
    assert z.shape == (2000, 50) and z.dtype == np.float32
    assert z.min() >= -1.0 and z.max() <= 1.0
    assert z.min() < -0.99 and z.max() > 0.99          # the whole interval is used
    assert abs(z.mean()) < 0.02 and abs(z.var() - 1 / 3) < 0.02
    nor = models.mlp(g_hidden=(16,), d_hidden=(16,), latent_dim=50, seed=0)
    z = T(nor.sample_noise(2000, backend.random_generator(xp, 0, 0)))
    assert z.shape == (2000, 50) and z.dtype == np.float32
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02 and np.abs(z).max() > 3
    # same generator state -> same noise
    a = T(nor.sample_noise(5, backend.random_generator(xp, 4, 1)))
    b = T(nor.sample_noise(5, backend.random_generator(xp, 4, 1)))
    assert np.array_equal(a, b)
