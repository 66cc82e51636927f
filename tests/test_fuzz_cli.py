"""Property tests of the command line's promise (docs/reliability.md): whatever the arguments
and whatever a run folder holds, a command ends with exit code 0, 1 or 2, never a traceback,
with an "error: ..." line on failure, and never changes a file outside the folders it was
pointed at.

* ``test_random_command_lines``: hypothesis builds argument lists for each subcommand from
  its flags, values of every kind (valid, out of range, not numbers, empty, NUL, unicode) and
  paths of every kind (missing, a file, under a file, a device, unwritable, runs good and
  damaged). Valid values are kept small so that a command that runs does so in a second.
* ``test_corrupted_run_folders``: hypothesis damages a copy of a real run folder (byte flips,
  truncations, deleted files, hostile names and values in its JSON, links out of the folder),
  then resumes, samples, interpolates and overwrites it; every file outside the run folder
  must be unchanged afterwards.

Each example works in its own temporary folder (the current directory is moved there), the
network is replaced by a function that fails, and the data cache points into the example.
``FUZZ_LOG=FILE`` appends each command's exit code and last stderr line to FILE (to see what
the generated cases exercised; the notes quote such counts).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import struct
import tempfile
import zlib
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchgan import cli

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TINY = ["--batch-size", "8", "--dataset", "mnist-bundled", "--quiet", "--g-hidden", "8", "--d-hidden", "8"]

# ---------------------------------------------------------------------------- values
JUNK = st.one_of(
    st.sampled_from(["0", "-1", "-5", "nan", "inf", "-inf", "1e309", "", " ", "abc", "1.5", "9" * 25, "0x10",
                     "1_0", "\x00", "\u2603", "--", "-", "2,3", ",", "-0", "1e-320", "+3", "\uff13", "None",
                     "--steps", "%s%n", "../..", "\n"]),
    st.text(max_size=5))


def ints(lo, hi):
    return st.integers(lo, hi).map(str)


def nums(*valid):
    return st.sampled_from([str(v) for v in valid])


def choice(*valid):
    return st.sampled_from(valid)


# Paths are names of kinds, made real inside the example's folder by _materialise.
PATH_KINDS = ["new", "new/nested/deep", "empty_dir", "file", "file/under", "run", "cgan_run", "broken_run",
              "dev_null", "proc", ".", "..", "sub/../x", "long", "unicode", "nul", "empty", "digits.png",
              "digits.npy", "text.png", "bad.npy", "mnist", "judges"]
ANY_PATH = st.sampled_from(PATH_KINDS)


def paths(*good):
    return st.sampled_from(good).map(lambda k: ("PATH", k))


BAD_PATH = ANY_PATH.map(lambda k: ("PATH", k))
OUT_FILE = paths("new", "new/nested/deep", "sub/../x", "unicode")
RUN = paths("run", "cgan_run")
FLAG = None  # a flag without a value
BACKEND = choice("numpy", "cupy")   # cupy: an error line where CuPy is missing, a run where it is there

# flag -> strategy of valid values (small, so that a command that runs takes a second at most)
SUBCOMMANDS = {
    "train": dict(prefix=["--steps", "2", "--batch-size", "8", "--quiet"], positional=None, flags={
        "--model": choice("mlp", "cgan", "dcgan", "mlp-tutorial", "cgan-tutorial", "dcgan-tutorial"),
        "--dataset": choice("mnist", "mnist-bundled", "fashion-mnist"),
        "--ema": nums(0.9, 0.999), "--no-ema": FLAG, "--lr-d": nums(1e-4, 4e-4), "--lr-g": nums(1e-4, 4e-4),
        "--max-time": nums(0.5, 60), "--d-dropout": nums(0, 0.3), "--projection": FLAG,
        "--lr-decay": choice("none", "linear"),
        "--data-dir": paths("mnist", "empty_dir", "new"), "--download": FLAG, "--classes": choice("2", "0,1", "7"),
        "--steps": ints(1, 3), "--epochs": nums(0.001, 0.002, 1e-9), "--batch-size": ints(2, 16),
        "--lr": nums(2e-4, 1e-3, 1e6), "--beta1": nums(0, 0.5, 0.999), "--k": ints(1, 2),
        "--g-loss": choice("nonsaturating", "minimax"), "--label-smoothing": nums(0, 0.1, 0.99),
        "--latent-dim": ints(1, 16), "--noise": choice("normal", "uniform"),
        "--upsample": choice("transposed", "nearest"), "--g-hidden": choice("8", "8,8", "4,4,4"),
        "--d-hidden": choice("8", "4,4", "2,2"), "--dtype": choice("float32", "float64"),
        "--seed": ints(0, 5), "--out": paths("new", "new/nested/deep", "empty_dir", "run", ".", "sub/../x"),
        "--resume": FLAG, "--overwrite": FLAG, "--log-every": ints(1, 3), "--sample-every": ints(1, 3),
        "--checkpoint-every": ints(1, 3), "--quiet": FLAG, "--backend": BACKEND}),
    "sample": dict(prefix=[], positional=RUN, flags={
        "--n": ints(1, 16), "--label": ints(0, 9), "--seed": ints(0, 5), "--out": OUT_FILE, "--no-ema": FLAG,
        "--backend": BACKEND}),
    "interpolate": dict(prefix=[], positional=RUN, flags={
        "--mode": choice("linear", "slerp", "sweep", "classes"), "--steps": ints(2, 4), "--rows": ints(1, 2),
        "--dim": ints(0, 7), "--label": ints(0, 9), "--seed": ints(0, 5), "--out": OUT_FILE, "--backend": BACKEND}),
    "inpaint": dict(prefix=["--steps", "2", "--restarts", "1", "--n", "2", "--data-dir", ("PATH", "mnist")],
                    positional=RUN, flags={
        "--mask": choice("center", "left", "right", "top", "bottom", "random"), "--fraction": nums(0, 0.5, 1),
        "--images": paths("digits.npy", "digits.png"), "--data-dir": paths("mnist"), "--n": ints(1, 3),
        "--start": ints(0, 9998), "--steps": ints(1, 3), "--lr": nums(0.03, 1e3), "--restarts": ints(1, 2),
        "--lam": nums(0, 0.1, 10), "--perceptual": choice("nonsaturating", "minimax"), "--unweighted": FLAG,
        "--use-labels": FLAG, "--seed": ints(0, 5), "--out": OUT_FILE, "--save-npy": FLAG, "--backend": BACKEND}),
    "evaluate": dict(prefix=["--n", "20", "--n-real", "20", "--quiet", "--data-dir", ("PATH", "mnist")],
                     positional=RUN, flags={
        "--n": ints(10, 30), "--seed": ints(0, 5), "--batch": ints(50, 500), "--data-dir": paths("mnist"),
        "--n-real": ints(10, 40), "--json": FLAG, "--quiet": FLAG, "--backend": BACKEND}),
    "gradcheck": dict(prefix=[], positional=None, flags={"--backend": BACKEND}),
    "bench": dict(prefix=["--models", "mlp", "--batch-sizes", "2", "--repeats", "1"], positional=None, flags={
        "--models": choice("mlp", "cgan", "mlp,cgan"), "--batch-sizes": choice("2", "2,4"),
        "--repeats": ints(1, 2), "--json": FLAG, "--image-shapes": choice("1x28x28", "3x32x32,1x28x28"),
        "--backend": BACKEND}),
}
EXAMPLES = {"train": 60, "sample": 40, "interpolate": 40, "inpaint": 40, "evaluate": 25, "gradcheck": 4, "bench": 8}
EXTRA = st.sampled_from(["--no-such-flag", "extra", "-x", "--help", "--", "-h"])


@st.composite
def command_lines(draw, name):
    """[subcommand, args...]; ("PATH", kind) items are made real by _materialise. Half the
    command lines are valid throughout; the other half carry one fault: a bad value (junk, out
    of range or a path of any kind), a missing positional, or an unknown argument."""
    spec = SUBCOMMANDS[name]
    items = []            # (flag or None for the positional, valid strategy or FLAG)
    if spec["positional"] is not None:
        items.append((None, spec["positional"]))
    items += [(f, spec["flags"][f]) for f in draw(st.lists(st.sampled_from(sorted(spec["flags"])), max_size=5))]
    fault = draw(st.sampled_from(["none", "none", "value", "drop", "extra"]))
    valued = [i for i, (_, strategy) in enumerate(items) if strategy is not FLAG]
    bad_at = draw(st.sampled_from(valued)) if fault == "value" and valued else -1
    argv = [name, *spec["prefix"]]
    for i, (flag, strategy) in enumerate(items):
        if flag is None and fault == "drop":
            continue
        if flag is not None:
            argv.append(flag)
        if strategy is not FLAG:
            argv.append(draw(st.one_of(JUNK, BAD_PATH)) if i == bad_at else draw(strategy))
    if fault == "extra":
        argv.insert(draw(st.integers(1, len(argv))), draw(EXTRA))
    return argv


# ---------------------------------------------------------------------------- materials
@pytest.fixture(scope="module")
def materials(tmp_path_factory):
    """Pristine runs (mlp with 3 checkpoints, cgan) and files, copied into each example."""
    root = tmp_path_factory.mktemp("fuzz-materials")
    assert cli.main(["train", *TINY, "--steps", "6", "--checkpoint-every", "2", "--sample-every", "3",
                     "--out", str(root / "run")]) == 0
    assert cli.main(["train", *TINY, "--model", "cgan", "--steps", "2", "--latent-dim", "8",
                     "--out", str(root / "cgan_run")]) == 0
    digits = np.load(io.BytesIO(_digits_npy()))
    import matplotlib.image as mpimg
    mpimg.imsave(root / "digits.png", digits[0], cmap="gray")
    return root


def _digits_npy():
    from scratchgan import data
    buf = io.BytesIO()
    np.save(buf, data.load_dataset("mnist-bundled").images[:3])
    return buf.getvalue()


def _materialise(kind, ws: Path, materials: Path) -> str:
    """The path string for a kind, creating what it needs inside the example folder ``ws``."""
    simple = {"new": "fresh", "new/nested/deep": "fresh/nested/deep", ".": ".", "..": "..", "sub/../x": "sub/../x",
              "dev_null": "/dev/null", "proc": "/proc/self/no/such", "nul": "a\0b", "empty": "",
              "long": "L" * 300, "unicode": "r\u00e9sum\u00e9 \u2603", "judges": str(Path(cli.__file__).parents[1] / "judges")}
    if kind in simple:
        return simple[kind]
    if kind == "mnist":
        return str(SHARED_MNIST)
    target = ws / "cwd" / kind
    if kind == "empty_dir":
        target.mkdir(exist_ok=True)
    elif kind in ("file", "file/under"):
        (ws / "cwd" / "file").write_text("just a file")
    elif kind in ("run", "cgan_run") and not target.exists():
        shutil.copytree(materials / kind, target)
    elif kind == "broken_run" and not target.exists():
        shutil.copytree(materials / "run", target)
        for p in sorted((target / "checkpoints").iterdir())[::2]:
            p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    elif kind == "digits.png":
        shutil.copy(materials / "digits.png", target)
    elif kind == "digits.npy":
        target.write_bytes(_digits_npy())
    elif kind == "text.png":
        target.write_text("not an image")
    elif kind == "bad.npy":
        target.write_bytes(b"\x93NUMPY\x01\x00garbage")
    return kind


def _snapshot(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch, materials):
    """No network, a private data cache, and a before/after check of the pristine materials."""
    from scratchgan.data import DataError, datasets

    def no_network(*args, **kwargs):
        raise DataError("no network in the tests")

    monkeypatch.setattr(datasets, "_urlopen", no_network)
    monkeypatch.setattr(datasets, "download_file", no_network)
    for var in ("XDG_CACHE_HOME", "SCRATCHGAN_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    judges = Path(cli.__file__).parents[1] / "judges"      # inside the installed package: a path kind points there
    before = _snapshot(materials), _snapshot(judges)
    yield tmp_path
    assert (_snapshot(materials), _snapshot(judges)) == before, "a command changed files outside its example's folder"


class _Hung(BaseException):
    """Raised by the alarm in _run: a command blocked (e.g. on a FIFO) instead of refusing it."""


def _alarm(signum, frame):
    raise _Hung("no answer in 60 s")


def _run(argv):
    """Run one command in-process; (exit code, stdout, stderr), or fail with the traceback. A
    command that blocks for a minute (reading a FIFO) fails instead of hanging the suite."""
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            rc = cli.main(argv)
    except BaseException as exc:   # noqa: BLE001 - any escape is the failure being tested for
        pytest.fail(f"scratchgan {argv!r} raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return rc, out.getvalue(), err.getvalue()


def _check_outcome(argv, rc, err):
    assert rc in (0, 1, 2), f"scratchgan {argv!r}: exit code {rc}\n{err}"
    assert "Traceback" not in err, f"scratchgan {argv!r} printed a traceback:\n{err}"
    if rc != 0:
        assert any(line.startswith("error: ") for line in err.splitlines()), \
            f"scratchgan {argv!r} failed (exit {rc}) without an 'error:' line:\n{err}"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_random_command_lines(name, sandbox, materials, monkeypatch):
    @settings(max_examples=EXAMPLES[name], deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(command_lines(name))
    def check(argv):
        ws = Path(tempfile.mkdtemp(dir=sandbox))
        (ws / "cwd").mkdir()
        guard = ws / "guard.txt"
        guard.write_text("outside the command's folders")
        try:
            monkeypatch.chdir(ws / "cwd")
            real_argv = [_materialise(a[1], ws, materials) if isinstance(a, tuple) else a for a in argv]
            rc, _, err = _run(real_argv)
            if os.environ.get("FUZZ_LOG"):
                with open(os.environ["FUZZ_LOG"], "a") as f:
                    f.write(f"{rc} {real_argv!r} {err.strip().splitlines()[-1:] }\n")
            _check_outcome(real_argv, rc, err)
            assert guard.read_text() == "outside the command's folders"
        finally:
            monkeypatch.chdir(sandbox)
            shutil.rmtree(ws, ignore_errors=True)

    check()


# ---------------------------------------------------------------------------- corrupted run folders
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n%%EOF\n"


def _lying_png(w=13000, h=13000) -> bytes:
    """A PNG of a few bytes whose header claims w x h pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def _lying_npy(n=10**12) -> bytes:
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 8, 8), np.uint8))
    header["shape"] = (n, 8, 8)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + b"\0" * 256


