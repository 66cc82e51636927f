"""Structural checks of the layers: references written here, adjointness, BatchNorm and
Dropout semantics, cache safety (LESSONS bug 1), no in-place changes to dY, gradient
accumulation, modes, state dicts, summary, dtypes, errors and initialisers.

Arrays are built on the host with NumPy and moved with ``backend.asarray`` so the
tests also run with SCRATCHGAN_BACKEND=cupy.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend, init, losses

from helpers import A, H, conv_geometry, convT_geometry, rng
from scratchgan.layers import ShapeError

seeds = st.integers(0, 2**31 - 1)


# ---------------------------------------------------------------------------- helpers
def set_param(layer, name, value):
    layer.params[name][...] = A(np.asarray(value, dtype=H(layer.params[name]).dtype))


def naive_conv2d(x, w, b, stride, padding):
    """Cross-correlation by plain loops: y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] xpad[n,c,s i+u,s j+v]."""
    N, C, Hh, Ww = x.shape
    O, C2, kh, kw = w.shape
    assert C == C2
    (sh, sw), (ph, pw) = stride, padding
    xpad = np.zeros((N, C, Hh + 2 * ph, Ww + 2 * pw))
    xpad[:, :, ph:ph + Hh, pw:pw + Ww] = x
    Ho, Wo = (Hh + 2 * ph - kh) // sh + 1, (Ww + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, Ho, Wo))
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    s = 0.0 if b is None else b[o]
                    for c in range(C):
                        for u in range(kh):
                            for v in range(kw):
                                s += w[o, c, u, v] * xpad[n, c, sh * i + u, sw * j + v]
                    y[n, o, i, j] = s
    return y


def naive_conv_transpose2d(x, w, b, stride, padding, output_padding):
    """Transposed convolution by scattering: each input pixel adds w[c, :, :, :] * x at s*i - p."""
    N, C, Hh, Ww = x.shape
    C2, O, kh, kw = w.shape
    assert C == C2
    (sh, sw), (ph, pw), (oh, ow) = stride, padding, output_padding
    Ho, Wo = (Hh - 1) * sh - 2 * ph + kh + oh, (Ww - 1) * sw - 2 * pw + kw + ow
    y = np.zeros((N, O, Ho, Wo))
    for n in range(N):
        for c in range(C):
            for i in range(Hh):
                for j in range(Ww):
                    for o in range(O):
                        for u in range(kh):
                            for v in range(kw):
                                r, q = sh * i + u - ph, sw * j + v - pw
                                if 0 <= r < Ho and 0 <= q < Wo:
                                    y[n, o, r, q] += w[c, o, u, v] * x[n, c, i, j]
    if b is not None:
        y += b[None, :, None, None]
    return y


# ---------------------------------------------------------------------------- convolutions
@given(geo=conv_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       bias=st.booleans(), seed=seeds)
def test_conv2d_matches_naive_loops(geo, n, cin, cout, bias, seed):
    k, s, p, Hh, Ww = geo["kernel"], geo["stride"], geo["padding"], geo["H"], geo["W"]
    r = rng(seed)
    layer = sg.Conv2D(cin, cout, k, stride=s, padding=p, bias=bias, rng=seed, dtype=np.float64)
    if bias:
        set_param(layer, "bias", r.standard_normal(cout))
    x = r.standard_normal((n, cin, Hh, Ww))
    y, _ = layer.forward(A(x))
    ref = naive_conv2d(x, H(layer.params["weight"]), H(layer.params["bias"]) if bias else None, s, p)
    assert y.shape == ref.shape
    np.testing.assert_allclose(H(y), ref, rtol=1e-10, atol=1e-12)


@given(geo=convT_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3),
       bias=st.booleans(), seed=seeds)
def test_conv_transpose2d_matches_naive_scatter_and_size_formula(geo, n, cin, cout, bias, seed):
    k, s, p, op, Hh, Ww = geo["kernel"], geo["stride"], geo["padding"], geo["output_padding"], geo["H"], geo["W"]
    r = rng(seed)
    layer = sg.ConvTranspose2D(cin, cout, k, stride=s, padding=p, output_padding=op, bias=bias, rng=seed,
                               dtype=np.float64)
    if bias:
        set_param(layer, "bias", r.standard_normal(cout))
    x = r.standard_normal((n, cin, Hh, Ww))
    y, _ = layer.forward(A(x))
    expected_hw = ((Hh - 1) * s[0] - 2 * p[0] + k[0] + op[0], (Ww - 1) * s[1] - 2 * p[1] + k[1] + op[1])
    assert tuple(y.shape) == (n, cout) + expected_hw
    assert tuple(layer.output_shape(Hh, Ww)) == expected_hw
    ref = naive_conv_transpose2d(x, H(layer.params["weight"]), H(layer.params["bias"]) if bias else None, s, p, op)
    np.testing.assert_allclose(H(y), ref, rtol=1e-10, atol=1e-12)


@given(geo=conv_geometry(), n=st.integers(1, 2), cin=st.integers(1, 3), cout=st.integers(1, 3), seed=seeds)
def test_conv_transpose_is_adjoint_of_conv(geo, n, cin, cout, seed):
    """<conv(x), y> == <x, convT(y)> with ConvT's (in, out, kh, kw) weight = conv's (out, in, kh, kw) array."""
    k, s, p, Hh, Ww = geo["kernel"], geo["stride"], geo["padding"], geo["H"], geo["W"]
    r = rng(seed)
    conv = sg.Conv2D(cin, cout, k, stride=s, padding=p, bias=False, rng=seed, dtype=np.float64)
    # output_padding chosen so that convT maps conv's output size back to (Hh, Ww)
    op = ((Hh + 2 * p[0] - k[0]) % s[0], (Ww + 2 * p[1] - k[1]) % s[1])
    convT = sg.ConvTranspose2D(cout, cin, k, stride=s, padding=p, output_padding=op, bias=False, dtype=np.float64)
    convT.params["weight"][...] = conv.params["weight"]
    x = r.standard_normal((n, cin, Hh, Ww))
    cx, _ = conv.forward(A(x))
    y = r.standard_normal(tuple(cx.shape))
    cty, _ = convT.forward(A(y))
    assert tuple(cty.shape) == x.shape
    lhs, rhs = float((H(cx) * y).sum()), float((x * H(cty)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)
    # and the two backward passes are each other's forward
    np.testing.assert_allclose(H(conv.backward(A(y), conv.forward(A(x))[1])), H(cty), rtol=1e-10, atol=1e-12)


@given(geo=conv_geometry(), n=st.integers(1, 2), c=st.integers(1, 3), k=st.integers(1, 4), seed=seeds)
def test_col2im_adjoint_of_im2col_and_fused_product(geo, n, c, k, seed):
    """<im2col(X), C> == <X, col2im(C)>, and col2im(A, B=B) (one GEMM per kernel offset) equals
    col2im(A @ B) (one GEMM, then the scatter-add) for any geometry."""
    from scratchgan.layers import conv
    from scratchgan.layers.conv import col2im, im2col
    kern, s, p, Hh, Ww = geo["kernel"], geo["stride"], geo["padding"], geo["H"], geo["W"]
    r = rng(seed)
    x = r.standard_normal((n, c, Hh, Ww))
    cols, (Ho, Wo) = im2col(A(x), kern, s, p)
    C = r.standard_normal(tuple(cols.shape))
    back = H(col2im(A(C), x.shape, kern, s, p))
    assert float((H(cols) * C).sum()) == pytest.approx(float((x * back).sum()), rel=1e-10, abs=1e-10)
    a = r.standard_normal((n * Ho * Wo, k))
    b = r.standard_normal((k, cols.shape[1]))
    few = conv.FEW_CHANNELS
    try:
        for conv.FEW_CHANNELS in (0, c + 1):     # the per-offset GEMMs, then the product made whole
            np.testing.assert_allclose(H(col2im(A(a), x.shape, kern, s, p, B=A(b))),
                                       H(col2im(A(a @ b), x.shape, kern, s, p)), rtol=1e-12, atol=1e-12)
    finally:
        conv.FEW_CHANNELS = few


# ---------------------------------------------------------------------------- the Fourier path
def _fourier_and_im2col(cin, cout, geo, bias, seed, dtype=np.float64):
    """Two ConvTranspose2D layers with one weight and bias, one per algorithm."""
    kw = dict(stride=geo.get("stride", 1), padding=geo["padding"], output_padding=geo.get("output_padding", 0))
    pair = [sg.ConvTranspose2D(cin, cout, geo["kernel"], bias=bias, rng=seed, dtype=dtype, algorithm=a, **kw)
            for a in ("fourier", "im2col")]
    if bias:
        set_param(pair[0], "bias", rng(seed).standard_normal(cout).astype(dtype))
        set_param(pair[1], "bias", H(pair[0].params["bias"]))
    return pair


@given(geo=convT_geometry(max_stride=3, max_kernel=6), n=st.integers(1, 3), cin=st.integers(1, 4),
       cout=st.integers(1, 4), bias=st.booleans(), seed=seeds)
def test_fourier_conv_transpose_matches_naive_scatter_and_im2col(geo, n, cin, cout, bias, seed):
    """Forward against the scatter loops; dX, dW, db and the two partial backwards against
    the im2col path, in float64, for strides 1 to 3 (kernels shorter than the stride, whose
    phases have no taps, and longer than the periodic grid included)."""
    four, gemm = _fourier_and_im2col(cin, cout, geo, bias, seed)
    r = rng(seed + 1)
    x = r.standard_normal((n, cin, geo["H"], geo["W"]))
    y, cache = four.forward(A(x))
    ref = naive_conv_transpose2d(x, H(four.params["weight"]), H(four.params["bias"]) if bias else None,
                                 geo["stride"], geo["padding"], geo["output_padding"])
    np.testing.assert_allclose(H(y), ref, rtol=1e-10, atol=1e-11)
    y2, cache2 = gemm.forward(A(x))
    dy = r.standard_normal(ref.shape)
    np.testing.assert_allclose(H(four.backward(A(dy), cache)), H(gemm.backward(A(dy), cache2)), rtol=1e-10, atol=1e-11)
    for name in four.grads:
        np.testing.assert_allclose(H(four.grads[name]), H(gemm.grads[name]), rtol=1e-10, atol=1e-11, err_msg=name)
    four.zero_grad()
    np.testing.assert_allclose(H(four.backward_input(A(dy), cache)), H(gemm.backward_input(A(dy), cache2)),
                               rtol=1e-10, atol=1e-11)
    assert all(not H(g).any() for g in four.grads.values())          # backward_input leaves dW alone
    assert four.backward_params(A(dy), cache) is None
    for name in four.grads:
        np.testing.assert_allclose(H(four.grads[name]), H(gemm.grads[name]), rtol=1e-10, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("cin, cout, stride", [(256, 128, 1), (128, 64, 2)])
def test_fourier_conv_transpose_float32_is_as_close_as_im2col(cin, cout, stride):
    """The DCGAN's 7x7 layers at batch 8 in float32: both paths within 1e-5 of float64."""
    geo = dict(kernel=(5, 5), padding=(2, 2), stride=stride, output_padding=stride - 1)
    four, gemm = _fourier_and_im2col(cin, cout, geo, True, 0, dtype=np.float32)
    exact, _ = _fourier_and_im2col(cin, cout, geo, True, 0)
    r = rng(1)
    x = r.standard_normal((8, cin, 7, 7))
    dy = r.standard_normal((8, cout, 7 * stride, 7 * stride))
    truth, cache = exact.forward(A(x))
    dx_truth = H(exact.backward(A(dy), cache))
    for layer in (four, gemm):
        y, cache = layer.forward(A(x.astype(np.float32)))
        assert y.dtype == np.float32
        dx = H(layer.backward(A(dy.astype(np.float32)), cache))
        for got, want in [(H(y), H(truth)), (dx, dx_truth), (H(layer.grads["weight"]), H(exact.grads["weight"]))]:
            assert got.dtype == np.float32
            assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@given(geo=conv_geometry(), n=st.integers(1, 3), cin=st.integers(1, 4), cout=st.integers(1, 4), seed=seeds)
