"""Nothing a user types or a run folder holds crashes scratchgan, deletes a file it did not write,
or saves a broken run (docs/reliability.md). One test per case; the property tests that throw
random argument lists and corrupted run folders at the CLI are in tests/test_fuzz_cli.py.

Commands run in-process through ``scratchgan.cli.main`` (its return value is the exit code) on
tiny mlp/cgan runs of the bundled sample.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import env_without_cupy
from helpers import assert_error_line, run_cli
from scratchgan import cli
from scratchgan.training.checkpoint import (CheckpointError, latest_checkpoint, load_checkpoint, read_meta, remove_checkpoint,
                                   save_checkpoint)
from scratchgan.training.runfolder import clear_run, is_run_file, remove_leftovers
from scratchgan.training import MAX_LOSS, DivergenceError, TrainConfig, Trainer

TINY = ["--batch-size", "16", "--dataset", "mnist-bundled", "--quiet", "--g-hidden", "16", "--d-hidden", "16"]


def snapshot(folder):
    """{relative path: bytes} of every file under folder (links as their target path)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 6-step mlp run with checkpoints at 2, 4, 6 (all kept)."""
    out = tmp_path_factory.mktemp("rel") / "run"
    assert cli.main(["train", *TINY, "--steps", "6", "--checkpoint-every", "2", "--sample-every", "3",
                     "--log-every", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the tiny run, inside tmp_path/outer with a sentinel file beside it."""
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "sentinel.txt").write_text("keep me")
    dst = outer / "run"
    shutil.copytree(tiny_run, dst)
    return dst


# ---------------------------------------------------------------------------- untrusted names
HOSTILE_NAMES = ["../../sentinel.txt", "../sentinel.txt", "/etc/hostname", "..", ".", "", "checkpoints",
                 "step_0000002-0123456789ab.npz/../../../sentinel.txt", "sub/step_0000002.npz", "x\0y", 5, None,
                 ["a"], "step_0000004-000000000000.npz"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_npz_name_is_refused_and_nothing_outside_is_touched(run, capsys, name):
    outer = run.parent
    meta_path = run / "checkpoints" / "step_0000002.json"      # an old one: pruned when the run continues
    meta = json.loads(meta_path.read_text())
    meta["npz_file"] = name
    meta_path.write_text(json.dumps(meta))
    before = snapshot(outer)
    with pytest.raises(CheckpointError, match="npz_file"):
        load_checkpoint(meta_path)
    with pytest.raises(CheckpointError, match="refusing to read or delete it"):
        remove_checkpoint(meta_path)
    rc, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "9", "--checkpoint-every", "1",
                         "--quiet")
    assert rc == 2
    assert_error_line(err, "step_0000002.json", "npz_file")
    assert snapshot(outer) == before, "a refused command changed files"


def test_the_checkpoint_name_pattern_decides_what_counts(run):
    ckpts = run / "checkpoints"
    (ckpts / "notes.json").write_text(json.dumps({"step": 10**9}))       # foreign: neither newest nor pruned
    (ckpts / "step_9999999.json").mkdir()                                # a folder with a checkpoint's name
    assert latest_checkpoint(ckpts).name == "step_9999999.json"
    with pytest.raises(CheckpointError, match="step_9999999.json: cannot read it"):
        load_checkpoint(latest_checkpoint(ckpts))
    (ckpts / "step_9999999.json").rmdir()
    assert latest_checkpoint(ckpts).name == "step_0000006.json"
    assert not is_run_file("checkpoints/notes.json") and is_run_file("checkpoints/step_0000006.json")


def test_a_damaged_newest_checkpoint_is_reported_not_skipped(run, capsys):
    newest = run / "checkpoints" / "step_0000006.json"
    newest.write_bytes(newest.read_bytes()[:40])
    rc, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "8")
    assert rc == 2
    assert_error_line(err, "step_0000006.json", "not valid JSON")
    rc, _, err = run_cli(capsys, "sample", run)
    assert rc == 2 and "step_0000006.json" in err


