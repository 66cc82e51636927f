"""Beyond the minimax loss: the Wasserstein, hinge and least-squares losses, RMSprop, weight
clipping, spectral normalisation, and the trainer and CLI running each loss family.
(The gradient penalty's double backward is checked in tests/test_penalty.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend, cli, losses, models
from scratchgan.layers import Conv2D, Dense, LeakyReLU, SpectralNorm, spectral_norm
from scratchgan.optim import RMSprop
from scratchgan.training import LOSS_DEFAULTS, TrainConfig, Trainer

from helpers import A, H, conv_geometry

TINY = ["--batch-size", "16", "--dataset", "mnist-bundled", "--quiet", "--g-hidden", "16", "--d-hidden", "16"]


# ---------------------------------------------------------------------------- losses
def _scores(seed, n, away_from=()):
    """Scores in [-3, 3], at least 0.05 from each point of away_from (the hinge's kinks)."""
    x = np.random.default_rng(seed).uniform(-3, 3, (n, 1))
    for p in away_from:
        close = np.abs(x - p) < 0.05
        x[close] += 0.1
    return x


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 9), m=st.integers(1, 9))
@pytest.mark.parametrize("fn,kinks", [(losses.wasserstein_d, ()), (losses.hinge_d, (1.0, -1.0)),
                                      (losses.least_squares_d, ())])
def test_d_losses_gradcheck(fn, kinks, seed, n, m):
    real, fake = _scores(seed, n, kinks), _scores(seed + 1, m, kinks)
    result = sg.gradcheck(fn, (A(real), A(fake)))
    assert result.passed, result


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 9))
@pytest.mark.parametrize("fn", [losses.wasserstein_g, losses.least_squares_g])
def test_g_losses_gradcheck(fn, seed, n):
    result = sg.gradcheck(fn, (A(_scores(seed, n)),))
    assert result.passed, result


def test_loss_values_by_their_definitions():
    r, f = np.array([[2.0], [0.5], [-1.5]]), np.array([[-2.0], [0.0]])
    loss, dr, df = losses.wasserstein_d(A(r), A(f))
    assert float(H(loss)) == pytest.approx(f.mean() - r.mean())
    assert np.allclose(H(dr), -1 / 3) and np.allclose(H(df), 1 / 2)
    loss, dr, df = losses.hinge_d(A(r), A(f))
    assert float(H(loss)) == pytest.approx(np.maximum(1 - r, 0).mean() + np.maximum(1 + f, 0).mean())
    assert np.allclose(H(dr), [[0], [-1 / 3], [-1 / 3]]) and np.allclose(H(df), [[0], [1 / 2]])
    loss, dr, df = losses.least_squares_d(A(r), A(f))
    assert float(H(loss)) == pytest.approx(0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean())
    assert float(H(losses.least_squares_g(A(f))[0])) == pytest.approx(0.5 * ((f - 1) ** 2).mean())
    assert float(H(losses.wasserstein_g(A(f))[0])) == pytest.approx(-f.mean())
    # the gradients do not touch the inputs
    assert np.array_equal(r, [[2.0], [0.5], [-1.5]])


@pytest.mark.parametrize("name,cls,g", [("bce", losses.BCELoss, losses.g_loss_nonsaturating),
                                        ("wgan", losses.WassersteinLoss, losses.wasserstein_g),
                                        ("wgan-gp", losses.WassersteinLoss, losses.wasserstein_g),
                                        ("hinge", losses.HingeLoss, losses.wasserstein_g),
                                        ("lsgan", losses.LeastSquaresLoss, losses.least_squares_g)])
def test_make_loss_builds_each_family(name, cls, g):
    loss = losses.make_loss(name, gp_weight=7.0)
    assert isinstance(loss, cls) and loss.name == name
    assert loss.gradient_penalty == (7.0 if name == "wgan-gp" else 0.0)
    assert loss.probabilities == (name == "bce")
    x = A(np.array([[0.3], [-0.2]]))
    assert np.array_equal(H(loss.g(x)[1]), H(g(x)[1]))


def test_bce_loss_keeps_the_minimax_game_and_label_smoothing():
    loss = losses.make_loss("bce", g_loss="minimax", label_smoothing=0.1)
    r, f = A(np.array([[1.0], [2.0]])), A(np.array([[-1.0]]))
    a, b = loss.d(r, f), losses.d_loss(r, f, 0.9)
    assert all(np.array_equal(H(x), H(y)) for x, y in zip(a, b))
    assert loss.g is losses.g_loss_minimax
    with pytest.raises(ValueError, match="unknown GAN loss 'vae'"):
        losses.make_loss("vae")
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        losses.BCELoss(label_smoothing=1.0)