def test_conv2d_input_gradient_by_fourier_equals_col2im(geo, n, cin, cout, seed):
    """Conv2D's input gradient is a transposed convolution of dY: the Fourier path (forced by a
    share of infinity) and col2im (share 0) give the same dX from backward and backward_input,
    in float64, for every geometry (strides 1 to 3); the weight gradients do not depend on it."""
    from scratchgan.layers import conv
    r = rng(seed)
    x = r.standard_normal((n, cin, geo["H"], geo["W"]))
    results = []
    share = conv.FOURIER_SHARE
    try:
        for conv.FOURIER_SHARE in ({"forward": 0, "backward": 0}, {"forward": float("inf"), "backward": 0}):
            layer = sg.Conv2D(cin, cout, geo["kernel"], stride=geo["stride"], padding=geo["padding"], rng=seed,
                              dtype=np.float64)
            y, cache = layer.forward(A(x))
            dy = rng(seed + 1).standard_normal(tuple(y.shape))
            results.append((H(layer.backward(A(dy), cache)), H(layer.backward_input(A(dy), cache)),
                            H(layer.grads["weight"])))
    finally:
        conv.FOURIER_SHARE = share
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11)


def test_conv2d_takes_the_fourier_path_for_the_dcgan_discriminators_input_gradient(monkeypatch):
    """D's 64 -> 128 stride-2 convolution: its dX (ConvTranspose2D's geometry, 0.77 of im2col's
    FLOPs at batch 64) by the Fourier path, its first layer's (one input channel) by col2im."""
    from scratchgan.layers import conv, fourier
    calls = []
    real = fourier.conv_transpose
    monkeypatch.setattr(fourier, "conv_transpose", lambda *a: calls.append(a[0].shape) or real(*a))
    for cin, cout, hw in [(64, 128, 14), (1, 64, 28)]:
        layer = sg.Conv2D(cin, cout, 5, stride=2, padding=2, rng=0)
        y, cache = layer.forward(A(rng(0).standard_normal((64, cin, hw, hw)).astype(np.float32)))
        layer.backward_input(A(np.ones(y.shape, np.float32)), cache)
    assert calls == [(64, 128, 7, 7)]


