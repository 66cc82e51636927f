"""cupy.random (stand-in): a Generator whose numbers differ from NumPy's for the same seed, as
CuPy's (XORWOW on the device) do, so code that assumes equal streams on both backends is caught."""
import numbers as _numbers

import numpy as _np

from . import _wrap, ndarray

_FLOATS = (_np.float32, _np.float64)


class Generator:
    def __init__(self, seed):
        # Philox keyed by the seed: a different stream from NumPy's default_rng (PCG64) for any seed.
        self._g = _np.random.Generator(_np.random.Philox(key=int(seed) ^ 0x5DEECE66D))

    def random(self, size=None, dtype=_np.float64, out=None):
        dtype = _np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"cupy.random.Generator.random: dtype must be float32 or float64, got {dtype}")
        return _draw(self._g.random(size, dtype=dtype), out)

    def standard_normal(self, size=None, dtype=_np.float64, out=None):
        dtype = _np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"cupy.random.Generator.standard_normal: dtype must be float32 or float64, got {dtype}")
        return _draw(self._g.standard_normal(size, dtype=dtype), out)

    def integers(self, low, high=None, size=None, dtype=_np.int64, endpoint=False):
        for v in (low, high):
            if isinstance(v, (_np.ndarray, ndarray)):
                raise TypeError("cupy stand-in: integers() with array bounds is not imitated")
        return _draw(self._g.integers(low, high, size=size, dtype=dtype, endpoint=endpoint), None)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=_np.float64):
        return _draw((low + (high - low) * self._g.random(size)).astype(dtype), None)


def _draw(values, out):
    if out is not None:
        out[...] = _wrap(_np.asarray(values))
        return out
    return _wrap(_np.asarray(values))


def default_rng(seed=None):
    """CuPy's default_rng takes one integer (or None), not NumPy's sequences of integers."""
    if seed is None:
        seed = _np.random.SeedSequence().entropy % 2**63
    if isinstance(seed, bool) or not isinstance(seed, (_numbers.Integral, _np.integer)):
        raise TypeError(f"cupy.random.default_rng: seed must be an integer, got {type(seed).__name__} (cupy stand-in)")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"cupy.random.default_rng: seed must be in [0, 2**64), got {seed} (cupy stand-in)")
    return Generator(seed)
