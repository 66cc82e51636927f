"""scratchgan: GANs from scratch, with every forward and backward pass written by hand.

    import scratchgan as sg
    D = sg.Sequential(sg.Dense(784, 256), sg.LeakyReLU(0.2), sg.Dense(256, 1))
    logits, cache = D.forward(X)          # X: (N, 784) float32
    dX = D.backward(dlogits, cache)       # fills D's .grads
    sg.gradcheck(D, shape=(4, 784))       # float64 central differences, per tensor

NumPy by default; ``sg.backend.use("cupy")`` for a CUDA GPU.
"""
from . import backend, init, layers, losses, optim, penalty
from .gradcheck import gradcheck, GradcheckResult
from .penalty import GradientPenalty
from .init import manual_seed
from .layers import *  # noqa: F401,F403  (the layer classes are the library's vocabulary)
from .optim import Adam, RMSprop, SGD

__version__ = "0.1.0"