@given(geo=convT_geometry(max_stride=3, max_kernel=5), seed=seeds)
def test_fourier_matrices_are_the_dft_on_the_grid(geo, seed):
    """Tx is numpy's rfft2 of a map on the periodic grid, each phase's rows of Tw that of the
    phase's sub-kernel (real and imaginary rows interleaved), and Ty[k] inverts it at phase
    k's kept positions; the grid is large enough for every phase (fourier.phases)."""
    from scratchgan.layers import fourier
    (kh, kw), (sh, sw), (p, q) = geo["kernel"], geo["stride"], geo["padding"]
    hw = (geo["H"], geo["W"])
    out = sg.ConvTranspose2D(1, 1, (kh, kw), stride=(sh, sw), padding=(p, q),
                             output_padding=geo["output_padding"]).output_shape(*hw)
    (rows, L), (cols, M) = fourier.phases(hw[0], kh, sh, p, out[0]), fourier.phases(hw[1], kw, sw, q, out[1])
    Tx, Tw, Ty, firsts = fourier.dft_matrices(hw, (kh, kw), (sh, sw), (p, q), out, np.zeros(1))
    assert len(Ty) == len(firsts) == sh * sw
    F = L * (M // 2 + 1)

    def spectrum(a):
        """rfft2 on the L x M grid of a, wrapped around where it is larger than the grid."""
        grid = np.zeros((L, M))
        np.add.at(grid, (np.arange(a.shape[0])[:, None] % L, np.arange(a.shape[1])[None, :] % M), a)
        spec = np.fft.rfft2(grid).reshape(-1)
        return np.stack([spec.real, spec.imag], 1).reshape(-1)

    r = rng(seed)
    x = r.standard_normal(hw)
    np.testing.assert_allclose(Tx @ x.reshape(-1), spectrum(x), atol=1e-10)
    w = r.standard_normal((kh, kw))
    Tw_phases = (Tw @ w.reshape(-1)).reshape(F, 2, sh * sw)
    for k, ((a, (_, first_h, count_h, start_h)), (b, (_, first_w, count_w, start_w))) in enumerate(
            (ra, cb) for ra in enumerate(rows) for cb in enumerate(cols)):
        sub = w[a::sh, b::sw]
        want = spectrum(sub) if sub.size else np.zeros(2 * F)
        np.testing.assert_allclose(Tw_phases[:, :, k].reshape(-1), want, atol=1e-10)
        assert firsts[k] == (first_h, first_w)
        full = r.standard_normal((L, M))
        kept = (spectrum(full) @ Ty[k]).reshape(count_h, count_w)
        np.testing.assert_allclose(kept, full[start_h:start_h + count_h, start_w:start_w + count_w], atol=1e-10)


@given(n=st.integers(1, 9), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3), op=st.integers(0, 3))
def test_fourier_phases_cover_every_output_once_and_wrap_only_onto_cropped_positions(n, k, s, p, op):
    """Every output index is in exactly one phase; phase a's outputs are a's taps' scatter
    positions (y + p = s (start + i) + a); and on the grid no full-convolution index that wraps
    around lands on a kept one."""
    from scratchgan.layers import fourier
    op = min(op, s - 1)
    n_out = (n - 1) * s - 2 * p + k + op
    if n_out < 1:
        return
    rows, L = fourier.phases(n, k, s, p, n_out)
    seen = []
    for a, (taps, first, count, start) in enumerate(rows):
        ys = list(range(first, n_out, s))
        assert len(ys) == count and taps == len(range(a, k, s))
        assert all(y + p == s * (start + i) + a for i, y in enumerate(ys))
        assert start + count <= L and (n + taps - 2) - L < start       # wrapped indices stay below start
        seen += ys
    assert sorted(seen) == list(range(n_out))


@pytest.mark.parametrize("shares, backward_path", [
    (None, "im2col"),                                              # the defaults: 0.77 is over 0.5
    ({"forward": 0.0, "backward": float("inf")}, "fourier"),       # a Fourier backward brings its forward
])
def test_auto_mixes_a_fourier_forward_with_either_backward(shares, backward_path, monkeypatch):
    """The DCGAN's stride-2 layer under "auto": forward by the Fourier path, backward as the
    shares say (the cache says which); values and every gradient those of im2col alone, in float64."""
    from scratchgan.layers import conv
    if shares is not None:
        monkeypatch.setattr(conv, "FOURIER_SHARE", shares)
    geo = dict(kernel=(5, 5), padding=(2, 2), stride=2, output_padding=1)
    four, gemm = _fourier_and_im2col(128, 64, geo, True, 0)
    auto = sg.ConvTranspose2D(128, 64, 5, stride=2, padding=2, output_padding=1, rng=0, dtype=np.float64)
    auto.load_state_dict(four.state_dict())
    r = rng(3)
    x, dy = r.standard_normal((64, 128, 7, 7)), r.standard_normal((64, 64, 14, 14))
    y, cache = auto.forward(A(x))
    assert auto.saved(cache)[0] == backward_path
    np.testing.assert_allclose(H(y), H(four.forward(A(x))[0]), rtol=1e-12, atol=1e-12)   # Fourier's rounding
    y2, cache2 = gemm.forward(A(x))
    np.testing.assert_allclose(H(y), H(y2), rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(H(auto.backward(A(dy), cache)), H(gemm.backward(A(dy), cache2)), rtol=1e-10, atol=1e-11)
    for name in auto.grads:
        np.testing.assert_allclose(H(auto.grads[name]), H(gemm.grads[name]), rtol=1e-10, atol=1e-11, err_msg=name)


def test_auto_algorithm_picks_fourier_only_where_it_pays():
    dcgan = sg.ConvTranspose2D(256, 128, 5, stride=1, padding=2)
    assert dcgan.uses_fourier((64, 256, 7, 7)) and dcgan.uses_fourier((256, 256, 7, 7))
    assert not dcgan.uses_fourier((1, 256, 7, 7))                     # the kernels' spectra would dominate
    assert dcgan.uses_fourier((64, 256, 7, 7), "backward")
    up = sg.ConvTranspose2D(128, 64, 5, stride=2, padding=2, output_padding=1)      # the DCGAN's 7 -> 14
    assert up.uses_fourier((64, 128, 7, 7)) and up.uses_fourier((256, 128, 7, 7))
    assert not up.uses_fourier((64, 128, 7, 7), "backward")     # its backward is faster by im2col
    with pytest.raises(ValueError, match=r"ConvTranspose2D\(128, 64.*direction must be 'forward' or 'backward', got 'back'"):
        up.uses_fourier((64, 128, 7, 7), "back")
    assert not sg.ConvTranspose2D(64, 1, 5, stride=2, padding=2, output_padding=1).uses_fourier((64, 64, 14, 14))
    assert not sg.ConvTranspose2D(256, 128, 1).uses_fourier((64, 256, 7, 7))   # 1x1: im2col is one GEMM
    forced = sg.ConvTranspose2D(2, 2, 3, padding=1, algorithm="fourier")
    assert forced.uses_fourier((1, 2, 3, 3)) and "algorithm='fourier'" in repr(forced)
    assert not sg.ConvTranspose2D(256, 128, 5, padding=2, algorithm="im2col").uses_fourier((64, 256, 7, 7))
    assert "algorithm" not in repr(dcgan)


def test_error_conv_transpose_algorithm():
    with pytest.raises(ValueError) as e:
        sg.ConvTranspose2D(2, 2, 3, algorithm="fft")
    assert "ConvTranspose2D: algorithm must be one of 'auto', 'im2col', 'fourier', got 'fft'" in str(e.value)


# ---------------------------------------------------------------------------- batchnorm
def _bn_with_stats(cls, c, r, dtype=np.float64):
    bn = cls(c, dtype=dtype)
    set_param(bn, "weight", r.uniform(0.5, 2, c))
    set_param(bn, "bias", r.standard_normal(c))
    bn.buffers["running_mean"][...] = A(r.standard_normal(c).astype(dtype))
    bn.buffers["running_var"][...] = A(r.uniform(1e-4, 3, c).astype(dtype))  # small ones make eps matter
    return bn


@pytest.mark.parametrize("cls, shape", [(sg.BatchNorm1d, (5, 3)), (sg.BatchNorm2d, (2, 3, 4, 2))])
def test_batchnorm_eval_is_affine_formula(cls, shape):
    r = rng(1)
    bn = _bn_with_stats(cls, shape[1], r).eval()
    x = r.standard_normal(shape)
    y, _ = bn.forward(A(x))
    g, b = H(bn.params["weight"]), H(bn.params["bias"])
    rm, rv = H(bn.buffers["running_mean"]), H(bn.buffers["running_var"])
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    ref = g.reshape(bshape) * (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) + b.reshape(bshape)
    np.testing.assert_allclose(H(y), ref, rtol=1e-12, atol=1e-12)
    # eval mode leaves the statistics and the counter alone
    np.testing.assert_array_equal(H(bn.buffers["running_mean"]), rm)
    assert int(bn.buffers["num_batches_tracked"]) == 0


def test_batchnorm_defaults():
    for bn in (sg.BatchNorm1d(4), sg.BatchNorm2d(4)):
        assert bn.eps == 1e-5 and bn.momentum == 0.1 and bn.affine
        np.testing.assert_array_equal(H(bn.buffers["running_mean"]), np.zeros(4))
        np.testing.assert_array_equal(H(bn.buffers["running_var"]), np.ones(4))
        np.testing.assert_array_equal(H(bn.params["weight"]), np.ones(4))
        np.testing.assert_array_equal(H(bn.params["bias"]), np.zeros(4))
        assert int(bn.buffers["num_batches_tracked"]) == 0


@given(n=st.integers(1, 4), c=st.integers(1, 4), h=st.integers(1, 4), w=st.integers(1, 4), seed=seeds)
def test_batchnorm2d_train_normalises_per_channel(n, c, h, w, seed):
    if n * h * w < 2:
        n = 2
    r = rng(seed)
    x = r.standard_normal((n, c, h, w)) * r.uniform(0.5, 5, (1, c, 1, 1)) + r.uniform(-10, 10, (1, c, 1, 1))
    x += r.standard_normal((1, 1, h, w))  # a per-pixel offset: per-pixel statistics would remove it
    bn = sg.BatchNorm2d(c, dtype=np.float64)
    y = H(bn.forward(A(x))[0])
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-9)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-9)
    ref = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls, shape, axes", [(sg.BatchNorm1d, (6, 3), (0,)),
                                              (sg.BatchNorm2d, (3, 2, 3, 2), (0, 2, 3))])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_running_stats_momentum_unbiased(cls, shape, axes, momentum):
    r = rng(2)
    bn = cls(shape[1], momentum=momentum, dtype=np.float64)
    rm, rv = np.zeros(shape[1]), np.ones(shape[1])
    for step in range(3):
        x = r.standard_normal(shape) * (step + 1) + step
        bn.forward(A(x))
        m = x.size // shape[1]
        rm = (1 - momentum) * rm + momentum * x.mean(axis=axes)
        rv = (1 - momentum) * rv + momentum * x.var(axis=axes) * m / (m - 1)  # unbiased
        np.testing.assert_allclose(H(bn.buffers["running_mean"]), rm, rtol=1e-12)
        np.testing.assert_allclose(H(bn.buffers["running_var"]), rv, rtol=1e-12)
        assert int(bn.buffers["num_batches_tracked"]) == step + 1
    # and the biased variance would have been distinguishable
    assert not np.allclose(rv, (1 - momentum) * rv + momentum * x.var(axis=axes), rtol=1e-6)


