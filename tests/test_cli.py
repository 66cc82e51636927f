"""The command line, in-process through ``scratchgan.cli.main`` (plus one real subprocess).

A tiny mlp run on the bundled MNIST sample (class 2 only) is trained once per module and
reused by the sample / interpolate tests; tests that change a run work on a copy.
No test touches the network: the data set is the bundled sample, and the default
``--dataset mnist`` test points every look-up place at an empty folder and replaces the
download function by one that fails the test.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchgan import backend, cli
from scratchgan.training.checkpoint import latest_checkpoint, load_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY_MLP = ["--model", "mlp", "--batch-size", "16", "--dataset", "mnist-bundled", "--quiet",
            "--g-hidden", "16", "--d-hidden", "16"]


def _png(path):
    import matplotlib.image as mpimg
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return mpimg.imread(path)


def _grid_shape(rows, cols, pad=2, scale=2):
    return ((rows * (28 + pad) + pad) * scale, (cols * (28 + pad) + pad) * scale)


def _steps_in_metrics(run):
    return [int(r["step"]) for r in csv.DictReader((Path(run) / "metrics.csv").open())]


def _train(out, *extra):
    return cli.main(["train", *TINY_MLP, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """The tiny end-to-end run of the brief: 20 steps of an mlp on the 2s; the labels of
    every real batch the trainer draws are recorded."""
    from scratchgan.training import Trainer
    out = tmp_path_factory.mktemp("cli") / "run"
    seen = []
    real = Trainer._real_batch

    def spy(self):
        x, y = real(self)
        seen.append(backend.to_numpy(y).copy())
        return x, y

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "_real_batch", spy)
        rc = cli.main(["train", "--model", "mlp", "--steps", "20", "--batch-size", "16", "--dataset", "mnist-bundled",
                       "--classes", "2", "--out", str(out), "--quiet", "--sample-every", "10",
                       "--checkpoint-every", "10", "--log-every", "5", "--g-hidden", "16", "--d-hidden", "16"])
    assert rc == 0
    return out, seen


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cgan"
    rc = cli.main(["train", "--model", "cgan", "--steps", "2", "--batch-size", "16", "--dataset", "mnist-bundled",
                   "--out", str(out), "--quiet", "--g-hidden", "16", "--d-hidden", "16", "--latent-dim", "8"])
    assert rc == 0
    return out


# ---------------------------------------------------------------------------- help
HELP = {
    "train": ["--model", "--steps", "--epochs", "--batch-size", "--dataset", "--classes", "--out", "--resume",
              "--overwrite", "--k", "--g-loss", "--label-smoothing", "--backend", "--dtype", "--seed", "--quiet",
              "--sample-every", "--checkpoint-every", "--log-every", "--download", "--data-dir"],
    "sample": ["run_dir", "--n", "--label", "--seed", "--out", "--backend"],
    "interpolate": ["run_dir", "--mode", "slerp", "linear", "sweep", "classes", "--steps", "--rows", "--dim", "--out"],
    "gradcheck": ["--backend"],
    "bench": ["--models", "--batch-sizes", "--repeats", "--layers", "--json", "--backend"],
    "evaluate": ["run_dir", "--n", "--data-dir", "--json", "--backend"],
    "inpaint": ["run_dir", "--mask", "center", "bottom", "random", "--images", "--steps", "--restarts", "--lam",
                "--perceptual", "--use-labels", "--out", "--backend"],
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_of_every_subcommand(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: scratchgan {command}")
    for option in HELP[command]:
        assert option in out, f"{command} --help does not mention {option}"
    if command == "inpaint":      # any run's images, not only digits
        assert "resized as an image folder" in " ".join(out.split())
        assert cli.main(["--help"]) == 0
        assert "complete the missing part of images" in capsys.readouterr().out


def test_top_level_help_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "scratchgan", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in HELP:
        assert command in proc.stdout
    assert proc.stdout.startswith("usage: scratchgan")


def test_no_subcommand_is_a_usage_error(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--help" in err


# ---------------------------------------------------------------------------- train
def test_train_writes_the_run_folder(mlp_run):
    run, seen = mlp_run
    cfg = json.loads((run / "config.json").read_text())
    train = cfg["train"]
    assert (train["model"], train["steps"], train["batch_size"], train["classes"], train["dataset"]) == \
        ("mlp", 20, 16, [2], "mnist-bundled")
    assert (train["sample_every"], train["checkpoint_every"], train["log_every"]) == (10, 10, 5)
    assert cfg["model"]["kind"] == "mlp" and cfg["model"]["g_hidden"] == [16] and cfg["model"]["d_hidden"] == [16]
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,d_loss,g_loss,d_real,d_fake,time_s,samples_per_s"
    assert _steps_in_metrics(run) == [5, 10, 15, 20]
    for name in ("samples.png", "losses.png", "samples/step_0000010.png", "samples/step_0000020.png"):
        _png(run / name)
    assert _png(run / "samples.png").shape[:2] == _grid_shape(8, 8)   # 64 fixed samples, 8 x 8
    for step in (10, 20):
        assert load_checkpoint(run / "checkpoints" / f"step_{step:07d}.json")[1]["step"] == step
    # --classes 2: every real batch held only 2s, and 20 of them were drawn
    assert len(seen) == 20 and set(np.concatenate(seen).tolist()) == {2}


def test_second_train_without_resume_is_refused(mlp_run, capsys):
    run, _ = mlp_run
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    capsys.readouterr()
    assert _train(run, "--steps", "5") == 2
    message = capsys.readouterr().err
    assert message.startswith("error: ") and "--resume" in message and str(run) in message
    after = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    assert before == after, "the refused command changed the run"


def test_resume_continues_from_20_to_30_like_an_uninterrupted_run(mlp_run, tmp_path):
    src, _ = mlp_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    assert cli.main(["train", "--out", str(run), "--resume", "--steps", "30", "--quiet"]) == 0
    path = latest_checkpoint(run / "checkpoints")
    arrays, meta = load_checkpoint(path)
    assert meta["step"] == 30 and meta["train"]["steps"] == 30
    assert _steps_in_metrics(run) == [5, 10, 15, 20, 25, 30]
    assert json.loads((run / "config.json").read_text())["train"]["classes"] == [2]
    # the same 30 steps in one go give the same weights, bit for bit
    ref = tmp_path / "ref"
    assert cli.main(["train", "--model", "mlp", "--steps", "30", "--batch-size", "16", "--dataset", "mnist-bundled",
                     "--classes", "2", "--out", str(ref), "--quiet", "--sample-every", "1000",
                     "--checkpoint-every", "1000", "--log-every", "5", "--g-hidden", "16", "--d-hidden", "16"]) == 0
    ref_arrays, ref_meta = load_checkpoint(latest_checkpoint(ref / "checkpoints"))
    assert ref_meta["step"] == 30 and ref_arrays.keys() == arrays.keys()
    differ = [k for k in arrays if not np.array_equal(arrays[k], ref_arrays[k])]
    assert not differ, f"resumed CLI run differs from an uninterrupted one in {differ}"


def test_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    assert _train(tmp_path / "none", "--resume", "--steps", "3") == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_overwrite_starts_the_run_afresh(tmp_path):
    run = tmp_path / "run"
    assert _train(run, "--steps", "3", "--sample-every", "100", "--checkpoint-every", "100") == 0
    assert _train(run, "--steps", "2", "--overwrite", "--sample-every", "100", "--checkpoint-every", "100") == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("*.json")) == ["step_0000002.json"]


def test_resume_keeps_the_float64_dtype_of_the_run(tmp_path):
    """A run trained with --dtype float64 must resume in float64 (the checkpoint records the
    dtype; config.json's train section does not, and --dtype defaults to float32)."""
    run = tmp_path / "run"
    assert _train(run, "--steps", "2", "--dtype", "float64", "--sample-every", "100",
                  "--checkpoint-every", "100") == 0
    assert load_checkpoint(latest_checkpoint(run / "checkpoints"))[1]["dtype"] == "float64"
    backend.set_default_dtype(np.float32)   # a new process: `train --dtype` set it for this one
    assert cli.main(["train", "--out", str(run), "--resume", "--steps", "3", "--quiet"]) == 0
    meta = load_checkpoint(latest_checkpoint(run / "checkpoints"))[1]
    assert meta["step"] == 3
    assert meta["dtype"] == "float64", "resuming a float64 run silently continued it in float32"


# ---------------------------------------------------------------------------- sample / interpolate
def test_sample_writes_a_png(mlp_run, tmp_path, capsys):
    run, _ = mlp_run
    out = tmp_path / "s.png"
    assert cli.main(["sample", str(run), "--n", "9", "--seed", "3", "--out", str(out)]) == 0
    assert _png(out).shape[:2] == _grid_shape(3, 3)
    printed = capsys.readouterr().out
    assert str(out) in printed and "step 20" in printed
    # default name in the run folder; same seed -> same file
    assert cli.main(["sample", str(run), "--n", "9", "--seed", "3"]) == 0
    assert (run / "sample_seed3.png").read_bytes() == out.read_bytes()


@pytest.mark.parametrize("mode", ["slerp", "linear", "sweep"])
def test_interpolate_writes_a_png(mode, mlp_run, tmp_path, capsys):
    run, _ = mlp_run
    out = tmp_path / f"{mode}.png"
    assert cli.main(["interpolate", str(run), "--mode", mode, "--rows", "2", "--steps", "5", "--dim", "3",
                     "--out", str(out)]) == 0
    assert _png(out).shape[:2] == _grid_shape(2, 5)
    assert str(out) in capsys.readouterr().out


def test_sample_and_interpolate_classes_for_cgan(cgan_run, tmp_path):
    out = tmp_path / "classes.png"
    assert cli.main(["interpolate", str(cgan_run), "--mode", "classes", "--rows", "3", "--out", str(out)]) == 0
    assert _png(out).shape[:2] == _grid_shape(3, 10)          # one z per row, the 10 labels across
    out = tmp_path / "sample.png"
    assert cli.main(["sample", str(cgan_run), "--n", "20", "--out", str(out)]) == 0
    assert _png(out).shape[:2] == _grid_shape(10, 2)          # one row per class
    out = tmp_path / "seven.png"
    assert cli.main(["sample", str(cgan_run), "--n", "4", "--label", "7", "--out", str(out)]) == 0
    assert _png(out).shape[:2] == _grid_shape(2, 2)


def test_sample_of_a_folder_without_checkpoint_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["sample", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------- gradcheck / backend
def test_gradcheck_command_passes(capsys):
    assert cli.main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert "all passed" in out and "FAIL" not in out


@pytest.mark.parametrize("argv", [["train", *TINY_MLP, "--steps", "1"], ["gradcheck"], ["sample", "."]])
def test_backend_cupy_without_cupy_is_a_clear_error(argv, tmp_path, capsys, no_cupy):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "run")]
    rc = cli.main(argv + ["--backend", "cupy"])
    assert rc not in (0, None)
    err = capsys.readouterr().err
    assert "CuPy" in err and "error:" in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- default data set
