"""Module: the contract every layer follows, and Sequential, the container.

Every layer has two methods that sit next to each other:

    Y, cache = layer.forward(X)      # cache: what backward needs, owned by the CALLER
    dX = layer.backward(dY, cache)   # accumulates (+=) into layer.grads, returns dL/dX

The cache is returned to the caller instead of being stored on the layer. A GAN step
runs the discriminator on a real batch and on a fake batch before either backward;
each call gets its own cache, so the two can never be mixed up (see docs/architecture.md).
Backward never changes ``dY`` in place and never steps parameters: optimisers do that.

A cache is a ``Cache`` tagged with the layer that made it, as torch's
``ctx.save_for_backward`` / ``ctx.saved_tensors``: forward ends with
``return Y, self.save_for_backward(...)`` and backward starts with ``... = self.saved(cache)``,
which raises ``CacheError`` unless the cache came from this very layer's forward. Without
the tag a cache from another layer (whose arrays may well have fitting shapes) or a
missing forward would silently give wrong gradients. Backward also checks that ``dY`` has
the shape, dtype and backend of the forward's output (``_check_grad``), and forward that
``X`` is a float32/float64 array of the expected shape (``_check_input``): misuse raises
``ShapeError`` (``BackendError`` for mixed NumPy/CuPy arrays) naming the layer.

Two partial backwards exist for callers that need only half: ``backward_params`` (parameter
gradients, no dX: a first layer whose input is data) and ``backward_input`` (dX only: the
WGAN-GP penalty's first backward). ``double_backward(ddX, dY, cache)`` differentiates the
backward itself (docs/double-backward.md); layers without one raise ``DoubleBackwardError``.

Parameters live in ``layer.params`` (name -> array) with gradients of the same shape in
``layer.grads``; non-trained state (BatchNorm running statistics, Dropout's counter) in
``layer.buffers``. Names follow torch.nn ("weight", "bias", "running_mean", ...) and
containers prefix them ("0.weight"), so checkpoints and weights carry across.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from .. import backend

__all__ = ["Module", "Sequential", "Cache", "ShapeError", "CacheError", "DoubleBackwardError"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # the dtypes layers compute in


class ShapeError(ValueError):
    """Bad input to a layer: not an array, or the wrong shape, channels or dtype."""


class CacheError(ValueError):
    """backward was given something other than the cache of this layer's own forward."""


class DoubleBackwardError(NotImplementedError):
    """A layer without a double backward was asked for one (e.g. by the WGAN-GP penalty)."""


def double_backward_layers() -> list:
    """Names of the library's layers that implement ``double_backward`` (found, not listed
    by hand, so a layer that gains one appears here)."""
    found, stack = set(), [Module]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if (sub.double_backward is not Module.double_backward and sub.__module__.startswith("scratchgan.")
                    and not sub.__name__.startswith("_")):
                found.add(sub.__name__)
    return sorted(found)


def supported_double_backward() -> str:
    """The sentence that ends every refusal: what is supported."""
    return f"Layers with a double backward: {', '.join(double_backward_layers())} (and Sequential containers of them)"


class Cache:
    """What one forward call saved for its backward, tagged with the layer that made it."""

    __slots__ = ("owner", "values")

    def __init__(self, owner, values):
        self.owner, self.values = owner, values

    def __repr__(self):
        return f"<Cache of {_name(self.owner)}>"


def _name(module) -> str:
    """A module's repr, on one line (a Sequential's repr lists its layers)."""
    return f"Sequential({len(module.layers)} layers)" if isinstance(module, Sequential) else repr(module)