# name -> how to make it at a path: a FIFO, PostScript under an image's name, headers that lie
PLANTS = {"fifo": lambda p: os.mkfifo(p), "eps": lambda p: p.write_bytes(EPS),
          "lying_png": lambda p: p.write_bytes(_lying_png()), "lying_npy": lambda p: p.write_bytes(_lying_npy())}
RUN_PLACES = ["metrics.csv", "samples.png", "config.json", "samples/step_0000002.png", "monitor.png",
              "checkpoints/NEWEST", "report.html", "progress.gif"]


HOSTILE = st.sampled_from(["../../sentinel.txt", "../sentinel.txt", "/etc/hostname", "..", "", "checkpoints",
                           "step_0000002-0123456789ab.npz/../../sentinel.txt", "a" * 5000, "\u2603", "x\0y"])
ODD = st.one_of(HOSTILE, st.sampled_from([None, -1, 2**70, 1.5, True, [], {}, [1, 2], {"kind": "mlp"},
                                          {"kind": "../x"}, "float16", "NaN"]))
FIELDS = ["npz_file", "npz_sha256", "step", "batch_index", "noise_calls", "model", "train", "dtype"]
CONFIG_FIELDS = ["train", "model", "history", "data"]

DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 99), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 99), st.floats(0, 1)),
    st.tuples(st.just("delete"), st.integers(0, 99)),
    st.tuples(st.just("json"), st.integers(0, 2), st.sampled_from(FIELDS), ODD),
    st.tuples(st.just("config"), st.sampled_from(CONFIG_FIELDS), ODD),
    st.tuples(st.just("hostile_with_checksum"), st.integers(0, 2), HOSTILE),
    st.tuples(st.just("add"), st.sampled_from(["checkpoints/step_0000099.json", "checkpoints/step_0000007-aaaaaaaaaaaa.npz",
                                               ".config.json.abcdefgh.tmp", "samples/step_0000001.png",
                                               "checkpoints/.step_0000002.json.abcdefgh.tmp", "metrics.csv"]),
              st.binary(max_size=64)),
    st.tuples(st.just("link"), st.sampled_from(["checkpoints/step_0000008.json", "checkpoints/step_0000003-abcdefabcdef.npz",
                                                "config.json", "metrics.csv", "samples.png", "checkpoints"]),
              st.sampled_from(["sentinel.txt", "outside_dir", "missing.csv"])),
    # what an attacker plants in place of a run's own file (docs/reliability.md#untrusted-files)
    st.tuples(st.just("plant"), st.sampled_from(RUN_PLACES), st.sampled_from(sorted(PLANTS))),
)


