"""Layers that only move values around: Reshape, Flatten, Upsample2D (nearest).

Their backward passes are the adjoint rearrangement: reshape back, or for nearest
upsampling by s, sum each s x s block of dY (every input pixel fed s*s outputs).
They cache the input's shape and dtype only, and return dX on dY's own backend.
Reshape and Flatten also have the double backward of a linear map (docs/double-backward.md):
ddY is ddX rearranged to the output's shape.
"""
from __future__ import annotations

import math

from .. import backend
from .base import Module, ShapeError, check_int, is_int


class Reshape(Module):
    """(N, ...) -> (N, *shape), e.g. Reshape(256, 7, 7) after a Dense layer."""

    def __init__(self, *shape):
        super().__init__()
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if not all(is_int(d, 1) for d in shape):
            raise ShapeError(f"Reshape: the target dims must be positive integers, got {shape!r}")
        self.shape = tuple(int(d) for d in shape)

    def forward(self, X):
        self._check_input(X)
        n_in, n_out = math.prod(X.shape[1:]), math.prod(self.shape)
        if n_in != n_out:
            raise ShapeError(f"{self!r}: cannot reshape input of shape {X.shape} ({n_in} values per item) "
                             f"to (N, {', '.join(map(str, self.shape))}) ({n_out} values per item)")
        return X.reshape((X.shape[0],) + self.shape), self.save_for_backward(X.shape, X.dtype)

    def backward(self, dY, cache):
        x_shape, dtype = self.saved(cache)
        self._check_grad(dY, (x_shape[0],) + self.shape, dtype)
        return dY.reshape(x_shape)

    def double_backward(self, ddX, dY, cache):
        """dX = reshape(dY) is linear: ddY = ddX reshaped to the output's shape."""
        x_shape, dtype = self.saved(cache)
        y_shape = (x_shape[0],) + self.shape
        self._check_double(ddX, dY, x_shape, y_shape, dtype)
        return ddX.reshape(y_shape), None

    def extra_repr(self):
        return ", ".join(map(str, self.shape))


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, X):
        self._check_input(X, min_ndim=2)
        N = X.shape[0]
        return X.reshape(N, math.prod(X.shape[1:])), self.save_for_backward(X.shape, X.dtype)

    def backward(self, dY, cache):
        x_shape, dtype = self.saved(cache)
        self._check_grad(dY, (x_shape[0], math.prod(x_shape[1:])), dtype)
        return dY.reshape(x_shape)

    def double_backward(self, ddX, dY, cache):
        """dX = reshape(dY) is linear: ddY = ddX flattened."""
        x_shape, dtype = self.saved(cache)
        y_shape = (x_shape[0], math.prod(x_shape[1:]))
        self._check_double(ddX, dY, x_shape, y_shape, dtype)
        return ddX.reshape(y_shape), None


class Upsample2D(Module):
    """Nearest-neighbour upsampling of (N, C, H, W) by an integer factor."""

    double_backward_note = "not written: a generator layer (a WGAN-GP critic has none)"

    def __init__(self, scale_factor: int = 2):
        super().__init__()
        self.scale_factor = check_int("Upsample2D", "scale_factor", scale_factor, 1)

    def forward(self, X):
        self._check_input(X, ndim=4)
        N, C, H, W = X.shape
        s = self.scale_factor
        # A broadcast view (N, C, H, s, W, s) of X, materialised by one reshape copy.
        Y = backend.array_module(X).broadcast_to(X[:, :, :, None, :, None], (N, C, H, s, W, s))
        return Y.reshape(N, C, H * s, W * s), self.save_for_backward(X.shape, X.dtype)

    def backward(self, dY, cache):
        (N, C, H, W), dtype = self.saved(cache)
        s = self.scale_factor
        self._check_grad(dY, (N, C, H * s, W * s), dtype)
        return dY.reshape(N, C, H, s, W, s).sum(axis=(3, 5))

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}"
