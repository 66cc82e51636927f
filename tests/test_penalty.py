"""The WGAN-GP gradient penalty and the layers' double backward, against float64 central differences.

(a) each layer's ``double_backward``: ``InputGradient(layer, dY)`` is the map X -> dX of the
    layer's first backward as a module with dY as a parameter, so ``gradcheck`` compares the
    scalar <R, dX(X, dY, theta)> with double_backward's ddY (the "dY" row), its parameter
    gradients and its ddX_in (the "input" row);
(b) the whole penalty's gradient w.r.t. every critic parameter and the input, for dense and
    convolutional critics over hypothesis geometries (relative error < 1e-6);
(c) the penalty's value from per-sample input gradients of ordinary backwards, one sample at a time;
(d) BatchNorm and the other layers without a double backward are refused, with the reason;
(e) interpolates: shapes, range, reproducibility.

LayerNorm over m = 2 values is left out of the drawn critics and shapes: its output is
+-gamma + beta whatever the input, up to eps, so every gradient through it is O(eps) and the
relative error of a check is rounding noise over a near-zero gradient. (m = 1 stays: its
gradients are exactly zero.)

ReLU and LeakyReLU have kinks: a central difference across one is no derivative, and for the
penalty (whose gradient jumps there) not even close. Inputs of the layer checks are pushed out
of a margin around 0; for whole critics, examples with a pre-activation within KINK_MARGIN of
0 are rejected (``assume``): rare, since a perturbation of h = 1e-6 moves them by ~1e-6.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend
from scratchgan.gradcheck import gradcheck
from scratchgan.layers import DoubleBackwardError
from scratchgan.penalty import InputGradient, check_support, interpolates

from helpers import A, H, conv_geometry, rng

TOL = 1e-6
KINK_MARGIN = 1e-4
seeds = st.integers(0, 2**31 - 1)


def _away_from_kink(x, margin=1e-3):
    x = np.array(x, dtype=np.float64)
    small = np.abs(x) < margin
    x[small] = np.where(x[small] >= 0, 1, -1) * (margin + np.abs(x[small]))
    return x


def _randomised(module, seed, scale=0.8):
    """Random weights of both signs (LayerNorm's gamma too), so that no 1 or 0 hides a term."""
    r = rng(seed)
    for _, p, _ in module.named_parameters():
        p[...] = A(r.standard_normal(p.shape).astype(H(p).dtype) * scale)
    return module


def _passes(result, names, atol=1e-8):
    assert {r.name for r in result.rows} == set(names), str(result)
    assert all(r.checked > 0 for r in result.rows), str(result)
    assert result.passed, f"gradient check failed:\n{result}"
    for r in result.rows:
        assert r.rel_error < TOL or r.max_abs_error <= atol, f"{r.name}: rel {r.rel_error:.2e}\n{result}"


# ---------------------------------------------------------------------------- (a) per layer
def _check_double_backward(layer, X, seed, max_elements=40):
    layer = layer.astype(np.float64)
    X = A(np.asarray(X, dtype=np.float64))
    Y, _ = layer.forward(X)
    dY = rng(seed + 7).standard_normal(Y.shape)
    result = gradcheck(InputGradient(layer, dY), X, tol=TOL, max_elements=max_elements, seed=seed)
    _passes(result, {"input", "dY"} | {f"0.{n}" for n, _, _ in layer.named_parameters()})
    return result


@given(n=st.integers(1, 4), fin=st.integers(1, 6), fout=st.integers(1, 5), bias=st.booleans(), seed=seeds)
def test_dense_double_backward(xp_backend, n, fin, fout, bias, seed):
    layer = _randomised(sg.Dense(fin, fout, bias=bias, rng=seed), seed)
    result = _check_double_backward(layer, rng(seed + 1).standard_normal((n, fin)), seed)
    assert result["input"].max_abs_error == 0.0          # ddX_in = None: dX = dY W does not depend on X


@given(geo=conv_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       bias=st.booleans(), seed=seeds)
def test_conv2d_double_backward(xp_backend, geo, n, cin, cout, bias, seed):
    layer = _randomised(sg.Conv2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"],
                                  bias=bias, rng=seed), seed)
    _check_double_backward(layer, rng(seed + 1).standard_normal((n, cin, geo["H"], geo["W"])), seed)


