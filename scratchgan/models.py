"""The three MNIST GANs: ``mlp`` (vanilla), ``cgan`` (conditional) and ``dcgan``.

Each builder returns a :class:`GAN`: the generator G and discriminator D as plain
``Sequential`` models plus the few facts the trainer needs (latent size, noise
distribution, pixel range, classes). G maps noise to (N, 1, 28, 28) images; D maps an
image (with its one-hot label, for cgan) to one logit per item. Everything is ordinary
library code a user can call directly:

    gan = models.dcgan(seed=0)
    gan.G.summary((100,)); gan.D.summary((1, 28, 28))
    images = gan.generate(16, seed=1)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import backend
from .init import make_rng
from .layers import (BatchNorm1d, BatchNorm2d, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten,
                     LeakyReLU, ReLU, Reshape, Sequential, Sigmoid, Tanh, Upsample2D, spectral_norm as _sn)

__all__ = ["GAN", "mlp", "cgan", "dcgan", "build", "MODELS"]


@dataclass
class GAN:
    """A generator/discriminator pair and how to feed them.

    kind: "mlp" | "cgan" | "dcgan";  noise: "normal" | "uniform" (U[-1, 1]);
    output: "sigmoid" (pixels in [0, 1]) | "tanh" (pixels in [-1, 1]);
    num_classes: 0 for an unconditional model, else the size of the one-hot label
    joined to z and to the flattened image (cgan).
    """
    kind: str
    G: Sequential
    D: Sequential
    latent_dim: int
    noise: str = "normal"
    output: str = "tanh"
    num_classes: int = 0
    image_shape: tuple = (1, 28, 28)
    config: dict = field(default_factory=dict)  # the builder's arguments, to rebuild from a checkpoint

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    # -- inputs ---------------------------------------------------------------------
    def sample_noise(self, n, rng):
        """z of shape (n, latent_dim) from a (numpy or cupy) Generator, in the model's dtype."""
        dtype = self.G.dtype
        if self.noise == "uniform":
            return rng.uniform(-1.0, 1.0, size=(n, self.latent_dim)).astype(dtype, copy=False)
        return rng.standard_normal((n, self.latent_dim), dtype=dtype)

    def one_hot(self, labels):
        xp = backend.array_module(labels)
        eye = xp.eye(self.num_classes, dtype=self.G.dtype)
        return eye[labels]

    def g_input(self, z, labels=None):
        """z, or [z, onehot(y)] for the conditional model."""
        if not self.conditional:
            return z
        return backend.array_module(z).concatenate([z, self.one_hot(labels)], axis=1)

    def d_input(self, images, labels=None):
        """Images, or [flatten(images), onehot(y)] for the conditional model."""
        if not self.conditional:
            return images
        xp = backend.array_module(images)
        return xp.concatenate([images.reshape(len(images), -1), self.one_hot(labels)], axis=1)

    def d_input_grad_to_images(self, dD_in, images_shape):
        """Back through d_input: the gradient with respect to the images only."""
        if not self.conditional:
            return dD_in
        n_pix = int(np.prod(images_shape[1:]))
        return dD_in[:, :n_pix].reshape(images_shape)

    # -- sampling -------------------------------------------------------------------
    def generate(self, n=None, seed=0, labels=None, z=None):
        """Images from G in eval mode (running BatchNorm statistics). Returns (N, 1, 28, 28)."""
        xp = backend.array_module(*(p for _, p, _ in self.G.named_parameters()))
        if z is None:
            z = self.sample_noise(n, backend.random_generator(xp, seed, 0))
        if self.conditional and labels is None:
            labels = xp.arange(len(z)) % self.num_classes
        if labels is not None:
            labels = xp.asarray(labels)
        mode = self.G.training
        self.G.eval()
        try:
            return self.G(self.g_input(z, labels))
        finally:
            self.G.train(mode)

    def to(self, backend_name):
        self.G.to(backend_name)
        self.D.to(backend_name)
        return self

    def astype(self, dtype):
        self.G.astype(dtype)
        self.D.astype(dtype)
        return self


def _spectral(layers, on: bool):
    """With ``on``, every Dense and Conv2D of a discriminator wrapped in SpectralNorm (Miyato et al. 2018)."""
    if not on:
        return list(layers)
    return [_sn(m, seed=i) if isinstance(m, (Dense, Conv2D)) else m for i, m in enumerate(layers)]


def _extra(spectral_norm):
    """Builder arguments kept in a checkpoint only when not the default (old checkpoints stay as they were)."""
    return {"spectral_norm": True} if spectral_norm else {}


def _mlp_stack(sizes, act, rng, init, dropout=0.0, seed=0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b, init=init, rng=rng))
        if i < len(sizes) - 2:
            layers.append(act())
            if dropout:
                layers.append(Dropout(dropout, seed=seed + i))
    return layers


def mlp(latent_dim=100, g_hidden=(256,), d_hidden=(256,), noise="normal", seed=0, init="glorot_uniform",
        spectral_norm=False):
    """The vanilla GAN of Goodfellow et al. (2014) as in the tutorials.

    G: z(100) -> Dense 256 -> ReLU -> Dense 784 -> Sigmoid (pixels in [0, 1]);
    D: 784 -> Dense 256 -> ReLU -> Dense 1 (a logit). Deeper: g_hidden=(200, 500), d_hidden=(500, 200).
    """
    rng = make_rng(seed)
    G = Sequential(*_mlp_stack([latent_dim, *g_hidden, 784], ReLU, rng, init), Sigmoid(), Reshape(1, 28, 28))
    D = Sequential(Flatten(), *_spectral(_mlp_stack([784, *d_hidden, 1], ReLU, rng, init), spectral_norm))
    cfg = dict(latent_dim=latent_dim, g_hidden=list(g_hidden), d_hidden=list(d_hidden), noise=noise,
               seed=seed, init=init, **_extra(spectral_norm))
    return GAN("mlp", G, D, latent_dim, noise=noise, output="sigmoid", config=cfg)


