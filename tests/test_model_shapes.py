"""Models sized by the data: every builder for grey and RGB images of 28, 32 and 64 pixels.

* the 1x28x28 defaults are bit-identical to the models before image shapes existed (weight
  checksums computed from that code) and their configs have no new key;
* G maps z to (N, C, H, W) and D that to (N, 1) for dcgan (transposed and nearest, with and
  without spectral norm), mlp and cgan at every size; the 32 and 64 DCGANs have the DCGAN
  paper's layers (4x4 start, 5x5 stride-2 doubling, D down to 4x4);
* float64 gradchecks of the G -> D chain through the non-saturating G loss for the new stacks;
* a Trainer step at every size, a 3x32x32 run that reloads with its shape (and a bad one refused);
* grids: grey PNGs byte for byte as before, RGB grids as RGB PNGs with every tile in place.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchgan import backend, losses, models
from scratchgan.files import images
from scratchgan.evaluation.bench import iteration_flops, model_flops
from scratchgan.gradcheck import gradcheck
from scratchgan.layers import (BatchNorm1d, BatchNorm2d, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten,
                               LeakyReLU, Reshape, Sequential, SpectralNorm, Tanh, Upsample2D)
from scratchgan.training import TrainConfig, Trainer, load_run

T = backend.to_numpy
SIZES = (28, 32, 64)
CHANNELS = (1, 3)


def _digest(gan):
    """sha256 over G's then D's state_dict: each entry's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for net in (gan.G, gan.D):
        for k, v in net.state_dict().items():
            a = np.ascontiguousarray(T(v))
            h.update(k.encode())
            h.update(str(a.dtype).encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- the defaults are unchanged
# Computed with _digest from the builders as they were before image_shape was added (commit 1a467f0).
BEFORE = {
    "dcgan": ({}, "523fbd2fa8a942eaafd7b55ad243c6fe59f64a6bd0e44428fd4cd87d088f0d48"),
    "dcgan-nearest": (dict(upsample="nearest"), "2a049bd416b543c0dfca5823c0d84fed0d4e31f1486e4ff16091fb5d8d816579"),
    "dcgan-sn": (dict(spectral_norm=True), "2fbc277d15728016f6c9bf813e3f64f2e6a8516e359b790c36fe0466b0e852ae"),
    "dcgan-seed3": (dict(seed=3), "332fdc3a83be991d231486ffe104703c76436e07fa75507564f83a2390d7def7"),
    "mlp": ({}, "aac132c894bb55cc3b28d7fb1bdfd548fb3a0641ab8aead879c99b2d5acda36e"),
    "mlp-sn": (dict(spectral_norm=True), "f445e90b26770082924466487186096a29fbcde122f6f1636be39853b5f0d666"),
    "cgan": ({}, "7aef891bc1d4ae5d0a3843b1b96e9022cdf562d2c7c240705577aad9d2caa246"),
    "cgan-sn": (dict(spectral_norm=True), "49023cafc6e0110949e3540daa0fc7049d57c5ac706370386306596c10742e7c"),
}
CONFIG_BEFORE = {
    "dcgan": dict(latent_dim=100, g_channels=[256, 128, 64], d_channels=[64, 128], upsample="transposed",
                  dropout=0.3, noise="normal", seed=0, init="dcgan"),
    "mlp": dict(latent_dim=100, g_hidden=[256], d_hidden=[256], noise="normal", seed=0, init="glorot_uniform"),
    "cgan": dict(latent_dim=128, num_classes=10, g_hidden=[256, 512], d_hidden=[512, 256], dropout=0.3,
                 noise="normal", seed=0, init="glorot_uniform"),
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_default_models_are_bit_identical_to_before(name):
    kwargs, expected = BEFORE[name]
    kind = name.split("-")[0]
    gan = models.build(kind, **{"seed": 0, **kwargs})
    assert _digest(gan) == expected, f"the default {name} model's weights changed"
    # the same weights when the default shape is given explicitly, as a tuple or as JSON's list
    same = models.build(kind, **{"seed": 0, **kwargs, "image_shape": [1, 28, 28]})
    assert _digest(same) == expected
    assert gan.image_shape == same.image_shape == (1, 28, 28)
    assert "image_shape" not in gan.config and "image_shape" not in same.config   # old checkpoints' config


@pytest.mark.parametrize("kind", ["dcgan", "mlp", "cgan"])
def test_default_configs_are_as_before(kind):
    assert models.build(kind, seed=0).config == CONFIG_BEFORE[kind]
    # the default channel counts are the 28x28 ones, given or not
    if kind == "dcgan":
        assert models.dcgan(g_channels=(256, 128, 64), d_channels=(64, 128), seed=0).config == CONFIG_BEFORE[kind]


# ---------------------------------------------------------------------------- every size, every model
TINY_DCGAN = {28: ((4, 3, 2), (2, 3)), 32: ((4, 3, 2), (2, 3, 4)), 64: ((4, 3, 2, 2), (2, 2, 3, 4))}
VARIANTS = ["dcgan", "dcgan-nearest", "dcgan-sn", "dcgan-nearest-sn", "mlp", "cgan"]


def _build(variant, shape, seed=0, **kw):
    kind = variant.split("-")[0]
    if kind == "dcgan":
        g, d = TINY_DCGAN[shape[1]]
        kw = dict(g_channels=g, d_channels=d, upsample="nearest" if "nearest" in variant else "transposed",
                  spectral_norm="sn" in variant, minibatch_std="mbstd" in variant, **kw)
    elif kind == "mlp":
        kw = dict(g_hidden=(6,), d_hidden=(5,), **kw)
    else:
        kw = dict(g_hidden=(6,), d_hidden=(5,), num_classes=26, **kw)
    return models.build(kind, seed=seed, image_shape=shape, **kw)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
def test_g_makes_images_of_the_shape_and_d_one_logit_each(size, channels, variant):
    shape = (channels, size, size)
    gan = _build(variant, shape)
    built = _digest(gan)                                     # before train-mode BatchNorm moves its statistics
    assert gan.image_shape == shape
    n = 3
    labels = backend.asarray(np.array([0, 13, 25])) if gan.conditional else None
    z = gan.sample_noise(n, backend.random_generator(backend.xp(), 1, 0))
    for mode in ("train", "eval"):
        getattr(gan.G, mode)()
        x = T(gan.G(gan.g_input(z, labels)))
        assert x.shape == (n,) + shape and np.isfinite(x).all()
        lo = 0.0 if gan.output == "sigmoid" else -1.0
        assert x.min() >= lo and x.max() <= 1.0
        assert x.std() > 0                                   # not a constant image
    gan.G.train()
    logits = T(gan.D(gan.d_input(backend.asarray(x), labels)))
    assert logits.shape == (n, 1) and np.isfinite(logits).all()
    assert T(gan.generate(2, seed=3)).shape == (2,) + shape
    # D's input per item, as the summary and the benchmark need it
    assert gan.d_input_shape == ((int(np.prod(shape)) + 26,) if gan.conditional else shape)
    # the config records the shape (not the default) and rebuilds the same model
    expected = None if shape == (1, 28, 28) else list(shape)
    assert gan.config.get("image_shape") == expected
    again = models.build(gan.kind, **json.loads(json.dumps(gan.config)))
    assert again.image_shape == shape and _digest(again) == built


def _kinds(seq):
    return [type(m) for m in seq.layers]


def _g_params(latent, start, g_ch, channels):
    n = latent * start * start * g_ch[0] + 2 * start * start * g_ch[0]         # Dense (no bias) + BatchNorm1d
    outs = list(g_ch[1:]) + [channels]
    for cin, cout in zip(g_ch[:-1], outs[:-1]):
        n += cin * cout * 25 + 2 * cout                                      # conv (no bias) + BatchNorm2d
    return n + g_ch[-1] * channels * 25 + channels                            # last conv, with bias


def _d_params(channels, d_ch, end):
    n, cin = 0, channels
    for cout in d_ch:
        n += cin * cout * 25 + cout
        cin = cout
    return n + cin * end * end + 1


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", [32, 64])
def test_dcgan_32_and_64_have_the_paper_layers(size, channels):
    gan = models.dcgan(image_shape=(channels, size, size), seed=0)
    g_ch, d_ch = models.DCGAN_CHANNELS[size]
    assert g_ch == ((256, 128, 64) if size == 32 else (256, 128, 64, 32))
    assert d_ch == ((64, 128, 256) if size == 32 else (32, 64, 128, 256))
    assert gan.config["g_channels"] == list(g_ch) and gan.config["d_channels"] == list(d_ch)
    stages = {32: 3, 64: 4}[size]
    G, D = gan.G, gan.D
    assert _kinds(G) == [Dense, BatchNorm1d, LeakyReLU, Reshape] + \
        [ConvTranspose2D, BatchNorm2d, LeakyReLU] * (stages - 1) + [ConvTranspose2D, Tanh]
    assert (G[0].in_features, G[0].out_features, G[0].use_bias) == (100, 16 * g_ch[0], False)
    assert G[3].shape == (g_ch[0], 4, 4)
    convs = [m for m in G.layers if isinstance(m, ConvTranspose2D)]
    outs = list(g_ch[1:]) + [channels]
    for i, m in enumerate(convs):
        assert (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.output_padding) == \
            (g_ch[i], outs[i], (5, 5), (2, 2), (2, 2), (1, 1))
        assert m.use_bias == (i == stages - 1)
    assert all(m.negative_slope == 0.2 for m in G.layers + D.layers if isinstance(m, LeakyReLU))
    assert _kinds(D) == [Conv2D, LeakyReLU, Dropout] * stages + [Flatten, Dense]
    dconvs = [m for m in D.layers if isinstance(m, Conv2D)]
    ins = [channels] + list(d_ch[:-1])
    for m, cin, cout in zip(dconvs, ins, d_ch):
        assert (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.use_bias) == \
            (cin, cout, (5, 5), (2, 2), (2, 2), True)
    drops = [m for m in D.layers if isinstance(m, Dropout)]
    assert all(m.p == 0.3 for m in drops) and len({m.seed for m in drops}) == stages
    assert (D[-1].in_features, D[-1].out_features) == (d_ch[-1] * 16, 1)
    assert G.num_parameters() == _g_params(100, 4, g_ch, channels)
    assert D.num_parameters() == _d_params(channels, d_ch, 4)
    # the maps double from 4x4 in G and halve down to 4x4 in D
    X = gan.sample_noise(2, backend.random_generator(backend.xp(), 0, 0))
    G.eval()
    sides = []
    for layer in G.layers:
        X = layer(X)
        if X.ndim == 4:
            sides.append(X.shape[2])
    assert sorted(set(sides)) == [4 * 2 ** i for i in range(stages + 1)] and tuple(X.shape[1:]) == gan.image_shape
    dsides = []
    for layer in D.layers:
        X = layer(X)
        if isinstance(layer, Conv2D):
            dsides.append(X.shape[2])
    assert dsides == [size // 2 ** (i + 1) for i in range(stages)] and dsides[-1] == 4
    # nearest: Upsample2D(2) + a 5x5 stride-1 conv for every transposed conv, same parameters
    near = models.dcgan(image_shape=(channels, size, size), upsample="nearest", seed=0)
    assert sum(isinstance(m, Upsample2D) for m in near.G.layers) == stages
    assert all(m.stride == (1, 1) and m.padding == (2, 2) for m in near.G.layers if isinstance(m, Conv2D))
    assert near.G.num_parameters() == G.num_parameters()


def test_dcgan_rgb_28_changes_only_the_image_channels():
    grey, rgb = models.dcgan(seed=0), models.dcgan(image_shape=(3, 28, 28), seed=0)
    assert _kinds(grey.G) == _kinds(rgb.G) and _kinds(grey.D) == _kinds(rgb.D)
    assert (rgb.G[10].in_channels, rgb.G[10].out_channels) == (64, 3) and rgb.D[0].in_channels == 3
    assert rgb.G.num_parameters() - grey.G.num_parameters() == 2 * (64 * 25 + 1)
    assert rgb.D.num_parameters() - grey.D.num_parameters() == 2 * 25 * 64


def test_spectral_norm_wraps_every_d_weight_layer_at_every_size():
    for size in SIZES:
        gan = models.dcgan(image_shape=(3, size, size), spectral_norm=True, seed=0)
        wrapped = [m for m in gan.D.layers if isinstance(m, SpectralNorm)]
        plain = [m for m in gan.D.layers if isinstance(m, (Conv2D, Dense))]
        assert len(wrapped) == len(gan.config["d_channels"]) + 1 and not plain
        assert gan.config["spectral_norm"] is True


@pytest.mark.parametrize("kind", ["mlp", "cgan"])
@given(c=st.sampled_from(CHANNELS), h=st.integers(1, 12), w=st.integers(1, 12), classes=st.integers(1, 30))
def test_mlp_and_cgan_take_any_flat_size(kind, c, h, w, classes):
    extra = dict(num_classes=classes) if kind == "cgan" else {}
    gan = models.build(kind, image_shape=(c, h, w), g_hidden=(4,), d_hidden=(3,), seed=0, **extra)
    n_pix = c * h * w
    dense = [m for m in gan.G.layers if isinstance(m, Dense)]
    assert dense[-1].out_features == n_pix and gan.G.layers[-1].shape == (c, h, w)
    d_in = [m for m in gan.D.layers if isinstance(m, Dense)][0].in_features
    assert d_in == n_pix + gan.num_classes
    labels = backend.asarray(np.arange(2) % max(classes, 1)) if gan.conditional else None
    x = gan.generate(2, seed=0, labels=labels)
    assert tuple(x.shape) == (2, c, h, w)
    assert tuple(gan.D(gan.d_input(x, labels)).shape) == (2, 1)
    if kind == "cgan":
        assert gan.num_classes == classes and gan.config["num_classes"] == classes


def test_bad_shapes_and_channel_counts_are_clear_errors():
    with pytest.raises(ValueError, match=r"dcgan: image_shape \(3, 30, 30\) is 30x30 pixels; this model takes "
                                         r"square images of 28, 32 or 64 pixels"):
        models.dcgan(image_shape=(3, 30, 30))
    with pytest.raises(ValueError, match=r"dcgan: image_shape \(1, 32, 64\) is 32x64 pixels"):
        models.dcgan(image_shape=(1, 32, 64))
    with pytest.raises(ValueError, match=r"image_shape \(2, 32, 32\) has 2 channels; expected 1 \(grey\) or 3 \(RGB\)"):
        models.dcgan(image_shape=(2, 32, 32))
    with pytest.raises(ValueError, match=r"mlp: image_shape \(4, 8, 8\) has 4 channels"):
        models.mlp(image_shape=(4, 8, 8))
    for bad in ((28, 28), (1, 28, 28, 1), "1x28x28", (1, 0, 28), (1.0, 28, 28), (True, 28, 28), None):
        with pytest.raises(ValueError, match=r"cgan: image_shape must be \(C, H, W\), three positive integers"):
            models.cgan(image_shape=bad)
    with pytest.raises(ValueError, match=r"at most 1024 per side"):
        models.mlp(image_shape=(1, 2048, 8))
    with pytest.raises(ValueError, match=r"dcgan: g_channels for 32x32 images needs 3 positive channel counts, "
                                         r"one per stage \(default \(256, 128, 64\)\), got 4 \(\(8, 8, 8, 8\)\)"):
        models.dcgan(image_shape=(3, 32, 32), g_channels=(8, 8, 8, 8))
    with pytest.raises(ValueError, match=r"d_channels for 64x64 images needs 4 positive channel counts"):
        models.dcgan(image_shape=(3, 64, 64), d_channels=(8, 8, 8))
    with pytest.raises(ValueError, match=r"d_channels for 28x28 images needs 2 positive channel counts"):
        models.dcgan(d_channels=(8, 8, 8))
    with pytest.raises(ValueError, match=r"g_channels for 64x64 images needs 4 .*got 4 \(\(8, 0, 8, 8\)\)"):
        models.dcgan(image_shape=(1, 64, 64), g_channels=(8, 0, 8, 8))


# ---------------------------------------------------------------------------- gradients of the new stacks
def _randomise(net, rng):
    """Random BatchNorm affine parameters, running statistics and biases (the weights keep their
    Glorot draw, so no activation saturates): no factor of 1 or 0 can hide a missing term."""
    for _, m in net.named_modules():
        for k, p in m.params.items():
            if isinstance(m, (BatchNorm1d, BatchNorm2d)) and k == "weight":
                vals = rng.uniform(0.5, 2.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
            elif k == "bias":
                vals = rng.normal(0.0, 0.3, p.shape)
            else:
                continue
            p[...] = backend.asarray(vals.astype(T(p).dtype))
        if "running_mean" in m.buffers:
            m.buffers["running_mean"][...] = backend.asarray(rng.normal(0, 0.3, m.buffers["running_mean"].shape))
            m.buffers["running_var"][...] = backend.asarray(rng.uniform(0.5, 2.0, m.buffers["running_var"].shape))


GRAD_CASES = [
    ("dcgan", (3, 32, 32), "train"), ("dcgan-nearest", (1, 32, 32), "train"),
    ("dcgan", (1, 64, 64), "train"), ("dcgan-nearest", (3, 64, 64), "eval"),
    ("dcgan-sn", (3, 32, 32), "train"), ("dcgan", (3, 28, 28), "train"), ("mlp", (3, 6, 5), "train"),
    ("dcgan-mbstd", (1, 28, 28), "train"), ("dcgan-sn-mbstd", (1, 32, 32), "eval"),
]


@pytest.mark.parametrize("variant,shape,g_mode", GRAD_CASES, ids=[f"{v}-{'x'.join(map(str, s))}-{m}"
                                                                 for v, s, m in GRAD_CASES])
def test_g_to_d_chain_gradcheck(variant, shape, g_mode):
    """Sequential(G, D) through the non-saturating G loss, float64: every parameter of both nets
    and z. G in train mode uses batch statistics (batch 3: with 2 items BatchNorm1d's output is
    +-1 whatever its input, which would hide the Dense layer's gradient); D keeps its Dropout,
    except with spectral norm, whose u, v are held fixed (eval) for an exact check."""
    kw = {} if variant == "mlp" else dict(init="glorot_uniform", latent_dim=3)
    gan = _build(variant, shape, seed=1, **kw)
    _randomise(gan.G, np.random.default_rng(2))
    _randomise(gan.D, np.random.default_rng(3))
    chain = Sequential(gan.G, gan.D)
    gan.G.train(g_mode == "train")
    gan.D.train("sn" not in variant)
    z = np.random.default_rng(4).standard_normal((3, gan.latent_dim))
    result = gradcheck(chain, backend.asarray(z), loss=losses.g_loss_nonsaturating, max_elements=8, seed=5)
    expected = {"input"} | {name for name, _, _ in chain.named_parameters()}
    assert {r.name for r in result.rows} == expected, str(result)
    assert result.passed, str(result)
    # every tensor passes on its relative error, none only as "~0": no gradient is vacuously zero
    for r in result.rows:
        assert r.checked > 0 and r.rel_error < 1e-6 and r.verdict == "pass", str(result)


# ---------------------------------------------------------------------------- training at every size
def _trainer(variant, shape, run_dir=None, steps=1, **cfg_kw):
    gan = _build(variant, shape)
    n = 16
    rng = np.random.default_rng(0)
    lo = 0.0 if gan.output == "sigmoid" else -1.0
    x = rng.uniform(lo, 1.0, (n,) + shape).astype(np.float32)
    labels = rng.integers(0, 26, n) if gan.conditional else None
    args = {k: v for k, v in gan.config.items() if k != "seed"}
    cfg = TrainConfig(model=gan.kind, model_args=args, dataset="mnist-bundled", steps=steps, batch_size=4,
                      seed=0, log_every=1, sample_every=1, checkpoint_every=steps, n_samples=9, **cfg_kw)
    return Trainer(gan, x, labels, cfg, run_dir=run_dir, quiet=True)


@pytest.mark.parametrize("variant", ["dcgan", "dcgan-nearest-sn", "mlp", "cgan"])
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
def test_a_trainer_step_at_every_size(size, channels, variant):
    tr = _trainer(variant, (channels, size, size), loss="hinge" if "sn" in variant else "bce")
    g0 = {k: T(v).copy() for k, v in tr.gan.G.state_dict().items()}
    d0 = {k: T(v).copy() for k, v in tr.gan.D.state_dict().items()}
    out = {k: float(T(v)) for k, v in tr.train_step().items()}
    assert all(np.isfinite(v) for v in out.values()), out
    assert tr.step == 1
    changed = [k for k, v in tr.gan.G.state_dict().items() if not np.array_equal(T(v), g0[k])]
    assert any(k.endswith("weight") for k in changed)
    assert any(not np.array_equal(T(v), d0[k]) for k, v in tr.gan.D.state_dict().items())


def test_a_3x32x32_run_reloads_with_its_shape(tmp_path):
    run = tmp_path / "run"
    tr = _trainer("dcgan", (3, 32, 32), run_dir=run, steps=2)
    tr.train()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["image_shape"] == [3, 32, 32] and cfg["model"]["d_channels"] == [2, 3, 4]
    gan, meta = load_run(run)
    assert meta["step"] == 2 and gan.image_shape == (3, 32, 32) and gan.kind == "dcgan"
    for a, b in ((gan.G, tr.gan.G), (gan.D, tr.gan.D)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(np.array_equal(T(sa[k]), T(sb[k])) for k in sa)
    np.testing.assert_array_equal(T(gan.generate(5, seed=7)), T(tr.gan.generate(5, seed=7)))
    # the run's sample grids are RGB: 3 x 3 tiles of 32 pixels, pad 2, scale 2
    from PIL import Image
    with Image.open(run / "samples.png") as img:
        assert img.mode == "RGB" and img.size == ((3 * 34 + 2) * 2,) * 2


def test_a_checkpoint_with_a_bad_image_shape_is_refused(tmp_path):
    from scratchgan.training.checkpoint import CheckpointError
    run = tmp_path / "run"
    _trainer("mlp", (3, 8, 8), run_dir=run, steps=1).train()
    meta_path = run / "checkpoints" / "step_0000001.json"
    meta = json.loads(meta_path.read_text())
    assert meta["model"]["image_shape"] == [3, 8, 8]
    for bad, message in (([3, 8, 9], r"does not describe a model.*expected shape \(216, 6\), got \(192, 6\)"),
                         ([5, 8, 8], "has 5 channels"), ("3x8x8", "three positive integers")):
        meta["model"]["image_shape"] = bad
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=message):
            load_run(run)


def test_bench_counts_flops_for_any_shape():
    gan = models.dcgan(image_shape=(3, 32, 32), seed=0)
    fd, fd1 = model_flops(gan.D, gan.image_shape, 64)
    convs = [(3, 64, 16), (64, 128, 8), (128, 256, 4)]
    assert fd1 == 2 * 64 * 64 * 16 * 16 * 3 * 25
    assert fd == sum(2 * 64 * cout * s * s * cin * 25 for cin, cout, s in convs) + 2 * 64 * 256 * 16
    cg = models.cgan(image_shape=(3, 16, 16), num_classes=26, seed=0)
    fg, fg1 = model_flops(cg.G, (cg.latent_dim + 26,), 8)
    fdc, fdc1 = model_flops(cg.D, cg.d_input_shape, 8)
    assert fdc1 == 2 * 8 * (768 + 26) * 512
    assert iteration_flops(cg, 8) == 3 * fg - fg1 + 8 * fdc - 2 * fdc1


# ---------------------------------------------------------------------------- grids
def _old_make_grid(images, nrow, pad=2):
    """make_grid for (N, 1, H, W) exactly as it was before RGB grids."""
    images = np.asarray(images)
    n, _, h, w = images.shape
    ncol = nrow
    nrows = -(-n // ncol)
    canvas = np.ones((nrows * ncol, h + pad, w + pad), np.float32) * 0.5
    canvas[:n, :h, :w] = images[:, 0]
    grid = canvas.reshape(nrows, ncol, h + pad, w + pad).transpose(0, 2, 1, 3).reshape(nrows * (h + pad),
                                                                                      ncol * (w + pad))
    return np.pad(grid, ((pad, 0), (pad, 0)), constant_values=0.5)


@given(n=st.integers(1, 7), c=st.sampled_from(CHANNELS), h=st.integers(1, 6), w=st.integers(1, 6),
       nrow=st.integers(1, 4), pad=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
def test_make_grid_places_every_tile(n, c, h, w, nrow, pad, seed):
    x = np.random.default_rng(seed).uniform(0, 1, (n, c, h, w)).astype(np.float32)
    grid = images.make_grid(x, nrow, pad=pad)
    rows = -(-n // nrow)
    side = (rows * (h + pad) + pad, nrow * (w + pad) + pad)
    assert grid.shape == (side if c == 1 else side + (3,)) and grid.dtype == np.float32
    hwc = grid if c == 3 else grid[..., None]
    filled = np.zeros(side, bool)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        np.testing.assert_array_equal(hwc[top:top + h, left:left + w], x[i].transpose(1, 2, 0))
        filled[top:top + h, left:left + w] = True
    assert np.all(hwc[~filled] == 0.5)                    # padding and empty cells: mid-grey
    if c == 1:
        np.testing.assert_array_equal(grid, _old_make_grid(x, nrow, pad))


def test_grey_grid_pngs_are_written_as_before(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = np.random.default_rng(0).uniform(-1, 1, (10, 1, 28, 28)).astype(np.float32)
    path = images.save_grid(x, tmp_path / "g.png", nrow=4)
    grid = _old_make_grid((x + 1) * 0.5, 4).repeat(2, axis=0).repeat(2, axis=1)
    buf = io.BytesIO()
    plt.imsave(buf, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    assert path.read_bytes() == buf.getvalue()


@pytest.mark.parametrize("size", SIZES)
def test_rgb_grids_are_rgb_pngs_with_every_tile_in_place(size, tmp_path):
    from PIL import Image
    n, nrow, pad, scale = 5, 3, 2, 2
    x = np.zeros((n, 3, size, size), np.float32) - 1.0       # tanh range: -1 -> 0 in the file
    for i in range(n):
        x[i, i % 3] = 1.0                                     # image i is pure red, green or blue
        x[i, :, 0, 0] = [1.0, 0.0, -1.0]                       # and its top-left pixel (255, 128, 0)
    path = images.save_grid(x, tmp_path / "rgb.png", nrow=nrow, scale=scale)
    with Image.open(path) as img:
        assert img.mode == "RGB" and img.format == "PNG"
        a = np.asarray(img)
    assert a.shape == ((2 * (size + pad) + pad) * scale, (nrow * (size + pad) + pad) * scale, 3)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = (pad + r * (size + pad)) * scale, (pad + c * (size + pad)) * scale
        tile = a[top:top + size * scale, left:left + size * scale]
        assert tuple(tile[0, 0]) == tuple(tile[scale - 1, scale - 1]) == (255, 128, 0)
        colour = np.zeros(3, np.uint8)
        colour[i % 3] = 255
        assert np.all(tile[scale:, scale:] == colour)
    assert tuple(a[0, 0]) == (128, 128, 128)                  # the padding: mid-grey
    assert np.all(a[-(size + pad) * scale:, -(size + pad) * scale:] == 128)   # the sixth, empty cell


def test_bad_grid_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"make_grid: expected images of shape \(N, C, H, W\) with C = 1 \(grey\) "
                                         r"or 3 \(RGB\), got shape \(2, 4, 5, 5\)"):
        images.make_grid(np.zeros((2, 4, 5, 5)), 2)
    with pytest.raises(ValueError, match=r"save_grid: expected images of shape .*got shape \(2, 5, 5\)"):
        images.save_grid(np.zeros((2, 5, 5)), tmp_path / "x.png", nrow=2)
    with pytest.raises(ValueError, match="nrow must be an integer >= 1, got 0"):
        images.make_grid(np.zeros((2, 1, 5, 5)), 0)
    with pytest.raises(ValueError, match="save_grid: no images"):
        images.save_grid(np.zeros((0, 3, 5, 5)), tmp_path / "x.png", nrow=2)
    assert not (tmp_path / "x.png").exists()


def test_bench_layers_says_which_path_each_convolution_takes():
    """`bench --layers` names the algorithm of each convolution's forward and backward: the
    DCGAN's stride-1 layer both ways by the Fourier path, its stride-2 layer forward only, D's
    64 -> 128 convolution its input gradient; the few-channel layers im2col."""
    from scratchgan.evaluation.bench import _algorithms, dcgan_layers
    got = {name: _algorithms(layer, shape) for name, layer, shape in dcgan_layers()}
    assert got["G ConvT 256->128 5x5 s1 (7x7)"] == "fourier / fourier"
    assert got["G ConvT 128->64 5x5 s2 (7->14)"] == "fourier / im2col"
    assert got["G ConvT 64->1 5x5 s2 (14->28)"] == "im2col / im2col"
    assert got["D Conv 64->128 5x5 s2 (14->7)"] == "im2col / im2col, dX fourier"
    assert got["D Conv 1->64 5x5 s2 (28->14)"] == "im2col / im2col"
    assert got["G BatchNorm2d 128 (7x7)"] == ""
