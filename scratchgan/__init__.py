"""scratchgan: GANs from scratch, with every forward and backward pass written by hand.

    import scratchgan as sg
    D = sg.Sequential(sg.Dense(784, 256), sg.LeakyReLU(0.2), sg.Dense(256, 1))
    logits, cache = D.forward(X)          # X: (N, 784) float32
    dX = D.backward(dlogits, cache)       # fills D's .grads
    sg.gradcheck(D, shape=(4, 784))       # float64 central differences, per tensor
    sg.train("dcgan", out="runs/dcgan", steps=2000)   # a tuned recipe, as `scratchgan train` trains it

The backprop library is at the top (backend, init, layers, losses, optim, penalty, gradcheck,
models); around it: data/ (data sets), training/ (Algorithm 1, the loop, callbacks, run folders,
recipes), evaluation/ (judges, metrics, benchmarks), generation/ (latent walks, inpainting),
files/ (safe reading of untrusted files, atomic writes, image grids) and cli/ (the commands).

NumPy by default; ``sg.backend.use("cupy")`` for a CUDA GPU.
"""
from . import backend, init, layers, losses, optim, penalty
from .gradcheck import gradcheck, GradcheckResult
from .penalty import GradientPenalty
from .init import manual_seed
from .layers import *  # noqa: F401,F403  (the layer classes are the library's vocabulary)
from .optim import Adam, RMSprop, SGD

__version__ = "0.1.0"

# Modules that moved into the subpackages (training/, evaluation/, generation/, files/), still
# reachable under their old names: ``from scratchgan import metrics`` gives scratchgan.evaluation.metrics.
_MOVED = {"checkpoint": "training.checkpoint", "distributed": "training.distributed", "ema": "training.ema",
          "report": "training.report", "runfolder": "training.runfolder",
          "metrics": "evaluation.metrics", "judge": "evaluation.judge", "dataset_judge": "evaluation.dataset_judge",
          "toy2d": "evaluation.toy2d", "bench": "evaluation.bench",
          "latent": "generation.latent", "inpaint": "generation.inpaint",
          "safeio": "files.safeio", "atomic": "files.atomic", "images": "files.images"}


def __getattr__(name):
    import importlib
    if name in ("train", "recipe"):     # training.recipes: imported on first use (it loads matplotlib)
        return getattr(importlib.import_module(f"{__name__}.training.recipes"), name)
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{_MOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
