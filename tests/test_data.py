"""Tests for scratchgan.data: IDX I/O, look-up, checksums, downloads (faked), the bundled sample."""
import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

import scratchgan.data.datasets as dsm
from scratchgan.data import (
    BUNDLED_DIR, REGISTRY, DataError, DataNotFound, Dataset, batches, cache_dir,
    dataset_names, download_file, load_dataset, read_idx, write_idx,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# --------------------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network, no user cache, no $SCRATCHGAN_DATA, fresh checksum memo."""
    calls = []

    def no_network(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(dsm, "_urlopen", no_network)
    monkeypatch.setattr(dsm, "_VERIFIED", set())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SCRATCHGAN_DATA", raising=False)
    return calls


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def write_fake_split(folder, name="mnist", split="train", n=12, label=None, gz=True, seed=0):
    """Write small valid IDX files under the official names; -> (images, labels, [paths])."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.full(n, label) if label is not None else np.arange(n) % 10).astype(np.uint8)
    paths = []
    for fs, arr in zip(REGISTRY[name].splits[split], (images, labels)):
        p = folder / (fs.name if gz else fs.name[:-3])
        write_idx(p, arr)
        paths.append(p)
    return images, labels, paths


def patch_md5s(monkeypatch, name, split, md5s_per_file, **spec_changes):
    """Replace the checksum table of `name`/`split`: md5s_per_file = [images md5s, labels md5s]."""
    spec = REGISTRY[name]
    pair = tuple(dataclasses.replace(fs, md5=tuple(m), raw_md5=None, size=None)
                 for fs, m in zip(spec.splits[split], md5s_per_file))
    new = dataclasses.replace(spec, splits={**spec.splits, split: pair}, **spec_changes)
    monkeypatch.setitem(REGISTRY, name, new)
    return new


class FakeResponse(io.BytesIO):
    """Stands in for urlopen's response: small reads, optional failure part-way."""

    def __init__(self, data, fail_after=None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer (fake)")
        return super().read(min(n, 1000) if n and n > 0 else 1000)


def serve(monkeypatch, files, fail_first_mirror=False, fail_after=None):
    """Monkeypatch urlopen to serve {basename: bytes}; -> list of (url, timeout) requested."""
    log = []

    def opener(url, timeout=None):
        log.append((url, timeout))
        if fail_first_mirror and url.startswith(REGISTRY["mnist"].mirrors[0]):
            raise urllib.error.URLError("first mirror down (fake)")
        base = url.rsplit("/", 1)[1]
        if base not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return FakeResponse(files[base], fail_after)

    monkeypatch.setattr(dsm, "_urlopen", opener)
    return log


def listing(folder):
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- IDX I/O

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 4), (2, 3, 5), (1, 2, 1, 3)]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_idx_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        arr = rng.standard_normal(shape).astype(dtype) * 1e3
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, arr)
    back[...] = 0  # the result is writable
    assert listing(tmp_path) == [path.name]  # no temp file left


def test_idx_layout_is_big_endian(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.array([[1, 256]], dtype=np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 0])
    write_idx(path, np.array([1.0], dtype="<f4"))  # little-endian input is stored big-endian
    assert path.read_bytes()[-4:] == np.array([1.0], ">f4").tobytes()


def test_gzip_detected_by_magic_not_suffix(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_idx(tmp_path / "a.gz", arr)
    os.replace(tmp_path / "a.gz", tmp_path / "a-idx2-ubyte")
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx2-ubyte"), arr)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype=np.int64))
    assert listing(tmp_path) == []


def _raw_idx(tmp_path, shape=(10, 28, 28)):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, np.zeros(shape, np.uint8))
    return path, path.read_bytes()


def test_truncated_file(tmp_path):
    path, data = _raw_idx(tmp_path)
    path.write_bytes(data[:-1])
    with pytest.raises(DataError) as err:
        read_idx(path)
    msg = str(err.value)
    assert path.name in msg and "truncated" in msg
    assert "header says 10x28x28 = 7840 bytes of data, file has 7839" in msg


def test_truncated_gz_file_names_the_file(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:1234]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated: .*file has 1218"):
        read_idx(path)


