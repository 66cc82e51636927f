"""The pictures a run folder shows while it trains, every ``sample_every`` steps and at the end
(docs/monitoring.md): the sample grid of fixed noise (samples.png, samples/step_NNNNNNN.png), the
loss plot, the monitor grid (monitor.png, monitor/step_NNNNNNN.png: a fixed real batch and fixed
samples, each with D's output), progress.gif and report.html."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..files.images import plot_losses, save_grid
from . import report
from .loop import Callback

__all__ = ["Artefacts"]


class Artefacts(Callback):
    """The fixed batches every grid is drawn from, and the callback that writes the grids.

    ``step``: the GANStep; ``run``: the RunFolder written to (rank 0), or None to draw without
    writing; ``class_names``: a conditional run's class names, for the monitor's captions."""

    def __init__(self, step, run=None, every: int = 500, class_names=None, monitor_size: int = report.MONITOR_SIZE):
        self.step, self.run, self.every = step, run, every
        gan, cfg, xp = step.gan, step.config, step.xp
        # The fixed noise (and labels) every sample grid is drawn from: a conditional model's class by class.
        fixed_rng = backend.random_generator(xp, cfg.seed, 2**31 - 1)
        if gan.conditional:
            per_class = max(1, cfg.n_samples // len(step.label_set))
            self.fixed_labels = xp.asarray(np.repeat(step.label_set, per_class))
            self.grid_nrow = per_class                 # one row per class
        else:
            self.fixed_labels = None
            self.grid_nrow = int(math.ceil(math.sqrt(cfg.n_samples)))
        n_fixed = len(self.fixed_labels) if gan.conditional else cfg.n_samples
        self.fixed_z = gan.sample_noise(n_fixed, fixed_rng)
        self._init_monitor(class_names, monitor_size)

    def _init_monitor(self, class_names, monitor_size):
        """The monitor grid's fixed batches (report.monitor_grid): ``monitor_size`` real images
        drawn once from the data with the run's seed (so a resumed run shows the same ones) and
        as many of the fixed noise vectors (a conditional model's taken class by class in turn:
        0, 1, ..., 9, 0, 1, ...)."""
        step, name = self.step, type(self.step).__name__
        if isinstance(monitor_size, bool) or not isinstance(monitor_size, int) or monitor_size < 1:
            raise ValueError(f"{name}: monitor_size must be an integer >= 1, got {monitor_size!r}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            top = int(backend.to_numpy(step.labels).max()) if step.gan.conditional and step.n else -1
            if len(class_names) <= top:
                raise ValueError(f"{name}: class_names has {len(class_names)} names but the labels go up to {top}")
        self.class_names = class_names
        n_fixed = len(self.fixed_z)
        n_real = min(monitor_size, step.n)
        self.monitor_index = np.random.default_rng([step.config.seed, 0x6D6F6E]).choice(step.n, n_real, replace=False)
        idx = step.xp.asarray(self.monitor_index)
        self.monitor_real = step.images[idx]
        self.monitor_real_labels = step.labels[idx] if step.gan.conditional else None
        order = np.arange(n_fixed)
        if step.gan.conditional:   # fixed_labels are grouped by class: take one of each class in turn
            order = order.reshape(len(step.label_set), -1).T.reshape(-1)
        self.monitor_fake_index = order[:min(monitor_size, n_fixed)]

    def monitor(self, fixed_images=None, paths=None) -> "report.MonitorGrid":
        """The monitor grid of the current step: the fixed real batch and the first fixed samples
        (``fixed_images``: G(fixed_z) when already computed), each with D's output."""
        step = self.step
        if fixed_images is None:
            fixed_images = step.sampler.generate(z=self.fixed_z, labels=self.fixed_labels, fused=False)
        idx = step.xp.asarray(self.monitor_fake_index)
        fake_labels = self.fixed_labels[idx] if step.gan.conditional else None
        return report.monitor_grid(step.gan, self.monitor_real, fixed_images[idx], self.monitor_real_labels,
                                   fake_labels, probabilities=step.loss.probabilities, class_names=self.class_names,
                                   step=step.step, path=paths, loss_name=step.config.loss)

    def write(self, live: bool = False) -> dict:
        """Write the run folder's pictures of the current step, in order: the sample grid, the loss
        plot, the monitor grid, progress.gif and report.html (which reloads itself while ``live``).
        Returns {name: what was written}; "monitor" is the report.MonitorGrid drawn."""
        run, step = self.run.path, self.step.step
        images = self.step.sampler.generate(z=self.fixed_z, labels=self.fixed_labels, fused=False)
        output = self.step.gan.output
        out = {"samples": save_grid(images, run / "samples" / f"step_{step:07d}.png", nrow=self.grid_nrow,
                                    output=output)}
        save_grid(images, run / "samples.png", nrow=self.grid_nrow, output=output)
        if (run / "metrics.csv").exists():
            out["losses"] = plot_losses(run / "metrics.csv", run / "losses.png", self.step.loss.probabilities)
        out["monitor"] = self.monitor(images, paths=[run / "monitor.png", run / "monitor" / f"step_{step:07d}.png"])
        out["progress"] = report.progress_animation(run)
        out["report"] = report.write_report(run, refresh=report.REFRESH_S if live else None)
        return out

    def on_step_end(self, loop):
        if self.run is not None and loop.step.step % self.every == 0:
            ending = loop.step.step == loop.total or loop.stop is not None or loop.requested is not None
            self.write(live=not ending)

    def on_train_end(self, loop):
        if self.run is not None and loop.step.step % self.every != 0:
            self.write()
