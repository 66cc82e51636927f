"""The layer API refuses misuse clearly: every misuse ends in an exception of a stated type
whose message names the layer (its repr), what it expected and what it got.

* caches are tagged with the layer that made them: backward refuses None, a bare array or
  tuple, the cache of another layer (even a twin with identical shapes) -> CacheError;
* backward refuses a dY of the wrong shape or dtype, or not an array -> ShapeError;
* forward refuses non-arrays, 0-d arrays, wrong ndim, non-float dtypes -> ShapeError, and
  never fails with a raw NumPy error (hypothesis property);
* constructors and optimisers refuse out-of-range arguments -> ValueError;
* astype and the dtype arguments accept float32 and float64 only -> TypeError.

Arrays are built on the host and moved with ``A`` so the file also runs with
SCRATCHGAN_BACKEND=cupy.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend
from scratchgan.layers import CacheError, ShapeError

from conftest import requires_gpu
from helpers import A, H, rng


# ---------------------------------------------------------------------------- one instance of each layer
def _conv_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _seq(dtype=None):
    return sg.Sequential(sg.Dense(3, 4, rng=0, dtype=dtype), sg.ReLU(), sg.Dense(4, 2, rng=1, dtype=dtype))


# name -> (make(dtype), a valid input shape, the documented output shape for an input shape)
LAYERS = {
    "Dense": (lambda dt: sg.Dense(3, 2, rng=0, dtype=dt), (4, 3), lambda s: (s[0], 2)),
    "Conv2D": (lambda dt: sg.Conv2D(2, 3, 3, stride=2, padding=1, rng=0, dtype=dt), (2, 2, 5, 4),
               lambda s: (s[0], 3, _conv_out(s[2], 3, 2, 1), _conv_out(s[3], 3, 2, 1))),
    "ConvTranspose2D": (lambda dt: sg.ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1, rng=0,
                                                      dtype=dt), (2, 2, 3, 2),
                        lambda s: (s[0], 3, (s[2] - 1) * 2 - 2 + 3 + 1, (s[3] - 1) * 2 - 2 + 3 + 1)),
    "BatchNorm1d": (lambda dt: sg.BatchNorm1d(3, dtype=dt), (4, 3), lambda s: s),
    "BatchNorm2d": (lambda dt: sg.BatchNorm2d(2, dtype=dt), (2, 2, 3, 3), lambda s: s),
    "LayerNorm": (lambda dt: sg.LayerNorm((2, 3), dtype=dt), (4, 2, 3), lambda s: s),
    "ReLU": (lambda dt: sg.ReLU(), (4, 3), lambda s: s),
    "LeakyReLU": (lambda dt: sg.LeakyReLU(0.2), (4, 3), lambda s: s),
    "Sigmoid": (lambda dt: sg.Sigmoid(), (4, 3), lambda s: s),
    "Tanh": (lambda dt: sg.Tanh(), (4, 3), lambda s: s),
    "Dropout": (lambda dt: sg.Dropout(0.5, seed=0), (4, 3), lambda s: s),
    "Reshape": (lambda dt: sg.Reshape(3, 2), (4, 6), lambda s: (s[0], 3, 2)),
    "Flatten": (lambda dt: sg.Flatten(), (2, 2, 3), lambda s: (s[0], math.prod(s[1:]))),
    "Upsample2D": (lambda dt: sg.Upsample2D(2), (2, 1, 2, 3), lambda s: (s[0], s[1], 2 * s[2], 2 * s[3])),
    "MaxPool2D": (lambda dt: sg.MaxPool2D(2), (2, 1, 4, 5), lambda s: (s[0], s[1], s[2] // 2, s[3] // 2)),
    "AvgPool2D": (lambda dt: sg.AvgPool2D(3, stride=1), (2, 1, 4, 5), lambda s: (s[0], s[1], s[2] - 2, s[3] - 2)),
    "Sequential": (_seq, (4, 3), lambda s: (s[0], 2)),
}
NAMES = list(LAYERS)
WITH_PARAMS = ["Dense", "Conv2D", "ConvTranspose2D", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Sequential"]
SHAPE_LAYERS = ["Reshape", "Flatten", "Upsample2D"]


def build(name, dtype=np.float32):
    make, shape, out = LAYERS[name]
    return make(dtype), shape, out


def data(shape, dtype=np.float32, seed=0):
    return A(rng(seed).standard_normal(shape).astype(dtype))


def forward(name, dtype=np.float32):
    """(layer, X, Y, cache) for a valid input."""
    layer, shape, _ = build(name, dtype)
    X = data(shape, dtype)
    Y, cache = layer.forward(X)
    return layer, X, Y, cache


def label(layer):
    """How messages name a layer: its repr; a Sequential by its number of layers."""
    return f"Sequential({len(layer)} layers)" if isinstance(layer, sg.Sequential) else repr(layer)


def last(layer):
    """The layer whose backward sees dY first (a Sequential's last layer checks it)."""
    return layer[-1] if isinstance(layer, sg.Sequential) else layer


def esc(*parts):
    """A regex matching all parts, in order, anywhere in the message."""
    return ".*".join(re.escape(str(p)) for p in parts)


# ---------------------------------------------------------------------------- 1. caches know their owner
@pytest.mark.parametrize("name", NAMES)
def test_backward_without_forward_is_refused(name):
    layer, _, Y, _ = forward(name)
    with pytest.raises(CacheError, match=esc(label(layer), "no forward: got None")):
        layer.backward(Y, None)


@pytest.mark.parametrize("name", ["Dense", "Conv2D", "ConvTranspose2D"])
def test_backward_params_without_forward_is_refused(name):
    layer, _, Y, _ = forward(name)
    with pytest.raises(CacheError, match=esc(label(layer), "no forward: got None")):
        layer.backward_params(Y, None)


@pytest.mark.parametrize("name", WITH_PARAMS)
def test_backward_input_without_forward_is_refused(name):
    layer, _, Y, _ = forward(name)
    with pytest.raises(CacheError, match=esc(label(layer), "no forward: got None")):
        layer.backward_input(Y, None)


@pytest.mark.parametrize("name", NAMES + ["BatchNorm1d-eval", "Dropout-eval"])
def test_backward_input_is_backward_without_the_parameter_gradients(name):
    """backward_input returns backward's dX exactly and leaves every gradient at zero;
    it checks dY as backward does."""
    layer, shape, _ = build(name.split("-")[0])
    if name.endswith("eval"):
        layer.eval()
    X = data(shape)
    Y, cache = layer.forward(X)
    dY = data(Y.shape, seed=1)
    dX = layer.backward_input(dY, cache)
    assert all(float(np.abs(H(g)).sum()) == 0.0 for _, _, g in layer.named_parameters())
    np.testing.assert_array_equal(H(dX), H(layer.backward(dY, cache)))
    bad = (Y.shape[0] + 1,) + tuple(Y.shape[1:])
    with pytest.raises(ShapeError, match=esc(repr(last(layer)), f"shape {tuple(Y.shape)}", f"got {bad}")):
        layer.backward_input(A(np.ones(bad, np.float32)), cache)


def test_backward_input_of_a_layer_with_parameters_must_be_written():
    """The base class's backward_input is backward itself, which is right only without parameters."""
    class Scale(sg.Module):
        def __init__(self):
            super().__init__()
            self._add_param("weight", np.ones(1, np.float32))

        def forward(self, X):
            return X * self.params["weight"], self.save_for_backward(X)

        def backward(self, dY, cache):
            self.grads["weight"] += (dY * self.saved(cache)).sum(keepdims=True)
            return dY * self.params["weight"]

    layer = Scale()
    Y, cache = layer.forward(data((2, 3)))
    with pytest.raises(NotImplementedError, match=esc("Scale()", "backward_input", "must override")):
        layer.backward_input(Y, cache)


@pytest.mark.parametrize("name", NAMES)
def test_cache_of_a_twin_with_identical_shapes_is_refused(name):
    """Two instances of one class built alike, forward on the same X: every array in the
    other's cache fits, yet it is not this layer's cache."""
    layer, X, Y, cache = forward(name)
    twin, _, _ = build(name)
    _, twin_cache = twin.forward(X)
    with pytest.raises(CacheError, match=esc(label(layer), "a cache made by another", label(twin), "instance")):
        layer.backward(Y, twin_cache)
    assert all(float(H(g).sum()) == 0.0 for _, _, g in layer.named_parameters())  # nothing accumulated
    layer.backward(Y, cache)  # its own cache still works


@pytest.mark.parametrize("name", NAMES)
def test_cache_of_another_layer_class_is_refused(name):
    layer, _, Y, _ = forward(name)
    other = sg.Tanh() if name != "Tanh" else sg.ReLU()
    _, foreign = other.forward(data((2, 2)))
    with pytest.raises(CacheError, match=esc(label(layer), f"a cache made by {other!r}")):
        layer.backward(Y, foreign)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bare", ["array", "tuple", "list"])
def test_bare_values_are_not_a_cache(name, bare):
    """The old contract's caches (the input itself, a tuple, Sequential's list) are refused."""
    layer, X, Y, cache = forward(name)
    value = {"array": X, "tuple": (X, X), "list": [cache]}[bare]
    kind = type(value).__name__
    with pytest.raises(CacheError, match=esc(label(layer), f"got a {kind}", "pass the cache")):
        layer.backward(Y, value)


def test_sequential_refuses_a_cache_after_its_layers_changed():
    model, X, Y, cache = forward("Sequential")
    model.append(sg.ReLU())
    with pytest.raises(CacheError, match=esc("Sequential(4 layers)", "cache of 3 layers for 4 layers")):
        model.backward(Y, cache)


def test_sequential_input_grad_false_checks_the_cache_too():
    model, X, Y, _ = forward("Sequential")
    _, other = _seq().forward(X)
    with pytest.raises(CacheError, match=esc("Sequential(3 layers)", "another Sequential(3 layers)")):
        model.backward(Y, other, input_grad=False)


def test_cache_is_small_and_names_its_owner():
    layer, _, _, cache = forward("LeakyReLU")  # saves one value, X
    assert isinstance(cache, sg.Cache) and cache.owner is layer
    assert not hasattr(cache, "__dict__")  # __slots__: cheap to make on every forward
    assert repr(layer) in repr(cache)
    assert layer.saved(cache) is cache.values[0]                       # one value: the value itself
    assert layer.save_for_backward(1, 2).values == (1, 2) and layer.saved(layer.save_for_backward(1, 2)) == (1, 2)
    assert issubclass(CacheError, ValueError) and sg.CacheError is CacheError


# ---------------------------------------------------------------------------- 2. dY: shape, dtype, type
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layer_dtype, dy_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_dY_of_another_dtype_is_refused(name, layer_dtype, dy_dtype):
    layer, _, Y, cache = forward(name, layer_dtype)
    assert Y.dtype == layer_dtype
    grads = {k: H(g).copy() for k, _, g in layer.named_parameters()}
    with pytest.raises(ShapeError, match=esc(repr(last(layer)), f"dtype {np.dtype(layer_dtype)}",
                                             f"got {np.dtype(dy_dtype)}")):
        layer.backward(A(np.ones(Y.shape, dy_dtype)), cache)
    for k, _, g in layer.named_parameters():  # refused before anything was accumulated
        np.testing.assert_array_equal(H(g), grads[k], err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_dY_of_the_wrong_shape_is_refused(name):
    layer, _, Y, cache = forward(name)
    bad = (Y.shape[0] + 1,) + tuple(Y.shape[1:])
    with pytest.raises(ShapeError, match=esc(repr(last(layer)), f"shape {tuple(Y.shape)}", f"got {bad}")):
        layer.backward(A(np.ones(bad, np.float32)), cache)


@pytest.mark.parametrize("name", SHAPE_LAYERS)
@pytest.mark.parametrize("change", ["transposed", "flat", "one more axis"])
def test_shape_layers_refuse_a_dY_with_the_right_size_but_wrong_shape(name, change):
    """A reshape would happily accept any dY with the right number of values."""
    layer, _, Y, cache = forward(name)
    shape = tuple(Y.shape)
    bad = {"transposed": shape[::-1], "flat": (math.prod(shape),), "one more axis": shape + (1,)}[change]
    with pytest.raises(ShapeError, match=esc(repr(layer), f"shape {shape}", f"got {bad}")):
        layer.backward(A(np.ones(bad, np.float32)), cache)


@pytest.mark.parametrize("name", NAMES)
def test_dY_that_is_not_an_array_is_refused(name):
    layer, _, Y, cache = forward(name)
    with pytest.raises(ShapeError, match=esc(repr(last(layer)), "got a list")):
        layer.backward(H(Y).tolist(), cache)


def test_eval_mode_dropout_and_batchnorm_check_dY_too():
    for name in ("Dropout", "BatchNorm1d"):
        layer, shape, _ = build(name)
        layer.eval()
        Y, cache = layer.forward(data(shape))
        with pytest.raises(ShapeError, match=esc(repr(layer), "float32", "got float64")):
            layer.backward(A(np.ones(Y.shape)), cache)
        with pytest.raises(ShapeError, match=esc(repr(layer), f"shape {tuple(Y.shape)}", "got (1,)")):
            layer.backward(A(np.ones(1, np.float32)), cache)


# ---------------------------------------------------------------------------- 3. bad inputs to forward
NOT_ARRAYS = [None, "abc", [[1.0, 2.0, 3.0]], 1.5]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", NOT_ARRAYS, ids=["None", "str", "list", "float"])
def test_forward_refuses_non_arrays(name, value):
    layer, _, _ = build(name)
    first = layer[0] if isinstance(layer, sg.Sequential) else layer
    with pytest.raises(ShapeError, match=esc(repr(first), "array", f"got a {type(value).__name__}")):
        layer.forward(value)


@pytest.mark.parametrize("name", NAMES)
def test_forward_refuses_0d_arrays(name):
    layer, _, _ = build(name)
    first = layer[0] if isinstance(layer, sg.Sequential) else layer
    with pytest.raises(ShapeError, match=esc(repr(first), "got shape ()")):
        layer.forward(A(np.array(1.0, np.float32)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.float16])
def test_forward_refuses_non_float32_64_dtypes(name, dtype):
    layer, shape, _ = build(name)
    first = layer[0] if isinstance(layer, sg.Sequential) else layer
    with pytest.raises(ShapeError, match=esc(repr(first), "float32", f"got {np.dtype(dtype)}")):
        layer.forward(A(np.ones(shape, dtype)))


@pytest.mark.parametrize("name, shape, expected", [
    ("Flatten", (), "at least 2-D (N, *, ...), got shape ()"),
    ("Flatten", (5,), "at least 2-D (N, *, ...), got shape (5,)"),
    ("Reshape", (), "(N, ...), got shape ()"),
    ("Reshape", (4, 5), "cannot reshape input of shape (4, 5)"),
    ("Upsample2D", (2, 3, 4), "4-D input (N, *, *, *), got shape (2, 3, 4)"),
    ("Upsample2D", (2, 3, 4, 5, 6), "got shape (2, 3, 4, 5, 6)"),
    ("MaxPool2D", (2, 1, 4), "got shape (2, 1, 4)"),
    ("MaxPool2D", (2, 1, 1, 5), "1x5 pixels is smaller than the kernel (2, 2)"),
    ("Conv2D", (2, 2, 0, 4), "at least 1x1 pixels, got shape (2, 2, 0, 4)"),
    ("ConvTranspose2D", (2, 2, 3, 0), "at least 1x1 pixels, got shape (2, 2, 3, 0)"),
    ("BatchNorm2d", (1, 2, 1, 1), "more than 1 value per channel"),
])
def test_bad_shapes_name_the_layer_and_the_shape(name, shape, expected):
    layer, _, _ = build(name)
    with pytest.raises(ShapeError, match=esc(repr(layer), expected)):
        layer.forward(A(np.ones(shape, np.float32)))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "BatchNorm1d" and n != "BatchNorm2d"] +
                         ["BatchNorm1d-eval", "BatchNorm2d-eval"])
