"""Eval-mode sampling without the training machinery: ``fused_for_eval(G)``.

In eval mode a BatchNorm layer is a fixed affine map per channel, Y = X * scale + shift
(scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale). After a layer
that is linear in its weight and bias, Z = conv(X, W) + b, that map can be folded into it:

    Y = conv(X, W) * scale + b * scale + shift = conv(X, W * scale) + (b * scale + shift)

with scale applied along the weight's output-channel axis (Dense (out, in): axis 0; Conv2D
(out, in, kh, kw): axis 0; ConvTranspose2D (in, out, kh, kw): axis 1). The folded layer does
the same product and saves the batch norm's two passes over the maps. Then ``infer`` runs the
layers without caches, activations over their input (Module.infer):

    sampler = fused_for_eval(gan.G)       # a new Sequential; gan.G is not changed
    images = sampler.infer(z)             # = gan.G(z) in eval mode, to float32 rounding

``infer_in_parts(sampler, z)`` runs it over runs of the batch's rows at once, one thread each
(GAN.generate does, with one part per BLAS thread).

The fused model shares the layers it does not fold (activations, reshapes, layers without a
batch norm after them) with the original and copies the folded weights, so it is a snapshot:
make it again after the weights change. GAN.generate does, on every call (folding costs one
pass over the folded weights). Not for training: its layers hold the folded weights, with no
gradients back to the originals.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import backend
from .base import Sequential
from .batchnorm import _BatchNorm
from .conv import Conv2D, ConvTranspose2D
from .dense import Dense

# the weight's output-channel axis, per foldable layer type
_OUT_AXIS = {Dense: 0, Conv2D: 0, ConvTranspose2D: 1}


def fold_batchnorm(layer, bn):
    """A copy of ``layer`` (Dense, Conv2D or ConvTranspose2D) computing bn(layer(X)) in eval mode."""
    scale, shift = bn.scale_shift()
    W = layer.params["weight"]
    axis = _OUT_AXIS[type(layer)]
    shape = [1] * W.ndim
    shape[axis] = -1
    folded = _copy_with_bias(layer)
    folded.params["weight"] = W * scale.reshape(shape)
    bias = shift if not layer.use_bias else layer.params["bias"] * scale + shift
    xp = backend.array_module(bias)
    folded.params["bias"] = xp.ascontiguousarray(bias)
    folded.grads = {k: xp.zeros_like(p) for k, p in folded.params.items()}   # (a Module's contract; never used)
    return folded


def _copy_with_bias(layer):
    """A shallow copy of ``layer`` with its own parameter dicts and a bias (set by the caller):
    the same type, geometry and algorithm choice, in eval mode."""
    new = copy.copy(layer)
    new.params, new.buffers = dict(layer.params), dict(layer.buffers)
    new.use_bias = True
    new.training = False
    return new


def fused_for_eval(model: Sequential) -> Sequential:
    """model as an eval-mode sampler: each BatchNorm right after a Dense, Conv2D or ConvTranspose2D
    (exact type: a SpectralNorm wrapper is left alone) folded into it (fold_batchnorm), the other
    layers shared. ``model`` must be in eval mode (``model.eval()``: the shared layers keep their
    mode, and a Dropout in train mode would drop); the result is too. Run it with ``.infer(X)``."""
    training = [name or type(m).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(f"fused_for_eval: the model must be in eval mode (call model.eval() first); in train "
                         f"mode: {', '.join(training[:3])}")
    layers, i = [], 0
    while i < len(model.layers):
        layer = model.layers[i]
        nxt = model.layers[i + 1] if i + 1 < len(model.layers) else None
        if type(layer) in _OUT_AXIS and isinstance(nxt, _BatchNorm):
            layers.append(fold_batchnorm(layer, nxt))
            i += 2
        else:
            layers.append(layer)
            i += 1
    fused = Sequential(*layers)
    fused.training = False
    return fused


PART_MIN_ROWS = 32   # infer_in_parts makes no part smaller: products of fewer rows run well below BLAS's rate


def infer_in_parts(net, X, parts=None):
    """``net.infer(X)`` over ``parts`` runs of X's rows at once, each in a thread of its own with
    1/parts of the BLAS threads (default: a part per BLAS thread, none under PART_MIN_ROWS rows).

    At two threads BLAS splits only the products: the im2col copies, col2im's adds and the
    activations stay on one core, and Python threads cannot help while BLAS's idle threads spin
    on the other (docs/performance.md, "Threads"). Parts with one BLAS thread each run all of it
    on their own core: a 3x64x64 G at batch 256 on 2 cores, 135 -> 94 ms. Each image is computed
    as in a batch of its part's size, equal to ``net.infer(X)`` to float32 rounding. One call
    ``net.infer(X)`` for a CuPy array, one part or one BLAS thread."""
    threads = (backend.threads() or 1) if isinstance(X, np.ndarray) else 1   # (CuPy: the GPU's own parallelism)
    parts = min(threads if parts is None else parts, len(X) // PART_MIN_ROWS)
    if parts <= 1:
        return net.infer(X)
    from threadpoolctl import threadpool_limits
    bounds = [len(X) * i // parts for i in range(parts + 1)]
    with threadpool_limits(limits=max(1, threads // parts), user_api="blas"):
        outputs, errors = backend.in_threads(lambda i: net.infer(X[bounds[i]:bounds[i + 1]]), parts)
    for exc in errors:
        if exc is not None:
            raise exc
    return np.concatenate(outputs)
