"""Element-wise activations. Backward multiplies dY by the local derivative and never
writes into dY (it may be shared with another branch).

    ReLU       y = max(x, 0)                 dx = dy * [x > 0]
    LeakyReLU  y = x if x > 0 else a x       dx = dy * (1 if x > 0 else a)
    Sigmoid    y = 1 / (1 + e^-x)            dx = dy * y (1 - y)
    Tanh       y = tanh x                    dx = dy * (1 - y^2)

Double backward (docs/double-backward.md): ReLU and LeakyReLU are linear in dy with a mask
that is locally constant in x, so given ddx = dP/d(dx): ddy = ddx * mask, nothing flows to x.

The derivative masks are applied as products with 0/1 arrays, never with where(): with
a data-dependent condition NumPy's where() branches per element and is 5-16x slower
(docs/performance.md). Derivations: docs/layers/activations.md.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .base import Module, check_real


class ReLU(Module):
    def forward(self, X):
        self._check_input(X)
        positive = X > 0
        return backend.array_module(X).maximum(X, 0), self.save_for_backward(positive, X.dtype)

    def backward(self, dY, cache):
        positive, dtype = self.saved(cache)
        self._check_grad(dY, positive.shape, dtype, positive)
        return dY * positive                      # bool * float keeps dY's dtype

    def double_backward(self, ddX, dY, cache):
        """dX = dY * mask is linear in dY; the mask is locally constant in X: ddY = ddX * mask."""
        positive, dtype = self.saved(cache)
        self._check_double(ddX, dY, positive.shape, positive.shape, dtype, positive)
        return ddX * positive, None


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        # a float: a NumPy float64 would upcast float32 arrays
        self.negative_slope = check_real("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, X):
        self._check_input(X)
        xp, a = backend.array_module(X), self.negative_slope
        if 0.0 < a <= 1.0:
            Y = X * a
            xp.maximum(Y, X, out=Y)  # max(x, a x) is the leaky ReLU for 0 < a <= 1, without a branch
        else:                        # a = 0 (0 * inf is NaN), a < 0 or a > 1: rare, so plain where()
            Y = xp.where(X > 0, X, X * a)
        return Y, self.save_for_backward(X)

    def backward(self, dY, cache):
        X = self.saved(cache)
        self._check_grad(dY, X.shape, X.dtype, X)
        dX = self._slope(X)
        dX *= dY
        return dX

    def double_backward(self, ddX, dY, cache):
        """dX = dY * slope(X) is linear in dY; the slope is locally constant in X: ddY = ddX * slope."""
        X = self.saved(cache)
        self._check_double(ddX, dY, X.shape, X.shape, X.dtype, X)
        ddY = self._slope(X)
        ddY *= ddX
        return ddY, None

    def infer(self, X, overwrite=False):
        """max(x, a x) written over X where allowed (one temporary, a X, instead of a new output)."""
        a = self.negative_slope
        if not overwrite or not 0.0 < a <= 1.0:
            return self.forward(X)[0]
        self._check_input(X)
        return backend.array_module(X).maximum(X, X * a, out=X)

    def _slope(self, X):
        """dy/dx = a + (1 - a) [x > 0]: 1 where x > 0, else a."""
        a = self.negative_slope
        slope = (X > 0).astype(X.dtype)
        slope *= 1.0 - a
        slope += a
        return slope

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


def sigmoid(x):
    """Logistic function 1 / (1 + e^-x), stable for any x, with full relative precision.

    For x << 0, e^-x is huge but carries full relative precision, so 1 / (1 + e^-x) does
    too (unlike 0.5 (1 + tanh(x/2)), which is exactly 0 from about -17 in float32 and
    silently zeroes the minimax G gradient). e^-x overflows to inf only where sigma(x) is
    below the smallest normal float (x < -88 in float32, -709 in float64): 1/inf = 0 is then
    the right rounding, so that overflow is not an error. Four passes into one new array, no
    branches.
    """
    xp = backend.array_module(x)
    if xp.ndim(x) == 0:
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + xp.exp(-x))
    e = xp.negative(x, dtype=xp.result_type(x, 1.0))   # integers -> float64, float32 stays float32
    with np.errstate(over="ignore"):
        xp.exp(e, out=e)
    e += 1.0
    return xp.reciprocal(e, out=e)


class Sigmoid(Module):
    double_backward_note = ("not written: its backward depends smoothly on the input (through y (1 - y)); a WGAN-GP "
                            "critic uses (Leaky)ReLU and outputs logits")

    def forward(self, X):
        self._check_input(X)
        Y = sigmoid(X)
        return Y, self.save_for_backward(Y)

    def backward(self, dY, cache):
        Y = self.saved(cache)
        self._check_grad(dY, Y.shape, Y.dtype, Y)
        dX = 1 - Y
        dX *= Y
        dX *= dY
        return dX


class Tanh(Module):
    double_backward_note = ("not written: its backward depends smoothly on the input (through 1 - y^2); a WGAN-GP "
                            "critic uses (Leaky)ReLU and outputs logits")

    def forward(self, X):
        self._check_input(X)
        Y = backend.array_module(X).tanh(X)
        return Y, self.save_for_backward(Y)

    def infer(self, X, overwrite=False):
        """tanh written over X where allowed."""
        self._check_input(X)
        xp = backend.array_module(X)
        return xp.tanh(X, out=X) if overwrite else xp.tanh(X)

    def backward(self, dY, cache):
        Y = self.saved(cache)
        self._check_grad(dY, Y.shape, Y.dtype, Y)
        dX = Y * Y
        xp = backend.array_module(dX)
        xp.subtract(1, dX, out=dX)
        dX *= dY
        return dX
