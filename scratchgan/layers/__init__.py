"""All layers. Each file holds one family, forward and backward side by side."""
from .base import Cache, CacheError, DoubleBackwardError, Module, Sequential, ShapeError
from .dense import Dense
from .conv import Conv2D, ConvTranspose2D
from .batchnorm import BatchNorm1d, BatchNorm2d
from .layernorm import LayerNorm
from .activations import ReLU, LeakyReLU, Sigmoid, Tanh
from .dropout import Dropout
from .shape import Reshape, Flatten, Upsample2D
from .pooling import MaxPool2D, AvgPool2D
from .spectral_norm import SpectralNorm, spectral_norm
from .projection import Projection
from .minibatch import MinibatchStd
from .inference import fold_batchnorm, fused_for_eval, infer_in_parts

__all__ = [
    "Module", "Sequential", "Cache", "ShapeError", "CacheError", "DoubleBackwardError", "Dense", "Conv2D",
    "ConvTranspose2D",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout",
    "Reshape", "Flatten", "Upsample2D", "MaxPool2D", "AvgPool2D", "SpectralNorm", "spectral_norm", "Projection", "MinibatchStd",
    "fold_batchnorm", "fused_for_eval", "infer_in_parts",
]