def test_batchnorm1d_train_batch_of_one_raises():
    bn = sg.BatchNorm1d(3)
    with pytest.raises(ShapeError, match="BatchNorm1d"):
        bn.forward(A(np.ones((1, 3), np.float32)))
    bn.eval()
    y, _ = bn.forward(A(np.ones((1, 3), np.float32)))  # fine in eval mode
    assert y.shape == (1, 3)


# ---------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics(p):
    x = rng(3).uniform(0.5, 2.0, (2000,)).astype(np.float64)
    layer = sg.Dropout(p, seed=7)
    K = 200
    ys = np.stack([H(layer.forward(A(x))[0]) for _ in range(K)])
    # kept values are x / (1 - p') with p' = round(65536 p) / 65536 (within 7.7e-6 of p), dropped ones exactly 0
    kept = ys != 0
    p_used = round(65536 * p) / 65536
    assert abs(p_used - p) <= 2**-17
    np.testing.assert_allclose(ys[kept], np.broadcast_to(x, ys.shape)[kept] / (1 - p_used), rtol=1e-12)
    # fraction dropped ~ p: binomial standard deviation over K*2000 draws
    frac, n_draws = 1 - kept.mean(), kept.size
    assert abs(frac - p) < 6 * math.sqrt(p * (1 - p) / n_draws)
    # expectation kept: mean over K samples ~ x, per element within 6 sigma, overall tighter
    sigma = x * math.sqrt(p / ((1 - p) * K))
    assert np.all(np.abs(ys.mean(axis=0) - x) < 6 * sigma)
    assert abs(ys.mean() - x.mean()) < 6 * x.mean() * math.sqrt(p / ((1 - p) * K * x.size))


def test_dropout_docstring_states_the_quantised_scale():
    """The module's opening formula is the one the code computes (it said M / (1 - p))."""
    import scratchgan.layers.dropout as dropout_module
    doc = dropout_module.__doc__
    assert "Y = X * M / q,  M ~ Bernoulli(q),  q = (65536 - t) / 65536,  t = round(65536 p)" in doc
    assert "/ (1 - p)" not in doc
    p = 0.3
    y = H(sg.Dropout(p, seed=1).forward(A(np.ones((64, 64))))[0])
    q = (65536 - round(65536 * p)) / 65536
    assert set(np.unique(y).tolist()) == {0.0, 1 / q}


def test_random_uint16_is_uniform_in_both_bytes():
    """The four 16-bit values of each 64-bit output: every value of the high and of the low byte
    equally often (6 sigma per bin over 2^20 draws), and no correlation between neighbours."""
    r = H(backend.random_uint16(backend.random_generator(backend.xp(), 4, 0), (1024, 1024))).astype(np.int64).ravel()
    n, bins = r.size, 256
    for part in (r >> 8, r & 0xFF):
        counts = np.bincount(part, minlength=bins)
        assert np.all(np.abs(counts - n / bins) < 6 * math.sqrt(n / bins)), (counts.min(), counts.max())
    x = (r - r.mean()) / r.std()
    for lag in (1, 2, 3, 4):
        assert abs(float((x[:-lag] * x[lag:]).mean())) < 6 / math.sqrt(n)


@pytest.mark.parametrize("p", [1e-6, 1 - 1e-6, 1.0])
def test_dropout_extreme_p(p):
    """p below 2^-17 keeps everything (scale 1); above 1 - 2^-17, as p = 1, drops everything."""
    x = A(rng(2).uniform(0.5, 2.0, (64, 64)))
    y = H(sg.Dropout(p, seed=3).forward(x)[0])
    if p < 0.5:
        np.testing.assert_array_equal(y, H(x))
    else:
        assert not y.any() and np.isfinite(y).all()


def test_dropout_eval_identity_and_p0_identity():
    x = rng(4).standard_normal((5, 6))
    layer = sg.Dropout(0.5).eval()
    np.testing.assert_array_equal(H(layer.forward(A(x))[0]), x)
    layer0 = sg.Dropout(0.0).train()
    y, cache = layer0.forward(A(x))
    np.testing.assert_array_equal(H(y), x)
    dy = rng(5).standard_normal(x.shape)
    np.testing.assert_array_equal(H(layer0.backward(A(dy), cache)), dy)


def test_dropout_seeds_and_consecutive_calls():
    x = A(np.ones((50, 40)))
    a, b, c = sg.Dropout(0.5, seed=3), sg.Dropout(0.5, seed=3), sg.Dropout(0.5, seed=4)
    ya1, ya2 = H(a.forward(x)[0]), H(a.forward(x)[0])
    yb1, yb2 = H(b.forward(x)[0]), H(b.forward(x)[0])
    yc1 = H(c.forward(x)[0])
    np.testing.assert_array_equal(ya1, yb1)
    np.testing.assert_array_equal(ya2, yb2)
    assert not np.array_equal(ya1, ya2), "two consecutive calls drew the same mask"
    assert not np.array_equal(ya1, yc1), "different seeds drew the same mask"


