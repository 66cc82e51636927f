"""Good samples per CPU minute: the moving average of G (EMA), separate learning rates, the time
limit, the models' recipes and the tutorials' models kept by name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scratchgan import backend, cli, models
from scratchgan.training.ema import EMA
from scratchgan.training import TrainConfig, Trainer, load_run

from helpers import A, H

TINY = ["--batch-size", "16", "--dataset", "mnist-bundled", "--quiet", "--g-hidden", "16", "--d-hidden", "16"]


def _images(n=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, 28, 28)).astype(np.float32)


def _trainer(run_dir=None, **cfg):
    gan = models.mlp(g_hidden=(8,), d_hidden=(8,), seed=0)
    config = TrainConfig(model="mlp", model_args=dict(g_hidden=[8], d_hidden=[8]), steps=6, batch_size=16,
                         log_every=1, checkpoint_every=1000, sample_every=1000, **cfg)
    return Trainer(gan, _images(), None, config, run_dir=run_dir, quiet=True)


# ---------------------------------------------------------------------------- the moving average
def test_the_average_follows_its_definition_with_warm_up():
    """After n updates the average equals the recurrence a_t = b_t a_{t-1} + (1 - b_t) p_t with
    b_t = min(decay, (1 + t)/(10 + t)), computed here by hand from G's weights after every step."""
    backend.set_default_dtype(np.float64)
    tr = _trainer(ema=0.9, dtype="float64")
    expected = {n: H(p).copy() for n, p, _ in tr.gan.G.named_parameters()}   # a_0: G's initial weights
    for t in range(1, 8):
        tr.train_step()
        b = min(0.9, (1 + t) / (10 + t))
        for n, p, _ in tr.gan.G.named_parameters():
            expected[n] = b * expected[n] + (1 - b) * H(p)
    got = {n: H(p) for n, p, _ in tr.ema.average.named_parameters()}
    assert tr.ema.updates == 7
    for n in expected:
        assert np.allclose(got[n], expected[n], rtol=1e-13, atol=1e-15), n
    assert not np.allclose(got["0.weight"], H(tr.gan.G[0].params["weight"]))     # an average, not the last weights


def test_the_average_of_batchnorm_buffers_and_counters():
    backend.set_default_dtype(np.float64)
    gan = models.dcgan(g_channels=(4, 4, 2), d_channels=(2, 4), seed=0)
    gan.astype(np.float64)
    ema = EMA(gan.G, 0.5)
    rm = dict(gan.G.named_buffers())["1.running_mean"]
    before = H(dict(ema.average.named_buffers())["1.running_mean"]).copy()
    rm[...] += 1.0
    dict(gan.G.named_buffers())["1.num_batches_tracked"][...] = 7
    ema.update()                                        # t = 1: b = min(0.5, 2/11) = 2/11
    b = 2 / 11
    avg = dict(ema.average.named_buffers())
    assert np.allclose(H(avg["1.running_mean"]), b * before + (1 - b) * H(rm))
    assert int(avg["1.num_batches_tracked"]) == 7      # integer buffers are copied
    with pytest.raises(ValueError, match="EMA.*decay"):
        EMA(gan.G, 1.0)


def test_samples_checkpoints_and_resume_use_the_average(tmp_path):
    a = _trainer(tmp_path / "a", ema=0.99)
    a.train()
    b = _trainer(tmp_path / "b", ema=0.99)
    b.train(steps=3)
    b2 = _trainer(tmp_path / "b", ema=0.99)
    assert b2.resume() and b2.ema.updates == 3
    b2.train()
    sa, sb = a.state()[0], b2.state()[0]
    assert any(k.startswith("Gema.") for k in sa)
    assert not [k for k in sa if not np.array_equal(H(sa[k]), H(sb[k]))], "resume with EMA is not exact"
    gan, meta = load_run(tmp_path / "a")
    assert meta["weights"] == "ema"
    assert np.array_equal(H(gan.G[0].params["weight"]), H(a.ema.average[0].params["weight"]))
    raw, meta = load_run(tmp_path / "a", use_ema=False)
    assert meta["weights"] == "raw" and np.array_equal(H(raw.G[0].params["weight"]), H(a.gan.G[0].params["weight"]))
    # the sample grid of the run is drawn from the average
    z = a.artefacts.fixed_z
    assert np.array_equal(H(a.sampler.generate(z=z)), H(gan.generate(z=z)))


