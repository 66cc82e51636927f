"""Float64 central-difference gradient checks of every layer, chain and loss.

Every check compares the analytic gradient of the input AND of every parameter with
``scratchgan.gradcheck`` (relative error < 1e-6), over hypothesis-drawn geometries.
gradcheck back-propagates a *random* upstream gradient (never all ones, which hides
BatchNorm's dX errors: LESSONS bug 2); ``test_gradcheck_detects_*`` plant bugs and make
sure the tool really fails them, so a passing check means something.

An independent finite-difference helper (``_numeric_grad``, written here, not the
library's) cross-checks a few layers so the suite does not rest on gradcheck alone.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend, losses

from helpers import conv_geometry, convT_geometry
from scratchgan.gradcheck import gradcheck

TOL = 1e-6

seeds = st.integers(0, 2**31 - 1)


# ---------------------------------------------------------------------------- helpers
def _rng(seed):
    return np.random.default_rng(seed)


def _arr(a):
    """A host array on the selected backend, float64 unless integer."""
    return backend.asarray(np.asarray(a))


def _away_from_kink(x, margin=1e-3):
    """Push values within ``margin`` of 0 out to +-margin (ReLU/LeakyReLU kink)."""
    x = np.array(x, dtype=np.float64)
    small = np.abs(x) < margin
    x[small] = np.where(x[small] >= 0, 1, -1) * (margin + np.abs(x[small]))
    return x


def _randomise_params(module, rng):
    """Give every parameter (BN gamma/beta included) and BN running stats random values,
    so that no factor of 1 or 0 can hide a missing term."""
    for _, m in module.named_modules():
        for k, p in m.params.items():
            vals = rng.standard_normal(p.shape)
            if isinstance(m, (sg.BatchNorm1d, sg.BatchNorm2d)) and k == "weight":
                vals = rng.uniform(0.5, 2.0, p.shape) * rng.choice([-1.0, 1.0], p.shape)
            p[...] = backend.asarray(vals.astype(backend.to_numpy(p).dtype))
        if "running_mean" in m.buffers:
            rm, rv = m.buffers["running_mean"], m.buffers["running_var"]
            rm[...] = backend.asarray(rng.standard_normal(rm.shape).astype(backend.to_numpy(rm).dtype))
            rv[...] = backend.asarray(rng.uniform(0.3, 3.0, rv.shape).astype(backend.to_numpy(rv).dtype))
    return module


def check(module, X=None, *, shape=None, loss=None, seed=0, max_elements=60, check_input=True):
    """gradcheck ``module`` in float64 and assert every tensor (input + all params) passes."""
    if X is not None:
        X = backend.asarray(np.asarray(X, dtype=np.float64))
    result = gradcheck(module, X, shape=shape, loss=loss, tol=TOL, max_elements=max_elements, seed=seed)
    expected = ({"input"} if check_input else set()) | {n for n, _, _ in module.named_parameters()}
    assert {r.name for r in result.rows} == expected, f"gradcheck skipped tensors:\n{result}"
    assert all(r.checked > 0 for r in result.rows), str(result)
    assert result.passed, f"gradient check failed:\n{result}"
    for r in result.rows:  # the brief's criterion, stated explicitly
        assert r.rel_error < TOL or r.max_abs_error <= 1e-8, f"{r.name}: rel {r.rel_error:.2e}\n{result}"
    return result


def _numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar f() w.r.t. every element of the host array x (in place)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return g


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if den == 0 else np.linalg.norm(a - b) / den


# ---------------------------------------------------------------------------- strategies
# ---------------------------------------------------------------------------- layers
@given(n=st.integers(1, 4), fin=st.integers(1, 6), fout=st.integers(1, 5), bias=st.booleans(),
       init=st.sampled_from(["glorot_uniform", "he_normal", "dcgan", "torch"]), seed=seeds)
def test_dense(xp_backend, n, fin, fout, bias, init, seed):
    layer = sg.Dense(fin, fout, bias=bias, init=init, rng=seed)
    _randomise_params(layer, _rng(seed))
    check(layer, _rng(seed + 1).standard_normal((n, fin)), seed=seed)


@given(geo=conv_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       bias=st.booleans(), seed=seeds)
def test_conv2d(xp_backend, geo, n, cin, cout, bias, seed):
    layer = sg.Conv2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"], bias=bias, rng=seed)
    _randomise_params(layer, _rng(seed))
    check(layer, _rng(seed + 1).standard_normal((n, cin, geo["H"], geo["W"])), seed=seed)


@given(geo=convT_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       bias=st.booleans(), seed=seeds)
def test_conv_transpose2d(xp_backend, geo, n, cin, cout, bias, seed):
    layer = sg.ConvTranspose2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"],
                               output_padding=geo["output_padding"], bias=bias, rng=seed)
    _randomise_params(layer, _rng(seed))
    check(layer, _rng(seed + 1).standard_normal((n, cin, geo["H"], geo["W"])), seed=seed)


@given(geo=convT_geometry(max_stride=3, max_kernel=5), n=st.integers(1, 2), cin=st.integers(1, 3),
       cout=st.integers(1, 3), bias=st.booleans(), seed=seeds)
def test_conv_transpose2d_fourier(xp_backend, geo, n, cin, cout, bias, seed):
    layer = sg.ConvTranspose2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"],
                               output_padding=geo["output_padding"], bias=bias, rng=seed, algorithm="fourier")
    _randomise_params(layer, _rng(seed))
    check(layer, _rng(seed + 1).standard_normal((n, cin, geo["H"], geo["W"])), seed=seed)


@given(geo=conv_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       bias=st.booleans(), seed=seeds)
def test_conv2d_planes(xp_backend, monkeypatch, geo, n, cin, cout, bias, seed):
    """Channel-major columns for few input channels (conv.use_planes), taken at every size here."""
    monkeypatch.setattr(sg.layers.conv, "PLANES_MIN_VALUES", 0)
    layer = sg.Conv2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"], bias=bias, rng=seed)
    _randomise_params(layer, _rng(seed))
    check(layer, _rng(seed + 1).standard_normal((n, cin, geo["H"], geo["W"])), seed=seed)


@given(geo=convT_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       bias=st.booleans(), seed=seeds)
def test_conv_transpose2d_planes(xp_backend, monkeypatch, geo, n, cin, cout, bias, seed):
    """Channel-major columns for few output channels (conv.use_planes), taken at every size here."""
    monkeypatch.setattr(sg.layers.conv, "PLANES_MIN_VALUES", 0)
    layer = sg.ConvTranspose2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"],
                               output_padding=geo["output_padding"], bias=bias, rng=seed, algorithm="im2col")
    _randomise_params(layer, _rng(seed))
    check(layer, _rng(seed + 1).standard_normal((n, cin, geo["H"], geo["W"])), seed=seed)


@given(n=st.integers(2, 6), c=st.integers(1, 4), affine=st.booleans(), training=st.booleans(),
       momentum=st.sampled_from([0.1, 0.5, 0.9]), seed=seeds)
def test_batchnorm1d(xp_backend, n, c, affine, training, momentum, seed):
    layer = sg.BatchNorm1d(c, affine=affine, momentum=momentum).train(training)
    _randomise_params(layer, _rng(seed))
    X = _rng(seed + 1).standard_normal((n, c)) * 2 + 1
    check(layer, X, seed=seed)


@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       affine=st.booleans(), training=st.booleans(), seed=seeds)
def test_batchnorm2d(xp_backend, n, c, h, w, affine, training, seed):
    if training and n * h * w < 2:
        n = 2
    layer = sg.BatchNorm2d(c, affine=affine).train(training)
    _randomise_params(layer, _rng(seed))
    X = _rng(seed + 1).standard_normal((n, c, h, w)) * 3 - 1
    check(layer, X, seed=seed)


@given(shape=st.sampled_from([(3, 4), (2, 3, 2, 2), (1, 5), (4, 1, 3, 3)]), seed=seeds)
def test_relu(xp_backend, shape, seed):
    X = _away_from_kink(_rng(seed).standard_normal(shape))
    check(sg.ReLU(), X, seed=seed)


@given(slope=st.one_of(st.sampled_from([0.0, 0.01, 0.1, 0.2, 0.5, 1.0]), st.floats(0.0, 1.0)),
       shape=st.sampled_from([(3, 4), (2, 3, 2, 2), (1, 5)]), seed=seeds)
def test_leaky_relu(xp_backend, slope, shape, seed):
    X = _away_from_kink(_rng(seed).standard_normal(shape))
    check(sg.LeakyReLU(slope), X, seed=seed)


@pytest.mark.parametrize("layer_cls", [sg.Sigmoid, sg.Tanh])
@given(shape=st.sampled_from([(3, 4), (2, 3, 2, 2), (1, 1)]), scale=st.sampled_from([0.5, 2.0, 5.0]), seed=seeds)
def test_sigmoid_tanh(xp_backend, layer_cls, shape, scale, seed):
    check(layer_cls(), _rng(seed).standard_normal(shape) * scale, seed=seed)


@given(p=st.one_of(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), st.floats(0.0, 0.95)),
       shape=st.sampled_from([(4, 5), (2, 3, 3, 3)]), seed=seeds, dseed=st.integers(0, 1000))
def test_dropout_train(xp_backend, p, shape, seed, dseed):
    layer = sg.Dropout(p, seed=dseed).train()
    check(layer, _rng(seed).standard_normal(shape), seed=seed)


def test_dropout_eval(xp_backend):
    check(sg.Dropout(0.5).eval(), shape=(3, 4))


@given(n=st.integers(1, 3), dims=st.sampled_from([((12,), (3, 4)), ((2, 6), (3, 2, 2)), ((4, 3), (12,)),
                                                  ((2, 2, 3), (1, 12))]), seed=seeds)
def test_reshape(xp_backend, n, dims, seed):
    src, dst = dims
    check(sg.Reshape(*dst), _rng(seed).standard_normal((n,) + src), seed=seed)


@given(shape=st.sampled_from([(2, 3, 2, 2), (1, 4), (3, 2, 3), (2, 1, 1, 5)]), seed=seeds)
def test_flatten(xp_backend, shape, seed):
    check(sg.Flatten(), _rng(seed).standard_normal(shape), seed=seed)


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       s=st.integers(1, 3), seed=seeds)
def test_upsample2d(xp_backend, n, c, h, w, s, seed):
    check(sg.Upsample2D(s), _rng(seed).standard_normal((n, c, h, w)), seed=seed)


@given(n=st.integers(2, 6), f=st.integers(1, 6), seed=seeds)
def test_minibatch_std(xp_backend, n, f, seed):
    X = _rng(seed).standard_normal((n, f))
    check(sg.MinibatchStd(), X, seed=seed)
    # structure: the appended column is the batch's mean per-feature standard deviation, for every item
    Y, _ = sg.MinibatchStd(eps=1e-12).forward(_arr(X))
    Y = backend.to_numpy(Y)
    assert np.array_equal(Y[:, :f], X)
    assert np.allclose(Y[:, f], np.std(X, axis=0).mean(), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------- chains
# Chains with ReLU use fixed seeds (deterministic) rather than hypothesis: a drawn example
# could place a pre-activation within h of the kink and fail for no real reason.
def _mlp_d(seed, fin=6, hidden=5, p=0.3):
    return sg.Sequential(sg.Dense(fin, hidden, rng=seed), sg.BatchNorm1d(hidden), sg.LeakyReLU(0.2),
                         sg.Dropout(p, seed=seed), sg.Dense(hidden, 1, rng=seed + 1))


def _generator(seed, zdim=4, c=3, out_c=2):
    """z (N, zdim) -> (N, out_c, 4, 4) through Dense, Reshape, BN2d, ReLU, ConvT, Tanh."""
    return sg.Sequential(sg.Dense(zdim, c * 2 * 2, rng=seed), sg.Reshape(c, 2, 2), sg.BatchNorm2d(c), sg.ReLU(),
                         sg.ConvTranspose2D(c, out_c, 4, stride=2, padding=1, rng=seed + 1), sg.Tanh())


def _conv_d(seed, in_c=2, p=0.25):
    """(N, in_c, 4, 4) -> (N, 1) through Conv2D, BN2d, LeakyReLU, Dropout, Flatten, Dense."""
    return sg.Sequential(sg.Conv2D(in_c, 3, 3, stride=2, padding=1, rng=seed), sg.BatchNorm2d(3),
                         sg.LeakyReLU(0.2), sg.Dropout(p, seed=seed), sg.Flatten(), sg.Dense(3 * 2 * 2, 1, rng=seed + 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_sequential_mlp(xp_backend, seed, training):
    model = _randomise_params(_mlp_d(seed), _rng(seed)).train(training)
    check(model, _rng(seed + 7).standard_normal((5, 6)), seed=seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_sequential_conv_chain(xp_backend, seed):
    model = sg.Sequential(sg.Conv2D(2, 3, 3, padding=1, rng=seed), sg.BatchNorm2d(3), sg.ReLU(), sg.Upsample2D(2),
                          sg.ConvTranspose2D(3, 2, 3, stride=2, padding=1, output_padding=1, rng=seed),
                          sg.Sigmoid(), sg.Flatten(), sg.Dense(2 * 8 * 8, 3, rng=seed))
    _randomise_params(model, _rng(seed))
    check(model, _rng(seed + 3).standard_normal((2, 2, 2, 2)), seed=seed, max_elements=40)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generator_discriminator_chain(xp_backend, seed):
    """Sequential(G, D) with BN and dropout in train mode: every parameter of both nets."""
    model = sg.Sequential(_generator(seed), _conv_d(seed + 10)).train()
    _randomise_params(model, _rng(seed))
    result = check(model, _rng(seed + 5).standard_normal((3, 4)), seed=seed, max_elements=40)
    assert any(r.name.startswith("0.") for r in result.rows) and any(r.name.startswith("1.") for r in result.rows)


GAN_LOSSES = {
    "nonsaturating": losses.g_loss_nonsaturating,
    "minimax": losses.g_loss_minimax,
    "bce_real": lambda y: losses.bce_with_logits(y, 1.0),
    "bce_smooth_array": lambda y: losses.bce_with_logits(y, backend.xp().full(y.shape, 0.9)),
    "mse": lambda y: losses.mse(y, backend.xp().zeros_like(y)),
}


@pytest.mark.parametrize("loss_name", sorted(GAN_LOSSES))
@pytest.mark.parametrize("seed", [0, 3])
def test_chain_through_gan_loss(xp_backend, loss_name, seed):
    """G -> D -> loss: the gradient of a GAN loss reaches G's first layer correctly."""
    model = sg.Sequential(_generator(seed), _mlp_d(seed + 1, fin=2 * 4 * 4))
    model.layers[1].layers.insert(0, sg.Flatten())
    _randomise_params(model, _rng(seed))
    check(model, _rng(seed + 2).standard_normal((4, 4)), loss=GAN_LOSSES[loss_name], seed=seed, max_elements=40)