def test_dropout_backward_uses_the_calls_mask():
    layer = sg.Dropout(0.5, seed=1)
    x = A(rng(0).standard_normal((20, 30)))
    y1, c1 = layer.forward(x)
    y2, c2 = layer.forward(x)
    dy = rng(1).standard_normal((20, 30))
    np.testing.assert_array_equal(H(layer.backward(A(dy), c1)) != 0, H(y1) != 0)
    np.testing.assert_array_equal(H(layer.backward(A(dy), c2)) != 0, H(y2) != 0)


# ---------------------------------------------------------------------------- shape layers, activations
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4), s=st.integers(1, 3),
       seed=seeds)
def test_upsample_is_np_repeat(n, c, h, w, s, seed):
    x = rng(seed).standard_normal((n, c, h, w))
    y = H(sg.Upsample2D(s).forward(A(x))[0])
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, s, axis=2), s, axis=3))


@pytest.mark.parametrize("src, dst", [((12,), (3, 4)), ((2, 6), (3, 2, 2)), ((4, 3), (12,)), ((2, 2, 3), (1, 12))])
def test_reshape_flatten_round_trip(src, dst):
    x = rng(0).standard_normal((3,) + src)
    layer = sg.Reshape(*dst)
    y, cache = layer.forward(A(x))
    assert tuple(y.shape) == (3,) + dst
    np.testing.assert_array_equal(H(layer.backward(y, cache)), x)
    np.testing.assert_array_equal(H(y).reshape(x.shape), x)
    assert tuple(sg.Reshape(dst).forward(A(x))[0].shape) == (3,) + dst  # tuple argument form
    f = sg.Flatten()
    z, cz = f.forward(A(x))
    assert tuple(z.shape) == (3, int(np.prod(src)))
    np.testing.assert_array_equal(H(f.backward(z, cz)), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_tanh_extreme_inputs(dtype):
    x = np.array([[-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for layer, lo, hi in ((sg.Sigmoid(), 0.0, 1.0), (sg.Tanh(), -1.0, 1.0)):
            y, cache = layer.forward(A(x))
            dx = H(layer.backward(A(np.ones_like(x)), cache))
            yh = H(y)
            assert yh.dtype == dtype and dx.dtype == dtype
            assert np.all(np.isfinite(yh)) and np.all(np.isfinite(dx))
            assert np.all((yh >= lo) & (yh <= hi))
            assert yh[0, 0] == pytest.approx(lo) and yh[0, -1] == pytest.approx(hi)
    xm = np.linspace(-8, 8, 33)
    np.testing.assert_allclose(H(sg.Sigmoid().forward(A(xm))[0]), 1 / (1 + np.exp(-xm)), rtol=1e-12)
    np.testing.assert_allclose(H(sg.Tanh().forward(A(xm))[0]), np.tanh(xm), rtol=1e-12)


def test_sigmoid_relative_precision_for_negative_inputs():
    """sigmoid(x) for x << 0 is e^x (1 - e^x ...): tiny but with full relative precision.
    0.5 * (1 + tanh(x / 2)) cancels catastrophically there (exactly 0 below about -37 in
    float64 and -17 in float32), which zeroes e.g. the minimax G gradient."""
    x = np.array([-700.0, -100.0, -40.0, -20.0, -10.0])
    ref = np.exp(x) / (1 + np.exp(x))
    np.testing.assert_allclose(H(sg.Sigmoid().forward(A(x))[0]), ref, rtol=1e-12)
    y32 = H(sg.Sigmoid().forward(A(np.array([-20.0, -30.0], np.float32)))[0])
    np.testing.assert_allclose(y32, ref[[3]].tolist() + [np.exp(-30.0)], rtol=1e-5)


def test_sigmoid_function_keeps_float_dtypes_and_lifts_integers():
    """The sigmoid function makes its one array in the result's dtype: float32 stays float32,
    integers give float64 (as exp does), and the input is never written to."""
    from scratchgan.layers.activations import sigmoid
    ints = np.array([-3, 0, 2])
    y = sigmoid(ints)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-ints.astype(np.float64))), rtol=1e-15)
    x32 = np.array([-3.0, 0.0, 2.0], np.float32)
    assert sigmoid(x32).dtype == np.float32 and sigmoid(np.float32(2.0)).dtype == np.float32
    np.testing.assert_array_equal(x32, [-3.0, 0.0, 2.0])
    np.testing.assert_array_equal(ints, [-3, 0, 2])


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.5])
def test_relu_leaky_relu_values(slope):
    x = np.array([[-2.0, -0.5, 0.5, 3.0]])
    np.testing.assert_array_equal(H(sg.ReLU().forward(A(x))[0]), np.maximum(x, 0))
    np.testing.assert_allclose(H(sg.LeakyReLU(slope).forward(A(x))[0]), np.where(x > 0, x, slope * x))


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.5])
def test_relu_leaky_relu_backward_matches_the_piecewise_derivative(slope):
    """The mask products give dY where x > 0 and a dY elsewhere, the left piece at the kink x = 0
    (as torch), also for non-finite inputs."""
    x = np.array([[-np.inf, -2.0, -0.0, 0.0, 1e-30, 3.0, np.inf]])
    dy = np.array([[1.5, -2.0, 3.0, -4.0, 5.0, 6.0, -7.0]])
    for layer, a in ((sg.ReLU(), 0.0), (sg.LeakyReLU(slope), slope)):
        with np.errstate(invalid="ignore"):  # LeakyReLU(0) at -inf: 0 * -inf
            y, cache = layer.forward(A(x))
        np.testing.assert_array_equal(H(layer.backward(A(dy), cache)), np.where(x > 0, dy, a * dy))
    np.testing.assert_array_equal(H(sg.ReLU().forward(A(x))[0]), [[0, 0, 0, 0, 1e-30, 3, np.inf]])
    with np.errstate(invalid="ignore"):  # 0 * -inf: NaN, as in torch's leaky_relu(x, 0)
        expect = np.where(x > 0, x, slope * x)
        np.testing.assert_array_equal(H(sg.LeakyReLU(slope).forward(A(x))[0]), expect)


def test_dense_single_output_input_gradient_is_the_matrix_product():
    """Dense(k, 1) computes dX = dY W as a broadcast product (NumPy's matmul is slow for k = 1):
    it must equal the matrix product exactly."""
    layer = sg.Dense(7, 1, rng=0, dtype=np.float64)
    x = A(rng(0).standard_normal((5, 7)))
    y, cache = layer.forward(x)
    dy = A(rng(1).standard_normal((5, 1)))
    dx = layer.backward(dy, cache)
    assert tuple(dx.shape) == (5, 7)
    np.testing.assert_array_equal(H(dx), H(dy) @ H(layer.params["weight"]))


# ---------------------------------------------------------------------------- cache safety (LESSONS 1)
def _mlp_discriminator(seed):
    return sg.Sequential(sg.Dense(6, 5, rng=seed, dtype=np.float64), sg.BatchNorm1d(5, dtype=np.float64),
                         sg.LeakyReLU(0.2), sg.Dropout(0.4, seed=seed), sg.Dense(5, 1, rng=seed + 1, dtype=np.float64))


def _conv_discriminator(seed):
    return sg.Sequential(sg.Conv2D(1, 3, 3, stride=2, padding=1, rng=seed, dtype=np.float64),
                         sg.BatchNorm2d(3, dtype=np.float64), sg.LeakyReLU(0.2), sg.Dropout(0.3, seed=seed),
                         sg.Flatten(), sg.Dense(3 * 3 * 3, 1, rng=seed + 1, dtype=np.float64))