@pytest.mark.parametrize("make, shape", [
    (lambda: sg.ReLU(), (3, 4)),
    (lambda: sg.LeakyReLU(0.2), (2, 3, 2, 2)),
    (lambda: sg.LeakyReLU(-0.5), (3, 4)),
    (lambda: sg.Flatten(), (2, 3, 2, 2)),
    (lambda: sg.Reshape(3, 4), (2, 12)),
    (lambda: sg.Dropout(0.4, seed=3), (4, 5)),
    (lambda: sg.Dropout(0.4, seed=3).eval(), (4, 5)),
    (lambda: sg.Dropout(1.0), (2, 3)),
], ids=["ReLU", "LeakyReLU", "LeakyReLU-negative", "Flatten", "Reshape", "Dropout-train", "Dropout-eval",
        "Dropout-p1"])
@pytest.mark.parametrize("seed", [0, 1])
def test_mask_and_reshape_double_backward(xp_backend, make, shape, seed):
    _check_double_backward(make(), _away_from_kink(rng(seed).standard_normal(shape)), seed)


@given(n=st.integers(1, 3), shape=st.sampled_from([(1,), (3,), (5,), (2, 3), (3, 2, 2), (1, 3, 1)]),
       affine=st.booleans(), eps=st.sampled_from([1e-5, 0.1]), scale=st.sampled_from([0.3, 1.0, 4.0]), seed=seeds)
def test_layernorm_double_backward(xp_backend, n, shape, affine, eps, scale, seed):
    layer = _randomised(sg.LayerNorm(shape, eps=eps, elementwise_affine=affine), seed, scale=1.0)
    result = _check_double_backward(layer, rng(seed + 1).standard_normal((n,) + shape) * scale + 0.5, seed)
    if affine:
        assert result["0.bias"].max_abs_error == 0.0      # dX does not depend on beta


def test_double_backward_checks_its_arguments():
    layer = sg.Dense(3, 2, rng=0)
    Y, cache = layer.forward(A(np.ones((4, 3), np.float32)))
    with pytest.raises(sg.ShapeError, match=re.escape(repr(layer)) + r"\.double_backward: expected ddX of shape "
                       r"\(4, 3\) \(the forward input\), got \(4, 2\)"):
        layer.double_backward(A(np.ones((4, 2), np.float32)), Y, cache)
    with pytest.raises(sg.ShapeError, match=r"expected dY of dtype float32 \(the forward output\), got float64"):
        layer.double_backward(A(np.ones((4, 3), np.float32)), A(np.ones((4, 2))), cache)
    with pytest.raises(sg.CacheError, match=re.escape(repr(layer))):
        layer.double_backward(A(np.ones((4, 3), np.float32)), Y, None)


# ---------------------------------------------------------------------------- (b) the whole penalty
def _kink_margin(D, X):
    """The smallest |input| of any ReLU/LeakyReLU in D's forward on X (inf without one)."""
    margin = np.inf
    for layer in check_support(D):
        if isinstance(layer, (sg.ReLU, sg.LeakyReLU)):
            margin = min(margin, float(np.abs(H(X)).min(initial=np.inf)))
        X = layer(X)
    return margin


def _check_penalty(D, X, seed, weight=10.0, target=1.0, max_elements=25, require=assume):
    D = D.astype(np.float64)
    X = A(np.asarray(X, dtype=np.float64))
    require(_kink_margin(D.copy(), X) > KINK_MARGIN)    # a copy: Dropout then draws the masks gradcheck will
    gp = sg.GradientPenalty(D, weight=weight, target=target)
    # A gradient that is exactly zero (the input's, for a piecewise-linear critic; a bias under a
    # LayerNorm, which removes constants) can only be judged by an absolute error, and a central
    # difference of P carries the rounding error of P's evaluation divided by h: ~eps_mach |P| / h =
    # 1e-10 |P|, times the few hundred that a LayerNorm over nearly constant values amplifies it by.
    atol = 1e-6 * max(1.0, abs(float(H(gp.copy().forward(X)[0])[0])))
    result = gradcheck(gp, X, tol=TOL, atol=atol, max_elements=max_elements, seed=seed)
    _passes(result, {"input"} | {f"0.{n}" for n, _, _ in D.named_parameters()}, atol)
    return result