def test_separate_learning_rates():
    tr = _trainer(lr=1e-3, lr_d=4e-4, lr_g=1e-4)
    assert (tr.opt_D.lr, tr.opt_G.lr) == (4e-4, 1e-4)
    tr = _trainer(lr=1e-3)
    assert (tr.opt_D.lr, tr.opt_G.lr) == (1e-3, 1e-3)


def test_linear_learning_rate_decay_follows_the_step_and_resumes_exactly(tmp_path):
    tr = _trainer(lr=1e-3, lr_g=5e-4, lr_decay="linear")
    seen = []
    for _ in range(6):
        tr.train_step()
        seen.append((tr.opt_D.lr, tr.opt_G.lr))
    # the rate of step t (0-based) is lr * (1 - t / T), T = 6: the last step still moves, the next would not
    assert np.allclose(seen, [(1e-3 * (1 - t / 6), 5e-4 * (1 - t / 6)) for t in range(6)], rtol=1e-12)
    assert _trainer(lr=1e-3).opt_D.lr == 1e-3 and _trainer(lr=1e-3).config.lr_decay == "none"
    a = _trainer(tmp_path / "a", lr_decay="linear")
    a.train()
    b = _trainer(tmp_path / "b", lr_decay="linear")
    b.train(steps=4)
    b2 = _trainer(tmp_path / "b", lr_decay="linear")
    assert b2.resume()
    b2.train()
    sa, sb = a.state()[0], b2.state()[0]
    assert not [k for k in sa if not np.array_equal(H(sa[k]), H(sb[k]))], "resume with a decaying rate is not exact"
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay="cosine").validate()


def test_max_time_stops_and_saves(tmp_path, monkeypatch):
    import scratchgan.training.loop as loop
    clock = iter(np.arange(0.0, 1000.0, 1.0))        # every call one second later
    monkeypatch.setattr(loop.time, "perf_counter", lambda: float(next(clock)))
    tr = _trainer(tmp_path / "run", max_time=3.5)
    tr.config.steps = 100
    last = tr.train()
    assert tr.stopped_by_time and 1 <= tr.step < 100
    assert last["step"] == tr.step                       # the last step is logged
    assert (tmp_path / "run" / "checkpoints" / f"step_{tr.step:07d}.json").is_file()


