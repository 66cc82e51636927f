"""Optimisers: Adam and SGD. An optimiser owns one model and steps only its parameters,
in place, from the gradients its backward passes accumulated.

Adam (Kingma & Ba 2015), one step counter t per optimiser step (not per parameter):

    g <- g + weight_decay * p                     (L2 penalty, as torch.optim.Adam)
    m <- beta1 m + (1 - beta1) g                   v <- beta2 v + (1 - beta2) g^2
    p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

SGD with momentum mu (torch.optim.SGD, dampening 0):

    b <- mu b + g  (b = g on the first step)     g' = g + mu b if nesterov else b
    p <- p - lr g'

State (moments, step count) is keyed by parameter name and can be saved and restored
exactly with state_dict() / load_state_dict(). Derivation: docs/optimizers.md.
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = ["Adam", "SGD"]


class _Optimizer:
    def __init__(self, module, lr):
        self.module, self.lr = module, lr
        self.names = [name for name, _, _ in module.named_parameters()]

    def zero_grad(self) -> None:
        self.module.zero_grad()

    def _state_arrays(self) -> dict:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyper-parameters, step count and per-parameter state (arrays are copies)."""
        state = {k: v.copy() for k, v in self._state_arrays().items()}
        state["t"] = np.array(self.t, np.int64)
        return state

    def load_state_dict(self, state: dict) -> None:
        own = self._state_arrays()
        missing = sorted(set(own) - set(state))
        if missing:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}")
        for k, target in own.items():
            if tuple(state[k].shape) != tuple(target.shape):
                raise ValueError(f"{type(self).__name__}: state {k} has shape {tuple(state[k].shape)}, "
                                 f"expected {tuple(target.shape)}")
            target[...] = backend.array_module(target).asarray(state[k])
        self.t = int(state["t"])


class Adam(_Optimizer):
    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(module, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.t = 0
        params = {name: p for name, p, _ in module.named_parameters()}
        self.m = {k: backend.array_module(p).zeros_like(p) for k, p in params.items()}
        self.v = {k: backend.array_module(p).zeros_like(p) for k, p in params.items()}

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1 ** self.t)
        sqrt_bc2 = (1 - b2 ** self.t) ** 0.5
        for name, p, g in self.module.named_parameters():
            xp = backend.array_module(p)
            if self.weight_decay:
                g = g + self.weight_decay * p
            m, v = self.m[name], self.v[name]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            denom = xp.sqrt(v)
            denom *= 1.0 / sqrt_bc2
            denom += self.eps
            p -= step_size * (m / denom)

    def _state_arrays(self):
        state = {f"m.{k}": a for k, a in self.m.items()}
        state.update({f"v.{k}": a for k, a in self.v.items()})
        return state


class SGD(_Optimizer):
    def __init__(self, module, lr=1e-2, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(module, lr)
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.t = 0
        self.buf = {name: backend.array_module(p).zeros_like(p) for name, p, _ in module.named_parameters()} \
            if momentum else {}

    def step(self) -> None:
        self.t += 1
        for name, p, g in self.module.named_parameters():
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                b = self.buf[name]
                if self.t == 1:
                    b[...] = g
                else:
                    b *= self.momentum
                    b += g
                g = g + self.momentum * b if self.nesterov else b
            p -= self.lr * g

    def _state_arrays(self):
        return {f"buf.{k}": a for k, a in self.buf.items()}