@pytest.fixture
def no_network_no_data(tmp_path, monkeypatch):
    """No real data or cache can be found, and any download attempt fails the test."""
    from scratchgan.data import datasets
    for var in ("SCRATCHGAN_DATA", "HOME", "XDG_CACHE_HOME"):
        d = tmp_path / var.lower()
        d.mkdir()
        monkeypatch.setenv(var, str(d))

    def no_network(*args, **kwargs):
        raise AssertionError(f"the network was touched: {args}")

    monkeypatch.setattr(datasets, "_urlopen", no_network)
    monkeypatch.setattr(datasets, "download_file", no_network)
    return tmp_path


def test_default_dataset_says_the_bundled_sample_is_used(no_network_no_data, capsys):
    out = no_network_no_data / "run"
    rc = cli.main(["train", "--model", "mlp", "--steps", "2", "--batch-size", "16", "--out", str(out),
                   "--g-hidden", "16", "--d-hidden", "16", "--sample-every", "100", "--checkpoint-every", "100"])
    assert rc == 0
    text = capsys.readouterr()
    assert "note: training on the bundled sample" in text.err and "10,000" in text.err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["dataset"] == "mnist"
    assert "bundled sample" in cfg["data"]


def test_default_dataset_quiet_still_says_so(no_network_no_data, capsys):
    out = no_network_no_data / "run"
    rc = cli.main(["train", "--model", "mlp", "--steps", "1", "--batch-size", "16", "--out", str(out), "--quiet",
                   "--g-hidden", "16", "--d-hidden", "16"])
    assert rc == 0
    text = capsys.readouterr()
    assert text.out == ""   # --quiet: nothing on stdout, but the note on stderr
    assert "bundled sample" in text.err and "--data-dir" in text.err


