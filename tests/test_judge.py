"""The judge: shipped weights load and are verified, its pixel range, its helpers, and (when
the MNIST test set is at hand) the shipped judge's accuracy. The judge is not retrained here."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scratchgan import backend
from scratchgan.evaluation import judge as J
from scratchgan.data import load_dataset

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
HAS_TEST_SET = (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists()


@pytest.fixture(scope="module")
def shipped():
    return J.load_judge("mnist")


def test_shipped_weights_load(shipped):
    meta = json.loads((J.JUDGES_DIR / "mnist.json").read_text())
    assert (J.JUDGES_DIR / "mnist.npz").stat().st_size < 2_000_000
    assert shipped.info["sha256"] == meta["sha256"] and meta["test_accuracy"] >= 0.985
    assert "examples/train_judge.py" in meta["command"]
    with np.load(J.JUDGES_DIR / "mnist.npz", allow_pickle=False) as z:
        assert all(z[k].dtype == np.float32 for k in z.files)
    x = backend.asarray(np.random.default_rng(0).uniform(0, 1, (7, 1, 28, 28)).astype(np.float32))
    logits, feats, probs = shipped.logits(x), shipped.features(x), shipped.probs(x)
    assert logits.shape == (7, 10) and feats.shape == (7, shipped.feature_dim) == (7, 128)
    np.testing.assert_allclose(backend.to_numpy(probs).sum(axis=1), 1.0, rtol=1e-5)
    assert float(backend.to_numpy(feats).min()) >= 0.0          # after the hidden ReLU
    assert shipped.predict(x).shape == (7,)


@pytest.mark.parametrize("name", sorted(p.stem for p in J.JUDGES_DIR.glob("*.npz")))
def test_every_shipped_judge_verifies_and_documents_itself(name):
    judge = J.load_judge(name)            # sha256 checked
    meta = json.loads((J.JUDGES_DIR / f"{name}.json").read_text())
    readme = (J.JUDGES_DIR / "README.md").read_text()
    assert meta["sha256"] in readme and meta["command"] in readme
    assert f"{meta['test_accuracy'] * 100:.2f}%" in readme
    assert judge.num_classes == len(judge.classes) == 10


def test_batching_does_not_change_the_result(shipped):
    x = np.random.default_rng(1).uniform(0, 1, (23, 1, 28, 28)).astype(np.float32)
    a = backend.to_numpy(shipped.logits(x, batch=500))
    b = backend.to_numpy(shipped.logits(x, batch=5))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _copy_judge(tmp_path):
    for suffix in (".npz", ".json"):
        shutil.copy(J.JUDGES_DIR / f"mnist{suffix}", tmp_path / f"mnist{suffix}")
    return tmp_path / "mnist.npz"


def test_checksum_rejects_a_corrupted_copy(tmp_path):
    path = _copy_judge(tmp_path)
    J.load_judge(path=path)                      # an intact copy loads
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(J.JudgeError, match="sha256"):
        J.load_judge(path=path)


def test_missing_judge_is_a_clear_error(tmp_path):
    with pytest.raises(J.JudgeError, match="not found"):
        J.load_judge(path=tmp_path / "nothing.npz")
    with pytest.raises(J.JudgeError, match="no shipped judge 'no-such-judge'"):
        J.load_judge("no-such-judge")
    with pytest.raises(J.JudgeError, match="no shipped judge '../judges/mnist'"):   # a name, never a path
        J.load_judge("../judges/mnist")


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = _copy_judge(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["arch"]["hidden"] = 64
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(J.JudgeError, match="do not fit"):
        J.load_judge(path=path)


def test_to_judge_range_is_exact():
    ds = load_dataset("mnist-bundled", split="train", progress=False)
    target = ds.as_float("sigmoid")[:200]
    for output in ("tanh", "sigmoid"):
        got = backend.to_numpy(J.to_judge_range(backend.asarray(ds.as_float(output)[:200]), output))
        np.testing.assert_allclose(got, target, rtol=0, atol=1e-7)
    x = np.array([-1.5, -1.0, 0.0, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(J.to_judge_range(x, "tanh"), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(J.to_judge_range(x, "sigmoid"), [0.0, 0.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="tanh"):
        J.to_judge_range(x, "relu")


def test_shift_augment_moves_each_image():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 1, 6, 7)).astype(np.float32)
    out = J.shift_augment(x, 2, np.random.default_rng(5))
    r2 = np.random.default_rng(5)
    dy, dx = r2.integers(0, 5, size=16) - 2, r2.integers(0, 5, size=16) - 2
    for i in range(16):
        padded = np.pad(x[i, 0], 2)
        expected = padded[2 + dy[i]:2 + dy[i] + 6, 2 + dx[i]:2 + dx[i] + 7]
        np.testing.assert_array_equal(out[i, 0], expected)
    assert np.any(dy != 0) and J.shift_augment(x, 0, rng) is x


def test_train_judge_learns(tmp_path):
    """A tiny judge on 512 images for a few epochs beats chance by far, and saves/loads."""
    ds = load_dataset("mnist-bundled", split="train", progress=False)
    x, y = ds.as_float("sigmoid")[:512], ds.labels[:512]
    judge = J.train_judge(x, y, epochs=4, batch_size=32, lr=3e-3, seed=0, max_shift=1, channels=(4, 8),
                          hidden=32, dropout=0.0, log=None)
    assert judge.accuracy(x, y) > 0.6
    path = J.save_judge(judge, tmp_path / "tiny.npz", test_accuracy=None)
    again = J.load_judge(path=path)
    np.testing.assert_allclose(backend.to_numpy(again.logits(x[:10])), backend.to_numpy(judge.logits(x[:10])),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_TEST_SET, reason=f"MNIST test set not found in {SHARED_MNIST}")
def test_shipped_judge_accuracy_on_the_official_test_set(shipped):
    test = load_dataset("mnist", split="test", data_dir=SHARED_MNIST, progress=False)
    assert len(test) == 10000
    acc = shipped.accuracy(test.as_float("sigmoid"), test.labels)
    assert acc >= 0.985
    assert acc == pytest.approx(shipped.info["test_accuracy"], abs=1e-4)


def test_judge_on_the_cupy_backend(xp_backend, shipped):
    x = np.random.default_rng(2).uniform(0, 1, (5, 1, 28, 28)).astype(np.float32)
    host = backend.to_numpy(shipped.logits(x))
    j = J.load_judge("mnist")              # made on the selected backend
    dev = j.logits(backend.asarray(x))
    assert backend.array_module(dev) is backend.xp()
    np.testing.assert_allclose(backend.to_numpy(dev), host, rtol=1e-4, atol=1e-4)
