"""Losses (numerics, reference formulas, the saturation argument) and optimisers (hand
computed Adam/SGD updates, exact save/restore, ownership, the frozen-D GAN pattern)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchgan as sg
from scratchgan import backend, losses, optim

from helpers import A, H, rng


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------- losses: numerics
EXTREME = np.array([[-1e4], [-100.0], [-30.0], [0.0], [30.0], [100.0], [1e4]])

ALL_LOSSES = {
    "bce_t1": lambda l: losses.bce_with_logits(l, 1.0),
    "bce_t0": lambda l: losses.bce_with_logits(l, 0.0),
    "bce_array": lambda l: losses.bce_with_logits(l, backend.xp().full(l.shape, 0.7, dtype=l.dtype)),
    "d_loss": lambda l: losses.d_loss(l, l[::-1].copy()),
    "d_loss_smooth": lambda l: losses.d_loss(l, l[::-1].copy(), real_target=0.9),
    "minimax": losses.g_loss_minimax,
    "nonsaturating": losses.g_loss_nonsaturating,
    "mse": lambda l: losses.mse(l, backend.xp().zeros_like(l)),
    "softmax_ce": lambda l: losses.softmax_cross_entropy(l.reshape(-1, 7) if l.size == 7 else l,
                                                          backend.xp().asarray([3])),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_losses_finite_for_extreme_logits(name, dtype):
    logits = A(EXTREME.astype(dtype))
    if name == "softmax_ce":
        logits = A(EXTREME.reshape(1, 7).astype(dtype))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, *grads = ALL_LOSSES[name](logits)
    assert np.isfinite(float(H(loss))), name
    for g in grads:
        assert np.all(np.isfinite(H(g))), name
        assert g.dtype == dtype and tuple(g.shape) == tuple(logits.shape)
    assert H(loss).dtype == dtype


def test_bce_extreme_values_exact():
    """Confidently right -> loss 0; confidently wrong by 1e4 -> loss 1e4 (not inf)."""
    l = A(np.array([1e4, -1e4]))
    assert float(H(losses.bce_with_logits(l, A(np.array([1.0, 0.0])))[0])) == pytest.approx(0.0, abs=1e-12)
    assert float(H(losses.bce_with_logits(l, A(np.array([0.0, 1.0])))[0])) == pytest.approx(1e4, rel=1e-12)
    _, g = losses.bce_with_logits(l, A(np.array([0.0, 1.0])))
    np.testing.assert_allclose(H(g), [0.5, -0.5])


@pytest.mark.parametrize("dtype, rel", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_bce_of_confident_logits_does_not_cancel(dtype, rel):
    """BCE(l, 1) = BCE(-l, 0) = log1p(e^-l): the form softplus(l) - t l rounded it to 0 from l ~ 37
    (float64; 1.4% off at 30). The reference log1p(exp(-l)) is exact to rounding for l > 0."""
    import math
    for l in (5.0, 20.0, 30.0, 37.0, 40.0, 100.0, 700.0):
        want = math.log1p(math.exp(-l))
        if dtype == np.float32 and want < 1e-37:          # below float32's normal range
            continue
        for logit, t in ((l, 1.0), (-l, 0.0)):
            got = float(H(losses.bce_with_logits(A(np.array([logit], dtype)), t)[0]))
            assert got == pytest.approx(want, rel=rel), (logit, t)
        got = float(H(losses.bce_with_logits(A(np.array([l, -l], dtype)), A(np.array([1.0, 0.0], dtype)))[0]))
        assert got == pytest.approx(want, rel=rel)
    assert float(losses.make_loss("bce").g(40.0)[0]) == pytest.approx(4.248354255291589e-18, rel=1e-14)
    loss, d_real, d_fake = losses.make_loss("bce").d(A(np.array([[40.0]])), A(np.array([[-40.0]])))
    assert float(H(loss)) == pytest.approx(2 * 4.248354255291589e-18, rel=1e-14)
    # the gradient sigma(l) - t is computed as before, bit for bit
    l = A(np.array([[-40.0], [-3.0], [0.5], [40.0]]))
    np.testing.assert_array_equal(H(losses.bce_with_logits(l, 0.9)[1]), (H(sg.layers.activations.sigmoid(l)) - 0.9) / 4)


@given(shape=st.sampled_from([(5,), (4, 1), (3, 2)]), seed=st.integers(0, 2**31 - 1))
def test_bce_matches_reference(shape, seed):
    r = rng(seed)
    l, t = r.uniform(-8, 8, shape), r.uniform(0, 1, shape)
    ref = np.mean(-t * np.log(_sig(l)) - (1 - t) * np.log(1 - _sig(l)))
    loss, g = losses.bce_with_logits(A(l), A(t))
    assert float(H(loss)) == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(H(g), (_sig(l) - t) / l.size, rtol=1e-10, atol=1e-15)
    for tt in (0.0, 1.0, 0.9):
        loss_s, g_s = losses.bce_with_logits(A(l), tt)
        ref_s = np.mean(-tt * np.log(_sig(l)) - (1 - tt) * np.log(1 - _sig(l)))
        assert float(H(loss_s)) == pytest.approx(ref_s, rel=1e-10)
        np.testing.assert_allclose(H(g_s), (_sig(l) - tt) / l.size, rtol=1e-10, atol=1e-15)


@given(n=st.integers(1, 8), smoothing=st.sampled_from([1.0, 0.9, 0.75]), seed=st.integers(0, 2**31 - 1))
def test_d_loss_is_bce_real_plus_bce_fake(n, smoothing, seed):
    r = rng(seed)
    lr_, lf = r.uniform(-6, 6, (n, 1)), r.uniform(-6, 6, (n, 1))
    loss, d_r, d_f = losses.d_loss(A(lr_), A(lf), real_target=smoothing)
    ref = np.mean(-smoothing * np.log(_sig(lr_)) - (1 - smoothing) * np.log(1 - _sig(lr_))) + \
        np.mean(-np.log(1 - _sig(lf)))
    assert float(H(loss)) == pytest.approx(ref, rel=1e-10)
    b_r, g_r = losses.bce_with_logits(A(lr_), smoothing)
    b_f, g_f = losses.bce_with_logits(A(lf), 0.0)
    assert float(H(loss)) == pytest.approx(float(H(b_r)) + float(H(b_f)), rel=1e-12)
    np.testing.assert_allclose(H(d_r), H(g_r), rtol=1e-12)
    np.testing.assert_allclose(H(d_f), H(g_f), rtol=1e-12)
    # default is no smoothing
    if smoothing == 1.0:
        assert float(H(losses.d_loss(A(lr_), A(lf))[0])) == pytest.approx(ref, rel=1e-10)


def test_generator_losses_match_reference():
    lf = rng(1).uniform(-6, 6, (7, 1))
    loss_mm, g_mm = losses.g_loss_minimax(A(lf))
    assert float(H(loss_mm)) == pytest.approx(np.mean(np.log(1 - _sig(lf))), rel=1e-10)
    np.testing.assert_allclose(H(g_mm), -_sig(lf) / lf.size, rtol=1e-10)
    loss_ns, g_ns = losses.g_loss_nonsaturating(A(lf))
    assert float(H(loss_ns)) == pytest.approx(-np.mean(np.log(_sig(lf))), rel=1e-10)
    np.testing.assert_allclose(H(g_ns), (_sig(lf) - 1) / lf.size, rtol=1e-10)
    assert float(H(losses.g_loss(A(lf))[0])) == float(H(loss_ns))
    assert float(H(losses.g_loss(A(lf), "minimax")[0])) == float(H(loss_mm))
    with pytest.raises(ValueError, match="nonsaturating"):
        losses.g_loss(A(lf), "wasserstein")


def test_mse_and_softmax_ce_match_reference():
    r = rng(2)
    p, t = r.standard_normal((4, 3)), r.standard_normal((4, 3))
    loss, g = losses.mse(A(p), A(t))
    assert float(H(loss)) == pytest.approx(np.mean((p - t) ** 2), rel=1e-12)
    np.testing.assert_allclose(H(g), 2 * (p - t) / p.size, rtol=1e-12)
    l, y = r.standard_normal((5, 4)) * 3, np.array([0, 3, 1, 1, 2])
    loss, g = losses.softmax_cross_entropy(A(l), A(y))
    sm = np.exp(l) / np.exp(l).sum(axis=1, keepdims=True)
    assert float(H(loss)) == pytest.approx(-np.mean(np.log(sm[np.arange(5), y])), rel=1e-12)
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(H(g), (sm - onehot) / 5, rtol=1e-10, atol=1e-15)


def test_minimax_saturates_nonsaturating_does_not():
    """As D(G(z)) -> 0 (fake logits very negative), the minimax generator gradient
    vanishes while the non-saturating one stays ~ -1/n: the reason the NS loss exists."""
    n = 8
    for logit in (-5.0, -10.0, -20.0, -40.0):
        lf = A(np.full((n, 1), logit))
        _, g_mm = losses.g_loss_minimax(lf)
        _, g_ns = losses.g_loss_nonsaturating(lf)
        g_mm, g_ns = H(g_mm), H(g_ns)
        assert np.all(g_mm <= 0) and np.all(g_ns < 0)  # both push the fake logits up
        assert np.all(np.abs(g_mm) <= _sig(logit) / n * (1 + 1e-6))
        assert np.all(np.abs(g_ns) >= (1 - _sig(logit)) / n * (1 - 1e-9))
    assert np.abs(g_mm).max() < 1e-17 and np.abs(g_ns).min() > 0.99 / n
    # and near D(G(z)) = 1 the roles swap: minimax strong, non-saturating weak
    lf = A(np.full((n, 1), 20.0))
    assert np.abs(H(losses.g_loss_minimax(lf)[1])).min() > 0.99 / n
    assert np.abs(H(losses.g_loss_nonsaturating(lf)[1])).max() < 1e-8


def test_loss_shape_mismatch_is_an_error():
    """LESSONS 4: (n,) against (n, 1) must not broadcast into an (n, n) loss."""
    with pytest.raises(ValueError):
        losses.bce_with_logits(A(np.zeros((4, 1))), A(np.ones(4)))
    with pytest.raises(ValueError):
        losses.mse(A(np.zeros((4, 1))), A(np.ones(4)))
    with pytest.raises(ValueError):
        losses.softmax_cross_entropy(A(np.zeros((4, 3))), A(np.zeros((4, 1), np.int64)))


@pytest.mark.parametrize("bad", [3, -1], ids=["label_eq_K", "negative_label"])
def test_softmax_ce_rejects_out_of_range_labels(xp_backend, bad):
    """LESSONS 5: an out-of-range class index must raise, not wrap around (CuPy wraps
    any out-of-bounds index; NumPy wraps negative ones)."""
    logits = A(rng(0).standard_normal((2, 3)))
    with pytest.raises((ValueError, IndexError)):
        losses.softmax_cross_entropy(logits, A(np.array([0, bad])))


# ---------------------------------------------------------------------------- optimisers
def _two_layer(seed=0):
    return sg.Sequential(sg.Dense(3, 2, rng=seed, dtype=np.float64), sg.Dense(2, 4, rng=seed + 1, dtype=np.float64))


def _set_grads(model, grads):
    for (name, _, g) in model.named_parameters():
        g[...] = A(grads[name])


def _params(model):
    return {name: H(p).copy() for name, p, _ in model.named_parameters()}


def test_adam_matches_hand_computation_with_bias_correction():
    model = _two_layer()
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-6
    opt = sg.Adam(model, lr=lr, betas=(b1, b2), eps=eps)
    r = rng(4)
    p = _params(model)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(val) for k, val in p.items()}
    assert len(p) == 4
    for t in range(1, 5):
        g = {k: r.standard_normal(val.shape) for k, val in p.items()}
        _set_grads(model, g)
        opt.step()
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            mhat, vhat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            p[k] = p[k] - lr * mhat / (np.sqrt(vhat) + eps)
        for k, val in _params(model).items():
            np.testing.assert_allclose(val, p[k], rtol=1e-12, atol=1e-14, err_msg=f"step {t}, {k}")
        assert opt.t == t  # one count per optimiser step, not per parameter


def test_adam_first_step_is_lr_times_sign():
    """With bias correction the first update is ~ lr * sign(g) for every parameter,
    whatever the betas: a step count advanced per parameter breaks this for all but one."""
    model = _two_layer()
    opt = sg.Adam(model, lr=0.1, betas=(0.5, 0.9))
    g = {k: rng(5).standard_normal(p.shape) for k, p in _params(model).items()}
    before = _params(model)
    _set_grads(model, g)
    opt.step()
    for k, p in _params(model).items():
        np.testing.assert_allclose(before[k] - p, 0.1 * np.sign(g[k]), rtol=1e-6, err_msg=k)


def test_adam_weight_decay():
    model = _two_layer()
    lr, wd = 0.05, 0.1
    opt = sg.Adam(model, lr=lr, weight_decay=wd)
    p = _params(model)
    m = {k: np.zeros_like(val) for k, val in p.items()}
    v = {k: np.zeros_like(val) for k, val in p.items()}
    r = rng(6)
    for t in (1, 2, 3):
        g = {k: r.standard_normal(val.shape) for k, val in p.items()}
        _set_grads(model, g)
        opt.step()
        for k in p:
            gk = g[k] + wd * p[k]
            m[k] = 0.9 * m[k] + 0.1 * gk
            v[k] = 0.999 * v[k] + 0.001 * gk**2
            p[k] = p[k] - lr * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
        for k, val in _params(model).items():
            np.testing.assert_allclose(val, p[k], rtol=1e-12, atol=1e-14, err_msg=k)
    # the stored gradient itself is not changed by the decay term
    for (name, _, gr) in model.named_parameters():
        np.testing.assert_array_equal(H(gr), g[name])


@pytest.mark.parametrize("momentum, nesterov, wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                                                    (0.5, False, 0.01), (0.7, True, 0.05)])
def test_sgd_matches_torch_formulas(momentum, nesterov, wd):
    model = _two_layer()
    lr = 0.1
    opt = sg.SGD(model, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    p = _params(model)
    buf = {}
    r = rng(7)
    for t in range(1, 5):
        g = {k: r.standard_normal(val.shape) for k, val in p.items()}
        _set_grads(model, g)
        opt.step()
        for k in p:
            gk = g[k] + wd * p[k]
            if momentum:
                buf[k] = gk.copy() if t == 1 else momentum * buf[k] + gk
                gk = gk + momentum * buf[k] if nesterov else buf[k]
            p[k] = p[k] - lr * gk
        for k, val in _params(model).items():
            np.testing.assert_allclose(val, p[k], rtol=1e-12, atol=1e-14, err_msg=f"step {t}, {k}")


def test_sgd_nesterov_needs_momentum():
    with pytest.raises(ValueError):
        sg.SGD(_two_layer(), nesterov=True)


def _train_model(seed=0):
    return sg.Sequential(sg.Dense(5, 6, rng=seed), sg.BatchNorm1d(6), sg.LeakyReLU(0.2), sg.Dropout(0.3, seed=seed),
                         sg.Dense(6, 1, rng=seed + 1))


def _run_steps(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        out, cache = model.forward(x)
        _, d = losses.bce_with_logits(out, y)
        model.backward(d, cache)
        opt.step()


@pytest.mark.parametrize("make_opt", [lambda m: sg.Adam(m, lr=0.01, betas=(0.5, 0.999)),
                                      lambda m: sg.Adam(m, lr=0.01, weight_decay=0.01),
                                      lambda m: sg.SGD(m, lr=0.05, momentum=0.9, nesterov=True),
                                      lambda m: sg.SGD(m, lr=0.05)],
                         ids=["adam", "adam_wd", "sgd_nesterov", "sgd_plain"])
def test_optimizer_save_restore_bit_identical(make_opt):
    r = rng(8)
    batches = [(A(r.standard_normal((8, 5)).astype(np.float32)), A(r.integers(0, 2, (8, 1)).astype(np.float32)))
               for _ in range(7)]
    k = 3
    model = _train_model()
    opt = make_opt(model)
    _run_steps(model, opt, batches[:k])
    snapshot = model.copy()
    opt_state = opt.state_dict()
    _run_steps(model, opt, batches[k:])

    resumed = snapshot
    opt2 = make_opt(resumed)
    opt2.load_state_dict(opt_state)
    assert opt2.t == k
    _run_steps(resumed, opt2, batches[k:])
    for (name, p, _), (_, q, _) in zip(model.named_parameters(), resumed.named_parameters()):
        assert np.array_equal(H(p), H(q)), name
    for (name, b), (_, c) in zip(model.named_buffers(), resumed.named_buffers()):
        assert np.array_equal(H(b), H(c)), name
    # and a fresh optimiser WITHOUT the state diverges (so the state really mattered), for stateful ones
    if opt_state and any(k != "t" for k in opt_state):
        other = snapshot.copy()
        _run_steps(other, make_opt(other), batches[k:])
        assert not all(np.array_equal(H(p), H(q)) for (_, p, _), (_, q, _) in
                       zip(model.named_parameters(), other.named_parameters()))


def test_optimizer_state_dict_is_a_copy():
    model = _two_layer()
    opt = sg.Adam(model)
    _set_grads(model, {k: np.ones(p.shape) for k, p in _params(model).items()})
    opt.step()
    state = opt.state_dict()
    saved = {k: np.array(H(v)).copy() for k, v in state.items()}
    opt.step()
    for k, v in state.items():
        np.testing.assert_array_equal(H(v), saved[k], err_msg=k)
    assert int(state["t"]) == 1


def test_optimizer_load_state_dict_errors():
    opt = sg.Adam(_two_layer())
    state = opt.state_dict()
    with pytest.raises(KeyError):
        sg.Adam(_two_layer()).load_state_dict({k: v for k, v in state.items() if not k.startswith("m.0")})
    bigger = sg.Sequential(sg.Dense(3, 3, dtype=np.float64), sg.Dense(3, 4, dtype=np.float64))
    with pytest.raises(ValueError):
        sg.Adam(bigger).load_state_dict(state)


@pytest.mark.parametrize("make_opt", [lambda m: sg.Adam(m, lr=0.1), lambda m: sg.SGD(m, lr=0.1, momentum=0.9)])
def test_optimizer_steps_only_its_own_module(make_opt):
    G, D = _two_layer(0), _two_layer(10)
    opt_G = make_opt(G)
    for m in (G, D):
        _set_grads(m, {k: np.ones(p.shape) for k, p in _params(m).items()})
    g_before, d_before = _params(G), _params(D)
    opt_G.step()
    for k, v in _params(D).items():
        np.testing.assert_array_equal(v, d_before[k], err_msg=k)
    for k, v in _params(G).items():
        assert not np.array_equal(v, g_before[k]), k


def test_frozen_discriminator_gan_pattern():
    """The G step: G's gradient flows through D (D.backward returns dL/d fake), D's
    optimiser is not stepped, D's weights stay, D keeps its mode; G's gradient equals
    finite differences of the whole G -> D -> loss chain."""
    G = sg.Sequential(sg.Dense(3, 8, rng=0, dtype=np.float64), sg.BatchNorm1d(8, dtype=np.float64), sg.ReLU(),
                      sg.Dense(8, 6, rng=1, dtype=np.float64), sg.Tanh())
    D = sg.Sequential(sg.Dense(6, 5, rng=2, dtype=np.float64), sg.LeakyReLU(0.2), sg.Dropout(0.3, seed=1),
                      sg.Dense(5, 1, rng=3, dtype=np.float64))
    opt_G, opt_D = sg.Adam(G, lr=0.01), sg.Adam(D, lr=0.01)
    z = A(rng(9).standard_normal((4, 3)))
    d_before, g_before = _params(D), _params(G)
    G0, D0 = G.copy(), D.copy()

    opt_G.zero_grad()
    opt_D.zero_grad()
    fake, cg = G.forward(z)
    logits, cd = D.forward(fake)
    loss, dlogits = losses.g_loss_nonsaturating(logits)
    dfake = D.backward(dlogits, cd)
    assert tuple(dfake.shape) == tuple(fake.shape) == (4, 6)  # not D's (4, 1) output gradient
    G.backward(dfake, cg)
    analytic = H(G[0].grads["weight"]).copy()
    opt_G.step()

    for k, v in _params(D).items():
        np.testing.assert_array_equal(v, d_before[k], err_msg=f"D's {k} changed in the G step")
    assert D.training and all(m.training for _, m in D.named_modules())
    assert any(np.any(H(g)) for _, _, g in D.named_parameters())  # backward ran through D
    assert all(not np.array_equal(v, g_before[k]) for k, v in _params(G).items())

    # finite differences of loss(D(G(z))) w.r.t. G's first weight; copies taken before the
    # step replay D's dropout mask (same call counter) and G's pre-step weights
    def L(w):
        Gc, Dc = G0.copy(), D0.copy()
        Gc[0].params["weight"][...] = A(w)
        return float(H(losses.g_loss_nonsaturating(Dc(Gc(z)))[0]))

    w0 = g_before["0.weight"]
    num = np.zeros_like(w0)
    h = 1e-6
    for idx in np.ndindex(w0.shape):
        wp, wm = w0.copy(), w0.copy()
        wp[idx] += h
        wm[idx] -= h
        num[idx] = (L(wp) - L(wm)) / (2 * h)
    np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-9)


def test_two_optimizers_alternating_gan_step_keeps_each_net_separate():
    """One full D step then one G step with separate optimisers: D's step leaves G alone
    and G's step leaves D alone, even though G's gradient passes through D."""
    G, D = _two_layer(0), sg.Sequential(sg.Dense(4, 3, rng=5, dtype=np.float64), sg.Dense(3, 1, rng=6, dtype=np.float64))
    opt_G, opt_D = sg.SGD(G, lr=0.1), sg.SGD(D, lr=0.1)
    z, real = A(rng(0).standard_normal((5, 3))), A(rng(1).standard_normal((5, 4)))
    # D step
    g0 = _params(G)
    opt_D.zero_grad()
    fake = G(z)
    lr_, cr = D.forward(real)
    lf, cf = D.forward(fake)
    _, d_r, d_f = losses.d_loss(lr_, lf)
    D.backward(d_r, cr)
    D.backward(d_f, cf)
    opt_D.step()
    for k, v in _params(G).items():
        np.testing.assert_array_equal(v, g0[k])
    # G step
    d0 = _params(D)
    opt_G.zero_grad()
    fake, cg = G.forward(z)
    lf, cf = D.forward(fake)
    _, dg = losses.g_loss_nonsaturating(lf)
    G.backward(D.backward(dg, cf), cg)
    opt_G.step()
    for k, v in _params(D).items():
        np.testing.assert_array_equal(v, d0[k])
    assert any(not np.array_equal(v, g0[k]) for k, v in _params(G).items())


@pytest.mark.parametrize("make", [lambda m: sg.Adam(m), lambda m: sg.SGD(m, momentum=0.9)])
def test_optimiser_refuses_parameters_replaced_after_creation(make):
    """The optimiser steps flat buffers that the model's parameters are views of; casting
    the model afterwards would leave it stepping stale copies, so it must refuse."""
    model = sg.Sequential(sg.Dense(3, 2, rng=0), sg.Dense(2, 1, rng=1))
    opt = make(model)
    opt.step()
    model.astype(np.float64)
    with pytest.raises(RuntimeError, match="replaced after the optimiser was created"):
        opt.step()


@pytest.mark.parametrize("make", [lambda m: sg.Adam(m), lambda m: sg.SGD(m, momentum=0.9)])
def test_optimiser_zero_grad_clears_every_gradient_and_checks_parameters(make):
    model = sg.Sequential(sg.Dense(3, 4, rng=0), sg.ReLU(), sg.Dense(4, 1, rng=1, bias=False))
    opt = make(model)
    for _, _, g in model.named_parameters():
        g[...] = 1.0
    opt.zero_grad()
    for name, _, g in model.named_parameters():
        assert not np.any(H(g)), name
    model.astype(np.float64)
    with pytest.raises(RuntimeError, match="replaced after the optimiser was created"):
        opt.zero_grad()


def test_parameters_are_views_of_the_optimisers_flat_buffer():
    model = sg.Sequential(sg.Dense(3, 2, rng=0), sg.Dense(2, 1, rng=1))
    before = {k: backend.to_numpy(p).copy() for k, p, _ in model.named_parameters()}
    opt = sg.Adam(model, lr=0.1)
    for k, p, _ in model.named_parameters():
        np.testing.assert_array_equal(backend.to_numpy(p), before[k])       # values kept by packing
    for _, _, g in model.named_parameters():
        g[...] = 1.0
    opt.step()
    assert all(not np.array_equal(backend.to_numpy(p), before[k]) for k, p, _ in model.named_parameters())


@pytest.mark.parametrize("make_opt", [lambda m: sg.Adam(m, lr=0.01, betas=(0.5, 0.99)),
                                      lambda m: sg.Adam(m, lr=0.01, weight_decay=0.01),
                                      lambda m: optim.RMSprop(m, lr=0.01),
                                      lambda m: optim.RMSprop(m, lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)],
                         ids=["adam", "adam_wd", "rmsprop", "rmsprop_centered_momentum_wd"])
@pytest.mark.parametrize("block", [1, 7, 64])
def test_optimizer_blocks_give_the_bits_of_one_pass(make_opt, block, monkeypatch):
    """A step made block by block (block sizes that split parameters, one of 1 element) ends
    bit for bit where the whole-buffer step does, over several steps and every state array."""
    def run(block_size):
        monkeypatch.setattr(optim._Optimizer, "BLOCK", block_size)
        model = _train_model()
        opt = make_opt(model)
        if backend.xp() is np:      # (on a GPU a step is one pass whatever BLOCK is)
            assert len(opt._blocks()) == -(-opt.flat_p.size // block_size)
        r = rng(9)
        for _ in range(4):
            opt.zero_grad()
            opt.flat_g[...] = A(r.standard_normal(opt.flat_g.shape).astype(opt.flat_g.dtype))
            opt.step()
        return H(opt.flat_p).copy(), {k: H(v).copy() for k, v in opt.flat_state().items()}
    p_one, state_one = run(10**9)
    p_blocks, state_blocks = run(block)
    assert np.array_equal(p_one, p_blocks)
    assert state_one.keys() == state_blocks.keys() and len(state_one) >= 1
    for k in state_one:
        assert np.array_equal(state_one[k], state_blocks[k]), k