def test_means_are_probabilities_only_for_bce():
    r, f = A(np.array([[0.0], [0.0]])), A(np.array([[4.0]]))
    assert float(H(losses.make_loss("bce").means(r, f)[0])) == 0.5
    assert float(H(losses.make_loss("wgan").means(r, f)[1])) == 4.0


# ---------------------------------------------------------------------------- RMSprop
def test_rmsprop_is_exported_like_adam_and_sgd():
    assert sg.RMSprop is RMSprop and sg.Adam is sg.optim.Adam and sg.SGD is sg.optim.SGD


def _rmsprop_reference(params, grads_per_step, lr, alpha, eps, weight_decay, momentum, centered):
    """torch.optim.RMSprop's algorithm written out per parameter, in float64."""
    p = {k: v.astype(np.float64).copy() for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    a = {k: np.zeros_like(x) for k, x in p.items()}
    b = {k: np.zeros_like(x) for k, x in p.items()}
    for grads in grads_per_step:
        for k in p:
            g = grads[k] + weight_decay * p[k]
            v[k] = alpha * v[k] + (1 - alpha) * g * g
            if centered:
                a[k] = alpha * a[k] + (1 - alpha) * g
                denom = np.sqrt(v[k] - a[k] ** 2) + eps
            else:
                denom = np.sqrt(v[k]) + eps
            if momentum:
                b[k] = momentum * b[k] + g / denom
                p[k] -= lr * b[k]
            else:
                p[k] -= lr * g / denom
    return p


@pytest.mark.parametrize("options", [dict(), dict(momentum=0.9), dict(centered=True), dict(weight_decay=0.1),
                                     dict(centered=True, momentum=0.5, weight_decay=0.01)])
def test_rmsprop_follows_its_definition(options):
    backend.set_default_dtype(np.float64)
    net = sg.Sequential(Dense(3, 4, rng=0), LeakyReLU(0.2), Dense(4, 2, rng=1))
    start = {name: H(p).copy() for name, p, _ in net.named_parameters()}
    settings = {**dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False), **options}
    opt = RMSprop(net, **settings)
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(5):
        grads = {name: rng.normal(size=p.shape) for name, p, _ in net.named_parameters()}
        opt.zero_grad()
        for name, _, g in net.named_parameters():
            g[...] = A(grads[name])
        opt.step()
        steps.append(grads)
    want = _rmsprop_reference(start, steps, **settings)
    for name, p, _ in net.named_parameters():
        assert np.allclose(H(p), want[name], rtol=1e-12, atol=1e-14), name
    assert opt.t == 5


def test_rmsprop_state_round_trip_and_argument_checks():
    net = sg.Sequential(Dense(3, 2, rng=0))
    opt = RMSprop(net, lr=0.1, momentum=0.5, centered=True)
    for _, _, g in net.named_parameters():
        g[...] = 1.0
    opt.step()
    state = opt.state_dict()
    assert {k.split(".")[0] for k in state} == {"v", "a", "buf", "t"}
    opt2 = RMSprop(sg.Sequential(Dense(3, 2, rng=0)), lr=0.1, momentum=0.5, centered=True)
    opt2.load_state_dict(state)
    assert all(np.array_equal(H(state[k]), H(opt2.state_dict()[k])) for k in state)
    for bad, match in [(dict(alpha=1.0), "alpha"), (dict(lr=-1), "lr"), (dict(momentum=-0.1), "momentum"),
                       (dict(eps=float("nan")), "eps")]:
        with pytest.raises(ValueError, match=f"RMSprop.*{match}"):
            RMSprop(net, **bad)


# ---------------------------------------------------------------------------- spectral normalisation
def _converged(layer):
    """A float64 SpectralNorm whose u, v are W's top singular vectors: the fixed point of the power
    iteration, where holding them fixed in backward is exact to first order even in train mode."""
    layer.astype(np.float64)
    W = H(layer.layer.params["weight"]).reshape(len(H(layer.buffers["weight_u"])), -1)
    U, _, Vt = np.linalg.svd(W)
    layer.buffers["weight_u"][...] = A(U[:, 0])
    layer.buffers["weight_v"][...] = A(Vt[0])
    return layer


@given(seed=st.integers(0, 1000), n_in=st.integers(1, 6), n_out=st.integers(1, 6), bias=st.booleans())
def test_spectral_norm_dense_gradcheck(seed, n_in, n_out, bias):
    layer = spectral_norm(Dense(n_in, n_out, bias=bias, rng=seed), seed=seed)
    assert sg.gradcheck(layer.eval().astype(np.float64), shape=(3, n_in)).passed   # u, v fixed: exact
    assert sg.gradcheck(_converged(layer.train()), shape=(3, n_in)).passed        # train mode, converged


