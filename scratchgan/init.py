"""Weight initialisers, all drawn from an explicit seeded ``numpy.random.Generator``.

Weights are drawn on the host (so a seed gives the same weights on either backend)
and moved to the selected backend by the layer.

    fan_in  = shape[1] * receptive field,  fan_out = shape[0] * receptive field

as torch.nn.init computes them (for ConvTranspose2D's (in, out, kh, kw) weight this is
also torch's convention).
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["make_rng", "manual_seed", "fans", "initialise", "INITIALISERS", "parameter_budget"]

_global_rng = np.random.default_rng(0)
_local = threading.local()   # .budget: [[weights still allowed, who]] while a model is built from an untrusted description


@contextmanager
def parameter_budget(limit: int, who: str):
    """Within the block, ``initialise`` refuses (ValueError naming ``who``) to draw more than ``limit``
    weights in all, before allocating them: a model described by an untrusted file (a checkpoint's
    .json) is built only up to the size of the arrays that file actually carries."""
    stack = _budgets()
    stack.append([int(limit), who])
    try:
        yield
    finally:
        stack.pop()


def _budgets() -> list:
    """This thread's budgets: ranks that are threads (ThreadRanks) build their models at once."""
    if not hasattr(_local, "budget"):
        _local.budget = []
    return _local.budget


def manual_seed(seed: int) -> None:
    """Reseed the generator used by layers built without an explicit ``rng``."""
    global _global_rng
    _global_rng = np.random.default_rng(seed)


def make_rng(rng=None) -> np.random.Generator:
    """``rng`` as a Generator: None -> the global one, an int -> a fresh seeded one."""
    if rng is None:
        return _global_rng
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def fans(shape) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_out = shape[0] * receptive
    fan_in = (shape[1] if len(shape) > 1 else shape[0]) * receptive
    return fan_in, fan_out


def glorot_uniform(rng, shape):
    fan_in, fan_out = fans(shape)
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape)


def glorot_normal(rng, shape):
    fan_in, fan_out = fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_normal(rng, shape):
    fan_in, _ = fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


def he_uniform(rng, shape):
    fan_in, _ = fans(shape)
    a = math.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, size=shape)


def dcgan_normal(rng, shape):
    """normal(0, 0.02), as in Radford et al. (2015)."""
    return rng.normal(0.0, 0.02, size=shape)


def torch_default(rng, shape):
    """torch.nn's default for Linear/Conv weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in, _ = fans(shape)
    a = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-a, a, size=shape)


INITIALISERS = {
    "glorot_uniform": glorot_uniform, "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal, "xavier_normal": glorot_normal,
    "he_normal": he_normal, "kaiming_normal": he_normal,
    "he_uniform": he_uniform, "kaiming_uniform": he_uniform,
    "dcgan": dcgan_normal, "normal_0.02": dcgan_normal,
    "torch": torch_default,
}


def initialise(name: str, rng, shape, dtype, who: str | None = None) -> np.ndarray:
    """A host array of ``shape`` drawn by the named initialiser (``who``: the layer class,
    named in the error for an unknown initialiser)."""
    try:
        fn = INITIALISERS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        prefix = f"{who}: " if who else ""
        raise ValueError(f"{prefix}unknown initialiser {name!r}; choose from {sorted(INITIALISERS)}") from None
    budget = _budgets()
    if budget:
        size = math.prod(int(d) for d in shape)
        if size > budget[-1][0]:
            raise ValueError(f"{budget[-1][1]} needs more weights than its arrays hold (a {who or 'layer'} "
                             f"weight of shape {tuple(shape)}: {size:,} values); refusing to build it")
        budget[-1][0] -= size
    return fn(make_rng(rng), tuple(shape)).astype(dtype)
