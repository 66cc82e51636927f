"""Names are data, never markup or an encoding error: a class folder named like TeX or with bytes
that are not UTF-8, a data folder or run folder with such bytes, all train, draw and report
(docs/monitoring.md: how names are shown)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scratchgan import cli
from scratchgan.training import report

NOT_UTF8 = b"a\xffb"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _folder(root: bytes, classes, n=4):
    """Grey 28x28 noise images, n per class subfolder; names given as bytes."""
    for c, name in enumerate(classes):
        sub = os.path.join(root, name)
        try:
            os.makedirs(sub)
        except (OSError, UnicodeError) as exc:
            pytest.skip(f"this file system refuses the name {name!r} ({exc})")
        for i in range(n):
            pixels = np.random.default_rng([c, i]).integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(os.fsdecode(os.path.join(sub, b"%d.png" % i)))


def test_shown_names():
    assert report.shown("plain $\\frac$ <b>") == "plain $\\frac$ <b>"       # text as it is (escaped later)
    assert report.shown(os.fsdecode(NOT_UTF8)) == "a\\xffb"                   # a byte that is not UTF-8
    assert report.shown("\ud800") == "\\ud800"                                # any other lone surrogate
    assert report.shown(os.fsdecode("é".encode())) == "é"


def test_a_cgan_on_tex_like_and_non_utf8_names_trains_draws_and_reports(tmp_path, capsys):
    """The data folder, a class folder and --out with bytes that are not UTF-8, a class folder
    named like TeX: the run trains, saves its checkpoint, draws the names as plain text, and
    writes report.html (UTF-8) and config.json (names kept exactly)."""
    base = os.fsencode(tmp_path)
    data, out = os.path.join(base, b"pics\xfe"), os.path.join(base, b"run\xfd")
    _folder(data, [NOT_UTF8, b"$\\frac$", b"plain"])
    rc = cli.main(["train", "--model", "cgan", "--dataset", "folder:" + os.fsdecode(data), "--channels", "1",
                   "--image-size", "28", "--steps", "2", "--batch-size", "4", "--g-hidden", "8", "--d-hidden", "8",
                   "--sample-every", "1", "--quiet", "--out", os.fsdecode(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err and "error:" not in err
    run = Path(os.fsdecode(out))
    assert list((run / "checkpoints").glob("step_0000002*.npz"))
    page = (run / "report.html").read_bytes().decode("utf-8")
    assert "<code>run\\xfd</code>" in page and "folder:" in page and "pics\\xfe" in page
    config = json.loads((run / "config.json").read_bytes())
    assert os.fsencode(config["train"]["dataset"]) == b"folder:" + data           # lossless in JSON
    meta = json.loads(next((run / "checkpoints").glob("*.json")).read_bytes())
    assert [os.fsencode(n) for n in meta["class_names"]] == sorted([NOT_UTF8, b"$\\frac$", b"plain"])


def test_monitor_grid_draws_class_names_as_plain_text(tmp_path):
    """mathtext would refuse "$\\frac$" (and turn "$x$" into an italic x); matplotlib cannot draw a
    lone surrogate at all."""
    from scratchgan import models
    gan = models.build("cgan", num_classes=3, g_hidden=[8], d_hidden=[8], seed=0)
    real = np.zeros((3, 1, 28, 28), np.float32)
    labels = np.arange(3)
    names = ["$\\frac$", os.fsdecode(NOT_UTF8), "$x^2$"]
    g = report.monitor_grid(gan, real, real, labels, labels, class_names=names, path=tmp_path / "m.png")
    assert g.real_names == ["$\\frac$", "a\\xffb", "$x^2$"]
    assert (tmp_path / "m.png").stat().st_size > 0


def test_a_strict_stdout_prints_such_names_as_their_bytes(tmp_path):
    """Outside the C.UTF-8 locale Python's stdout refuses surrogates: the "data: ..." line stopped
    the run before it trained."""
    base = os.fsencode(tmp_path)
    data, out = os.path.join(base, b"pics\xfe"), os.path.join(base, b"run\xfd")
    _folder(data, [b"one", b"two"], n=2)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONIOENCODING="utf-8:strict",
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))
    done = subprocess.run([sys.executable, "-m", "scratchgan", "train", "--dataset", "folder:" + os.fsdecode(data),
                           "--channels", "1", "--image-size", "28", "--steps", "1", "--batch-size", "4",
                           "--g-hidden", "8", "--d-hidden", "8", "--out", os.fsdecode(out)],
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"pics\xfe" in done.stdout and (Path(os.fsdecode(out)) / "checkpoints").is_dir()
