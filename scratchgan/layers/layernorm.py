"""Layer normalisation (Ba et al. 2016) with torch.nn.LayerNorm's semantics: each sample is
normalised over its trailing dims ``normalized_shape``, e.g. LayerNorm((C, H, W)) for the
(N, C, H, W) maps of a convolutional critic; weight (gamma) and bias (beta) have that shape.

The code works on rows: the input viewed as (M, m), M = the number of samples (every index
of the leading dims), m = prod(normalized_shape). Per row, with statistics over the row:

    mu = mean(x)     var = mean((x - mu)^2)  (biased)     sigma = sqrt(var + eps)
    xhat = (x - mu) / sigma                y = gamma * xhat + beta

No running statistics: train and eval mode compute the same thing, and no sample's output
depends on another sample (unlike BatchNorm), which is why a WGAN-GP critic can use it.

Backward (docs/layers/layernorm.md), with v = gamma * dy and P the projection
P(a) = a - mean(a) - xhat * mean(a * xhat) (per row, symmetric):

    dgamma = sum_rows dy * xhat      dbeta = sum_rows dy      dx = (1 / sigma) P(v)

Double backward (docs/double-backward.md), given ddx = dP/d(dx), per row:

    ddv = (1 / sigma) P(ddx)     ddy = gamma * ddv     dgamma += sum_rows dy * ddv
    ddx_in = (1 / sigma) (P(w) - xhat * S1 / m),   w = -(S2 / (sigma m)) v - (c / sigma) ddx,
    S1 = sum(ddx * dx) = sum(ddv * v),  S2 = sum(ddx * xhat),  c = mean(v * xhat).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .base import Module, ShapeError, check_int, check_real

__all__ = ["LayerNorm"]


class LayerNorm(Module):
    """``LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True)``, as torch.nn.LayerNorm."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, dtype=None):
        super().__init__()
        shape = tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
        if not shape:
            raise ValueError(f"LayerNorm: normalized_shape must be an integer >= 1 or a non-empty tuple of them, "
                             f"got {normalized_shape!r}")
        self.normalized_shape = tuple(check_int("LayerNorm", "normalized_shape", d, 1) for d in shape)
        self.eps = check_real("LayerNorm", "eps", eps, "(0, inf)")
        self.elementwise_affine = bool(elementwise_affine)
        dtype = self._dtype_arg(dtype)
        if self.elementwise_affine:
            self._add_param("weight", np.ones(self.normalized_shape, dtype))
            self._add_param("bias", np.zeros(self.normalized_shape, dtype))

    def forward(self, X):
        k = len(self.normalized_shape)
        self._check_input(X, min_ndim=k + 1)
        if tuple(X.shape[-k:]) != self.normalized_shape:
            raise ShapeError(f"{self!r}: expected an input of shape (N, {', '.join(map(str, self.normalized_shape))}) "
                             f"(its trailing dims = normalized_shape), got shape {tuple(X.shape)}")
        X2 = X.reshape(-1, math.prod(self.normalized_shape))               # (M, m), a view when contiguous
        mu = X2.mean(axis=1, keepdims=True)
        Xhat = X2 - mu
        var = (Xhat * Xhat).mean(axis=1, keepdims=True)
        inv_std = 1.0 / (var + self.eps) ** 0.5                             # 1 / sigma, (M, 1)
        Xhat *= inv_std                                                     # the centred buffer becomes xhat
        if self.elementwise_affine:
            Y = Xhat * self.params["weight"].reshape(-1)
            Y += self.params["bias"].reshape(-1)
        else:
            Y = Xhat.copy()
        return Y.reshape(X.shape), self.save_for_backward(Xhat, inv_std, X.shape)

    def backward(self, dY, cache):
        Xhat, inv_std, dY2 = self._unpack(dY, cache)
        t = dY2 * Xhat
        if self.elementwise_affine:
            self.grads["weight"] += t.sum(axis=0).reshape(self.normalized_shape)
            self.grads["bias"] += dY2.sum(axis=0).reshape(self.normalized_shape)
        return self._input_grad(dY2, Xhat, inv_std, t).reshape(dY.shape)

    def backward_input(self, dY, cache):
        Xhat, inv_std, dY2 = self._unpack(dY, cache)
        return self._input_grad(dY2, Xhat, inv_std, dY2 * Xhat).reshape(dY.shape)

    def _unpack(self, dY, cache):
        """(Xhat, inv_std, dY as (M, m) rows), after checking dY against the forward's output."""
        Xhat, inv_std, x_shape = self.saved(cache)
        self._check_grad(dY, x_shape, Xhat.dtype, Xhat)
        return Xhat, inv_std, dY.reshape(Xhat.shape)

    def _input_grad(self, dY2, Xhat, inv_std, t):
        """dx = (1/sigma) (v - mean(v) - xhat mean(v xhat)), v = gamma dy; t = dy * xhat (overwritten)."""
        if self.elementwise_affine:
            gamma = self.params["weight"].reshape(-1)
            v = dY2 * gamma
            t *= gamma                                                      # v * xhat
        else:
            v = dY2
        dX = Xhat * t.mean(axis=1, keepdims=True)
        dX += v.mean(axis=1, keepdims=True)
        _rsub(v, dX)                                                        # dX = v - dX
        dX *= inv_std
        return dX

    def double_backward(self, ddX, dY, cache):
        """Given ddX = dP/d(dX): ddY, dgamma (+=) and ddX_in, all per row (module docstring;
        derived in docs/double-backward.md). LayerNorm is the one supported layer whose
        backward depends on its input, so ddX_in is not None."""
        Xhat, inv_std, x_shape = self.saved(cache)
        self._check_double(ddX, dY, x_shape, x_shape, Xhat.dtype, Xhat)
        dd, dY2 = ddX.reshape(Xhat.shape), dY.reshape(Xhat.shape)
        gamma = self.params["weight"].reshape(-1) if self.elementwise_affine else None
        v = dY2 * gamma if gamma is not None else dY2
        c = (v * Xhat).mean(axis=1, keepdims=True)                          # mean(v xhat)
        s2 = (dd * Xhat).mean(axis=1, keepdims=True)                        # S2 / m
        mean_dd = dd.mean(axis=1, keepdims=True)
        ddv = Xhat * s2                                                     # ddv = (1/sigma) P(ddX)
        ddv += mean_dd
        _rsub(dd, ddv)
        ddv *= inv_std
        s1 = (ddv * v).mean(axis=1, keepdims=True)                          # S1 / m
        if gamma is not None:
            self.grads["weight"] += (dY2 * ddv).sum(axis=0).reshape(self.normalized_shape)
            ddY = ddv * gamma
        else:
            ddY = ddv
        a, b = -s2 * inv_std, -c * inv_std                                  # w = a v + b ddX
        w = v * a
        w += dd * b
        mean_w = a * v.mean(axis=1, keepdims=True) + b * mean_dd
        ddX_in = Xhat * (a * c + b * s2 + s1)                               # xhat (mean(w xhat) + S1/m)
        ddX_in += mean_w
        _rsub(w, ddX_in)
        ddX_in *= inv_std
        return ddY.reshape(x_shape), ddX_in.reshape(x_shape)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


def _rsub(a, out):
    """out = a - out, in place, on the arrays' own backend."""
    backend.array_module(a, out).subtract(a, out, out=out)