def _fake_ghostscript(ws: Path, monkeypatch) -> Path:
    """A `gs` first on PATH that leaves a mark when run (Pillow's EPS plugin runs Ghostscript);
    returns the mark's path."""
    from PIL import EpsImagePlugin
    bin_dir, mark = ws / "fakebin", ws / "gs-was-run"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f"#!/bin/sh\ntouch '{mark}'\nexit 1\n")
    (bin_dir / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return mark


def _damage(run: Path, outer: Path, op):
    files = sorted(p for p in run.rglob("*") if p.is_file() and not p.is_symlink())
    ckpts = sorted((run / "checkpoints").glob("step_*.json")) if (run / "checkpoints").is_dir() else []
    kind = op[0]
    if kind in ("flip", "truncate", "delete") and files:
        path = files[op[1] % len(files)]
        data = path.read_bytes()
        if kind == "flip" and data:
            i = min(int(op[2] * len(data)), len(data) - 1)
            path.write_bytes(data[:i] + bytes([data[i] ^ op[3]]) + data[i + 1:])
        elif kind == "truncate":
            path.write_bytes(data[:int(op[2] * len(data))])
        elif kind == "delete":
            path.unlink()
    elif kind in ("json", "hostile_with_checksum") and ckpts:
        path = ckpts[op[1] % len(ckpts)]
        try:
            meta = json.loads(path.read_text())
        except ValueError:
            return
        if kind == "json":
            meta[op[2]] = op[3]
        else:   # a hostile name with a checksum that matches the file it names: only the name check stops it
            meta["npz_file"] = op[2]
            meta["npz_sha256"] = hashlib.sha256((outer / "sentinel.txt").read_bytes()).hexdigest()
        path.write_text(json.dumps(meta))
    elif kind == "config" and (run / "config.json").is_file():
        try:
            meta = json.loads((run / "config.json").read_text())
        except ValueError:
            return
        meta[op[1]] = op[2]
        (run / "config.json").write_text(json.dumps(meta))
    elif kind == "add":
        dst = run / op[1]
        if dst.is_symlink() or dst.parent.is_symlink() or (dst.parent.exists() and not dst.parent.is_dir()):
            return                    # only damage inside the run folder
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.is_dir():
            dst.write_bytes(op[2])
    elif kind == "plant":
        dst = run / op[1]
        if op[1] == "checkpoints/NEWEST":
            if not ckpts:
                return
            dst = ckpts[-1]
        if dst.is_symlink() or dst.parent.is_symlink() or not dst.parent.is_dir() or dst.is_dir():
            return
        dst.unlink(missing_ok=True)
        PLANTS[op[2]](dst)
    elif kind == "link":
        dst = run / op[1]
        if dst.parent.is_symlink() or (dst.parent.exists() and not dst.parent.is_dir()):
            return
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(outer / op[2])


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(damage=st.lists(DAMAGE, min_size=1, max_size=4))
def test_corrupted_run_folders(sandbox, materials, monkeypatch, damage):
    ws = Path(tempfile.mkdtemp(dir=sandbox))
    outer = ws / "outer"
    outer.mkdir()
    (outer / "sentinel.txt").write_text("keep me")
    (outer / "outside_dir").mkdir()
    (outer / "outside_dir" / "step_0000001.json").write_text("{}")
    (outer / "outside_dir" / "config.json").write_text("{}")
    run = outer / "run"
    shutil.copytree(materials / "run", run)
    gs_called = _fake_ghostscript(ws, monkeypatch)
    try:
        for op in damage:
            _damage(run, outer, op)
        outside = {k: v for k, v in _snapshot(outer).items() if not k.startswith("run")}
        monkeypatch.chdir(ws)
        commands = [
            ["train", "--resume", "--out", str(run), "--steps", "9", "--checkpoint-every", "1", "--quiet"],
            ["sample", str(run), "--n", "4"],
            ["interpolate", str(run), "--steps", "2", "--rows", "1"],
            ["train", *TINY, "--steps", "1", "--out", str(run), "--overwrite"],
        ]
        for argv in commands:
            rc, _, err = _run(argv)
            _check_outcome(argv, rc, err)
            if os.environ.get("FUZZ_LOG"):
                with open(os.environ["FUZZ_LOG"], "a") as f:
                    f.write(f"R{rc} {argv[0]} {damage!r:.150} {err.strip().splitlines()[-1:]}\n")
            now = {k: v for k, v in _snapshot(outer).items() if not k.startswith("run")}
            assert now == outside, f"scratchgan {argv!r} changed files outside the run folder after {damage!r}"
            assert not gs_called.exists(), f"scratchgan {argv!r} ran Ghostscript after {damage!r}"
    finally:
        monkeypatch.chdir(sandbox)
        shutil.rmtree(ws, ignore_errors=True)



# ---------------------------------------------------------------------------- hostile image folders
FOLDER_ITEMS = st.sampled_from(["good", "good", "eps", "fifo", "lying_png", "lying_npy", "truncated",
                                "link_up", "link_out_file", "link_in", "dangling", "text"])


def _good_png(path: Path, seed: int):
    from PIL import Image
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path, "PNG")


