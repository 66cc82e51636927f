"""`scratchgan gradcheck`: every layer type, every loss, a small generator ->
discriminator chain through the GAN losses, and the WGAN-GP gradient penalty (a second-order
gradient: docs/double-backward.md) of a dense and a convolutional critic, checked in float64
by central differences."""
from __future__ import annotations

import numpy as np

from . import backend, losses
from .gradcheck import gradcheck
from .layers import (AvgPool2D, MaxPool2D, BatchNorm1d, BatchNorm2d, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten,
                     LayerNorm, LeakyReLU, MinibatchStd, Projection, ReLU, Reshape, Sequential, Sigmoid, Tanh,
                     Upsample2D, spectral_norm)
from .penalty import GradientPenalty


def _cases():
    """(title, target, inputs or shape, extra gradcheck kwargs)."""
    rng = np.random.default_rng(0)
    away_from_zero = lambda shape: (rng.uniform(0.1, 1.0, shape) * rng.choice([-1, 1], shape))  # noqa: E731
    G = Sequential(Dense(4, 2 * 3 * 3, bias=False, rng=1), BatchNorm1d(18), LeakyReLU(0.2), Reshape(2, 3, 3),
                   ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1, bias=False, rng=2), BatchNorm2d(3), ReLU(),
                   Upsample2D(2), Conv2D(3, 1, 3, padding=1, rng=3), Tanh())
    D = Sequential(Conv2D(1, 4, 3, stride=2, padding=1, rng=4), LeakyReLU(0.2), Dropout(0.3, seed=5),
                   Flatten(), Dense(4 * 6 * 6, 1, rng=6))

    prng = np.random.default_rng(1)

    def randomised(module):  # weights of both signs, LayerNorm's gamma and beta too: no 1 or 0 hides a term
        for _, p, _ in module.named_parameters():
            p[...] = backend.asarray(prng.standard_normal(p.shape).astype(p.dtype) * 0.8)
        return module

    # WGAN-GP critics (no BatchNorm: it couples the samples); their ReLU inputs are > 1e-3 from the kink
    dense_critic = randomised(Sequential(Dense(4, 6, rng=7), LeakyReLU(0.2), LayerNorm(6), Dense(6, 5, rng=8), ReLU(),
                                         Dropout(0.3, seed=9), Dense(5, 1, rng=10)))
    conv_critic = randomised(Sequential(Conv2D(1, 3, 3, stride=2, padding=1, rng=11), LeakyReLU(0.2),
                                        LayerNorm((3, 3, 3)), Conv2D(3, 2, 3, stride=2, padding=1, rng=12),
                                        LeakyReLU(0.2), Flatten(), Dense(8, 1, rng=13)))
    # a conditional critic's input [image (4 values), one-hot label (3)]: the image's gradient alone is penalised
    cond_critic = randomised(Sequential(Dense(7, 5, rng=17), LeakyReLU(0.2), LayerNorm(5), Dense(5, 1, rng=18)))
    return [
        ("Dense", Dense(5, 3, rng=0), dict(shape=(4, 5))),
        ("Conv2D stride 2, padding 1", Conv2D(2, 3, 3, stride=2, padding=1, rng=0), dict(shape=(2, 2, 5, 5))),
        ("Conv2D no bias", Conv2D(2, 2, (2, 3), bias=False, rng=0), dict(shape=(2, 2, 4, 5))),
        ("ConvTranspose2D stride 2, output_padding 1",
         ConvTranspose2D(3, 2, 5, stride=2, padding=2, output_padding=1, rng=0), dict(shape=(2, 3, 3, 3))),
        ("ConvTranspose2D stride 1, Fourier path",
         ConvTranspose2D(3, 2, 5, padding=2, algorithm="fourier", rng=0), dict(shape=(2, 3, 4, 4))),
        ("ConvTranspose2D stride 2, Fourier path",
         ConvTranspose2D(3, 2, 5, stride=2, padding=2, output_padding=1, algorithm="fourier", rng=0),
         dict(shape=(2, 3, 3, 3))),
        ("BatchNorm1d (train)", BatchNorm1d(3), dict(shape=(5, 3))),
        ("BatchNorm2d (train)", BatchNorm2d(3), dict(shape=(3, 3, 2, 2))),
        ("BatchNorm2d (eval)", BatchNorm2d(3).eval(), dict(shape=(3, 3, 2, 2))),
        ("LayerNorm", randomised(LayerNorm((2, 3, 3))), dict(shape=(3, 2, 3, 3))),
        ("MinibatchStd", MinibatchStd(), dict(shape=(5, 4))),
        ("Projection (cgan D head)", Projection(Sequential(Dense(6, 5, rng=15), LeakyReLU(0.2)), 5, 3, rng=16),
         dict(inputs=np.concatenate([away_from_zero((4, 6)), np.eye(3)[[0, 2, 1, 1]]], axis=1))),
        ("SpectralNorm(Dense) (eval)", spectral_norm(Dense(5, 3, rng=13)).eval(), dict(shape=(4, 5))),
        ("SpectralNorm(Conv2D) (eval)", spectral_norm(Conv2D(2, 3, 3, stride=2, padding=1, rng=14)).eval(),
         dict(shape=(2, 2, 5, 5))),
        ("ReLU", ReLU(), dict(inputs=away_from_zero((4, 5)))),
        ("LeakyReLU(0.2)", LeakyReLU(0.2), dict(inputs=away_from_zero((4, 5)))),
        ("Sigmoid", Sigmoid(), dict(shape=(4, 5))),
        ("Tanh", Tanh(), dict(shape=(4, 5))),
        ("Dropout(0.5) (train)", Dropout(0.5, seed=1), dict(shape=(4, 5))),
        ("Reshape", Reshape(2, 3), dict(shape=(4, 6))),
        ("Flatten", Flatten(), dict(shape=(2, 2, 3, 3))),
        ("Upsample2D(2)", Upsample2D(2), dict(shape=(2, 2, 3, 3))),
        ("MaxPool2D(2)", MaxPool2D(2), dict(shape=(2, 2, 5, 5))),
        ("AvgPool2D(3, stride 2)", AvgPool2D(3, 2), dict(shape=(2, 2, 7, 7))),
        ("bce_with_logits", losses.bce_with_logits, dict(inputs=(rng.normal(0, 3, (6, 1)), rng.uniform(0, 1, (6, 1))))),
        ("d_loss", losses.d_loss, dict(inputs=(rng.normal(0, 3, (6, 1)), rng.normal(0, 3, (6, 1))))),
        ("g_loss_nonsaturating", losses.g_loss_nonsaturating, dict(inputs=(rng.normal(0, 3, (6, 1)),))),
        ("g_loss_minimax", losses.g_loss_minimax, dict(inputs=(rng.normal(0, 3, (6, 1)),))),
        ("wasserstein_d", losses.wasserstein_d, dict(inputs=(rng.normal(0, 3, (6, 1)), rng.normal(0, 3, (5, 1))))),
        ("wasserstein_g (and hinge's G)", losses.wasserstein_g, dict(inputs=(rng.normal(0, 3, (6, 1)),))),
        ("hinge_d", losses.hinge_d, dict(inputs=(np.array([[-2.5], [-0.5], [0.4], [1.6], [3.0]]),
                                              np.array([[-1.7], [-0.6], [0.2], [2.2]])))),   # off the kinks at +-1
        ("least_squares_d", losses.least_squares_d, dict(inputs=(rng.normal(0, 3, (6, 1)), rng.normal(0, 3, (5, 1))))),
        ("least_squares_g", losses.least_squares_g, dict(inputs=(rng.normal(0, 3, (6, 1)),))),
        ("mse", losses.mse, dict(inputs=(rng.normal(size=(4, 3)), rng.normal(size=(4, 3))))),
        ("softmax_cross_entropy", losses.softmax_cross_entropy,
         dict(inputs=(rng.normal(size=(5, 4)), np.array([0, 3, 1, 2, 3])))),
        ("G -> D chain, non-saturating G loss", Sequential(G, D), dict(shape=(4, 4), loss=losses.g_loss_nonsaturating)),
        ("WGAN-GP penalty, dense critic", GradientPenalty(dense_critic), dict(shape=(3, 4))),
        ("WGAN-GP penalty, conv critic", GradientPenalty(conv_critic), dict(shape=(2, 1, 6, 6))),
        ("WGAN-GP penalty, conditional critic", GradientPenalty(cond_critic, image_features=4),
         dict(inputs=np.concatenate([rng.normal(size=(3, 4)), np.eye(3)[[2, 0, 1]]], axis=1))),
    ]


def run_suite(verbose=True, tol=1e-6) -> bool:
    """Run every case; print one table; return True when every row passes."""
    all_ok = True
    out = []
    for title, target, kw in _cases():
        inputs = kw.pop("inputs", None)
        if inputs is not None:  # onto the selected backend (--backend cupy)
            inputs = backend.asarray(inputs) if not isinstance(inputs, tuple) else tuple(map(backend.asarray, inputs))
        result = gradcheck(target, inputs, tol=tol, title=title, **kw)
        all_ok &= result.passed
        out.append((title, result))
    if verbose:
        w = max(len(t) for t, _ in out)
        print(f"{'case':<{w}}  {'tensor':<12} {'shape':<16} {'max abs err':>11}  {'rel err':>9}  result")
        print("-" * (w + 62))
        for title, result in out:
            for r in result.rows:
                print(f"{title:<{w}}  {r.name:<12} {str(r.shape):<16} {r.max_abs_error:>11.2e}  {r.rel_error:>9.2e}  "
                      f"{r.verdict}")
        print("-" * (w + 62))
        n = sum(len(r.rows) for _, r in out)
        print(f"{n} tensors checked in float64 (tolerance {tol:g}): "
              + ("all passed" if all_ok else "SOME FAILED"))
    return all_ok
