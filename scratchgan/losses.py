"""Losses on logits. Each returns the loss (a 0-d array, left on the device) together
with its gradient with respect to each input, so no separate backward is needed.

All are means over their elements. With l a logit, t a target and sigma the logistic:

    softplus(l) = log(1 + e^l) = max(l, 0) + log1p(e^-|l|)          (never overflows)
    BCE(l, t)   = -t log sigma(l) - (1 - t) log(1 - sigma(l)) = (1 - t) softplus(l) + t softplus(-l)
                = (1 - t) max(l, 0) + t max(-l, 0) + log1p(e^-|l|)  (a sum of terms >= 0: no cancellation)
    dBCE/dl     = sigma(l) - t

GAN losses (Goodfellow et al. 2014), D's logits on real data l_r and on fakes l_f:

    discriminator    L_D = BCE(l_r, 1) + BCE(l_f, 0)      (maximises log D(x) + log(1 - D(G(z))))
    G, minimax       L_G = mean log(1 - D(G(z))) = -mean softplus(l_f)        (saturates)
    G, non-saturating L_G = -mean log D(G(z)) = BCE(l_f, 1)                    (the default)

Beyond the minimax game (docs/losses.md), on D's raw outputs (critic scores s_r, s_f):

    Wasserstein (Arjovsky et al. 2017)  L_D = mean s_f - mean s_r           L_G = -mean s_f
    hinge (Lim & Ye 2017, SNGAN)        L_D = mean relu(1 - s_r) + mean relu(1 + s_f)     L_G = -mean s_f
    least squares (Mao et al. 2017)     L_D = 1/2 mean (s_r - 1)^2 + 1/2 mean s_f^2      L_G = 1/2 mean (s_f - 1)^2

A ``GANLoss`` object holds one family's D part and G part (``loss.d``, ``loss.g``): the trainer
calls those two and nothing else; ``make_loss("wgan-gp")`` and friends build them by name.

Derivations, and why the minimax form saturates: docs/gan-objective.md, docs/losses.md.
"""
from __future__ import annotations

from . import backend
from .layers.activations import sigmoid

__all__ = ["softplus", "bce_with_logits", "d_loss", "g_loss_nonsaturating", "g_loss_minimax",
           "g_loss", "mse", "softmax_cross_entropy", "G_LOSSES", "wasserstein_d", "wasserstein_g", "hinge_d",
           "least_squares_d", "least_squares_g", "GANLoss", "BCELoss", "WassersteinLoss", "HingeLoss",
           "LeastSquaresLoss", "LOSSES", "make_loss"]


def softplus(x):
    xp = backend.array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def bce_with_logits(logits, targets):
    """Mean binary cross-entropy of logits against targets in [0, 1] (array or scalar).

    Returns (loss, dL/dlogits). Finite for any logit magnitude, e.g. +-1e4, and accurate for
    confident logits: the equal form softplus(l) - t l rounds BCE(40, 1) = 4.25e-18 to 0.
    """
    xp = backend.array_module(logits)
    logits = xp.asarray(logits)          # a Python number too
    if hasattr(targets, "shape") and targets.shape != logits.shape:
        raise ValueError(f"bce_with_logits: targets of shape {targets.shape} do not match logits {logits.shape}")
    n = logits.size
    loss = ((1.0 - targets) * xp.maximum(logits, 0) + targets * xp.maximum(-logits, 0)
            + xp.log1p(xp.exp(-xp.abs(logits)))).mean()
    dlogits = sigmoid(logits)
    dlogits -= targets
    dlogits *= 1.0 / n
    return loss, dlogits


def d_loss(real_logits, fake_logits, real_target: float = 1.0):
    """Discriminator loss BCE(l_r, real_target) + BCE(l_f, 0).

    real_target < 1 is one-sided label smoothing (e.g. 0.9). Returns (loss, d_real, d_fake).
    """
    loss_r, d_real = bce_with_logits(real_logits, real_target)
    loss_f, d_fake = bce_with_logits(fake_logits, 0.0)
    return loss_r + loss_f, d_real, d_fake


def g_loss_nonsaturating(fake_logits):
    """-mean log D(G(z)): strong gradient while D rejects the fakes. Returns (loss, d_fake)."""
    return bce_with_logits(fake_logits, 1.0)


