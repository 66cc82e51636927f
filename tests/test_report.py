"""Watching a run: the monitor grid, progress.gif, report.html and the trainer's interval hook.

The monitor grid's numbers are checked against D itself (not the PNG): they must be D's sigmoid
outputs, in eval mode, for exactly the images shown; frames are checked with a D whose outputs
are set by hand. Tiny models and a few steps keep the file fast.
"""
from __future__ import annotations

import dataclasses
import functools
import html.parser
import io
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from scratchgan import backend, data, models
from scratchgan.training import report
from scratchgan.layers import Dense, Flatten, Sequential
from scratchgan.layers.activations import sigmoid
from scratchgan.training.runfolder import RunFolderError, check_run_folder, clear_run, is_run_file, run_files
from scratchgan.training import TrainConfig, Trainer
from scratchgan.training.artefacts import Artefacts

T = backend.to_numpy
TINY = {"mlp": dict(g_hidden=(16,), d_hidden=(16,)), "cgan": dict(g_hidden=(16,), d_hidden=(16,)),
        "dcgan": dict(g_channels=(8, 4, 2), d_channels=(2, 4))}


@functools.lru_cache(maxsize=None)
def _mnist():
    return data.load_dataset("mnist-bundled", progress=False)


def _trainer(kind="mlp", run_dir=None, n=256, class_names=None, **cfg):
    gan = models.build(kind, seed=0, **TINY[kind])
    ds = _mnist()
    images = ds.as_float(scale="tanh" if gan.output == "tanh" else "sigmoid")[:n]
    base = dict(model=kind, model_args=dict(TINY[kind]), dataset="mnist-bundled", steps=3, batch_size=16,
                log_every=1, sample_every=1000, checkpoint_every=1000, n_samples=20 if kind == "cgan" else 16)
    base.update(cfg)
    return Trainer(gan, images, ds.labels[:n], TrainConfig(**base), run_dir=run_dir, quiet=True,
                   class_names=class_names)


def _d_probabilities(gan, images, labels=None):
    """D's sigmoid outputs computed independently: eval mode by hand, then train mode back."""
    gan.D.eval()
    try:
        return T(sigmoid(gan.D(gan.d_input(images, labels))))[:, 0]
    finally:
        gan.D.train()


# ---------------------------------------------------------------------------- the monitor grid
@pytest.mark.parametrize("kind", ["cgan", "dcgan"])   # both have Dropout in D
def test_monitor_values_are_ds_sigmoid_outputs_in_eval_mode(kind):
    tr = _trainer(kind)
    tr.train()
    D = tr.gan.D
    D.layers[0].training = False            # a module in its own mode keeps it
    before = {k: T(v).copy() for k, v in D.state_dict().items()}
    grid = tr.monitor()
    assert D.layers[0].training is False and all(m.training for _, m in D.named_modules() if m is not D.layers[0])
    after = {k: T(v).copy() for k, v in D.state_dict().items()}
    assert all(np.array_equal(before[k], after[k]) for k in before)   # no Dropout counter moved

    D.layers[0].training = True
    idx = tr.xp.asarray(tr.artefacts.monitor_fake_index)
    fake = tr.gan.generate(z=tr.artefacts.fixed_z[idx], labels=None if tr.artefacts.fixed_labels is None else tr.artefacts.fixed_labels[idx])
    fake_labels = None if tr.artefacts.fixed_labels is None else tr.artefacts.fixed_labels[idx]
    expect_real = _d_probabilities(tr.gan, tr.artefacts.monitor_real, tr.artefacts.monitor_real_labels)
    expect_fake = _d_probabilities(tr.gan, fake, fake_labels)
    assert grid.real_values.shape == (16,) and grid.fake_values.shape == (16,)
    # the grid runs G and D on the whole fixed batch, the check on 16 rows: OpenBLAS may sum a row of a
    # product in another order for another number of rows (its Haswell kernels do), so equal to rounding
    np.testing.assert_allclose(grid.real_values, expect_real, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grid.fake_values, expect_fake, rtol=1e-6, atol=1e-7)
    # In train mode (Dropout active) D would give other numbers: the grid really used eval mode.
    assert not np.array_equal(T(sigmoid(D(tr.gan.d_input(tr.artefacts.monitor_real, tr.artefacts.monitor_real_labels))))[:, 0], expect_real)
    assert grid.mean_real == pytest.approx(float(expect_real.astype(np.float64).mean()))
    assert grid.real_texts[0] == f"{100 * float(expect_real[0]):.1f}%"
    assert grid.title.startswith(f"step 3: mean D(real) = {100 * grid.mean_real:.1f}%, mean D(fake) = ")
    assert grid.png[:8] == b"\x89PNG\r\n\x1a\n" and grid.paths == []