def test_an_empty_batch_goes_through_forward_and_backward(name):
    """N = 0 is a valid batch (e.g. the tail of a data set); train-mode BatchNorm refuses it (no statistics)."""
    layer, shape, out = build(name.split("-")[0])
    if name.endswith("eval"):
        layer.eval()
    X = data((0,) + shape[1:])
    Y, cache = layer.forward(X)
    assert Y.shape == out(X.shape) and Y.dtype == X.dtype
    dX = layer.backward(A(np.ones(Y.shape, np.float32)), cache)
    assert dX.shape == X.shape and dX.dtype == X.dtype


def _bad_input(draw, valid):
    """A shape near the valid one (dims changed, dropped, added, zeroed) or anything."""
    kind = draw(st.sampled_from(["valid", "perturbed", "random"]))
    if kind == "valid":
        return tuple(valid)
    if kind == "random":
        return tuple(draw(st.lists(st.integers(0, 6), max_size=5)))
    shape = list(valid)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "drop", "add"]))
        if op == "set" and shape:
            shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(0, 7))
        elif op == "drop" and shape:
            shape.pop(draw(st.integers(0, len(shape) - 1)))
        else:
            shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(0, 3)))
    return tuple(shape)


@pytest.mark.parametrize("name", NAMES)
@given(st.data())
def test_forward_succeeds_with_the_documented_shape_or_raises_a_named_shape_error(name, drawn):
    """Property: for any input, forward returns the documented output shape (and backward
    the input's shape), or raises ShapeError naming the layer: never a raw NumPy error."""
    layer, valid, out = build(name)
    names = [repr(m) for m in layer.layers] if isinstance(layer, sg.Sequential) else [repr(layer)]
    what = drawn.draw(st.sampled_from(["array"] * 6 + ["none", "list", "str", "scalar"]), label="what")
    if what == "array":
        shape = _bad_input(drawn.draw, valid)
        dtype = drawn.draw(st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.bool_]), label="dtype")
        X = A(np.full(shape, 0.5 if np.dtype(dtype).kind == "f" else 1, dtype))
    else:
        X = {"none": None, "list": [[0.5] * 3] * 4, "str": "x", "scalar": np.float32(0.5)}[what]
    if getattr(X, "dtype", None) == np.float64 and name in WITH_PARAMS:  # the layer must be float64 to take it
        layer.astype(np.float64)
    try:
        Y, cache = layer.forward(X)
    except ShapeError as exc:
        assert any(n in str(exc) for n in names), str(exc)
        return
    assert Y.shape == out(X.shape) and Y.dtype == X.dtype
    dX = layer.backward(A(np.ones(Y.shape, Y.dtype)), cache)
    assert dX.shape == X.shape and dX.dtype == X.dtype


