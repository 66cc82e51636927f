"""Hostile image folders and run folders (docs/reliability.md#untrusted-files): no interpreter is
ever handed a file, no write lands outside the run, nothing blocks on a FIFO, and a small file
cannot make the program allocate gigabytes. Each case is built here as an attacker would."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from helpers import assert_error_line, run_cli
from scratchgan import cli
from scratchgan.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from scratchgan.data import DataError, image_folder
from scratchgan.files.safeio import MAX_IMAGE_PIXELS, UnsafeFileError, append_text, open_image, read_bytes, read_npy
from scratchgan.training import load_run

TINY = ["--batch-size", "16", "--dataset", "mnist-bundled", "--quiet", "--g-hidden", "16", "--d-hidden", "16"]
ROOT = Path(__file__).resolve().parents[1]

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\nshowpage\n%%EOF\n"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "scratchgan" / "folders"


@pytest.fixture
def fake_gs(tmp_path, monkeypatch):
    """A `gs` first on PATH that records being called (Pillow's EPS plugin runs Ghostscript)."""
    bin_dir, marker = tmp_path / "fakebin", tmp_path / "gs-was-called"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\necho called >> {marker}\nexit 1\n")
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)   # looked up again, finding the fake
    return marker


def png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def pics(root, n=6, size=16):
    for i in range(n):
        png(root / f"{i}.png", noise((size, size, 3), i))
    return root


