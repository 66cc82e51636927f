"""The GANs: ``mlp`` (vanilla), ``cgan`` (conditional) and ``dcgan``, sized by the data.

Each builder returns a :class:`GAN`: the generator G and discriminator D as plain
``Sequential`` models plus the few facts the trainer needs (latent size, noise
distribution, pixel range, classes, image shape). G maps noise to (N, C, H, W) images
(``image_shape``, (1, 28, 28) by default: MNIST); D maps an image (with its one-hot label,
for cgan) to one logit per item. Everything is ordinary library code a user can call directly:

    gan = models.dcgan(seed=0)                                  # 1x28x28, as always
    rgb = models.dcgan(image_shape=(3, 32, 32), seed=0)         # the DCGAN paper's 4x4 start
    gan.G.summary((100,)); gan.D.summary(gan.d_input_shape)
    images = gan.generate(16, seed=1)                           # (16, *gan.image_shape)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import backend
from .init import make_rng
from .layers import (BatchNorm1d, BatchNorm2d, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten,
                     LeakyReLU, MinibatchStd, Projection, ReLU, Reshape, Sequential, Sigmoid, SpectralNorm, Tanh,
                     Upsample2D, fused_for_eval, infer_in_parts, spectral_norm as _sn)

__all__ = ["GAN", "mlp", "cgan", "dcgan", "build", "MODELS", "MNIST_SHAPE", "DCGAN_SIZES", "DCGAN_CHANNELS",
           "check_image_shape"]

MNIST_SHAPE = (1, 28, 28)
DCGAN_SIZES = (28, 32, 64)
# Default channel counts per image size, (G's per stage, D's per stage), chosen for CPU speed.
# G: the Dense layer's map, then each up stage's output but the last (which has C channels).
# D: each stride-2 convolution's output.
DCGAN_CHANNELS = {28: ((256, 128, 64), (64, 128)),
                  32: ((256, 128, 64), (64, 128, 256)),
                  64: ((256, 128, 64, 32), (32, 64, 128, 256))}
MAX_SIDE = 1024   # mlp / cgan: the largest H or W accepted (a checkpoint's shape is untrusted input)


@dataclass
class GAN:
    """A generator/discriminator pair and how to feed them.

    kind: "mlp" | "cgan" | "dcgan";  noise: "normal" | "uniform" (U[-1, 1]);
    output: "sigmoid" (pixels in [0, 1]) | "tanh" (pixels in [-1, 1]);
    num_classes: 0 for an unconditional model, else the size of the one-hot label
    joined to z and to the flattened image (cgan);
    image_shape: (C, H, W) of G's images and D's input images (C = 1 grey, 3 RGB).
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

    @property
    def d_input_shape(self) -> tuple:
        """D's input per item: image_shape, or (C*H*W + num_classes,) for the conditional model."""
        if self.conditional:
            return (int(np.prod(self.image_shape)) + self.num_classes,)
        return tuple(self.image_shape)

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
    def generate(self, n=None, seed=0, labels=None, z=None, fused=True):
        """Images from G in eval mode (running BatchNorm statistics). Returns (N, *image_shape).

        fused=True (the default): through ``layers.fused_for_eval(G).infer``, batch norms folded
        into the layers before them and no caches, a part of the batch per BLAS thread
        (layers/inference.py, infer_in_parts), equal to G's plain eval-mode forward to float32
        rounding; fused=False: that plain forward, bit for bit as
        before (the training run's sample and monitor grids, whose bytes tests record)."""
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
            if fused:   # a part of the batch per BLAS thread (layers/inference.py)
                return infer_in_parts(fused_for_eval(self.G), self.g_input(z, labels))
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


def _extra(spectral_norm, image_shape):
    """Builder arguments kept in a checkpoint only when not the default (old checkpoints stay as they were)."""
    extra = {"spectral_norm": True} if spectral_norm else {}
    if image_shape != MNIST_SHAPE:
        extra["image_shape"] = list(image_shape)
    return extra


def _is_int(v, minimum=1):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= minimum


