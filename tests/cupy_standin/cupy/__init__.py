"""A strict CuPy stand-in built on NumPy, for running scratchgan's CuPy path in CI without a GPU.

Test code only: tests/conftest.py puts ``tests/cupy_standin`` first on ``sys.path`` (and on
PYTHONPATH for subprocesses) when the real CuPy with a GPU is not there. It is never installed.

Its arrays (``cupy.ndarray``) are their own type, holding a NumPy array, and follow CuPy's rules
where CuPy is strict (docs/architecture.md, "The CuPy path without a GPU"):

* No implicit conversion to NumPy: ``np.asarray(d)``, ``d.__array__()``, any NumPy function or
  ufunc given a device array (``np.exp(d)``, ``np.sum(d)``), a device array inside a NumPy
  expression, matplotlib or Pillow on a device array: TypeError. Stricter than CuPy in one
  place: CuPy hands ``np.func(d)`` to ``cupy.func`` where it has one (and returns a device
  array where the caller may expect a host one); the stand-in refuses all but ``np.shape``,
  ``np.ndim`` and ``np.size``, which read no data, as the project's rule is that code asks the
  array for its namespace.
* Host and device arrays never meet in one operation (``d + h``, ``cupy.concatenate([d, h])``,
  ``cupy.where(d, h, 0)``): TypeError. Python and NumPy scalars are fine, as on CuPy.
* The only ways across are ``cupy.asarray`` / ``cupy.array`` (from the host), ``d.get()`` /
  ``cupy.asnumpy`` (to the host), and indexing or assigning with host arrays. Each is counted, and
  so is every device-to-host scalar read (``float(d)``, ``int(d)``, ``bool(d)``, ``if d:``,
  ``d.item()``, formatting and printing): ``counts()`` / ``reset_counts()``.
* Reductions and indexing to one element give 0-d device arrays, not host scalars (as CuPy).
* ``cupy.random`` draws different numbers than NumPy's generators for the same seed (CuPy's do),
  and its ``default_rng`` takes one integer seed only.
* ``cupy.cuda.runtime.getDeviceCount()`` is 1; streams and devices are no-ops.

It cannot imitate CuPy's kernels (the arithmetic is NumPy's, so rounding can differ from a GPU's
in the last bits), device memory (no out-of-memory, no pool), asynchrony or timing.
"""
from __future__ import annotations

import builtins as _builtins
import numbers as _numbers
import sys as _sys

import numpy as _np

STANDIN = True           # the real CuPy has no such attribute: tests and reports check it
__version__ = "0.0+scratchgan-standin"

# dtypes and constants are NumPy's, as in CuPy
from numpy import (bool_, complex64, complex128, dtype, e, float16, float32, float64, inf,  # noqa: F401,E402
                   int8, int16, int32, int64, nan, newaxis, pi, uint8, uint16, uint32, uint64, finfo, iinfo)

_counts = {"host_to_device": 0, "device_to_host": 0, "scalar_reads": 0}


def counts() -> dict:
    """Transfers and device-to-host scalar reads since the last reset_counts()."""
    return dict(_counts)


def reset_counts() -> None:
    for k in _counts:
        _counts[k] = 0


def _count(kind):
    _counts[kind] += 1


_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
             "array explicitly. (cupy stand-in)")


def _mixing(what):
    return TypeError(f"Unsupported type {type(what)}: a host (NumPy) array cannot meet a cupy.ndarray in one "
                     f"operation; move it with cupy.asarray or .get() first (cupy stand-in)")


def _wrap(a):
    """A device array holding NumPy result ``a`` (scalars become 0-d arrays, as CuPy's reductions)."""
    if isinstance(a, _np.ndarray):
        d = object.__new__(ndarray)
        d._a = a
        return d
    if isinstance(a, _np.generic):
        return _wrap(_np.asarray(a))
    if isinstance(a, tuple):
        return tuple(_wrap(x) for x in a)
    if isinstance(a, list):
        return [_wrap(x) for x in a]
    return a


def _operand(x):
    """The NumPy array behind one argument of a device operation; host arrays are refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise _mixing(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_operand(v) for v in x)
    return x


def _call(fn, args, kwargs):
    out = kwargs.get("out")
    args = tuple(_operand(a) for a in args)
    kwargs = {k: _operand(v) for k, v in kwargs.items()}
    result = fn(*args, **kwargs)
    return out if isinstance(out, ndarray) else _wrap(result)


def _index(key):
    """An index into a device array: device arrays, ints, slices; host arrays and lists are copied
    to the device (counted), as CuPy does."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, (_np.ndarray, list)):
        _count("host_to_device")
        return _np.asarray(key)
    return key