def _controlled_gan(channels=1, size=28):
    """A GAN whose D outputs the logit x[0, 0, 0] - 0.5 (first pixel), in float64."""
    gan = models.mlp(seed=0, g_hidden=(4,), d_hidden=(4,)).astype(np.float64)
    dense = Dense(channels * size * size, 1, rng=0).astype(np.float64)
    w = np.zeros((1, channels * size * size))
    w[0, 0] = 1.0
    dense.params["weight"][...] = backend.asarray(w)
    dense.params["bias"][...] = -0.5
    return dataclasses.replace(gan, D=Sequential(Flatten(), dense))


def _images(first_pixels, channels=1, size=28):
    x = np.full((len(first_pixels), channels, size, size), 0.3)
    x[:, 0, 0, 0] = first_pixels
    return backend.asarray(x)


def test_frames_green_where_d_is_right_red_where_wrong():
    gan = _controlled_gan()
    real = _images([0.9, 0.2, 0.5, 0.7])       # logits 0.4, -0.3, 0 (exactly 50%), 0.2
    fake = _images([0.1, 0.8, 0.5])            # logits -0.4, 0.3, 0
    g = report.monitor_grid(gan, real, fake, step=7)
    np.testing.assert_allclose(g.real_values, 1 / (1 + np.exp(-np.array([0.4, -0.3, 0.0, 0.2]))), rtol=1e-12)
    assert g.real_values[2] == 0.5 and g.fake_values[2] == 0.5
    assert g.real_correct.tolist() == [True, False, True, True]      # real: right at >= 50%
    assert g.fake_correct.tolist() == [True, False, False]           # fake: right below 50%
    assert g.real_frames == [report.RIGHT, report.WRONG, report.RIGHT, report.RIGHT]
    assert g.fake_frames == [report.RIGHT, report.WRONG, report.WRONG]
    assert report.RIGHT == "#1a9850" and report.WRONG == "#d73027"   # green and red
    assert g.threshold == 0.5 and g.real_texts[:2] == ["59.9%", "42.6%"] and g.fake_texts[2] == "50.0%"
    assert "step 7: mean D(real) = " in g.title and "right at 50%" in g.title

    # The bias alone decides for a D that ignores its input: all real right, all fake wrong.
    gan.D.layers[1].params["weight"][...] = 0.0
    gan.D.layers[1].params["bias"][...] = 3.0
    g = report.monitor_grid(gan, real, fake)
    assert g.real_correct.all() and not g.fake_correct.any()
    assert set(g.real_frames) == {report.RIGHT} and set(g.fake_frames) == {report.WRONG}


def test_score_losses_judged_against_the_midpoint_of_the_means():
    gan = _controlled_gan()
    real = _images([0.9, 0.2, 0.6])            # raw scores 0.4, -0.3, 0.1: mean 0.0667
    fake = _images([0.1, 0.3, 0.55])           # raw scores -0.4, -0.2, 0.05: mean -0.1833
    g = report.monitor_grid(gan, real, fake, probabilities=False, loss_name="wgan-gp")
    np.testing.assert_allclose(g.real_values, [0.4, -0.3, 0.1], atol=1e-12)
    mid = (np.mean([0.4, -0.3, 0.1]) + np.mean([-0.4, -0.2, 0.05])) / 2
    assert g.threshold == pytest.approx(mid)
    assert g.real_correct.tolist() == [True, False, True] and g.fake_correct.tolist() == [True, True, False]
    assert g.real_texts == ["0.4", "-0.3", "0.1"]
    assert "midpoint" in g.title and "wgan-gp critic scores" in g.title and "%" not in g.title.split("\n")[0]
    tr = _trainer("mlp", loss="hinge", steps=1)          # the trainer passes its loss family on
    g = tr.monitor()
    np.testing.assert_array_equal(g.real_values, T(tr.gan.D(tr.artefacts.monitor_real))[:, 0])   # raw scores, no sigmoid
    assert not g.probabilities and "hinge critic scores" in g.title and g.real_texts[0] == f"{g.real_values[0]:.3g}"