# ---------------------------------------------------------------------------- recipes and the CLI
def test_tutorial_models_keep_the_seed_tutorials_networks(tmp_path):
    for name, steps in (("mlp-tutorial", 10000), ("cgan-tutorial", 10000), ("dcgan-tutorial", 1000)):
        assert cli.RECIPES[name]["train"]["steps"] == steps and cli.RECIPES[name]["model_args"] == {}
        assert models.MODELS[name] is models.MODELS[name.split("-")[0]]
    run = tmp_path / "t"
    assert cli.main(["train", "--model", "dcgan-tutorial", "--batch-size", "8", "--steps", "1", "--dataset",
                     "mnist-bundled", "--quiet", "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["model"] == "dcgan-tutorial" and cfg["train"]["ema"] is None
    assert cfg["model"]["g_channels"] == [256, 128, 64] and cfg["model"]["dropout"] == 0.3
    assert cli.main(["sample", str(run), "--n", "4"]) == 0


@pytest.mark.parametrize("model", ["mlp", "cgan", "dcgan"])
def test_default_recipes_are_recorded_in_the_run(model, tmp_path):
    run = tmp_path / model
    extra = ["--g-hidden", "8,4,2", "--d-hidden", "4,8"] if model == "dcgan" else ["--g-hidden", "8", "--d-hidden", "8"]
    assert cli.main(["train", "--model", model, "--batch-size", "8", "--steps", "2", "--dataset", "mnist-bundled",
                     "--quiet", "--out", str(run), *extra]) == 0
    train = json.loads((run / "config.json").read_text())["train"]
    recipe = cli.RECIPES[model]
    for key, value in recipe["train"].items():
        if key not in ("steps", "batch_size"):
            assert train[key] == value, key
    for key, value in recipe["model_args"].items():
        if key not in ("g_channels", "d_channels", "g_hidden", "d_hidden"):
            assert train["model_args"][key] == value, key


def test_recipe_switches_can_be_turned_off_and_give_way_to_wgan_gp(tmp_path, capsys):
    small = ["--batch-size", "8", "--steps", "1", "--dataset", "mnist-bundled", "--quiet", "--g-hidden", "8",
             "--d-hidden", "8"]

    def model_of(name, *flags):
        run = tmp_path / name
        assert cli.main(["train", *small, "--out", str(run), *flags]) == 0
        return json.loads((run / "config.json").read_text())["model"]
    assert cli.RECIPES["mlp"]["model_args"]["minibatch_std"] and cli.RECIPES["cgan"]["model_args"]["projection"]
    assert model_of("m", "--model", "mlp").get("minibatch_std") is True
    assert "minibatch_std" not in model_of("m0", "--model", "mlp", "--no-minibatch-std")
    # WGAN-GP differentiates D twice per sample: the recipe's batch-coupling layer gives way ...
    assert "minibatch_std" not in model_of("gp", "--model", "mlp", "--loss", "wgan-gp")
    # ... but one asked for is refused with the reason
    assert cli.main(["train", *small, "--out", str(tmp_path / "gp2"), "--model", "mlp", "--loss", "wgan-gp",
                     "--minibatch-std"]) != 0
    assert "MinibatchStd" in capsys.readouterr().err
    assert "projection" not in model_of("c0", "--model", "cgan", "--no-projection")
    small_conv = [*small[:-4], "--g-hidden", "8,4,2", "--d-hidden", "2,4"]
    assert cli.main(["train", *small_conv, "--out", str(tmp_path / "dm"), "--model", "dcgan", "--minibatch-std"]) == 0
    assert json.loads((tmp_path / "dm" / "config.json").read_text())["model"]["minibatch_std"] is True
    assert cli.main(["train", *small, "--out", str(tmp_path / "cm"), "--model", "cgan", "--minibatch-std"]) == 2
    assert "mlp and dcgan" in capsys.readouterr().err
    assert cli.main(["train", *small, "--out", str(tmp_path / "d"), "--model", "dcgan", "--no-projection"]) == 2
    # the dcgan recipe's spectral norm: off on request, and it gives way to the WGAN families' own constraint
    assert cli.RECIPES["dcgan"]["model_args"]["spectral_norm"]
    assert model_of("dsn", "--model", "dcgan", *small_conv[-4:]).get("spectral_norm") is True
    assert "spectral_norm" not in model_of("dsn0", "--model", "dcgan", *small_conv[-4:], "--no-spectral-norm")
    for loss in ("wgan", "wgan-gp"):
        assert "spectral_norm" not in model_of(f"d-{loss}", "--model", "dcgan", *small_conv[-4:], "--loss", loss)
    assert model_of("d-gp-sn", "--model", "dcgan", *small_conv[-4:], "--loss", "wgan-gp",
                    "--spectral-norm").get("spectral_norm") is True


def test_the_dcgan_recipe_widths_are_per_image_size_and_flags_win(tmp_path):
    small = ["--model", "dcgan", "--batch-size", "8", "--steps", "1", "--dataset", "mnist-bundled", "--quiet"]
    assert cli.main(["train", *small, "--out", str(tmp_path / "a")]) == 0
    model = json.loads((tmp_path / "a" / "config.json").read_text())["model"]
    widths = cli.RECIPES["dcgan"]["channels"][28]
    assert (model["g_channels"], model["d_channels"]) == (list(widths["g_channels"]), list(widths["d_channels"]))
    assert cli.main(["train", *small, "--g-hidden", "8,4,2", "--out", str(tmp_path / "b")]) == 0
    model = json.loads((tmp_path / "b" / "config.json").read_text())["model"]
    assert model["g_channels"] == [8, 4, 2] and model["d_channels"] == list(widths["d_channels"])


def test_a_recipes_two_rates_give_way_to_a_given_rate_and_to_the_loss_familys(tmp_path):
    """The dcgan recipe trains G at lr_g and D at lr: --lr sets both (in a new run and on --resume),
    --lr-g/--lr-d set one, and a loss family with its own rate (wgan-gp) replaces both."""
    small = ["--model", "dcgan", "--batch-size", "8", "--steps", "1", "--dataset", "mnist-bundled", "--quiet",
             "--g-hidden", "8,4,2", "--d-hidden", "4,8"]

    def rates(name, *flags):
        run = tmp_path / name
        assert cli.main(["train", *small, "--out", str(run), *flags]) == 0
        train = json.loads((run / "config.json").read_text())["train"]
        return train["lr"], train["lr_g"], train["lr_d"]
    recipe = cli.RECIPES["dcgan"]["train"]
    assert recipe["lr_g"] != recipe["lr"]
    assert [cli.args._rate(v) for v in (5e-4, 2e-3, 2.5e-4, 1e-10)] == ["5e-4", "2e-3", "0.00025", "1e-10"]
    assert rates("default") == (recipe["lr"], recipe["lr_g"], None)
    assert rates("lr", "--lr", "1e-3") == (1e-3, None, None)
    assert rates("lr-g", "--lr-g", "1e-3") == (recipe["lr"], 1e-3, None)
    assert rates("lr-and-lr-g", "--lr", "1e-3", "--lr-g", "3e-3") == (1e-3, 3e-3, None)
    assert rates("gp", "--loss", "wgan-gp") == (1e-4, None, None)
    tr = _trainer(lr=5e-4, lr_g=2e-3)
    assert (tr.opt_G.lr, tr.opt_D.lr) == (2e-3, 5e-4)
    # --resume with --lr alone: both networks at the new rate, the change recorded
    run = tmp_path / "default"
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "2", "--lr", "1e-4", "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["train"]["lr"], config["train"]["lr_g"]) == (1e-4, None)
    assert config["history"][-1]["changed"]["lr_g"] == [recipe["lr_g"], None]


def test_cli_ema_flags(tmp_path, capsys):
    run = tmp_path / "e"
    assert cli.main(["train", *TINY, "--model", "mlp-tutorial", "--steps", "3", "--ema", "0.9", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["ema"] == 0.9
    assert cli.main(["sample", str(run), "--n", "4", "--no-ema", "--out", str(tmp_path / "raw.png")]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "4", "--no-ema"]) == 2
    assert "--no-ema" in capsys.readouterr().err
    assert cli.main(["train", *TINY, "--steps", "1", "--ema", "1", "--out", str(tmp_path / "x")]) == 2


# ---------------------------------------------------------------------------- projection discriminator
from hypothesis import given, strategies as st   # noqa: E402

import scratchgan as sg   # noqa: E402
from scratchgan.layers import Dense, Dropout, LeakyReLU, Projection, Sequential   # noqa: E402


@given(seed=st.integers(0, 10**6), n=st.integers(1, 5), p=st.integers(1, 6), k=st.integers(1, 5),
       c=st.integers(1, 4))
def test_projection_gradcheck(seed, n, p, k, c):
    backend.set_default_dtype(np.float64)
    rng = np.random.default_rng(seed)
    phi = Sequential(Dense(p, k, rng=seed), LeakyReLU(0.2))
    layer = Projection(phi, k, c, rng=seed + 1)
    x = rng.normal(size=(n, p))
    x[np.abs(x) < 0.05] += 0.1
    X = np.concatenate([x, np.eye(c)[rng.integers(0, c, n)]], axis=1)
    assert sg.gradcheck(layer, A(X), loss=None).passed


def test_projection_scores_by_its_definition_and_its_partial_backwards_agree():
    backend.set_default_dtype(np.float64)
    phi = Sequential(Dense(4, 3, rng=0), LeakyReLU(0.2), Dropout(0.0))
    layer = Projection(phi, 3, 2, rng=1)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 4)), np.array([0, 1, 1, 0, 1])
    X = A(np.concatenate([x, np.eye(2)[y]], axis=1))
    out, cache = layer.forward(X)
    h = H(phi(A(x)))
    w, b, V = (H(layer.params[k]) for k in ("weight", "bias", "embedding"))
    assert np.allclose(H(out)[:, 0], h @ w[0] + b[0] + (h * V[y]).sum(axis=1))
    dY = A(rng.normal(size=(5, 1)))
    layer.zero_grad()
    dX = layer.backward(dY, cache)
    full = {n: H(g).copy() for n, _, g in layer.named_parameters()}
    layer.zero_grad()
    assert np.array_equal(H(layer.backward_input(dY, cache)), H(dX))
    assert all(not H(g).any() for _, _, g in layer.named_parameters())     # backward_input leaves them alone
    layer.backward_params(dY, cache)
    assert all(np.allclose(H(g), full[n]) for n, _, g in layer.named_parameters())


def test_cgan_with_a_projection_discriminator_trains_and_resumes(tmp_path):
    run = tmp_path / "p"
    argv = ["train", "--model", "cgan-tutorial", "--projection", *TINY, "--out", str(run)]
    assert cli.main([*argv, "--steps", "2"]) == 0
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "3", "--quiet"]) == 0
    gan, meta = load_run(run)
    assert isinstance(gan.D[0], Projection) and meta["model"]["projection"] is True
    assert cli.main(["sample", str(run), "--label", "3", "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["train", "--model", "mlp", "--projection", *TINY, "--steps", "1", "--out", str(tmp_path / "x")]) == 2


# ---------------------------------------------------------------------------- the recipe search
def test_recipe_search_trials_are_valid_train_commands(tmp_path):
    import argparse
    import runpy
    from pathlib import Path
    search = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "recipe_search.py"))
    assert list(search["select"]("cgan", "", ["x=--model cgan --lr 1e-3"])) == ["x"]
    assert list(search["select"]("mlp", "tutorial,ema")) == ["tutorial", "ema"]
    args = argparse.Namespace(budget=60.0, seed=3)
    cmd = search["command"]("--model mlp-tutorial --steps 700", args, tmp_path / "t")
    parsed = cli.build_parser().parse_args(cmd[3:])
    assert parsed.steps == 700 and parsed.max_time == 60.0 and parsed.seed == 3   # the trial's --steps wins
    for model, grid in search["TRIALS"].items():   # every trial parses, and names a model of its family
        for name, flags in grid.items():
            parsed = cli.build_parser().parse_args(search["command"](flags, args, tmp_path / name)[3:])
            assert parsed.model.split("-")[0] == model, name