def test_a_checkpoint_whose_arrays_do_not_fit_its_model_is_a_clean_error(run, capsys):
    meta_path = run / "checkpoints" / "step_0000006.json"
    meta = json.loads(meta_path.read_text())
    meta["model"]["g_hidden"] = [17]                 # the arrays were saved for 16 units
    meta_path.write_text(json.dumps(meta))
    rc, _, err = run_cli(capsys, "sample", run)
    assert rc == 2
    assert_error_line(err, "step_0000006.json", "does not describe a model", "G: 0.weight", "got (16, 100)")
    meta["model"] = {"kind": "mlp", "bogus_argument": 1}
    meta_path.write_text(json.dumps(meta))
    rc, _, err = run_cli(capsys, "interpolate", run)
    assert rc == 2 and "bogus_argument" in err
    meta["model"] = {"kind": "../../evil"}
    meta_path.write_text(json.dumps(meta))
    rc, _, err = run_cli(capsys, "sample", run)
    assert rc == 2 and "'model' must name one of" in err


def test_non_finite_or_non_numeric_arrays_in_a_checkpoint_are_refused(tmp_path):
    from scratchgan.training import load_run
    for bad in (np.array([1.0, np.nan], np.float32), np.array(["a"])):
        run = tmp_path / f"r{bad.dtype.kind}"
        assert cli.main(["train", *TINY, "--steps", "2", "--out", str(run)]) == 0
        path = latest_checkpoint(run / "checkpoints")
        arrays, meta = load_checkpoint(path)
        arrays["G.0.bias"] = bad
        meta = {k: v for k, v in meta.items() if not k.startswith("npz_")}
        save_checkpoint(path.with_suffix(""), arrays, meta)
        with pytest.raises(CheckpointError, match="G.0.bias"):
            load_run(run)


# ---------------------------------------------------------------------------- --overwrite
def test_overwrite_removes_only_what_scratchgan_wrote(run, capsys):
    outer = run.parent
    foreign = {"notes.txt": b"my notes", "data/keep.bin": b"\x00\x01", "checkpoints/mine.json": b"{}",
               "samples/favourite.png": b"png?", "step_0000001.json": b"{}"}
    for rel, data in foreign.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    (run / "link_out").symlink_to(outer / "sentinel.txt")
    rc, _, err = run_cli(capsys, "train", *TINY, "--steps", "2", "--out", run, "--overwrite")
    assert rc == 0
    for rel, data in foreign.items():
        assert (run / rel).read_bytes() == data, f"--overwrite touched {rel}"
    assert (outer / "sentinel.txt").read_text() == "keep me" and (run / "link_out").is_symlink()
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.json")) == ["step_0000002.json"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["favourite.png", "step_0000002.png"]
    assert "kept" in err and "notes.txt" in err


