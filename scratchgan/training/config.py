"""A run's settings: ``TrainConfig``, validated like anything read from a file (a resumed run's
config.json is untrusted), and each loss family's recipe from its paper (``LOSS_DEFAULTS``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import losses

__all__ = ["TrainConfig", "LOSS_DEFAULTS", "MAX_EPOCHS"]

# Each loss family's recipe from its paper, for the settings a caller leaves out (the CLI does).
LOSS_DEFAULTS = {
    "bce": {},                                                      # Radford et al.: Adam 2e-4, beta1 0.5
    "wgan": dict(optimizer="rmsprop", lr=5e-5, k=5, clip=0.01),     # Arjovsky et al. 2017, Algorithm 1
    "wgan-gp": dict(lr=1e-4, beta1=0.5, beta2=0.9, k=5, gp_weight=10.0),   # Gulrajani et al. 2017, Algorithm 1
    "hinge": {},                                                    # Miyato et al. 2018, setting C
    "lsgan": {},                                                    # Mao et al. 2017: Adam 2e-4, beta1 0.5
}

MAX_EPOCHS = 1e6     # passes over the data a run may ask for (--epochs): a bound that keeps the step count finite


@dataclass
class TrainConfig:
    model: str = "mlp"
    model_args: dict = field(default_factory=dict)   # extra builder arguments (widths, latent size, ...)
    dataset: str = "mnist"
    classes: list | None = None                      # keep only these labels (e.g. [2])
    steps: int = 3000                                # generator steps (ignored when epochs is set)
    epochs: float | None = None
    batch_size: int = 64
    lr: float = 2e-4
    lr_d: float | None = None                        # D's (critic's) learning rate; None: lr
    lr_g: float | None = None                        # G's learning rate; None: lr
    beta1: float = 0.5
    beta2: float = 0.999
    k: int = 1                                       # discriminator (critic) steps per generator step
    loss: str = "bce"                                # bce, wgan, wgan-gp, hinge, lsgan (losses.make_loss)
    g_loss: str = "nonsaturating"                    # bce only: or "minimax"
    label_smoothing: float = 0.0                     # bce only, one-sided: real target = 1 - label_smoothing
    instance_noise: float = 0.0                      # std of Gaussian noise on D's images, falling linearly to 0
    gp_weight: float = 10.0                          # wgan-gp only: lambda of the gradient penalty
    clip: float | None = None                        # clip D's weights to [-clip, clip] after each step (WGAN)
    optimizer: str = "adam"                          # adam (lr, beta1, beta2) or rmsprop (lr)
    seed: int = 0
    backend: str = "numpy"
    dtype: str = "float32"                           # "float64" for checks; a resumed run keeps its dtype
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 1000
    n_samples: int = 64                              # size of the fixed-noise sample grid
    keep_checkpoints: int = 3                        # the newest few are kept (at least 1)
    ema: float | None = None                         # decay of an average of G's weights to sample from (ema.py)
    lr_decay: str = "none"                           # "linear": both learning rates fall linearly to 0 at the last step
    max_time: float | None = None                    # stop (and save) after this many seconds of training
    data_contents: str | None = None                 # image folders: what the folder held (Dataset.contents)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A validated config from a dict (e.g. read from a run folder, so untrusted)."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a dict of settings, got {type(d).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(map(str, unknown))}")
        return cls(**d).validate()

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first setting of the wrong type or out of range."""
        def integer(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")

        def number(name, lo, hi=math.inf, lo_open=False, hi_open=False):
            v = getattr(self, name)
            ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                  and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))
            if not ok:
                rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
                raise ValueError(f"{name} must be a number in {rng}, got {v!r}")

        def one_of(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {', '.join(map(str, options))}; got {getattr(self, name)!r}")

        if not isinstance(self.model, str) or not self.model:   # a builder's name (models.MODELS for the CLI)
            raise ValueError(f"model must be a model's name, got {self.model!r}")
        if not isinstance(self.model_args, dict) or not all(isinstance(k, str) for k in self.model_args):
            raise ValueError(f"model_args must be a dict of builder arguments, got {self.model_args!r}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a data set name, got {self.dataset!r}")
        if self.data_contents is not None and not isinstance(self.data_contents, str):
            raise ValueError(f"data_contents must be a string, got {self.data_contents!r:.80}")
        if self.classes is not None and not (
                isinstance(self.classes, list) and self.classes
                and all(isinstance(c, str) or (isinstance(c, int) and not isinstance(c, bool)) for c in self.classes)):
            raise ValueError(f"classes must be a non-empty list of labels or class names, got {self.classes!r}")
        for name in ("steps", "batch_size", "k", "log_every", "sample_every", "checkpoint_every", "n_samples",
                     "keep_checkpoints"):
            integer(name, 1)
        integer("seed", 0)
        if self.seed >= 2**32:
            raise ValueError(f"seed must be below 2**32, got {self.seed}")
        if self.epochs is not None:
            number("epochs", 0, MAX_EPOCHS, lo_open=True)
        number("lr", 0, lo_open=True)
        number("beta1", 0, 1, hi_open=True)
        number("beta2", 0, 1, hi_open=True)
        number("label_smoothing", 0, 1, hi_open=True)
        number("instance_noise", 0)
        one_of("g_loss", sorted(losses.G_LOSSES))
        one_of("loss", list(losses.LOSSES))
        one_of("optimizer", ["adam", "rmsprop"])
        number("gp_weight", 0)
        if self.clip is not None:
            number("clip", 0, lo_open=True)
        for name in ("lr_d", "lr_g", "max_time"):
            if getattr(self, name) is not None:
                number(name, 0, lo_open=True)
        if self.ema is not None:
            number("ema", 0, 1, hi_open=True)
        one_of("lr_decay", ["none", "linear"])
        one_of("backend", ["numpy", "cupy"])
        one_of("dtype", ["float32", "float64"])
        return self
