"""The CuPy path end to end: what a training step fetches from the device, and (below) the
command line under SCRATCHGAN_BACKEND=cupy. Runs on the real CuPy where there is a GPU and on
the strict stand-in everywhere else (conftest.py); the transfer counts are the stand-in's."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from scratchgan import backend, models
from scratchgan.training import TrainConfig, Trainer

from conftest import ON_STANDIN

# A logged step reads 12 scalars from the device and copies nothing else: the step's 4 values
# (d_loss, g_loss, d_real, d_fake) and the divergence guard's 8 sums (Trainer.check_health: for G
# and for D, the squared norms of the parameters and of the gradients, and the sums of |Adam's m|
# and |Adam's v|). A step that neither logs nor saves reads nothing and copies nothing.
LOGGED_STEP = {"host_to_device": 0, "device_to_host": 0, "scalar_reads": 12}
QUIET_STEP = {"host_to_device": 0, "device_to_host": 0, "scalar_reads": 0}

TINY_DCGAN = dict(latent_dim=8, g_channels=(6, 4, 3), d_channels=(3, 4))
STEP_CASES = {
    "mlp, dropout, minibatch std, ema, instance noise, linear decay": (
        "mlp", dict(g_hidden=(16,), d_hidden=(16,), dropout=0.3, minibatch_std=True, activation="leaky_relu"),
        dict(ema=0.9, instance_noise=0.1, lr_decay="linear")),
    "cgan (fake labels drawn on the device)": ("cgan", dict(g_hidden=(16,), d_hidden=(16,)), {}),
    "cgan, projection D, lsgan": ("cgan", dict(g_hidden=(16,), d_hidden=(16,), projection=True), dict(loss="lsgan")),
    "dcgan, spectral norm, hinge": ("dcgan", dict(TINY_DCGAN, spectral_norm=True), dict(loss="hinge")),
    "dcgan, nearest upsampling, label smoothing": ("dcgan", dict(TINY_DCGAN, upsample="nearest"),
                                                   dict(label_smoothing=0.1)),
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
    """The loop's promise (training/guard.py, loop.py): on a GPU, values are fetched only when logging or saving.
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
    numbers on both backends and on every rank: training/step.py _gradient_penalty): k small copies to
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


# ---------------------------------------------------------------------------- the command line
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
TINY = ["--batch-size", "8", "--dataset", "mnist-bundled", "--quiet", "--log-every", "4", "--sample-every", "8"]
TINY_MLP = ["--model", "mlp", "--g-hidden", "16", "--d-hidden", "16", *TINY]

# One child process, SCRATCHGAN_BACKEND=cupy (the stand-in reaches it through PYTHONPATH), runs
# every command through cli.main, so that the interpreter starts once.
_CHILD = """
import json, sys
import cupy
from scratchgan import backend, cli
assert backend.name() == "cupy", backend.name()
for argv in json.loads(sys.argv[1]):
    rc = cli.main(argv)
    assert rc in (0, None), (argv, rc)
    print("ok", argv[0], flush=True)
print("standin" if getattr(cupy, "STANDIN", False) else "real cupy")
"""


