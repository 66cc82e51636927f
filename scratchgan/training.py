"""Goodfellow's alternating algorithm (2014, Algorithm 1), with the non-saturating
generator loss by default. One training step is:

    for j in 1..k:                                     (k discriminator steps)
        x ~ data,  z ~ p(z),  x~ = G(z)
        D: descend  BCE(D(x), 1 - smoothing) + BCE(D(x~), 0)
    G: descend  -log D(x~)   (or log(1 - D(x~)) with --g-loss minimax)

The fake batch of the last D step is reused for the G step (as in the PyTorch DCGAN
recipe): G's forward cache is still valid because only D has changed. D's weights are
"frozen" in the G step: the gradient flows through D to the images (D.backward_input), and
D's weight gradients, which no optimiser step would use, are not formed.
docs/gan-objective.md maps each line of the algorithm to the code below.

The run is guarded (docs/reliability.md): a loss beyond MAX_LOSS or a parameter, gradient or
optimiser-state norm beyond MAX_NORM (or any NaN/inf) stops it with DivergenceError naming the
step, before anything non-finite is saved; Ctrl-C or SIGTERM finish the step, save and stop.

All randomness is (seed, counter) based: noise for step t comes from
random_generator(seed, t), data order from (seed, epoch), Dropout masks from each
layer's own counter. A checkpoint therefore holds a few integers of random state, and
a resumed run is bit-identical to an uninterrupted one on the CPU.

Data-parallel (``comm``, distributed.py, under mpiexec): every rank draws the global batch's
indices and noise and keeps its rows; the one call between each backward and its optimiser step,
``comm.allreduce_mean(flat gradients)``, makes the step of the whole batch. The step's losses and a
stop (signal, time limit) are agreed by all ranks every step; rank 0 alone writes the run folder.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import backend, losses, report
from .distributed import Communicator, check_replicas, data_parallel
from .checkpoint import (CheckpointError, arrays_path, check_meta, latest_checkpoint, list_checkpoints,
                         load_checkpoint, parameter_bound, read_meta, remove_checkpoint, save_checkpoint)
from .atomic import atomic_write_bytes
from .ema import EMA
from .init import parameter_budget
from .images import plot_losses, save_grid
from .models import GAN, MODELS, build
from .optim import Adam, RMSprop
from .runfolder import RunFolderError, check_run_folder, remove_leftovers
from .safeio import UnsafeFileError, append_text, read_bytes

__all__ = ["TrainConfig", "Trainer", "DivergenceError", "load_run", "MAX_LOSS", "MAX_NORM", "LOSS_DEFAULTS"]

# The divergence guard's bounds. A GAN loss on logits grows like |logit|; D's logits stay within
# a few hundred even when it wins outright, so a loss of 1e6 means the weights have blown up.
# Parameter, gradient and Adam first-moment norms of a healthy run are below 1e4 for these models.
MAX_LOSS = 1e6
MAX_NORM = 1e8

# A data-parallel run compares the ranks' copies of G and D this often (and before every checkpoint).
REPLICA_CHECK_EVERY = 100


# Each loss family's recipe from its paper, for the settings a caller leaves out (the CLI does).
LOSS_DEFAULTS = {
    "bce": {},                                                      # Radford et al.: Adam 2e-4, beta1 0.5
    "wgan": dict(optimizer="rmsprop", lr=5e-5, k=5, clip=0.01),     # Arjovsky et al. 2017, Algorithm 1
    "wgan-gp": dict(lr=1e-4, beta1=0.5, beta2=0.9, k=5, gp_weight=10.0),   # Gulrajani et al. 2017, Algorithm 1
    "hinge": {},                                                    # Miyato et al. 2018, setting C
    "lsgan": {},                                                    # Mao et al. 2017: Adam 2e-4, beta1 0.5
}


class DivergenceError(RuntimeError):
    """The run blew up: a loss, a parameter, a gradient or the optimiser state is NaN/inf or
    beyond the guard's bound (MAX_LOSS, MAX_NORM)."""


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


METRIC_FIELDS = ["step", "epoch", "d_loss", "g_loss", "d_real", "d_fake", "time_s", "samples_per_s"]