@given(n=st.integers(1, 3), fin=st.integers(1, 5), hidden=st.lists(st.sampled_from([1, 3, 4, 6]), min_size=1, max_size=2),
       acts=st.lists(st.sampled_from(["relu", "leaky", "leaky+ln", "ln+leaky", "dropout+relu"]), min_size=2,
                     max_size=2), target=st.sampled_from([1.0, 0.5]), seed=seeds)
def test_penalty_dense_critic(xp_backend, n, fin, hidden, acts, target, seed):
    layers, width = [], fin
    for i, h in enumerate(hidden):
        layers.append(sg.Dense(width, h, rng=seed + i))
        for part in acts[i].split("+"):
            layers.append({"relu": lambda: sg.ReLU(), "leaky": lambda: sg.LeakyReLU(0.2),
                           "ln": lambda: sg.LayerNorm(h), "dropout": lambda: sg.Dropout(0.3, seed=seed)}[part]())
        width = h
    layers.append(sg.Dense(width, 1, rng=seed + 9))
    D = _randomised(sg.Sequential(*layers), seed)
    _check_penalty(D, rng(seed + 1).standard_normal((n, fin)), seed, target=target)


@given(geo=conv_geometry(), n=st.integers(1, 2), cin=st.integers(1, 2), cout=st.integers(1, 3),
       order=st.sampled_from(["conv-ln-leaky", "conv-leaky-ln", "conv-leaky"]), second=st.booleans(), seed=seeds)
def test_penalty_conv_critic(xp_backend, geo, n, cin, cout, order, second, seed):
    # Every output pixel sees some input (padding < kernel): a pixel of padding alone is the bias, and
    # a LayerNorm over a map of two distinct values is as degenerate as one over two values.
    assume(all(p < k for p, k in zip(geo["padding"], geo["kernel"])))
    conv = sg.Conv2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"], rng=seed)
    Ho, Wo = conv.output_shape(geo["H"], geo["W"])
    assume("ln" not in order or cout * Ho * Wo >= 3)      # a LayerNorm over >= 3 values (module docstring)
    layers = [conv] + [{"ln": sg.LayerNorm((cout, Ho, Wo)), "leaky": sg.LeakyReLU(0.2)}[p]
                       for p in order.split("-")[1:]]
    if second:                                            # a 1x1 convolution on top
        layers += [sg.Conv2D(cout, 2, 1, rng=seed + 1), sg.LeakyReLU(0.1)]
        cout = 2
    layers += [sg.Flatten(), sg.Dense(cout * Ho * Wo, 1, rng=seed + 2)]
    D = _randomised(sg.Sequential(*layers), seed)
    _check_penalty(D, rng(seed + 3).standard_normal((n, cin, geo["H"], geo["W"])), seed, max_elements=20)


def test_penalty_of_a_dcgan_like_critic_and_nested_sequentials():
    """Two strided convolutions with LayerNorm, as a WGAN-GP DCGAN critic, in nested Sequentials."""
    body = sg.Sequential(sg.Conv2D(1, 3, 4, stride=2, padding=1, rng=0), sg.LeakyReLU(0.2),
                         sg.Conv2D(3, 4, 4, stride=2, padding=1, rng=1), sg.LayerNorm((4, 2, 2)), sg.LeakyReLU(0.2))
    D = _randomised(sg.Sequential(body, sg.Flatten(), sg.Dense(16, 1, rng=2)), 3)
    _check_penalty(D, rng(4).standard_normal((2, 1, 8, 8)), 0, require=lambda ok: ok or pytest.fail("kink"))


class _LayerNormWithoutInputTerm(sg.LayerNorm):
    """Planted bug: the double backward forgets that LayerNorm's backward depends on its input."""

    def double_backward(self, ddX, dY, cache):
        return super().double_backward(ddX, dY, cache)[0], None


class _DenseWithoutWeightTerm(sg.Dense):
    """Planted bug: the double backward forgets dW += dY^T ddX."""

    def double_backward(self, ddX, dY, cache):
        X, W = self.saved(cache)
        return ddX @ W.T, None


