"""cupy.lib.stride_tricks (stand-in)."""
import numpy as _np


def as_strided(x, shape=None, strides=None):
    """A strided view of a device array (CuPy's takes no ``writeable``; writing through it is the caller's risk)."""
    from .. import _wrap, ndarray
    if not isinstance(x, ndarray):
        raise TypeError(f"cupy.lib.stride_tricks.as_strided: expected a cupy.ndarray, got {type(x)} (cupy stand-in)")
    return _wrap(_np.lib.stride_tricks.as_strided(x._a, shape=shape, strides=strides))