@given(geom=conv_geometry(), seed=st.integers(0, 1000), cin=st.integers(1, 3), cout=st.integers(1, 3))
def test_spectral_norm_conv_gradcheck(geom, seed, cin, cout):
    layer = spectral_norm(Conv2D(cin, cout, geom["kernel"], geom["stride"], geom["padding"], rng=seed), seed=seed)
    result = sg.gradcheck(layer.eval().astype(np.float64), shape=(2, cin, geom["H"], geom["W"]))
    assert result.passed, result


def test_spectral_norm_estimates_the_largest_singular_value():
    layer = spectral_norm(Conv2D(3, 5, 3, rng=0))
    W = H(layer.layer.params["weight"]).astype(np.float64).reshape(5, -1)
    true = np.linalg.svd(W, compute_uv=False)[0]
    assert layer.sigma() == pytest.approx(true, rel=1e-2)            # 15 iterations at construction
    layer.layer.params["weight"][...] *= 3                           # the weight changes ...
    X = A(np.random.default_rng(0).normal(size=(2, 3, 6, 6)).astype(np.float32))
    for _ in range(60):
        layer.forward(X)                                             # ... training forwards follow it
    assert layer.sigma() == pytest.approx(3 * true, rel=1e-4)
    # the normalised weight has spectral norm 1
    u, v = layer.buffers["weight_u"], layer.buffers["weight_v"]
    W_sn = H(layer.layer.params["weight"]).reshape(5, -1) / layer.sigma()
    assert np.linalg.svd(W_sn.astype(np.float64), compute_uv=False)[0] == pytest.approx(1.0, rel=1e-4)
    assert H(u).shape == (5,) and H(v).shape == (27,)


def test_spectral_norm_eval_uses_the_stored_estimate():
    layer = spectral_norm(Dense(4, 3, rng=0))
    u = H(layer.buffers["weight_u"]).copy()
    X = A(np.ones((2, 4), np.float32))
    layer.eval()
    layer.layer.params["weight"][...] += A(np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32))
    Y = H(layer.forward(X)[0])
    assert np.array_equal(H(layer.buffers["weight_u"]), u)         # no power iteration in eval
    sigma = float(H(layer.buffers["weight_u"]) @ H(layer.layer.params["weight"]) @ H(layer.buffers["weight_v"]))
    assert np.allclose(Y, H(X) @ H(layer.layer.params["weight"]).T / sigma, rtol=1e-5)   # W / (u^T W v)
    layer.train()
    layer.forward(X)
    assert not np.array_equal(H(layer.buffers["weight_u"]), u)     # train mode refines u for the new W


def test_spectral_norm_state_and_errors():
    D = sg.Sequential(spectral_norm(Conv2D(1, 2, 3, rng=0)), LeakyReLU(0.2))
    state = D.state_dict()
    assert {"0.0.weight", "0.0.bias", "0.weight_u", "0.weight_v"} <= set(state)
    with pytest.raises(TypeError, match="SpectralNorm wraps a Dense or Conv2D layer, got LeakyReLU"):
        SpectralNorm(LeakyReLU(0.2))
    with pytest.raises(ValueError, match="n_power_iterations"):
        SpectralNorm(Dense(2, 2), n_power_iterations=0)
    layer = Dense(2, 3)
    with pytest.raises(sg.ShapeError, match="expected a weight of shape"):
        layer.forward(A(np.ones((1, 2), np.float32)), weight=A(np.ones((2, 3), np.float32)))


def test_dcgan_with_spectral_norm_wraps_every_weight_layer_of_d():
    gan = models.dcgan(spectral_norm=True, seed=0)
    wrapped = [m for m in gan.D.layers if isinstance(m, SpectralNorm)]
    assert len(wrapped) == 3 and gan.config["spectral_norm"] is True
    assert "spectral_norm" not in models.dcgan(seed=0).config        # the default model's config is unchanged


# ---------------------------------------------------------------------------- the trainer with each loss
def _images(n=64, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 28, 28)).astype(np.float32)


