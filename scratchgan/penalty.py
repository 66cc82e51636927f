"""The WGAN-GP gradient penalty (Gulrajani et al. 2017), with a hand-written second-order pass.

On interpolates x_hat = eps * x_real + (1 - eps) * x_fake (eps ~ U[0, 1] per sample) the critic
D is penalised for input gradients whose norm is not ``target``:

    P = weight * mean_i (||g_i||_2 - target)^2,      g_i = d D(x_hat)_i / d x_hat_i .

g comes from a backward pass, so dP/dtheta is the derivative of a backward: a second-order
quantity. ``GradientPenalty(D)`` computes it with the layers' ``backward_input`` and
``double_backward`` (docs/double-backward.md), in four sweeps over D's layers 0..L-1:

    forward          X_0 = x_hat,  X_{i+1}, cache_i = layer_i.forward(X_i)
    first backward   dY_{L-1} = ones,  dY_{i-1} = dX_i = layer_i.backward_input(dY_i, cache_i),  g = dX_0
    double backward  ddX_0 = weight * 2 (||g_i|| - target) / ||g_i|| * g_i / N   (per sample i)
                     ddX_{i+1}, ddX_in_i = layer_i.double_backward(ddX_i, dY_i, cache_i), i = 0..L-1
    ordinary backward, only where some ddX_in_i is not None (LayerNorm):
                     G_i = layer_i.backward(G_{i+1}, cache_i) + ddX_in_i, from the top; dP/dx_hat = G_0

The double-backward sweep accumulates the part of dP/dtheta that comes from each layer's
backward depending on its weights; the ordinary sweep the part that comes from the forward
(a LayerNorm's backward depends on its input, which depends on every weight below it).
The samples are independent (no supported layer mixes them), so one batched backward from
dY = ones gives every per-sample gradient g_i at once.

A conditional critic reads [flatten(x), onehot(y)]. Its penalty is taken with respect to the
image alone (``image_features`` = the image's C*H*W values), on images interpolated under one
set of labels, as conditional WGAN-GP implementations do: g_i is the image part of dX_0, and the
double backward starts from ddX_0 = [dP/dg_i, 0], the label being held fixed.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
from .layers.base import (DoubleBackwardError, Module, Sequential, ShapeError, _name, check_int, check_real,
                          supported_double_backward)

__all__ = ["GradientPenalty", "InputGradient", "interpolates", "check_support"]


def interpolates(x_real, x_fake, rng):
    """(x_hat, eps): x_hat = eps * x_real + (1 - eps) * x_fake with eps ~ U[0, 1] per sample,
    for inputs of any shape (N, ...). eps has shape (N, 1, ..., 1) (it broadcasts against the
    inputs) and lives on the inputs' backend. ``rng``: a NumPy Generator or a seed; eps is
    drawn on the host (N numbers) and moved, so a seed gives the same eps on either backend."""
    xp = backend.array_module(x_real, x_fake)
    for name, a in (("x_real", x_real), ("x_fake", x_fake)):
        if not (isinstance(a, np.ndarray) or backend.is_cupy_array(a)) or a.ndim < 1 or a.dtype.kind != "f":
            raise ValueError(f"interpolates: {name} must be a floating array of shape (N, ...), got "
                             f"{type(a).__name__} {getattr(a, 'shape', '')} {getattr(a, 'dtype', '')}")
    if x_real.shape != x_fake.shape or x_real.dtype != x_fake.dtype:
        raise ValueError(f"interpolates: x_real and x_fake must have one shape and dtype, got "
                         f"{tuple(x_real.shape)} {x_real.dtype} and {tuple(x_fake.shape)} {x_fake.dtype}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    N = x_real.shape[0]
    eps = xp.asarray(rng.random(N).astype(x_real.dtype).reshape((N,) + (1,) * (x_real.ndim - 1)))
    x_hat = x_real - x_fake
    x_hat *= eps
    x_hat += x_fake                              # x_fake + eps (x_real - x_fake): one temporary
    return x_hat, eps


def check_support(D) -> list:
    """D's layers in order (nested Sequentials flattened), or DoubleBackwardError naming the
    first layer without a double backward, why, and which layers have one."""
    layers = []

    def walk(m, where):
        if isinstance(m, Sequential):
            for i, child in enumerate(m.layers):
                walk(child, f"{where}[{i}]")
        elif type(m).double_backward is Module.double_backward:
            raise DoubleBackwardError(f"GradientPenalty: the critic's layer {where} {_name(m)} has no double "
                                      f"backward: {m.double_backward_note}. {supported_double_backward()}")
        else:
            layers.append(m)

    if not isinstance(D, Module):
        raise TypeError(f"GradientPenalty: expected a critic Module (a Sequential of layers), got {type(D).__name__}")
    walk(D, "D")
    if not layers:
        raise DoubleBackwardError("GradientPenalty: the critic has no layers")
    return layers


class GradientPenalty(Module):
    """``GradientPenalty(D, weight=10.0, target=1.0)``: P = weight * mean_i (||grad_x D(x_hat)_i|| - target)^2.

    ``P, cache = gp.forward(x_hat)`` (P of shape (1,)); ``dx_hat = gp.backward(dP, cache)``
    accumulates dP/dtheta * dP into D's grads (D is this module's only child, so its
    parameters are this module's: ``sg.gradcheck(GradientPenalty(D), shape=...)`` checks
    them all) and returns dP/dx_hat. ``last_norms`` holds the per-sample gradient norms of
    the latest forward, for logging. A critic whose output has several values per sample
    is treated as their sum. ``image_features``: penalise only the gradient with respect to the
    first that many input values of each sample (a conditional critic's image, before its one-hot
    label); None: all of them.
    """

    def __init__(self, D, weight: float = 10.0, target: float = 1.0, image_features: int | None = None):
        super().__init__()
        check_support(D)
        self.D = D
        self.weight = check_real("GradientPenalty", "weight", weight, "[0, inf)")
        self.target = check_real("GradientPenalty", "target", target, "[0, inf)")
        self.image_features = (None if image_features is None
                               else check_int("GradientPenalty", "image_features", image_features, 1))
        self.last_norms = None

    def children(self):
        return [self.D]

    def forward(self, x_hat):
        layers = check_support(self.D)          # again: layers may have been added since
        caches, X = [], x_hat
        for layer in layers:
            X, cache = layer.forward(X)
            caches.append(cache)
        xp = backend.array_module(X)
        dY, dYs = xp.ones_like(X), [None] * len(layers)
        for i in range(len(layers) - 1, -1, -1):     # first backward: dX only, every dY kept
            dYs[i] = dY
            dY = layers[i].backward_input(dY, caches[i])
        g = dY                                         # (N, ...): per-sample input gradients
        N = g.shape[0]
        g2 = g.reshape(N, math.prod(g.shape[1:]))
        if self.image_features is not None:            # the image part only: the label is held fixed
            if self.image_features > g2.shape[1]:
                raise ShapeError(f"{self!r}: image_features {self.image_features} is more than the critic's "
                                 f"{g2.shape[1]} input values per sample")
            g = g2 = g2[:, :self.image_features]
        norms = xp.sqrt((g2 * g2).sum(axis=1))         # (N,)
        gap = norms - self.target
        P = (gap * gap).sum(keepdims=True) * (self.weight / max(N, 1))   # (1,); N = 0 gives 0
        self.last_norms = norms
        return P.reshape(1), self.save_for_backward(layers, caches, dYs, g, norms, x_hat.shape)

    def backward(self, dP, cache):
        layers, caches, dYs, g, norms, x_shape = self.saved(cache)
        self._check_grad(dP, (1,), g.dtype, g)
        xp, N = backend.array_module(g), g.shape[0]
        # ddX_0 = dP/dg = dP * weight * 2 (||g_i|| - target) / ||g_i|| * g_i / N, 0 where g_i = 0
        nonzero = norms > 0
        coef = norms - self.target
        coef *= nonzero
        coef /= norms + ~nonzero                       # 1 in place of a zero norm
        coef *= dP * (2.0 * self.weight / max(N, 1))
        ddX = g * coef.reshape((N,) + (1,) * (g.ndim - 1))
        if self.image_features is not None:            # dP/d(label part of dX_0) = 0
            ddX = xp.concatenate([ddX, xp.zeros((N, math.prod(x_shape[1:]) - self.image_features), g.dtype)],
                                 axis=1).reshape(x_shape)
        extra = [None] * len(layers)
        for i, layer in enumerate(layers):             # double backward: first layer to last
            ddX, extra[i] = layer.double_backward(ddX, dYs[i], caches[i])
        # ddX is now dP/d(ones): the constant seed of the first backward; nothing to do with it.
        G = None
        for i in range(len(layers) - 1, -1, -1):        # ordinary backward, from the top ddX_in down
            if G is not None:
                G = layers[i].backward(G, caches[i])
            if extra[i] is not None:
                if G is None:
                    G = extra[i]
                else:
                    G += extra[i]
        return G if G is not None else xp.zeros(x_shape, g.dtype)

    def extra_repr(self):
        return (f"D={_name(self.D)}, weight={self.weight}, target={self.target}"
                + (f", image_features={self.image_features}" if self.image_features is not None else ""))


class InputGradient(Module):
    """``InputGradient(layer, dY)``: the map X -> dX = layer.backward_input(dY, cache) as a module,
    dY its parameter "dY". Its backward is the layer's ``double_backward``, so
    ``sg.gradcheck(InputGradient(layer, dY), shape=...)`` checks every output of it (ddY as
    the gradient of "dY", the layer's weight gradients, ddX_in as the input's) against
    central differences of the scalar <R, dX(X, dY, theta)>."""

    def __init__(self, layer, dY):
        super().__init__()
        self.layer = layer
        self._add_param("dY", backend.to_numpy(dY))

    def children(self):
        return [self.layer]

    def forward(self, X):
        Y, cache = self.layer.forward(X)
        return self.layer.backward_input(self.params["dY"], cache), self.save_for_backward(cache, X)

    def backward(self, ddX, cache):
        inner, X = self.saved(cache)
        ddY, ddX_in = self.layer.double_backward(ddX, self.params["dY"], inner)
        self.grads["dY"] += ddY
        return ddX_in if ddX_in is not None else backend.array_module(X).zeros_like(X)

    def extra_repr(self):
        return repr(self.layer)
