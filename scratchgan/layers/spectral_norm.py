"""Spectral normalisation (Miyato et al. 2018): a Dense or Conv2D layer that computes with
W / sigma(W), sigma the largest singular value of W viewed as an (out, in*kh*kw) matrix Wm.

sigma is estimated by power iteration with persistent vectors u (out,) and v (in*kh*kw,),
buffers saved in checkpoints. In train mode each forward first refines them once:

    v <- Wm^T u / ||Wm^T u||      u <- Wm v / ||Wm v||      sigma = u^T Wm v

(eval mode uses the stored u, v as they are), then runs the layer with W_sn = W / sigma.
Backward holds u and v fixed, as the paper does, so sigma = u^T Wm v is a bilinear form
with d sigma / d Wm = u v^T, and with dW_sn the gradient the layer gives for W_sn:

    dW = dW_sn / sigma - (<dW_sn, W> / sigma^2) u v^T = (dW_sn - <dW_sn, W_sn> u v^T) / sigma

The wrapped layer keeps its parameters under their own names ("weight" is the raw W), so
an optimiser steps W and a checkpoint stores W, u and v. Derivation: docs/layers/spectral-norm.md.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .base import Module, check_int, check_real
from .conv import Conv2D
from .dense import Dense

__all__ = ["SpectralNorm", "spectral_norm"]


def _normalise(a, eps):
    """a / max(||a||, eps), computed where ``a`` lives: no device-to-host read in a training step."""
    xp = backend.array_module(a)
    return a / xp.maximum(xp.sqrt((a * a).sum()), eps)


class SpectralNorm(Module):
    """``SpectralNorm(layer)``: the Dense or Conv2D ``layer`` computing with W / sigma(W)."""

    def __init__(self, layer, n_power_iterations: int = 1, eps: float = 1e-12, seed: int = 0):
        super().__init__()
        if not isinstance(layer, (Dense, Conv2D)):
            raise TypeError(f"SpectralNorm wraps a Dense or Conv2D layer, got {type(layer).__name__}")
        self.layer = layer
        self.n_power_iterations = check_int("SpectralNorm", "n_power_iterations", n_power_iterations, 1)
        self.eps = check_real("SpectralNorm", "eps", eps, "(0, inf)")
        W = backend.to_numpy(layer.params["weight"]).astype(np.float64)
        Wm = W.reshape(W.shape[0], -1)
        rng = np.random.default_rng(seed)
        u, v = _normalise(rng.standard_normal(Wm.shape[0]), eps), _normalise(rng.standard_normal(Wm.shape[1]), eps)
        for _ in range(15):  # as torch: start from a converged estimate, so the first step's sigma is right
            v = _normalise(Wm.T @ u, eps)
            u = _normalise(Wm @ v, eps)
        self.buffers["weight_u"] = backend.asarray(u.astype(layer.params["weight"].dtype))
        self.buffers["weight_v"] = backend.asarray(v.astype(layer.params["weight"].dtype))

    def children(self):
        return [self.layer]

    def _matrix(self, W):
        return W.reshape(W.shape[0], -1)

    def sigma(self):
        """The current estimate u^T Wm v of the largest singular value."""
        W = self.layer.params["weight"]
        return float(self.buffers["weight_u"] @ (self._matrix(W) @ self.buffers["weight_v"]))

    def forward(self, X):
        W = self.layer.params["weight"]
        Wm, u, v = self._matrix(W), self.buffers["weight_u"], self.buffers["weight_v"]
        if self.training:  # refine u, v in place (buffers: a checkpoint keeps them)
            for _ in range(self.n_power_iterations):
                v[...] = _normalise(Wm.T @ u, self.eps)
                u[...] = _normalise(Wm @ v, self.eps)
        sigma = u @ (Wm @ v)
        W_sn = W / sigma
        Y, inner = self.layer.forward(X, weight=W_sn)
        return Y, self.save_for_backward(inner, W_sn, sigma, u.copy(), v.copy())

    def backward(self, dY, cache):
        inner, W_sn, sigma, u, v = self.saved(cache)
        dW = self.layer.grads["weight"]
        before = dW.copy()
        dX = self.layer.backward(dY, inner)            # adds dL/dW_sn to dW
        self._to_raw_weight_grad(dW, before, W_sn, sigma, u, v)
        return dX

    def backward_params(self, dY, cache):
        inner, W_sn, sigma, u, v = self.saved(cache)
        dW = self.layer.grads["weight"]
        before = dW.copy()
        self.layer.backward_params(dY, inner)
        self._to_raw_weight_grad(dW, before, W_sn, sigma, u, v)

    def backward_input(self, dY, cache):
        return self.layer.backward_input(dY, self.saved(cache)[0])

    def double_backward(self, ddX, dY, cache):
        """The wrapped layer's double backward with W_sn, its dP/dW_sn mapped to dP/dW as in backward."""
        inner, W_sn, sigma, u, v = self.saved(cache)
        dW = self.layer.grads["weight"]
        before = dW.copy()
        ddY, ddX_in = self.layer.double_backward(ddX, dY, inner)
        self._to_raw_weight_grad(dW, before, W_sn, sigma, u, v)
        return ddY, ddX_in

    def _to_raw_weight_grad(self, dW, before, W_sn, sigma, u, v):
        """dW holds before + dW_sn: make it before + dL/dW (u, v fixed; module docstring)."""
        dW_sn = dW - before
        xp = backend.array_module(dW)
        uvT = xp.outer(u, v).reshape(dW.shape)
        dW_sn -= (dW_sn * W_sn).sum() * uvT
        dW_sn *= 1.0 / sigma
        dW[...] = before
        dW += dW_sn

    def extra_repr(self):
        return repr(self.layer) + ("" if self.n_power_iterations == 1 else f", n_power_iterations={self.n_power_iterations}")


def spectral_norm(layer, n_power_iterations: int = 1, eps: float = 1e-12, seed: int = 0) -> SpectralNorm:
    """Wrap a Dense or Conv2D layer so that it computes with W / sigma(W) (torch's spectral_norm)."""
    return SpectralNorm(layer, n_power_iterations=n_power_iterations, eps=eps, seed=seed)