# ---------------------------------------------------------------------------- losses
def _check_loss(fn, inputs, n_grads, seed=0):
    inputs = tuple(backend.asarray(np.asarray(a)) for a in inputs)
    result = gradcheck(fn, inputs, tol=TOL, max_elements=None, seed=seed)
    assert len(result.rows) == n_grads, str(result)
    assert result.passed, f"loss gradient check failed:\n{result}"
    for r in result.rows:
        assert r.rel_error < TOL or r.max_abs_error <= 1e-8, str(result)
    return result


shapes_1d2d = st.sampled_from([(1,), (5,), (4, 1), (3, 2), (2, 3, 2)])


@given(shape=shapes_1d2d, scale=st.sampled_from([0.1, 1.0, 4.0]), seed=seeds)
def test_bce_with_logits_array_targets(xp_backend, shape, scale, seed):
    r = _rng(seed)
    _check_loss(losses.bce_with_logits, (r.standard_normal(shape) * scale, r.uniform(0, 1, shape)), 1, seed)


@given(shape=shapes_1d2d, target=st.sampled_from([0.0, 1.0, 0.9, 0.3]), seed=seeds)
def test_bce_with_logits_scalar_target(xp_backend, shape, target, seed):
    fn = lambda l: losses.bce_with_logits(l, target)  # noqa: E731
    _check_loss(fn, (_rng(seed).standard_normal(shape) * 2,), 1, seed)


