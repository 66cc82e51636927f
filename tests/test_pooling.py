"""MaxPool2D / AvgPool2D: forward against a naive loop, float64 central-difference gradient
checks over hypothesis-drawn geometries, the tie rule, and ShapeErrors naming the layer."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchgan import backend
from scratchgan.gradcheck import gradcheck
from scratchgan.layers.base import ShapeError
from scratchgan.layers.pooling import AvgPool2D, MaxPool2D


def naive_pool(X, kernel, stride, reduce):
    """The definition, one window at a time."""
    (kh, kw), (sh, sw) = kernel, stride
    N, C, H, W = X.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    Y = np.empty((N, C, Ho, Wo))
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    Y[n, c, i, j] = reduce(X[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw])
    return Y


@st.composite
def geometries(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    sh, sw = stride or (kh, kw)
    H = draw(st.integers(kh, kh + 2 * sh + 1))
    W = draw(st.integers(kw, kw + 2 * sw + 1))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    return (N, C, H, W), (kh, kw), stride, seed


def _distinct(shape, seed):
    """Distinct values (no ties: max-pooling is differentiable there), spaced >> the FD step."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + rng.uniform(-0.01, 0.01, shape))


@pytest.mark.parametrize("cls,reduce", [(MaxPool2D, np.max), (AvgPool2D, np.mean)])
@given(geo=geometries())
def test_forward_matches_naive_loop(cls, reduce, geo):
    shape, kernel, stride, seed = geo
    X = _distinct(shape, seed)
    layer = cls(kernel, stride)
    Y = backend.to_numpy(layer(backend.asarray(X)))
    expected_stride = stride or kernel
    np.testing.assert_allclose(Y, naive_pool(X, kernel, expected_stride, reduce), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
@given(geo=geometries())
def test_gradcheck_float64(cls, geo):
    shape, kernel, stride, seed = geo
    X = backend.asarray(_distinct(shape, seed))
    result = gradcheck(cls(kernel, stride), X, tol=1e-6, max_elements=None, seed=seed % 1000)
    assert result.passed, str(result)
    assert result["input"].checked == int(np.prod(shape))


def test_gradcheck_detects_a_wrong_backward():
    """The check above can fail: a backward that drops the 1/K of the mean is caught."""
    class Broken(AvgPool2D):
        def backward(self, dY, x_shape):
            return super().backward(dY, x_shape) * 4.0
    X = _distinct((1, 2, 4, 4), 0)
    assert not gradcheck(Broken(2), backend.asarray(X)).passed


def test_default_stride_is_kernel_size():
    assert MaxPool2D(3).stride == (3, 3)
    assert AvgPool2D((2, 3)).stride == (2, 3)
    assert MaxPool2D(3, stride=1).stride == (1, 1)
    X = backend.asarray(np.random.default_rng(0).standard_normal((2, 3, 7, 9)))
    assert MaxPool2D(2)(X).shape == (2, 3, 3, 4)          # floor mode, like torch
    assert AvgPool2D(3, stride=2)(X).shape == (2, 3, 3, 4)


def test_max_tie_gives_the_gradient_to_the_first_maximum():
    X = np.array([[[[1.0, 5.0, 5.0, 0.0],
                    [5.0, 2.0, 0.0, 0.0],
                    [3.0, 3.0, 4.0, 4.0],
                    [3.0, 3.0, 4.0, 4.0]]]])
    layer = MaxPool2D(2)
    Y, cache = layer.forward(backend.asarray(X))
    np.testing.assert_array_equal(backend.to_numpy(Y), [[[[5.0, 5.0], [3.0, 4.0]]]])
    dX = backend.to_numpy(layer.backward(backend.asarray(np.array([[[[1.0, 2.0], [3.0, 4.0]]]])), cache))
    expected = np.array([[[[0.0, 1.0, 2.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0],
                           [3.0, 0.0, 4.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(dX, expected)


def test_overlapping_windows_accumulate_gradients():
    # one large value shared by all four 2x2 windows (stride 1) of a 3x3 image
    X = np.zeros((1, 1, 3, 3))
    X[0, 0, 1, 1] = 10.0
    layer = MaxPool2D(2, stride=1)
    Y, cache = layer.forward(backend.asarray(X))
    dX = backend.to_numpy(layer.backward(backend.asarray(np.ones((1, 1, 2, 2))), cache))
    assert dX[0, 0, 1, 1] == 4.0 and dX.sum() == 4.0
    avg = AvgPool2D(2, stride=1)
    _, cache = avg.forward(backend.asarray(X))
    dA = backend.to_numpy(avg.backward(backend.asarray(np.ones((1, 1, 2, 2))), cache))
    np.testing.assert_allclose(dA[0, 0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0)


def test_uncovered_pixels_get_zero_gradient():
    X = np.random.default_rng(1).standard_normal((1, 1, 5, 5))
    for layer in (MaxPool2D(2), AvgPool2D(2)):
        Y, cache = layer.forward(backend.asarray(X))
        dX = backend.to_numpy(layer.backward(backend.asarray(np.ones(Y.shape)), cache))
        assert np.all(dX[:, :, 4, :] == 0) and np.all(dX[:, :, :, 4] == 0)


def test_dtype_is_kept():
    X = backend.asarray(np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32))
    for layer in (MaxPool2D(2), AvgPool2D(2)):
        Y, cache = layer.forward(X)
        assert Y.dtype == np.float32
        assert layer.backward(Y, cache).dtype == np.float32


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_shape_errors_name_the_layer(cls):
    layer = cls(3)
    with pytest.raises(ShapeError, match=cls.__name__ + r".*4-D"):
        layer(backend.asarray(np.zeros((2, 5, 5))))
    with pytest.raises(ShapeError, match=cls.__name__ + r".*smaller than the kernel"):
        layer(backend.asarray(np.zeros((1, 1, 2, 5))))
    with pytest.raises(ValueError, match=cls.__name__):
        cls(0)


def test_runs_on_the_cupy_backend(xp_backend):
    X = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    for layer, reduce in ((MaxPool2D(2), np.max), (AvgPool2D(3, stride=1), np.mean)):
        Y, cache = layer.forward(backend.asarray(X))
        np.testing.assert_allclose(backend.to_numpy(Y), naive_pool(X, layer.kernel_size, layer.stride, reduce),
                                   rtol=1e-12)
        dX = layer.backward(Y, cache)
        assert dX.shape == X.shape and backend.array_module(dX) is backend.xp()
