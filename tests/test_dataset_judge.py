"""A judge for any data set: the net for each image shape, the rotation task, training reproducible
from its seed, the cache keyed by the data (and invalidated when it changes), a damaged cache
retrained, and evaluate / report / the CLI on runs of image folders. Tiny judges, tiny data."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from scratchgan import backend
from scratchgan.evaluation import dataset_judge, metrics
from scratchgan.evaluation import judge as J
from scratchgan.cli import main
from scratchgan.data import image_folder
from scratchgan.data.shapes import make_shapes_folder


@pytest.fixture(autouse=True)
def few_steps(monkeypatch, tmp_path):
    """Judges of a few dozen steps; caches under tmp_path."""
    monkeypatch.setattr(dataset_judge, "TARGET_STEPS", 10)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("data") / "shapes", n=120, size=28, seed=0)


@pytest.mark.parametrize("shape,stages", [((1, 28, 28), 2), ((3, 32, 32), 2), ((3, 64, 64), 3)])
def test_judge_arch_fits_each_image_shape(shape, stages):
    for classes, task, outputs in ((5, "classes", 5), (1, "rotation", 4)):
        arch = dataset_judge.judge_arch(shape, classes)
        assert arch["task"] == task and arch["num_classes"] == outputs and len(arch["channels"]) == stages
        j = J.build_judge(0, **arch)
        x = np.random.default_rng(0).random((3,) + shape, dtype=np.float32)
        f, logits = j.features_and_logits(x)
        assert f.shape == (3, 128) and logits.shape == (3, outputs)
    with pytest.raises(ValueError, match="judge_arch: images must be 1 or 3 channels of 28, 32 or 64"):
        dataset_judge.judge_arch((3, 30, 30), 2)
    with pytest.raises(ValueError, match=r"build_judge: needs square images whose side divides by 2\^3"):
        J.build_judge(0, channels=(4, 4, 4), image_shape=(1, 28, 28), kernel=3)
    with pytest.raises(ValueError, match=r"judge: expected images of shape \(N, 3, 32, 32\)"):
        J.build_judge(0, **dataset_judge.judge_arch((3, 32, 32), 2)).features(np.zeros((2, 1, 28, 28), np.float32))


def test_rotate_batch_turns_each_image_by_its_own_k():
    x = np.random.default_rng(0).random((9, 2, 5, 5)).astype(np.float32)
    turned, k = J.rotate_batch(x, np.random.default_rng(1))
    for i in range(9):
        np.testing.assert_array_equal(turned[i], np.rot90(x[i], int(k[i]), axes=(1, 2)))
    assert set(np.asarray(k).tolist()) <= {0, 1, 2, 3}


def test_uint8_images_are_read_as_their_unit_range():
    j = J.build_judge(0, channels=(4, 8), hidden=16, dropout=0.0)
    u8 = np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(backend.to_numpy(j.features(u8)), backend.to_numpy(j.features(u8 / 255.0)),
                               rtol=1e-5, atol=1e-6)


def test_held_out_split_is_seeded_and_disjoint():
    tr, held = dataset_judge.held_out_split(100, seed=0)
    assert len(held) == 20 and len(tr) == 80 and not set(tr) & set(held)
    tr2, held2 = dataset_judge.held_out_split(100, seed=0)
    np.testing.assert_array_equal(held, held2)
    assert not np.array_equal(held, dataset_judge.held_out_split(100, seed=1)[1])
    assert len(dataset_judge.held_out_split(10 ** 6)[1]) == 10000                      # capped
    with pytest.raises(ValueError, match="at least 2 images"):
        dataset_judge.held_out_split(1)


@pytest.mark.parametrize("labels", ["auto", "none"])
def test_training_is_reproducible_from_its_seed(shapes, labels):
    ds = image_folder(shapes, channels=3, image_size=28, labels=labels, cache=False)
    a, split = dataset_judge.judge_for_dataset(ds, seed=0, cache=False)
    b, _ = dataset_judge.judge_for_dataset(ds, seed=0, cache=False)
    c, _ = dataset_judge.judge_for_dataset(ds, seed=1, cache=False)
    assert a.task == ("classes" if labels == "auto" else "rotation")
    sa, sb, sc = (j.net.state_dict() for j in (a, b, c))
    assert all(np.array_equal(backend.to_numpy(sa[k]), backend.to_numpy(sb[k])) for k in sa)
    assert not all(np.array_equal(backend.to_numpy(sa[k]), backend.to_numpy(sc[k])) for k in sa)
    assert 0.0 <= a.info["held_out_accuracy"] <= 1.0 and a.info["n_held_out"] == len(split["held_out"]) == 24
    if labels == "none":
        assert a.extra["cluster_centroids"].shape == (dataset_judge.CLUSTERS, 128)
        np.testing.assert_array_equal(a.extra["cluster_centroids"], b.extra["cluster_centroids"])


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + 0.1 * rng.standard_normal((50, 2)) for c in centres])
    found = dataset_judge.kmeans(x, 3, seed=0)
    assert np.allclose(np.sort(found, axis=0), np.sort(centres, axis=0), atol=0.1)
    assert len(set(dataset_judge.cluster_of(found, x).tolist())) == 3


def test_cache_is_keyed_by_the_data_and_verified(shapes, tmp_path):
    news = []
    ds = image_folder(shapes, channels=1, image_size=28, cache=False)
    first, _ = dataset_judge.judge_for_dataset(ds, progress=news.append)
    assert "training a classes judge on 96 of its 120 images (24 held out)" in news[0]
    files = sorted((tmp_path / "cache" / "scratchgan" / "judges").iterdir())
    assert [p.suffix for p in files] == [".json", ".npz"]
    meta = json.loads(files[0].read_text())
    assert meta["data_key"] == first.info["data_key"] and meta["command"]
    with np.load(files[1], allow_pickle=False) as z:                 # plain arrays, no pickle
        assert all(z[k].dtype == np.float32 for k in z.files)
    # the same data: loaded, not trained; the same weights
    news.clear()
    again, _ = dataset_judge.judge_for_dataset(ds, progress=news.append)
    assert "made for this data" in news[0]
    x = ds.images[:5]
    np.testing.assert_array_equal(backend.to_numpy(again.features(x)), backend.to_numpy(first.features(x)))
    # other data (one image changed): another key, a new judge beside the old one
    ds.images[0] = 255 - ds.images[0]
    news.clear()
    dataset_judge.judge_for_dataset(ds, progress=news.append)
    assert "training" in news[0] and len(list(files[0].parent.glob("*.npz"))) == 2
    # a damaged file: warned about, trained again, replaced
    ds.images[0] = 255 - ds.images[0]
    files[1].write_bytes(files[1].read_bytes()[:-10])
    with pytest.warns(UserWarning, match="cannot be used .*sha256.*training it again"):
        dataset_judge.judge_for_dataset(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset_judge.judge_for_dataset(ds)                               # intact again: no warning


def test_a_judge_file_for_other_data_is_not_used(shapes, tmp_path):
    ds = image_folder(shapes, channels=1, image_size=28, cache=False)
    judge, _ = dataset_judge.judge_for_dataset(ds)
    path = next((tmp_path / "cache" / "scratchgan" / "judges").glob("*.npz"))
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["data_key"] = "0" * 64                                           # consistent file, other data
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="made for other data"):
        dataset_judge.judge_for_dataset(ds)


# --------------------------------------------------------------------------- evaluate on folder runs

def _folder_run(tmp_path, folder, channels, extra=()):
    run = tmp_path / "run"
    assert main(["train", "--model", "dcgan", "--dataset", f"folder:{folder}", "--channels", str(channels),
                 "--image-size", "28", "--steps", "2", "--batch-size", "8", "--out", str(run), "--quiet",
                 "--threads", "1", *extra]) == 0
    return run


@pytest.mark.parametrize("labels", ["classes", "unlabelled"])
def test_evaluate_scores_a_folder_run(shapes, tmp_path, capsys, labels):
    folder = shapes
    if labels == "unlabelled":
        folder = tmp_path / "flat"
        folder.mkdir()
        for p in sorted(shapes.rglob("*.png")):
            (folder / f"{p.parent.name}-{p.name}").write_bytes(p.read_bytes())
    run = _folder_run(tmp_path, folder, 3)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n", "60", "--json", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert "training a" in err and "judge: trained in" in err
    g, real, noise = result["generated"], result["real"], result["noise"]
    task = "classes" if labels == "classes" else "rotation"
    assert result["judge"]["task"] == task and result["reference"]["n_test"] == 24
    for d in (g, real, noise):
        assert np.isfinite(d["fid"]) and len(d["kid"]) == 2 and 0 <= d["coverage"] <= 1
        assert ("class_histogram" if task == "classes" else "cluster_histogram") in d
    assert real["fid"] < noise["fid"] and real["kid"][0] < noise["kid"][0]
    assert real["coverage"] > noise["coverage"]
    html = (run / "report.html").read_text()
    assert "KID" in html and "coverage" in html and "cannot score" not in html
    assert f"trained on this run's data" in html
    # the second evaluation finds the judge in the cache
    assert main(["evaluate", str(run), "--n", "60", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "made for this data" in err and "training a" not in err and "KID" in out and "+-" in out


def test_judge_train_command_and_bad_inputs(shapes, tmp_path, capsys):
    assert main(["judge", "train", "--dataset", f"folder:{shapes}", "--channels", "1", "--image-size", "28",
                 "--quiet", "--threads", "1"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["task"] == "classes" and described["arch"]["image_shape"] == [1, 28, 28]
    for argv, expected in [
        (["judge", "train", "--dataset", f"folder:{tmp_path / 'nowhere'}"], "no such folder"),
        (["judge", "train", "--dataset", "folder:"], "give the folder"),
        (["judge", "train", "--dataset", f"folder:{shapes}", "--image-size", "30"], "--image-size"),
        (["judge", "train"], "--dataset"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error:") and expected in err, err


def test_evaluate_of_a_folder_that_moved_says_so_in_one_line(shapes, tmp_path, capsys):
    import shutil
    folder = tmp_path / "pics"
    shutil.copytree(shapes, folder)
    run = _folder_run(tmp_path, folder, 1)
    moved = tmp_path / "moved"
    folder.rename(moved)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n", "20", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "no such folder" in err
    assert not (run / "evaluation.json").exists()
    assert main(["evaluate", str(run), "--n", "20", "--quiet", "--dataset", f"folder:{moved}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == f"folder:{moved}"