class Module:
    """Base class: parameters, gradients, buffers, train/eval mode."""

    # A data-parallel run's Communicator (set on every layer by distributed.data_parallel), None in
    # one process. The layers that look across the batch reduce their batch sums over the ranks.
    comm = None

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.training = True

    # ------------------------------------------------------------------ the contract
    def forward(self, X):
        """Return ``(Y, cache)``, the cache made by ``self.save_for_backward(...)``."""
        raise NotImplementedError

    def backward(self, dY, cache):
        """Given dL/dY and the cache of the matching forward (read with ``self.saved``),
        accumulate parameter gradients and return dL/dX."""
        raise NotImplementedError

    def backward_params(self, dY, cache) -> None:
        """Accumulate parameter gradients only, for a layer whose input is data (no dL/dX
        needed). Layers with weights override it to skip the input-gradient product."""
        self.backward(dY, cache)

    def backward_input(self, dY, cache):
        """dL/dX only, parameter gradients untouched: the mirror of ``backward_params``, for
        a gradient with respect to the input alone (the WGAN-GP penalty's first backward).
        A layer without parameters has nothing else to do, so this is its ``backward``;
        layers with parameters override it (``backward`` = parameter gradients + this)."""
        if self.num_parameters():
            raise NotImplementedError(f"{_name(self)}.backward_input: a layer with parameters must override "
                                      "backward_input (its backward would also accumulate parameter gradients)")
        return self.backward(dY, cache)

    # Why this layer has no double_backward: the base class's error quotes it.
    double_backward_note = "no double backward is written for this layer"

    def double_backward(self, ddX, dY, cache):
        """The backward of the backward (docs/double-backward.md). The first backward made
        dX = B(dY; cache, theta); given ddX = dP/d(dX) for a scalar P (an array of the input's
        shape), return ``(ddY, ddX_in)``: ddY = dP/d(dY) (the output's shape), and ddX_in =
        dP/dX through B's dependence on the forward input X (via the cache), or None where B
        does not depend on X. The part of dP/dtheta that comes from B's dependence on theta
        is accumulated (+=) into ``self.grads``. Layers that support it override this."""
        raise DoubleBackwardError(f"{_name(self)}.double_backward: not supported: {self.double_backward_note}. "
                                  f"{supported_double_backward()}")

    def save_for_backward(self, *values) -> Cache:
        """The cache forward returns: ``values``, tagged with this layer as their owner."""
        return Cache(self, values)

    def saved(self, cache):
        """The values this layer's forward saved in ``cache`` (one value, or a tuple of
        several); CacheError unless ``cache`` is a Cache made by this very layer."""
        if isinstance(cache, Cache) and cache.owner is self:
            values = cache.values
            return values[0] if len(values) == 1 else values
        if cache is None:
            got = "no forward: got None"
        elif not isinstance(cache, Cache):
            got = f"got a {type(cache).__name__}"
        elif type(cache.owner) is type(self):
            got = f"got a cache made by another {_name(cache.owner)} instance"
        else:
            got = f"got a cache made by {_name(cache.owner)}"
        raise CacheError(f"{_name(self)}.backward: {got}; pass the cache this layer's forward returned")

    def __call__(self, X):
        """Output only, for inference and sampling (no cache kept)."""
        return self.forward(X)[0]

    def infer(self, X, overwrite: bool = False):
        """The output for X when nothing will be back-propagated (eval-mode sampling): forward's
        output, without the work a backward would need. ``overwrite``: X is the caller's to lose,
        so the layer may write its output over it (Sequential.infer passes its own intermediate
        arrays). The default is forward's; a layer overrides it where skipping that work pays
        (ConvTranspose2D, the activations, BatchNorm). Sampling paths use it through
        ``layers.fused_for_eval`` (layers/inference.py)."""
        return self.forward(X)[0]

    # ------------------------------------------------------------------ structure
    def children(self) -> list:
        return []

    def named_modules(self, prefix=""):
        yield prefix, self
        for i, child in enumerate(self.children()):
            yield from child.named_modules(f"{prefix}{i}.")

    def named_parameters(self):
        """(name, param, grad) for every parameter, in a fixed order."""
        for prefix, m in self.named_modules():
            for k, p in m.params.items():
                yield prefix + k, p, m.grads[k]

    def named_buffers(self):
        for prefix, m in self.named_modules():
            for k, b in m.buffers.items():
                yield prefix + k, b

    def flatten_parameters(self):
        """Put all parameters in one contiguous buffer and all gradients in another; each
        ``params[k]`` / ``grads[k]`` becomes a view into them. Values are kept.

        Optimisers call this so that a step is a few vector operations over everything
        instead of a dozen small ones per parameter. Returns (flat_params, flat_grads).
        """
        entries = [(m, k) for _, m in self.named_modules() for k in m.params]
        if not entries:
            return None, None
        first = entries[0][0].params[entries[0][1]]
        xp, dtype = backend.array_module(first), first.dtype
        if any(m.params[k].dtype != dtype for m, k in entries):
            raise TypeError(f"{type(self).__name__}.flatten_parameters: parameters of mixed dtypes")
        total = sum(m.params[k].size for m, k in entries)
        flat_p, flat_g = xp.empty(total, dtype), xp.empty(total, dtype)
        offset = 0
        for m, k in entries:
            p, g = m.params[k], m.grads[k]
            n = p.size
            flat_p[offset:offset + n] = p.reshape(-1)
            flat_g[offset:offset + n] = g.reshape(-1)
            m.params[k] = flat_p[offset:offset + n].reshape(p.shape)
            m.grads[k] = flat_g[offset:offset + n].reshape(p.shape)
            offset += n
        return flat_p, flat_g

    def num_parameters(self) -> int:
        return int(sum(p.size for _, p, _ in self.named_parameters()))

    # ------------------------------------------------------------------ modes, grads
    def train(self, mode: bool = True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self) -> None:
        for _, _, g in self.named_parameters():
            g.fill(0)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Parameters and buffers by name (the arrays themselves, not copies)."""
        state = {name: p for name, p, _ in self.named_parameters()}
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Copy values in place; names and shapes must match exactly."""
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}, unexpected {unexpected}")
        for name, target in own.items():
            value = state[name]
            if tuple(value.shape) != tuple(target.shape):
                raise ShapeError(f"{name}: expected shape {tuple(target.shape)}, got {tuple(value.shape)}")
            if isinstance(target, np.ndarray):
                target[...] = backend.to_numpy(value)
            else:
                target[...] = backend.array_module(target).asarray(value)

    def _map_arrays(self, fn) -> None:
        """Replace every floating parameter, gradient and buffer by fn(array)."""
        for _, m in self.named_modules():
            for store in (m.params, m.grads, m.buffers):
                for k, a in store.items():
                    if np.dtype(a.dtype).kind == "f":
                        store[k] = fn(a)

    def astype(self, dtype):
        """Cast all floating arrays (float32 <-> float64), in place; returns self.
        Any other dtype is a TypeError: layers compute in float32 or float64 only."""
        dtype = _float_dtype(dtype, f"{_name(self)}.astype")
        self._map_arrays(lambda a: a.astype(dtype))
        return self

    def to(self, backend_name: str):
        """Move all floating arrays to "numpy" (host) or "cupy" (GPU); returns self.

        Integer counters (e.g. BatchNorm's num_batches_tracked) stay on the host so that
        reading them never forces a device synchronisation.
        """
        if backend_name == "numpy":
            self._map_arrays(backend.to_numpy)
        elif backend_name == "cupy":
            cp = backend._import_cupy()
            self._map_arrays(cp.asarray)
        else:
            raise backend.BackendError(f"unknown backend {backend_name!r}")
        return self

    def copy(self):
        """A deep copy (weights, gradients, buffers, mode)."""
        return copy.deepcopy(self)

    @property
    def dtype(self):
        for _, p, _ in self.named_parameters():
            return p.dtype
        return None

    # ------------------------------------------------------------------ helpers for layers
    def _dtype_arg(self, dtype):
        """A constructor's ``dtype`` argument: None (the backend's default), float32 or float64."""
        return backend.default_dtype() if dtype is None else _float_dtype(dtype, type(self).__name__)

    def _add_param(self, name, host_array):
        """Register a parameter (moved to the selected backend) and its zero gradient."""
        arr = backend.asarray(host_array)
        self.params[name] = arr
        self.grads[name] = backend.array_module(arr).zeros_like(arr)

    def _check_input(self, X, ndim=None, dim=None, size=None, min_ndim=1, like=None, what="input"):
        """Raise ShapeError naming this layer unless X is a float32/float64 array with
        ``ndim`` dimensions (at least ``min_ndim``: a batch axis) and ``size`` along ``dim``.
        With parameters (or ``like``, a buffer) X must have their dtype and backend."""
        if not (isinstance(X, np.ndarray) or backend.is_cupy_array(X)):
            shape = _expected(ndim, dim, size) or _expected(min_ndim, None, None)[:-1] + ", ...)"
            raise ShapeError(f"{self!r}: expected {what} as a NumPy or CuPy array {shape}, got a {type(X).__name__}")
        shape = X.shape
        if (len(shape) != ndim) if ndim is not None else (len(shape) < min_ndim):
            want = f"a {ndim}-D {what} {_expected(ndim, dim, size)}" if ndim is not None else \
                f"an {what} of at least {min_ndim}-D {_expected(min_ndim, None, None)[:-1]}, ...)"
            raise ShapeError(f"{self!r}: expected {want}, got shape {tuple(shape)}")
        if dim is not None and shape[dim] != size:
            raise ShapeError(f"{self!r}: expected {what} of shape {_expected(ndim, dim, size)}, got shape {tuple(shape)}")
        if like is None and self.params:
            like = next(iter(self.params.values()))
        if like is not None:
            if X.dtype != like.dtype:
                raise ShapeError(f"{self!r}: expected {what} of dtype {like.dtype}, got {X.dtype} "
                                 f"(cast the input, or the model with .astype())")
            try:
                backend.array_module(X, like)
            except backend.BackendError:
                raise self._backend_error(X, like, what) from None
        elif X.dtype not in FLOAT_DTYPES:
            raise ShapeError(f"{self!r}: expected {what} of dtype float32 or float64, got {X.dtype}")

    def _check_weight(self, W):
        """An explicit weight given to forward (SpectralNorm's W / sigma) must be the parameter's twin."""
        own = self.params["weight"]
        if getattr(W, "shape", None) != own.shape or getattr(W, "dtype", None) != own.dtype:
            raise ShapeError(f"{self!r}: expected a weight of shape {tuple(own.shape)} and dtype {own.dtype}, got "
                             f"{type(W).__name__} {tuple(getattr(W, 'shape', ()))} {getattr(W, 'dtype', '')}")
        backend.array_module(W, own)
        return W

    def _check_grad(self, dY, shape: tuple, dtype, like=None, what="dY", method="backward", of="the forward output"):
        """Raise ShapeError unless dY has the forward output's shape and dtype (and, given
        ``like``, an array the forward saved, its backend). Broadcasting an (N, 1) gradient
        against an (N, K) output, or a float64 dY into float32 gradients, would silently
        give wrong results. Attribute comparisons only: no pass over the data.
        double_backward checks its ddX the same way (what="ddX", of="the forward input")."""
        if not (isinstance(dY, np.ndarray) or backend.is_cupy_array(dY)):
            raise ShapeError(f"{self!r}.{method}: expected {what} as an array of shape {tuple(shape)}, "
                             f"got a {type(dY).__name__}")
        if dY.shape != shape:
            raise ShapeError(f"{self!r}.{method}: expected {what} of shape {tuple(shape)} ({of}), "
                             f"got {tuple(dY.shape)}")
        if dY.dtype != dtype:
            raise ShapeError(f"{self!r}.{method}: expected {what} of dtype {np.dtype(dtype)} ({of}), "
                             f"got {dY.dtype}")
        if like is not None:
            try:
                backend.array_module(dY, like)  # raises when NumPy and CuPy arrays meet
            except backend.BackendError:
                raise self._backend_error(dY, like, what) from None

    def _check_double(self, ddX, dY, x_shape, y_shape, dtype, like=None):
        """double_backward's checks: ddX has the forward input's shape, dY the output's."""
        self._check_grad(ddX, tuple(x_shape), dtype, like, "ddX", "double_backward", "the forward input")
        self._check_grad(dY, tuple(y_shape), dtype, like, "dY", "double_backward", "the forward output")

    def _backend_error(self, a, like, what):
        """The BackendError for ``a`` on one backend and ``like`` (this layer's array) on the other."""
        on, got = [("CuPy" if backend.is_cupy_array(v) else "NumPy") for v in (like, a)]
        return backend.BackendError(f"{_name(self)}: expected {what} as a {on} array (this layer runs on {on}), "
                                    f"got a {got} array; move it with backend.asarray or module.to(...)")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    # ------------------------------------------------------------------ summary
    def summary(self, input_shape, print_fn=print) -> str:
        """A Keras-style table: layer, output shape, parameter count.

        ``input_shape`` excludes the batch axis, e.g. (100,) or (1, 28, 28).
        """
        xp = backend.array_module(*(p for _, p, _ in self.named_parameters()))
        X = xp.zeros((2,) + tuple(input_shape), dtype=self.dtype or backend.default_dtype())
        modes = [(m, m.training) for _, m in self.named_modules()]
        self.eval()  # a summary must not move BatchNorm statistics or Dropout counters
        try:
            rows = []
            layers = self.layers if isinstance(self, Sequential) else [self]
            for i, layer in enumerate(layers):
                X = layer(X)
                n = sum(p.size for _, p, _ in layer.named_parameters())
                name = repr(layer) if not isinstance(layer, Sequential) else f"Sequential({len(layer)} layers)"
                rows.append((f"{i}: {name}", str((None,) + tuple(X.shape[1:])), f"{n:,}"))
        finally:
            for m, mode in modes:  # each module gets its own mode back (a frozen D stays in eval)
                m.training = mode
        w0 = max(len("Layer"), *(len(r[0]) for r in rows))
        w1 = max(len("Output shape"), *(len(r[1]) for r in rows))
        line = "-" * (w0 + w1 + 16)
        out = [line, f"{'Layer':<{w0}}  {'Output shape':<{w1}}  {'Params':>12}", line]
        out += [f"{a:<{w0}}  {b:<{w1}}  {c:>12}" for a, b, c in rows]
        out += [line, f"Total params: {self.num_parameters():,}", line]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text


