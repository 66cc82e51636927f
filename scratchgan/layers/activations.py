"""Element-wise activations. Backward multiplies dY by the local derivative and never
writes into dY (it may be shared with another branch).

    ReLU       y = max(x, 0)                 dx = dy * [x > 0]
    LeakyReLU  y = x if x > 0 else a x       dx = dy * (1 if x > 0 else a)
    Sigmoid    y = 1 / (1 + e^-x)            dx = dy * y (1 - y)
    Tanh       y = tanh x                    dx = dy * (1 - y^2)

Derivations: docs/layers/activations.md.
"""
from __future__ import annotations

from .. import backend
from .base import Module


class ReLU(Module):
    def forward(self, X):
        xp = backend.array_module(X)
        positive = X > 0
        return xp.where(positive, X, 0).astype(X.dtype, copy=False), positive

    def backward(self, dY, positive):
        self._check_grad(dY, positive.shape)
        return backend.array_module(dY).where(positive, dY, 0).astype(dY.dtype, copy=False)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)  # a NumPy float64 would upcast float32 arrays

    def forward(self, X):
        xp = backend.array_module(X)
        Y = X * self.negative_slope
        if 0.0 <= self.negative_slope <= 1.0:
            xp.maximum(Y, X, out=Y)  # max(x, a x) is the leaky ReLU for 0 <= a <= 1: one pass fewer
        else:
            Y = xp.where(X > 0, X, Y)
        return Y, X

    def backward(self, dY, X):
        self._check_grad(dY, X.shape)
        return backend.array_module(dY).where(X > 0, dY, dY * self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


def sigmoid(x):
    """Stable logistic function, for any x and with full relative precision for x << 0.

    With e = exp(-|x|) in (0, 1] nothing overflows: sigma(x) = 1 / (1 + e) for x >= 0 and
    e / (1 + e) for x < 0. (0.5 (1 + tanh(x/2)) loses all relative precision near x ~ -17
    and is exactly 0 from about -20 in float32, which silently zeroes the minimax G gradient.)
    """
    xp = backend.array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0, e) / (1.0 + e)


class Sigmoid(Module):
    def forward(self, X):
        Y = sigmoid(X)
        return Y, Y

    def backward(self, dY, Y):
        self._check_grad(dY, Y.shape)
        return dY * Y * (1 - Y)


class Tanh(Module):
    def forward(self, X):
        Y = backend.array_module(X).tanh(X)
        return Y, Y

    def backward(self, dY, Y):
        self._check_grad(dY, Y.shape)
        return dY * (1 - Y * Y)
