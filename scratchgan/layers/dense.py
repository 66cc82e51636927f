"""Dense (fully connected, torch's Linear):  Y = X W^T + b.

Shapes: X (N, in), W (out, in), b (out,), Y (N, out).
Backward (docs/layers/dense.md):
    dW = dY^T X      db = sum_n dY      dX = dY W
Double backward (docs/double-backward.md), given ddX = dP/d(dX):
    ddY = ddX W^T    dW += dY^T ddX     (dX does not depend on X or b)
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

    def forward(self, X, weight=None):
        """Y = X W^T + b. ``weight``: an (out, in) array to use instead of the parameter (a
        SpectralNorm wrapper passes W / sigma); backward then gives the gradient for it."""
        self._check_input(X, ndim=2, dim=1, size=self.in_features)
        W = self.params["weight"] if weight is None else self._check_weight(weight)
        Y = X @ W.T
        if self.use_bias:
            Y += self.params["bias"]
        return Y, self.save_for_backward(X, W)

    def backward(self, dY, cache):
        X, W = self._saved_checked(dY, cache)
        self._param_grads(dY, X)
        return self._input_grad(dY, W)

    def backward_params(self, dY, cache):
        X, _ = self._saved_checked(dY, cache)
        self._param_grads(dY, X)

    def backward_input(self, dY, cache):
        _, W = self._saved_checked(dY, cache)
        return self._input_grad(dY, W)

    def double_backward(self, ddX, dY, cache):
        """dX = dY W is bilinear in (dY, W) and free of X: given ddX = dP/d(dX),
        ddY = ddX W^T and dW += dY^T ddX (W: the weight the forward used); ddX_in = None."""
        X, W = self.saved(cache)
        self._check_double(ddX, dY, X.shape, (X.shape[0], self.out_features), X.dtype, X)
        self.grads["weight"] += dY.T @ ddX
        return ddX @ W.T, None

    def _saved_checked(self, dY, cache):
        """(X, W) from the cache, after checking dY against the forward's output."""
        X, W = self.saved(cache)
        self._check_grad(dY, (X.shape[0], self.out_features), X.dtype, X)
        return X, W

    def _param_grads(self, dY, X):
        self.grads["weight"] += dY.T @ X
        if self.use_bias:
            self.grads["bias"] += dY.sum(axis=0)

    def _input_grad(self, dY, W):
        if self.out_features == 1:  # an outer product: NumPy's matmul takes a slow non-BLAS path for it
            return dY * W
        return dY @ W

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}" + ("" if self.use_bias else ", bias=False")