def test_extra_bytes(tmp_path):
    path, data = _raw_idx(tmp_path)
    path.write_bytes(data + b"\0\0\0")
    with pytest.raises(DataError, match=rf"{path.name}: 3 extra bytes"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path, data = _raw_idx(tmp_path)
    path.write_bytes(data[:9])
    with pytest.raises(DataError, match=rf"{path.name}: truncated header"):
        read_idx(path)
    path.write_bytes(data[:3])
    with pytest.raises(DataError, match=path.name):
        read_idx(path)


@pytest.mark.parametrize("header, pattern", [
    (bytes([1, 0, 8, 1]), "magic"),
    (bytes([0, 7, 8, 1]), "magic"),
    (bytes([0, 0, 0x0A, 1]), "unknown IDX type code 0x0A"),
    (bytes([0, 0, 0x07, 1]), "unknown IDX type code 0x07"),
    (bytes([0, 0, 8, 0]), "0 dimensions"),
])
def test_bad_magic(tmp_path, header, pattern):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(header + bytes([0, 0, 0, 2, 5, 6]))
    with pytest.raises(DataError, match=pattern) as err:
        read_idx(path)
    assert path.name in str(err.value)


def test_corrupted_gzip(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(5000, dtype=np.int32))
    data = bytearray(path.read_bytes())
    good = bytes(data)
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{path.name}: corrupted gzip"):
        read_idx(path)
    path.write_bytes(good[: len(good) // 2])  # cut short
    with pytest.raises(DataError, match=rf"{path.name}: corrupted gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz"):
        read_idx(tmp_path / "nope.gz")


def test_errors_are_value_errors():
    assert issubclass(DataError, ValueError) and issubclass(DataNotFound, DataError)


# --------------------------------------------------------------------------- bundled sample

def test_bundled_sample_loads():
    ds = load_dataset("mnist-bundled")
    assert len(ds) == 10000 and ds.images.shape == (10000, 28, 28)
    assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int64
    assert ds.labels.shape == (10000,) and set(np.unique(ds.labels)) == set(range(10))
    assert ds.labels[0] == 5 and list(ds.labels[:8]) == [5, 0, 4, 1, 9, 2, 1, 3]  # as in MNIST
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.is_bundled and "bundled sample" in ds.source
    assert 0 < ds.images.mean() < 255
    with pytest.raises(DataError, match="train"):
        load_dataset("mnist-bundled", split="test")


def test_bundled_readme_records_the_checksums():
    readme = (BUNDLED_DIR / "README.md").read_text()
    assert "LeCun" in readme and "Burges" in readme and "CC BY-SA 3.0" in readme
    for fs in REGISTRY["mnist-bundled"].splits["train"]:
        assert fs.sha256 in readme
        assert hashlib.sha256((BUNDLED_DIR / fs.name).read_bytes()).hexdigest() == fs.sha256


def test_bundled_checksum_is_verified(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(BUNDLED_DIR, copy)
    target = copy / "train10k-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    stat = target.stat()
    with pytest.raises(DataError, match="sha256 mismatch") as err:
        load_dataset("mnist-bundled", data_dir=copy)
    assert target.name in str(err.value)
    assert target.read_bytes() == bytes(data) and target.stat().st_mtime_ns == stat.st_mtime_ns
    # the shipped files are untouched and still load
    assert len(load_dataset("mnist-bundled")) == 10000


# --------------------------------------------------------------------------- look-up and checksums

def test_lookup_order(tmp_path, monkeypatch):
    a, b, c = tmp_path / "explicit", tmp_path / "env", cache_dir("mnist")
    assert c == tmp_path / "xdg-cache" / "scratchgan" / "mnist"
    paths = []
    for folder, label in ((a, 1), (b, 2), (c, 3)):
        paths += write_fake_split(folder, label=label)[2]
    patch_md5s(monkeypatch, "mnist", "train",
               [[md5(p) for p in paths[0::2]], [md5(p) for p in paths[1::2]]])
    monkeypatch.setenv("SCRATCHGAN_DATA", str(b))

    ds = load_dataset("mnist", data_dir=a)
    assert ds.source == str(a) and set(ds.labels) == {1} and not ds.is_bundled
    ds = load_dataset("mnist")
    assert ds.source == str(b) and set(ds.labels) == {2}
    monkeypatch.delenv("SCRATCHGAN_DATA")
    ds = load_dataset("mnist", data_dir=tmp_path / "empty")
    assert ds.source == str(c) and set(ds.labels) == {3}


def test_lookup_needs_both_files_and_accepts_subfolder_and_raw_names(tmp_path, monkeypatch):
    root = tmp_path / "root"
    images, labels, paths = write_fake_split(root / "mnist", gz=False, label=7)
    (tmp_path / "half").mkdir()
    shutil.copy(paths[0], tmp_path / "half" / paths[0].name)  # images only: does not count
    patch_md5s(monkeypatch, "mnist", "train", [["0" * 32], ["0" * 32]])  # .gz md5s: not used for raw files
    monkeypatch.setenv("SCRATCHGAN_DATA", str(root))
    ds = load_dataset("mnist", data_dir=tmp_path / "half", allow_bundled=False)
    assert ds.source == str(root / "mnist")
    np.testing.assert_array_equal(ds.images, images)
    assert set(ds.labels) == {7}


def test_lookup_home_cache_without_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("fashion-mnist") == tmp_path / "home" / ".cache" / "scratchgan" / "fashion-mnist"


def test_md5_mismatch_leaves_file_untouched(tmp_path, monkeypatch):
    _, _, paths = write_fake_split(tmp_path / "d")
    patch_md5s(monkeypatch, "mnist", "train", [["f" * 32], [md5(paths[1])]])
    before = paths[0].read_bytes(), paths[0].stat().st_mtime_ns
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path / "d")
    assert not isinstance(err.value, DataNotFound)  # a bad file is not silently replaced by the sample
    msg = str(err.value)
    assert paths[0].name in msg and "f" * 32 in msg and md5(paths[0]) in msg
    assert (paths[0].read_bytes(), paths[0].stat().st_mtime_ns) == before
    assert listing(tmp_path / "d") == sorted(p.name for p in paths)


def test_regzipped_copy_passes_via_raw_md5(tmp_path):
    # the official t10k files re-gzipped differently (as Debian does): same data, other .gz bytes
    if not (SHARED / "mnist").is_dir():
        pytest.skip("../shared/data not present")
    d = tmp_path / "regz"
    d.mkdir()
    for fs in REGISTRY["mnist"].splits["test"]:
        raw = gzip.decompress((SHARED / "mnist" / fs.name).read_bytes())
        (d / fs.name).write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
        assert md5(d / fs.name) not in fs.md5
    assert len(load_dataset("mnist", "test", data_dir=d)) == 10000


def test_fashion_mnist_table_has_the_published_md5s():
    official = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
    spec = REGISTRY["fashion-mnist"]
    for pair in spec.splits.values():
        for fs in pair:
            assert fs.md5[0] == official[fs.name] and fs.raw_md5
    assert spec.classes[0] == "T-shirt/top" and spec.classes[9] == "Ankle boot"


def test_dataset_names_and_unknown_name():
    assert {"mnist", "fashion-mnist", "emnist-letters", "mnist-bundled"} <= set(dataset_names())
    with pytest.raises(DataError, match="fashion-mnist"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="has no split 'val'"):
        load_dataset("mnist", split="val")


# --------------------------------------------------------------------------- fallback and offline errors

def test_mnist_falls_back_to_bundled_with_warning(tmp_path):
    empty = tmp_path / "empty"
    with pytest.warns(UserWarning, match="bundled sample"):
        ds = load_dataset("mnist", split="train", data_dir=empty)
    assert ds.is_bundled and len(ds) == 10000
    assert ds.source.startswith("bundled sample: the first 10,000 MNIST training images")
    assert "not found" in ds.source and str(empty) in ds.source and str(cache_dir("mnist")) in ds.source
    assert ds.note == ds.source


def test_fallback_after_failed_download(tmp_path, offline):
    with pytest.warns(UserWarning, match="download failed"):
        ds = load_dataset("mnist", data_dir=tmp_path / "empty", download=True)
    assert ds.is_bundled and "download failed" in ds.note
    mirrors = REGISTRY["mnist"].mirrors
    assert [u for u in offline] == [m + "train-images-idx3-ubyte.gz" for m in mirrors]
    assert listing(cache_dir("mnist")) == []


def test_no_fallback_when_disallowed_or_test_split(tmp_path, offline):
    with pytest.raises(DataNotFound):
        load_dataset("mnist", data_dir=tmp_path, allow_bundled=False)
    with pytest.raises(DataNotFound) as err:
        load_dataset("mnist", split="test", data_dir=tmp_path)
    msg = str(err.value)
    for needle in ("t10k-images-idx3-ubyte.gz", str(tmp_path), str(cache_dir("mnist")),
                   "--data-dir", "SCRATCHGAN_DATA", "--download", "download=True", "mnist-bundled"):
        assert needle in msg, needle
    assert offline == []  # download off: the network was not touched


def test_offline_message_for_fashion_mnist(tmp_path, monkeypatch, offline):
    spec = dataclasses.replace(REGISTRY["fashion-mnist"], system_dirs=(str(tmp_path / "no-such"),))
    monkeypatch.setitem(REGISTRY, "fashion-mnist", spec)
    with pytest.raises(DataNotFound) as err:
        load_dataset("fashion-mnist", download=True)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "mnist-bundled" in msg
    assert "network disabled in tests" in msg and spec.mirrors[0] in msg
    assert str(tmp_path / "no-such") in msg and "--data-dir" in msg


# --------------------------------------------------------------------------- Dataset methods

def test_filter_classes_digit_two():
    ds = load_dataset("mnist-bundled")
    two = ds.filter_classes([2])
    assert len(two) == int((ds.labels == 2).sum()) > 0 and np.all(two.labels == 2)
    np.testing.assert_array_equal(two.images, ds.images[ds.labels == 2])
    assert two.classes == ds.classes  # labels keep their meaning
    assert len(ds.filter_classes(["2"])) == len(two) == len(ds.filter_classes(2))
    both = load_dataset("mnist-bundled", classes=[3, "8"])
    assert set(np.unique(both.labels)) == {3, 8}
    for bad in ([10], [-1], ["x"], [True]):
        with pytest.raises(DataError, match="valid"):
            ds.filter_classes(bad)


def test_filter_classes_by_name():
    classes = list(REGISTRY["fashion-mnist"].classes)
    ds = Dataset("fake", "train", np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 9, 1]),
                 classes, "memory", False)
    assert list(ds.filter_classes(["Trouser"]).labels) == [1, 1]
    assert list(ds.filter_classes(["ankle boot", 0]).labels) == [0, 9]
    with pytest.raises(DataError, match="Ankle boot"):
        ds.filter_classes(["Hat"])


def test_as_float_ranges_and_shape():
    images = np.zeros((3, 28, 28), np.uint8)
    images[0, 0, 0], images[1, 5, 5], images[2, 3, 4] = 255, 128, 1
    ds = Dataset("fake", "train", images, np.zeros(3, np.int64), ["0"], "memory", False)
    t = ds.as_float("tanh")
    assert t.shape == (3, 1, 28, 28) and t.dtype == np.float32
    assert t.min() == -1.0 and t.max() == 1.0
    np.testing.assert_allclose(t[:, 0], images / 127.5 - 1, rtol=0, atol=1e-7)
    s = ds.as_float("sigmoid", dtype=np.float64)
    assert s.dtype == np.float64 and s.min() == 0.0 and s.max() == 1.0
    np.testing.assert_allclose(s[:, 0], images / 255.0, rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        ds.as_float("relu")
    real = load_dataset("mnist-bundled").as_float()
    assert real.shape == (10000, 1, 28, 28) and real.min() == -1.0 and real.max() == 1.0


def test_as_float_is_the_lookup_table_and_image_shape():
    ds = load_dataset("mnist-bundled")
    assert ds.image_shape == (1, 28, 28) and ds.images.shape == (10000, 28, 28)
    for scale, lut in (("tanh", np.arange(256) / 127.5 - 1.0), ("sigmoid", np.arange(256) / 255.0)):
        for dtype in (np.float32, np.float64):
            x = ds.as_float(scale, dtype)
            assert x.dtype == dtype and x.shape == (10000, 1, 28, 28) and x.flags.c_contiguous
            # bit-identical to the table gather on the (N, H, W) images
            assert np.array_equal(x[:, 0], lut.astype(dtype)[ds.images])
    assert "image_shape=(1, 28, 28)" in repr(ds)


@pytest.mark.parametrize("channels", [1, 3])
def test_as_float_on_channel_first_images(channels):
    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, (5, channels, 8, 8), dtype=np.uint8)
    images[0, 0, 0, 0], images[1, -1, -1, -1] = 0, 255
    ds = Dataset("fake", "train", images, np.zeros(5, np.int64), ["image"], "memory")
    assert ds.image_shape == (channels, 8, 8)
    t, s = ds.as_float("tanh"), ds.as_float("sigmoid", np.float64)
    assert t.shape == s.shape == (5, channels, 8, 8)
    assert t.min() == -1.0 and t.max() == 1.0 and s.min() == 0.0 and s.max() == 1.0
    np.testing.assert_allclose(s, images / 255.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t, images / 127.5 - 1, rtol=0, atol=1e-7)
    assert ds.filter_classes([0]).images.shape == images.shape


@pytest.mark.parametrize("images, labels, pattern", [
    (np.zeros((2, 28, 28), np.float32), np.zeros(2, np.int64), "uint8 .* got float32"),
    (np.zeros((2, 2, 8, 8), np.uint8), np.zeros(2, np.int64), r"C = 1 or 3, got uint8 array of shape \(2, 2, 8, 8\)"),
    (np.zeros((28, 28), np.uint8), np.zeros(28, np.int64), r"shape \(28, 28\)"),
    (np.zeros((3, 8, 8), np.uint8), np.zeros(2, np.int64), r"expected labels of shape \(3,\), got \(2,\)"),
    ([[0]], np.zeros(1, np.int64), "got list"),
])
def test_dataset_refuses_bad_arrays(images, labels, pattern):
    with pytest.raises(DataError, match=pattern):
        Dataset("fake", "train", images, labels, ["image"], "memory")


def test_batches_deterministic_and_per_epoch():
    a = [b.tolist() for b in batches(103, 10, seed=7, epoch=0)]
    assert a == [b.tolist() for b in batches(103, 10, seed=7, epoch=0)]
    assert len(a) == 10 and all(len(b) == 10 for b in a)  # drop_last drops the 3 left over
    assert np.concatenate(a).tolist() == \
        np.random.default_rng([7, 0]).permutation(103)[:100].tolist()
    e1 = np.concatenate(list(batches(103, 10, seed=7, epoch=1, drop_last=False)))
    assert sorted(e1.tolist()) == list(range(103)) and e1[:100].tolist() != np.concatenate(a).tolist()
    assert [len(b) for b in batches(10, 3, 0, 0, drop_last=False)] == [3, 3, 3, 1]
    other_seed = np.concatenate(list(batches(103, 10, seed=8, epoch=0)))
    assert other_seed.tolist() != np.concatenate(a).tolist()
    with pytest.raises(ValueError):
        batches(10, 0, 0, 0)


# --------------------------------------------------------------------------- downloads (faked)

def test_download_bad_checksum_leaves_nothing(tmp_path, monkeypatch):
    serve(monkeypatch, {"f.gz": b"x" * 5000})
    dest = tmp_path / "dl" / "f.gz"
    with pytest.raises(DataError, match="md5 mismatch"):
        download_file("https://example.invalid/f.gz", dest, md5="0" * 32, progress=False)
    assert listing(dest.parent) == []


def test_download_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    data = b"y" * 5000
    serve(monkeypatch, {"f.gz": data}, fail_after=3000)
    dest = tmp_path / "dl" / "f.gz"
    with pytest.raises(ConnectionResetError):
        download_file("https://example.invalid/f.gz", dest, md5=hashlib.md5(data).hexdigest(),
                      progress=False)
    assert listing(dest.parent) == []


def test_download_interrupted_leaves_nothing(tmp_path, monkeypatch):
    class Interrupting(FakeResponse):
        def read(self, n=-1):
            if self.tell() > 0:
                raise KeyboardInterrupt
            return super().read(n)

    monkeypatch.setattr(dsm, "_urlopen", lambda url, timeout=None: Interrupting(b"z" * 3000))
    with pytest.raises(KeyboardInterrupt):
        download_file("https://example.invalid/f.gz", tmp_path / "f.gz", progress=False)
    assert listing(tmp_path) == []


def _fake_mnist_bytes(tmp_path):
    src = tmp_path / "src"
    images, labels, paths = write_fake_split(src, n=20)
    return images, labels, {p.name: p.read_bytes() for p in paths}


def test_download_lands_atomically_in_cache(tmp_path, monkeypatch):
    images, labels, files = _fake_mnist_bytes(tmp_path)
    patch_md5s(monkeypatch, "mnist", "train", [[hashlib.md5(files[n]).hexdigest()] for n in files])
    log = serve(monkeypatch, files, fail_first_mirror=True)
    ds = load_dataset("mnist", download=True, allow_bundled=False, progress=False)
    cache = cache_dir("mnist")
    assert ds.source == str(cache) and not ds.is_bundled
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert listing(cache) == sorted(files)  # no temp files
    for name, data in files.items():
        assert (cache / name).read_bytes() == data
    m0, m1 = REGISTRY["mnist"].mirrors
    assert [u for u, _ in log][:2] == [m0 + "train-images-idx3-ubyte.gz", m1 + "train-images-idx3-ubyte.gz"]
    assert all(t == 10 for _, t in log)
    # a second call finds the cache and does not download again
    n_calls = len(log)
    assert load_dataset("mnist", download=True, progress=False).source == str(cache)
    assert len(log) == n_calls


def test_download_with_bad_checksum_never_lands(tmp_path, monkeypatch):
    _, _, files = _fake_mnist_bytes(tmp_path)
    patch_md5s(monkeypatch, "mnist", "train", [["0" * 32], ["0" * 32]])
    serve(monkeypatch, files)
    with pytest.raises(DataNotFound, match="md5 mismatch"):
        load_dataset("mnist", download=True, allow_bundled=False, progress=False)
    assert listing(cache_dir("mnist")) == []


def test_download_failing_midway_via_loader(tmp_path, monkeypatch):
    _, _, files = _fake_mnist_bytes(tmp_path)
    patch_md5s(monkeypatch, "mnist", "train", [[hashlib.md5(files[n]).hexdigest()] for n in files])
    serve(monkeypatch, files, fail_after=2000)
    with pytest.raises(DataNotFound, match="connection reset"):
        load_dataset("mnist", download=True, allow_bundled=False, progress=False)
    assert listing(cache_dir("mnist")) == []


# --------------------------------------------------------------------------- EMNIST

def _fake_emnist(folder, split="train"):
    images = np.zeros((3, 28, 28), np.uint8)
    images[0, 0, 5] = 200          # stored row 0, column 5
    images[1, 2, :] = 50           # a stored row
    labels = np.array([1, 26, 13], np.uint8)
    for fs, arr in zip(REGISTRY["emnist-letters"].splits[split], (images, labels)):
        write_idx(Path(folder) / fs.name, arr)
    return images, labels


def test_emnist_transposed_and_labels_mapped(tmp_path, offline):
    stored, _ = _fake_emnist(tmp_path)
    ds = load_dataset("emnist-letters", data_dir=tmp_path)
    assert offline == [] and ds.source == str(tmp_path)   # read from the folder, no download tried
    assert ds.images[0, 5, 0] == 200 and ds.images[0, 0, 5] == 0
    assert np.all(ds.images[1, :, 2] == 50) and ds.images[1].sum() == 50 * 28
    np.testing.assert_array_equal(ds.images, stored.transpose(0, 2, 1))
    assert ds.images.flags.c_contiguous
    assert ds.labels.tolist() == [0, 25, 12]       # stored 1, 26, 13
    assert ds.classes == [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    assert [ds.classes[k] for k in ds.labels] == ["A", "Z", "M"]
    assert ds.class_index("A") == ds.class_index("a") == ds.class_index(0) == 0
    assert ds.class_index("Z") == ds.class_index(" z ") == 25
    assert ds.filter_classes(["z"]).labels.tolist() == [25]
    assert ds.filter_classes(["A", "m"]).labels.tolist() == [0, 12]
    assert ds.image_shape == (1, 28, 28) and ds.as_float().shape == (3, 1, 28, 28)
    with pytest.raises(DataError, match="0='A'"):
        ds.class_index("?")


def test_emnist_letter_is_upright(tmp_path):
    """An 'L' drawn upright, stored the way EMNIST stores it (transposed), comes out upright."""
    upright = np.zeros((28, 28), np.uint8)
    upright[4:24, 6] = 255            # the vertical stroke, on the left
    upright[23, 6:20] = 255           # the foot, at the bottom
    folder = tmp_path / "emnist"
    folder.mkdir()
    spec = REGISTRY["emnist-letters"]
    write_idx(folder / spec.splits["test"][0].name, upright.T[None])          # stored column-major
    write_idx(folder / spec.splits["test"][1].name, np.array([12], np.uint8))  # 12 = "L"
    ds = load_dataset("emnist-letters", split="test", data_dir=folder)
    np.testing.assert_array_equal(ds.images[0], upright)
    assert ds.images[0, 23, 6:20].min() == 255 and ds.images[0, 4:23, 19].max() == 0  # foot at the bottom
    assert ds.classes[ds.labels[0]] == "L"


def test_emnist_label_out_of_range(tmp_path):
    _fake_emnist(tmp_path)
    write_idx(tmp_path / "emnist-letters-train-labels-idx1-ubyte.gz", np.array([0, 1, 2], np.uint8))
    with pytest.raises(DataError, match="1..26"):
        load_dataset("emnist-letters", data_dir=tmp_path)


def test_emnist_download_extracts_letters_from_verified_zip(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    stored, _ = _fake_emnist(src, "train")
    _fake_emnist(src, "test")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(src.iterdir()):
            zf.write(p, "gzip/" + p.name)
        zf.writestr("gzip/emnist-digits-train-images-idx3-ubyte.gz", b"not wanted")
    zip_bytes = buf.getvalue()
    spec = REGISTRY["emnist-letters"]
    arc = dataclasses.replace(spec.archive, md5=hashlib.md5(zip_bytes).hexdigest())
    monkeypatch.setitem(REGISTRY, "emnist-letters", dataclasses.replace(spec, archive=arc))
    serve(monkeypatch, {arc.urls[0].rsplit("/", 1)[1]: zip_bytes})
    ds = load_dataset("emnist-letters", split="test", download=True, progress=False)
    np.testing.assert_array_equal(ds.images, stored.transpose(0, 2, 1))
    assert listing(cache_dir("emnist-letters")) == sorted(p.name for p in src.iterdir())

    # a zip with the wrong md5 is discarded and nothing is extracted
    shutil.rmtree(cache_dir("emnist-letters"))
    monkeypatch.setitem(REGISTRY, "emnist-letters",
                        dataclasses.replace(spec, archive=dataclasses.replace(arc, md5="0" * 32)))
    with pytest.raises(DataNotFound, match="md5 mismatch"):
        load_dataset("emnist-letters", download=True, progress=False)
    assert listing(cache_dir("emnist-letters")) == []


# --------------------------------------------------------------------------- the shared real files

def _shared_md5s():
    readme = (SHARED / "README.md").read_text()
    return dict(re.findall(r"\|\s*(?:mnist/)?(\S+\.gz)\s*\|[^\n]*?\b([0-9a-f]{32})\b", readme))


@pytest.fixture
def shared():
    if not (SHARED / "mnist").is_dir():
        pytest.skip("../shared/data not present")
    return SHARED / "mnist"


def test_shared_test_files_read_and_match_published_md5(shared):
    images = read_idx(shared / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.max() == 9
    published = _shared_md5s()
    table = {fs.name: fs for pair in REGISTRY["mnist"].splits.values() for fs in pair}
    for name, fs in table.items():
        assert published[name] == fs.md5[0], name  # the registry matches the README
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert md5(shared / name) == published[name] == table[name].md5[0]
    ds = load_dataset("mnist", split="test", data_dir=shared)
    assert len(ds) == 10000 and ds.labels[0] == 7 and not ds.is_bundled


def test_shared_sample_equals_bundled(shared):
    for fs in REGISTRY["mnist-bundled"].splits["train"]:
        assert (shared / fs.name).read_bytes() == (BUNDLED_DIR / fs.name).read_bytes()
