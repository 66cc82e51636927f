"""All layers. Each file holds one family, forward and backward side by side."""
from .base import Cache, CacheError, Module, Sequential, ShapeError
from .dense import Dense
from .conv import Conv2D, ConvTranspose2D
from .batchnorm import BatchNorm1d, BatchNorm2d
from .activations import ReLU, LeakyReLU, Sigmoid, Tanh
from .dropout import Dropout
from .shape import Reshape, Flatten, Upsample2D
from .pooling import MaxPool2D, AvgPool2D

__all__ = [
    "Module", "Sequential", "Cache", "ShapeError", "CacheError", "Dense", "Conv2D", "ConvTranspose2D",
    "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout",
    "Reshape", "Flatten", "Upsample2D", "MaxPool2D", "AvgPool2D",
]