def g_loss_minimax(fake_logits):
    """mean log(1 - D(G(z))) = -mean softplus(l_f), minimised by G. Returns (loss, d_fake).

    Its gradient -sigma(l_f)/n vanishes exactly when D confidently rejects the fakes.
    """
    n = fake_logits.size
    loss = -softplus(fake_logits).mean()
    d_fake = sigmoid(fake_logits)
    d_fake *= -1.0 / n
    return loss, d_fake


G_LOSSES = {"nonsaturating": g_loss_nonsaturating, "minimax": g_loss_minimax}


def g_loss(fake_logits, kind: str = "nonsaturating"):
    """The generator loss by name: "nonsaturating" (default) or "minimax"."""
    try:
        return G_LOSSES[kind](fake_logits)
    except KeyError:
        raise ValueError(f"unknown generator loss {kind!r}; choose from {sorted(G_LOSSES)}") from None


# --------------------------------------------------------------------------- beyond the minimax game
def wasserstein_d(real_scores, fake_scores):
    """The critic's loss mean s_f - mean s_r (it maximises the score gap; the Lipschitz constraint
    comes from weight clipping or the gradient penalty). Returns (loss, d_real, d_fake)."""
    xp = backend.array_module(real_scores, fake_scores)
    loss = fake_scores.mean() - real_scores.mean()
    return loss, xp.full_like(real_scores, -1.0 / real_scores.size), xp.full_like(fake_scores, 1.0 / fake_scores.size)


def wasserstein_g(fake_scores):
    """The generator's loss -mean s_f (also hinge's generator loss). Returns (loss, d_fake)."""
    xp = backend.array_module(fake_scores)
    return -fake_scores.mean(), xp.full_like(fake_scores, -1.0 / fake_scores.size)


def hinge_d(real_scores, fake_scores):
    """mean relu(1 - s_r) + mean relu(1 + s_f): only scores inside the margin contribute.
    Returns (loss, d_real, d_fake) with d_real = -[s_r < 1]/n, d_fake = [s_f > -1]/n."""
    xp = backend.array_module(real_scores, fake_scores)
    margin_r, margin_f = 1.0 - real_scores, 1.0 + fake_scores
    loss = xp.maximum(margin_r, 0).mean() + xp.maximum(margin_f, 0).mean()
    d_real = (margin_r > 0).astype(real_scores.dtype)
    d_real *= -1.0 / real_scores.size
    d_fake = (margin_f > 0).astype(fake_scores.dtype)
    d_fake *= 1.0 / fake_scores.size
    return loss, d_real, d_fake


def least_squares_d(real_scores, fake_scores):
    """1/2 mean (s_r - 1)^2 + 1/2 mean s_f^2 (targets b = 1 for real, a = 0 for fake).
    Returns (loss, d_real, d_fake) with d_real = (s_r - 1)/n, d_fake = s_f/n."""
    d_real = real_scores - 1.0
    loss = 0.5 * (d_real * d_real).mean() + 0.5 * (fake_scores * fake_scores).mean()
    d_real *= 1.0 / real_scores.size
    return loss, d_real, fake_scores * (1.0 / fake_scores.size)


def least_squares_g(fake_scores):
    """1/2 mean (s_f - 1)^2 (target c = 1: G wants its fakes scored as real). Returns (loss, d_fake)."""
    d_fake = fake_scores - 1.0
    loss = 0.5 * (d_fake * d_fake).mean()
    d_fake *= 1.0 / fake_scores.size
    return loss, d_fake


class GANLoss:
    """A GAN objective: its discriminator (critic) part and its generator part, both on D's raw
    outputs. ``d(real, fake) -> (loss, d_real, d_fake)``; ``g(fake) -> (loss, d_fake)``.

    ``probabilities``: D's outputs are logits of "real" (the BCE family), so the trainer logs
    mean sigmoid(D); otherwise it logs the mean raw scores. ``gradient_penalty``: the weight
    lambda of WGAN-GP's penalty, which the trainer adds to the D step (0: none)."""
    name = ""
    probabilities = False
    gradient_penalty = 0.0

    def d(self, real, fake):
        raise NotImplementedError

    def g(self, fake):
        raise NotImplementedError

    def means(self, real, fake):
        """Mean D(x) and D(G(z)) as logged: probabilities for BCE, raw scores otherwise."""
        if self.probabilities:
            return sigmoid(real).mean(), sigmoid(fake).mean()
        return real.mean(), fake.mean()

    def __repr__(self):
        return f"{type(self).__name__}()"