class ndarray:
    """A device array (stand-in): a NumPy array that refuses to be used as one."""
    __slots__ = ("_a", "__weakref__")
    __array_ufunc__ = None        # NumPy ufuncs and host operators refuse it; Python calls our __r*__
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy stand-in: ndarray(memptr=, strides=) is not imitated")
        self._a = _np.empty(shape, dtype=dtype, order=order)

    # ---------------------------------------------------------------- no implicit host conversion
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_function__(self, func, types, args, kwargs):
        if func in _METADATA and isinstance(args[0], ndarray) and len(args) + len(kwargs) == 1:
            return _METADATA[func](args[0]._a)     # no data read: CuPy hands these to cupy.shape etc.
        raise TypeError(f"numpy.{getattr(func, '__name__', func)}() was given a cupy.ndarray: {_IMPLICIT}")

    def __reduce__(self):
        raise TypeError("cupy stand-in: pickling a device array is not imitated; .get() it first")

    # ---------------------------------------------------------------- crossings (counted)
    def get(self, stream=None, order="C", out=None):
        _count("device_to_host")
        if out is not None:
            out[...] = self._a
            return out
        return _np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, _np.ndarray):
            raise TypeError(f"cupy stand-in: set() takes a numpy.ndarray, got {type(arr)}")
        _count("host_to_device")
        self._a[...] = arr

    def tolist(self):
        _count("device_to_host")
        return self._a.tolist()

    def tobytes(self, order="C"):
        _count("device_to_host")
        return self._a.tobytes(order)

    def item(self, *args):
        _count("scalar_reads")
        return self._a.item(*args)

    def __float__(self):
        _count("scalar_reads")
        return float(self._a)

    def __int__(self):
        _count("scalar_reads")
        return int(self._a)

    def __index__(self):
        _count("scalar_reads")
        return self._a.__index__()

    def __complex__(self):
        _count("scalar_reads")
        return complex(self._a)

    def __bool__(self):
        _count("scalar_reads")
        return bool(self._a)

    def __format__(self, spec):
        _count("scalar_reads" if self._a.ndim == 0 else "device_to_host")
        return format(self._a[()] if self._a.ndim == 0 else self._a, spec)

    def __repr__(self):
        _count("device_to_host")
        return repr(self._a)

    def __str__(self):
        _count("device_to_host")
        return str(self._a)

    # ---------------------------------------------------------------- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a.flags))
    T = property(lambda self: _wrap(self._a.T))
    device = property(lambda self: cuda.Device(0))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __copy__(self):
        return _wrap(self._a.copy())

    def __deepcopy__(self, memo):
        return _wrap(self._a.copy())

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, _np.ndarray):       # CuPy copies a host value to the device
            _count("host_to_device")
        else:
            value = _operand(value)
        self._a[_index(key)] = value

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return _wrap(self._a.astype(dtype, order=order, copy=copy))


_METADATA = {_np.shape: _np.shape, _np.ndim: _np.ndim, _np.size: _np.size}


class _Flags:
    def __init__(self, flags):
        self.c_contiguous, self.f_contiguous = flags.c_contiguous, flags.f_contiguous
        self.owndata = flags.owndata

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[key]


def _method(name):
    def method(self, *args, **kwargs):
        return _call(getattr(self._a, name), args, kwargs)
    method.__name__ = name
    return method


for _name in ("reshape ravel flatten transpose swapaxes squeeze view copy fill sum mean var std max min argmax "
              "argmin all any clip dot cumsum prod round conj nonzero take repeat sort argsort argpartition "
              "partition diagonal trace").split():
    setattr(ndarray, _name, _method(_name))


def _binary(op, reflected=False):
    def method(self, other):
        if not isinstance(other, (ndarray, _numbers.Number, _np.generic, bool)):
            if isinstance(other, _np.ndarray):
                raise _mixing(other)
            return NotImplemented
        other = _operand(other)
        return _wrap(op(other, self._a) if reflected else op(self._a, other))
    return method