def test_clear_run_lists_the_foreign_files_and_removes_emptied_folders(run):
    (run / "notes.txt").write_text("x")
    kept = clear_run(run)
    assert [p.name for p in kept] == ["notes.txt"]
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_a_folder_with_a_log_but_no_checkpoint_is_not_appended_to(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("step,epoch,d_loss,g_loss,d_real,d_fake,time_s,samples_per_s\n5,0,1,1,.5,.5,1,1\n")
    rc, _, err = run_cli(capsys, "train", *TINY, "--steps", "2", "--out", run)
    assert rc == 2
    assert_error_line(err, "metrics.csv", "--overwrite")
    rc, _, _ = run_cli(capsys, "train", *TINY, "--steps", "2", "--log-every", "1", "--out", run, "--overwrite")
    assert rc == 0
    steps = [line.split(",")[0] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2"]


# ---------------------------------------------------------------------------- the divergence guard
def test_a_finite_blow_up_stops_the_run_without_saving_it(tmp_path, capsys):
    run = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--model", "dcgan", "--lr", "1e6", "--steps", "20", "--batch-size", "8",
                         "--dataset", "mnist-bundled", "--quiet", "--out", run)
    assert rc == 1
    assert_error_line(err, "training diverged at step", "No checkpoint was written")
    assert not list((run / "checkpoints").glob("*.json")) if (run / "checkpoints").exists() else True


def test_the_last_good_checkpoint_is_kept_and_finite(tmp_path, capsys):
    run = tmp_path / "run"
    dcgan = ["--model", "dcgan", "--batch-size", "8", "--dataset", "mnist-bundled", "--quiet", "--out", run,
             "--checkpoint-every", "1"]
    assert run_cli(capsys, "train", "--steps", "3", *dcgan)[0] == 0
    rc, _, err = run_cli(capsys, "train", "--resume", "--lr", "1e6", "--steps", "20", *dcgan)
    assert rc == 1
    assert_error_line(err, "diverged at step 4", "The last good checkpoint (step 3) is kept")
    assert latest_checkpoint(run / "checkpoints").name == "step_0000003.json"
    for meta_path in (run / "checkpoints").glob("step_*.json"):
        arrays, _ = load_checkpoint(meta_path)
        bad = [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
        assert not bad, f"{meta_path.name} holds non-finite {bad}"


def _small_trainer(run_dir=None, **cfg):
    from scratchgan import models
    gan = models.mlp(g_hidden=(8,), d_hidden=(8,), seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (64, 1, 28, 28)).astype(np.float32)
    config = TrainConfig(model="mlp", steps=4, batch_size=16, log_every=1, checkpoint_every=100, **cfg)
    return Trainer(gan, x, None, config, run_dir=run_dir, quiet=True)


@pytest.mark.parametrize("where", ["parameters", "gradients", "Adam first moments", "Adam second moments"])
@pytest.mark.parametrize("value", [np.inf, np.nan, 1e30])
def test_check_health_sees_every_buffer(where, value):
    tr = _small_trainer()
    tr.train(steps=1)
    tr.check_health()
    buffer = {"parameters": tr.opt_D.flat_p, "gradients": tr.opt_D.flat_g, "Adam first moments": tr.opt_D.m,
              "Adam second moments": tr.opt_D.v}[where]
    buffer[3] = value
    if where.startswith("Adam") and np.isfinite(value):
        tr.check_health()             # optimiser state only has to be finite: a large gradient shows in the gradients
        return
    with pytest.raises(DivergenceError, match=f"the {where} of D (are not finite|have norm)"):
        tr.check_health()


def test_a_loss_beyond_the_bound_stops_at_that_step(monkeypatch):
    tr = _small_trainer()
    real = Trainer.train_step

    def step(self):
        out = real(self)
        if self.step == 3:
            out["g_loss"] = np.float32(2 * MAX_LOSS)
        return out

    monkeypatch.setattr(Trainer, "train_step", step)
    with pytest.raises(DivergenceError, match=r"at step 3: g_loss = 2e\+06 \(beyond the bound 1e\+06\)"):
        tr.train()


# ---------------------------------------------------------------------------- values of flags
BAD_VALUES = [
    (["train", "--log-every", "0"], "--log-every"), (["train", "--sample-every", "-1"], "--sample-every"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every"), (["train", "--steps", "-5"], "--steps"),
    (["train", "--epochs", "0"], "--epochs"), (["train", "--epochs", "nan"], "--epochs"),
    (["train", "--epochs", "1e308"], "--epochs"),   # was an OverflowError traceback
    (["train", "--batch-size", "0"], "--batch-size"), (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "inf"], "--lr"), (["train", "--beta1", "1"], "--beta1"), (["train", "--k", "0"], "--k"),
    (["train", "--label-smoothing", "1.5"], "--label-smoothing"), (["train", "--seed", "-1"], "--seed"),
    (["train", "--latent-dim", "0"], "--latent-dim"), (["train", "--g-hidden", "16,,3"], "--g-hidden"),
    (["train", "--d-hidden", "abc"], "--d-hidden"), (["train", "--classes", ",2"], "--classes"),
    (["train", "--out", ""], "--out"), (["train", "--model", "vae"], "--model"),
    (["train", "--model", "dcgan", "--g-hidden", "16"], "--g-hidden"),
    (["train", "--upsample", "nearest"], "--upsample"), (["train", "--resume", "--overwrite"], "--overwrite"),
    (["sample", "RUN", "--n", "0"], "--n"), (["interpolate", "RUN", "--steps", "1"], "--steps"),
    (["inpaint", "RUN", "--fraction", "2"], "--fraction"), (["inpaint", "RUN", "--restarts", "0"], "--restarts"),
    (["evaluate", "RUN", "--n", "5"], "--n"), (["evaluate", "RUN", "--batch", "0"], "--batch"),
    (["bench", "--models", "gpt"], "--models"), (["bench", "--batch-sizes", "0"], "--batch-sizes"),
    (["bench", "--repeats", "0"], "--repeats"), (["train", "--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize("argv,flag", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_value_is_one_error_line_naming_the_flag(argv, flag, capsys, tmp_path, tiny_run):
    argv = [str(tiny_run) if a == "RUN" else a for a in argv]
    rc, out, err = run_cli(capsys, *argv, *(["--out", tmp_path / "x"] if argv[0] == "train" and "--out" not in argv
                                            else []))
    assert rc == 2
    assert_error_line(err, flag)
    assert not (tmp_path / "x").exists(), "a refused command started work"


@pytest.mark.parametrize("label", ["99", "-1", "10"])
def test_sample_label_out_of_range(label, tmp_path, capsys):
    run = tmp_path / "cgan"
    assert cli.main(["train", "--model", "cgan", *TINY, "--steps", "1", "--out", str(run)]) == 0
    rc, _, err = run_cli(capsys, "sample", run, "--label", label)
    assert rc == 2
    assert_error_line(err, "--label", "0..9", label)
    rc, _, err = run_cli(capsys, "interpolate", run, "--label", label)
    assert rc == 2 and "0..9" in err


def test_label_on_an_unconditional_run_is_refused(tiny_run, capsys):
    for command in ("sample", "interpolate"):
        for label in ("3", "flower"):      # a name too: it said "not a class of this run"
            rc, _, err = run_cli(capsys, command, tiny_run, "--label", label)
            assert rc == 2
            assert_error_line(err, f"--label {label}: this run's model (mlp) is unconditional")


def test_every_flag_has_help_text_with_its_default():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = []
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest in ("help", "func") or not action.option_strings:
                continue
            takes_value = action.nargs != 0
            text = action.help or ""
            if not text or (takes_value and "default" not in text):
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, f"flags without help text or shown default: {missing}"


def test_version(capsys):
    import scratchgan
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0 and out.strip() == f"scratchgan {scratchgan.__version__}"


# ---------------------------------------------------------------------------- --resume and changed flags
def test_resume_honours_and_records_a_changed_learning_rate(run, capsys):
    _, meta = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    lr = meta["train"]["lr"]                     # the model's recipe
    rc, out, _ = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "8", "--lr", str(lr / 3),
                         "--checkpoint-every", "1")
    assert rc == 0
    _, meta = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert meta["step"] == 8 and meta["train"]["lr"] == lr / 3 and meta["train"]["checkpoint_every"] == 1
    history = json.loads((run / "config.json").read_text())["history"]
    assert history == [{"step": 6, "changed": {"steps": [6, 8], "lr": [lr, lr / 3], "checkpoint_every": [2, 1]}}]


@pytest.mark.parametrize("flag,value", [("--batch-size", "32"), ("--model", "cgan"), ("--seed", "3"),
                                        ("--g-hidden", "32"), ("--latent-dim", "7"), ("--dtype", "float64"),
                                        ("--classes", "2"), ("--dataset", "fashion-mnist")])
def test_resume_refuses_a_change_that_would_make_another_run(run, capsys, flag, value):
    before = snapshot(run)
    rc, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "8", flag, value)
    assert rc == 2
    assert_error_line(err, flag, "cannot change on --resume")
    assert snapshot(run) == before


def test_resume_accepts_the_same_values_again(run, capsys):
    rc, _, _ = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "7", *TINY, "--model", "mlp")
    assert rc == 0
    assert "history" not in json.loads((run / "config.json").read_text()) or \
        json.loads((run / "config.json").read_text())["history"] == [{"step": 6, "changed": {"steps": [6, 7]}}]


def test_resume_with_missing_or_invalid_config_json(run, capsys):
    (run / "config.json").write_text("{ not json")
    before = snapshot(run)
    rc, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "8")
    assert rc == 2
    assert_error_line(err, "config.json", "not a valid run configuration")
    assert snapshot(run) == before
    (run / "config.json").unlink()          # missing: the checkpoint holds the settings
    rc, _, _ = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "8")
    assert rc == 0 and json.loads((run / "config.json").read_text())["train"]["steps"] == 8