def test_conditional_tiles_show_class_names():
    names = list("ABCDEFGHIJ")
    tr = _trainer("cgan", class_names=names)
    g = tr.monitor()
    real_labels = T(tr.artefacts.monitor_real_labels).tolist()
    assert g.real_names == [names[label] for label in real_labels]
    assert g.fake_names == list("ABCDEFGHIJ") + list("ABCDEF")       # fixed noise, one class after another
    default = _trainer("cgan").monitor()
    assert default.real_names == [str(label) for label in real_labels]
    assert _trainer("mlp").monitor().real_names is None                  # unconditional: no labels shown
    with pytest.raises(ValueError, match="class_names has 3 names but the labels go up to 9"):
        _trainer("cgan", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"a conditional model needs real_labels \(one per image\), got None"):
        report.monitor_grid(tr.gan, tr.artefacts.monitor_real, tr.artefacts.monitor_real)


def test_rgb_and_other_sizes_shown_in_colour():
    gan = _controlled_gan(channels=3, size=32)
    gan = dataclasses.replace(gan, output="tanh")
    red = np.full((5, 3, 32, 32), -1.0)
    red[:, 0] = 1.0                                   # pure red in tanh range
    red[:, 0, 0, 0] = np.linspace(-1, 1, 5)           # the first pixel drives D
    g = report.monitor_grid(gan, backend.asarray(red), backend.asarray(red[:3]))
    np.testing.assert_array_equal(g.real_values, _d_probabilities(gan, backend.asarray(red)))
    pixels = np.asarray(Image.open(io.BytesIO(g.png)).convert("RGB")).reshape(-1, 3)
    assert (pixels == [255, 0, 0]).all(axis=1).sum() > 5 * 32 * 32     # the tiles are drawn red
    grey = report.monitor_grid(_controlled_gan(size=64), _images([0.9] * 2, size=64), _images([0.1] * 2, size=64))
    assert grey.real_correct.all() and grey.fake_correct.all()
    with pytest.raises(ValueError, match=r"real must be an array of shape \(N, 1 or 3, H, W\) with N >= 1, "
                                         r"got shape \(2, 2, 8, 8\)"):
        report.monitor_grid(gan, np.zeros((2, 2, 8, 8)), red)
    with pytest.raises(ValueError, match=r"the same \(C, H, W\), got \(3, 32, 32\) and \(1, 32, 32\)"):
        report.monitor_grid(gan, red, red[:, :1])