@pytest.mark.parametrize("bug, bad_rows", [
    (lambda: _LayerNormWithoutInputTerm(5), {"input", "0.0.weight", "0.0.bias"}),
    (lambda: sg.LayerNorm(5), set()),
], ids=["LayerNorm-no-ddX_in", "control"])
def test_the_penalty_check_finds_a_planted_double_backward_bug(bug, bad_rows):
    D = _randomised(sg.Sequential(sg.Dense(3, 5, rng=0), bug(), sg.LeakyReLU(0.2), sg.Dense(5, 1, rng=1)), 0)
    result = gradcheck(sg.GradientPenalty(D.astype(np.float64)), A(rng(1).standard_normal((4, 3))), tol=TOL)
    assert {r.name for r in result.rows if not r.passed} == bad_rows, str(result)
    for r in result.rows:
        assert r.passed or r.rel_error > 1e-2, str(result)


def test_the_penalty_check_finds_a_missing_weight_term():
    D = _randomised(sg.Sequential(_DenseWithoutWeightTerm(3, 4, rng=0), sg.LeakyReLU(0.2), sg.Dense(4, 1, rng=1)), 0)
    result = gradcheck(sg.GradientPenalty(D.astype(np.float64)), A(rng(1).standard_normal((4, 3))), tol=TOL)
    assert not result["0.0.weight"].passed and result["0.2.weight"].passed, str(result)


@given(n=st.integers(1, 3), pixels=st.integers(1, 5), classes=st.integers(2, 4), hidden=st.sampled_from([3, 5]),
       ln=st.booleans(), seed=seeds)
def test_penalty_of_a_conditional_critic_on_its_image_part(xp_backend, n, pixels, classes, hidden, ln, seed):
    """cgan-tutorial's critic reads [image, one-hot label]; the penalty takes the gradient with respect
    to the image values alone (image_features), the label held fixed: its gradient, second order
    through D, against central differences in float64."""
    layers = [sg.Dense(pixels + classes, hidden, rng=seed), sg.LeakyReLU(0.2)]
    layers += [sg.LayerNorm(hidden)] if ln else [sg.Dropout(0.3, seed=seed)]
    D = _randomised(sg.Sequential(*layers, sg.Dense(hidden, 1, rng=seed + 1)), seed)
    r = rng(seed + 2)
    X = np.concatenate([r.standard_normal((n, pixels)), np.eye(classes)[r.integers(0, classes, n)]], axis=1)
    D64 = D.astype(np.float64)
    assume(_kink_margin(D64.copy(), A(X)) > KINK_MARGIN)
    gp = sg.GradientPenalty(D64, weight=10.0, image_features=pixels)
    atol = 1e-6 * max(1.0, abs(float(H(gp.copy().forward(A(X))[0])[0])))
    result = gradcheck(gp, A(X), tol=TOL, atol=atol, max_elements=25, seed=seed)
    _passes(result, {"input"} | {f"0.{k}" for k, _, _ in D64.named_parameters()}, atol)


def test_conditional_penalty_value_is_the_image_gradient_norm_only():
    D = _randomised(sg.Sequential(sg.Dense(6, 4, rng=0), sg.LeakyReLU(0.2), sg.Dense(4, 1, rng=1)), 0)
    D.astype(np.float64)
    X = A(np.concatenate([rng(1).standard_normal((3, 4)), np.eye(2)[[0, 1, 1]]], axis=1))
    gp = sg.GradientPenalty(D, weight=10.0, image_features=4)
    P, _ = gp.forward(X)
    Y, cache = D.forward(X)
    g = H(D.backward(backend.xp().ones_like(Y), cache))
    image_norms = np.sqrt((g[:, :4] ** 2).sum(axis=1))
    np.testing.assert_allclose(H(gp.last_norms), image_norms, rtol=1e-12)
    np.testing.assert_allclose(float(H(P)[0]), 10.0 * np.mean((image_norms - 1.0) ** 2), rtol=1e-12)
    assert not np.allclose(image_norms, np.sqrt((g ** 2).sum(axis=1)))       # the label part did count before
    with pytest.raises(ValueError, match="image_features must be an integer >= 1, got 0"):
        sg.GradientPenalty(D, image_features=0)
    with pytest.raises(sg.ShapeError, match="image_features 7 is more than the critic's 6 input values"):
        sg.GradientPenalty(D, image_features=7).forward(X)


