"""The Trainer: a GANStep (step.py, Algorithm 1) with a run folder and the callbacks around its
steps, as `scratchgan train` runs them.

    trainer = Trainer(gan, images, labels, config, run_dir="runs/x"); trainer.train()

The run is guarded (guard.py, docs/reliability.md): a loss or norm beyond the guard's bounds or
any NaN/inf stops it with DivergenceError naming the step, before anything non-finite is saved;
Ctrl-C or SIGTERM finish the step, save and stop. In a data-parallel run (``comm``,
distributed.py) the step's losses and a stop are agreed by all ranks every step, and rank 0 alone
writes the run folder.
"""
from __future__ import annotations

import signal
from dataclasses import asdict
from pathlib import Path

from ..models import GAN
from . import report
from .artefacts import Artefacts
from .callbacks import Checkpoints, MetricsLog, ProgressBar, ReplicaCheck, StopOnSignal
from .checkpoint import CheckpointError
from .config import TrainConfig
from .distributed import Communicator
from .guard import DivergenceGuard, check_health
from .loop import fit
from .runfolder import RunFolder
from .step import GANStep

__all__ = ["Trainer"]


class Trainer(GANStep):
    """Trains one GAN on an (N, C, H, W) float array, writing a run folder.

    ``images`` are host arrays already scaled to the generator's output range. ``run_dir``: the run
    folder (None: train without writing anything); ``class_names``: a conditional run's, for the
    monitor grid and the checkpoints; ``comm``: the ranks of a data-parallel run (each takes
    config.batch_size / comm.size items of every batch); rank 0 alone writes and prints."""

    def __init__(self, gan: GAN, images, labels, config: TrainConfig, run_dir=None, quiet=False, data_note="",
                 class_names=None, monitor_size: int = report.MONITOR_SIZE, comm: Communicator | None = None):
        super().__init__(gan, images, labels, config, comm)
        self.quiet = quiet or self.comm.rank != 0
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writes = self.run_dir is not None and self.comm.rank == 0
        self.run = RunFolder(self.run_dir) if self.writes else None
        self.data_note = data_note
        self.history = []             # changes of settings on resume, kept in config.json
        self.stop_signal = None       # the signal (SIGINT, SIGTERM) that stopped the last train()
        self.stopped_by_time = False  # the last train() ended at config.max_time
        self.artefacts = Artefacts(self, self.run, config.sample_every, class_names, monitor_size)
        # every rank of a run with a folder: rank 0 saves, the others check the same state could be saved
        self.checkpoints = (Checkpoints(self.state, config.checkpoint_every, config.keep_checkpoints, self.run)
                            if self.run_dir is not None else None)

    def callbacks(self, log: MetricsLog) -> list:
        """The callbacks of one train(), in the order they act after each step (callbacks.py)."""
        cfg = self.config
        out = [StopOnSignal(self._say), DivergenceGuard(cfg.log_every, self.checkpoints)]
        if self.comm.size > 1:
            out.append(ReplicaCheck(self.checkpoints))
        out.append(log)
        if not self.quiet:
            out.append(ProgressBar(log))
        if self.checkpoints is not None:     # the checkpoint first, so that report.html links it
            self.checkpoints.every, self.checkpoints.keep = cfg.checkpoint_every, cfg.keep_checkpoints
            out.append(self.checkpoints)
        if self.writes:
            self.artefacts.every = cfg.sample_every
            out.append(self.artefacts)
        return out

    def train(self, steps=None) -> dict:
        """Train until ``steps`` (default: the config's) generator steps are done; returns the last
        row of metrics logged.

        Stops early, after finishing the step and saving a checkpoint, on Ctrl-C (SIGINT) or
        SIGTERM (``self.stop_signal`` then holds the signal) or at config.max_time. Raises
        DivergenceError (nothing is saved) when the guard finds the run blown up."""
        total = self.total_steps() if steps is None else steps
        if self.writes:
            self.run.start(fresh=self.step == 0 and self.checkpoints.saved_step is None)
            self.run.write_config({"train": asdict(self.config), "model": {"kind": self.gan.kind, **self.gan.config},
                                   "data": self.data_note, "history": self.history})
        log = MetricsLog(self.config.log_every, self.run)
        loop = fit(self, total, self.callbacks(log), self.config.max_time)
        self.stopped_by_time = loop.stop == "time"
        self.stop_signal = loop.stop if loop.stop not in (None, "time") else None
        if self.stopped_by_time and self.run_dir is not None:
            self._say(f"stopped at the time limit ({self.config.max_time:g} s) at step {self.step}; checkpoint saved "
                      f"in {self.run_dir}; continue with --resume")
        if self.stop_signal and self.run_dir is not None:
            self._say(f"stopped by {signal.Signals(self.stop_signal).name}: checkpoint saved at step "
                      f"{self.step} in {self.run_dir}; continue with --resume")
        return log.last

    def state(self) -> tuple[dict, dict]:
        arrays, meta = super().state()
        if self.artefacts.class_names is not None:   # so that `sample --label A` can name a class of this run
            meta["class_names"] = list(self.artefacts.class_names)
        return arrays, meta

    def resume(self) -> bool:
        """Load the newest checkpoint of the run folder (RunFolder.newest_checkpoint); False when
        there is none. Log rows written after it (a crash between checkpoints) are dropped."""
        found = RunFolder(self.run_dir).newest_checkpoint() if self.run_dir is not None else None
        if found is None:
            return False
        arrays, meta, path = found
        try:
            self.load_state(arrays, meta)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        self.checkpoints.saved_step = self.step
        if self.writes:
            self.run.truncate_metrics(self.step)
        self._say(f"resumed from {path} (step {self.step})")
        return True

    def save(self):
        """Write a checkpoint of the current step (Checkpoints.save): refused (DivergenceError) when
        any array is not finite or the guard's bounds are exceeded."""
        return self.checkpoints.save(self)

    def check_health(self) -> None:
        """DivergenceError unless G's and D's weights, gradients and optimiser state are sound (guard.py)."""
        check_health(self, self.checkpoints.kept() if self.checkpoints is not None else "Nothing was saved")

    def on_interval(self, live: bool = False) -> dict:
        """Write the run folder's pictures of the current step (Artefacts.write)."""
        return self.artefacts.write(live)

    def monitor(self, fixed_images=None, paths=None) -> "report.MonitorGrid":
        """The monitor grid of the current step (Artefacts.monitor)."""
        return self.artefacts.monitor(fixed_images, paths)

    def _say(self, msg):
        if not self.quiet:
            print(msg, flush=True)
