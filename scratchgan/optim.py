"""Optimisers: Adam, RMSprop and SGD. An optimiser owns one model and steps only its parameters,
in place, from the gradients its backward passes accumulated.

Adam (Kingma & Ba 2015), one step counter t per optimiser step (not per parameter):

    g <- g + weight_decay * p                     (L2 penalty, as torch.optim.Adam)
    m <- beta1 m + (1 - beta1) g                   v <- beta2 v + (1 - beta2) g^2
    p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

RMSprop (Hinton's lecture 6e; torch.optim.RMSprop, the WGAN paper's optimiser), smoothing alpha:

    v <- alpha v + (1 - alpha) g^2                 (centered: a <- alpha a + (1 - alpha) g, v' = v - a^2)
    p <- p - lr g / (sqrt(v') + eps)               (momentum mu: b <- mu b + g / (sqrt(v') + eps), p <- p - lr b)

SGD with momentum mu (torch.optim.SGD, dampening 0):

    b <- mu b + g  (b = g on the first step)     g' = g + mu b if nesterov else b
    p <- p - lr g'

State (moments, step count) is keyed by parameter name and can be saved and restored
exactly with state_dict() / load_state_dict(). Derivation: docs/optimizers.md.

An optimiser packs its model's parameters and gradients into one flat buffer each
(Module.flatten_parameters), so one step is a handful of vector operations over all of
them. Cast or move the model (astype, to) BEFORE creating its optimiser: replacing the
parameters afterwards is detected and refused. On the CPU, Adam and RMSprop make their dozen
passes block by block (BLOCK elements, small enough for a core's L2 cache), so that only the
first pass over a block reads it from memory: the same operations on every element, in the
same order, so the same bits (docs/performance.md).
"""
from __future__ import annotations

import numpy as np

from . import backend
from .layers.base import Module, check_real

__all__ = ["Adam", "RMSprop", "SGD", "OPTIMIZERS"]


class _Optimizer:
    BLOCK = 1 << 16     # elements per block of a multi-pass step on the CPU: 4 arrays of 256 KB in float32

    def __init__(self, module, lr):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: expected the Module to optimise, got a {type(module).__name__}")
        self.module, self.lr = module, check_real(type(self).__name__, "lr", lr, "[0, inf)")
        self.flat_p, self.flat_g = module.flatten_parameters()
        self.names, self.slices = [], {}
        # (owner, key, param, grad) for every parameter: a step checks that none was replaced
        self._views = [(m, k, m.params[k], m.grads[k]) for _, m in module.named_modules() for k in m.params]
        offset = 0
        for name, p, _ in module.named_parameters():
            self.names.append(name)
            self.slices[name] = (slice(offset, offset + p.size), p.shape)
            offset += p.size

    def zero_grad(self) -> None:
        """Zero all of the model's gradients (one fill of the flat buffer)."""
        if self.flat_g is not None:
            self._check_module()
            self.flat_g.fill(0)

    def _zeros(self):
        return None if self.flat_p is None else backend.array_module(self.flat_p).zeros_like(self.flat_p)

    def _blocks(self) -> list:
        """Slices of the flat buffers that a multi-pass step updates one after the other:
        BLOCK elements each on the CPU, the whole buffer on a GPU (where each pass is one kernel)."""
        n = self.flat_p.size
        size = self.BLOCK if backend.array_module(self.flat_p) is np else n
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def _scratch(self):
        """A scratch array as long as the longest block."""
        if self.flat_p is None:
            return None
        return backend.array_module(self.flat_p).zeros(self._blocks()[0].stop, self.flat_p.dtype)

    def _per_name(self, flat, prefix) -> dict:
        """Views of a flat state array, one per parameter name."""
        return {f"{prefix}.{n}": flat[sl].reshape(shape) for n, (sl, shape) in self.slices.items()}

    def _check_module(self):
        if any(m.params.get(k) is not p or m.grads.get(k) is not g for m, k, p, g in self._views):
            raise RuntimeError(f"{type(self).__name__}: the model's parameters were replaced after the "
                               "optimiser was created (astype/to/flatten_parameters?); create the optimiser "
                               "after casting or moving the model")

    def _state_arrays(self) -> dict:
        raise NotImplementedError

    def flat_state(self) -> dict:
        """The optimiser's state as flat arrays by what they are (for the divergence guard)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Step count and per-parameter state by name (arrays are copies)."""
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
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), each in [0, 1), got {betas!r}")
        self.beta1 = check_real("Adam", "betas[0]", betas[0], "[0, 1)")
        self.beta2 = check_real("Adam", "betas[1]", betas[1], "[0, 1)")
        self.eps = check_real("Adam", "eps", eps, "[0, inf)")
        self.weight_decay = check_real("Adam", "weight_decay", weight_decay, "[0, inf)")
        super().__init__(module, lr)  # after the checks: it packs the model's parameters
        self.t = 0
        self.m, self.v, self._tmp = self._zeros(), self._zeros(), self._scratch()

    def step(self) -> None:
        if self.flat_p is None:
            return
        self._check_module()
        self.t += 1
        step_size = self.lr / (1 - self.beta1 ** self.t)
        sqrt_bc2 = (1 - self.beta2 ** self.t) ** 0.5
        for sl in self._blocks():
            self._update(sl, step_size, sqrt_bc2)

    def _update(self, sl, step_size, sqrt_bc2):
        """The step on the elements sl of the flat buffers."""
        xp = backend.array_module(self.flat_p)
        b1, b2, p, m, v = self.beta1, self.beta2, self.flat_p[sl], self.m[sl], self.v[sl]
        tmp = self._tmp[:p.size]
        g = self.flat_g[sl] + self.weight_decay * p if self.weight_decay else self.flat_g[sl]
        m *= b1                                   # m <- b1 m + (1 - b1) g
        xp.multiply(g, 1 - b1, out=tmp)
        m += tmp
        v *= b2                                   # v <- b2 v + (1 - b2) g^2
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v += tmp
        xp.sqrt(v, out=tmp)                       # sqrt(v / (1 - b2^t)) + eps
        tmp *= 1.0 / sqrt_bc2
        tmp += self.eps
        xp.divide(m, tmp, out=tmp)                # p <- p - lr / (1 - b1^t) * m / (...)
        tmp *= step_size
        p -= tmp

    def _state_arrays(self):
        if self.flat_p is None:
            return {}
        return {**self._per_name(self.m, "m"), **self._per_name(self.v, "v")}

    def flat_state(self):
        return {"Adam first moments": self.m, "Adam second moments": self.v} if self.flat_p is not None else {}