# ---------------------------------------------------------------------------- 4. constructor arguments
CONSTRUCTOR_CASES = [
    (lambda: sg.Dense(0, 5), "Dense", "in_features", ">= 1", "got 0"),
    (lambda: sg.Dense(5, -1), "Dense", "out_features", ">= 1", "got -1"),
    (lambda: sg.Dense(2.5, 3), "Dense", "in_features", "integer", "got 2.5"),
    (lambda: sg.Dense(True, 3), "Dense", "in_features", "integer", "got True"),
    (lambda: sg.Dense(3, "4"), "Dense", "out_features", "integer", "got '4'"),
    (lambda: sg.Conv2D(0, 2, 3), "Conv2D", "in_channels", ">= 1", "got 0"),
    (lambda: sg.Conv2D(1, 0, 3), "Conv2D", "out_channels", ">= 1", "got 0"),
    (lambda: sg.Conv2D(1, 2, 0), "Conv2D", "kernel_size", ">= 1", "got 0"),
    (lambda: sg.Conv2D(1, 2, (3, 0)), "Conv2D", "kernel_size", ">= 1", "got (3, 0)"),
    (lambda: sg.Conv2D(1, 2, 3, stride=0), "Conv2D", "stride", ">= 1", "got 0"),
    (lambda: sg.Conv2D(1, 2, 3, padding=-1), "Conv2D", "padding", ">= 0", "got -1"),
    (lambda: sg.Conv2D(1, 2, 2.5), "Conv2D", "kernel_size", "integer", "got 2.5"),
    (lambda: sg.Conv2D(1, 2, None), "Conv2D", "kernel_size", "integer", "got None"),
    (lambda: sg.ConvTranspose2D(0, 2, 3), "ConvTranspose2D", "in_channels", ">= 1", "got 0"),
    (lambda: sg.ConvTranspose2D(1, -2, 3), "ConvTranspose2D", "out_channels", ">= 1", "got -2"),
    (lambda: sg.ConvTranspose2D(1, 2, 0), "ConvTranspose2D", "kernel_size", ">= 1", "got 0"),
    (lambda: sg.ConvTranspose2D(1, 2, 3, stride=(1, 0)), "ConvTranspose2D", "stride", ">= 1", "got (1, 0)"),
    (lambda: sg.ConvTranspose2D(1, 2, 3, padding=-1), "ConvTranspose2D", "padding", ">= 0", "got -1"),
    (lambda: sg.ConvTranspose2D(1, 2, 3, stride=2, output_padding=-1), "ConvTranspose2D", "output_padding",
     ">= 0", "got -1"),
    (lambda: sg.ConvTranspose2D(1, 2, 3, stride=2, output_padding=2), "ConvTranspose2D", "output_padding",
     "smaller than stride (2, 2)", "got 2"),
    (lambda: sg.BatchNorm1d(0), "BatchNorm1d", "num_features", ">= 1", "got 0"),
    (lambda: sg.BatchNorm2d(-3), "BatchNorm2d", "num_features", ">= 1", "got -3"),
    (lambda: sg.BatchNorm1d(3, eps=0), "BatchNorm1d", "eps", "(0, inf)", "got 0"),
    (lambda: sg.BatchNorm1d(3, eps=-1e-5), "BatchNorm1d", "eps", "(0, inf)", "got -1e-05"),
    (lambda: sg.BatchNorm2d(3, eps=float("inf")), "BatchNorm2d", "eps", "finite", "got inf"),
    (lambda: sg.BatchNorm2d(3, eps=float("nan")), "BatchNorm2d", "eps", "finite", "got nan"),
    (lambda: sg.BatchNorm1d(3, momentum=1.5), "BatchNorm1d", "momentum", "[0, 1]", "got 1.5"),
    (lambda: sg.BatchNorm2d(3, momentum=-0.1), "BatchNorm2d", "momentum", "[0, 1]", "got -0.1"),
    (lambda: sg.BatchNorm2d(3, momentum=float("nan")), "BatchNorm2d", "momentum", "[0, 1]", "got nan"),
    (lambda: sg.LayerNorm(0), "LayerNorm", "normalized_shape", ">= 1", "got 0"),
    (lambda: sg.LayerNorm((3, 0)), "LayerNorm", "normalized_shape", ">= 1", "got 0"),
    (lambda: sg.LayerNorm(()), "LayerNorm", "normalized_shape", "non-empty", "got ()"),
    (lambda: sg.LayerNorm(2.5), "LayerNorm", "normalized_shape", "integer", "got 2.5"),
    (lambda: sg.LayerNorm(4, eps=0), "LayerNorm", "eps", "(0, inf)", "got 0"),
    (lambda: sg.LayerNorm(4, eps=float("nan")), "LayerNorm", "eps", "finite", "got nan"),
    (lambda: sg.LeakyReLU(float("nan")), "LeakyReLU", "negative_slope", "finite", "got nan"),
    (lambda: sg.LeakyReLU(float("-inf")), "LeakyReLU", "negative_slope", "finite", "got -inf"),
    (lambda: sg.LeakyReLU("0.2"), "LeakyReLU", "negative_slope", "finite number", "got '0.2'"),
    (lambda: sg.Dropout(1.5), "Dropout", "p", "[0, 1]", "got 1.5"),
    (lambda: sg.Dropout(-0.1), "Dropout", "p", "[0, 1]", "got -0.1"),
    (lambda: sg.Dropout(float("nan")), "Dropout", "p", "[0, 1]", "got nan"),
    (lambda: sg.Reshape(0, 3), "Reshape", "positive integers", "got (0, 3)"),
    (lambda: sg.Reshape(-1), "Reshape", "positive integers", "got (-1,)"),
    (lambda: sg.Reshape((2, 2.5)), "Reshape", "positive integers", "got (2, 2.5)"),
    (lambda: sg.Upsample2D(0), "Upsample2D", "scale_factor", ">= 1", "got 0"),
    (lambda: sg.Upsample2D(1.5), "Upsample2D", "scale_factor", "integer", "got 1.5"),
    (lambda: sg.MaxPool2D(0), "MaxPool2D", "kernel_size", ">= 1", "got 0"),
    (lambda: sg.MaxPool2D(2, stride=0), "MaxPool2D", "stride", ">= 1", "got 0"),
    (lambda: sg.AvgPool2D((2, -1)), "AvgPool2D", "kernel_size", ">= 1", "got (2, -1)"),
    (lambda: sg.AvgPool2D(2, stride=1.5), "AvgPool2D", "stride", "integer", "got 1.5"),
]


