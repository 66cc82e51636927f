"""The CuPy path end to end: what a training step fetches from the device, and (below) the
command line under SCRATCHGAN_BACKEND=cupy. Runs on the real CuPy where there is a GPU and on
the strict stand-in everywhere else (conftest.py); the transfer counts are the stand-in's."""
from __future__ import annotations

import numpy as np
import pytest

from scratchgan import backend, models
from scratchgan.training import TrainConfig, Trainer

# A logged step reads 12 scalars from the device and copies nothing else: the step's 4 values
# (d_loss, g_loss, d_real, d_fake) and the divergence guard's 8 sums (Trainer.check_health: for G
# and for D, the squared norms of the parameters and of the gradients, and the sums of |Adam's m|
# and |Adam's v|). A step that neither logs nor saves reads nothing and copies nothing.
LOGGED_STEP = {"host_to_device": 0, "device_to_host": 0, "scalar_reads": 12}
QUIET_STEP = {"host_to_device": 0, "device_to_host": 0, "scalar_reads": 0}

TINY_DCGAN = dict(latent_dim=8, g_channels=(6, 4, 3), d_channels=(3, 4))
STEP_CASES = {
    "mlp, ema, instance noise, linear decay": ("mlp", dict(g_hidden=(16,), d_hidden=(16,)),
                                               dict(ema=0.9, instance_noise=0.1, lr_decay="linear")),
    "cgan (fake labels drawn on the device)": ("cgan", dict(g_hidden=(16,), d_hidden=(16,)), {}),
    "dcgan, spectral norm, hinge": ("dcgan", dict(TINY_DCGAN, spectral_norm=True), dict(loss="hinge")),
    "mlp, wgan with clipping": ("mlp", dict(g_hidden=(16,), d_hidden=(16,)), dict(loss="wgan", k=2)),
}


def _per_step_counts(cp, trainer, steps):
    """The stand-in's counts of each of ``steps`` more steps of trainer.train(), each step's
    logging and saving included."""
    snaps, step = [], trainer.train_step

    def counted():
        snaps.append(cp.counts())
        cp.reset_counts()
        return step()
    trainer.train_step = counted
    trainer.train(steps=trainer.step + steps)
    snaps.append(cp.counts())
    return snaps[1:]


def _trainer(kind, model_args, train_args, n=128, batch=8, log_every=4):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (n, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, n)
    cfg = TrainConfig(model=kind, batch_size=batch, log_every=log_every, backend="cupy", **train_args)
    return Trainer(models.build(kind, **model_args), images, labels, cfg, quiet=True)


@pytest.mark.parametrize("case", sorted(STEP_CASES))
def test_a_step_that_does_not_log_fetches_nothing_and_a_logged_step_12_scalars(case, cupy_counts):
    """Trainer's promise (training.py): on a GPU, values are fetched only when logging or saving.
    Caught: spectral norm's power iteration read ||v|| to the host twice per layer per forward
    (18 reads a step in this D), and the conditional models copied their label set to the device
    every step."""
    backend.use("cupy")
    kind, model_args, train_args = STEP_CASES[case]
    trainer = _trainer(kind, model_args, train_args)
    trainer.train(steps=1)              # the first epoch's order and the Fourier matrices: copied once
    steps = _per_step_counts(cupy_counts, trainer, 4)   # steps 2, 3 quiet; 4 logged; 5 the last (logged)
    assert steps == [QUIET_STEP, QUIET_STEP, LOGGED_STEP, LOGGED_STEP], case


def test_wgan_gp_copies_its_k_interpolation_draws_and_nothing_else(cupy_counts):
    """WGAN-GP draws each D step's N interpolation weights on the host on purpose (the same
    numbers on both backends and on every rank: training.py _gradient_penalty): k small copies to
    the device a step, no reads."""
    backend.use("cupy")
    trainer = _trainer("mlp", dict(g_hidden=(16,), d_hidden=(16,)), dict(loss="wgan-gp", k=2))
    trainer.train(steps=1)
    steps = _per_step_counts(cupy_counts, trainer, 4)
    copies = {"host_to_device": 2}
    assert steps == [{**QUIET_STEP, **copies}, {**QUIET_STEP, **copies}, {**LOGGED_STEP, **copies},
                     {**LOGGED_STEP, **copies}]


def test_a_new_epoch_copies_its_order_once(cupy_counts):
    """The data order of an epoch is drawn on the host from (seed, epoch), as on NumPy, and
    copied once; the batches are then taken on the device."""
    backend.use("cupy")
    trainer = _trainer("mlp", dict(g_hidden=(16,), d_hidden=(16,)), {}, n=24, log_every=100)
    trainer.train(steps=1)
    steps = _per_step_counts(cupy_counts, trainer, 4)    # steps 2..5 of 3-step epochs: step 4 starts one
    assert [s["host_to_device"] for s in steps] == [0, 0, 1, 0]
    assert [s["scalar_reads"] for s in steps] == [0, 0, 0, 12]
