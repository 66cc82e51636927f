"""Layers that only move values around: Reshape, Flatten, Upsample2D (nearest).

Their backward passes are the adjoint rearrangement: reshape back, or for nearest
upsampling by s, sum each s x s block of dY (every input pixel fed s*s outputs).
"""
from __future__ import annotations

from .. import backend
from .base import Module, ShapeError


class Reshape(Module):
    """(N, ...) -> (N, *shape), e.g. Reshape(256, 7, 7) after a Dense layer."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape

    def forward(self, X):
        n_in = X.size // X.shape[0] if X.shape[0] else 0
        n_out = 1
        for d in self.shape:
            n_out *= d
        if n_in != n_out:
            raise ShapeError(f"{self!r}: cannot reshape input of shape {X.shape} ({n_in} values per item) "
                             f"to (N, {', '.join(map(str, self.shape))}) ({n_out} values per item)")
        return X.reshape((X.shape[0],) + self.shape), X.shape

    def backward(self, dY, x_shape):
        return dY.reshape(x_shape)

    def extra_repr(self):
        return ", ".join(map(str, self.shape))


class Flatten(Module):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, X):
        return X.reshape(X.shape[0], -1), X.shape

    def backward(self, dY, x_shape):
        return dY.reshape(x_shape)


class Upsample2D(Module):
    """Nearest-neighbour upsampling of (N, C, H, W) by an integer factor."""

    def __init__(self, scale_factor: int = 2):
        super().__init__()
        if int(scale_factor) != scale_factor or scale_factor < 1:
            raise ValueError(f"Upsample2D: scale_factor must be a positive integer, got {scale_factor!r}")
        self.scale_factor = int(scale_factor)

    def forward(self, X):
        self._check_input(X, ndim=4)
        N, C, H, W = X.shape
        s = self.scale_factor
        # A broadcast view (N, C, H, s, W, s) of X, materialised by one reshape copy.
        Y = backend.array_module(X).broadcast_to(X[:, :, :, None, :, None], (N, C, H, s, W, s))
        return Y.reshape(N, C, H * s, W * s), None

    def backward(self, dY, _):
        N, C, Hs, Ws = dY.shape
        s = self.scale_factor
        return dY.reshape(N, C, Hs // s, s, Ws // s, s).sum(axis=(3, 5))

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}"