@given(n=st.integers(1, 6), smoothing=st.sampled_from([None, 0.9, 0.8]), seed=seeds)
def test_d_loss(xp_backend, n, smoothing, seed):
    r = _rng(seed)
    fn = losses.d_loss if smoothing is None else (lambda a, b: losses.d_loss(a, b, real_target=smoothing))
    _check_loss(fn, (r.standard_normal((n, 1)) * 2, r.standard_normal((n, 1)) * 2), 2, seed)


@pytest.mark.parametrize("fn", [losses.g_loss_minimax, losses.g_loss_nonsaturating,
                                lambda l: losses.g_loss(l, "minimax"), lambda l: losses.g_loss(l)],
                         ids=["minimax", "nonsaturating", "g_loss_minimax", "g_loss_default"])
@given(n=st.integers(1, 6), scale=st.sampled_from([0.5, 3.0]), seed=seeds)
def test_g_losses(xp_backend, fn, n, scale, seed):
    _check_loss(fn, (_rng(seed).standard_normal((n, 1)) * scale,), 1, seed)


@given(shape=shapes_1d2d, seed=seeds)
def test_mse(xp_backend, shape, seed):
    r = _rng(seed)
    _check_loss(losses.mse, (r.standard_normal(shape), r.standard_normal(shape)), 1, seed)