# ---------------------------------------------------------------------------- environment
@pytest.mark.parametrize("value", ["cupy", "bogus"])
def test_a_bad_backend_variable_does_not_break_help_and_is_one_error_line(value):
    env = dict(env_without_cupy(), SCRATCHGAN_BACKEND=value, MPLBACKEND="Agg")   # no stand-in in the child
    if value == "cupy" and subprocess.run([sys.executable, "-c", "import cupy"], env=env).returncode == 0:
        pytest.skip("the real CuPy is installed: SCRATCHGAN_BACKEND=cupy is valid here")
    ok = subprocess.run([sys.executable, "-m", "scratchgan", "--help"], env=env, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("usage: scratchgan"), ok.stderr
    bad = subprocess.run([sys.executable, "-m", "scratchgan", "gradcheck"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2
    assert_error_line(bad.stderr, "SCRATCHGAN_BACKEND", value)
    fixed = subprocess.run([sys.executable, "-m", "scratchgan", "gradcheck", "--backend", "numpy"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert fixed.returncode == 0, fixed.stderr


# ---------------------------------------------------------------------------- files and disks
def test_out_under_a_file_and_out_being_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(capsys, "train", *TINY, "--steps", "1", "--out", tmp_path / "afile" / "run")
    assert rc == 2
    assert_error_line(err, "--out", "under a file")
    rc, _, err = run_cli(capsys, "train", *TINY, "--steps", "1", "--out", tmp_path / "afile")
    assert rc == 2
    assert_error_line(err, "--out", "not a folder")
    assert (tmp_path / "afile").read_text() == "x"


def _deny_writes(monkeypatch):
    """A read-only disk for check_writable (as root, permissions cannot show it)."""
    import scratchgan.training.runfolder as rf

    def denied(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(rf.tempfile, "TemporaryFile", denied)


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    _deny_writes(monkeypatch)
    monkeypatch.setattr(Trainer, "train", lambda self, steps=None: pytest.fail("training started"))
    rc, _, err = run_cli(capsys, "train", *TINY, "--steps", "1", "--out", tmp_path / "run")
    assert rc == 2
    assert_error_line(err, "--out", "Read-only file system")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        rc, _, err = run_cli(capsys, "train", *TINY, "--steps", "1", "--out", ro / "run")
        assert rc == 2 and "--out" in err
    finally:
        ro.chmod(stat.S_IRWXU)


def test_evaluate_checks_that_it_can_write_before_computing(tiny_run, tmp_path, capsys, monkeypatch):
    import scratchgan.evaluation.metrics as metrics
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _deny_writes(monkeypatch)
    monkeypatch.setattr(metrics, "real_reference", lambda *a, **k: pytest.fail("evaluation started"))
    rc, _, err = run_cli(capsys, "evaluate", run, "--data-dir", tmp_path)
    assert rc == 2
    assert_error_line(err, "evaluate", "Read-only file system")


def test_a_full_disk_during_training_is_one_error_line_and_keeps_the_last_checkpoint(run, capsys, monkeypatch):
    import scratchgan.files.atomic as atomic
    real_fsync, calls = os.fsync, []

    def full(fd):
        calls.append(fd)
        if len(calls) > 2:     # the first files of the resumed run are written, then the disk fills
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", full)
    rc, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "12", "--checkpoint-every", "1",
                         "--quiet")
    monkeypatch.undo()
    assert rc == 1
    assert_error_line(err, "No space left on device")
    assert not [p for p in run.rglob("*.tmp")], "temporary files left behind"
    arrays, meta = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert meta["step"] >= 6
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "13", "--quiet"]) == 0


def test_inpaint_images_that_are_missing_or_not_images(tiny_run, tmp_path, capsys):
    (tmp_path / "text.png").write_text("not a png")
    (tmp_path / "folder.npy").mkdir()
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "shape.npy", np.zeros((2, 3, 28, 28), np.float32))
    np.save(tmp_path / "nan.npy", np.full((1, 28, 28), np.nan, np.float32))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "shape.npy").read_bytes()[:100])
    cases = {"missing.npy": "no such file", "text.png": "cannot read it as an image", "folder.npy": "is a folder",
             "obj.npy": "not a plain NumPy array", "shape.npy": "got shape (2, 3, 28, 28)", "nan.npy": "NaN",
             "trunc.npy": "not a plain NumPy array"}
    for name, needle in cases.items():
        rc, _, err = run_cli(capsys, "inpaint", tiny_run, "--images", tmp_path / name, "--steps", "1",
                             "--out", tmp_path / "o.png")
        assert rc == 2, name
        assert_error_line(err, "--images", needle)