def lying_png(path, w=13000, h=13000):
    """A tiny PNG whose header claims w x h RGB pixels (its data is one compressed empty row)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def lying_npy(path, n=10**12):
    """A few-KB .npy whose header claims n 28x28 images."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 28, 28), np.uint8))
    header["shape"] = (n, 28, 28)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 6000)
    return path


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("untrusted") / "run"
    assert cli.main(["train", *TINY, "--steps", "4", "--checkpoint-every", "2", "--sample-every", "2",
                     "--log-every", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(tiny_run_dir, tmp_path):
    dst = tmp_path / "outer" / "run"
    shutil.copytree(tiny_run_dir, dst)
    return dst


# ---------------------------------------------------------------------------- no interpreter

def test_postscript_named_png_in_an_image_folder_never_reaches_ghostscript(tmp_path, fake_gs):
    root = pics(tmp_path / "pics")
    (root / "x.png").write_bytes(EPS)
    (root / "y.jpg").write_bytes(EPS)
    with pytest.raises(DataError) as err:
        image_folder(root, channels=3, image_size=28)
    assert "x.png: not a PNG or JPEG image" in str(err.value) and "y.jpg" in str(err.value)
    ds = image_folder(root, channels=3, image_size=28, skip_bad=True)
    assert len(ds) == 6 and "skipped 2 unreadable" in ds.note
    assert not fake_gs.exists(), "Ghostscript was run on a file of the folder"


def test_postscript_in_a_run_folder_never_reaches_ghostscript(run, fake_gs, capsys):
    """The progress animation reads samples/step_*.png again on --resume; the report reads samples.png."""
    for p in (run / "samples").glob("step_*.png"):
        p.write_bytes(EPS)
    (run / "samples.png").write_bytes(EPS)
    rc, _, err = run_cli(capsys, "train", "--resume", "--steps", "6", "--out", run, "--quiet")
    assert rc == 0, err
    assert not fake_gs.exists(), "Ghostscript was run on a file of the run folder"


def test_open_image_takes_only_the_formats_named(tmp_path, fake_gs):
    eps = tmp_path / "a.png"
    eps.write_bytes(EPS)
    with pytest.raises(Image.UnidentifiedImageError):
        open_image(eps)
    jpeg = tmp_path / "b.png"
    Image.fromarray(noise((8, 8, 3))).save(jpeg, format="JPEG")
    assert open_image(jpeg).size == (8, 8)                     # JPEG by content, whatever the name
    with pytest.raises(Image.UnidentifiedImageError):
        open_image(jpeg, formats=("PNG",))                      # a run folder's images: PNG only
    assert not fake_gs.exists()


# ---------------------------------------------------------------------------- no write outside

def test_dangling_link_for_metrics_csv_is_refused_and_nothing_is_written_outside(run, tmp_path, capsys):
    outside = tmp_path / "elsewhere" / "planted.csv"
    outside.parent.mkdir()
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to(outside)
    rc, _, err = run_cli(capsys, "train", "--resume", "--steps", "6", "--out", run, "--quiet")
    line = assert_error_line(err)
    assert rc == 2 and "metrics.csv" in line and "link" in line
    assert not outside.exists()
    assert (run / "metrics.csv").is_symlink()                  # refused, not "repaired"


@pytest.mark.parametrize("name", ["config.json", "samples.png", "report.html", "samples/step_0000002.png",
                                  "checkpoints/step_0000004.json"])
def test_a_link_anywhere_among_the_runs_files_is_refused(run, tmp_path, capsys, name):
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (run / name).unlink()
    (run / name).symlink_to(target)
    rc, _, err = run_cli(capsys, "train", "--resume", "--steps", "6", "--out", run, "--quiet")
    assert rc == 2 and "link" in assert_error_line(err)
    assert target.read_bytes() == b"keep"


def test_append_never_follows_a_link(tmp_path):
    target = tmp_path / "target.txt"
    link = tmp_path / "log.csv"
    link.symlink_to(target)                                     # dangling
    with pytest.raises(UnsafeFileError, match="is a link"):
        append_text(link, "row\n")
    assert not target.exists()
    plain = tmp_path / "plain.csv"
    append_text(plain, "a\n")
    append_text(plain, "b\n")
    assert plain.read_text() == "a\nb\n"


def test_overwrite_removes_a_planted_link_as_a_link(run, tmp_path, capsys):
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").symlink_to(target)
    rc, _, err = run_cli(capsys, "train", *TINY, "--steps", "2", "--out", run, "--overwrite")
    assert rc == 0, err
    assert target.read_bytes() == b"keep" and not (run / "metrics.csv").is_symlink()


# ---------------------------------------------------------------------------- links in image folders

def test_a_link_out_of_an_image_folder_is_skipped_with_a_note(tmp_path):
    outside = pics(tmp_path / "outside", n=5)
    root = pics(tmp_path / "pics" / "inner", n=3)
    (root / "up").symlink_to("..")                              # the whole parent tree
    (root / "far").symlink_to(outside)
    (root / "one.png").symlink_to(outside / "0.png")
    ds = image_folder(root, channels=3, image_size=28)
    assert len(ds) == 3
    assert "3 link(s) leading out of the folder" in ds.note and "up" in ds.note and "one.png" in ds.note


def test_a_link_inside_an_image_folder_is_followed(tmp_path):
    root = pics(tmp_path / "pics" / "a", n=3).parent
    (root / "b").mkdir()
    (root / "b" / "again.png").symlink_to(root / "a" / "0.png")
    ds = image_folder(root, channels=3, image_size=28)
    assert len(ds) == 4 and ds.classes == ["a", "b"] and "link" not in ds.note


# ---------------------------------------------------------------------------- memory bombs

def _peak_mb(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


@pytest.mark.parametrize("change", [{"g_hidden": [100000]}, {"g_hidden": [300000]},
                                    {"image_shape": [3, 1024, 1024]}])
def test_a_checkpoint_asking_for_a_huge_model_is_refused_before_allocating(run, change):
    meta_path = latest_checkpoint(run / "checkpoints")
    meta = json.loads(meta_path.read_text())
    meta["model"].update(change)
    meta_path.write_text(json.dumps(meta))
    holder = {}

    def load():
        with pytest.raises(CheckpointError) as err:
            load_run(run)
        holder["msg"] = str(err.value)
    peak = _peak_mb(load)
    assert "needs more weights than its arrays hold" in holder["msg"]
    assert peak < 50, f"peaked at {peak:.0f} MB before refusing"


def test_resume_builds_no_model_larger_than_the_checkpoint_carries(run, capsys):
    meta_path = latest_checkpoint(run / "checkpoints")
    meta = json.loads(meta_path.read_text())
    meta["model"]["g_hidden"] = [300000]
    meta["train"]["model_args"]["g_hidden"] = [300000]
    meta_path.write_text(json.dumps(meta))
    rc, _, err = run_cli(capsys, "train", "--resume", "--steps", "6", "--out", run, "--quiet")
    assert rc == 2 and "needs more weights than its arrays hold" in assert_error_line(err)


def test_a_png_lying_about_its_size_is_a_bad_file_refused_before_decoding(tmp_path):
    root = pics(tmp_path / "pics", n=2)
    lying_png(root / "bomb.png")
    assert (root / "bomb.png").stat().st_size < 100
    holder = {}

    def load():
        with pytest.raises(DataError) as err:
            image_folder(root, channels=3, image_size=28)
        holder["msg"] = str(err.value)
    peak = _peak_mb(load)
    assert "bomb.png: its header claims 13000x13000" in holder["msg"] and "--max-image-pixels" in holder["msg"]
    assert peak < 50, f"peaked at {peak:.0f} MB"


def test_max_pixels_is_a_setting(tmp_path):
    root = pics(tmp_path / "pics", n=2, size=40)
    with pytest.raises(DataError, match="claims 40x40 = 1,600 pixels"):
        image_folder(root, channels=1, image_size=28, max_pixels=1000)
    assert len(image_folder(root, channels=1, image_size=28, max_pixels=1600)) == 2
    assert MAX_IMAGE_PIXELS == 1 << 25


def test_npy_lying_about_its_size_is_a_bad_file_with_exit_2(tmp_path, capsys):
    root = pics(tmp_path / "pics", n=2)
    lying_npy(root / "huge.npy")
    with pytest.raises(DataError, match=r"huge.npy: its header claims \(1000000000000, 28, 28\)"):
        image_folder(root, channels=1, image_size=28)
    rc, _, err = run_cli(capsys, "train", "--dataset", f"folder:{root}", "--channels", "1", "--image-size", "28",
                         "--steps", "1", "--quiet", "--out", tmp_path / "run")
    assert rc == 2 and "huge.npy" in assert_error_line(err)


def test_npz_member_lying_about_its_size_is_a_bad_file(tmp_path):
    root = pics(tmp_path / "pics", n=2)
    inner = tmp_path / "inner.npy"
    lying_npy(inner, n=10**9)
    import zipfile
    with zipfile.ZipFile(root / "arrays.npz", "w") as zf:
        zf.write(inner, "x.npy")
    with pytest.raises(DataError, match="arrays.npz: .*its header claims"):
        image_folder(root, channels=1, image_size=28)


def test_read_npy_checks_the_header_against_the_file(tmp_path):
    with pytest.raises(UnsafeFileError, match="header claims"):
        read_npy(lying_npy(tmp_path / "a.npy"))
    np.save(tmp_path / "ok.npy", np.arange(6).reshape(2, 3))
    assert read_npy(tmp_path / "ok.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match="never unpickles"):
        read_npy(tmp_path / "obj.npy")


# ---------------------------------------------------------------------------- hangs

def _cli(args, timeout=120):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "scratchgan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _fifo(path):
    path.unlink(missing_ok=True)
    os.mkfifo(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("where, command", [
    ("newest checkpoint .json", ["sample", "{run}"]),
    ("newest checkpoint .json", ["train", "--resume", "--steps", "6", "--out", "{run}", "--quiet"]),
    ("metrics.csv", ["train", "--resume", "--steps", "6", "--out", "{run}", "--quiet"]),
    ("samples.png", ["interpolate", "{run}"]),
])
def test_a_fifo_in_a_run_folder_never_blocks(run, where, command):
    path = latest_checkpoint(run / "checkpoints") if where.startswith("newest") else run / where
    _fifo(path)
    proc = _cli([a.format(run=run) for a in command])   # a hang would end in TimeoutExpired
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if where == "samples.png":      # not read by this command's work: only the report skips it
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2 and len(lines) == 1 and "FIFO" in lines[0], proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifos_in_an_image_folder_are_bad_files(tmp_path):
    root = pics(tmp_path / "pics", n=2)
    os.mkfifo(root / "pipe.png")
    os.mkfifo(root / "pipe.npy")
    with pytest.raises(DataError) as err:
        image_folder(root, channels=3, image_size=28)
    assert "pipe.png: not a regular file" in str(err.value) and "pipe.npy" in str(err.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_safe_reads_refuse_fifos_and_folders_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")
    for path in (tmp_path / "pipe.json", tmp_path):
        with pytest.raises(UnsafeFileError, match="not a regular file"):
            read_bytes(path)
    with pytest.raises(CheckpointError, match="FIFO"):
        load_checkpoint(tmp_path / "pipe.json")


# ---------------------------------------------------------------------------- one checkpoint validation

@pytest.mark.parametrize("edit, needle", [
    (lambda m: m.pop("step"), "'step' must be an integer >= 0, got None"),
    (lambda m: m.update(step="abc"), "'step' must be an integer >= 0, got 'abc'"),
    (lambda m: m.update(noise_calls=-1), "'noise_calls' must be an integer >= 0"),
    (lambda m: m.update(class_names=[1, 2]), "'class_names' must be a list of strings"),
    (lambda m: m.update(model="mlp"), "'model' must be an object with a 'kind'"),
])
@pytest.mark.parametrize("command", ["sample", "resume"])
def test_every_command_validates_checkpoint_metadata_the_same_way(run, capsys, edit, needle, command):
    meta_path = latest_checkpoint(run / "checkpoints")
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    argv = ["sample", run] if command == "sample" else ["train", "--resume", "--steps", "9", "--out", run, "--quiet"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and needle in assert_error_line(err)


# ---------------------------------------------------------------------------- the image cache

def test_a_damaged_cache_header_is_rebuilt_not_a_memory_error(tmp_path, private_cache):
    root = pics(tmp_path / "pics", n=4)
    image_folder(root, channels=3, image_size=28)
    npy = next(private_cache.glob("*.npy"))
    data = npy.read_bytes()
    header = np.lib.format.header_data_from_array_1_0(np.zeros((4, 3, 28, 28), np.uint8))
    header["shape"] = (10**12, 3, 28, 28)    # the header now claims 2.4 PB of images
    with open(npy, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data[128:])
    holder = {}

    def load():
        with pytest.warns(UserWarning, match="damaged"):
            holder["ds"] = image_folder(root, channels=3, image_size=28)
    assert _peak_mb(load) < 50
    ds = holder["ds"]
    assert len(ds) == 4 and not ds.from_cache
    assert len(image_folder(root, channels=3, image_size=28)) == 4   # and the rebuilt cache serves


def test_a_full_disk_while_writing_the_cache_record_decodes_without_the_cache(tmp_path, private_cache, monkeypatch):
    import errno
    import scratchgan.data.folder as folder_mod
    root = pics(tmp_path / "pics", n=4)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(folder_mod, "atomic_write_bytes", full)
    with pytest.warns(UserWarning, match="cannot write the image cache record"):
        ds = image_folder(root, channels=3, image_size=28)
    assert len(ds) == 4 and ds.cache_file == ""
    assert list(private_cache.glob("*.npy")) == []               # no stray cache file left


def test_a_link_planted_at_the_cache_is_replaced_not_followed(tmp_path, private_cache):
    root = pics(tmp_path / "pics", n=4)
    image_folder(root, channels=3, image_size=28)
    npy = next(private_cache.glob("*.npy"))
    target = tmp_path / "victim"
    target.write_bytes(b"keep")
    for p in (npy, npy.with_suffix(".json")):
        p.unlink()
        p.symlink_to(target)
    with pytest.warns(UserWarning, match="damaged"):
        assert len(image_folder(root, channels=3, image_size=28)) == 4
    assert target.read_bytes() == b"keep" and not npy.is_symlink()


# ---------------------------------------------------------------------------- resume and data

def test_a_grey_28px_folder_run_resumes_with_a_plain_resume(tmp_path, capsys):
    root = tmp_path / "grey"
    for i in range(20):
        png(root / f"{i}.png", noise((28, 28), i))
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", f"folder:{root}", "--channels", "1",
                         "--image-size", "28", "--steps", "2", "--batch-size", "8", "--quiet", "--out", out)
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "train", "--resume", "--steps", "4", "--out", out, "--quiet")
    assert rc == 0, err


def test_a_relative_folder_is_recorded_absolute_and_changes_are_reported(tmp_path, capsys, monkeypatch):
    first, other = tmp_path / "a", tmp_path / "b"
    pics(first / "shapes", n=10)
    pics(other / "shapes", n=3)                                  # a different folder of the same name
    monkeypatch.chdir(first)
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "folder:shapes", "--steps", "2",
                         "--batch-size", "8", "--quiet", "--out", out)
    assert rc == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["dataset"] == f"folder:{first / 'shapes'}"
    assert config["train"]["data_contents"].startswith("10 files, ")
    monkeypatch.chdir(other)
    rc, _, err = run_cli(capsys, "train", "--resume", "--steps", "3", "--out", out, "--quiet")
    assert rc == 0 and "changed" not in err, err                 # the recorded folder, not ./shapes
    png(first / "shapes" / "new.png", noise((16, 16, 3), 99))
    rc, _, err = run_cli(capsys, "train", "--resume", "--steps", "4", "--out", out, "--quiet")
    assert rc == 0 and "has changed since the run started: it held 10 files" in err and "now 11 files" in err


def test_a_checkpoint_member_lying_about_its_size_is_refused_before_allocating(run):
    """The checksum in the .json only says the .npz is the one the .json names: both may be crafted."""
    import hashlib
    import io
    import zipfile
    meta_path = latest_checkpoint(run / "checkpoints")
    meta = json.loads(meta_path.read_text())
    old_npz = meta_path.parent / meta["npz_file"]
    buf = io.BytesIO()
    with zipfile.ZipFile(old_npz) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("G."):
                header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
                header["shape"] = (10**11,)
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(head, header)
                data = head.getvalue() + b"\0" * 4096
            dst.writestr(info.filename, data)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    old_npz.unlink()
    (meta_path.parent / f"{meta_path.stem}-{digest[:12]}.npz").write_bytes(data)
    meta.update(npz_sha256=digest, npz_file=f"{meta_path.stem}-{digest[:12]}.npz")
    meta_path.write_text(json.dumps(meta))
    holder = {}

    def load():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(meta_path)
        holder["msg"] = str(err.value)
    assert _peak_mb(load) < 50
    assert "its header claims (100000000000,)" in holder["msg"]


def test_a_judge_record_asking_for_a_huge_net_is_refused_before_allocating(tmp_path):
    """A cached judge lies in the user's cache: its .json is not covered by the weights' checksum."""
    from scratchgan.evaluation.judge import JudgeError, build_judge, load_judge, save_judge
    path = save_judge(build_judge(0, channels=(2, 2), hidden=4), tmp_path / "j.npz")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["arch"]["hidden"] = 10**8
    path.with_suffix(".json").write_text(json.dumps(meta))
    holder = {}

    def load():
        with pytest.raises(JudgeError) as err:
            load_judge(path=path)
        holder["msg"] = str(err.value)
    assert _peak_mb(load) < 50
    assert "needs more weights than its arrays hold" in holder["msg"]
    os.mkfifo(tmp_path / "f.json")
    shutil.copy(path, tmp_path / "f.npz")
    with pytest.raises(JudgeError, match="FIFO"):
        load_judge(path=tmp_path / "f.npz")


@pytest.mark.parametrize("value, needle", [("0", "expected an integer >= 1, got 0"), ("abc", "got 'abc'")])
def test_max_image_pixels_flag_refuses_bad_values(capsys, tmp_path, value, needle):
    rc, _, err = run_cli(capsys, "train", "--max-image-pixels", value, "--out", tmp_path / "r")
    assert rc == 2 and needle in assert_error_line(err, "--max-image-pixels")
    rc, _, err = run_cli(capsys, "train", "--max-image-pixels", "100", "--dataset", "mnist-bundled",
                         "--out", tmp_path / "r")
    assert rc == 2 and "applies to --dataset folder:PATH" in assert_error_line(err)
    assert not (tmp_path / "r").exists()
