"""Minibatch standard deviation (Karras et al. 2018, progressive GANs): a discriminator layer
that lets D see how varied the batch is, so a generator that collapses onto a few modes is
caught. It appends one feature, the same for every item of the batch:

    mu_f = mean_n X[n, f]      s_f = sqrt(mean_n (X[n, f] - mu_f)^2 + eps)      m = mean_f s_f
    Y = [X, m]                 (N, F) -> (N, F + 1)

Backward, with G = sum_n dY[n, F] the gradient reaching m (the appended column):

    dX[n, f] = dY[n, f] + G (X[n, f] - mu_f) / (F N s_f)

(the derivative of mu_f cancels: sum_n (X[n, f] - mu_f) = 0). The layer couples the items of a
batch, like batch norm, so it has no double backward (a WGAN-GP critic refuses it). In a
data-parallel run (``comm`` set, distributed.py) n spans every rank's batch in train mode: the
sums behind mu_f and s_f, and G, are all-reduced, as in SyncBatchNorm (in eval mode, e.g. rank 0
scoring its monitor batch alone, the batch given is the batch).
"""
from __future__ import annotations

from .. import backend
from .base import Module, ShapeError, check_real


class MinibatchStd(Module):
    """(N, F) -> (N, F + 1): the batch's mean feature standard deviation appended to each item."""

    double_backward_note = "it couples the items of a batch (each output depends on every input), as BatchNorm does"

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = check_real("MinibatchStd", "eps", eps, "(0, inf)")

    def forward(self, X):
        self._check_input(X, ndim=2)
        N, F = X.shape
        ranks = self.comm.size if self.comm is not None and self.training else 1
        if N * ranks < 2:
            raise ShapeError(f"{self!r}: needs a batch of at least 2 items to measure their spread, got shape {X.shape}")
        xp = backend.array_module(X)
        Xc = X - self._batch_mean(X, ranks)
        s = xp.sqrt(self._batch_mean(Xc * Xc, ranks) + self.eps)         # (F,)
        m = s.mean()
        Y = xp.empty((N, F + 1), dtype=X.dtype)
        Y[:, :F] = X
        Y[:, F] = m
        return Y, self.save_for_backward(Xc, s, ranks)

    def backward(self, dY, cache):
        Xc, s, ranks = self.saved(cache)
        N, F = Xc.shape
        self._check_grad(dY, (N, F + 1), Xc.dtype, Xc)
        G = dY[:, F].sum()
        if ranks > 1:
            G = self.comm.allreduce_sum(G.reshape(1))[0]
        dX = Xc * (G / (F * N * ranks) / s)
        dX += dY[:, :F]
        return dX

    def _batch_mean(self, A, ranks):
        """The mean over the batch's items: of every rank's batch when ``ranks`` > 1."""
        if ranks == 1:
            return A.mean(axis=0)
        return self.comm.allreduce_sum(A.sum(axis=0)) / (len(A) * ranks)

    def extra_repr(self):
        return "" if self.eps == 1e-8 else f"eps={self.eps}"