# ---------------------------------------------------------------------------- recipes from Python
def _run_checksums(run):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_run_checksums import checksums
    return checksums(run)


@pytest.mark.parametrize("model, extra", [("mlp", {}), ("cgan-tutorial", {}), ("dcgan", dict(loss="hinge")),
                                          ("dcgan-tutorial", dict(loss="wgan-gp", batch_size=16))])
def test_python_trains_a_cli_recipe_in_one_call_to_identical_checkpoints(model, extra, tmp_path):
    """sg.train(model, ...) is `scratchgan train --model model ...`: same recipe, data, model and
    steps, so the checkpoints' arrays and the pictures are bit for bit the same."""
    import scratchgan as sg
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
    assert cli.main(["train", "--model", model, "--out", str(tmp_path / "cli"), "--steps", "4", "--sample-every", "2",
                     "--checkpoint-every", "2", "--quiet", "--threads", "1", *flags]) == 0
    backend.set_threads(1)
    trainer = sg.train(model, out=tmp_path / "python", steps=4, sample_every=2, checkpoint_every=2, quiet=True,
                       **extra)
    assert trainer.step == 4 and trainer.stop_signal is None
    from_cli, from_python = _run_checksums(tmp_path / "cli"), _run_checksums(tmp_path / "python")
    assert from_cli == from_python and len(from_cli) > 20
    assert backend.default_dtype() == np.float32      # the call leaves the default as it found it