@given(n=st.integers(1, 5), k=st.integers(2, 6), scale=st.sampled_from([0.5, 3.0]), seed=seeds)
def test_softmax_cross_entropy(xp_backend, n, k, scale, seed):
    r = _rng(seed)
    labels = r.integers(0, k, n)
    _check_loss(losses.softmax_cross_entropy, (r.standard_normal((n, k)) * scale, labels), 1, seed)


# ---------------------------------------------------------------------------- independent cross-checks
@pytest.mark.parametrize("kind", ["bn1d_train", "bn2d_train", "conv", "convT"])
def test_independent_finite_differences(kind):
    """Our own finite differences (not gradcheck) with a random upstream gradient."""
    r = _rng(11)
    if kind == "bn1d_train":
        layer, X = sg.BatchNorm1d(3, dtype=np.float64), r.standard_normal((4, 3))
    elif kind == "bn2d_train":
        layer, X = sg.BatchNorm2d(2, dtype=np.float64), r.standard_normal((2, 2, 3, 2))
    elif kind == "conv":
        layer, X = sg.Conv2D(2, 3, 3, stride=2, padding=1, rng=1, dtype=np.float64), r.standard_normal((2, 2, 5, 4))
    else:
        layer = sg.ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1, rng=1, dtype=np.float64)
        X = r.standard_normal((2, 2, 3, 2))
    _randomise_params(layer, r)
    X = backend.asarray(X)
    Y, cache = layer.forward(X)
    R = backend.asarray(r.standard_normal(Y.shape))
    dX = backend.to_numpy(layer.backward(R, cache))
    Xh = backend.to_numpy(X).copy()
    snap = {k: backend.to_numpy(v).copy() for k, v in layer.buffers.items()}

    def L():
        for k, v in snap.items():    # num_batches_tracked is a host counter on either backend
            layer.buffers[k][...] = v if isinstance(layer.buffers[k], np.ndarray) else backend.asarray(v)
        return float(backend.to_numpy((layer.forward(backend.asarray(Xh))[0] * R).sum()))

    assert _rel(dX, _numeric_grad(L, Xh)) < TOL
    for name, p in layer.params.items():
        ph = backend.to_numpy(p).copy()

        def Lp():
            layer.params[name][...] = backend.asarray(ph)
            return L()

        num = _numeric_grad(Lp, ph)
        layer.params[name][...] = backend.asarray(ph)
        assert _rel(backend.to_numpy(layer.grads[name]), num) < TOL, name