@pytest.mark.parametrize("loss", ["wgan", "wgan-gp", "hinge", "lsgan"])
def test_each_loss_trains_and_logs_its_means(loss):
    gan = models.dcgan(g_channels=(8, 4, 2), d_channels=(4, 8), seed=0, spectral_norm=(loss == "hinge"))
    cfg = TrainConfig(model="dcgan", loss=loss, steps=3, batch_size=8, log_every=1, **LOSS_DEFAULTS[loss])
    tr = Trainer(gan, _images(), None, cfg, quiet=True)
    last = tr.train()
    assert last["step"] == 3 and all(np.isfinite(last[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    if loss == "wgan":
        assert isinstance(tr.opt_D, RMSprop) and tr.batch_index == 15         # k = 5 critic steps per G step
        assert float(np.abs(H(tr.opt_D.flat_p)).max()) <= 0.01 + 1e-9           # weights clipped
    if loss == "wgan-gp":
        assert tr.penalty is not None and tr.penalty.weight == 10.0 and tr.opt_D.beta2 == 0.9
        assert tr.penalty.last_norms is not None and H(tr.penalty.last_norms).shape == (8,)


def test_the_penalty_is_in_the_d_loss_and_its_gradient_in_d_grads(monkeypatch):
    """With D's step replaced by a spy, the critic's gradient of a WGAN-GP step equals the
    Wasserstein part plus the penalty's own gradient, and d_loss includes the penalty's value."""
    from scratchgan.penalty import GradientPenalty
    backend.set_default_dtype(np.float64)
    gan = models.mlp(g_hidden=(8,), d_hidden=(8,), seed=0)
    cfg = TrainConfig(model="mlp", loss="wgan-gp", steps=1, k=1, batch_size=8, dtype="float64")
    tr = Trainer(gan, _images().astype(np.float64), None, cfg, quiet=True)
    seen = {}
    real_step = tr.opt_D.step
    monkeypatch.setattr(tr.opt_D, "step", lambda: (seen.update(g=H(tr.opt_D.flat_g).copy()), real_step())[1])
    real_gp = tr._gradient_penalty
    monkeypatch.setattr(tr, "_gradient_penalty",
                        lambda r, f: (seen.update(before=H(tr.opt_D.flat_g).copy()), seen.update(v=real_gp(r, f)),
                                      seen.update(after=H(tr.opt_D.flat_g).copy()), seen["v"])[-1])
    real_d = tr.loss.d
    monkeypatch.setattr(tr.loss, "d", lambda r, f: (seen.update(w=real_d(r, f)[0]), real_d(r, f))[1])
    out = tr.train_step()
    assert float(H(seen["v"])) > 0
    assert not np.allclose(seen["before"], seen["after"])               # the penalty added its gradient
    assert np.array_equal(seen["after"], seen["g"])                     # and D stepped with the sum
    assert float(H(out["d_loss"])) == pytest.approx(float(H(seen["w"])) + float(H(seen["v"])), rel=1e-12)


def test_conditional_wgan_gp_interpolates_images_under_the_real_labels(monkeypatch):
    """cgan-tutorial's critic reads [image, one-hot]: the interpolates mix the images only and keep
    the real batch's one-hot labels (they mixed real and fake labels into fractions), and the
    penalty's norm is the image part's (image_features)."""
    from scratchgan.penalty import GradientPenalty
    gan = models.cgan(g_hidden=(8,), d_hidden=(8,), seed=0)
    labels = np.arange(64) % 10
    cfg = TrainConfig(model="cgan-tutorial", loss="wgan-gp", steps=2, batch_size=8, **LOSS_DEFAULTS["wgan-gp"])
    tr = Trainer(gan, _images(), labels, cfg, quiet=True)
    assert tr.penalty.image_features == 784
    seen, forward, real_batch = [], GradientPenalty.forward, tr._real_batch
    batches = []
    monkeypatch.setattr(tr, "_real_batch", lambda: (batches.append(real_batch()), batches[-1])[1])
    monkeypatch.setattr(GradientPenalty, "forward", lambda self, x: (seen.append(H(x).copy()), forward(self, x))[1])
    tr.train()
    assert len(seen) == 2 * cfg.k
    for x_hat, (x, y) in zip(seen, batches):
        np.testing.assert_array_equal(x_hat[:, 784:], np.eye(10, dtype=np.float32)[H(y)])   # the real labels
        lo, hi = np.minimum(H(x).reshape(8, -1), -1.0), np.maximum(H(x).reshape(8, -1), 1.0)
        assert np.all(x_hat[:, :784] >= lo - 1e-6) and np.all(x_hat[:, :784] <= hi + 1e-6)   # images: real..fake


def test_clipping_bounds_every_critic_weight():
    gan = models.mlp(g_hidden=(8,), d_hidden=(8,), seed=0)
    cfg = TrainConfig(model="mlp", loss="wgan", optimizer="rmsprop", lr=0.5, clip=0.003, steps=2, batch_size=8)
    tr = Trainer(gan, _images(), None, cfg, quiet=True)
    tr.train()
    p = H(tr.opt_D.flat_p)
    assert np.abs(p).max() <= 0.003 and np.isclose(np.abs(p).max(), 0.003)   # lr 0.5 pushes them to the edge


@pytest.mark.parametrize("loss,model_kw", [("wgan", {}), ("wgan-gp", {}), ("wgan-gp", dict(spectral_norm=True)),
                                           ("hinge", dict(spectral_norm=True)), ("lsgan", {})])
def test_resume_is_exact_for_each_loss(loss, model_kw, tmp_path):
    def trainer(run):
        gan = models.dcgan(g_channels=(8, 4, 2), d_channels=(4, 8), seed=0, **model_kw)
        cfg = TrainConfig(model="dcgan", model_args=dict(g_channels=[8, 4, 2], d_channels=[4, 8], **model_kw),
                          loss=loss, steps=4, batch_size=8, checkpoint_every=1000, sample_every=1000,
                          **{**LOSS_DEFAULTS[loss], "k": 2})
        return Trainer(gan, _images(), None, cfg, run_dir=run, quiet=True)
    a = trainer(tmp_path / "a")
    a.train()
    b = trainer(tmp_path / "b")
    b.train(steps=2)
    b2 = trainer(tmp_path / "b")
    assert b2.resume() and b2.step == 2
    b2.train()
    sa, sb = a.state()[0], b2.state()[0]
    assert sa.keys() == sb.keys()
    assert any("weight_u" in k for k in sa) == bool(model_kw)
    differ = [k for k in sa if not np.array_equal(H(sa[k]), H(sb[k]))]
    assert not differ, f"resumed {loss} run differs in {differ}"


# ---------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("loss", ["wgan", "wgan-gp", "hinge", "lsgan"])
def test_cli_loss_brings_its_recipe(loss, tmp_path):
    run = tmp_path / loss
    assert cli.main(["train", *TINY, "--loss", loss, "--steps", "2", "--out", str(run)]) == 0
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["loss"] == loss
    for key, value in LOSS_DEFAULTS[loss].items():
        assert train[key] == value, key
    assert cli.main(["train", *TINY, "--loss", loss, "--lr", "3e-4", "--k", "2", "--steps", "1",
                     "--out", str(tmp_path / "x"), "--overwrite"]) == 0
    train = json.loads((tmp_path / "x" / "config.json").read_text())["train"]
    assert (train["lr"], train["k"]) == (3e-4, 2)                  # a flag given beats the recipe


@pytest.mark.parametrize("argv,flag", [(["--loss", "hinge", "--g-loss", "minimax"], "--g-loss"),
                                       (["--loss", "wgan", "--label-smoothing", "0.1"], "--label-smoothing"),
                                       (["--loss", "hinge", "--gp-weight", "5"], "--gp-weight"),
                                       (["--loss", "wgan", "--beta1", "0.5"], "--beta1"),
                                       (["--optimizer", "rmsprop", "--beta2", "0.9"], "--beta2"),
                                       (["--loss", "vae"], "--loss"), (["--clip", "0"], "--clip")])
def test_cli_refuses_flags_of_another_family(argv, flag, tmp_path, capsys):
    assert cli.main(["train", *TINY, "--steps", "1", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and flag in err


def test_cli_resume_keeps_the_loss_and_refuses_another(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--loss", "wgan", "--steps", "2", "--out", str(run)]) == 0
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "3", "--clip", "0.02", "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["loss"] == "wgan" and cfg["train"]["clip"] == 0.02
    assert cfg["history"][-1]["changed"]["clip"] == [0.01, 0.02]
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "4", "--loss", "hinge"]) == 2
    assert "--loss hinge differs" in capsys.readouterr().err


def test_cli_spectral_norm_run_samples_and_resumes(tmp_path):
    run = tmp_path / "sn"
    argv = ["train", "--model", "dcgan", "--loss", "hinge", "--spectral-norm", "--batch-size", "8",
            "--dataset", "mnist-bundled", "--quiet", "--g-hidden", "8,4,2", "--d-hidden", "4,8", "--out", str(run)]
    assert cli.main([*argv, "--steps", "2"]) == 0
    assert cli.main(["train", "--resume", "--out", str(run), "--steps", "3", "--quiet"]) == 0
    assert cli.main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    from scratchgan.training import load_run
    gan, meta = load_run(run)
    assert meta["step"] == 3 and isinstance(gan.D.layers[0], SpectralNorm)