class Trainer:
    """Trains one GAN on an (N, 1, 28, 28) float array, writing a run folder.

    trainer = Trainer(gan, images, labels, config, run_dir); trainer.train()
    ``images`` are host arrays already scaled to the generator's output range. ``comm``: the
    ranks of a data-parallel run (distributed.py; each takes config.batch_size / comm.size items
    of every batch); rank 0 alone writes to ``run_dir`` and prints.
    """

    def __init__(self, gan: GAN, images, labels, config: TrainConfig, run_dir=None, quiet=False, data_note="",
                 class_names=None, monitor_size: int = report.MONITOR_SIZE, comm: Communicator | None = None):
        config.validate()
        self.comm = comm if comm is not None else Communicator()
        self.rows = self.comm.rows(config.batch_size)     # this rank's items of each global batch
        self.gan, self.config, self.quiet = gan, config, quiet or self.comm.rank != 0
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writes = self.run_dir is not None and self.comm.rank == 0
        self.xp = backend.xp()
        if tuple(np.shape(images)[1:]) != tuple(gan.image_shape):
            raise ValueError(f"Trainer: the images are {'x'.join(map(str, np.shape(images)[1:]))} but the model "
                             f"takes {'x'.join(map(str, gan.image_shape))}")
        self.images = backend.asarray(images, dtype=gan.G.dtype)
        self.n = len(images)
        labels = np.zeros(self.n, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        if labels.shape != (self.n,):
            raise ValueError(f"Trainer: {self.n} images but labels of shape {labels.shape}")
        if gan.conditional and self.n and (labels.min() < 0 or labels.max() >= gan.num_classes):
            raise ValueError(f"Trainer: labels must be in [0, {gan.num_classes}) for this model, "
                             f"got [{labels.min()}, {labels.max()}]")
        # Fake labels are drawn from the classes present (e.g. only 2s after --classes 2).
        self.label_set = np.unique(labels) if gan.conditional else None
        self._label_set_on_device = self.xp.asarray(self.label_set) if gan.conditional else None  # copied once
        self.labels = backend.asarray(labels)
        if self.n < config.batch_size:
            raise ValueError(f"batch size {config.batch_size} is larger than the data set ({self.n} "
                             f"image{'s' * (self.n != 1)})")
        self.batches_per_epoch = self.n // config.batch_size
        self.opt_G = self._optimizer(gan.G, config.lr_g or config.lr)
        self.opt_D = self._optimizer(gan.D, config.lr_d or config.lr)
        self.ema = EMA(gan.G, config.ema, source=self.opt_G.flat_p) if config.ema else None
        data_parallel(gan.G, self.comm)
        data_parallel(gan.D, self.comm)
        self.loss = losses.make_loss(config.loss, config.g_loss, config.label_smoothing, config.gp_weight)
        self.penalty = None
        if self.loss.gradient_penalty:   # WGAN-GP: refuses a critic it cannot differentiate twice
            from .penalty import GradientPenalty
            # a conditional critic: the gradient with respect to the image only (penalty.py)
            self.penalty = GradientPenalty(gan.D, weight=self.loss.gradient_penalty,
                                           image_features=int(np.prod(gan.image_shape)) if gan.conditional else None)
        self.step = 0            # completed generator steps
        self.batch_index = 0     # real batches consumed (epoch = batch_index // batches_per_epoch)
        self.noise_calls = 0     # noise batches drawn
        self.data_note = data_note
        self._perm = None
        self._perm_epoch = -1
        self._stop_requested = False
        self._stop_agreed = False        # data-parallel: the stop every rank has agreed on (_agree)
        self._started = False    # run-folder housekeeping done (first train())
        self._saved_step = None
        self.history = []         # changes of settings on resume, kept in config.json
        self.stop_signal = None   # the signal (SIGINT, SIGTERM) that stopped the last train()
        self.stopped_by_time = False  # the last train() ended at config.max_time
        self._saving = False
        self._abort_after_save = False
        # The fixed noise (and labels) every sample grid is drawn from.
        fixed_rng = backend.random_generator(self.xp, config.seed, 2**31 - 1)
        if gan.conditional:
            per_class = max(1, config.n_samples // len(self.label_set))
            self.fixed_labels = self.xp.asarray(np.repeat(self.label_set, per_class))
            self.grid_nrow = per_class                 # one row per class
        else:
            self.fixed_labels = None
            self.grid_nrow = int(math.ceil(math.sqrt(config.n_samples)))
        n_fixed = len(self.fixed_labels) if gan.conditional else config.n_samples
        self.fixed_z = gan.sample_noise(n_fixed, fixed_rng)
        self._init_monitor(labels, class_names, monitor_size)

    def _optimizer(self, net, lr):
        cfg = self.config
        if cfg.optimizer == "rmsprop":
            return RMSprop(net, lr=lr)
        return Adam(net, lr=lr, betas=(cfg.beta1, cfg.beta2))

    @property
    def sampler(self) -> GAN:
        """The GAN that samples are drawn from: G's moving average when --ema is on, else G."""
        return self.gan if self.ema is None else dataclasses.replace(self.gan, G=self.ema.average)

    # ------------------------------------------------------------------ data and noise
    @property
    def epoch(self) -> float:
        return self.batch_index / self.batches_per_epoch

    def _real_batch(self):
        epoch, i = divmod(self.batch_index, self.batches_per_epoch)
        if epoch != self._perm_epoch:
            order = np.random.default_rng([self.config.seed, epoch]).permutation(self.n)
            self._perm, self._perm_epoch = self.xp.asarray(order), epoch
        idx = self._perm[i * self.config.batch_size:(i + 1) * self.config.batch_size][self.rows]
        self.batch_index += 1
        return self.images[idx], self.labels[idx]

    def _noise(self):
        """This rank's rows of the step's noise (and fake labels), drawn for the global batch."""
        n = self.config.batch_size
        rng = backend.random_generator(self.xp, self.config.seed + 1, self.noise_calls)
        self.noise_calls += 1
        z = self.gan.sample_noise(n, rng)
        if not self.gan.conditional:
            return z[self.rows], None
        label_set = self._label_set_on_device
        return z[self.rows], label_set[rng.integers(0, len(label_set), size=n)][self.rows]

    def _instance_noise(self, shape):
        """Gaussian noise for this rank's real and fake images of the step (Sonderby et al. 2016;
        docs/training.md): std config.instance_noise at step 0, falling linearly to 0 at the last
        step, drawn for the global batch from the (seed + 3, noise batch) stream, so a resumed run
        draws it again exactly. Scalar zeros when off (adding them changes nothing)."""
        sigma = self.config.instance_noise * max(0.0, 1.0 - self.step / max(1, self.total_steps()))
        if sigma == 0.0:
            return 0.0, 0.0
        rng = backend.random_generator(self.xp, self.config.seed + 3, self.noise_calls)
        n, dtype = self.config.batch_size, self.gan.G.dtype
        noise = [rng.standard_normal((n,) + tuple(shape[1:]), dtype=dtype)[self.rows] for _ in range(2)]
        for part in noise:
            part *= dtype.type(sigma)      # in place: a slice of the fresh draw, owned by nobody else
        return noise[0], noise[1]

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict:
        """k discriminator steps and one generator step. Returns device scalars."""
        gan, cfg, loss = self.gan, self.config, self.loss
        G, D = gan.G, gan.D
        if cfg.lr_decay == "linear":     # a function of the step alone, so a resumed run follows it exactly
            scale = max(0.0, 1.0 - self.step / max(1, self.total_steps()))
            self.opt_D.lr, self.opt_G.lr = scale * (cfg.lr_d or cfg.lr), scale * (cfg.lr_g or cfg.lr)
        for _ in range(cfg.k):
            x, y = self._real_batch()
            z, y_fake = self._noise()
            fake, g_cache = G.forward(gan.g_input(z, y_fake))
            noise_real, noise_fake = self._instance_noise(x.shape)
            self.opt_D.zero_grad()
            real_in, fake_in = gan.d_input(x + noise_real, y), gan.d_input(fake + noise_fake, y_fake)
            out_real, cache_real = D.forward(real_in)
            out_fake, cache_fake = D.forward(fake_in)
            d_loss, d_real, d_fake = loss.d(out_real, out_fake)
            D.backward(d_real, cache_real, input_grad=False)  # D's inputs need no gradient here
            D.backward(d_fake, cache_fake, input_grad=False)
            if self.penalty is not None:  # WGAN-GP: + lambda E[(||grad D(x_hat)|| - 1)^2] on interpolates
                d_loss = d_loss + self._gradient_penalty(real_in, fake_in)
            self.comm.allreduce_mean(self.opt_D.flat_g)   # data-parallel: the whole batch's gradient
            self.opt_D.step()
            if cfg.clip is not None:      # WGAN: keep the critic's weights in [-clip, clip]
                backend.array_module(self.opt_D.flat_p).clip(self.opt_D.flat_p, -cfg.clip, cfg.clip,
                                                             out=self.opt_D.flat_p)
        # Generator step on the last fake batch (and its instance noise), through the just-updated D.
        out_fake, cache_fake = D.forward(gan.d_input(fake + noise_fake, y_fake))
        g_loss, d_out = loss.g(out_fake)
        d_in = D.backward_input(d_out, cache_fake)  # to the images only: D's weights do not move in the G step
        self.opt_G.zero_grad()
        G.backward(gan.d_input_grad_to_images(d_in, fake.shape), g_cache, input_grad=False)  # z needs none
        self.comm.allreduce_mean(self.opt_G.flat_g)
        self.opt_G.step()
        if self.ema is not None:
            self.ema.update()
        self.step += 1
        d_real_mean, d_fake_mean = loss.means(out_real, out_fake)
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real_mean, "d_fake": d_fake_mean}

    def _gradient_penalty(self, real_in, fake_in):
        """Add the penalty's parameter gradient to D's and return its value. The interpolation
        weights come from the same (seed, counter) stream as the D step's noise, so a resumed
        run draws them again exactly."""
        from .penalty import interpolates
        rng = backend.random_generator(np, self.config.seed + 2, self.noise_calls)   # host: N numbers
        rng.bit_generator.advance(self.rows.start)   # this rank's rows of the global batch's draws
        if self.gan.conditional:    # images interpolated under the real batch's labels (penalty.py)
            n_pix = self.penalty.image_features
            x_hat, _ = interpolates(real_in[:, :n_pix], fake_in[:, :n_pix], rng)
            x_hat = self.xp.concatenate([x_hat, real_in[:, n_pix:]], axis=1)
        else:
            x_hat, _ = interpolates(real_in, fake_in, rng)
        value, cache = self.penalty.forward(x_hat)
        self.penalty.backward(self.xp.ones_like(value), cache)
        return value[0]

    # ------------------------------------------------------------------ the loop
    def total_steps(self) -> int:
        cfg = self.config
        if cfg.epochs is not None:
            return int(math.ceil(cfg.epochs * self.batches_per_epoch / cfg.k))
        return cfg.steps

    def train(self, steps=None) -> dict:
        """Train until ``steps`` (default: the config's) generator steps are done.

        Stops early, after finishing the step and saving a checkpoint, on Ctrl-C (SIGINT) or
        SIGTERM: ``self.stop_signal`` then holds the signal. Raises DivergenceError (nothing is
        saved) when the guard finds the run blown up."""
        total = self.total_steps() if steps is None else steps
        cfg = self.config
        if self.writes:
            self._start_run_folder()
        self.comm.barrier()               # no rank starts before rank 0 has cleared the run folder
        on_cpu = self.xp is np
        parallel = self.comm.size > 1
        self.stop_signal, self._stop_requested, self.stopped_by_time = None, False, False
        self._stop_agreed = False
        previous = self._install_signal_handlers()
        bar = self._progress(total)
        last = {}
        t0, step0 = time.perf_counter(), self.step
        # Overflow in a blown-up run is reported once, by the guard (a DivergenceError naming the
        # step), not as NumPy warnings from deep inside a layer.
        errstate = np.errstate(over="ignore", invalid="ignore")
        errstate.__enter__()
        try:
            # Data-parallel ranks stop only on the stop they agreed on (_agree): a signal reaching one rank
            # after this step's agreement must not end its loop while the others start the next step.
            while self.step < total and not (self._stop_agreed if parallel else self._stop_requested):
                out = self.train_step()
                timed_out = cfg.max_time is not None and time.perf_counter() - t0 >= cfg.max_time
                if parallel:                    # every rank: the global batch's losses, one decision to stop
                    values, timed_out = self._agree(out, timed_out)
                log_now = self.step % cfg.log_every == 0 or self.step == total or timed_out
                due_save = self.run_dir is not None and self.step % cfg.checkpoint_every == 0
                save_now = due_save and self.writes
                if parallel:
                    self._check_losses(values)
                    if due_save or self.step % REPLICA_CHECK_EVERY == 0:
                        self.check_replicas()
                    if due_save and not self.writes:   # rank 0's save() checks the same state
                        self.check_saveable()   # so a refusal stops every rank, not rank 0 alone
                        self._saved_step = self.step
                elif on_cpu or log_now or save_now:  # on a GPU, fetch values only when logging or saving
                    values = {k: float(v) for k, v in out.items()}
                    self._check_losses(values)
                if log_now:
                    self.check_health()
                    dt = time.perf_counter() - t0
                    sps = (self.step - step0) * cfg.batch_size * cfg.k / max(dt, 1e-9)
                    last = dict(step=self.step, epoch=round(self.epoch, 4), **{k: round(v, 6) for k, v in values.items()},
                                time_s=round(dt, 3), samples_per_s=round(sps, 1))
                    self._log(last)
                    if bar is not None:
                        bar.set_postfix(d=f"{values['d_loss']:.3f}", g=f"{values['g_loss']:.3f}",
                                        sps=f"{sps:.0f}", refresh=False)
                if bar is not None:
                    bar.update(1)
                if self.writes:                 # the checkpoint first, so that report.html links it
                    if save_now:
                        self.save()
                    if self.step % cfg.sample_every == 0:
                        self.on_interval(live=self.step < total and not self._stop_requested and not timed_out)
                if timed_out:                   # --max-time: stop here, like Ctrl-C, but not an interruption
                    self.stopped_by_time = True
                    break
            if parallel and self.run_dir is not None and self.step != self._saved_step:
                self.check_replicas()
                if not self.writes:
                    self.check_saveable()
            if self.writes:
                # Unless the loop's last iteration already wrote them (the checkpoint first, as above):
                if self.step != self._saved_step:
                    self.save()
                if self.step % cfg.sample_every != 0:
                    self.on_interval()
        finally:
            errstate.__exit__(None, None, None)
            if bar is not None:
                bar.close()
            self._restore_signal_handlers(previous)
        if parallel:
            if self.run_dir is not None:
                self._saved_step = self.step
            self.comm.barrier()           # the checkpoint is on disk before any rank returns
        if self.stopped_by_time and self.run_dir is not None:
            self._say(f"stopped at the time limit ({cfg.max_time:g} s) at step {self.step}; checkpoint saved in "
                      f"{self.run_dir}; continue with --resume")
        if self._stop_requested:
            self.stop_signal = self._stop_requested
            if self.run_dir is not None:
                self._say(f"stopped by {signal.Signals(self.stop_signal).name}: checkpoint saved at step "
                          f"{self.step} in {self.run_dir}; continue with --resume")
        return last

    # ------------------------------------------------------------------ ranks of a data-parallel run
    def _agree(self, out, timed_out):
        """One small all-reduce per step: the losses averaged over the ranks (each rank's are of
        its rows), and a stop (Ctrl-C, SIGTERM, --max-time) seen by any rank taken by all of them.
        Returns (values, timed_out) and sets the stop request."""
        names = list(out)
        stop = self._stop_requested
        v = np.array([float(out[k]) for k in names] + [stop == signal.SIGINT, stop == signal.SIGTERM, timed_out],
                     dtype=np.float64)
        self.comm.allreduce_sum(v)
        values = {k: float(x) / self.comm.size for k, x in zip(names, v)}
        if v[-3] or v[-2]:
            self._stop_requested = signal.SIGINT if v[-3] else signal.SIGTERM
            self._stop_agreed = True
        return values, bool(v[-1])

    def check_replicas(self):
        """ReplicaDriftError on every rank unless all ranks hold the same G, D (and G's average)."""
        arrays = {"G": self.opt_G.flat_p, "D": self.opt_D.flat_p}
        if self.ema is not None and self.ema.flat is not None:
            arrays["G's average"] = self.ema.flat
        check_replicas(self.comm, arrays, self.step)

    # ------------------------------------------------------------------ the divergence guard
    def _check_losses(self, values):
        for name in ("d_loss", "g_loss"):
            v = values[name]
            if not math.isfinite(v) or abs(v) > MAX_LOSS:
                raise DivergenceError(
                    f"training diverged at step {self.step}: {name} = {v:.4g} "
                    f"({'not finite' if not math.isfinite(v) else f'beyond the bound {MAX_LOSS:g}'}). "
                    f"{self._kept()}; try a lower learning rate (--lr) or label smoothing")

    def check_health(self) -> None:
        """Raise DivergenceError unless the parameters and gradients of G and D are finite with L2
        norms within MAX_NORM, and the optimisers' state (Adam's moments, ...) is finite. One
        pass per flat buffer, so cheap enough for every logged step."""
        for net, opt in (("G", self.opt_G), ("D", self.opt_D)):
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
                        f"training diverged at step {self.step}: the {what} of {net} "
                        + ("are not finite" if not math.isfinite(total) else f"have norm {total ** 0.5:.4g}, beyond "
                           f"the bound {MAX_NORM:g}") + f". {self._kept()}; try a lower learning rate (--lr)")

    def _kept(self) -> str:
        if self.run_dir is None:
            return "Nothing was saved"
        if self._saved_step is None:
            return "No checkpoint was written (none was due yet)"
        return f"The last good checkpoint (step {self._saved_step}) is kept"

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self):
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                if signal.getsignal(sig) == signal.SIG_IGN:   # e.g. SIGINT under nohup: the caller chose to ignore it
                    continue
                previous[sig] = signal.signal(sig, self._request_stop)
            except ValueError:  # not the main thread: signals are the caller's business
                return {}
        return previous

    @staticmethod
    def _restore_signal_handlers(previous):
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _request_stop(self, signum, frame):
        name = signal.Signals(signum).name
        if self._stop_requested:  # a second Ctrl-C stops at once (the last checkpoint on disk is intact)
            if self._saving:      # but never interrupts a checkpoint being written: right after it
                self._abort_after_save = True
                self._say(f"\n{name}: a checkpoint is being written; stopping right after it")
                return
            raise KeyboardInterrupt
        self._stop_requested = signum
        self._say(f"\n{name}: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

    def _progress(self, total):
        if self.quiet:
            return None
        import sys
        from tqdm import tqdm
        # On a terminal a live bar; in a log file (not a TTY) a line every 10% instead of every refresh.
        tty = sys.stderr.isatty()
        return tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True, smoothing=0.1,
                    mininterval=0.1 if tty else 5.0, miniters=None if tty else max(1, total // 10))

    def _say(self, msg):
        if not self.quiet:
            print(msg, flush=True)

    # ------------------------------------------------------------------ run folder
    def _start_run_folder(self):
        """Once per Trainer: clear what an interrupted run left behind, start a fresh metrics log
        for a fresh run, and write config.json."""
        if not self._started:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            check_run_folder(self.run_dir)
            remove_leftovers(self.run_dir)
            if self.step == 0 and self._saved_step is None:   # a new run never appends to an old log
                (self.run_dir / "metrics.csv").unlink(missing_ok=True)
            self._started = True
        self._write_config()

    def _write_config(self):
        meta = {"train": asdict(self.config), "model": {"kind": self.gan.kind, **self.gan.config},
                "data": self.data_note, "history": self.history}
        atomic_write_bytes(self.run_dir / "config.json", (json.dumps(meta, indent=2) + "\n").encode())

    def _log(self, row):
        if not self.writes:
            return
        path = self.run_dir / "metrics.csv"
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
        if not os.path.lexists(path):
            w.writeheader()
        w.writerow(row)
        append_text(path, buf.getvalue())   # never through a link planted in the run folder

    def _init_monitor(self, labels, class_names, monitor_size):
        """The monitor grid's fixed batches (report.monitor_grid): ``monitor_size`` real images
        drawn once from the data with the run's seed (so a resumed run shows the same ones) and
        as many of the fixed noise vectors (a conditional model's taken class by class in turn:
        0, 1, ..., 9, 0, 1, ...)."""
        if isinstance(monitor_size, bool) or not isinstance(monitor_size, int) or monitor_size < 1:
            raise ValueError(f"Trainer: monitor_size must be an integer >= 1, got {monitor_size!r}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            top = int(labels.max()) if self.gan.conditional and self.n else -1
            if len(class_names) <= top:
                raise ValueError(f"Trainer: class_names has {len(class_names)} names but the labels go up to {top}")
        self.class_names = class_names
        n_fixed = len(self.fixed_z)
        n_real = min(monitor_size, self.n)
        self.monitor_index = np.random.default_rng([self.config.seed, 0x6D6F6E]).choice(self.n, n_real, replace=False)
        idx = self.xp.asarray(self.monitor_index)
        self.monitor_real = self.images[idx]
        self.monitor_real_labels = self.labels[idx] if self.gan.conditional else None
        order = np.arange(n_fixed)
        if self.gan.conditional:   # fixed_labels are grouped by class: take one of each class in turn
            order = order.reshape(len(self.label_set), -1).T.reshape(-1)
        self.monitor_fake_index = order[:min(monitor_size, n_fixed)]

    def on_interval(self, live: bool = False) -> dict:
        """Every ``sample_every`` steps and at the end of train(): write the run folder's
        artefacts, in order, the sample grid (samples.png and samples/step_NNNNNNN.png), the loss
        plot, the monitor grid (monitor.png and monitor/step_NNNNNNN.png), progress.gif and
        report.html (which reloads itself while ``live``). Returns {name: what was written};
        "monitor" is the report.MonitorGrid drawn."""
        run, step = self.run_dir, self.step
        images = self.sampler.generate(z=self.fixed_z, labels=self.fixed_labels)
        out = {"samples": save_grid(images, run / "samples" / f"step_{step:07d}.png", nrow=self.grid_nrow,
                                    output=self.gan.output)}
        save_grid(images, run / "samples.png", nrow=self.grid_nrow, output=self.gan.output)
        if (run / "metrics.csv").exists():
            out["losses"] = plot_losses(run / "metrics.csv", run / "losses.png", self.loss.probabilities)
        out["monitor"] = self.monitor(images, paths=[run / "monitor.png", run / "monitor" / f"step_{step:07d}.png"])
        out["progress"] = report.progress_animation(run)
        out["report"] = report.write_report(run, refresh=report.REFRESH_S if live else None)
        return out

    def monitor(self, fixed_images=None, paths=None) -> "report.MonitorGrid":
        """The monitor grid of the current step: the fixed real batch and the first fixed samples
        (``fixed_images``: G(fixed_z) when already computed), each with D's output."""
        if fixed_images is None:
            fixed_images = self.sampler.generate(z=self.fixed_z, labels=self.fixed_labels)
        idx = self.xp.asarray(self.monitor_fake_index)
        fake_labels = self.fixed_labels[idx] if self.gan.conditional else None
        return report.monitor_grid(self.gan, self.monitor_real, fixed_images[idx], self.monitor_real_labels,
                                   fake_labels, probabilities=self.loss.probabilities, class_names=self.class_names,
                                   step=self.step, path=paths, loss_name=self.config.loss)

    def state(self) -> tuple[dict, dict]:
        arrays = {f"G.{k}": v for k, v in self.gan.G.state_dict().items()}
        arrays.update({f"D.{k}": v for k, v in self.gan.D.state_dict().items()})
        arrays.update({f"optG.{k}": v for k, v in self.opt_G.state_dict().items()})
        arrays.update({f"optD.{k}": v for k, v in self.opt_D.state_dict().items()})
        if self.ema is not None:
            arrays.update({f"Gema.{k}": v for k, v in self.ema.state_dict().items()})
        meta = {"step": self.step, "batch_index": self.batch_index, "noise_calls": self.noise_calls,
                "train": asdict(self.config), "model": {"kind": self.gan.kind, **self.gan.config},
                "dtype": str(self.gan.G.dtype), "backend": backend.name(), "format": "scratchgan-checkpoint-1"}
        if self.class_names is not None:   # so that `sample --label A` can name a class of this run
            meta["class_names"] = list(self.class_names)
        return arrays, meta

    def load_state(self, arrays, meta) -> None:
        """Restore weights, optimiser state and position from a checkpoint's (arrays, meta).
        CheckpointError, with nothing changed, when they do not fit this trainer's model."""
        check_meta(meta)
        if meta.get("dtype", "float32") != str(self.gan.G.dtype):
            raise CheckpointError(f"checkpoint holds {meta.get('dtype')} weights but the model is {self.gan.G.dtype}; "
                                  f"build the model with that dtype (scratchgan train --resume does)")
        _check_arrays(arrays)
        parts = {prefix: {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                 for prefix in ("G.", "D.", "optG.", "optD.", "Gema.")}
        try:
            self.gan.G.load_state_dict(parts["G."])
            self.gan.D.load_state_dict(parts["D."])
            self.opt_G.load_state_dict(parts["optG."])
            self.opt_D.load_state_dict(parts["optD."])
            if self.ema is not None and parts["Gema."]:
                self.ema.load_state_dict(parts["Gema."])
            elif self.ema is not None:     # a run without an average so far: it starts from the loaded G
                self.ema = EMA(self.gan.G, self.config.ema, source=self.opt_G.flat_p)
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint does not fit this model: {_message(exc)}") from None
        self.step, self.batch_index, self.noise_calls = meta["step"], meta["batch_index"], meta["noise_calls"]

    def check_saveable(self) -> tuple[dict, dict]:
        """The checkpoint's (arrays, meta), or DivergenceError when the guard's bounds are exceeded or
        any array (buffers too: BatchNorm statistics) is not finite."""
        self.check_health()
        arrays, meta = self.state()
        for name, a in arrays.items():
            if np.dtype(a.dtype).kind == "f" and not bool(backend.array_module(a).isfinite(a).all()):
                raise DivergenceError(f"training diverged at step {self.step}: {name} is not finite; "
                                      f"not saving it. {self._kept()}")
        return arrays, meta

    def save(self):
        """Write a checkpoint of the current step. Refuses (DivergenceError) when any array is not
        finite or the guard's bounds are exceeded, so no saved array is ever NaN or inf."""
        arrays, meta = self.check_saveable()
        ckpt_dir = self.run_dir / "checkpoints"
        self._saving = True            # a signal now waits until the checkpoint is complete
        try:
            path = save_checkpoint(ckpt_dir / f"step_{self.step:07d}", arrays, meta)
            self._saved_step = self.step
            # Keep the newest few; older ones are removed only after the new one is complete.
            for _, old in list_checkpoints(ckpt_dir)[:-self.config.keep_checkpoints]:
                remove_checkpoint(old)
        finally:
            self._saving = False
        if self._abort_after_save:
            self._abort_after_save = False
            raise KeyboardInterrupt
        return path

    def resume(self) -> bool:
        """Load the newest checkpoint of the run folder; False when there is none.

        Every checkpoint's metadata in the folder is checked first (the arrays file each names
        must be its own), so that pruning later can never delete a file the run did not write;
        the newest must load, or CheckpointError says why (an older one is not silently used)."""
        folder = self.run_dir / "checkpoints" if self.run_dir else None
        found = list_checkpoints(folder) if folder else []
        if not found:
            return False
        for _, meta_path in found:
            try:
                meta = read_meta(meta_path)
            except CheckpointError:
                continue               # unreadable: it names nothing, pruning removes the .json alone
            arrays_path(meta_path, meta)   # raises for a hostile name, before anything is touched
        path = found[-1][1]
        arrays, meta = load_checkpoint(path)
        try:
            self.load_state(arrays, meta)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        self._saved_step = self.step
        if self.writes:
            self._truncate_metrics()
        self._say(f"resumed from {path} (step {self.step})")
        return True

    def _truncate_metrics(self):
        """Drop log rows written after the checkpoint (a crash between checkpoints). A log that
        cannot be read as this run's metrics is refused (RunFolderError), not rewritten."""
        path = self.run_dir / "metrics.csv"
        if not os.path.lexists(path):
            return
        try:
            text = read_bytes(path, "metrics log").decode("utf-8")
            if not text.endswith("\n"):             # a row torn by a crash mid-append: dropped
                text = text[:text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(text, newline=""))
            rows = list(reader)
            if reader.fieldnames != METRIC_FIELDS or any(None in r or None in r.values() for r in rows):
                raise ValueError("the header or a row does not have the columns " + ",".join(METRIC_FIELDS))
            rows = [r for r in rows if int(r["step"]) <= self.step]
        except UnsafeFileError:
            raise
        except (ValueError, UnicodeDecodeError, csv.Error, OSError) as exc:
            raise RunFolderError(f"{path}: cannot be read as this run's metrics ({exc}); move it away to resume "
                                 "(a new one is started)") from None
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(path, buf.getvalue().encode())


def _message(exc) -> str:
    """An exception's text without the quotes KeyError puts around it."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _check_arrays(arrays):
    """Floating arrays only where the model has them, all finite (a saved run never holds NaN/inf)."""
    for name, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise CheckpointError(f"checkpoint array {name!r} has dtype {a.dtype}, not a real number type")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"checkpoint array {name!r} holds NaN or inf values")


def load_run(run_dir, checkpoint=None, use_ema: bool = True):
    """(gan, meta) from a run folder's newest (or a given) checkpoint, on the selected backend.
    With ``use_ema`` (the default) G gets the moving average of its weights when the run kept one
    (--ema); meta["weights"] says which ("ema" or "raw"). CheckpointError naming the file when it
    is missing, damaged or does not describe a model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder" if not run_dir.exists() else
                              f"{run_dir}: not a run folder (a file)")
    path = checkpoint or latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found in {run_dir / 'checkpoints'}")
    arrays, meta = load_checkpoint(path)
    check_meta(meta, path)
    try:
        # the .json's settings are not covered by the arrays' checksum: build no more weights than they carry
        with parameter_budget(sum(a.nbytes for a in arrays.values()) // 4, "the model its metadata describes"):
            gan = _build_from_meta(meta)
        _check_arrays(arrays)
        g_prefix = "Gema." if use_ema and any(k.startswith("Gema.") for k in arrays) else "G."
        meta = dict(meta, weights="ema" if g_prefix == "Gema." else "raw")
        for net, prefix in ((gan.G, g_prefix), (gan.D, "D.")):
            try:
                part = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                if prefix == "Gema.":
                    part.pop("updates", None)      # the average's update count, not a weight
                net.load_state_dict(part)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{prefix[0]}: {_message(exc)}") from None
    except (CheckpointError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: does not describe a model this version can load "
                              f"({_message(exc)})") from None
    return gan, meta


def _build_from_meta(meta) -> GAN:
    """The model a checkpoint's metadata describes (its "model" entry: kind and builder arguments)."""
    model = meta.get("model")
    if not isinstance(model, dict) or model.get("kind") not in MODELS:
        raise CheckpointError(f"'model' must name one of {', '.join(MODELS)}, got {model!r:.100}")
    if meta.get("dtype", "float32") not in ("float32", "float64"):
        raise CheckpointError(f"'dtype' must be float32 or float64, got {meta.get('dtype')!r:.40}")
    model = dict(model)
    gan = build(model.pop("kind"), **model)
    if meta.get("dtype") == "float64":
        gan.astype(np.float64)
    return gan