def check_image_shape(image_shape, who="image_shape", sizes=None) -> tuple:
    """``image_shape`` as a tuple (C, H, W) of ints, or ValueError naming ``who``, what is
    allowed and what was given: C in {1, 3} (grey or RGB), H and W positive (at most
    MAX_SIDE); with ``sizes``, square images with H = W in ``sizes`` (dcgan)."""
    shape = None
    if isinstance(image_shape, np.ndarray) and image_shape.ndim == 1:
        image_shape = image_shape.tolist()
    if isinstance(image_shape, (tuple, list)) and len(image_shape) == 3 and all(_is_int(d) for d in image_shape):
        shape = tuple(int(d) for d in image_shape)
    if shape is None:
        raise ValueError(f"{who}: image_shape must be (C, H, W), three positive integers such as (1, 28, 28) "
                         f"or (3, 32, 32), got {image_shape!r:.100}")
    c, h, w = shape
    if c not in (1, 3):
        raise ValueError(f"{who}: image_shape {shape} has {c} channels; expected 1 (grey) or 3 (RGB)")
    if sizes is not None and (h != w or h not in sizes):
        raise ValueError(f"{who}: image_shape {shape} is {h}x{w} pixels; this model takes square images of "
                         f"{', '.join(map(str, sizes[:-1]))} or {sizes[-1]} pixels (H = W)")
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"{who}: image_shape {shape} is {h}x{w} pixels; at most {MAX_SIDE} per side")
    return shape


