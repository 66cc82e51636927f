"""LayerNorm (torch.nn.LayerNorm semantics): float64 gradient checks over hypothesis shapes,
and structural tests: each sample normalised to mean 0 / variance ~1 over its trailing dims,
equal to a per-sample loop reference, independent of the other samples of the batch (in
forward and in backward), train == eval, caller-owned caches, dY untouched, both backends."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend
from scratchgan.gradcheck import gradcheck
from scratchgan.layers import ShapeError

from helpers import A, H, rng

seeds = st.integers(0, 2**31 - 1)
lead_shapes = st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple)       # (N,) or (N, T)
# (D,), (C, W), (C, H, W); not over 2 values, where the output is +-gamma + beta up to eps and every
# gradient O(eps): a relative error would compare rounding noise (test_penalty.py says more).
norm_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple).filter(lambda s: math.prod(s) != 2)


def _randomised(layer, seed):
    r = rng(seed)
    for _, p, _ in layer.named_parameters():
        p[...] = A(r.standard_normal(p.shape).astype(H(p).dtype))
    return layer


def _reference(X, gamma, beta, eps, k):
    """A loop over the samples (every index of the leading dims), np.mean / np.var per sample."""
    X = np.asarray(X, dtype=np.float64)
    lead = X.shape[:X.ndim - k]
    Y = np.empty_like(X)
    for idx in np.ndindex(*lead):
        x = X[idx]
        Y[idx] = (x - x.mean()) / np.sqrt(x.var() + eps) * gamma + beta
    return Y


@given(lead=lead_shapes, shape=norm_shapes, affine=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
       scale=st.sampled_from([0.1, 1.0, 5.0]), seed=seeds)
def test_gradcheck(xp_backend, lead, shape, affine, eps, scale, seed):
    layer = _randomised(sg.LayerNorm(shape, eps=eps, elementwise_affine=affine, dtype=np.float64), seed)
    X = A(rng(seed + 1).standard_normal(lead + shape) * scale + 1.0)
    result = gradcheck(layer, X, tol=1e-6, max_elements=40, seed=seed)
    assert {r.name for r in result.rows} == ({"input", "weight", "bias"} if affine else {"input"})
    assert result.passed, str(result)


@given(lead=lead_shapes, shape=norm_shapes, seed=seeds)
def test_each_sample_is_normalised_and_equals_a_loop_reference(lead, shape, seed):
    layer = _randomised(sg.LayerNorm(shape, dtype=np.float64), seed)
    X = rng(seed + 1).standard_normal(lead + shape) * 3 - 2
    Y = H(layer(A(X)))
    ref = _reference(X, H(layer.params["weight"]), H(layer.params["bias"]), layer.eps, len(shape))
    np.testing.assert_allclose(Y, ref, rtol=1e-10, atol=1e-12)
    Xhat = H(sg.LayerNorm(shape, dtype=np.float64)(A(X))).reshape(-1, math.prod(shape))   # gamma 1, beta 0
    np.testing.assert_allclose(Xhat.mean(axis=1), 0, atol=1e-12)
    var = X.reshape(-1, math.prod(shape)).var(axis=1)
    np.testing.assert_allclose(Xhat.var(axis=1), var / (var + 1e-5), rtol=1e-10)   # biased variance: ~1


def test_samples_are_independent_in_forward_and_backward():
    """Changing the other samples changes neither a sample's output nor its input gradient
    (BatchNorm's output and gradient would change)."""
    layer = _randomised(sg.LayerNorm((3, 2, 2), dtype=np.float64), 0)
    r = rng(1)
    X, dY = r.standard_normal((4, 3, 2, 2)), r.standard_normal((4, 3, 2, 2))
    X2, dY2 = X.copy(), dY.copy()
    X2[1:] = r.standard_normal((3, 3, 2, 2)) * 10
    dY2[1:] = r.standard_normal((3, 3, 2, 2))
    outs = []
    for x, dy in ((X, dY), (X2, dY2)):
        Y, cache = layer.forward(A(x))
        outs.append((H(Y)[0], H(layer.backward_input(A(dy), cache))[0]))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    alone = H(layer(A(X[:1])))[0]                            # and a batch of one gives the same
    np.testing.assert_allclose(alone, outs[0][0], rtol=1e-14, atol=1e-14)


def test_defaults_shapes_and_repr_follow_torch():
    ln = sg.LayerNorm((3, 4, 4))
    assert ln.normalized_shape == (3, 4, 4) and ln.eps == 1e-5 and ln.elementwise_affine
    assert ln.params["weight"].shape == (3, 4, 4) and ln.params["bias"].shape == (3, 4, 4)
    assert float(H(ln.params["weight"]).min()) == 1.0 and float(np.abs(H(ln.params["bias"])).max()) == 0.0
    assert ln.params["weight"].dtype == np.float32 and not ln.buffers   # no running statistics
    assert repr(ln) == "LayerNorm((3, 4, 4), eps=1e-05, elementwise_affine=True)"
    assert sg.LayerNorm(5).normalized_shape == (5,) and sg.LayerNorm([2, 3]).normalized_shape == (2, 3)
    assert sg.LayerNorm(5, elementwise_affine=False).num_parameters() == 0


def test_train_and_eval_are_the_same():
    layer = _randomised(sg.LayerNorm(6), 0)
    X = A(rng(1).standard_normal((5, 6)).astype(np.float32))
    np.testing.assert_array_equal(H(layer.train()(X)), H(layer.eval()(X)))


def test_two_forwards_then_two_backwards_and_dY_untouched():
    layer = _randomised(sg.LayerNorm(4, dtype=np.float64), 0)
    r = rng(1)
    xa, xb, da, db = (A(r.standard_normal((3, 4))) for _ in range(4))
    _, ca = layer.forward(xa)
    _, cb = layer.forward(xb)
    da_copy = H(da).copy()
    layer.zero_grad()
    dxa = layer.backward(da, ca)
    dxb = layer.backward(db, cb)
    np.testing.assert_array_equal(H(da), da_copy)
    both = sg.LayerNorm(4, dtype=np.float64)
    both.load_state_dict(layer.state_dict())
    _, cab = both.forward(A(np.concatenate([H(xa), H(xb)])))
    dxab = both.backward(A(np.concatenate([H(da), H(db)])), cab)
    np.testing.assert_allclose(H(dxab), np.concatenate([H(dxa), H(dxb)]), rtol=1e-12, atol=1e-14)
    for k in ("weight", "bias"):
        np.testing.assert_allclose(H(both.grads[k]), H(layer.grads[k]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape, expected", [
    ((4, 3, 3), "expected an input of shape (N, 2, 3)"),
    ((2, 3), "at least 3-D"),
    ((4, 3, 2), "got shape (4, 3, 2)"),
])
def test_wrong_trailing_dims_are_refused_naming_the_layer(shape, expected):
    layer = sg.LayerNorm((2, 3))
    with pytest.raises(ShapeError, match=re.escape(repr(layer)) + ".*" + re.escape(expected)):
        layer.forward(A(np.ones(shape, np.float32)))


def test_float32_in_float32_out_and_empty_batch():
    layer = sg.LayerNorm(3)
    Y, cache = layer.forward(A(rng(0).standard_normal((2, 3)).astype(np.float32)))
    assert Y.dtype == np.float32 and layer.backward(A(np.ones((2, 3), np.float32)), cache).dtype == np.float32
    Y, cache = layer.forward(A(np.ones((0, 3), np.float32)))
    assert Y.shape == (0, 3) and layer.backward(A(np.ones((0, 3), np.float32)), cache).shape == (0, 3)


def test_runs_on_the_selected_backend(xp_backend):
    layer = sg.LayerNorm((2, 3))
    X = backend.xp().asarray(rng(0).standard_normal((4, 2, 3)).astype(np.float32))
    Y, cache = layer.forward(X)
    dX = layer.backward(backend.xp().ones_like(Y), cache)
    assert backend.array_module(Y, dX) is backend.xp()
