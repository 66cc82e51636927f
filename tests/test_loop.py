"""The loop and each callback on their own, driven by a stand-in step (no GAN): the hooks' order,
stops, the time limit, the metrics log, checkpoints and their pruning, the divergence guard and
the replica check. The Trainer's tests (test_training.py, test_reliability.py) cover them together."""
from __future__ import annotations

import csv
import signal
from types import SimpleNamespace

import numpy as np
import pytest

from scratchgan.training import Callback, DivergenceError, RunFolder, TrainConfig, fit
from scratchgan.training.callbacks import Checkpoints, MetricsLog, ReplicaCheck, StopOnSignal
from scratchgan.training.checkpoint import list_checkpoints, load_checkpoint
from scratchgan.training.distributed import Communicator, ReplicaDriftError
from scratchgan.training.guard import DivergenceGuard
from scratchgan.training.loop import Loop


class CountingStep:
    """What the loop needs of a step: ``step``, ``train_step()``, ``comm``, ``xp``, ``config``."""

    def __init__(self, d_losses=None, comm=None):
        self.step, self.d_losses = 0, d_losses or {}
        self.comm, self.xp = comm or Communicator(), np
        self.config = TrainConfig(batch_size=4)
        self.opt_G = self.opt_D = SimpleNamespace(flat_p=None)     # nothing for the health check to read
        self.ema = None

    @property
    def epoch(self):
        return self.step / 10

    def train_step(self):
        self.step += 1
        return {"d_loss": np.float32(self.d_losses.get(self.step, 1.0)), "g_loss": np.float32(0.5),
                "d_real": np.float32(0.6), "d_fake": np.float32(0.4)}

    def state(self):
        return {"G.w": np.full(3, float(self.step))}, {"step": self.step}


class Recorder(Callback):
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_train_begin(self, loop):
        self.calls.append("begin")

    def on_step_end(self, loop):
        self.calls.append(("step", loop.step.step, loop.values["d_loss"]))
        if loop.step.step == self.stop_at:
            loop.request_stop("enough")

    def on_train_end(self, loop):
        self.calls.append("end")

    def teardown(self, loop):
        self.calls.append("teardown")


def test_hooks_run_in_order_until_the_total():
    step, rec = CountingStep(), Recorder()
    loop = fit(step, 3, [rec])
    assert rec.calls == ["begin", ("step", 1, 1.0), ("step", 2, 1.0), ("step", 3, 1.0), "end", "teardown"]
    assert loop.stop is None and step.step == 3
    fit(step, 5, [rec])                                     # a second fit continues from where the step is
    assert step.step == 5


def test_a_stop_requested_ends_the_loop_after_that_step_and_still_ends_the_run():
    step, rec = CountingStep(), Recorder(stop_at=2)
    loop = fit(step, 10, [rec])
    assert step.step == 2 and loop.stop == "enough" and rec.calls[-2:] == ["end", "teardown"]


def test_an_exception_skips_on_train_end_but_not_teardown():
    class Boom(Callback):
        def on_step_end(self, loop):
            raise RuntimeError("boom")
    rec = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        fit(CountingStep(), 3, [rec, Boom()])
    assert rec.calls == ["begin", ("step", 1, 1.0), "teardown"]


def test_the_time_limit_stops_and_counts_as_a_last_step(monkeypatch):
    import scratchgan.training.loop as loop_module
    clock = iter(np.arange(0.0, 100.0, 1.0))                # every call one second later
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: float(next(clock)))
    step, log = CountingStep(), MetricsLog(every=100)
    loop = fit(step, 50, [log], max_time=2.5)
    assert loop.stop == "time" and 1 <= step.step < 50
    assert log.last["step"] == step.step                    # logged although not a multiple of 100


def test_at_is_every_nth_step_and_the_last():
    step = CountingStep()
    loop = Loop(step, total=7)
    seen = []
    for _ in range(7):
        step.train_step()
        seen.append(loop.at(3))
    assert seen == [False, False, True, False, False, True, True]


def test_metrics_log_writes_a_row_at_each_log_step_and_the_last(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.start(fresh=True)
    log = MetricsLog(every=2, run=run)
    fit(CountingStep(), 5, [log])
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 5] and log.last["step"] == 5
    run.truncate_metrics(3)                                 # a resume from step 3's checkpoint
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv"))] == [2]


def test_checkpoints_are_saved_every_n_steps_and_at_the_end_and_pruned(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.start(fresh=True)
    step = CountingStep()
    ckpt = Checkpoints(step.state, every=2, keep=2, run=run)
    assert ckpt.kept() == "No checkpoint was written (none was due yet)"
    fit(step, 7, [ckpt])
    names = [p.name for _, p in list_checkpoints(run.checkpoints)]
    assert names == ["step_0000006.json", "step_0000007.json"] and ckpt.saved_step == 7
    arrays, meta = load_checkpoint(run.checkpoints / "step_0000007.json")
    assert meta["step"] == 7 and np.array_equal(arrays["G.w"], np.full(3, 7.0))
    assert run.newest_checkpoint()[1]["step"] == 7
    assert ckpt.kept() == "The last good checkpoint (step 7) is kept"


def test_a_rank_that_does_not_write_checks_the_state_it_would_save(tmp_path):
    step = CountingStep()
    step.state = lambda: ({"G.w": np.array([np.nan])}, {"step": step.step})
    ckpt = Checkpoints(step.state, every=2, keep=2, run=None)
    with pytest.raises(DivergenceError, match="at step 2: G.w is not finite; not saving it"):
        fit(step, 5, [ckpt])
    assert not (tmp_path / "run").exists()


def test_the_guard_stops_on_a_loss_beyond_the_bound_naming_the_step():
    step = CountingStep(d_losses={3: float("nan")})
    with pytest.raises(DivergenceError, match="diverged at step 3: d_loss = nan"):
        fit(step, 10, [DivergenceGuard(every=50)])
    step = CountingStep(d_losses={2: 2e6})
    with pytest.raises(DivergenceError, match="at step 2: d_loss = 2e\\+06 \\(beyond the bound 1e\\+06\\). Nothing was saved"):
        fit(step, 10, [DivergenceGuard(every=50)])


def test_the_replica_check_finds_ranks_that_drifted():
    class TwoRanks(Communicator):
        """Rank 0 of 2, whose partner's D is one bit different."""
        size = 2

        def allgather(self, obj):
            other = dict(obj, D=obj["D"] ^ 1)
            return [obj, other]
    step = CountingStep(comm=TwoRanks())
    step.opt_G, step.opt_D = SimpleNamespace(flat_p=np.ones(3)), SimpleNamespace(flat_p=np.zeros(2))
    step.step = 4
    with pytest.raises(ReplicaDriftError, match="step 4: .*rank 1: D"):
        ReplicaCheck(every=4).on_step_end(SimpleNamespace(step=step))
    ReplicaCheck(every=5).on_step_end(SimpleNamespace(step=step))   # not due: no comparison
    step.comm = Communicator()
    ReplicaCheck.check(step)                                          # one rank agrees with itself


def test_a_signal_asks_for_a_stop_and_the_handlers_are_restored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    said = []
    try:
        class SendSigterm(Callback):
            def on_step_end(self, loop):
                if loop.step.step == 2:
                    signal.raise_signal(signal.SIGTERM)
        loop = fit(CountingStep(), 10, [StopOnSignal(say=said.append), SendSigterm()])
        assert loop.step.step == 2 and loop.stop == signal.SIGTERM and "SIGTERM: finishing this step" in said[0]
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)
