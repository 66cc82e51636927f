"""MaxPool2D and AvgPool2D over (N, C, H, W), torch.nn semantics (no padding, floor mode):

    Ho = (H - kh) // sh + 1,   Wo = (W - kw) // sw + 1,   stride defaults to the kernel size

Both directions loop over the kh*kw kernel offsets (u, v) only, never over batch items or
pixels: X[:, :, u::s_h, v::s_w] (cut to Ho x Wo) is a strided view holding element (u, v) of
every window at once, so each step is one vectorised operation over the whole batch:

    max:  Y[n,c,i,j] = max_{u,v} X[n,c, s_h i + u, s_w j + v]
          dX[n,c, s_h i + u*, s_w j + v*] += dY[n,c,i,j]   at the arg-max (u*, v*) only
    avg:  Y[n,c,i,j] = 1/(kh kw) sum_{u,v} X[n,c, s_h i + u, s_w j + v]
          dX[n,c, s_h i + u, s_w j + v] += dY[n,c,i,j] / (kh kw)   for every (u, v)

Forward keeps a running maximum or a running sum over the offsets. Max backward finds, offset
by offset, the windows whose element equals the maximum and have not had their gradient yet,
and sends dY there; both layers add each offset's share of dY into the same strided view of
dX (as ``conv.col2im`` does), which handles overlapping windows (stride < kernel) and gaps
(stride > kernel) alike. Rows/columns that no window covers (floor mode) get zero gradient.

Ties in max-pooling: when several elements of a window share the maximum, the whole gradient
goes to ONE of them, the first in row-major window order (lowest u, then lowest v): the
backward visits the offsets in that order and marks a window as served at its first match
(``argmax`` would pick the same element).
This is a valid subgradient; torch makes the same kind of choice.
"""
from __future__ import annotations

from .. import backend
from .base import Module, ShapeError
from .conv import _pair

__all__ = ["MaxPool2D", "AvgPool2D"]


class _Pool2D(Module):
    double_backward_note = "not written: a WGAN-GP critic downsamples with strided Conv2D instead"

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        who = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", who, 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", who, 1)

    @property
    def _disjoint(self):
        """Windows never overlap (stride >= kernel): backward may assign instead of add."""
        return all(s >= k for s, k in zip(self.stride, self.kernel_size))

    def output_shape(self, H, W):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return (H - kh) // sh + 1, (W - kw) // sw + 1

    def _offsets(self, shape):
        """Yield (k, index) for each kernel offset k = u * kw + v: X[index] is the strided
        (N, C, Ho, Wo) view holding element (u, v) of every window."""
        N, C, H, W = shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        Ho, Wo = self.output_shape(H, W)
        for u in range(kh):
            for v in range(kw):
                yield u * kw + v, (slice(None), slice(None), slice(u, u + sh * (Ho - 1) + 1, sh),
                                   slice(v, v + sw * (Wo - 1) + 1, sw))

    def _check(self, X):
        self._check_input(X, ndim=4)
        H, W = X.shape[2:]
        if H < self.kernel_size[0] or W < self.kernel_size[1]:
            raise ShapeError(f"{self!r}: input of {H}x{W} pixels is smaller than the kernel {self.kernel_size}")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2D(_Pool2D):
    """Max over each kh x kw window. Ties: the gradient goes to the first maximum (see module doc)."""

    def forward(self, X):
        self._check(X)
        xp = backend.array_module(X)
        Y = None
        for _, idx in self._offsets(X.shape):
            if Y is None:
                Y = X[idx].copy()
            else:
                xp.maximum(Y, X[idx], out=Y)
        return Y, self.save_for_backward(X, Y)

    def backward(self, dY, cache):
        X, Y = self.saved(cache)
        self._check_grad(dY, Y.shape, Y.dtype, Y)
        xp = backend.array_module(dY)
        dX = xp.zeros(X.shape, dtype=dY.dtype)
        taken = None  # windows whose maximum has already received its gradient
        for _, idx in self._offsets(X.shape):
            hit = X[idx] == Y
            if taken is None:
                taken = hit
            else:
                hit &= ~taken
                taken |= hit
            if self._disjoint:
                xp.multiply(dY, hit, out=dX[idx])
            else:
                dX[idx] += dY * hit
        return dX


class AvgPool2D(_Pool2D):
    """Mean over each kh x kw window."""

    def forward(self, X):
        self._check(X)
        Y = None
        for _, idx in self._offsets(X.shape):
            if Y is None:
                Y = X[idx].copy()
            else:
                Y += X[idx]
        Y *= 1.0 / (self.kernel_size[0] * self.kernel_size[1])
        return Y, self.save_for_backward(X.shape, X.dtype)

    def backward(self, dY, cache):
        x_shape, dtype = self.saved(cache)
        self._check_grad(dY, (x_shape[0], x_shape[1]) + self.output_shape(*x_shape[2:]), dtype)
        xp = backend.array_module(dY)
        share = dY * (1.0 / (self.kernel_size[0] * self.kernel_size[1]))
        dX = xp.zeros(x_shape, dtype=dY.dtype)
        for _, idx in self._offsets(x_shape):
            if self._disjoint:
                dX[idx] = share
            else:
                dX[idx] += share
        return dX