class BCELoss(GANLoss):
    """Goodfellow et al.'s game: BCE for D (with one-sided label smoothing), the non-saturating
    (default) or minimax loss for G."""
    name, probabilities = "bce", True

    def __init__(self, g_loss: str = "nonsaturating", label_smoothing: float = 0.0):
        if g_loss not in G_LOSSES:
            raise ValueError(f"BCELoss: g_loss must be one of {', '.join(sorted(G_LOSSES))}, got {g_loss!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"BCELoss: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.g_loss, self.label_smoothing = g_loss, label_smoothing
        self.g = G_LOSSES[g_loss]

    def d(self, real, fake):
        return d_loss(real, fake, 1.0 - self.label_smoothing)

    def __repr__(self):
        return f"BCELoss(g_loss={self.g_loss!r}, label_smoothing={self.label_smoothing})"


class WassersteinLoss(GANLoss):
    """WGAN (weight clipping, gradient_penalty=0) or WGAN-GP (gradient_penalty=lambda, 10 in the paper)."""
    name = "wgan"

    def __init__(self, gradient_penalty: float = 0.0):
        if not gradient_penalty >= 0.0:
            raise ValueError(f"WassersteinLoss: gradient_penalty must be >= 0, got {gradient_penalty!r}")
        self.gradient_penalty = float(gradient_penalty)
        self.name = "wgan-gp" if gradient_penalty else "wgan"

    d = staticmethod(wasserstein_d)
    g = staticmethod(wasserstein_g)

    def __repr__(self):
        return f"WassersteinLoss(gradient_penalty={self.gradient_penalty})"


class HingeLoss(GANLoss):
    """The hinge loss of SNGAN / SAGAN: hinge for D, -mean D(G(z)) for G."""
    name = "hinge"
    d = staticmethod(hinge_d)
    g = staticmethod(wasserstein_g)


class LeastSquaresLoss(GANLoss):
    """LSGAN with the 0-1 coding a = 0, b = c = 1."""
    name = "lsgan"
    d = staticmethod(least_squares_d)
    g = staticmethod(least_squares_g)


LOSSES = ("bce", "wgan", "wgan-gp", "hinge", "lsgan")


def make_loss(name: str = "bce", g_loss: str = "nonsaturating", label_smoothing: float = 0.0,
              gp_weight: float = 10.0) -> GANLoss:
    """A GANLoss by name: bce (with g_loss, label_smoothing), wgan, wgan-gp (gp_weight), hinge, lsgan."""
    if name == "bce":
        return BCELoss(g_loss, label_smoothing)
    if name in ("wgan", "wgan-gp"):
        return WassersteinLoss(gp_weight if name == "wgan-gp" else 0.0)
    if name == "hinge":
        return HingeLoss()
    if name == "lsgan":
        return LeastSquaresLoss()
    raise ValueError(f"unknown GAN loss {name!r}; choose from {', '.join(LOSSES)}")


def mse(pred, target):
    """Mean squared error. Returns (loss, dL/dpred)."""
    if pred.shape != target.shape:
        raise ValueError(f"mse: target of shape {target.shape} does not match prediction {pred.shape}")
    diff = pred - target
    loss = (diff * diff).mean()
    diff *= 2.0 / pred.size
    return loss, diff


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of (N, K) logits against integer labels (N,).

    log softmax(l)_k = l_k - logsumexp(l), computed after subtracting the row maximum
    so that exp never overflows. Returns (loss, dL/dlogits) with dL/dl = (softmax - onehot) / N.
    """
    xp = backend.array_module(logits)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"softmax_cross_entropy: expected logits (N, K) and labels (N,), got "
                         f"{logits.shape} and {labels.shape}")
    n, k = logits.shape
    # Fancy indexing would wrap a label of -1 to the last class (and CuPy wraps any
    # out-of-range index): refuse them instead.
    if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"softmax_cross_entropy: labels must be in [0, {k}), got [{int(labels.min())}, {int(labels.max())}]")
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    rows = xp.arange(n)
    loss = (xp.log(sum_exp[:, 0]) - shifted[rows, labels]).mean()
    probs = exp
    probs /= sum_exp
    probs[rows, labels] -= 1
    probs *= 1.0 / n
    return loss, probs