def _grads(m):
    return {k: H(g).copy() for k, _, g in m.named_parameters()}


@pytest.mark.parametrize("make, in_shape", [(_mlp_discriminator, (4, 6)), (_conv_discriminator, (4, 1, 5, 5))])
def test_cache_safety_real_fake_reverse_order(make, in_shape):
    r = rng(8)
    D = make(3)
    real, fake = r.standard_normal(in_shape), r.standard_normal(in_shape) * 2 + 1
    d_real, d_fake = r.standard_normal((in_shape[0], 1)), r.standard_normal((in_shape[0], 1))

    # reference: each branch alone (a dummy forward keeps the Dropout call counter in step)
    Dr = D.copy()
    _, cr = Dr.forward(A(real))
    dx_real = H(Dr.backward(A(d_real), cr))
    g_real = _grads(Dr)
    Df = D.copy()
    Df.forward(A(real))
    _, cf = Df.forward(A(fake))
    Df.zero_grad()
    dx_fake = H(Df.backward(A(d_fake), cf))
    g_fake = _grads(Df)

    # the GAN step: both forwards first, then backwards in the opposite order
    Dg = D.copy()
    _, cache_real = Dg.forward(A(real))
    _, cache_fake = Dg.forward(A(fake))
    dxf = H(Dg.backward(A(d_fake), cache_fake))
    for k, g in _grads(Dg).items():
        np.testing.assert_allclose(g, g_fake[k], rtol=1e-12, atol=1e-14, err_msg=k)
    dxr = H(Dg.backward(A(d_real), cache_real))
    np.testing.assert_allclose(dxf, dx_fake, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dxr, dx_real, rtol=1e-12, atol=1e-14)
    for k, g in _grads(Dg).items():
        np.testing.assert_allclose(g, g_real[k] + g_fake[k], rtol=1e-12, atol=1e-14, err_msg=k)
    assert not np.allclose(dx_real, dx_fake[: len(dx_real)])  # the two branches really differ


# ---------------------------------------------------------------------------- per-layer contract
LAYERS = {
    "dense": (lambda: sg.Dense(4, 3, rng=0), (5, 4)),
    "dense_nobias": (lambda: sg.Dense(4, 3, bias=False, rng=0), (5, 4)),
    "conv2d": (lambda: sg.Conv2D(2, 3, 3, stride=2, padding=1, rng=0), (2, 2, 5, 5)),
    "convT": (lambda: sg.ConvTranspose2D(2, 3, 4, stride=2, padding=1, output_padding=1, rng=0), (2, 2, 3, 3)),
    "bn1d": (lambda: sg.BatchNorm1d(4), (5, 4)),
    "bn1d_noaffine": (lambda: sg.BatchNorm1d(4, affine=False), (5, 4)),
    "bn2d": (lambda: sg.BatchNorm2d(2), (3, 2, 2, 2)),
    "relu": (lambda: sg.ReLU(), (3, 4)),
    "leaky": (lambda: sg.LeakyReLU(0.2), (3, 4)),
    "sigmoid": (lambda: sg.Sigmoid(), (3, 4)),
    "tanh": (lambda: sg.Tanh(), (3, 4)),
    "dropout": (lambda: sg.Dropout(0.5, seed=1), (3, 4)),
    "reshape": (lambda: sg.Reshape(2, 2), (3, 4)),
    "flatten": (lambda: sg.Flatten(), (3, 2, 2)),
    "upsample": (lambda: sg.Upsample2D(2), (2, 1, 2, 3)),
    "sequential": (lambda: sg.Sequential(sg.Dense(4, 6, rng=0), sg.BatchNorm1d(6), sg.LeakyReLU(0.2),
                                         sg.Dropout(0.3), sg.Dense(6, 2, rng=1), sg.Tanh()), (5, 4)),
}
PARAM_LAYERS = [k for k in LAYERS if k not in ("relu", "leaky", "sigmoid", "tanh", "dropout", "reshape",
                                               "flatten", "upsample", "bn1d_noaffine")]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_forward_backward_do_not_modify_inputs(name, training):
    make, shape = LAYERS[name]
    layer = make().train(training)
    r = rng(9)
    x = A(r.standard_normal(shape).astype(np.float32))
    x_copy = H(x).copy()
    y, cache = layer.forward(x)
    dy = A(r.standard_normal(tuple(y.shape)).astype(np.float32))
    dy_copy = H(dy).copy()
    layer.backward(dy, cache)
    np.testing.assert_array_equal(H(dy), dy_copy, err_msg="backward changed dY in place")
    np.testing.assert_array_equal(H(x), x_copy, err_msg="forward/backward changed X in place")


@pytest.mark.parametrize("name", sorted(PARAM_LAYERS))
def test_gradients_accumulate_and_zero_grad(name):
    make, shape = LAYERS[name]
    layer = make().astype(np.float64)
    r = rng(10)
    x = A(r.standard_normal(shape))
    y, cache = layer.forward(x)
    dy1, dy2 = A(r.standard_normal(tuple(y.shape))), A(r.standard_normal(tuple(y.shape)))
    layer.zero_grad()
    layer.backward(dy1, cache)
    g1 = _grads(layer)
    layer.zero_grad()
    for _, _, g in layer.named_parameters():
        assert not np.any(H(g)), "zero_grad left non-zero gradients"
    layer.backward(dy2, cache)
    g2 = _grads(layer)
    layer.zero_grad()
    layer.backward(dy1, cache)
    layer.backward(dy2, cache)
    for k, g in _grads(layer).items():
        np.testing.assert_allclose(g, g1[k] + g2[k], rtol=1e-12, atol=1e-14, err_msg=k)
        assert np.any(g1[k]), f"{k}: zero gradient, test would be vacuous"


@pytest.mark.parametrize("name", ["relu", "leaky", "sigmoid", "tanh", "bn1d", "bn1d_noaffine", "dropout", "dense",
                                  "sequential"])
def test_backward_rejects_upstream_gradient_of_wrong_shape(name):
    """LESSONS 4: dL/d(D output) of shape (n, 1) fed into a layer whose output is (n, k)
    must be an error, not broadcast silently into a wrong gradient."""
    make, shape = LAYERS[name]
    layer = make().train()
    y, cache = layer.forward(A(rng(0).standard_normal(shape).astype(np.float32)))
    assert y.shape[1] > 1
    bad = A(np.ones((y.shape[0], 1), np.float32))
    with pytest.raises((ShapeError, ValueError)):
        layer.backward(bad, cache)


def test_train_eval_recurse_into_sequential():
    inner = sg.Sequential(sg.Dropout(0.5), sg.BatchNorm1d(3))
    model = sg.Sequential(sg.Dense(3, 3), inner, sg.Sequential(sg.Sequential(sg.BatchNorm1d(3))))
    assert model.eval() is model
    assert all(not m.training for _, m in model.named_modules())
    assert model.train() is model
    assert all(m.training for _, m in model.named_modules())
    model.train(False)
    assert not model[2][0][0].training


# ---------------------------------------------------------------------------- state
def _state_model(seed=0):
    return sg.Sequential(sg.Dense(3, 4, rng=seed), sg.BatchNorm1d(4), sg.LeakyReLU(0.2),
                         sg.Dense(4, 2, rng=seed + 1))


