"""Losses on logits. Each returns the loss (a 0-d array, left on the device) together
with its gradient with respect to each input, so no separate backward is needed.

All are means over their elements. With l a logit, t a target and sigma the logistic:

    softplus(l) = log(1 + e^l) = max(l, 0) + log1p(e^-|l|)          (never overflows)
    BCE(l, t)   = -t log sigma(l) - (1 - t) log(1 - sigma(l)) = softplus(l) - t l
    dBCE/dl     = sigma(l) - t

GAN losses (Goodfellow et al. 2014), D's logits on real data l_r and on fakes l_f:

    discriminator    L_D = BCE(l_r, 1) + BCE(l_f, 0)      (maximises log D(x) + log(1 - D(G(z))))
    G, minimax       L_G = mean log(1 - D(G(z))) = -mean softplus(l_f)        (saturates)
    G, non-saturating L_G = -mean log D(G(z)) = BCE(l_f, 1)                    (the default)

Derivations, and why the minimax form saturates: docs/gan-objective.md, docs/losses.md.
"""
from __future__ import annotations

from . import backend
from .layers.activations import sigmoid

__all__ = ["softplus", "bce_with_logits", "d_loss", "g_loss_nonsaturating", "g_loss_minimax",
           "g_loss", "mse", "softmax_cross_entropy", "G_LOSSES"]


def softplus(x):
    xp = backend.array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def bce_with_logits(logits, targets):
    """Mean binary cross-entropy of logits against targets in [0, 1] (array or scalar).

    Returns (loss, dL/dlogits). Finite for any logit magnitude, e.g. +-1e4.
    """
    if hasattr(targets, "shape") and targets.shape != logits.shape:
        raise ValueError(f"bce_with_logits: targets of shape {targets.shape} do not match logits {logits.shape}")
    n = logits.size
    loss = (softplus(logits) - targets * logits).mean()
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
