"""Batch normalisation over the batch (and spatial) axes, one statistic per channel.

Train mode (m = number of values per channel, statistics over axes A):

    mu = mean_A(X)      var = mean_A((X - mu)^2)          (biased: used to normalise)
    Xhat = (X - mu) / sqrt(var + eps)      Y = gamma * Xhat + beta
    running_mean <- (1 - momentum) * running_mean + momentum * mu
    running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased)

    dX = (1 / (m * sigma)) * (m * dXhat - sum_A dXhat - Xhat * sum_A(dXhat * Xhat)),  dXhat = gamma * dY
       = (gamma / sigma) * (dY - mean_A(dY) - Xhat * mean_A(dY * Xhat))     (gamma is constant over A)

In a data-parallel run (``comm`` set, distributed.py) A spans every rank's batch: the per-channel
sums behind mu and var, and the two sums of dX, are all-reduced (SyncBatchNorm), so the ranks
normalise with the statistics of the global batch, as one process would.

Eval mode uses the running statistics, so the layer is a fixed affine map per channel:
dX = dY * gamma / sqrt(running_var + eps). momentum and eps mean what they mean in
torch.nn (momentum=0.1, eps=1e-5; momentum=None keeps a cumulative average).
Derivation: docs/layers/batchnorm.md.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .base import Module, ShapeError, check_int, check_real


class _BatchNorm(Module):
    ndim = None   # 2 for BatchNorm1d (N, C), 4 for BatchNorm2d (N, C, H, W)
    axes = None   # the axes statistics run over
    double_backward_note = ("it normalises with statistics over the batch, so each sample's output depends on the "
                            "other samples and the per-sample input gradients whose norms the WGAN-GP penalty takes "
                            "are not defined; use LayerNorm in a critic (Gulrajani et al. 2017, section 4)")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, dtype=None):
        super().__init__()
        who = type(self).__name__
        self.num_features = num_features = check_int(who, "num_features", num_features, 1)
        self.eps = check_real(who, "eps", eps, "(0, inf)")
        self.momentum = None if momentum is None else check_real(who, "momentum (or None)", momentum, "[0, 1]")
        self.affine = affine
        dtype = self._dtype_arg(dtype)
        if affine:
            self._add_param("weight", np.ones(num_features, dtype))
            self._add_param("bias", np.zeros(num_features, dtype))
        self.buffers["running_mean"] = backend.asarray(np.zeros(num_features, dtype))
        self.buffers["running_var"] = backend.asarray(np.ones(num_features, dtype))
        self.buffers["num_batches_tracked"] = np.zeros((), np.int64)  # host counter, as torch

    def _per_channel(self, v, X):
        """A per-channel vector (C,) as an array that broadcasts against X. For maps it is the
        whole (C, H, W) plane: an element-wise pass then runs over rows of C*H*W contiguous
        values, not over one short row of H*W values per channel (1.5-3x faster on 7x7 and
        14x14 maps, docs/performance.md)."""
        if self.ndim == 2:
            return v
        return backend.array_module(v).broadcast_to(v[:, None, None], X.shape[1:]).copy()

    def _sum(self, A, B=None):
        """The per-channel sum over the axes A of A, or of A * B: one einsum, without the
        product's temporary, 2-4x faster than A.sum(axis=(0, 2, 3)) on NCHW maps."""
        xp, sub = backend.array_module(A), "nc" if self.ndim == 2 else "nci"
        A = A.reshape(A.shape[:2] + (() if self.ndim == 2 else (A.shape[2] * A.shape[3],)))  # (not -1: N may be 0)
        if B is None:
            return xp.einsum(f"{sub}->c", A)
        return xp.einsum(f"{sub},{sub}->c", A, B.reshape(A.shape))

    def forward(self, X):
        self._check_input(X, ndim=self.ndim, dim=1, size=self.num_features, like=self.buffers["running_mean"])
        if self.training:
            m = self._count(X)
            if m < 2:
                raise ShapeError(f"{self!r}: train mode needs more than 1 value per channel, got input shape {X.shape}")
            mu = self._mean(m, X)
            Xc = X - self._per_channel(mu, X)
            var = self._mean(m, Xc, Xc)
            inv_std = 1.0 / (var + self.eps) ** 0.5
            Xhat = Xc
            Xhat *= self._per_channel(inv_std, X)  # reuse the centred buffer: one temporary fewer
            self.buffers["num_batches_tracked"] += 1
            # momentum=None: the cumulative average over all batches so far, as torch.
            f = self.momentum if self.momentum is not None else 1.0 / int(self.buffers["num_batches_tracked"])
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            rm *= 1 - f
            rm += f * mu
            rv *= 1 - f
            rv += (f * m / (m - 1)) * var
        else:   # one affine map per channel, Y = X * scale + shift: two passes (sampling's hot path)
            inv_std = 1.0 / (self.buffers["running_var"] + self.eps) ** 0.5
            mean = self.buffers["running_mean"].copy()       # the backward's Xhat uses these statistics
            scale = inv_std * self.params["weight"] if self.affine else inv_std
            shift = (self.params["bias"] - mean * scale) if self.affine else -mean * scale
            Y = X * self._per_channel(scale, X)
            Y += self._per_channel(shift, X)
            return Y, self.save_for_backward(X, inv_std, False, mean)
        if self.affine:
            Y = Xhat * self._per_channel(self.params["weight"], X)
            Y += self._per_channel(self.params["bias"], X)
        else:
            Y = Xhat.copy()
        return Y, self.save_for_backward(Xhat, inv_std, True, None)

    def scale_shift(self):
        """Eval mode's per-channel map as (scale, shift): Y = X * scale + shift, from the running
        statistics (layers/inference.py folds it into the layer before)."""
        inv_std = 1.0 / (self.buffers["running_var"] + self.eps) ** 0.5
        scale = inv_std * self.params["weight"] if self.affine else inv_std
        shift = (self.params["bias"] - self.buffers["running_mean"] * scale) if self.affine \
            else -self.buffers["running_mean"] * scale
        return scale, shift

    def infer(self, X, overwrite=False):
        """Eval mode: X * scale + shift, written over X where allowed; train mode: forward."""
        if self.training or not overwrite:
            return self.forward(X)[0]
        self._check_input(X, ndim=self.ndim, dim=1, size=self.num_features, like=self.buffers["running_mean"])
        scale, shift = self.scale_shift()
        X *= self._per_channel(scale, X)
        X += self._per_channel(shift, X)
        return X

    def backward(self, dY, cache):
        Xhat, inv_std, training, mean = self.saved(cache)
        self._check_grad(dY, Xhat.shape, Xhat.dtype, Xhat)
        if not training and self.affine:   # the eval cache holds X: dgamma needs Xhat
            Xhat = Xhat - self._per_channel(mean, Xhat)
            Xhat *= self._per_channel(inv_std, Xhat)
        sums = self._sums(dY, Xhat) if self.affine or training else None
        if self.affine:
            self.grads["bias"] += sums[0]
            self.grads["weight"] += sums[1]
        return self._input_grad(dY, Xhat, inv_std, training, sums)

    def backward_input(self, dY, cache):
        Xhat, inv_std, training, _ = self.saved(cache)   # eval: X, unused (dX = dY * gamma / sigma)
        self._check_grad(dY, Xhat.shape, Xhat.dtype, Xhat)
        return self._input_grad(dY, Xhat, inv_std, training, self._sums(dY, Xhat) if training else None)

    def _count(self, X):
        """m: the values per channel the statistics run over (on every rank, with ``comm``)."""
        return X.size // X.shape[1] * (self.comm.size if self.comm is not None else 1)

    def _mean(self, m, A, B=None):
        """The per-channel mean over the axes A of A (of A * B); with ``comm``, of the global
        batch (one all-reduce)."""
        sums = self._sum(A, B)
        return (sums if self.comm is None else self.comm.allreduce_sum(sums)) / m

    def _sums(self, dY, Xhat):
        """(sum_A dY, sum_A dY * Xhat) = (dbeta, dgamma): train mode's dX needs them too."""
        return self._sum(dY), self._sum(dY, Xhat)

    def _input_grad(self, dY, Xhat, inv_std, training, sums):
        gamma = self.params["weight"] if self.affine else 1.0
        if not training:  # eval: a fixed affine map
            return dY * self._per_channel(gamma * inv_std, dY)
        # dX = gamma * inv_std * (dY - mean_A(dY) - Xhat * mean_A(dY * Xhat)): the input
        # gradient needs the same two sums as the parameter gradients (docs/layers/batchnorm.md).
        sum_dY, sum_dY_Xhat = sums
        m = self._count(Xhat)
        if self.comm is not None:   # this rank's sums went into the parameter gradients; dX needs all ranks'
            both = self.comm.allreduce_sum(backend.array_module(dY).concatenate(sums))
            sum_dY, sum_dY_Xhat = both[:self.num_features], both[self.num_features:]
        dX = Xhat * self._per_channel(sum_dY_Xhat / m, dY)
        dX += self._per_channel(sum_dY / m, dY)
        backend.array_module(dY).subtract(dY, dX, out=dX)
        dX *= self._per_channel(gamma * inv_std, dY)
        return dX

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """BatchNorm over the batch axis of (N, C) features."""
    ndim, axes = 2, (0,)


class BatchNorm2d(_BatchNorm):
    """BatchNorm per channel over the batch and spatial axes of (N, C, H, W) maps."""
    ndim, axes = 4, (0, 2, 3)