def test_inpaint_command_on_a_tiny_run(tmp_path, capsys):
    """`scratchgan inpaint` on your own digits (.npy) writes the original|masked|completed grid
    and reports the error against the mean-image fill; a bad mask kind is a clean error."""
    from scratchgan import data
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "mlp", "--steps", "4", "--batch-size", "16", "--dataset", "mnist-bundled",
                     "--out", str(run), "--quiet", "--g-hidden", "16", "--d-hidden", "16"]) == 0
    digits = data.load_dataset("mnist-bundled").images[-3:]
    np.save(tmp_path / "digits.npy", digits)
    out = tmp_path / "inp.png"
    capsys.readouterr()
    assert cli.main(["inpaint", str(run), "--images", str(tmp_path / "digits.npy"), "--mask", "bottom",
                     "--steps", "5", "--restarts", "2", "--out", str(out)]) == 0
    text, err = capsys.readouterr()
    assert out.is_file() and "mean-image fill" in text and "ratio" in text and "(3 images from" in text
    assert "inpainting: 100%" in err and "5/5" in err            # tqdm's bar, as train shows
    assert cli.main(["inpaint", str(run), "--images", str(tmp_path / "digits.npy"), "--mask", "diagonal"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("flags, needle", [
    (["--layers", "--image-shape", "3x32x32,3x64x64"], "expected one CxHxW shape"),
    (["--layers", "--image-shape", "5x9x9"], "expected CxHxW shapes"),
    (["--image-shape", "3x64x64"], "--image-shape applies to --layers"),
])
def test_bench_image_shape_is_one_shape_for_the_layer_split(capsys, flags, needle):
    from helpers import assert_error_line, run_cli
    rc, _, err = run_cli(capsys, "bench", "--models", "dcgan", "--batch-sizes", "2", "--repeats", "1", *flags)
    assert rc == cli.EXIT_USAGE
    assert_error_line(err, needle)