def _rgb_folder(root, n=12):
    """Two classes of small RGB PNGs."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("red" if i % 2 else "blue")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_the_command_line_under_SCRATCHGAN_BACKEND_cupy_and_checkpoints_across_backends(tmp_path, capsys):
    """train (mlp with --ema and --resume, cgan with --spectral-norm, dcgan with --loss wgan-gp on a
    folder of RGB images), sample, interpolate, inpaint, evaluate (where the MNIST test set is
    present), gradcheck and bench, all on CuPy; a run started on NumPy resumed on CuPy and one
    written on CuPy resumed and loaded on NumPy."""
    from scratchgan import cli
    from scratchgan.training.checkpoint import latest_checkpoint, load_checkpoint
    from scratchgan.training import load_run

    t = tmp_path
    assert cli.main(["train", *TINY_MLP, "--steps", "6", "--checkpoint-every", "6", "--out", str(t / "np2cp"),
                     "--backend", "numpy"]) == 0                     # started on NumPy ...
    np.save(t / "digits.npy", np.random.default_rng(1).uniform(0, 1, (3, 28, 28)).astype(np.float32))
    commands = [
        ["train", *TINY_MLP, "--steps", "20", "--ema", "0.9", "--out", str(t / "straight")],
        ["train", *TINY_MLP, "--steps", "12", "--ema", "0.9", "--checkpoint-every", "4", "--out", str(t / "mlp")],
        ["train", "--resume", "--steps", "20", "--out", str(t / "mlp")],
        ["train", "--resume", "--steps", "10", "--out", str(t / "np2cp")],                # ... resumed on CuPy
        ["train", "--model", "cgan", "--g-hidden", "16", "--d-hidden", "16", "--spectral-norm", "--steps", "12",
         *TINY, "--out", str(t / "cgan")],
        ["train", "--model", "dcgan", "--g-hidden", "4,3,2", "--d-hidden", "2,3,4", "--loss", "wgan-gp", "--k", "2",
         "--steps", "4", *TINY, "--dataset", f"folder:{_rgb_folder(t / 'rgb')}", "--channels", "3",
         "--image-size", "32", "--out", str(t / "dcgan")],
        ["sample", str(t / "cgan"), "--n", "10", "--label", "3", "--out", str(t / "s.png")],
        ["interpolate", str(t / "cgan"), "--mode", "classes", "--rows", "2", "--out", str(t / "i.png")],
        ["interpolate", str(t / "dcgan"), "--mode", "slerp", "--rows", "2", "--steps", "3", "--out", str(t / "j.png")],
        ["inpaint", str(t / "cgan"), "--images", str(t / "digits.npy"), "--steps", "4", "--restarts", "2",
         "--out", str(t / "ip.png"), "--save-npy"],
        ["gradcheck"],
        ["bench", "--models", "mlp,dcgan", "--batch-sizes", "8", "--repeats", "1", "--json"],
    ]
    if (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        commands.append(["evaluate", str(t / "mlp"), "--n", "100", "--n-real", "100", "--quiet", "--json",
                         "--data-dir", str(SHARED_MNIST)])
    import json
    import subprocess
    import sys
    env = dict(os.environ, SCRATCHGAN_BACKEND="cupy", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(commands)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("ok ") == len(commands)
    assert done.stdout.strip().endswith("standin" if ON_STANDIN else "real cupy")
    for png in ("s.png", "i.png", "j.png", "ip.png", "cgan/samples.png", "dcgan/monitor.png", "mlp/losses.png"):
        assert (t / png).read_bytes().startswith(b"\x89PNG"), png
    for run in ("mlp", "np2cp", "cgan", "dcgan"):
        _, meta = load_checkpoint(latest_checkpoint(t / run / "checkpoints"))
        assert meta["backend"] == "cupy", run
    # a resumed CuPy run is the uninterrupted one (bit for bit on the stand-in)
    a = load_checkpoint(latest_checkpoint(t / "straight" / "checkpoints"))[0]
    b = load_checkpoint(latest_checkpoint(t / "mlp" / "checkpoints"))[0]
    assert a.keys() == b.keys()
    for k in a:
        (np.testing.assert_array_equal if ON_STANDIN else np.testing.assert_allclose)(b[k], a[k], err_msg=k)
    # written on CuPy: loads and resumes on NumPy, and gives NumPy's images for the same z
    backend.use("numpy")
    assert cli.main(["train", "--resume", "--steps", "24", "--out", str(t / "mlp"), "--backend", "numpy"]) == 0
    assert load_checkpoint(latest_checkpoint(t / "mlp" / "checkpoints"))[1]["backend"] == "numpy"
    gan, _ = load_run(t / "cgan")
    z = np.random.default_rng(2).standard_normal((4, gan.latent_dim)).astype(np.float32)
    on_cpu = gan.generate(z=z, labels=np.arange(4))
    backend.use("cupy")
    gan, _ = load_run(t / "cgan")
    on_gpu = gan.generate(z=backend.asarray(z), labels=backend.asarray(np.arange(4)))
    assert not isinstance(on_gpu, np.ndarray)
    np.testing.assert_allclose(backend.to_numpy(on_gpu), on_cpu, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- the GPU script
def test_the_gpu_check_script_runs_in_its_tiny_mode():
    """examples/gpu_check.py --tiny: every part (tests, equality of the default models, training,
    bench on both backends) and its one table, here on the stand-in (or the GPU)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    done = subprocess.run([sys.executable, str(root / "examples" / "gpu_check.py"), "--tiny"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| part | model | batch | NumPy | CuPy |")
    body = table[2:]
    assert all(line.endswith("| ok |") for line in body), done.stdout
    parts = [line.split(" | ")[0][2:] for line in body]
    assert parts[0].startswith("tests: pytest -m cupy") and "passed" in body[0]
    for kind in ("mlp", "cgan", "dcgan"):
        assert any(p.startswith("CuPy == NumPy") and f"| {kind} |" in line for p, line in zip(parts, body)), kind
        assert any(p.startswith("train") and f"| {kind} |" in line for p, line in zip(parts, body)), kind
        assert sum(p.startswith("bench: training step") and f"| {kind} |" in line for p, line in zip(parts, body)) == 2
    assert ("stand-in" in done.stdout.splitlines()[0]) == ON_STANDIN, done.stdout   # the header says where it ran
