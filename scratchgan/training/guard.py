"""The divergence guard (docs/reliability.md): a loss beyond MAX_LOSS, a parameter or gradient
norm beyond MAX_NORM, or any NaN/inf in the networks or the optimisers' state stops the run with
DivergenceError naming the step, before anything non-finite is saved."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .loop import Callback

__all__ = ["DivergenceError", "DivergenceGuard", "MAX_LOSS", "MAX_NORM", "check_losses", "check_health",
           "check_finite"]

# A GAN loss on logits grows like |logit|; D's logits stay within a few hundred even when it wins
# outright, so a loss of 1e6 means the weights have blown up. Parameter, gradient and Adam
# first-moment norms of a healthy run are below 1e4 for these models.
MAX_LOSS = 1e6
MAX_NORM = 1e8


class DivergenceError(RuntimeError):
    """The run blew up: a loss, a parameter, a gradient or the optimiser state is NaN/inf or
    beyond the guard's bound (MAX_LOSS, MAX_NORM)."""


def check_losses(values: dict, step: int, kept: str) -> None:
    """DivergenceError unless the step's losses (host floats) are finite and within MAX_LOSS.
    ``kept`` says what is saved (Checkpoints.kept)."""
    for name in ("d_loss", "g_loss"):
        v = values[name]
        if not math.isfinite(v) or abs(v) > MAX_LOSS:
            raise DivergenceError(
                f"training diverged at step {step}: {name} = {v:.4g} "
                f"({'not finite' if not math.isfinite(v) else f'beyond the bound {MAX_LOSS:g}'}). "
                f"{kept}; try a lower learning rate (--lr) or label smoothing")


def check_health(step, kept: str) -> None:
    """DivergenceError unless the parameters and gradients of G and D (a GANStep's) are finite
    with L2 norms within MAX_NORM, and the optimisers' state (Adam's moments, ...) is finite.
    One pass per flat buffer, so cheap enough for every logged step."""
    for net, opt in (("G", step.opt_G), ("D", step.opt_D)):
        if opt.flat_p is None:
            continue
        xp = backend.array_module(opt.flat_p)
        with np.errstate(over="ignore", invalid="ignore"):   # overflow is what is looked for
            sums = {"parameters": xp.dot(opt.flat_p, opt.flat_p), "gradients": xp.dot(opt.flat_g, opt.flat_g)}
            sums.update({what: xp.abs(a).sum() for what, a in opt.flat_state().items()})
        for what, total in sums.items():
            total = float(total)                            # inf or NaN if any value is
            bounded = what in ("parameters", "gradients")
            if not math.isfinite(total) or (bounded and total > MAX_NORM * MAX_NORM):
                raise DivergenceError(
                    f"training diverged at step {step.step}: the {what} of {net} "
                    + ("are not finite" if not math.isfinite(total) else f"have norm {total ** 0.5:.4g}, beyond "
                       f"the bound {MAX_NORM:g}") + f". {kept}; try a lower learning rate (--lr)")


def check_finite(arrays: dict, step: int, kept: str) -> None:
    """DivergenceError unless every floating array (buffers too: BatchNorm statistics) is finite."""
    for name, a in arrays.items():
        if np.dtype(a.dtype).kind == "f" and not bool(backend.array_module(a).isfinite(a).all()):
            raise DivergenceError(f"training diverged at step {step}: {name} is not finite; not saving it. {kept}")


class DivergenceGuard(Callback):
    """Checks the step's losses whenever they are on the host (every step on the CPU; on a GPU
    at the steps that log or save, so as not to wait for the device each step), and the networks'
    health every ``every`` steps and at the last. ``checkpoints``: what is saved, for the message."""

    def __init__(self, every: int, checkpoints=None):
        self.every, self.checkpoints = every, checkpoints

    def kept(self) -> str:
        return self.checkpoints.kept() if self.checkpoints is not None else "Nothing was saved"

    def on_step_end(self, loop):
        saving = self.checkpoints is not None and loop.step.step % self.checkpoints.every == 0
        if loop.on_cpu or loop.parallel or loop.at(self.every) or saving:
            check_losses(loop.values, loop.step.step, self.kept())
        if loop.at(self.every):
            check_health(loop.step, self.kept())
