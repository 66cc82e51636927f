"""Gradient checking by central differences in float64: a public tool.

For a layer or model f, a fixed random projection R turns the output into a scalar

    L(X, theta) = sum(f(X; theta) * R),  so  dL/dY = R,

and every checked element e of the input and of each parameter compares the analytic
gradient (from backward) with

    (L(e + h) - L(e - h)) / (2 h),    error O(h^2) plus rounding O(eps_mach / h).

In float64 with h = 1e-6 both terms are ~1e-10 relative, so a correct backward gives a
relative error ||g_analytic - g_numeric|| / (||g_analytic|| + ||g_numeric||) far below the
default tolerance 1e-6, and a wrong one gives something near 1. (In float32 the rounding
term is ~1e-1 at h = 1e-6 and still ~1e-4 at the best h: never check in float32.) See docs/gradcheck.md.

    >>> from scratchgan import gradcheck, layers
    >>> result = gradcheck(layers.Dense(3, 2, rng=0), shape=(4, 3))
    >>> result.passed
    True

Randomness and running statistics are restored before every forward pass, so Dropout
draws the same mask and BatchNorm's running averages are left as they were.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from . import backend
from .layers.base import Module

__all__ = ["gradcheck", "GradcheckResult", "GradcheckRow"]


@dataclass
class GradcheckRow:
    name: str
    shape: tuple
    checked: int
    max_abs_error: float
    rel_error: float
    passed: bool
    tol: float = 1e-6

    @property
    def verdict(self) -> str:
        """'pass', 'FAIL', or 'pass (~0)' for a gradient that is zero up to rounding."""
        if not self.passed:
            return "FAIL"
        return "pass" if self.rel_error <= self.tol else "pass (~0)"


class GradcheckResult:
    """Per-tensor rows; ``passed`` when every row passed. ``str()`` is a table."""

    def __init__(self, title, rows, tol):
        self.title, self.rows, self.tol = title, rows, tol

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max((r.rel_error for r in self.rows), default=0.0)

    def __getitem__(self, name) -> GradcheckRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def table(self, header=True) -> str:
        w = max([len("tensor")] + [len(r.name) for r in self.rows])
        lines = []
        if header:
            lines.append(f"{'tensor':<{w}}  {'shape':<18} {'checked':>7}  {'max abs err':>11}  {'rel err':>9}  result")
        for r in self.rows:
            lines.append(f"{r.name:<{w}}  {str(r.shape):<18} {r.checked:>7}  {r.max_abs_error:>11.2e}  "
                         f"{r.rel_error:>9.2e}  {r.verdict}")
        return "\n".join(lines)

    def __str__(self):
        return f"{self.title} (tolerance {self.tol:g})\n{self.table()}"

    __repr__ = __str__


def _rel_error(a, n):
    num = float(np.linalg.norm(a - n))
    den = float(np.linalg.norm(a) + np.linalg.norm(n))
    return 0.0 if den == 0 else num / den


def _pick(size, max_elements, rng):
    if max_elements is None or size <= max_elements:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_elements, replace=False))


def _snapshot(module):
    return {name: copy.deepcopy(b) for name, b in module.named_buffers()}


def _restore(module, snap):
    for prefix, m in module.named_modules():
        for k in m.buffers:
            m.buffers[k][...] = snap[prefix + k]


def gradcheck(target, inputs=None, *, shape=None, loss=None, h=1e-6, tol=1e-6, atol=1e-8, max_elements=200,
              seed=0, check_input=True, title=None, verbose=False) -> GradcheckResult:
    """Check the backward pass of a layer, a model or a loss against central differences.

    target: a ``Module`` (forward/backward), or a loss function ``fn(*inputs) -> (loss, *grads)``.
    inputs: for a Module, the input X; for a loss, a tuple of its array inputs. Omitted for a
        Module, X is drawn from N(0, 1) with the given ``shape``.
    loss: for a Module, an optional loss ``fn(Y) -> (loss, dY)`` to check the model through
        (e.g. a GAN loss on D's logits); by default L = sum(Y * R) with a random R.
    max_elements: elements checked per tensor (a random subset; None checks all).
    tol, atol: a tensor passes when its relative error is <= tol, or when every absolute
        error is <= atol (a gradient that is truly ~0, where the relative error is noise).

    The target is copied and cast to float64; the original is not touched. Returns a
    GradcheckResult (printed as a table when verbose).
    """
    rng = np.random.default_rng(seed)
    if isinstance(target, Module):
        result = _check_module(target, inputs, shape, loss, h, (tol, atol), max_elements, rng, check_input, title)
    elif callable(target):
        result = _check_function(target, inputs, h, (tol, atol), max_elements, rng, title)
    else:
        raise TypeError(f"gradcheck: expected a Module or a loss function, got {type(target).__name__}")
    if verbose:
        print(result)
    return result


def _check_module(module, X, shape, loss, h, tol, max_elements, rng, check_input, title):
    module = module.copy().astype(np.float64)
    xp = next((backend.array_module(p) for _, p, _ in module.named_parameters()), backend.xp())
    if X is None:
        if shape is None:
            raise ValueError("gradcheck: give an input X or its shape")
        X = rng.standard_normal(shape)
    X = xp.asarray(backend.to_numpy(X) if xp is np else X, dtype=np.float64).copy()
    snap = _snapshot(module)

    Y, cache = module.forward(X)
    R = xp.asarray(rng.standard_normal(Y.shape))

    def scalar_and_grad(Y):
        if loss is None:
            return float((Y * R).sum()), R
        value, dY = loss(Y)
        return float(value), dY

    def L():
        _restore(module, snap)
        return scalar_and_grad(module.forward(X)[0])[0]

    _restore(module, snap)
    module.zero_grad()
    Y, cache = module.forward(X)
    dX = module.backward(scalar_and_grad(Y)[1], cache)

    rows = []
    tensors = ([("input", X, dX)] if check_input else []) + \
        [(name, p, g.copy()) for name, p, g in module.named_parameters()]
    for name, arr, analytic in tensors:
        rows.append(_compare(name, arr, analytic, L, h, tol, max_elements, rng))
    _restore(module, snap)
    default_title = f"Sequential({len(module)} layers)" if hasattr(module, "layers") else repr(module)
    return GradcheckResult(title or default_title, rows, tol[0])


def _check_function(fn, inputs, h, tol, max_elements, rng, title):
    if inputs is None:
        raise ValueError("gradcheck: a loss function needs its inputs")
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    # A loss returns gradients for its leading inputs; later ones (targets, labels) are constants.
    arrays = [backend.array_module(a).asarray(a, dtype=np.float64).copy() if np.dtype(a.dtype).kind == "f" else a
              for a in inputs]
    value, *grads = fn(*arrays)
    if not grads or any(np.dtype(a.dtype).kind != "f" for a in arrays[:len(grads)]):
        raise ValueError(f"gradcheck: {getattr(fn, '__name__', fn)} must return gradients for its leading "
                         f"floating inputs, got {len(grads)} for input dtypes {[str(a.dtype) for a in arrays]}")
    floating = arrays[:len(grads)]

    def L():
        return float(fn(*arrays)[0])

    rows = [_compare(f"input {i}", a, g, L, h, tol, max_elements, rng) for i, (a, g) in enumerate(zip(floating, grads))]
    return GradcheckResult(title or getattr(fn, "__name__", "loss"), rows, tol[0])


def _compare(name, arr, analytic, L, h, tol, max_elements, rng):
    """Perturb chosen elements of arr in place, one at a time, and compare."""
    flat = arr.reshape(-1)  # a view: arr is contiguous
    analytic = backend.to_numpy(analytic).reshape(-1)
    idx = _pick(flat.size, max_elements, rng)
    numeric = np.empty(len(idx))
    for k, i in enumerate(idx):  # a checking tool, not a hot path
        old = float(flat[i])
        flat[i] = old + h
        plus = L()
        flat[i] = old - h
        minus = L()
        flat[i] = old
        numeric[k] = (plus - minus) / (2 * h)
    a = analytic[idx]
    err = float(np.max(np.abs(a - numeric))) if len(idx) else 0.0
    rel = _rel_error(a, numeric)
    rtol, atol = tol
    return GradcheckRow(name, tuple(arr.shape), len(idx), err, rel, rel <= rtol or err <= atol, rtol)