def _inplace(ufunc):
    def method(self, other):
        if not isinstance(other, (ndarray, _numbers.Number, _np.generic, bool)):
            if isinstance(other, _np.ndarray):
                raise _mixing(other)
            return NotImplemented
        ufunc(self._a, _operand(other), out=self._a)
        return self
    return method


for _name, _op in {"add": _np.add, "sub": _np.subtract, "mul": _np.multiply, "truediv": _np.true_divide,
                   "floordiv": _np.floor_divide, "mod": _np.remainder, "pow": _np.power, "matmul": _np.matmul,
                   "and": _np.bitwise_and, "or": _np.bitwise_or, "xor": _np.bitwise_xor,
                   "lshift": _np.left_shift, "rshift": _np.right_shift}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    if _name != "matmul":
        setattr(ndarray, f"__i{_name}__", _inplace(_op))
for _name, _op in {"lt": _np.less, "le": _np.less_equal, "gt": _np.greater, "ge": _np.greater_equal,
                   "eq": _np.equal, "ne": _np.not_equal}.items():
    setattr(ndarray, f"__{_name}__", _binary(_op))
ndarray.__neg__ = lambda self: _wrap(-self._a)
ndarray.__pos__ = lambda self: _wrap(+self._a)
ndarray.__abs__ = lambda self: _wrap(_np.abs(self._a))
ndarray.__invert__ = lambda self: _wrap(~self._a)


# ---------------------------------------------------------------------------- crossing functions
def _host_to_device(a, dtype=None, copy=False, order="K"):
    if isinstance(a, ndarray):
        return a.astype(dtype, copy=copy) if dtype is not None else (a.copy() if copy else a)
    if isinstance(a, (list, tuple)) and _builtins.any(isinstance(v, ndarray) for v in _flatten(a)):
        if _builtins.any(isinstance(v, _np.ndarray) for v in _flatten(a)):
            raise _mixing(_np.empty(0))
        return _wrap(_np.array(_operand(a), dtype=dtype))   # a list of device arrays: stacked on the device
    if not isinstance(a, (_np.ndarray, _np.generic, list, tuple, _numbers.Number)):
        raise ValueError(f"Unsupported dtype {type(a)} (cupy stand-in)")
    host = _np.array(a, dtype=dtype, copy=True, order=order)
    if host.dtype.kind in "OUSV":
        raise ValueError(f"Unsupported dtype {host.dtype} (cupy stand-in)")
    _count("host_to_device")
    return _wrap(host)


def _flatten(seq):
    for v in seq:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


def asarray(a, dtype=None, order=None):
    return _host_to_device(a, dtype=dtype, copy=False, order=order or "K")


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0):
    out = _host_to_device(obj, dtype=dtype, copy=copy, order=order)
    return out.reshape((1,) * (ndmin - out.ndim) + out.shape) if ndmin > out.ndim else out


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    return _sys.modules[__name__] if _builtins.any(isinstance(a, ndarray) for a in args) else _np


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"cupy.ascontiguousarray: expected a cupy.ndarray, got {type(a)} (cupy stand-in)")
    return _wrap(_np.ascontiguousarray(a._a, dtype=dtype))


def _function(fn):
    def function(*args, **kwargs):
        return _call(fn, args, kwargs)
    function.__name__ = fn.__name__
    return function


# NumPy's functions of the same name, refusing host arrays and returning device arrays: only those
# the package and its tests use (add one here when code needs it, as CuPy has it).
for _name in ("zeros ones empty full zeros_like ones_like empty_like full_like arange linspace eye concatenate "
              "stack where clip abs absolute sqrt exp log log1p expm1 tanh sin cos sign maximum minimum add "
              "subtract multiply divide true_divide negative reciprocal square power matmul dot einsum outer "
              "sum mean var std max amax min amin argmax argmin argsort argpartition sort take take_along_axis "
              "pad broadcast_to reshape transpose moveaxis swapaxes expand_dims squeeze tile repeat isfinite "
              "isnan isinf all any round floor ceil cumsum prod count_nonzero logical_and logical_or "
              "logical_not greater less equal not_equal tensordot flip roll copyto logaddexp allclose "
              "array_equal fmax fmin ndim").split():
    globals()[_name] = _function(getattr(_np, _name))


def result_type(*args):
    return _np.result_type(*(a.dtype if isinstance(a, ndarray) else a for a in args))


from . import cuda, lib, linalg, random  # noqa: E402,F401