def test_gradcheck_upstream_is_random_not_ones():
    """For BN in train mode with upstream all ones, the true dX is exactly 0; gradcheck
    must not be using such an upstream gradient (its dX row would then be ~0)."""
    result = gradcheck(sg.BatchNorm1d(3, affine=False), shape=(5, 3), tol=TOL)
    layer = sg.BatchNorm1d(3, affine=False, dtype=np.float64)
    X = backend.asarray(_rng(0).standard_normal((5, 3)))
    Y, cache = layer.forward(X)
    ones_dx = backend.to_numpy(layer.backward(backend.xp().ones_like(Y), cache))
    assert np.abs(ones_dx).max() < 1e-12  # the trap the lesson describes
    assert result.passed and result["input"].rel_error < TOL


# ---------------------------------------------------------------------------- planted bugs
class _DenseMeanGrad(sg.Dense):
    """Planted bug: weight gradient averaged over the batch instead of summed."""

    def backward(self, dY, cache):
        X, W = self.saved(cache)
        self.grads["weight"] += dY.T @ X / X.shape[0]
        if self.use_bias:
            self.grads["bias"] += dY.sum(axis=0)
        return dY @ W


class _BNMissingXhatTerm(sg.BatchNorm1d):
    """Planted bug: BN backward without the  - Xhat * mean(dXhat * Xhat)  term. Invisible
    with an all-ones upstream gradient, so only a random upstream catches it."""

    def backward(self, dY, cache):
        Xhat, inv_std, training, _ = self.saved(cache)   # train mode: (Xhat, 1/sigma, True, None)
        self.grads["weight"] += (dY * Xhat).sum(axis=0)
        self.grads["bias"] += dY.sum(axis=0)
        dXhat = dY * self.params["weight"]
        return (dXhat - dXhat.mean(axis=0)) * inv_std