def test_state_dict_names():
    model = sg.Sequential(sg.Dense(3, 4), sg.BatchNorm1d(4), sg.ReLU(),
                          sg.Sequential(sg.Dense(4, 2, bias=False), sg.Dropout(0.5)))
    assert set(model.state_dict()) == {
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "3.0.weight", "3.1.calls"}
    assert [n for n, _, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias", "3.0.weight"]


def test_load_state_dict_round_trip_and_errors():
    a, b = _state_model(0), _state_model(100)
    x = A(rng(0).standard_normal((6, 3)).astype(np.float32))
    for _ in range(3):  # move the running statistics
        a.forward(x)
    saved = {k: H(v).copy() for k, v in a.state_dict().items()}
    b.load_state_dict(saved)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(H(v), saved[k], err_msg=k)
    assert int(b[1].buffers["num_batches_tracked"]) == 3
    a.eval(), b.eval()
    np.testing.assert_array_equal(H(a(x)), H(b(x)))
    # loading copies: changing the source afterwards does not change the model
    saved["0.weight"][...] = 123.0
    assert not np.any(H(b[0].params["weight"]) == 123.0)

    wrong = dict(saved)
    wrong["0.weight"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ShapeError, match=r"0\.weight"):
        b.load_state_dict(wrong)
    missing = {k: v for k, v in saved.items() if k != "1.running_var"}
    with pytest.raises(KeyError, match="running_var"):
        b.load_state_dict(missing)
    with pytest.raises(KeyError, match="extra"):
        b.load_state_dict({**saved, "extra.weight": np.zeros(1)})


def test_copy_is_deep():
    a = _state_model(0)
    b = a.copy()
    b[0].params["weight"][...] = 0
    b[0].grads["weight"][...] = 1
    assert np.any(H(a[0].params["weight"]) != 0) and not np.any(H(a[0].grads["weight"]))


# ---------------------------------------------------------------------------- summary
def test_summary_rows_and_total():
    model = sg.Sequential(sg.Dense(10, 20), sg.ReLU(), sg.Dense(20, 5, bias=False), sg.Reshape(5, 1, 1),
                          sg.ConvTranspose2D(5, 3, 2, stride=2), sg.BatchNorm2d(3))
    text = model.summary((10,), print_fn=None)
    lines = text.splitlines()
    expect = [("Dense(10, 20)", "(None, 20)", "220"), ("ReLU", "(None, 20)", "0"),
              ("Dense(20, 5", "(None, 5)", "100"), ("Reshape", "(None, 5, 1, 1)", "0"),
              ("ConvTranspose2D", "(None, 3, 2, 2)", str(5 * 3 * 2 * 2 + 3)), ("BatchNorm2d", "(None, 3, 2, 2)", "6")]
    for i, (layer, shape, n) in enumerate(expect):
        row = [ln for ln in lines if ln.startswith(f"{i}: ")]
        assert len(row) == 1, text
        assert layer in row[0] and shape in row[0] and row[0].split()[-1] == n, row[0]
    total = 220 + 100 + 63 + 6
    assert model.num_parameters() == total
    assert f"Total params: {total:,}" in text
    printed = []
    model.summary((10,), print_fn=printed.append)
    assert printed == [text]


def test_summary_does_not_change_state_or_modes():
    G = sg.Sequential(sg.Dense(4, 6), sg.BatchNorm1d(6), sg.Dropout(0.5))
    D = sg.Sequential(sg.Dense(6, 6), sg.BatchNorm1d(6), sg.Dropout(0.5), sg.Dense(6, 1))
    model = sg.Sequential(G, D)
    D.eval()  # mixed modes, e.g. a frozen D kept in eval
    before = {k: H(v).copy() for k, v in model.state_dict().items()}
    model.summary((4,), print_fn=None)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(H(v), before[k], err_msg=k)
    assert G.training and all(m.training for _, m in G.named_modules())
    assert all(not m.training for _, m in D.named_modules()), "summary() put an eval-mode submodule into train mode"


# ---------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_dtype_preserved_through_every_layer(name, dtype):
    backend.set_default_dtype(dtype)
    make, shape = LAYERS[name]
    layer = make().train()
    x = A(rng(0).standard_normal(shape).astype(dtype))
    y, cache = layer.forward(x)
    assert y.dtype == dtype, f"forward: {y.dtype}"
    dx = layer.backward(A(rng(1).standard_normal(tuple(y.shape)).astype(dtype)), cache)
    assert dx.dtype == dtype, f"backward: {dx.dtype}"
    for k, p, g in layer.named_parameters():
        assert p.dtype == dtype and g.dtype == dtype, k
    for k, b in layer.named_buffers():
        if np.dtype(b.dtype).kind == "f":
            assert b.dtype == dtype, k
    layer.eval()
    assert layer.forward(x)[0].dtype == dtype


def test_leaky_relu_numpy_scalar_slope_keeps_float32():
    """A slope read from a config as np.float64 must not upcast float32 activations."""
    layer = sg.LeakyReLU(np.float64(0.2))
    x = A(rng(0).standard_normal((3, 4)).astype(np.float32))
    y, cache = layer.forward(x)
    assert y.dtype == np.float32
    assert layer.backward(A(np.ones((3, 4), np.float32)), cache).dtype == np.float32


def _dcgan(seed=0):
    G = sg.Sequential(sg.Dense(8, 16 * 2 * 2, init="dcgan", rng=seed), sg.Reshape(16, 2, 2), sg.BatchNorm2d(16),
                      sg.ReLU(), sg.ConvTranspose2D(16, 8, 4, stride=2, padding=1, init="dcgan", rng=seed + 1),
                      sg.BatchNorm2d(8), sg.ReLU(), sg.Upsample2D(2),
                      sg.ConvTranspose2D(8, 1, 3, stride=1, padding=1, init="dcgan", rng=seed + 2), sg.Tanh())
    D = sg.Sequential(sg.Conv2D(1, 8, 4, stride=2, padding=1, init="dcgan", rng=seed + 3), sg.LeakyReLU(0.2),
                      sg.Dropout(0.3), sg.Conv2D(8, 16, 4, stride=2, padding=1, init="dcgan", rng=seed + 4),
                      sg.BatchNorm2d(16), sg.LeakyReLU(0.2), sg.Flatten(), sg.Dense(16 * 2 * 2, 1, rng=seed + 5))
    return G, D


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_through_dcgan_chain(dtype):
    backend.set_default_dtype(dtype)
    G, D = _dcgan()
    z = A(rng(0).standard_normal((4, 8)).astype(dtype))
    real = A(rng(1).uniform(-1, 1, (4, 1, 8, 8)).astype(dtype))
    fake, cg = G.forward(z)
    assert tuple(fake.shape) == (4, 1, 8, 8) and fake.dtype == dtype
    lr, cr = D.forward(real)
    lf, cf = D.forward(fake)
    loss, d_r, d_f = losses.d_loss(lr, lf, 0.9)
    assert lr.dtype == lf.dtype == loss.dtype == d_r.dtype == d_f.dtype == dtype
    D.backward(d_r, cr)
    D.backward(d_f, cf)
    gl, dg = losses.g_loss_nonsaturating(lf)
    dfake = D.backward(dg, cf)
    assert dfake.dtype == dtype and tuple(dfake.shape) == tuple(fake.shape)
    dz = G.backward(dfake, cg)
    assert dz.dtype == dtype
    for m in (G, D):
        for k, p, g in m.named_parameters():
            assert p.dtype == dtype and g.dtype == dtype, k
            assert np.all(np.isfinite(H(g))), k


# ---------------------------------------------------------------------------- errors
def _raises_shape_error(fn, *fragments):
    with pytest.raises(ShapeError) as info:
        fn()
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in error message: {msg}"
    return msg


def test_error_dense_wrong_in_features():
    _raises_shape_error(lambda: sg.Dense(3, 2).forward(A(np.zeros((4, 5), np.float32))), "Dense", "3", "(4, 5)")
    _raises_shape_error(lambda: sg.Dense(3, 2).forward(A(np.zeros((4, 3, 1), np.float32))), "Dense", "(4, 3, 1)")


def test_error_conv2d_inputs():
    conv = sg.Conv2D(3, 4, 3)
    _raises_shape_error(lambda: conv.forward(A(np.zeros((2, 2, 5, 5), np.float32))), "Conv2D", "3", "(2, 2, 5, 5)")
    _raises_shape_error(lambda: conv.forward(A(np.zeros((3, 5, 5), np.float32))), "Conv2D", "4-D", "(3, 5, 5)")
    _raises_shape_error(lambda: conv.forward(A(np.zeros((2, 3, 2, 2), np.float32))), "Conv2D", "2x2")
    # padding makes a small input valid
    assert tuple(sg.Conv2D(3, 4, 3, padding=1).forward(A(np.zeros((2, 3, 1, 1), np.float32)))[0].shape) == (2, 4, 1, 1)


def test_error_conv_transpose_output_padding():
    for op, s in ((2, 2), (1, 1), (3, 2)):
        with pytest.raises(ValueError, match="output_padding") as info:
            sg.ConvTranspose2D(2, 2, 3, stride=s, output_padding=op)
        assert "ConvTranspose2D" in str(info.value)
    _raises_shape_error(lambda: sg.ConvTranspose2D(2, 3, 3).forward(A(np.zeros((1, 3, 2, 2), np.float32))),
                        "ConvTranspose2D", "(1, 3, 2, 2)")


def test_error_batchnorm_wrong_channels():
    _raises_shape_error(lambda: sg.BatchNorm2d(3).forward(A(np.zeros((2, 4, 2, 2), np.float32))),
                        "BatchNorm2d", "3", "(2, 4, 2, 2)")
    _raises_shape_error(lambda: sg.BatchNorm1d(3).forward(A(np.zeros((2, 4), np.float32))), "BatchNorm1d", "(2, 4)")
    _raises_shape_error(lambda: sg.BatchNorm1d(3).forward(A(np.zeros((2, 3, 1, 1), np.float32))), "BatchNorm1d")


@pytest.mark.parametrize("make, shape", [
    (lambda: sg.Dense(3, 2), (2, 3)), (lambda: sg.Conv2D(1, 2, 2), (1, 1, 3, 3)),
    (lambda: sg.ConvTranspose2D(1, 2, 2), (1, 1, 3, 3)), (lambda: sg.BatchNorm1d(3), (2, 3)),
    (lambda: sg.BatchNorm2d(1, affine=False), (2, 1, 2, 2)), (lambda: sg.Sequential(sg.Dense(3, 2)), (2, 3)),
])
def test_error_dtype_mismatch(make, shape):
    layer = make()  # float32 by default
    msg = _raises_shape_error(lambda: layer.forward(A(np.zeros(shape, np.float64))), "float32", "float64")
    assert type(layer.layers[0] if isinstance(layer, sg.Sequential) else layer).__name__ in msg


def test_error_reshape_incompatible():
    _raises_shape_error(lambda: sg.Reshape(3, 3).forward(A(np.zeros((2, 8), np.float32))), "Reshape", "(2, 8)")


# ---------------------------------------------------------------------------- initialisers
def test_init_seeded_reproducible():
    a, b, c = sg.Dense(30, 20, rng=5), sg.Dense(30, 20, rng=5), sg.Dense(30, 20, rng=6)
    np.testing.assert_array_equal(H(a.params["weight"]), H(b.params["weight"]))
    assert not np.array_equal(H(a.params["weight"]), H(c.params["weight"]))
    sg.manual_seed(42)
    d = sg.Conv2D(3, 4, 3)
    sg.manual_seed(42)
    e = sg.Conv2D(3, 4, 3)
    np.testing.assert_array_equal(H(d.params["weight"]), H(e.params["weight"]))
    for name in init.INITIALISERS:
        x = init.initialise(name, 7, (8, 5, 3, 3), np.float64)
        y = init.initialise(name, 7, (8, 5, 3, 3), np.float64)
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_init_glorot_uniform_bound():
    w = H(sg.Dense(300, 200, init="glorot_uniform", rng=0).params["weight"]).astype(np.float64)
    bound = math.sqrt(6 / (300 + 200))
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound
    assert w.var() == pytest.approx(bound**2 / 3, rel=0.02)
    wc = H(sg.Conv2D(16, 32, 3, init="glorot_uniform", rng=0).params["weight"]).astype(np.float64)
    bc = math.sqrt(6 / (16 * 9 + 32 * 9))
    assert np.abs(wc).max() <= bc * (1 + 1e-6) and np.abs(wc).max() > 0.99 * bc


def test_init_he_normal_std():
    w = H(sg.Conv2D(64, 128, 3, init="he_normal", rng=1).params["weight"]).astype(np.float64)
    assert w.std() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)
    assert abs(w.mean()) < 4 * math.sqrt(2 / (64 * 9)) / math.sqrt(w.size)
    d = H(sg.Dense(500, 400, init="he_normal", rng=2).params["weight"]).astype(np.float64)
    assert d.std() == pytest.approx(math.sqrt(2 / 500), rel=0.02)


