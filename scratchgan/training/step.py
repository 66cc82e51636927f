"""Goodfellow's alternating algorithm (2014, Algorithm 1), with the non-saturating generator
loss by default: the state of a GAN's training and one step of it. One step is:

    for j in 1..k:                                     (k discriminator steps)
        x ~ data,  z ~ p(z),  x~ = G(z)
        D: descend  BCE(D(x), 1 - smoothing) + BCE(D(x~), 0)
    G: descend  -log D(x~)   (or log(1 - D(x~)) with --g-loss minimax)

The fake batch of the last D step is reused for the G step (as in the PyTorch DCGAN recipe):
G's forward cache is still valid because only D has changed. D's weights are "frozen" in the G
step: the gradient flows through D to the images (D.backward_input), and D's weight gradients,
which no optimiser step would use, are not formed. docs/gan-objective.md maps each line of the
algorithm to the code below.

All randomness is (seed, counter) based: noise for step t comes from random_generator(seed, t),
data order from (seed, epoch), Dropout masks from each layer's own counter. ``state()`` therefore
holds a few integers of random state, and a resumed run is bit-identical to an uninterrupted one
on the CPU.

Data-parallel (``comm``, distributed.py, under mpiexec): every rank draws the global batch's
indices and noise and keeps its rows; the one call between each backward and its optimiser step,
``comm.allreduce_mean(flat gradients)``, makes the step of the whole batch.

No files, no printing, no signals here: the loop (loop.py) runs steps, and everything around
them is a callback (callbacks.py).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict

import numpy as np

from .. import backend, losses
from ..models import GAN
from ..optim import Adam, RMSprop
from .checkpoint import CheckpointError, check_arrays, check_meta, error_text
from .config import TrainConfig
from .distributed import Communicator, data_parallel
from .ema import EMA

__all__ = ["GANStep"]


class GANStep:
    """G, D, their optimisers, the loss, the penalty, G's moving average and the (seed, counter)
    streams of one GAN's training; ``train_step()`` takes one step of Algorithm 1.

    ``images``: (N, C, H, W) host array already scaled to G's output range; ``labels``: (N,)
    integers or None. ``comm``: the ranks of a data-parallel run (each takes
    config.batch_size / comm.size items of every batch)."""

    def __init__(self, gan: GAN, images, labels, config: TrainConfig, comm: Communicator | None = None):
        config.validate()
        self.comm = comm if comm is not None else Communicator()
        self.rows = self.comm.rows(config.batch_size)     # this rank's items of each global batch
        self.gan, self.config = gan, config
        self.xp = backend.xp()
        name = type(self).__name__
        if tuple(np.shape(images)[1:]) != tuple(gan.image_shape):
            raise ValueError(f"{name}: the images are {'x'.join(map(str, np.shape(images)[1:]))} but the model "
                             f"takes {'x'.join(map(str, gan.image_shape))}")
        self.images = backend.asarray(images, dtype=gan.G.dtype)
        self.n = len(images)
        labels = np.zeros(self.n, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        if labels.shape != (self.n,):
            raise ValueError(f"{name}: {self.n} images but labels of shape {labels.shape}")
        if gan.conditional and self.n and (labels.min() < 0 or labels.max() >= gan.num_classes):
            raise ValueError(f"{name}: labels must be in [0, {gan.num_classes}) for this model, "
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
            from ..penalty import GradientPenalty
            # a conditional critic: the gradient with respect to the image only (penalty.py)
            self.penalty = GradientPenalty(gan.D, weight=self.loss.gradient_penalty,
                                           image_features=int(np.prod(gan.image_shape)) if gan.conditional else None)
        self.step = 0            # completed generator steps
        self.batch_index = 0     # real batches consumed (epoch = batch_index // batches_per_epoch)
        self.noise_calls = 0     # noise batches drawn
        self._perm = None
        self._perm_epoch = -1

    def _optimizer(self, net, lr):
        cfg = self.config
        if cfg.optimizer == "rmsprop":
            return RMSprop(net, lr=lr)
        return Adam(net, lr=lr, betas=(cfg.beta1, cfg.beta2))

    @property
    def sampler(self) -> GAN:
        """The GAN that samples are drawn from: G's moving average when --ema is on, else G."""
        return self.gan if self.ema is None else dataclasses.replace(self.gan, G=self.ema.average)

    @property
    def epoch(self) -> float:
        return self.batch_index / self.batches_per_epoch

    def total_steps(self) -> int:
        cfg = self.config
        if cfg.epochs is not None:
            return int(math.ceil(cfg.epochs * self.batches_per_epoch / cfg.k))
        return cfg.steps

    # ------------------------------------------------------------------ data and noise
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
        from ..penalty import interpolates
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

    # ------------------------------------------------------------------ state
    def state(self) -> tuple[dict, dict]:
        """(arrays, meta) of a checkpoint: weights, optimiser state, G's average; the step, the
        streams' counters, the config and the model's description."""
        arrays = {f"G.{k}": v for k, v in self.gan.G.state_dict().items()}
        arrays.update({f"D.{k}": v for k, v in self.gan.D.state_dict().items()})
        arrays.update({f"optG.{k}": v for k, v in self.opt_G.state_dict().items()})
        arrays.update({f"optD.{k}": v for k, v in self.opt_D.state_dict().items()})
        if self.ema is not None:
            arrays.update({f"Gema.{k}": v for k, v in self.ema.state_dict().items()})
        meta = {"step": self.step, "batch_index": self.batch_index, "noise_calls": self.noise_calls,
                "train": asdict(self.config), "model": {"kind": self.gan.kind, **self.gan.config},
                "dtype": str(self.gan.G.dtype), "backend": backend.name(), "format": "scratchgan-checkpoint-1"}
        return arrays, meta

    def load_state(self, arrays, meta) -> None:
        """Restore weights, optimiser state and position from a checkpoint's (arrays, meta).
        CheckpointError, with nothing changed, when they do not fit this model."""
        check_meta(meta)
        if meta.get("dtype", "float32") != str(self.gan.G.dtype):
            raise CheckpointError(f"checkpoint holds {meta.get('dtype')} weights but the model is {self.gan.G.dtype}; "
                                  f"build the model with that dtype (scratchgan train --resume does)")
        check_arrays(arrays)
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
            raise CheckpointError(f"checkpoint does not fit this model: {error_text(exc)}") from None
        self.step, self.batch_index, self.noise_calls = meta["step"], meta["batch_index"], meta["noise_calls"]