@pytest.mark.parametrize("make, fragments", [(c[0], c[1:]) for c in CONSTRUCTOR_CASES],
                         ids=[f"{c[1]}-{c[2]}-{c[-1]}" for c in CONSTRUCTOR_CASES])
def test_constructor_refuses_bad_arguments(make, fragments):
    with pytest.raises(ValueError, match=esc(*fragments)):
        make()


def test_constructors_accept_the_edges_of_their_ranges():
    sg.BatchNorm1d(1, eps=1e-12, momentum=0.0)
    sg.BatchNorm2d(2, momentum=1.0)
    sg.BatchNorm2d(2, momentum=None)
    sg.Dropout(0.0)
    sg.Dropout(1.0)
    sg.LeakyReLU(0)
    sg.LeakyReLU(-0.5)
    sg.Conv2D(1, 1, 1, stride=(1, 2), padding=0)
    sg.ConvTranspose2D(1, 1, 1, stride=3, output_padding=(0, 2))
    sg.Dense(np.int64(3), 2)  # NumPy integers are integers
    sg.Reshape([2, 3])


@pytest.mark.parametrize("make", [lambda: sg.Dense(3, 2, init="nope"),
                                  lambda: sg.Conv2D(1, 2, 3, init="nope"),
                                  lambda: sg.ConvTranspose2D(1, 2, 3, init="nope")])
