"""Dense (fully connected, torch's Linear):  Y = X W^T + b.

Shapes: X (N, in), W (out, in), b (out,), Y (N, out).
Backward (docs/layers/dense.md):
    dW = dY^T X      db = sum_n dY      dX = dY W
"""
from __future__ import annotations

import numpy as np

from ..init import initialise
from .base import Module, check_int


class Dense(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: str = "glorot_uniform", rng=None, dtype=None):
        super().__init__()
        self.in_features = check_int("Dense", "in_features", in_features, 1)
        self.out_features = check_int("Dense", "out_features", out_features, 1)
        self.use_bias = bias
        dtype = self._dtype_arg(dtype)
        self._add_param("weight", initialise(init, rng, (out_features, in_features), dtype, who="Dense"))
        if bias:
            self._add_param("bias", np.zeros(out_features, dtype))

    def forward(self, X):
        self._check_input(X, ndim=2, dim=1, size=self.in_features)
        W = self.params["weight"]
        Y = X @ W.T
        if self.use_bias:
            Y += self.params["bias"]
        return Y, self.save_for_backward(X)

    def backward(self, dY, cache):
        self.backward_params(dY, cache)
        W = self.params["weight"]
        if self.out_features == 1:  # an outer product: NumPy's matmul takes a slow non-BLAS path for it
            return dY * W
        return dY @ W

    def backward_params(self, dY, cache):
        X = self.saved(cache)
        self._check_grad(dY, (X.shape[0], self.out_features), X.dtype, X)
        self.grads["weight"] += dY.T @ X
        if self.use_bias:
            self.grads["bias"] += dY.sum(axis=0)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}" + ("" if self.use_bias else ", bias=False")