def test_inpaint_mask_files_that_are_empty_or_not_arrays(tiny_run, tmp_path, capsys):
    np.save(tmp_path / "digit.npy", np.zeros((1, 28, 28), np.float32))
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_text("0,1")
    for name in ("empty.npy", "text.npy"):
        rc, _, err = run_cli(capsys, "inpaint", tiny_run, "--images", tmp_path / "digit.npy", "--mask", tmp_path / name,
                             "--steps", "1", "--restarts", "1", "--out", tmp_path / "o.png")
        assert rc == 2, name
        assert_error_line(err, name, "not a plain NumPy array file")
    assert not (tmp_path / "o.png").exists()


def test_evaluate_json_is_the_only_thing_on_stdout(tiny_run, tmp_path, capsys):
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if not (data / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("needs the MNIST test set in ../shared/data")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rc, out, err = run_cli(capsys, "evaluate", run, "--data-dir", data, "--n", "50", "--n-real", "100", "--json")
    assert rc == 0
    result = json.loads(out)
    assert result["n"] == 50 and "generating" in err


# ---------------------------------------------------------------------------- signals and leftovers
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_then_exits_with_128_plus_its_number(run, capsys, monkeypatch, sig, code):
    real = Trainer.train_step

    def step(self):
        out = real(self)
        if self.step == 8:
            os.kill(os.getpid(), sig)      # delivered to train()'s handler, as from a terminal or `kill`
        return out

    monkeypatch.setattr(Trainer, "train_step", step)
    default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    before = signal.signal(sig, default)   # as in a terminal (a background job would ignore SIGINT)
    try:
        rc, _, _ = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "100", "--checkpoint-every", "50")
        after = signal.getsignal(sig)
    finally:
        signal.signal(sig, before)
    assert rc == code
    assert latest_checkpoint(run / "checkpoints").name == "step_0000008.json"
    assert load_checkpoint(latest_checkpoint(run / "checkpoints"))[1]["step"] == 8
    assert after == default, "train() did not restore the signal's handler"


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """Under nohup (or as a background job) SIGINT is ignored: training must not take it over."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        tr = _small_trainer(run_dir=tmp_path / "run")
        seen = []
        real = tr.train_step
        tr.train_step = lambda: (seen.append(signal.getsignal(signal.SIGINT)), real())[1]
        tr.train()
        assert seen and all(h == signal.SIG_IGN for h in seen)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def terminal_sigint():
    """SIGINT as in a terminal: CI runs the suite as a background job, where SIGINT is ignored
    and training (rightly) leaves it so."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_first_ctrl_c_during_a_save_is_a_normal_stop(run, capsys, monkeypatch, terminal_sigint):
    """A first Ctrl-C that lands while a checkpoint is being written asks for the usual stop: the
    save completes, the run stops at that step with its message, and nothing aborts."""
    import scratchgan.training.runfolder as runfolder
    real_save, calls = runfolder.save_checkpoint, []

    def save_interrupted(stem, arrays, meta):
        calls.append(meta["step"])
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_save(stem, arrays, meta)

    monkeypatch.setattr(runfolder, "save_checkpoint", save_interrupted)
    rc, out, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "9", "--checkpoint-every", "1")
    assert rc == 130, err
    assert "stopped by SIGINT: checkpoint saved at step 7" in out and "interrupted" not in err
    assert calls == [7]                                 # no second save of the same step
    arrays, meta = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert meta["step"] == 7


