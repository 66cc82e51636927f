"""The projection discriminator's output (Miyato & Koyama 2018, "cGANs with projection
discriminator"): a conditional D that scores an image x with label y as

    D(x, y) = psi(phi(x)) + <V[y], phi(x)> = h w^T + b + sum_k h_k V[y, k],      h = phi(x)

phi is any feature network (a Sequential), psi a linear layer (w: (1, K), b: (1,)) and V (C, K) a
class embedding. The label enters through an inner product with the features instead of being
concatenated to the input, so D can only tell a matching from a mismatching label by what the
image looks like: this makes the generator's class conditioning much sharper.

The input is the conditional model's D input, [flatten(x), onehot(y)] (N, P + C), so the rest of
scratchgan feeds it as before; with e = onehot(y) the projection term is sum(h * (e V)). Backward,
with dY (N, 1) the gradient of the output:

    dw = dY^T h      db = sum dY      dV = e^T (dY * h)
    dh = dY w + dY * (e V)           (then back through phi)
    de = dY * (h V^T)                (the gradient with respect to the one-hot part)
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..init import initialise
from .base import Module, Sequential, ShapeError, check_int


class Projection(Module):
    """``Projection(phi, features, num_classes)``: D(x, y) from phi's (N, features) output."""

    def __init__(self, phi: Module, features: int, num_classes: int, init: str = "glorot_uniform", rng=None,
                 dtype=None):
        super().__init__()
        self.phi = phi
        self.features = check_int("Projection", "features", features, 1)
        self.num_classes = check_int("Projection", "num_classes", num_classes, 1)
        dtype = self._dtype_arg(dtype)
        self._add_param("weight", initialise(init, rng, (1, features), dtype, who="Projection"))
        self._add_param("bias", np.zeros(1, dtype))
        self._add_param("embedding", initialise(init, rng, (num_classes, features), dtype, who="Projection"))

    def children(self):
        return [self.phi]

    def forward(self, X):
        self._check_input(X, ndim=2)
        C = self.num_classes
        if X.shape[1] <= C:
            raise ShapeError(f"{self!r}: expected (N, P + {C}) inputs, [flattened image, one-hot label], got shape "
                             f"{tuple(X.shape)}")
        x, e = X[:, :-C], X[:, -C:]
        h, phi_cache = self.phi.forward(x)
        if tuple(h.shape) != (X.shape[0], self.features):
            raise ShapeError(f"{self!r}: phi gave features of shape {tuple(h.shape)}, expected (N, {self.features})")
        eV = e @ self.params["embedding"]                                   # (N, K): V[y] per item
        Y = h @ self.params["weight"].T + self.params["bias"] + (h * eV).sum(axis=1, keepdims=True)
        return Y, self.save_for_backward(phi_cache, h, e, eV, X.shape)

    def backward(self, dY, cache):
        return self._backward(dY, cache, params=True, input_grad=True)

    def backward_params(self, dY, cache):
        self._backward(dY, cache, params=True, input_grad=False)

    def backward_input(self, dY, cache):
        return self._backward(dY, cache, params=False, input_grad=True)

    def _backward(self, dY, cache, params, input_grad):
        phi_cache, h, e, eV, x_shape = self.saved(cache)
        self._check_grad(dY, (x_shape[0], 1), h.dtype, h)
        if params:
            self.grads["weight"] += dY.T @ h
            self.grads["bias"] += dY.sum(axis=0)
            self.grads["embedding"] += e.T @ (dY * h)
        dh = dY * (self.params["weight"] + eV)                              # dY w + dY (e V)
        if not input_grad:                     # D on data: only the parameter gradients are wanted
            if isinstance(self.phi, Sequential):
                self.phi.backward(dh, phi_cache, input_grad=False)
            else:
                self.phi.backward_params(dh, phi_cache)
            return None
        dx = self.phi.backward(dh, phi_cache) if params else self.phi.backward_input(dh, phi_cache)
        de = dY * (h @ self.params["embedding"].T)                          # (N, C)
        return backend.array_module(dx).concatenate([dx, de], axis=1)

    def extra_repr(self):
        return f"features={self.features}, num_classes={self.num_classes}"