def cgan(latent_dim=128, num_classes=10, g_hidden=(256, 512), d_hidden=(512, 256), dropout=0.3,
         noise="normal", seed=0, init="glorot_uniform", spectral_norm=False):
    """Conditional GAN (Mirza & Osindero 2014): the one-hot label joins z and the image.

    G: [z(128), y(10)] -> 256 -> 512 -> 784 (LeakyReLU 0.2, Tanh out);
    D: [x(784), y(10)] -> 512 -> 256 -> 1 (LeakyReLU 0.2, Dropout 0.3).
    """
    rng = make_rng(seed)

    def lrelu():
        return LeakyReLU(0.2)
    G = Sequential(*_mlp_stack([latent_dim + num_classes, *g_hidden, 784], lrelu, rng, init), Tanh(),
                   Reshape(1, 28, 28))
    D = Sequential(*_spectral(_mlp_stack([784 + num_classes, *d_hidden, 1], lrelu, rng, init, dropout=dropout,
                                         seed=seed * 1000 + 1), spectral_norm))
    cfg = dict(latent_dim=latent_dim, num_classes=num_classes, g_hidden=list(g_hidden),
               d_hidden=list(d_hidden), dropout=dropout, noise=noise, seed=seed, init=init, **_extra(spectral_norm))
    return GAN("cgan", G, D, latent_dim, noise=noise, output="tanh", num_classes=num_classes, config=cfg)


def dcgan(latent_dim=100, g_channels=(256, 128, 64), d_channels=(64, 128), upsample="transposed",
          dropout=0.3, noise="normal", seed=0, init="dcgan", spectral_norm=False):
    """DCGAN (Radford et al. 2015) for 28x28 images, as in the TensorFlow tutorial.

    G: z -> Dense 7*7*256 -> BatchNorm -> LeakyReLU(0.2) -> (256, 7, 7)
         -> 5x5 stride-1 transposed conv 128 -> BN -> LeakyReLU      (7x7)
         -> 5x5 stride-2 transposed conv 64  -> BN -> LeakyReLU      (14x14)
         -> 5x5 stride-2 transposed conv 1   -> Tanh                 (28x28)
    D: 5x5 stride-2 conv 64 -> LeakyReLU -> Dropout -> 5x5 stride-2 conv 128 -> LeakyReLU
         -> Dropout -> Flatten -> Dense 1 (a logit).
    upsample="nearest" replaces each stride-2 transposed conv by Upsample2D(2) + 5x5 conv.
    spectral_norm=True wraps D's Conv2D and Dense layers in SpectralNorm (for the hinge loss, SNGAN).
    """
    if upsample not in ("transposed", "nearest"):
        raise ValueError(f"dcgan: upsample must be 'transposed' or 'nearest', got {upsample!r}")
    rng = make_rng(seed)
    c0, c1, c2 = g_channels

    def up(cin, cout, stride, bias):
        if stride == 1:
            return [ConvTranspose2D(cin, cout, 5, stride=1, padding=2, bias=bias, init=init, rng=rng)]
        if upsample == "nearest":
            return [Upsample2D(2), Conv2D(cin, cout, 5, stride=1, padding=2, bias=bias, init=init, rng=rng)]
        return [ConvTranspose2D(cin, cout, 5, stride=2, padding=2, output_padding=1, bias=bias, init=init, rng=rng)]

    G = Sequential(
        Dense(latent_dim, 7 * 7 * c0, bias=False, init=init, rng=rng), BatchNorm1d(7 * 7 * c0), LeakyReLU(0.2),
        Reshape(c0, 7, 7),
        *up(c0, c1, 1, False), BatchNorm2d(c1), LeakyReLU(0.2),
        *up(c1, c2, 2, False), BatchNorm2d(c2), LeakyReLU(0.2),
        *up(c2, 1, 2, True), Tanh(),
    )
    d0, d1 = d_channels
    D = Sequential(*_spectral([
        Conv2D(1, d0, 5, stride=2, padding=2, init=init, rng=rng), LeakyReLU(0.2), Dropout(dropout, seed=seed * 1000 + 1),
        Conv2D(d0, d1, 5, stride=2, padding=2, init=init, rng=rng), LeakyReLU(0.2), Dropout(dropout, seed=seed * 1000 + 2),
        Flatten(), Dense(d1 * 7 * 7, 1, init=init, rng=rng),
    ], spectral_norm))
    cfg = dict(latent_dim=latent_dim, g_channels=list(g_channels), d_channels=list(d_channels),
               upsample=upsample, dropout=dropout, noise=noise, seed=seed, init=init, **_extra(spectral_norm))
    return GAN("dcgan", G, D, latent_dim, noise=noise, output="tanh", config=cfg)


MODELS = {"mlp": mlp, "cgan": cgan, "dcgan": dcgan}


def build(kind: str, **kwargs) -> GAN:
    """A model by name with the builder's keyword arguments."""
    try:
        return MODELS[kind](**kwargs)
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; choose from {sorted(MODELS)}") from None
