"""Module: the contract every layer follows, and Sequential, the container.

Every layer has two methods that sit next to each other:

    Y, cache = layer.forward(X)      # cache: what backward needs, owned by the CALLER
    dX = layer.backward(dY, cache)   # accumulates (+=) into layer.grads, returns dL/dX

The cache is returned to the caller instead of being stored on the layer. A GAN step
runs the discriminator on a real batch and on a fake batch before either backward;
each call gets its own cache, so the two can never be mixed up (see docs/architecture.md).
Backward never changes ``dY`` in place and never steps parameters: optimisers do that.

Parameters live in ``layer.params`` (name -> array) with gradients of the same shape in
``layer.grads``; non-trained state (BatchNorm running statistics, Dropout's counter) in
``layer.buffers``. Names follow torch.nn ("weight", "bias", "running_mean", ...) and
containers prefix them ("0.weight"), so checkpoints and weights carry across.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import backend

__all__ = ["Module", "Sequential", "ShapeError"]


class ShapeError(ValueError):
    """Bad input to a layer: wrong shape, channels, dtype or backend."""


class Module:
    """Base class: parameters, gradients, buffers, train/eval mode."""

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.training = True

    # ------------------------------------------------------------------ the contract
    def forward(self, X):
        """Return ``(Y, cache)``."""
        raise NotImplementedError

    def backward(self, dY, cache):
        """Given dL/dY and the cache of the matching forward, accumulate parameter
        gradients and return dL/dX."""
        raise NotImplementedError

    def backward_params(self, dY, cache) -> None:
        """Accumulate parameter gradients only, for a layer whose input is data (no dL/dX
        needed). Layers with weights override it to skip the input-gradient product."""
        self.backward(dY, cache)

    def __call__(self, X):
        """Output only, for inference and sampling (no cache kept)."""
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
        """Cast all floating arrays (float32 <-> float64), in place; returns self."""
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
    def _add_param(self, name, host_array):
        """Register a parameter (moved to the selected backend) and its zero gradient."""
        arr = backend.asarray(host_array)
        self.params[name] = arr
        self.grads[name] = backend.array_module(arr).zeros_like(arr)

    def _check_input(self, X, ndim=None, dim=None, size=None, what="input"):
        """Raise ShapeError naming this layer when X does not fit it."""
        shape = tuple(getattr(X, "shape", ()))
        if ndim is not None and len(shape) != ndim:
            raise ShapeError(f"{self!r}: expected a {ndim}-D {what} {_expected(ndim, dim, size)}, got shape {shape}")
        if dim is not None and shape[dim] != size:
            raise ShapeError(f"{self!r}: expected {what} of shape {_expected(ndim, dim, size)}, got shape {shape}")
        if self.params:
            p = next(iter(self.params.values()))
            if X.dtype != p.dtype:
                raise ShapeError(f"{self!r}: expected {what} of dtype {p.dtype}, got {X.dtype} "
                                 f"(cast the input, or the model with .astype())")
            backend.array_module(X, p)  # raises when host and device arrays meet

    def _check_grad(self, dY, shape):
        """Raise ShapeError unless dY has the forward output's shape: broadcasting an
        (N, 1) gradient against an (N, K) output would silently give wrong gradients."""
        if tuple(dY.shape) != tuple(shape):
            raise ShapeError(f"{self!r}.backward: expected dY of shape {tuple(shape)} (the forward output), "
                             f"got {tuple(dY.shape)}")

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
        return X, caches

    def backward(self, dY, caches, input_grad: bool = True):
        """Back through every layer in reverse. With input_grad=False (the input is data,
        e.g. D on a real batch) the first layer with parameters only accumulates its
        parameter gradients and the layers before it are skipped; returns None."""
        if len(caches) != len(self.layers):
            raise ValueError(f"Sequential.backward: got {len(caches)} caches for {len(self.layers)} layers "
                             "(pass the cache returned by this model's forward)")
        first = 0 if input_grad else next((i for i, m in enumerate(self.layers) if m.num_parameters()), 0)
        for i in range(len(self.layers) - 1, first, -1):
            dY = self.layers[i].backward(dY, caches[i])
        if input_grad:
            return self.layers[0].backward(dY, caches[0])
        self.layers[first].backward_params(dY, caches[first])
        return None

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"
