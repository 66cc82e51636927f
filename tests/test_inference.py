"""The eval-mode sampling path (layers/inference.py, Module.infer): batch norms folded into the
layer before them, no caches, activations over their input. It must give G's plain eval-mode
forward to float32 rounding, in the same shape and dtype, on both backends."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend
from scratchgan.layers import conv, fold_batchnorm, fused_for_eval
from scratchgan.models import build

from helpers import convT_geometry


def _randomise_bn(model, seed):
    """Running statistics and affine parameters far from (0, 1), so that a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if "running_mean" in m.buffers:
            c = m.num_features
            for name, vals in (("running_mean", rng.standard_normal(c)), ("running_var", rng.uniform(0.3, 3.0, c))):
                m.buffers[name][...] = backend.asarray(vals.astype(np.float32))
            if m.affine:
                m.params["weight"][...] = backend.asarray(rng.uniform(-2, 2, c).astype(np.float32))
                m.params["bias"][...] = backend.asarray(rng.standard_normal(c).astype(np.float32))


def _close(a, b, tol=2e-5):
    a, b = backend.to_numpy(a), backend.to_numpy(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max()), np.abs(a - b).max()


@pytest.mark.parametrize("kind, kwargs", [
    ("dcgan", {}), ("dcgan", {"image_shape": (3, 32, 32)}), ("dcgan", {"image_shape": (1, 64, 64)}),
    ("dcgan", {"upsample": "nearest"}), ("mlp", {}), ("cgan", {}), ("dcgan-tutorial", {}),
])
def test_fused_generator_equals_plain_eval(xp_backend, kind, kwargs):
    gan = build(kind, seed=1, **kwargs).to(xp_backend)
    _randomise_bn(gan.G, 2)
    labels = backend.asarray(np.arange(3) % gan.num_classes) if gan.conditional else None
    z = gan.sample_noise(3, backend.random_generator(backend.xp(), 5, 0))
    z_before = backend.to_numpy(z).copy()
    plain = gan.generate(z=z, labels=labels, fused=False)
    fused = gan.generate(z=z, labels=labels)
    _close(fused, plain)
    assert np.array_equal(backend.to_numpy(z), z_before)             # the caller's z is not overwritten
    assert gan.G.training                                             # generate leaves G's mode as it was
    gan.G.eval()
    assert np.array_equal(backend.to_numpy(plain), backend.to_numpy(gan.G(gan.g_input(z, labels))))


def test_fused_model_shares_unfolded_layers_and_leaves_g_alone(xp_backend):
    gan = build("dcgan", seed=0).to(xp_backend)
    _randomise_bn(gan.G, 3)
    weights = {k: backend.to_numpy(p).copy() for k, p, _ in gan.G.named_parameters()}
    gan.G.eval()
    fused = fused_for_eval(gan.G)
    assert not fused.training
    # Dense+BN1d, three ConvT+BN2d... : each BatchNorm folded away, the last ConvT (no BN after it) shared
    assert not any(isinstance(m, (sg.BatchNorm1d, sg.BatchNorm2d)) for m in fused.layers)
    assert len(fused.layers) == len(gan.G.layers) - 3
    assert fused.layers[-2] is gan.G.layers[-2]
    for k, p, _ in gan.G.named_parameters():
        assert np.array_equal(backend.to_numpy(p), weights[k])


@pytest.mark.parametrize("make, shape", [
    (lambda: sg.Dense(5, 4, bias=False, rng=0), (6, 5)),
    (lambda: sg.Dense(5, 4, rng=0), (6, 5)),
    (lambda: sg.Conv2D(2, 3, 3, stride=2, padding=1, rng=0), (2, 2, 5, 5)),
    (lambda: sg.ConvTranspose2D(3, 2, 5, stride=2, padding=2, output_padding=1, bias=False, rng=0), (2, 3, 4, 4)),
    (lambda: sg.ConvTranspose2D(3, 2, 3, rng=0, algorithm="fourier"), (2, 3, 4, 4)),
])
def test_fold_batchnorm_equals_layer_then_bn(xp_backend, make, shape):
    layer = make()
    if layer.use_bias:
        layer.params["bias"][...] = backend.asarray(np.arange(layer.params["bias"].size, dtype=np.float32) - 1)
    bn = (sg.BatchNorm1d if len(shape) == 2 else sg.BatchNorm2d)(layer.params["weight"].shape[
        1 if isinstance(layer, sg.ConvTranspose2D) else 0])
    model = sg.Sequential(layer, bn).to(xp_backend)
    _randomise_bn(model, 4)
    model.eval()
    X = backend.asarray(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    _close(fold_batchnorm(layer, bn).infer(X), model(X))


@given(geo=convT_geometry(max_stride=3, max_kernel=5), n=st.integers(1, 3), cin=st.integers(1, 4),
       cout=st.integers(1, 4), bias=st.booleans(), path=st.sampled_from(["default", "planes", "phases"]),
       algorithm=st.sampled_from(["auto", "im2col", "fourier"]), seed=st.integers(0, 2**31 - 1))
def test_conv_transpose_infer_equals_forward(xp_backend, monkeypatch, geo, n, cin, cout, bias, path, algorithm,
                                             seed):
    """ConvTranspose2D.infer (no cache; its own choice of path: planes, output phases) against forward."""
    monkeypatch.setattr(conv, "INFER_PLANES_MIN_VALUES", 0 if path == "planes" else 1 << 40)
    if path == "phases":        # every output channel count counts as many: stride > 1 goes by phases
        monkeypatch.setattr(conv, "FEW_CHANNELS", 0)
    layer = sg.ConvTranspose2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"],
                               output_padding=geo["output_padding"], bias=bias, rng=seed, algorithm=algorithm)
    if bias:
        layer.params["bias"][...] = np.random.default_rng(seed).standard_normal(cout).astype(np.float32)
    layer.to(xp_backend)
    X = backend.asarray(np.random.default_rng(seed + 1).standard_normal((n, cin, geo["H"], geo["W"]))
                        .astype(np.float32))
    _close(layer.infer(X), layer.forward(X)[0])