def _float_dtype(dtype, who) -> np.dtype:
    """``dtype`` as np.float32 or np.float64; TypeError naming ``who`` for anything else."""
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except TypeError:
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:  # (None == np.dtype("float64") is True)
        raise TypeError(f"{who}: dtype must be float32 or float64, got {repr(dtype) if dt is None else dt}")
    return dt


def is_int(value, minimum) -> bool:
    """value is an integer (a Python or NumPy one, not a bool) >= minimum."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= minimum


def check_int(who, name, value, minimum):
    """A constructor argument that must be an integer >= minimum: returned as an int, or
    ValueError naming the class, the argument, the allowed range and the value."""
    if not is_int(value, minimum):
        raise ValueError(f"{who}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(who, name, value, interval="(-inf, inf)"):
    """A numeric argument that must be finite and lie in ``interval``, written as in maths:
    "[0, 1)", "(0, inf)". Returned as a float, or ValueError naming who, name, range, value."""
    lo, hi = (float(x) for x in interval[1:-1].split(","))
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = (math.isfinite(v) and (lo <= v if interval[0] == "[" else lo < v)
              and (v <= hi if interval[-1] == "]" else v < hi))
    if not ok:
        where = "" if interval == "(-inf, inf)" else f" in {interval}"
        raise ValueError(f"{who}: {name} must be a finite number{where}, got {value!r}")
    return float(value)


def _expected(ndim, dim, size):
    if ndim is None:
        return ""
    dims = ["N"] + ["*"] * (ndim - 1)
    if dim is not None:
        dims[dim] = str(size)
    return "(" + ", ".join(dims) + ")"


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse with their own caches."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def children(self):
        return self.layers

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def append(self, layer) -> None:
        self.layers.append(layer)

    def forward(self, X):
        caches = []
        for layer in self.layers:
            X, cache = layer.forward(X)
            caches.append(cache)
        return X, self.save_for_backward(caches)

    def _caches(self, cache, method):
        """The layers' caches from this Sequential's cache; CacheError if the layers changed."""
        caches = self.saved(cache)
        if len(caches) != len(self.layers):
            raise CacheError(f"{_name(self)}.{method}: got a cache of {len(caches)} layers for {len(self.layers)} "
                             "layers (layers were added or removed after the forward)")
        return caches

    def backward(self, dY, cache, input_grad: bool = True):
        """Back through every layer in reverse. With input_grad=False (the input is data,
        e.g. D on a real batch) the first layer with parameters only accumulates its
        parameter gradients and the layers before it are skipped; returns None."""
        caches = self._caches(cache, "backward")
        if not self.layers:
            return dY if input_grad else None
        first = 0 if input_grad else next((i for i, m in enumerate(self.layers) if m.num_parameters()), 0)
        for i in range(len(self.layers) - 1, first, -1):
            dY = self.layers[i].backward(dY, caches[i])
        if input_grad:
            return self.layers[0].backward(dY, caches[0])
        self.layers[first].backward_params(dY, caches[first])
        return None

    def infer(self, X, overwrite: bool = False):
        """Every layer's infer in order, each after the first free to write over its input
        (an array this Sequential made), the first only if ``overwrite``."""
        for i, layer in enumerate(self.layers):
            X = layer.infer(X, overwrite=overwrite or i > 0)
        return X

    def backward_input(self, dY, cache):
        """dL/dX through every layer in reverse, no parameter gradient touched."""
        caches = self._caches(cache, "backward_input")
        for layer, c in zip(reversed(self.layers), reversed(caches)):
            dY = layer.backward_input(dY, c)
        return dY

    double_backward_note = ("a container: the second sweep needs every layer's dY of the first backward, so "
                            "scratchgan.penalty.GradientPenalty drives its layers one by one")

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"