def test_python_gets_the_cli_checks_named_by_setting(tmp_path):
    import scratchgan as sg
    with pytest.raises(ValueError, match=r"^g_loss applies to loss bce only \(this run: loss wgan, optimizer rmsprop\)"):
        sg.recipe("mlp", loss="wgan", g_loss="minimax")
    with pytest.raises(ValueError, match="projection applies to the cgan models, not dcgan"):
        sg.recipe("dcgan", model_args=dict(projection=True))
    with pytest.raises(ValueError, match="unknown settings"):
        sg.recipe("mlp", stepz=3)
    assert sg.recipe("dcgan", loss="wgan-gp").model_args == {"dropout": 0.0}   # as the CLI: no spectral norm
    sg.train("mlp", out=tmp_path / "r", steps=2, quiet=True, model_args=dict(g_hidden=[8], d_hidden=[8]))
    with pytest.raises(ValueError, match="already holds a run: continue it with resume, choose another out"):
        sg.train("mlp", out=tmp_path / "r", steps=2, quiet=True)
    with pytest.raises(ValueError, match="g_hidden 16 differs from the run's 8 and cannot change on resume"):
        sg.train(out=tmp_path / "r", resume=True, steps=4, model_args=dict(g_hidden=[16]))
    assert sg.train(out=tmp_path / "r", resume=True, steps=4, quiet=True, lr=1e-4).step == 4
    assert sg.recipe("cgan", ema=None).ema is None and sg.recipe("cgan").ema == 0.999