def test_fused_for_eval_refuses_a_model_in_train_mode():
    gan = build("dcgan", seed=0)
    with pytest.raises(ValueError, match="eval mode"):
        fused_for_eval(gan.G)


def test_infer_overwrites_only_when_allowed(xp_backend):
    X = backend.asarray(np.linspace(-2, 2, 24, dtype=np.float32).reshape(2, 3, 2, 2))
    for layer in (sg.LeakyReLU(0.2), sg.Tanh(), sg.BatchNorm2d(3)):
        layer.eval()
        keep = backend.to_numpy(X).copy()
        Y = layer.infer(X)
        assert np.array_equal(backend.to_numpy(X), keep)
        X2 = X.copy()
        Y2 = layer.infer(X2, overwrite=True)
        assert Y2 is X2
        assert np.array_equal(backend.to_numpy(Y2), backend.to_numpy(Y))
        assert np.array_equal(backend.to_numpy(Y), backend.to_numpy(layer(X)))


def test_bench_layers_of_a_model_size():
    """`scratchgan bench --layers --image-shape`: a row per layer of G and the recipe's D in train mode
    and of the eval-mode sampler, with the Fourier/planes choice each convolution made."""
    from scratchgan.evaluation.bench import model_layers
    rows = model_layers((3, 32, 32), batch=2, sample_batch=3)
    names = [r[0] for r in rows]
    assert names[0].startswith("G0 Dense 100->4096") and any(n.startswith("D0 SN Conv 3->64 s2 (32x32)") for n in names)
    evals = [r for r in rows if r[3] == "eval"]
    assert len(evals) == len(build("dcgan", image_shape=(3, 32, 32)).G.layers) - 3   # three batch norms folded
    assert all(len(r[2]) == 3 for r in evals) and all(len(r[2]) == 2 for r in rows if r[3] == "train")


@pytest.mark.parametrize("dtype, tol", [("float32", 2e-5), ("float64", 1e-12)])
def test_infer_in_parts_equals_one_pass_and_restores_the_blas_threads(restore_threads, dtype, tol):
    from scratchgan.layers import infer_in_parts
    from scratchgan.layers.inference import PART_MIN_ROWS
    gan = build("dcgan", seed=1, image_shape=(3, 32, 32)).astype(dtype)
    _randomise_bn(gan.G, 4)
    gan.G.eval()
    net = fused_for_eval(gan.G)
    z = gan.sample_noise(3 * PART_MIN_ROWS + 5, np.random.default_rng(0)).astype(dtype)
    backend.set_threads(1)                                                       # each part's BLAS threads
    whole, firsts = net.infer(z), {parts: net.infer(z[:len(z) // parts]) for parts in (2, 3)}
    backend.set_threads(2)
    for parts in (2, 3):
        got = infer_in_parts(net, z, parts=parts)
        _close(got, whole, tol)
        assert np.array_equal(got, infer_in_parts(net, z, parts=parts))          # the same bits every call
        assert np.array_equal(got[:len(z) // parts], firsts[parts])               # the first part, as a batch
    seen, infer = [], net.infer
    net.infer = lambda X: seen.append((len(X), backend.threads())) or infer(X)  # (an instance attribute)
    infer_in_parts(net, z, parts=3)
    assert sorted(seen) == sorted((len(z) * (i + 1) // 3 - len(z) * i // 3, 1) for i in range(3))   # 3 runs, 1 thread each
    del net.infer
    assert backend.threads() == 2                                                # given back after the parts
    assert np.array_equal(infer_in_parts(net, z[:2 * PART_MIN_ROWS - 1]), net.infer(z[:2 * PART_MIN_ROWS - 1]))
    backend.set_threads(1)
    assert np.array_equal(infer_in_parts(net, z), whole)                         # one BLAS thread: one pass
    with pytest.raises(sg.layers.ShapeError, match="Dense"):                     # a part's error, in the caller
        infer_in_parts(net, np.zeros((3 * PART_MIN_ROWS, 7), dtype=dtype), parts=3)


def test_generate_splits_the_batch_over_the_blas_threads(restore_threads):
    gan = build("dcgan", seed=2, image_shape=(3, 32, 32))
    _randomise_bn(gan.G, 5)
    z = gan.sample_noise(96, np.random.default_rng(1))
    backend.set_threads(1)
    one = gan.generate(z=z)
    gan.G.eval()
    half = fused_for_eval(gan.G).infer(z[:48])
    gan.G.train()
    backend.set_threads(2)
    two = gan.generate(z=z)
    _close(two, one)
    assert np.array_equal(two[:48], half)                                        # its first half, as a batch of 48
