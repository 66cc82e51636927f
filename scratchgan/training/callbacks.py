"""What happens around steps, one small callback each (hooks: loop.py). The Trainer puts them in
this order, which is the order they act in after each step:

    StopOnSignal      Ctrl-C / SIGTERM: finish the step, save, stop; a second one aborts
    DivergenceGuard   (guard.py) losses, norms, NaN/inf: stop before anything bad is saved
    ReplicaCheck      data-parallel: the ranks' copies of G and D are still identical
    MetricsLog        a row of metrics.csv every log_every steps
    ProgressBar       tqdm, with the losses of the last logged step
    Checkpoints       a checkpoint every checkpoint_every steps and at the end; the newest few kept
    Artefacts         (artefacts.py) sample grid, monitor grid, loss plot, progress.gif, report.html
"""
from __future__ import annotations

import contextlib
import signal
import sys

from .distributed import check_replicas
from .guard import check_finite, check_health
from .loop import Callback

__all__ = ["StopOnSignal", "ReplicaCheck", "MetricsLog", "ProgressBar", "Checkpoints", "REPLICA_CHECK_EVERY"]

# A data-parallel run compares the ranks' copies of G and D this often (and before every checkpoint).
REPLICA_CHECK_EVERY = 100


class StopOnSignal(Callback):
    """SIGINT and SIGTERM ask the loop to stop after the current step (Checkpoints then saves);
    a second one aborts at once, though never while a checkpoint is being written. A signal the
    caller ignores (SIGINT under nohup) stays ignored; outside the main thread nothing is installed."""

    def __init__(self, say=print):
        self.say, self.loop, self.previous = say, None, {}

    def on_train_begin(self, loop):
        self.loop, self.previous = loop, {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                if signal.getsignal(sig) == signal.SIG_IGN:
                    continue
                self.previous[sig] = signal.signal(sig, self.handle)
            except ValueError:    # not the main thread: signals are the caller's business
                self.previous = {}
                return

    def handle(self, signum, frame=None):
        name = signal.Signals(signum).name
        if self.loop.requested is not None or self.loop.stop is not None:   # the second one
            if self.loop.interrupt():
                self.say(f"\n{name}: a checkpoint is being written; stopping right after it")
            return
        self.loop.request_stop(signum)
        self.say(f"\n{name}: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

    def teardown(self, loop):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class ReplicaCheck(Callback):
    """Data-parallel: ReplicaDriftError on every rank unless all ranks hold the same G, D (and G's
    average), every ``every`` steps, before each checkpoint and at the end."""

    def __init__(self, checkpoints=None, every: int = REPLICA_CHECK_EVERY):
        self.checkpoints, self.every = checkpoints, every

    @staticmethod
    def check(step):
        arrays = {"G": step.opt_G.flat_p, "D": step.opt_D.flat_p}
        if step.ema is not None and step.ema.flat is not None:
            arrays["G's average"] = step.ema.flat
        check_replicas(step.comm, arrays, step.step)

    def on_step_end(self, loop):
        n = loop.step.step
        if n % self.every == 0 or (self.checkpoints is not None and n % self.checkpoints.every == 0):
            self.check(loop.step)

    def on_train_end(self, loop):
        if self.checkpoints is not None and loop.step.step != self.checkpoints.saved_step:
            self.check(loop.step)


class MetricsLog(Callback):
    """A row of the run's metrics every ``every`` steps, at the last step and at the time limit:
    step, epoch, the losses (the ranks' mean), time and samples per second. ``last`` is the
    newest row; ``run`` (rank 0's RunFolder, or None) gets each row appended to metrics.csv."""

    def __init__(self, every: int, run=None):
        self.every, self.run, self.last = every, run, {}

    def on_step_end(self, loop):
        if not loop.at(self.every):
            return
        step, cfg = loop.step, loop.step.config
        dt = loop.elapsed()
        sps = (step.step - loop.first_step) * cfg.batch_size * cfg.k / max(dt, 1e-9)
        self.last = dict(step=step.step, epoch=round(step.epoch, 4), **{k: round(v, 6) for k, v in loop.values.items()},
                         time_s=round(dt, 3), samples_per_s=round(sps, 1))
        if self.run is not None:
            self.run.append_metrics(self.last)


class ProgressBar(Callback):
    """A tqdm bar of the steps, showing the losses and samples per second of the last logged
    step (``log``: the MetricsLog). On a terminal a live bar; in a log file (not a TTY) a line
    every 10% instead of every refresh."""

    def __init__(self, log: MetricsLog):
        self.log, self.bar = log, None

    def on_train_begin(self, loop):
        from tqdm import tqdm
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=loop.total, initial=loop.step.step, unit="step", dynamic_ncols=True, smoothing=0.1,
                        mininterval=0.1 if tty else 5.0, miniters=None if tty else max(1, loop.total // 10))

    def on_step_end(self, loop):
        if loop.at(self.log.every) and self.log.last:
            row = self.log.last
            self.bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}", sps=f"{row['samples_per_s']:.0f}",
                                 refresh=False)
        self.bar.update(1)

    def teardown(self, loop):
        if self.bar is not None:
            self.bar.close()


class Checkpoints(Callback):
    """A checkpoint every ``every`` steps and at the end (unless that step is saved already),
    ``keep`` newest kept. Only rank 0 (``run``, its RunFolder) writes; the other ranks check that
    the same state could be saved, so that a refusal (DivergenceError: never a NaN on disk) stops
    every rank alike. ``state``: () -> (arrays, meta) of the step to save."""

    def __init__(self, state, every: int, keep: int, run=None):
        self.state, self.every, self.keep, self.run = state, every, keep, run
        self.saved_step = None      # the newest step on disk (or, on ranks that do not write, checked)
        self.loop = None

    def kept(self) -> str:
        """What a stop for divergence leaves, for its message."""
        if self.saved_step is None:
            return "No checkpoint was written (none was due yet)"
        return f"The last good checkpoint (step {self.saved_step}) is kept"

    def saveable(self, step) -> tuple[dict, dict]:
        """The checkpoint's (arrays, meta), or DivergenceError when the guard's bounds are exceeded
        or any array is not finite."""
        check_health(step, self.kept())
        arrays, meta = self.state()
        check_finite(arrays, step.step, self.kept())
        return arrays, meta

    def save(self, step):
        """Write a checkpoint of the step (rank 0) or check it could be (other ranks); a second
        Ctrl-C waits until the checkpoint is complete."""
        arrays, meta = self.saveable(step)
        if self.run is None:
            self.saved_step = step.step
            return None
        with self.loop.critical() if self.loop is not None else contextlib.nullcontext():
            path = self.run.save_checkpoint(arrays, meta, self.keep)
            self.saved_step = step.step
        return path

    def on_train_begin(self, loop):
        self.loop = loop

    def on_step_end(self, loop):
        if loop.step.step % self.every == 0:
            self.save(loop.step)

    def on_train_end(self, loop):
        if loop.step.step != self.saved_step:
            self.save(loop.step)

    def teardown(self, loop):
        self.loop = None