class RMSprop(_Optimizer):
    def __init__(self, module, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        self.alpha = check_real("RMSprop", "alpha", alpha, "[0, 1)")
        self.eps = check_real("RMSprop", "eps", eps, "[0, inf)")
        self.weight_decay = check_real("RMSprop", "weight_decay", weight_decay, "[0, inf)")
        self.momentum = check_real("RMSprop", "momentum", momentum, "[0, inf)")
        self.centered = bool(centered)
        super().__init__(module, lr)  # after the checks: it packs the model's parameters
        self.t = 0
        self.v, self._tmp = self._zeros(), self._scratch()
        self.a = self._zeros() if centered else None          # running mean of g (centered)
        self.buf = self._zeros() if momentum else None

    def step(self) -> None:
        if self.flat_p is None:
            return
        self._check_module()
        self.t += 1
        for sl in self._blocks():
            self._update(sl)

    def _update(self, sl):
        """The step on the elements sl of the flat buffers."""
        xp = backend.array_module(self.flat_p)
        alpha, p, v = self.alpha, self.flat_p[sl], self.v[sl]
        tmp = self._tmp[:p.size]
        g = self.flat_g[sl] + self.weight_decay * p if self.weight_decay else self.flat_g[sl]
        v *= alpha                                # v <- alpha v + (1 - alpha) g^2
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - alpha
        v += tmp
        if self.centered:                         # v' = v - a^2, a <- alpha a + (1 - alpha) g
            a = self.a[sl]
            a *= alpha
            a += (1 - alpha) * g
            xp.multiply(a, a, out=tmp)
            xp.subtract(v, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(v, out=tmp)
        tmp += self.eps                           # sqrt(v') + eps
        xp.divide(g, tmp, out=tmp)                # g / (sqrt(v') + eps)
        if self.momentum:
            buf = self.buf[sl]
            buf *= self.momentum
            buf += tmp
            tmp = buf
        p -= self.lr * tmp

    def _state_arrays(self):
        if self.flat_p is None:
            return {}
        state = self._per_name(self.v, "v")
        if self.a is not None:
            state.update(self._per_name(self.a, "a"))
        if self.buf is not None:
            state.update(self._per_name(self.buf, "buf"))
        return state

    def flat_state(self):
        state = {"RMSprop square averages": self.v} if self.flat_p is not None else {}
        if self.a is not None:
            state["RMSprop mean gradients"] = self.a
        if self.buf is not None:
            state["RMSprop momentum"] = self.buf
        return state


class SGD(_Optimizer):
    def __init__(self, module, lr=1e-2, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.momentum = check_real("SGD", "momentum", momentum, "[0, inf)")
        self.weight_decay = check_real("SGD", "weight_decay", weight_decay, "[0, inf)")
        if nesterov and self.momentum <= 0:
            raise ValueError(f"SGD: nesterov needs momentum > 0, got momentum={momentum!r}")
        self.nesterov = nesterov
        super().__init__(module, lr)  # after the checks: it packs the model's parameters
        self.t = 0
        self.buf = self._zeros() if momentum and self.flat_p is not None else None

    def step(self) -> None:
        if self.flat_p is None:
            return
        self._check_module()
        self.t += 1
        p = self.flat_p
        g = self.flat_g + self.weight_decay * p if self.weight_decay else self.flat_g
        if self.momentum:
            b = self.buf
            if self.t == 1:
                b[...] = g                        # torch: the first step's buffer is g itself
            else:
                b *= self.momentum
                b += g
            g = g + self.momentum * b if self.nesterov else b
        p -= self.lr * g

    def _state_arrays(self):
        return self._per_name(self.buf, "buf") if self.buf is not None else {}

    def flat_state(self):
        return {"SGD momentum": self.buf} if self.buf is not None else {}


OPTIMIZERS = {"adam": Adam, "rmsprop": RMSprop, "sgd": SGD}