def test_unknown_initialiser_names_the_layer_and_lists_the_valid_names(make):
    with pytest.raises(ValueError) as info:
        make()
    msg = str(info.value)
    assert "'nope'" in msg and re.match(r"(Dense|Conv2D|ConvTranspose2D): unknown initialiser", msg), msg
    assert all(name in msg for name in sg.init.INITIALISERS), msg


# ---------------------------------------------------------------------------- 4b. optimiser arguments
def _model():
    return sg.Sequential(sg.Dense(3, 2, rng=0))


OPTIMISER_CASES = [
    (lambda m: sg.Adam(m, lr=-1e-3), "Adam", "lr", "[0, inf)", "got -0.001"),
    (lambda m: sg.Adam(m, lr=float("nan")), "Adam", "lr", "finite", "got nan"),
    (lambda m: sg.Adam(m, lr=float("inf")), "Adam", "lr", "finite", "got inf"),
    (lambda m: sg.Adam(m, betas=(1.0, 0.999)), "Adam", "betas[0]", "[0, 1)", "got 1.0"),
    (lambda m: sg.Adam(m, betas=(0.9, 1.0)), "Adam", "betas[1]", "[0, 1)", "got 1.0"),
    (lambda m: sg.Adam(m, betas=(-0.1, 0.999)), "Adam", "betas[0]", "[0, 1)", "got -0.1"),
    (lambda m: sg.Adam(m, betas=(0.9, float("nan"))), "Adam", "betas[1]", "[0, 1)", "got nan"),
    (lambda m: sg.Adam(m, betas=0.9), "Adam", "betas", "pair", "got 0.9"),
    (lambda m: sg.Adam(m, eps=-1e-8), "Adam", "eps", "[0, inf)", "got -1e-08"),
    (lambda m: sg.Adam(m, weight_decay=-0.01), "Adam", "weight_decay", "[0, inf)", "got -0.01"),
    (lambda m: sg.SGD(m, lr=-0.1), "SGD", "lr", "[0, inf)", "got -0.1"),
    (lambda m: sg.SGD(m, lr=float("inf")), "SGD", "lr", "finite", "got inf"),
    (lambda m: sg.SGD(m, momentum=-0.9), "SGD", "momentum", "[0, inf)", "got -0.9"),
    (lambda m: sg.SGD(m, weight_decay=-1), "SGD", "weight_decay", "[0, inf)", "got -1"),
    (lambda m: sg.SGD(m, momentum=0.0, nesterov=True), "SGD", "nesterov", "momentum > 0", "momentum=0.0"),
]