# ---------------------------------------------------------------------------- (c) the value
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_penalty_value_is_the_mean_over_samples_of_separate_input_gradients(xp_backend, dtype):
    D = _randomised(sg.Sequential(sg.Conv2D(2, 3, 3, stride=2, padding=1, rng=0), sg.LeakyReLU(0.2),
                                  sg.LayerNorm((3, 3, 3)), sg.Flatten(), sg.Dense(27, 1, rng=1)), 0).astype(dtype)
    X = A(rng(1).standard_normal((5, 2, 6, 6)).astype(dtype))
    gp = sg.GradientPenalty(D, weight=7.0, target=0.8)
    P, _ = gp.forward(X)
    assert P.shape == (1,) and P.dtype == dtype
    norms = []
    for i in range(5):                                   # one sample at a time, the ordinary backward
        Y, cache = D.forward(X[i:i + 1])
        g = H(D.backward(backend.xp().ones_like(Y), cache)).astype(np.float64)
        norms.append(np.sqrt((g * g).sum()))
    norms = np.array(norms)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(H(gp.last_norms), norms, rtol=rtol)
    np.testing.assert_allclose(float(H(P)[0]), 7.0 * np.mean((norms - 0.8) ** 2), rtol=rtol)


def test_penalty_backward_accumulates_and_leaves_the_penalty_of_a_constant_critic_at_zero_gradient():
    D = _randomised(sg.Sequential(sg.Dense(3, 4, rng=0), sg.LeakyReLU(0.2), sg.Dense(4, 1, rng=1)), 0)
    D.astype(np.float64)
    gp = sg.GradientPenalty(D)
    X = A(rng(1).standard_normal((3, 3)))
    P, cache = gp.forward(X)
    D.zero_grad()
    dx = gp.backward(A(np.ones(1)), cache)
    once = {k: H(g).copy() for k, _, g in D.named_parameters()}
    gp.backward(A(np.ones(1)), cache)
    for k, _, g in D.named_parameters():
        np.testing.assert_allclose(H(g), 2 * once[k])
    assert dx.shape == X.shape and float(np.abs(H(dx)).max()) == 0.0   # piecewise linear: g constant in x
    # A zero input gradient (a zero weight) is guarded: P = weight * target^2, gradient finite.
    D[2].params["weight"][...] = 0
    P, cache = gp.forward(X)
    assert float(H(P)[0]) == pytest.approx(10.0) and float(H(gp.last_norms).max()) == 0.0
    D.zero_grad()
    gp.backward(A(np.ones(1)), cache)
    assert all(np.isfinite(H(g)).all() for _, _, g in D.named_parameters())


def test_penalty_checks_dP_and_its_arguments():
    D = sg.Sequential(sg.Dense(3, 1, rng=0))
    gp = sg.GradientPenalty(D)
    P, cache = gp.forward(A(np.ones((2, 3), np.float32)))
    with pytest.raises(sg.ShapeError, match=r"GradientPenalty.*expected dY of shape \(1,\)"):
        gp.backward(A(np.ones((2,), np.float32)), cache)
    with pytest.raises(ValueError, match=r"GradientPenalty: weight must be a finite number in \[0, inf\), got -1"):
        sg.GradientPenalty(D, weight=-1)
    with pytest.raises(TypeError, match="GradientPenalty: expected a critic Module"):
        sg.GradientPenalty([sg.Dense(3, 1)])
    assert sg.GradientPenalty is sg.penalty.GradientPenalty and sg.LayerNorm is sg.layers.LayerNorm


# ---------------------------------------------------------------------------- (d) refusals
SUPPORTED = ["Conv2D", "Dense", "Dropout", "Flatten", "LayerNorm", "LeakyReLU", "ReLU", "Reshape"]


