"""Goodfellow's alternating algorithm (2014, Algorithm 1), with the non-saturating
generator loss by default. One training step is:

    for j in 1..k:                                     (k discriminator steps)
        x ~ data,  z ~ p(z),  x~ = G(z)
        D: descend  BCE(D(x), 1 - smoothing) + BCE(D(x~), 0)
    G: descend  -log D(x~)   (or log(1 - D(x~)) with --g-loss minimax)

The fake batch of the last D step is reused for the G step (as in the PyTorch DCGAN
recipe): G's forward cache is still valid because only D has changed. D's weights are
"frozen" in the G step by not stepping D's optimiser; the gradient still flows through D.
docs/gan-objective.md maps each line of the algorithm to the code below.

All randomness is (seed, counter) based: noise for step t comes from
random_generator(seed, t), data order from (seed, epoch), Dropout masks from each
layer's own counter. A checkpoint therefore holds a few integers of random state, and
a resumed run is bit-identical to an uninterrupted one on the CPU.
"""
from __future__ import annotations

import csv
import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import backend, losses
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, remove_checkpoint, save_checkpoint
from .images import plot_losses, save_grid
from .layers.activations import sigmoid
from .models import GAN, build
from .optim import Adam

__all__ = ["TrainConfig", "Trainer", "DivergenceError", "load_run"]


class DivergenceError(RuntimeError):
    """A loss became NaN or inf."""


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
    beta1: float = 0.5
    beta2: float = 0.999
    k: int = 1                                       # discriminator steps per generator step
    g_loss: str = "nonsaturating"                    # or "minimax"
    label_smoothing: float = 0.0                     # one-sided: real target = 1 - label_smoothing
    seed: int = 0
    backend: str = "numpy"
    dtype: str = "float32"                           # "float64" for checks; a resumed run keeps its dtype
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 1000
    n_samples: int = 64                              # size of the fixed-noise sample grid
    keep_checkpoints: int = 3                        # the newest few are kept (at least 1)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)


METRIC_FIELDS = ["step", "epoch", "d_loss", "g_loss", "d_real", "d_fake", "time_s", "samples_per_s"]