@pytest.mark.parametrize("make, fragments", [(c[0], c[1:]) for c in OPTIMISER_CASES],
                         ids=[f"{c[1]}-{c[2]}-{c[-1]}" for c in OPTIMISER_CASES])
def test_optimiser_refuses_bad_arguments_before_touching_the_model(make, fragments):
    model = _model()
    weight = model[0].params["weight"]
    with pytest.raises(ValueError, match=esc(*fragments)):
        make(model)
    assert model[0].params["weight"] is weight  # not packed into a flat buffer by a refused optimiser


def test_optimisers_accept_torch_edge_values():
    sg.Adam(_model(), lr=0.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0)
    sg.SGD(_model(), lr=0.0, momentum=0.0, weight_decay=0.0)
    sg.SGD(_model(), lr=np.float32(0.1), momentum=np.float64(0.9), nesterov=True)


def test_optimiser_refuses_a_non_module():
    with pytest.raises(TypeError, match=esc("Adam", "Module", "got a list")):
        sg.Adam([1, 2, 3])


# ---------------------------------------------------------------------------- 5. astype and dtype arguments
@pytest.mark.parametrize("dtype", [np.float16, np.int32, int, "complex128", "nonsense", None])
@pytest.mark.parametrize("name", ["Dense", "Sequential", "BatchNorm2d"])
def test_astype_accepts_float32_and_float64_only(name, dtype):
    layer, _, _ = build(name)
    before = {k: (v.dtype, H(v).copy()) for k, v in layer.state_dict().items()}
    shown = "'nonsense'" if dtype == "nonsense" else ("None" if dtype is None else np.dtype(dtype))
    with pytest.raises(TypeError, match=esc(label(layer), ".astype", "float32 or float64", f"got {shown}")):
        layer.astype(dtype)
    for k, v in layer.state_dict().items():  # nothing was cast
        assert v.dtype == before[k][0], k
    assert layer.astype("float64") is layer and layer.dtype == np.float64