def test_same_real_batch_and_noise_at_every_interval_and_training_unchanged(tmp_path, monkeypatch):
    tr = _trainer("cgan", run_dir=tmp_path / "run", sample_every=1)
    z0, labels0 = T(tr.artefacts.fixed_z).copy(), T(tr.artefacts.fixed_labels).copy()
    seen, original = [], report.monitor_grid

    def spy(gan, real, fake, real_labels=None, fake_labels=None, **kw):
        idx = tr.xp.asarray(tr.artefacts.monitor_fake_index)
        expect = gan.generate(z=tr.artefacts.fixed_z[idx], labels=tr.artefacts.fixed_labels[idx])
        seen.append((kw["step"], T(real).copy(), T(real_labels).copy(), T(fake).copy(), T(expect),
                     T(fake_labels).copy()))
        return original(gan, real, fake, real_labels, fake_labels, **kw)
    monkeypatch.setattr(report, "monitor_grid", spy)
    tr.train()
    assert [s[0] for s in seen] == [1, 2, 3]
    for step, real, real_labels, fake, expect, fake_labels in seen:
        np.testing.assert_array_equal(real, seen[0][1])
        np.testing.assert_array_equal(real_labels, seen[0][2])
        # G(the first fixed z's), now: to rounding, as G ran on the whole fixed batch (OpenBLAS's kernels
        # may sum a row in another order for another number of rows)
        np.testing.assert_allclose(fake, expect, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(fake_labels, labels0[tr.artefacts.monitor_fake_index])
    assert not np.array_equal(seen[0][3], seen[-1][3])              # G learnt in between
    np.testing.assert_array_equal(seen[0][1], T(tr.images)[tr.artefacts.monitor_index])
    np.testing.assert_array_equal(T(tr.artefacts.fixed_z), z0)
    assert len(set(tr.artefacts.monitor_index.tolist())) == 16

    # Watching changes nothing in training: the same weights, buffers and optimiser state as an
    # unwatched run (D's Dropout counters, G's BatchNorm statistics are untouched by the grids).
    plain = _trainer("cgan")
    plain.train()
    a, b = tr.state()[0], plain.state()[0]
    assert all(np.array_equal(T(a[k]), T(b[k])) for k in a)


def test_fixed_real_batch_survives_resume(tmp_path):
    first = _trainer("cgan", run_dir=tmp_path / "run", steps=2, checkpoint_every=2)
    first.train()
    again = _trainer("cgan", run_dir=tmp_path / "run", steps=4)
    assert again.resume() and again.step == 2
    np.testing.assert_array_equal(again.artefacts.monitor_index, first.artefacts.monitor_index)
    np.testing.assert_array_equal(T(again.artefacts.monitor_real), T(first.artefacts.monitor_real))
    g1, g2 = first.monitor(), again.monitor()
    np.testing.assert_array_equal(g1.real_values, g2.real_values)
    np.testing.assert_array_equal(g1.fake_values, g2.fake_values)
    other_seed = _trainer("cgan", seed=1)
    assert not np.array_equal(other_seed.artefacts.monitor_index, first.artefacts.monitor_index)


# ---------------------------------------------------------------------------- the interval hook
@pytest.mark.parametrize("steps, calls", [(5, [(2, True), (4, True), (5, False)]), (4, [(2, True), (4, False)])])
def test_interval_hook_writes_every_artefact(tmp_path, monkeypatch, steps, calls):
    run = tmp_path / "run"
    tr = _trainer("mlp", run_dir=run, steps=steps, sample_every=2, checkpoint_every=2)
    seen, original = [], Artefacts.write

    def spy(self, live=False):
        seen.append((self.step.step, live))
        out = original(self, live=live)
        assert list(out) == ["samples", "losses", "monitor", "progress", "report"]
        assert ('http-equiv="refresh"' in (run / "report.html").read_text()) == live
        return out
    monkeypatch.setattr(Artefacts, "write", spy)
    tr.train()
    assert seen == calls
    steps_done = [s for s, _ in calls]
    for s in steps_done:
        assert (run / "samples" / f"step_{s:07d}.png").is_file() and (run / "monitor" / f"step_{s:07d}.png").is_file()
    assert sorted(p.name for p in (run / "monitor").iterdir()) == [f"step_{s:07d}.png" for s in steps_done]
    assert (run / "monitor.png").read_bytes() == (run / "monitor" / f"step_{steps:07d}.png").read_bytes()
    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == len(steps_done)
    text = (run / "report.html").read_text()
    assert 'http-equiv="refresh"' not in text and f"(step {steps})" in text
    ours, foreign = run_files(run)
    assert not foreign and {"report.html", "progress.gif", "monitor.png"} <= {p.name for p in ours}


@pytest.mark.parametrize("steps", [2, 4, 5])
def test_the_final_report_links_the_newest_checkpoint(tmp_path, steps):
    """The step's checkpoint is saved (and older ones pruned) before report.html is written: the page
    said "No checkpoint yet" (2 steps) or linked a pruned one (4, 5)."""
    run = tmp_path / "run"
    _trainer("mlp", run_dir=run, steps=steps, sample_every=2, checkpoint_every=2, keep_checkpoints=1).train()
    assert [p.name for p in (run / "checkpoints").glob("*.json")] == [f"step_{steps:07d}.json"]
    text = (run / "report.html").read_text()
    assert re.findall(r'href="checkpoints/(step_\d+\.json)"', text) == [f"step_{steps:07d}.json"]


def test_run_folder_knows_the_new_artefacts(tmp_path):
    for rel in ("monitor.png", "monitor/step_0000500.png", "progress.gif", "report.html",
                "monitor/.step_0000500.png.abcdefgh.tmp", ".report.html.abcdefgh.tmp"):
        assert is_run_file(rel), rel
    for rel in ("monitor/notes.png", "monitor/step_12.png", "report.htm", "progress.gif.bak"):
        assert not is_run_file(rel), rel
    run = tmp_path / "run"
    _trainer("mlp", run_dir=run, steps=2, sample_every=1).train()
    (run / "monitor" / "mine.txt").write_text("keep me")
    kept = clear_run(run)
    assert kept == [run / "monitor" / "mine.txt"] and sorted(os.listdir(run)) == ["monitor"]
    (run / "monitor" / "mine.txt").unlink()
    clear_run(run)
    assert os.listdir(run) == []                                   # an emptied monitor/ is removed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "monitor").symlink_to(elsewhere)
    with pytest.raises(RunFolderError, match="monitor is a link"):
        check_run_folder(run)


# ---------------------------------------------------------------------------- progress.gif
def _fake_grids(run, steps, size=(24, 24)):
    """Grids of one grey level each (3 * their index), with one black pixel so that they are no
    enlargement of a smaller image."""
    (run / "samples").mkdir(parents=True)
    for i, step in enumerate(steps):
        im = Image.new("RGB", size, (3 * i, 3 * i, 3 * i))
        im.putpixel((1, 1), (0, 0, 0))
        im.save(run / "samples" / f"step_{step:07d}.png")


def _gif_frames(path):
    with Image.open(path) as gif:
        out = []
        for k in range(gif.n_frames):
            gif.seek(k)
            out.append((gif.convert("RGB").getpixel((12, 24))[0], gif.info["duration"]))
        return out


def test_progress_gif_frames_in_step_order_at_most_60(tmp_path):
    run = tmp_path / "run"
    steps = [10 * (i + 1) for i in range(70)]
    steps[-1] = 12_345_678                                   # 8 digits: sorted by number, not by name
    _fake_grids(run, steps)
    path = report.progress_animation(run)
    frames = _gif_frames(path)
    assert path == run / "progress.gif" and len(frames) == 60
    levels = [v for v, _ in frames]
    assert levels[0] == 0 and levels[-1] == 3 * 69 and levels == sorted(set(levels))   # first, last, in order
    assert [d for _, d in frames] == [400] * 59 + [2000]
    assert len(_gif_frames(report.progress_animation(run, max_frames=3))) == 3


def test_progress_gif_small_runs_and_no_grids(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert report.progress_animation(run) is None and not (run / "progress.gif").exists()
    shutil.rmtree(run)
    _fake_grids(run, [2, 4])
    (run / "samples" / "step_0000003.png").write_bytes(b"not a png")   # unreadable: left out
    (run / "samples" / "notes.png").write_bytes(b"")                     # not a grid
    (run / "samples" / "step_0000005.png").symlink_to(run / "samples" / "step_0000002.png")   # a link: left out
    assert _gif_frames(report.progress_animation(run)) == [(0, 400), (3, 2000)]
    with pytest.raises(ValueError, match="max_frames must be an integer >= 1, got 0"):
        report.progress_animation(run, max_frames=0)


def test_progress_gif_keeps_the_grids_own_resolution_and_a_pixel_budget(tmp_path):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    rng = np.random.default_rng(0)
    grids = [rng.integers(0, 256, (10, 14, 3), dtype=np.uint8) for _ in range(5)]
    for step, grid in enumerate(grids, 1):       # as save_grid(scale=2) writes them: every pixel doubled
        Image.fromarray(grid.repeat(2, 0).repeat(2, 1)).save(run / "samples" / f"step_{step:07d}.png")
    with Image.open(report.progress_animation(run)) as gif:
        assert gif.n_frames == 5 and gif.size == (14, 10 + 12)          # 12 pixels of caption above
        gif.seek(4)
        shown = np.asarray(gif.convert("RGB"))[12:]
    np.testing.assert_array_equal(shown, grids[4])                      # the grid itself, pixel for pixel
    with Image.open(report.progress_animation(run, max_pixels=14 * 10 * 3)) as gif:
        assert gif.n_frames == 3
    with Image.open(report.progress_animation(run, max_side=7)) as gif:
        assert gif.size == (7, 5 + 12)


# ---------------------------------------------------------------------------- report.html
class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.refs.append(attrs["src"])
        if tag == "a":
            self.refs.append(attrs["href"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    _trainer("mlp", run_dir=run, steps=4, sample_every=2, checkpoint_every=2).train()
    return run


def _check_refs(run, text):
    parser = _Refs()
    parser.feed(text)
    assert parser.refs, "the report links nothing"
    for ref in parser.refs:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc and not ref.startswith("/"), ref
        rel = unquote(parts.path)
        assert ".." not in Path(rel).parts and not os.path.isabs(rel), ref
        assert (run / rel).is_file(), f"{ref} is not in the run folder"
    return parser


def test_report_links_stay_inside_the_run_folder(trained_run):
    run = trained_run
    evaluation = {"step": 4, "n": 100, "dataset": "<script>alert(1)</script>", "judge": {"name": "mnist"},
                  "generated": {"fid": 123.456, "classifier_score": [2.5, 0.1], "precision": 0.25, "recall": 0.5,
                                "class_histogram": {"min_share": 0.01, "kl_uniform": 0.9}},
                  "real": {"fid": 1.5, "classifier_score": [9.8, 0.05], "precision": 0.7, "recall": 0.72,
                           "class_histogram": {"min_share": 0.09, "kl_uniform": 0.001}},
                  "noise": {"fid": 400.0, "classifier_score": [1.0, 0.0]}}
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    text = report.write_report(run).read_text()
    parser = _check_refs(run, text)
    imgs = [r for r in parser.refs if r.endswith((".png", ".gif"))]
    assert imgs == ["samples.png", "progress.gif", "monitor.png", "losses.png"]
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert sorted(r.split("/", 1)[1] for r in parser.refs if r.startswith("checkpoints/")) == ckpts
    assert len(ckpts) == 4                                  # steps 2 and 4, .json and .npz each
    assert "script" not in parser.tags and "<script>alert" not in text and "&lt;script&gt;alert(1)" in text
    assert "<style>" in text and "onload" not in text.lower() and "javascript:" not in text.lower()
    assert "<td>123.5</td><td>1.5</td><td>400</td>" in text                   # FID: generated, real, noise
    assert "<td>2.500 &plusmn; 0.100</td><td>9.800 &plusmn; 0.050</td>" in text
    assert "<th>train.lr</th><td>0.0002</td>" in text and "<th>model.kind</th><td>mlp</td>" in text
    (run / "evaluation.json").unlink()
    assert "No evaluation yet" in report.write_report(run).read_text()


def test_report_survives_damaged_or_missing_files(trained_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    (run / "config.json").write_text('{"train": <b>')
    (run / "evaluation.json").write_bytes(b"\xff\xfe garbage")
    text = report.write_report(run, refresh=30).read_text()
    assert "No configuration shown: config.json cannot be read (JSONDecodeError" in text
    assert "No evaluation shown: evaluation.json cannot be read (UnicodeDecodeError" in text
    assert '<meta http-equiv="refresh" content="30">' in text and "<b>" not in text
    (run / "config.json").write_text('"<i>just a string</i>"')
    (run / "evaluation.json").write_text("[1, 2]")
    text = report.write_report(run).read_text()
    assert "config.json holds a str, not an object" in text and "no &#x27;generated&#x27; numbers" in text
    for name in ("config.json", "evaluation.json", "monitor.png", "progress.gif", "losses.png", "metrics.csv"):
        (run / name).unlink()
    shutil.rmtree(run / "checkpoints")
    text = report.write_report(run).read_text()
    assert "config.json is not there" in text and "No checkpoint yet" in text and "monitor.png is not there yet" in text
    _check_refs(run, text)
    with pytest.raises(ValueError, match="refresh must be None or an integer >= 1"):
        report.write_report(run, refresh=0)
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        report.write_report(tmp_path / "nothing")


EVALUATION = {"step": 4, "n": 100, "dataset": "mnist", "judge": {"name": "mnist"},
              "generated": {"fid": 123.456, "classifier_score": [2.5, 0.1], "precision": 0.25, "recall": 0.5,
                            "nn_pixel_median": 5.25, "nn_feature_median": 3.5},
              "real": {"fid": 1.5, "classifier_score": [9.8, 0.05], "nn_pixel_median": 6.0, "nn_feature_median": 4.0},
              "memorisation": {"pixel_ratio": 0.875, "feature_ratio": 0.625}}


def test_evaluation_section_placeholder_numbers_and_nearest_neighbours(trained_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    text = report.write_report(run).read_text()
    assert "No evaluation yet: <code>scratchgan evaluate RUN_DIR</code> writes" in text and "`" not in text
    config = json.loads((run / "config.json").read_text())
    config["train"]["dataset"] = "folder:pics"                 # evaluate scores image-folder runs too
    (run / "config.json").write_text(json.dumps(config))
    text = report.write_report(run).read_text()
    assert "No evaluation yet: <code>scratchgan evaluate RUN_DIR</code> writes" in text and "`" not in text
    (run / "evaluation.json").write_text(json.dumps(EVALUATION))
    shutil.copy(run / "samples.png", run / "nearest_neighbours.png")
    text = report.write_report(run).read_text()
    assert "= 0.875 (pixels), 0.625 (the judge's features)" in text      # both ratios the CLI prints
    parser = _check_refs(run, text)
    assert "nearest_neighbours.png" in parser.refs


def _browser():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def test_report_renders_in_a_headless_browser(trained_run, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium or chromium-browser on PATH (nor /usr/bin/chromium): the page is checked "
                    "by html.parser only")
    report.write_report(trained_run)
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           (trained_run / "report.html").resolve().as_uri()]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)        # the browser and the processes it started
        out, _ = proc.communicate()
        pytest.fail(f"{browser} did not finish the screenshot within 60 s:\n{out[-3000:]}")
    assert shot.is_file() and shot.stat().st_size > 0, f"exit code {proc.returncode}:\n{out[-3000:]}"
    with Image.open(shot) as im:
        assert im.size == (1200, 2000)
        colours = np.asarray(im.convert("RGB"))[::10, ::10].reshape(-1, 3)
    assert len(np.unique(colours, axis=0)) > 20          # images and text, not a blank page


def test_report_fits_a_600_pixel_window(trained_run, tmp_path):
    """No table is wider than a 600 px window: the page's scroll width is its client width (the
    last-logged-metrics row of 8 columns made it 694 px)."""
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium or chromium-browser on PATH (nor /usr/bin/chromium)")
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    (run / "evaluation.json").write_text(json.dumps(EVALUATION))
    text = report.write_report(run).read_text()
    probe = run / "probe.html"      # the page, with one script that writes its widths into the DOM
    probe.write_text(text.replace("</body>", '<script>document.body.setAttribute("data-width", '
                                  'document.documentElement.scrollWidth + "/" + '
                                  'document.documentElement.clientWidth)</script></body>'))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
           "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=600,800", "--dump-dom", probe.resolve().as_uri()]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{browser} did not dump the page within 60 s")
    found = re.search(r'data-width="(\d+)/(\d+)"', out)
    assert found, out[-2000:]
    scroll, client = map(int, found.groups())
    assert 500 < client <= 600 and scroll == client, f"the page is {scroll} px wide in a {client} px window"
