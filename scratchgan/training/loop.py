"""The loop: run steps until done or stopped, and call the callbacks' hooks around them.

    fit(step, total, callbacks)         step: a GANStep; total: the step to stop at

    on_train_begin(loop)                before the first step
    on_step_end(loop)                   after each step: loop.values holds its losses
    on_train_end(loop)                  after the last step, unless an exception ended the loop
    teardown(loop)                      always, last (close a progress bar, restore handlers)

A stop (Ctrl-C, SIGTERM, the time limit) ends the loop after the step it came in: the step is
finished, its hooks run, then on_train_end (which saves). In a data-parallel run the ranks agree
on each step's losses and on any stop one of them saw, with one small all-reduce per step
(``agree_step``), so that every rank takes the same decision at the same step.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from .distributed import agree_step

__all__ = ["Callback", "Loop", "fit"]


class Callback:
    """Something that happens around steps. Override the hooks needed; each gets the Loop."""

    def on_train_begin(self, loop: "Loop") -> None:
        pass

    def on_step_end(self, loop: "Loop") -> None:
        pass

    def on_train_end(self, loop: "Loop") -> None:
        pass

    def teardown(self, loop: "Loop") -> None:
        pass


class Loop:
    """What the hooks see: ``step`` (the GANStep), ``total``, ``values`` (the step's losses as host
    floats, the ranks' mean), ``stop`` (None, a signal number, or "time") and the clock."""

    def __init__(self, step, total: int, callbacks=(), max_time: float | None = None):
        self.step, self.total, self.callbacks, self.max_time = step, total, list(callbacks), max_time
        self.comm = step.comm
        self.parallel = self.comm.size > 1
        self.on_cpu = step.xp is np
        self.requested = None      # a stop asked for (request_stop), not yet taken
        self.stop = None           # the stop the loop takes (every rank's, in a data-parallel run)
        self.outputs, self._values = None, None
        self.t0, self.first_step = None, step.step
        self._critical, self._abort_pending = False, False

    # ------------------------------------------------------------------ what the hooks use
    @property
    def values(self) -> dict:
        """The step's losses as host floats (fetched from the device on first use)."""
        if self._values is None:
            self._values = {k: float(v) for k, v in self.outputs.items()}
        return self._values

    def at(self, every: int) -> bool:
        """True at every ``every``-th step, at the last step and at the time limit."""
        return self.step.step % every == 0 or self.step.step == self.total or self.stop == "time"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def request_stop(self, reason) -> None:
        """Finish the current step, then stop (a signal handler calls this)."""
        self.requested = reason

    @contextlib.contextmanager
    def critical(self):
        """A block a second Ctrl-C must not interrupt (a checkpoint being written): the
        KeyboardInterrupt (``interrupt``) waits until the block is done."""
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self._abort_pending:
            self._abort_pending = False
            raise KeyboardInterrupt

    def interrupt(self) -> bool:
        """Abort now (KeyboardInterrupt), or right after the critical block; True when deferred."""
        if self._critical:
            self._abort_pending = True
            return True
        raise KeyboardInterrupt

    # ------------------------------------------------------------------ the loop
    def _stopping(self) -> bool:
        # Data-parallel ranks stop only on the stop they agreed on: a signal reaching one rank after
        # this step's agreement must not end its loop while the others start the next step.
        return self.stop is not None or (not self.parallel and self.requested is not None)

    def run(self) -> None:
        self.t0 = time.perf_counter()
        # Overflow in a blown-up run is reported once, by the guard (a DivergenceError naming the
        # step), not as NumPy warnings from deep inside a layer.
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                for cb in self.callbacks:
                    cb.on_train_begin(self)
                self.comm.barrier()          # no rank starts before rank 0 has prepared the run folder
                while self.step.step < self.total and not self._stopping():
                    self.outputs, self._values = self.step.train_step(), None
                    timed_out = self.max_time is not None and self.elapsed() >= self.max_time
                    if self.parallel:       # every rank: the global batch's losses, one decision to stop
                        self._values, signum, timed_out = agree_step(self.comm, self.outputs, self.requested,
                                                                     timed_out)
                        if signum:
                            self.stop = signum
                    if timed_out:           # --max-time: stop here, like Ctrl-C, but not an interruption
                        self.stop = "time"
                    for cb in self.callbacks:
                        cb.on_step_end(self)
                if self.stop is None:
                    self.stop = self.requested
                for cb in self.callbacks:
                    cb.on_train_end(self)
            finally:
                for cb in self.callbacks:
                    cb.teardown(self)
        self.comm.barrier()                 # the checkpoint is on disk before any rank returns


def fit(step, total: int, callbacks=(), max_time: float | None = None) -> Loop:
    """Run ``step.train_step()`` until ``step.step`` reaches ``total`` or a stop is requested,
    calling the callbacks' hooks; returns the Loop (its ``stop`` says why it ended)."""
    loop = Loop(step, total, callbacks, max_time)
    loop.run()
    return loop
