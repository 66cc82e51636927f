"""Inverted dropout: in train mode each value is kept with probability q, the keep probability
1 - p quantised as below, and scaled by 1 / q, so E[Y] = X; in eval mode the layer is the identity.

    Y = X * M / q,  M ~ Bernoulli(q),  q = (65536 - t) / 65536,  t = round(65536 p)      dX = dY * M / q

The mask keeps a value where a uniform 16-bit integer r (backend.random_uint16: four per
64-bit output of the generator, a quarter of the draws of one float per value) is at least
t = round(65536 p). So the drop probability is p rounded to a multiple of 2^-16 (within
7.7e-6 of p), and the scale is 65536 / (65536 - t), which keeps E[Y] = X exactly.

The random state is two integers, (seed, calls): the mask of the k-th training call is
drawn from a generator seeded by (seed, k), so a run resumed from a checkpoint draws
exactly the masks it would have drawn, on either backend. In a data-parallel run (``comm`` set,
distributed.py) each rank draws its rows of the global batch's mask, the masks of one process.
(Until 2026-12-01 the mask compared one float32 uniform per value with p: other masks.)

Double backward (docs/double-backward.md): ddY = ddX * M / q with the same mask.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .base import Module, check_real


class Dropout(Module):
    def __init__(self, p: float = 0.5, seed: int = 0):
        super().__init__()
        self.p = check_real("Dropout", "p", p, "[0, 1]")
        self.seed = seed
        self.buffers["calls"] = np.zeros((), np.int64)  # host counter: no device sync to read it

    def forward(self, X):
        self._check_input(X)
        if not self.training or self.p == 0.0:
            return X, self.save_for_backward(None, X)
        xp = backend.array_module(X)
        rng = backend.random_generator(xp, self.seed, int(self.buffers["calls"]))
        self.buffers["calls"] += 1
        t = round(65536 * self.p)                           # drop where r < t: P = t / 2^16
        if t >= 65536:
            mask = xp.zeros_like(X)
        else:
            mask = (self._uint16(rng, X) >= t).astype(X.dtype)  # the keep-mask as 1.0 / 0.0
            mask *= 65536.0 / (65536 - t)
        return X * mask, self.save_for_backward(mask, None)

    def _uint16(self, rng, X):
        """Uniform 16-bit integers of X's shape: with ``comm``, this rank's rows of the global batch's."""
        if self.comm is None:
            return backend.random_uint16(rng, X.shape)
        total = len(X) * self.comm.size
        return backend.random_uint16(rng, X.shape, self.comm.rows(total).start, total)

    def backward(self, dY, cache):
        """mask: the scaled keep-mask, or None when the layer was the identity (Y = X)."""
        mask, X = self.saved(cache)
        if mask is None:
            self._check_grad(dY, X.shape, X.dtype, X)
            return dY
        self._check_grad(dY, mask.shape, mask.dtype, mask)
        return dY * mask

    def double_backward(self, ddX, dY, cache):
        """dX = dY * mask is linear in dY with the forward's fixed mask: ddY = ddX * mask
        (ddX itself in eval mode); nothing flows to X."""
        mask, X = self.saved(cache)
        if mask is None:
            self._check_double(ddX, dY, X.shape, X.shape, X.dtype, X)
            return ddX, None
        self._check_double(ddX, dY, mask.shape, mask.shape, mask.dtype, mask)
        return ddX * mask, None

    def extra_repr(self):
        return f"p={self.p}"