@pytest.mark.parametrize("layer, why", [
    (sg.BatchNorm1d(4), "statistics over the batch"),
    (sg.BatchNorm2d(4).eval(), "statistics over the batch"),
    (sg.ConvTranspose2D(4, 4, 3), "generator layer"),
    (sg.Sigmoid(), "depends smoothly on the input"),
    (sg.Tanh(), "depends smoothly on the input"),
    (sg.MaxPool2D(2), "strided Conv2D"),
    (sg.AvgPool2D(2), "strided Conv2D"),
    (sg.Upsample2D(2), "generator layer"),
], ids=lambda v: type(v).__name__ if isinstance(v, sg.Module) else "")
def test_layers_without_double_backward_are_refused_with_the_reason(layer, why):
    D = sg.Sequential(sg.Dense(3, 4, rng=0), sg.Sequential(sg.LeakyReLU(0.2), layer), sg.Dense(4, 1, rng=1))
    with pytest.raises(DoubleBackwardError) as info:
        sg.GradientPenalty(D)
    msg = str(info.value)
    assert f"D[1][1] {layer!r}" in msg and why in msg, msg
    assert "Layers with a double backward: " + ", ".join(sg.layers.base.double_backward_layers()) in msg, msg
    assert all(name in msg for name in SUPPORTED), msg
    with pytest.raises(DoubleBackwardError, match=re.escape(f"{layer!r}.double_backward: not supported")):
        layer.double_backward(None, None, None)
    assert isinstance(info.value, NotImplementedError)


def test_batchnorm_message_says_why_it_cannot_work():
    with pytest.raises(DoubleBackwardError, match="each sample's output depends on the other samples.*LayerNorm"):
        sg.GradientPenalty(sg.Sequential(sg.Dense(3, 4), sg.BatchNorm1d(4), sg.Dense(4, 1)))


def test_supported_layers_are_found_not_listed():
    found = sg.layers.base.double_backward_layers()
    assert set(SUPPORTED) <= set(found) and found == sorted(found)      # (+ wrappers that gain one)
    assert not {"BatchNorm1d", "BatchNorm2d", "ConvTranspose2D", "Sigmoid", "Tanh", "MaxPool2D", "AvgPool2D",
                "Upsample2D", "Sequential", "GradientPenalty", "InputGradient"} & set(found)


# ---------------------------------------------------------------------------- (e) interpolates
@pytest.mark.parametrize("shape", [(5, 3), (4, 1, 6, 6), (3,), (0, 2)])
def test_interpolates_shapes_and_range(xp_backend, shape):
    r = rng(0)
    real, fake = A(r.standard_normal(shape).astype(np.float32)), A(r.standard_normal(shape).astype(np.float32))
    x_hat, eps = interpolates(real, fake, rng(1))
    assert x_hat.shape == real.shape and x_hat.dtype == np.float32
    assert eps.shape == (shape[0],) + (1,) * (len(shape) - 1)
    assert backend.array_module(x_hat, eps) is backend.xp()
    e = H(eps)
    assert ((e >= 0) & (e <= 1)).all()
    lo, hi = np.minimum(H(real), H(fake)), np.maximum(H(real), H(fake))
    assert ((H(x_hat) >= lo - 1e-6) & (H(x_hat) <= hi + 1e-6)).all()
    np.testing.assert_allclose(H(x_hat), e * H(real) + (1 - e) * H(fake), rtol=1e-5, atol=1e-6)
    again, eps2 = interpolates(real, fake, 1)            # a seed works too
    np.testing.assert_array_equal(H(eps2), H(interpolates(real, fake, 1)[1]))


def test_interpolates_draws_eps_per_sample_uniformly():
    x_hat, eps = interpolates(np.ones((20000, 2)), np.zeros((20000, 2)), rng(0))
    np.testing.assert_array_equal(x_hat[:, 0], eps[:, 0])
    assert abs(eps.mean() - 0.5) < 0.01 and abs(eps.var() - 1 / 12) < 0.005


def test_interpolates_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one shape and dtype"):
        interpolates(np.ones((2, 3)), np.ones((3, 3)), 0)
    with pytest.raises(ValueError, match="x_real must be a floating array"):
        interpolates(np.ones((2, 3), int), np.ones((2, 3)), 0)