def test_init_dcgan_std():
    w = H(sg.ConvTranspose2D(64, 32, 4, init="dcgan", rng=3).params["weight"]).astype(np.float64)
    assert w.std() == pytest.approx(0.02, rel=0.02)
    assert abs(w.mean()) < 4 * 0.02 / math.sqrt(w.size)


def test_init_unknown_name():
    with pytest.raises(ValueError, match="nonsense"):
        sg.Dense(3, 2, init="nonsense")
    with pytest.raises(ValueError, match="glorot_uniform"):
        init.initialise("nonsense", 0, (2, 2), np.float32)


def test_bias_initialised_to_zero():
    for layer in (sg.Dense(5, 4, rng=0), sg.Conv2D(2, 3, 3, rng=0), sg.ConvTranspose2D(2, 3, 3, rng=0)):
        assert not np.any(H(layer.params["bias"]))


@pytest.mark.parametrize("kind", ["mlp", "cgan", "dcgan"])
def test_backward_without_input_grad_gives_the_same_parameter_gradients(kind):
    """Sequential.backward(..., input_grad=False) skips only the data's gradient: every
    parameter gradient must equal the one from the full backward pass."""
    from scratchgan import models
    kw = {"dcgan": dict(g_channels=(8, 4, 2), d_channels=(2, 4))}.get(kind, {})
    gan = models.build(kind, **kw)
    rng = np.random.default_rng(3)
    for net, shape in ((gan.G, (5, gan.latent_dim + gan.num_classes)),
                       (gan.D, (5, 794) if gan.conditional else (5, 1, 28, 28))):
        X = A(rng.standard_normal(shape).astype(np.float32))
        Y, cache = net.forward(X)
        dY = A(rng.standard_normal(Y.shape).astype(np.float32))
        net.zero_grad()
        assert net.backward(dY, cache).shape == X.shape
        full = {k: H(g).copy() for k, _, g in net.named_parameters()}
        net.zero_grad()
        assert net.backward(dY, cache, input_grad=False) is None
        for k, _, g in net.named_parameters():
            np.testing.assert_allclose(H(g), full[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_batchnorm_momentum_none_is_the_cumulative_average():
    """torch.nn: momentum=None makes the running statistics the plain average over batches."""
    bn = sg.BatchNorm1d(3, momentum=None)
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1 + i, (6, 3)) .astype(np.float32) for i in range(4)]
    for b in batches:
        bn.forward(A(b))
    np.testing.assert_allclose(H(bn.buffers["running_mean"]), np.mean([b.mean(0) for b in batches], axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(H(bn.buffers["running_var"]), np.mean([b.var(0, ddof=1) for b in batches], axis=0),
                               rtol=1e-5)