class Trainer:
    """Trains one GAN on an (N, 1, 28, 28) float array, writing a run folder.

    trainer = Trainer(gan, images, labels, config, run_dir); trainer.train()
    ``images`` are host arrays already scaled to the generator's output range.
    """

    def __init__(self, gan: GAN, images, labels, config: TrainConfig, run_dir=None, quiet=False, data_note=""):
        self.gan, self.config, self.quiet = gan, config, quiet
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.xp = backend.xp()
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
        self.labels = backend.asarray(labels)
        if self.n < config.batch_size:
            raise ValueError(f"batch size {config.batch_size} is larger than the data set ({self.n} images)")
        self.batches_per_epoch = self.n // config.batch_size
        self.opt_G = Adam(gan.G, lr=config.lr, betas=(config.beta1, config.beta2))
        self.opt_D = Adam(gan.D, lr=config.lr, betas=(config.beta1, config.beta2))
        self.step = 0            # completed generator steps
        self.batch_index = 0     # real batches consumed (epoch = batch_index // batches_per_epoch)
        self.noise_calls = 0     # noise batches drawn
        self.data_note = data_note
        self._perm = None
        self._perm_epoch = -1
        self._stop_requested = False
        self._saved_step = None
        if config.k < 1:
            raise ValueError(f"k (discriminator steps per generator step) must be at least 1, got {config.k}")
        if config.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1, got {config.keep_checkpoints}")
        self.g_loss_fn = losses.G_LOSSES[config.g_loss] if config.g_loss in losses.G_LOSSES else None
        if self.g_loss_fn is None:
            raise ValueError(f"unknown g_loss {config.g_loss!r}; choose from {sorted(losses.G_LOSSES)}")
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

    # ------------------------------------------------------------------ data and noise
    @property
    def epoch(self) -> float:
        return self.batch_index / self.batches_per_epoch

    def _real_batch(self):
        epoch, i = divmod(self.batch_index, self.batches_per_epoch)
        if epoch != self._perm_epoch:
            order = np.random.default_rng([self.config.seed, epoch]).permutation(self.n)
            self._perm, self._perm_epoch = self.xp.asarray(order), epoch
        idx = self._perm[i * self.config.batch_size:(i + 1) * self.config.batch_size]
        self.batch_index += 1
        return self.images[idx], self.labels[idx]

    def _noise(self, n):
        rng = backend.random_generator(self.xp, self.config.seed + 1, self.noise_calls)
        self.noise_calls += 1
        z = self.gan.sample_noise(n, rng)
        if not self.gan.conditional:
            return z, None
        label_set = self.xp.asarray(self.label_set)
        return z, label_set[rng.integers(0, len(label_set), size=n)]

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict:
        """k discriminator steps and one generator step. Returns device scalars."""
        gan, cfg = self.gan, self.config
        G, D = gan.G, gan.D
        real_target = 1.0 - cfg.label_smoothing
        for _ in range(cfg.k):
            x, y = self._real_batch()
            z, y_fake = self._noise(len(x))
            fake, g_cache = G.forward(gan.g_input(z, y_fake))
            self.opt_D.zero_grad()
            logits_real, cache_real = D.forward(gan.d_input(x, y))
            logits_fake, cache_fake = D.forward(gan.d_input(fake, y_fake))
            d_loss, d_real, d_fake = losses.d_loss(logits_real, logits_fake, real_target)
            D.backward(d_real, cache_real, input_grad=False)  # D's inputs need no gradient here
            D.backward(d_fake, cache_fake, input_grad=False)
            self.opt_D.step()
        # Generator step on the last fake batch, through the just-updated D.
        logits_fake, cache_fake = D.forward(gan.d_input(fake, y_fake))
        g_loss, dlogits = self.g_loss_fn(logits_fake)
        d_in = D.backward(dlogits, cache_fake)  # D's grads are cleared before its next step
        self.opt_G.zero_grad()
        G.backward(gan.d_input_grad_to_images(d_in, fake.shape), g_cache, input_grad=False)  # z needs none
        self.opt_G.step()
        self.step += 1
        return {"d_loss": d_loss, "g_loss": g_loss,
                "d_real": sigmoid(logits_real).mean(), "d_fake": sigmoid(logits_fake).mean()}

    # ------------------------------------------------------------------ the loop
    def total_steps(self) -> int:
        cfg = self.config
        if cfg.epochs is not None:
            return int(math.ceil(cfg.epochs * self.batches_per_epoch / cfg.k))
        return cfg.steps

    def train(self, steps=None) -> dict:
        """Train until ``steps`` (default: the config's) generator steps are done."""
        total = self.total_steps() if steps is None else steps
        cfg = self.config
        if self.run_dir is not None:
            self._write_config()
        on_cpu = self.xp is np
        previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._request_stop)
        except ValueError:  # not the main thread: Ctrl-C handling is the caller's business
            previous = None
        bar = self._progress(total)
        last = {}
        t0, step0 = time.perf_counter(), self.step
        try:
            while self.step < total and not self._stop_requested:
                out = self.train_step()
                log_now = self.step % cfg.log_every == 0 or self.step == total
                save_now = self.run_dir is not None and self.step % cfg.checkpoint_every == 0
                if on_cpu or log_now or save_now:  # on a GPU, fetch values only when logging or saving
                    values = {k: float(v) for k, v in out.items()}
                    if not all(math.isfinite(values[k]) for k in ("d_loss", "g_loss")):
                        raise DivergenceError(
                            f"training diverged at step {self.step}: d_loss={values['d_loss']}, "
                            f"g_loss={values['g_loss']}. The last good checkpoint is kept; try a lower "
                            f"learning rate (--lr) or label smoothing.")
                if log_now:
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
                if self.run_dir is not None:
                    if self.step % cfg.sample_every == 0:
                        self.save_samples()
                    if save_now:
                        self.save()
        finally:
            if bar is not None:
                bar.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self.run_dir is not None:
            # Unless the loop's last iteration already wrote them:
            if self.step % cfg.sample_every != 0:
                self.save_samples()
            if self.step != self._saved_step:
                self.save()
            if self._stop_requested:
                self._say(f"interrupted: checkpoint saved at step {self.step} in {self.run_dir}; "
                          f"continue with --resume")
        return last

    def _request_stop(self, signum, frame):
        if self._stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._stop_requested = True
        self._say("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

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
    def _write_config(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = {"train": asdict(self.config), "model": {"kind": self.gan.kind, **self.gan.config},
                "data": self.data_note}
        (self.run_dir / "config.json").write_text(json.dumps(meta, indent=2))

    def _log(self, row):
        if self.run_dir is None:
            return
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)

    def save_samples(self):
        images = self.gan.generate(z=self.fixed_z, labels=self.fixed_labels)
        path = save_grid(images, self.run_dir / "samples" / f"step_{self.step:07d}.png", nrow=self.grid_nrow,
                         output=self.gan.output)
        save_grid(images, self.run_dir / "samples.png", nrow=self.grid_nrow, output=self.gan.output)
        if (self.run_dir / "metrics.csv").exists():
            plot_losses(self.run_dir / "metrics.csv", self.run_dir / "losses.png")
        return path

    def state(self) -> tuple[dict, dict]:
        arrays = {f"G.{k}": v for k, v in self.gan.G.state_dict().items()}
        arrays.update({f"D.{k}": v for k, v in self.gan.D.state_dict().items()})
        arrays.update({f"optG.{k}": v for k, v in self.opt_G.state_dict().items()})
        arrays.update({f"optD.{k}": v for k, v in self.opt_D.state_dict().items()})
        meta = {"step": self.step, "batch_index": self.batch_index, "noise_calls": self.noise_calls,
                "train": asdict(self.config), "model": {"kind": self.gan.kind, **self.gan.config},
                "dtype": str(self.gan.G.dtype), "backend": backend.name(), "format": "scratchgan-checkpoint-1"}
        return arrays, meta

    def load_state(self, arrays, meta) -> None:
        if meta.get("dtype", "float32") != str(self.gan.G.dtype):
            raise CheckpointError(f"checkpoint holds {meta.get('dtype')} weights but the model is {self.gan.G.dtype}; "
                                  f"build the model with that dtype (scratchgan train --resume does)")
        def part(prefix):
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            self.gan.G.load_state_dict(part("G."))
            self.gan.D.load_state_dict(part("D."))
            self.opt_G.load_state_dict(part("optG."))
            self.opt_D.load_state_dict(part("optD."))
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint does not fit this model: {exc}") from None
        self.step, self.batch_index, self.noise_calls = meta["step"], meta["batch_index"], meta["noise_calls"]

    def save(self):
        """Write a checkpoint of the current step (refuses non-finite weights)."""
        for name, p, _ in list(self.gan.G.named_parameters()) + list(self.gan.D.named_parameters()):
            if not bool(backend.array_module(p).isfinite(p).all()):
                raise DivergenceError(f"training diverged at step {self.step}: parameter {name} is not finite; "
                                      "not saving it over the last good checkpoint")
        arrays, meta = self.state()
        ckpt_dir = self.run_dir / "checkpoints"
        path = save_checkpoint(ckpt_dir / f"step_{self.step:07d}", arrays, meta)
        self._saved_step = self.step
        # Keep the newest few; older ones are removed only after the new one is complete.
        olds = sorted(ckpt_dir.glob("step_*.json"))[:-self.config.keep_checkpoints]
        for old in olds:
            remove_checkpoint(old)
        return path

    def resume(self) -> bool:
        """Load the newest checkpoint of the run folder; False when there is none."""
        path = latest_checkpoint(self.run_dir / "checkpoints") if self.run_dir else None
        if path is None:
            return False
        self.load_state(*load_checkpoint(path))
        self._saved_step = self.step
        self._truncate_metrics()
        self._say(f"resumed from {path} (step {self.step})")
        return True

    def _truncate_metrics(self):
        """Drop log rows written after the checkpoint (a crash between checkpoints)."""
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows(rows)


def load_run(run_dir, checkpoint=None):
    """(gan, meta) from a run folder's newest (or a given) checkpoint, on the selected backend."""
    run_dir = Path(run_dir)
    path = checkpoint or latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found in {run_dir / 'checkpoints'}")
    arrays, meta = load_checkpoint(path)
    model = dict(meta["model"])
    gan = build(model.pop("kind"), **model)
    if meta.get("dtype") == "float64":
        gan.astype(np.float64)
    for net, prefix in ((gan.G, "G."), (gan.D, "D.")):
        net.load_state_dict({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
    return gan, meta