def _plant_in_folder(root: Path, outer: Path, i: int, item: str) -> int:
    """Put item number i into the folder; returns how many good images it adds."""
    name = root / ("a" if i % 2 else "b") / f"{i}.png"
    name.parent.mkdir(exist_ok=True)
    if item == "good":
        _good_png(name, i)
        return 1
    if item == "truncated":
        _good_png(name, i)
        name.write_bytes(name.read_bytes()[:40])
    elif item == "lying_npy":
        name.with_suffix(".npy").write_bytes(_lying_npy())
    elif item == "link_up":
        (name.parent / f"up{i}").symlink_to("../..")
    elif item == "link_out_file":
        name.symlink_to(outer / "outside.png")
    elif item == "link_in":
        first, added = root / "b" / "keep.png", 1              # the link is an image of the folder
        if not first.exists():
            (root / "b").mkdir(exist_ok=True)
            _good_png(first, 999)
            added += 1
        name.symlink_to(first)
        return added
    elif item == "dangling":
        name.symlink_to(outer / "no-such.png")
    elif item == "text":
        name.write_text("not an image")
    else:
        PLANTS[item](name)
    return 0


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(items=st.lists(FOLDER_ITEMS, min_size=1, max_size=8))
def test_hostile_image_folders(sandbox, monkeypatch, items):
    """Whatever an image folder holds, train on it ends in 0 or 2 with one error line, counts only
    the good images inside it (with --skip-bad), never runs Ghostscript and never blocks."""
    ws = Path(tempfile.mkdtemp(dir=sandbox))
    outer, root = ws / "outer", ws / "outer" / "pics"
    root.mkdir(parents=True)
    _good_png(outer / "outside.png", 1234)
    gs_called = _fake_ghostscript(ws, monkeypatch)
    good = sum(_plant_in_folder(root, outer, i, item) for i, item in enumerate(items))
    try:
        monkeypatch.chdir(ws)
        for extra in ([], ["--skip-bad"]):
            argv = ["train", "--model", "mlp", "--dataset", f"folder:{root}", "--image-size", "28", "--channels",
                    "1", "--steps", "1", "--batch-size", "2", "--quiet", "--out", str(ws / "run"), "--overwrite",
                    "--g-hidden", "8", "--d-hidden", "8", *extra]
            rc, out, err = _run(argv)
            _check_outcome(argv, rc, err)
            assert rc in (0, 2), err
            assert not gs_called.exists(), f"Ghostscript ran on the folder {items!r}"
            if rc == 0 and extra:
                from scratchgan import data
                ds = data.image_folder(root, channels=1, image_size=28, skip_bad=True)
                assert len(ds) == good, (items, len(ds), good)
    finally:
        monkeypatch.chdir(sandbox)
        shutil.rmtree(ws, ignore_errors=True)
