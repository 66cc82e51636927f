"""An exponential moving average of a model's weights (Yazici et al. 2019, "The unusual
effectiveness of averaging in GAN training"): sample and evaluate from the average of G's
recent weights rather than from the last, noisy iterate. It costs two vector operations per
step and changes nothing in training itself.

After the t-th update (t = 1, 2, ...), for every parameter and floating buffer p of the model:

    beta_t = min(decay, (1 + t) / (10 + t))        (a warm-up: early weights are forgotten fast)
    a <- beta_t a + (1 - beta_t) p

The warm-up is TensorFlow's ExponentialMovingAverage(num_updates=t) rule: with decay 0.999 the
average would otherwise remember the random initial weights for thousands of steps. Integer
buffers (BatchNorm's num_batches_tracked) are copied. ``average`` is a full copy of the model
(same layers, its own arrays), ready to sample from. Docs: training.md#the-knobs.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..layers.base import Module, check_real

__all__ = ["EMA"]


class EMA:
    """``EMA(G, decay, source=opt_G.flat_p)``: ``update()`` after each optimiser step of G; sample
    from ``average``. ``source``: G's parameters packed in one buffer (an optimiser's ``flat_p``),
    so that an update is two vector operations; without it they are gathered each update."""

    def __init__(self, module: Module, decay: float = 0.999, source=None):
        self.decay = check_real("EMA", "decay", decay, "[0, 1)")
        self.module, self.source = module, source
        self.average = module.copy()
        self.flat, _ = self.average.flatten_parameters()      # packed in the model's parameter order
        if source is not None and (self.flat is None or source.shape != self.flat.shape):
            raise ValueError(f"EMA: source holds {getattr(source, 'shape', None)} values, the model's parameters "
                             f"{None if self.flat is None else self.flat.shape}")
        self._tmp = None if self.flat is None else backend.array_module(self.flat).empty_like(self.flat)
        self.updates = 0

    def beta(self, t: int) -> float:
        """The decay used at update t (1-based)."""
        return min(self.decay, (1.0 + t) / (10.0 + t))

    def update(self) -> None:
        """Move the average one step towards the model's current weights and buffers."""
        self.updates += 1
        b = self.beta(self.updates)
        if self.flat is not None:
            xp = backend.array_module(self.flat)
            source = self.source if self.source is not None else \
                xp.concatenate([p.reshape(-1) for _, p, _ in self.module.named_parameters()])
            xp.multiply(source, 1.0 - b, out=self._tmp)          # a <- b a + (1 - b) p
            self.flat *= b
            self.flat += self._tmp
        for (_, a), (_, p) in zip(self.average.named_buffers(), self.module.named_buffers()):
            if np.dtype(a.dtype).kind == "f":
                a *= b
                a += (1.0 - b) * p
            else:
                a[...] = p

    def state_dict(self) -> dict:
        """The average's parameters and buffers by the model's names, and the update count."""
        state = {k: v.copy() for k, v in self.average.state_dict().items()}
        state["updates"] = np.array(self.updates, np.int64)
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        if "updates" not in state:
            raise KeyError("EMA.load_state_dict: missing ['updates']")
        self.updates = int(state.pop("updates"))
        self.average.load_state_dict(state)