class _LeakyAsRelu(sg.LeakyReLU):
    """Planted bug: negative side gets slope 0 in backward."""

    def backward(self, dY, cache):
        X = self.saved(cache)
        return backend.array_module(dY).where(X > 0, dY, 0 * dY)


class _ConvTNoBiasGrad(sg.ConvTranspose2D):
    """Planted bug: bias gradient off by a factor (half of it)."""

    def backward(self, dY, cache):
        dX = super().backward(dY, cache)
        self.grads["bias"] -= dY.sum(axis=(0, 2, 3)) / 2
        return dX


@pytest.mark.parametrize("make, X_shape, bad_row", [
    (lambda: _DenseMeanGrad(3, 2, rng=0), (4, 3), "weight"),
    (lambda: _BNMissingXhatTerm(3), (5, 3), "input"),
    (lambda: _LeakyAsRelu(0.2), (4, 5), "input"),
    (lambda: _ConvTNoBiasGrad(2, 2, 3, stride=2, rng=0), (2, 2, 2, 2), "bias"),
])
def test_gradcheck_detects_planted_bug(make, X_shape, bad_row):
    layer = make()
    _randomise_params(layer, _rng(5))
    X = _away_from_kink(_rng(6).standard_normal(X_shape))
    result = gradcheck(layer, backend.asarray(X), tol=TOL)
    assert result.passed is False, str(result)
    assert result[bad_row].passed is False, str(result)
    assert result[bad_row].rel_error > 1e-2


def test_gradcheck_detects_planted_bug_in_chain():
    """A planted bug deep inside Sequential(G, D) is found and attributed to its tensor."""
    G, D = _generator(0), _conv_d(1)
    bad = _BNMissingXhatTerm(4)
    model = sg.Sequential(sg.Dense(4, 4, rng=0), bad, sg.Dense(4, 4, rng=1), sg.Sequential(G, D))
    _randomise_params(model, _rng(0))
    result = gradcheck(model, backend.asarray(_rng(1).standard_normal((5, 4))), tol=TOL, max_elements=30)
    assert result.passed is False
    assert result["0.weight"].passed is False and result["input"].passed is False
    assert result["3.1.5.weight"].passed  # D's last layer is downstream of the bug: still right


def test_gradcheck_detects_wrong_loss_gradient():
    def bad_bce(logits):
        loss, g = losses.bce_with_logits(logits, 1.0)
        return loss, -g  # sign error

    result = gradcheck(bad_bce, (backend.asarray(_rng(0).standard_normal((4, 1))),), tol=TOL)
    assert result.passed is False

    def bad_loss_via_chain(y):
        loss, g = losses.g_loss_nonsaturating(y)
        return loss, g * 2  # scale error

    result = gradcheck(_mlp_d(0), backend.asarray(_rng(1).standard_normal((4, 6))), loss=bad_loss_via_chain, tol=TOL)
    assert result.passed is False