def test_a_second_ctrl_c_during_the_save_lets_the_save_finish(run, capsys, monkeypatch, terminal_sigint):
    import scratchgan.training.runfolder as runfolder
    real_save = runfolder.save_checkpoint

    def save_interrupted(stem, arrays, meta):
        os.kill(os.getpid(), signal.SIGINT)    # the first Ctrl-C: a stop is requested
        os.kill(os.getpid(), signal.SIGINT)    # the second, while the checkpoint is being written
        return real_save(stem, arrays, meta)

    monkeypatch.setattr(runfolder, "save_checkpoint", save_interrupted)
    rc, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "9", "--checkpoint-every", "1",
                         "--quiet")
    assert rc == 130
    assert_error_line(err, "interrupted")
    arrays, meta = load_checkpoint(latest_checkpoint(run / "checkpoints"))   # complete and verified
    assert meta["step"] == 7
    assert not [p for p in run.rglob("*.tmp")]


def test_leftovers_of_a_killed_save_are_removed_at_the_next_start(run, capsys):
    ckpts = run / "checkpoints"
    left = [ckpts / ".step_0000008-0123456789ab.npz.k3j4h5g6.tmp", run / ".samples.png.abcdefgh.tmp",
            ckpts / "step_0000008-0123456789ab.npz", run / "samples" / ".step_0000008.png.a_b_c_d_.tmp"]
    kept = [run / ".my.tmp", ckpts / ".notes.json.abcdefgh.tmp.bak", run / "notes.tmp"]
    for p in left + kept:
        p.write_bytes(b"x")
    assert sorted(remove_leftovers(run)) == sorted(left)
    for p in left:
        p.write_bytes(b"x")
    rc, _, _ = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "7")
    assert rc == 0
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)
    # the arrays of every remaining checkpoint are still there
    for meta_path in ckpts.glob("step_*.json"):
        load_checkpoint(meta_path)


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert cli.main(["train", *TINY, "--steps", "2", "--out", str(run)]) == 0
    finally:
        os.umask(old)
    for path in [run / "config.json", run / "samples.png", run / "losses.png",
                 *(run / "checkpoints").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, f"{path.name}: {oct(path.stat().st_mode)}"


def test_a_torn_last_log_row_is_dropped_on_resume_and_a_garbled_log_refused(run, capsys):
    metrics = run / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes() + b"7,0.01,0.69")        # a crash mid-append
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "7", "--quiet"]) == 0
    assert [line.split(",")[0] for line in metrics.read_text().splitlines()[1:]] == [str(s) for s in range(1, 8)]
    metrics.write_bytes(b"\xff\xfe garbage\n1,2\n")
    before = snapshot(run)
    rc, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--steps", "8")
    assert rc == 2
    assert_error_line(err, "metrics.csv", "move it away")
    assert snapshot(run) == before


def test_read_meta_names_the_file_for_every_kind_of_bad_json(tmp_path):
    cases = {"a.json": b"{not json", "b.json": b"\xff\xfe", "c.json": b"[1, 2]", "d.json": b"[" * 100000}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            read_meta(tmp_path / name)