@pytest.mark.parametrize("make", [lambda dt: sg.Dense(3, 2, dtype=dt), lambda dt: sg.Conv2D(1, 2, 3, dtype=dt),
                                  lambda dt: sg.ConvTranspose2D(1, 2, 3, dtype=dt),
                                  lambda dt: sg.BatchNorm1d(3, dtype=dt), lambda dt: sg.LayerNorm(3, dtype=dt)])
def test_dtype_arguments_accept_float32_and_float64_only(make):
    with pytest.raises(TypeError, match=esc("float32 or float64", "got float16")):
        make(np.float16)
    with pytest.raises(TypeError, match=esc("float32 or float64", "got int64")):
        make(np.int64)
    assert make("float64").dtype == np.float64 and make(None).dtype == backend.default_dtype()


# ---------------------------------------------------------------------------- backends (GPU only)
@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["Dense", "BatchNorm1d", "ReLU", "Sigmoid", "Dropout"])
def test_dY_and_input_of_the_other_backend_are_refused(name):
    import cupy as cp

    backend.use("cupy")
    layer, shape, _ = build(name)
    Y, cache = layer.forward(cp.asarray(np.ones(shape, np.float32)))
    with pytest.raises(backend.BackendError, match=esc(repr(layer), "CuPy array", "got a NumPy array")):
        layer.backward(np.ones(Y.shape, np.float32), cache)
    if layer.params:
        with pytest.raises(backend.BackendError, match=esc(repr(layer), "CuPy array", "got a NumPy array")):
            layer.forward(np.ones(shape, np.float32))