def _channels(value, n, what, size):
    """g_channels / d_channels as a tuple of n positive ints, or a ValueError saying what is needed."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    ok = isinstance(value, (tuple, list)) and all(_is_int(c) for c in value)
    if not ok or len(value) != n:
        got = f"{len(value)} ({tuple(value)!r:.80})" if isinstance(value, (tuple, list)) else f"{value!r:.80}"
        raise ValueError(f"dcgan: {what} for {size}x{size} images needs {n} positive channel counts, one per "
                         f"stage (default {DCGAN_CHANNELS[size][0 if what == 'g_channels' else 1]}), got {got}")
    return tuple(int(c) for c in value)


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
        spectral_norm=False, image_shape=MNIST_SHAPE, activation="relu", output="sigmoid", dropout=0.0,
        minibatch_std=False):
    """The vanilla GAN of Goodfellow et al. (2014) as in the tutorials.

    G: z(100) -> Dense 256 -> ReLU -> Dense 784 -> Sigmoid (pixels in [0, 1]) -> (1, 28, 28);
    D: 784 -> Dense 256 -> ReLU -> Dense 1 (a logit). Deeper: g_hidden=(200, 500), d_hidden=(500, 200).
    image_shape=(C, H, W): 784 becomes C*H*W and G's output is reshaped to (C, H, W).
    activation="leaky_relu": LeakyReLU(0.2) in both networks; output="tanh": pixels in [-1, 1];
    dropout: in D after each hidden layer; minibatch_std=True: D sees the batch's spread after its
    first hidden layer (layers/minibatch.py), which counters mode collapse.
    """
    shape = check_image_shape(image_shape, "mlp")
    if activation not in ("relu", "leaky_relu") or output not in ("sigmoid", "tanh"):
        raise ValueError(f"mlp: activation must be 'relu' or 'leaky_relu' and output 'sigmoid' or 'tanh', got "
                         f"{activation!r}, {output!r}")
    n_pix = int(np.prod(shape))
    rng = make_rng(seed)
    act = ReLU if activation == "relu" else (lambda: LeakyReLU(0.2))
    G = Sequential(*_mlp_stack([latent_dim, *g_hidden, n_pix], act, rng, init),
                   Sigmoid() if output == "sigmoid" else Tanh(), Reshape(*shape))
    d_layers = _spectral(_mlp_stack([n_pix, *d_hidden, 1], act, rng, init, dropout=dropout, seed=seed * 1000 + 1),
                         spectral_norm)
    if minibatch_std:   # after the first hidden layer's activation (and dropout): one more input to the rest
        first = 3 if dropout else 2
        nxt = d_layers[first]
        inner = nxt.layer if isinstance(nxt, SpectralNorm) else nxt
        widened = Dense(inner.in_features + 1, inner.out_features, init=init, rng=rng)
        d_layers[first] = _sn(widened, seed=first) if isinstance(nxt, SpectralNorm) else widened
        d_layers.insert(first, MinibatchStd())
    D = Sequential(Flatten(), *d_layers)
    extra = {k: v for k, v in dict(activation=activation, output=output, dropout=dropout,
                                   minibatch_std=minibatch_std).items()
             if v != {"activation": "relu", "output": "sigmoid", "dropout": 0.0, "minibatch_std": False}[k]}
    cfg = dict(latent_dim=latent_dim, g_hidden=list(g_hidden), d_hidden=list(d_hidden), noise=noise,
               seed=seed, init=init, **_extra(spectral_norm, shape), **extra)
    return GAN("mlp", G, D, latent_dim, noise=noise, output=output, image_shape=shape, config=cfg)


def cgan(latent_dim=128, num_classes=10, g_hidden=(256, 512), d_hidden=(512, 256), dropout=0.3,
         noise="normal", seed=0, init="glorot_uniform", spectral_norm=False, image_shape=MNIST_SHAPE,
         projection=False):
    """Conditional GAN (Mirza & Osindero 2014): the one-hot label joins z and the image.

    G: [z(128), y(10)] -> 256 -> 512 -> 784 (LeakyReLU 0.2, Tanh out) -> (1, 28, 28);
    D: [x(784), y(10)] -> 512 -> 256 -> 1 (LeakyReLU 0.2, Dropout 0.3).
    image_shape=(C, H, W): 784 becomes C*H*W and G's output is reshaped to (C, H, W);
    num_classes=26 for the EMNIST letters. projection=True: D is a projection discriminator
    (Miyato & Koyama 2018), features phi(x) from the same stack without the last layer, and
    D(x, y) = w . phi(x) + b + V[y] . phi(x) (layers/projection.py) instead of concatenating y.
    """
    shape = check_image_shape(image_shape, "cgan")
    n_pix = int(np.prod(shape))
    rng = make_rng(seed)

    def lrelu():
        return LeakyReLU(0.2)
    G = Sequential(*_mlp_stack([latent_dim + num_classes, *g_hidden, n_pix], lrelu, rng, init), Tanh(),
                   Reshape(*shape))
    if projection:   # phi: the stack up to its last hidden layer (its activation and dropout included)
        phi = _mlp_stack([n_pix, *d_hidden, 1], lrelu, rng, init, dropout=dropout, seed=seed * 1000 + 1)[:-1]
        D = Sequential(Projection(Sequential(*_spectral(phi, spectral_norm)), d_hidden[-1], num_classes, init=init,
                                  rng=rng))
    else:
        D = Sequential(*_spectral(_mlp_stack([n_pix + num_classes, *d_hidden, 1], lrelu, rng, init, dropout=dropout,
                                             seed=seed * 1000 + 1), spectral_norm))
    cfg = dict(latent_dim=latent_dim, num_classes=num_classes, g_hidden=list(g_hidden),
               d_hidden=list(d_hidden), dropout=dropout, noise=noise, seed=seed, init=init,
               **_extra(spectral_norm, shape), **({"projection": True} if projection else {}))
    return GAN("cgan", G, D, latent_dim, noise=noise, output="tanh", num_classes=num_classes, image_shape=shape,
               config=cfg)


def dcgan(latent_dim=100, g_channels=None, d_channels=None, upsample="transposed",
          dropout=0.3, noise="normal", seed=0, init="dcgan", spectral_norm=False, image_shape=MNIST_SHAPE,
          minibatch_std=False):
    """DCGAN (Radford et al. 2015) for square images of 28, 32 or 64 pixels, grey or RGB.

    28x28 (the default, as in the TensorFlow tutorial):
    G: z -> Dense 7*7*256 -> BatchNorm -> LeakyReLU(0.2) -> (256, 7, 7)
         -> 5x5 stride-1 transposed conv 128 -> BN -> LeakyReLU      (7x7)
         -> 5x5 stride-2 transposed conv 64  -> BN -> LeakyReLU      (14x14)
         -> 5x5 stride-2 transposed conv C   -> Tanh                 (28x28)
    D: 5x5 stride-2 conv 64 -> LeakyReLU -> Dropout -> 5x5 stride-2 conv 128 -> LeakyReLU
         -> Dropout -> Flatten -> Dense 1 (a logit).
    32x32 and 64x64 (the DCGAN paper's proportions): G projects z to a 4x4 map and doubles it
    with 5x5 stride-2 transposed convolutions (padding 2, output_padding 1), BN + LeakyReLU
    between, Tanh out: 4 -> 8 -> 16 -> 32 (-> 64); D mirrors it with 5x5 stride-2 convolutions
    (LeakyReLU, Dropout) down to 4x4, then Flatten -> Dense 1.

    image_shape: (C, H, W) with C in {1, 3} and H = W in {28, 32, 64}.
    g_channels: G's channel count per stage (the Dense layer's map, then each up stage's output
      but the last, which has C): 3 counts for 28 and 32, 4 for 64.
    d_channels: each D convolution's output channels: 2 for 28, 3 for 32, 4 for 64.
      Defaults per size: DCGAN_CHANNELS (28: (256, 128, 64) / (64, 128); 32: (256, 128, 64) /
      (64, 128, 256); 64: (256, 128, 64, 32) / (32, 64, 128, 256)).
    upsample="nearest" replaces each stride-2 transposed conv by Upsample2D(2) + 5x5 conv.
    spectral_norm=True wraps D's Conv2D and Dense layers in SpectralNorm (for the hinge loss, SNGAN).
    minibatch_std=True: D's Dense sees one more input, the batch's mean feature spread after the
      last convolution (layers/minibatch.py; as Karras et al.'s constant extra map, which a Dense
      layer reads as one number).
    """
    if upsample not in ("transposed", "nearest"):
        raise ValueError(f"dcgan: upsample must be 'transposed' or 'nearest', got {upsample!r}")
    shape = check_image_shape(image_shape, "dcgan", sizes=DCGAN_SIZES)
    channels, size = shape[0], shape[1]
    g_default, d_default = DCGAN_CHANNELS[size]
    # G's up stages: 7 -> 7 -> 14 -> 28 for 28; 4 -> 8 -> ... -> size for 32 and 64
    start, strides = (7, (1, 2, 2)) if size == 28 else (4, (2,) * {32: 3, 64: 4}[size])
    g_ch = _channels(g_default if g_channels is None else g_channels, len(strides), "g_channels", size)
    d_ch = _channels(d_default if d_channels is None else d_channels, len(strides) - (size == 28), "d_channels",
                     size)
    rng = make_rng(seed)

    def up(cin, cout, stride, bias):
        if stride == 1:
            return [ConvTranspose2D(cin, cout, 5, stride=1, padding=2, bias=bias, init=init, rng=rng)]
        if upsample == "nearest":
            return [Upsample2D(2), Conv2D(cin, cout, 5, stride=1, padding=2, bias=bias, init=init, rng=rng)]
        return [ConvTranspose2D(cin, cout, 5, stride=2, padding=2, output_padding=1, bias=bias, init=init, rng=rng)]

    c0 = g_ch[0]
    g_layers = [Dense(latent_dim, start * start * c0, bias=False, init=init, rng=rng),
                BatchNorm1d(start * start * c0), LeakyReLU(0.2), Reshape(c0, start, start)]
    for i, stride in enumerate(strides):
        last = i == len(strides) - 1
        cout = channels if last else g_ch[i + 1]
        g_layers += up(g_ch[i], cout, stride, last)
        g_layers += [Tanh()] if last else [BatchNorm2d(cout), LeakyReLU(0.2)]
    G = Sequential(*g_layers)
    d_layers, cin = [], channels
    for i, cout in enumerate(d_ch):
        d_layers += [Conv2D(cin, cout, 5, stride=2, padding=2, init=init, rng=rng), LeakyReLU(0.2),
                     Dropout(dropout, seed=seed * 1000 + i + 1)]
        cin = cout
    end = 7 if size == 28 else 4     # D's last map: 28 -> 14 -> 7;  32 -> ... -> 4;  64 -> ... -> 4
    head = [Flatten(), MinibatchStd()] if minibatch_std else [Flatten()]
    D = Sequential(*_spectral([*d_layers, *head, Dense(cin * end * end + int(minibatch_std), 1, init=init, rng=rng)],
                              spectral_norm))
    cfg = dict(latent_dim=latent_dim, g_channels=list(g_ch), d_channels=list(d_ch),
               upsample=upsample, dropout=dropout, noise=noise, seed=seed, init=init, **_extra(spectral_norm, shape),
               **({"minibatch_std": True} if minibatch_std else {}))
    return GAN("dcgan", G, D, latent_dim, noise=noise, output="tanh", image_shape=shape, config=cfg)


MODELS = {"mlp": mlp, "cgan": cgan, "dcgan": dcgan,
          # the seed tutorials' models by name (their builders' defaults; the CLI's recipes for
          # "mlp", "cgan" and "dcgan" choose other widths and settings: docs/results.md)
          "mlp-tutorial": mlp, "cgan-tutorial": cgan, "dcgan-tutorial": dcgan}


def build(kind: str, **kwargs) -> GAN:
    """A model by name with the builder's keyword arguments."""
    try:
        return MODELS[kind](**kwargs)
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; choose from {sorted(MODELS)}") from None
