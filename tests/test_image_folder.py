"""Tests for scratchgan.data.image_folder (your own pictures as a Dataset, and its cache) and the
shapes generator. Every expected image is computed directly with Pillow, independently of the
code under test: convert, centre crop, bilinear resize."""
import json
import os
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

import scratchgan.data.folder as folder_mod
from scratchgan.data import DataError, image_folder, make_shapes_folder
from scratchgan.data.shapes import SHAPES

MODE = {1: "L", 3: "RGB"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own $XDG_CACHE_HOME."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "scratchgan" / "folders"


def noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path, array_or_image, fmt=None, **kw):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    im.save(path, format=fmt, **kw)
    return path


def pillow_expected(im, channels, size):
    """The reference: Pillow's convert, centre crop to a square, bilinear resize -> (C, size, size)."""
    im = im.convert(MODE[channels])
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if s != size:
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(im)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def from_file(path, channels, size):
    with Image.open(path) as im:
        im.load()
        return pillow_expected(im, channels, size)


def cache_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class OpenCounter:
    """Counts Pillow's Image.open and numpy's np.load calls (the two decoders)."""

    def __init__(self, monkeypatch):
        self.n = 0
        real_open, real_load = Image.open, np.load

        def counted_open(*a, **k):
            self.n += 1
            return real_open(*a, **k)

        def counted_load(*a, **k):
            self.n += 1
            return real_load(*a, **k)

        monkeypatch.setattr(Image, "open", counted_open)
        monkeypatch.setattr(np, "load", counted_load)


# --------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "1"])
def test_png_modes_match_pillow(tmp_path, mode, channels):
    rgb = noise((40, 40, 3), seed=len(mode))
    im = Image.fromarray(rgb).convert(mode)
    p = save(tmp_path / "imgs" / "a.png", im)
    ds = image_folder(tmp_path / "imgs", channels=channels, image_size=28, cache=False)
    assert ds.images.shape == (1, channels, 28, 28) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.images[0], from_file(p, channels, 28))
    assert ds.image_shape == (channels, 28, 28)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_any_suffix_case(tmp_path, channels):
    paths = [save(tmp_path / "imgs" / f"{i}.{ext}", noise((70, 50, 3), i), "JPEG", quality=90)
             for i, ext in enumerate(["jpg", "JPG", "jpeg", "JPEG", "Jpg"])]
    paths.append(save(tmp_path / "imgs" / "5.PNG", noise((30, 30, 3), 5)))
    ds = image_folder(tmp_path / "imgs", channels=channels, image_size=32, cache=False)
    assert len(ds) == 6
    for k, p in enumerate(sorted(paths, key=lambda q: q.name)):
        np.testing.assert_array_equal(ds.images[k], from_file(p, channels, 32))


def test_jpeg_exif_orientation_is_applied(tmp_path):
    a = noise((20, 40, 3))
    exif = Image.Exif()
    exif[0x0112] = 6     # "rotate 90 CW to view"
    p = save(tmp_path / "imgs" / "photo.jpg", Image.fromarray(a), "JPEG", exif=exif, quality=95)
    ds = image_folder(tmp_path / "imgs", channels=3, image_size=28, cache=False)
    with Image.open(p) as im:
        want = pillow_expected(ImageOps.exif_transpose(im), 3, 28)
        plain = pillow_expected(im, 3, 28)
    np.testing.assert_array_equal(ds.images[0], want)
    assert not np.array_equal(want, plain)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    a = (np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 83)
    save(tmp_path / "imgs" / "deep.png", Image.fromarray(a))
    ds = image_folder(tmp_path / "imgs", channels=1, image_size=28, cache=False)
    np.testing.assert_array_equal(ds.images[0, 0], (a >> 8).astype(np.uint8))


def test_centre_crop_and_resize(tmp_path):
    wide = np.zeros((30, 50), np.uint8)
    wide[:, 10] = wide[:, 39] = 255        # the first and last columns the crop keeps
    wide[:, 9] = wide[:, 40] = 100         # just outside it
    save(tmp_path / "w" / "wide.png", wide)
    ds = image_folder(tmp_path / "w", channels=1, image_size=32, cache=False)
    crop = wide[:, 10:40]
    want = np.asarray(Image.fromarray(crop).resize((32, 32), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(ds.images[0, 0], want)
    assert ds.images[0, 0, :, 0].min() > 128 and ds.images[0, 0, :, -1].min() > 128
    # an odd difference: the extra pixel goes to the bottom; no resize when the crop has the size
    tall = noise((29, 28), 3)
    save(tmp_path / "t" / "tall.png", tall)
    np.testing.assert_array_equal(image_folder(tmp_path / "t", cache=False).images[0, 0], tall[0:28])


@given(h=st.integers(1, 70), w=st.integers(1, 70), c_in=st.sampled_from([None, 1, 3, 4]),
       stack=st.integers(0, 3), channels=st.sampled_from([1, 3]), size=st.sampled_from([28, 32, 64]),
       as_float=st.sampled_from([None, np.float32, np.float64]), npz=st.booleans(),
       seed=st.integers(0, 2**16))
def test_arrays_every_accepted_shape_and_dtype(h, w, c_in, stack, channels, size, as_float, npz, seed):
    """(H, W), (H, W, C), (N, H, W), (N, H, W, C): channels last, uint8 or float in [0, 1]."""
    if c_in is None and stack == 0 and h == 1:
        h = 2   # (1, W) ...
    if c_in is None and stack and w in (1, 3, 4):
        w = 5   # (N, H, W) with W in 1, 3, 4 reads as one channels-last image: not this case
    n = max(stack, 1)
    shape = (n, h, w) + ((c_in,) if c_in else ())
    u8 = noise(shape, seed)
    stored = u8[0] if stack == 0 else u8
    if as_float is not None:
        stored = (stored / 255.0).astype(as_float)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "arrays"
        folder.mkdir()
        if npz:
            np.savez_compressed(folder / "x.npz", stored)
        else:
            np.save(folder / "x.npy", stored)
        ds = image_folder(folder, channels=channels, image_size=size, cache=False)
    assert ds.images.shape == (n, channels, size, size)
    for k in range(n):
        a = u8[k]
        mode = {None: "L", 1: "L", 3: "RGB", 4: "RGBA"}[c_in]
        im = Image.fromarray(a[..., 0] if c_in == 1 else a, mode)
        np.testing.assert_array_equal(ds.images[k], pillow_expected(im, channels, size))


def test_npz_members_in_stored_order_and_npy_stack(tmp_path):
    a, b, c = noise((28, 28), 1), noise((2, 28, 28), 2), noise((28, 28, 3), 3)
    np.savez(tmp_path / "pack.npz", zz=a, aa=b, mm=c)
    ds = image_folder(tmp_path, channels=1, image_size=28, cache=False)
    grey_c = pillow_expected(Image.fromarray(c), 1, 28)[0]
    for k, want in enumerate([a, b[0], b[1], grey_c]):
        np.testing.assert_array_equal(ds.images[k, 0], want)


@pytest.mark.parametrize("side", [28, 40])
def test_a_stack_read_in_chunks(tmp_path, monkeypatch, side):
    monkeypatch.setattr(folder_mod, "_CHUNK", 3)
    stack = noise((8, side, side, 3), 4)
    np.save(tmp_path / "s.npy", (stack / 255.0).astype(np.float32))
    ds = image_folder(tmp_path, channels=1, image_size=28, cache=False)
    assert ds.images.shape == (8, 1, 28, 28)
    for k in range(8):
        np.testing.assert_array_equal(ds.images[k], pillow_expected(Image.fromarray(stack[k]), 1, 28))


# --------------------------------------------------------------------------- order and labels

def test_labels_from_subfolders_sorted_like_torchvision(tmp_path):
    root = tmp_path / "pets"
    for cls, n in (("dog", 2), ("Cat", 1), ("ant", 3)):
        for i in range(n):
            save(root / cls / f"{i}.png", noise((8, 8, 3), hash(cls) % 1000 + i))
    save(root / "dog" / "puppies" / "deep.png", noise((8, 8, 3), 99))   # deeper: still a dog
    (root / "notes.txt").write_text("not an image")                      # ignored
    ds = image_folder(root, channels=3, image_size=28, cache=False)
    assert ds.classes == ["Cat", "ant", "dog"]            # sorted by name, as torchvision does
    assert ds.labels.tolist() == [0, 1, 1, 1, 2, 2, 2] and ds.labels.dtype == np.int64
    assert ds.name == f"folder:{root}" and ds.source == str(root) and ds.note == ""
    assert ds.class_index("dog") == 2 and len(ds.filter_classes(["ant"])) == 3
    none = image_folder(root, channels=3, image_size=28, labels="none", cache=False)
    assert none.classes == ["image"] and none.labels.tolist() == [0] * 7
    np.testing.assert_array_equal(none.images, ds.images)


def test_unlabelled_when_images_lie_at_the_top(tmp_path):
    save(tmp_path / "a.png", noise((8, 8)))
    ds = image_folder(tmp_path, cache=False)
    assert ds.classes == ["image"] and ds.labels.tolist() == [0] and ds.note == ""
    save(tmp_path / "sub" / "b.png", noise((8, 8), 1))
    mixed = image_folder(tmp_path, cache=False)
    assert mixed.classes == ["image"] and mixed.labels.tolist() == [0, 0]
    assert "unlabelled" in mixed.note and "a.png" in mixed.note


def test_order_is_sorted_and_deterministic(tmp_path):
    names = ["b/10.png", "b/2.png", "a/z.png", "a/y/x.png", "a-b/0.png", "B/1.png"]
    for i, name in enumerate(names):
        save(tmp_path / name, np.full((8, 8), i * 10, np.uint8))
    save(tmp_path / "a" / ".hidden.png", np.full((8, 8), 250, np.uint8))   # hidden: skipped
    save(tmp_path / ".git" / "c.png", np.full((8, 8), 250, np.uint8))
    ds = image_folder(tmp_path, image_size=28, cache=False)
    order = sorted(names, key=lambda n: n.split("/"))   # by path component, codepoint order
    assert order == ["B/1.png", "a/y/x.png", "a/z.png", "a-b/0.png", "b/10.png", "b/2.png"]
    assert ds.images[:, 0, 0, 0].tolist() == [names.index(n) * 10 for n in order]
    assert ds.classes == ["B", "a", "a-b", "b"] and ds.labels.tolist() == [0, 1, 1, 2, 3, 3]
    again = image_folder(tmp_path, image_size=28, cache=False)
    assert np.array_equal(again.images, ds.images) and np.array_equal(again.labels, ds.labels)


# --------------------------------------------------------------------------- the cache

def shapes(tmp_path, n=12, size=32):
    return make_shapes_folder(tmp_path / "shapes", n=n, size=size, seed=1)


def test_second_load_reads_the_cache_without_decoding(tmp_path, private_cache, monkeypatch):
    root = shapes(tmp_path)
    np.save(root / "disc" / "extra.npy", noise((2, 32, 32, 3)))
    first = image_folder(root, channels=3, image_size=32)
    assert not first.from_cache and Path(first.cache_file).parent == private_cache
    assert cache_files(private_cache) == sorted([Path(first.cache_file).name,
                                                 Path(first.cache_file).with_suffix(".json").name])
    counter = OpenCounter(monkeypatch)
    second = image_folder(root, channels=3, image_size=32)
    assert counter.n == 0 and second.from_cache and second.cache_file == first.cache_file
    assert np.array_equal(second.images, first.images) and np.array_equal(second.labels, first.labels)
    assert second.classes == first.classes == ["disc", "square", "triangle"] and len(second) == 14
    meta = json.loads(Path(first.cache_file).with_suffix(".json").read_text())
    assert meta["shape"] == [14, 3, 32, 32] and meta["classes"] == first.classes
    assert meta["channels"] == 3 and meta["image_size"] == 32 and meta["files"] == 13
    monkeypatch.undo()
    assert image_folder(root, channels=3, image_size=32, cache=False).images.tobytes() == first.images.tobytes()


def _modify(root, how):
    pngs = sorted(root.rglob("*.png"))
    if how == "add":
        save(root / "disc" / "new.png", noise((32, 32, 3)))
    elif how == "remove":
        pngs[0].unlink()
    elif how == "touch":
        st = pngs[0].stat()
        os.utime(pngs[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif how == "modify":   # same size, same mtime: only the content differs ... and the key sees mtime
        data = bytearray(pngs[0].read_bytes())
        st = pngs[0].stat()
        pngs[0].write_bytes(bytes(data) + b"\0")
        os.utime(pngs[0], ns=(st.st_atime_ns, st.st_mtime_ns))   # size changed, mtime restored
    elif how == "rename":
        pngs[0].rename(pngs[0].with_name("renamed.png"))


@pytest.mark.parametrize("how", ["add", "remove", "touch", "modify", "rename"])
def test_any_file_change_rebuilds_the_cache(tmp_path, private_cache, how):
    root = shapes(tmp_path)
    first = image_folder(root, channels=3, image_size=32)
    _modify(root, how)
    second = image_folder(root, channels=3, image_size=32)
    assert not second.from_cache and second.cache_file != first.cache_file
    fresh = image_folder(root, channels=3, image_size=32, cache=False)
    assert np.array_equal(second.images, fresh.images) and np.array_equal(second.labels, fresh.labels)
    assert len(second) == {"add": 13, "remove": 11}.get(how, 12)
    # the stale cache of the same folder and settings is gone; nothing else is left behind
    assert cache_files(private_cache) == sorted([Path(second.cache_file).name,
                                                 Path(second.cache_file).with_suffix(".json").name])
    assert image_folder(root, channels=3, image_size=32).from_cache


@pytest.mark.parametrize("change", [dict(channels=1), dict(image_size=28), dict(labels="none")])
def test_other_settings_have_their_own_cache(tmp_path, private_cache, change):
    root = shapes(tmp_path)
    base = dict(channels=3, image_size=32, labels="auto")
    a = image_folder(root, **base)
    b = image_folder(root, **{**base, **change})
    assert not b.from_cache and b.cache_file != a.cache_file
    assert image_folder(root, **base).from_cache and image_folder(root, **{**base, **change}).from_cache
    assert len(cache_files(private_cache)) == 4


@pytest.mark.parametrize("damage", ["flip", "truncate", "json", "json-sha", "delete-json"])
def test_damaged_cache_is_rebuilt_never_trusted(tmp_path, private_cache, damage):
    root = shapes(tmp_path)
    first = image_folder(root, channels=3, image_size=32)
    npy, meta = Path(first.cache_file), Path(first.cache_file).with_suffix(".json")
    if damage == "flip":
        data = bytearray(npy.read_bytes())
        data[-5] ^= 0xFF
        npy.write_bytes(bytes(data))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "json":
        meta.write_text("{not json")
    elif damage == "json-sha":
        m = json.loads(meta.read_text())
        m["sha256"] = "0" * 64
        meta.write_text(json.dumps(m))
    else:
        meta.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = image_folder(root, channels=3, image_size=32)
    assert not again.from_cache and again.cache_file == first.cache_file
    assert np.array_equal(again.images, first.images)
    said = [str(w.message) for w in caught]
    if damage == "delete-json":
        assert said == []        # a missing record is a plain miss
    else:
        assert len(said) == 1 and "damaged" in said[0] and npy.name in said[0]
    assert image_folder(root, channels=3, image_size=32).from_cache   # repaired


def test_a_pickled_cache_is_refused_not_unpickled(tmp_path, private_cache):
    root = shapes(tmp_path)
    first = image_folder(root, channels=3, image_size=32)
    npy = Path(first.cache_file)
    np.save(npy, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.warns(UserWarning, match="damaged"):
        again = image_folder(root, channels=3, image_size=32)
    assert np.array_equal(again.images, first.images)


def test_cache_in_a_given_folder_and_atomic_leftovers(tmp_path, private_cache):
    root = shapes(tmp_path)
    mine = tmp_path / "my-cache"
    ds = image_folder(root, channels=3, image_size=32, cache=mine)
    assert Path(ds.cache_file).parent == mine and not private_cache.exists()
    assert all(not n.startswith(".") for n in cache_files(mine))   # no temporary files left
    assert image_folder(root, channels=3, image_size=32, cache=mine).from_cache


def test_unwritable_cache_falls_back_to_decoding(tmp_path, monkeypatch):
    root = shapes(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="cannot write the image cache"):
        ds = image_folder(root, channels=3, image_size=32, cache=blocker / "sub")
    assert ds.cache_file == "" and not ds.from_cache and len(ds) == 12


def test_building_the_cache_holds_one_copy_of_the_images(tmp_path):
    """Decoded into a memory-mapped file one by one: the heap peak is the returned array plus
    small change, not a list of every image plus a stacked copy (2x)."""
    root = make_shapes_folder(tmp_path / "big", n=300, size=64, seed=0)
    decoded = 300 * 3 * 64 * 64
    image_folder(root, channels=1, image_size=28, cache=False)   # imports done before measuring
    tracemalloc.start()
    try:
        ds = image_folder(root, channels=3, image_size=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ds.images.nbytes == decoded and not ds.from_cache
    assert peak < 1.3 * decoded, f"peak {peak} bytes for {decoded} bytes of images"


def test_pages_released_while_building_keep_their_data(tmp_path, monkeypatch):
    """The cache's pages are written back and dropped from the process every _RELEASE_BYTES:
    with a tiny threshold every few images go through that path, and the data survives."""
    root = shapes(tmp_path, n=40, size=64)
    calls = []
    real = folder_mod._release_pages

    def spy(out, upto, state):
        before = state["done"]
        real(out, upto, state)
        calls.append(state["done"] > before)

    monkeypatch.setattr(folder_mod, "_RELEASE_BYTES", 3 * 64 * 64 * 3)
    monkeypatch.setattr(folder_mod, "_release_pages", spy)
    built = image_folder(root, channels=3, image_size=64)
    assert sum(calls) >= 10
    np.testing.assert_array_equal(built.images, image_folder(root, channels=3, image_size=64, cache=False).images)
    assert image_folder(root, channels=3, image_size=64).from_cache


# --------------------------------------------------------------------------- bad files

def _bad_folder(tmp_path):
    root = tmp_path / "mixed"
    good = [save(root / "a" / "good1.png", noise((16, 16, 3), 1)),
            save(root / "b" / "good2.jpg", noise((16, 16, 3), 2), "JPEG")]
    (root / "a" / "text.png").write_text("this is not a PNG")
    full = (root / "a" / "good1.png").read_bytes()
    (root / "b" / "cut.png").write_bytes(full[: len(full) // 2])
    np.save(root / "a" / "int64.npy", np.zeros((8, 8), np.int64))
    np.save(root / "b" / "chw.npy", np.zeros((2, 3, 8, 8), np.uint8))
    np.save(root / "b" / "nan.npy", np.full((8, 8), np.nan, np.float32))
    np.save(root / "b" / "range.npy", np.full((8, 8), 2.0, np.float32))
    np.save(root / "a" / "objects.npy", np.array([None, {"x": 1}], dtype=object), allow_pickle=True)
    (root / "b" / "zip.npz").write_bytes(b"PK\x03\x04 broken")
    return root, good


BAD = {"a/text.png": "not a PNG or JPEG image", "b/cut.png": "cannot decode the image: ",
       "a/int64.npy": "dtype int64 (expected uint8, or float in [0, 1])",
       "b/chw.npy": "channels first? transpose to (N, H, W, C)",
       "b/nan.npy": "NaN or inf", "b/range.npy": "must lie in [0, 1], found 2..2",
       "a/objects.npy": "holds Python objects, which scratchgan never unpickles", "b/zip.npz": "not a readable array file"}


def test_bad_files_are_refused_in_one_error_naming_each(tmp_path, private_cache):
    root, _ = _bad_folder(tmp_path)
    with pytest.raises(DataError) as err:
        image_folder(root, channels=3, image_size=28)
    msg = str(err.value)
    assert msg.startswith(f"{root}: 8 file(s) could not be read") and "skip_bad=True" in msg
    for rel, why in BAD.items():
        line = next(l for l in msg.splitlines() if l.strip().startswith(rel + ":"))
        assert why in line, (rel, line)
    assert "good1" not in msg and cache_files(private_cache) == []


def test_skip_bad_skips_and_counts(tmp_path, private_cache):
    root, good = _bad_folder(tmp_path)
    ds = image_folder(root, channels=3, image_size=28, skip_bad=True)
    assert len(ds) == 2 and ds.classes == ["a", "b"] and ds.labels.tolist() == [0, 1]
    for k, p in enumerate(good):
        np.testing.assert_array_equal(ds.images[k], from_file(p, 3, 28))
    assert ds.note.startswith("skipped 8 unreadable file(s): ") and "b/nan.npy" in ds.note
    hit = image_folder(root, channels=3, image_size=28, skip_bad=True)
    assert hit.from_cache and hit.note == ds.note and np.array_equal(hit.images, ds.images)
    # the cache remembers the bad files: without skip_bad they are refused again
    with pytest.raises(DataError, match=r"8 file\(s\) could not be read"):
        image_folder(root, channels=3, image_size=28)


def test_more_than_ten_bad_files_are_counted(tmp_path):
    for i in range(13):
        (tmp_path / f"bad{i:02d}.png").write_bytes(b"nope")
    save(tmp_path / "ok.png", noise((8, 8)))
    with pytest.raises(DataError) as err:
        image_folder(tmp_path, cache=False)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{tmp_path}: 13 file(s)")
    assert [l.split(":")[0].strip() for l in lines[1:11]] == [f"bad{i:02d}.png" for i in range(10)]
    assert lines[11].strip() == "... and 3 more" and len(lines) == 12
    ds = image_folder(tmp_path, cache=False, skip_bad=True)
    assert len(ds) == 1 and ds.note.endswith("; and 3 more")


def test_a_stack_cut_short_by_a_bad_array_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_mod, "_CHUNK", 1)   # b.npy's first image is written before its NaN is seen
    np.save(tmp_path / "a.npy", noise((3, 28, 28)))
    bad = np.zeros((2, 28, 28), np.float32)
    bad[1, 0, 0] = np.nan
    np.save(tmp_path / "b.npy", bad)          # its first image decodes, then the NaN: none kept
    np.save(tmp_path / "c.npy", noise((1, 28, 28), 1))
    for cache in (False, True):
        ds = image_folder(tmp_path, skip_bad=True, cache=cache)
        assert len(ds) == 4
        np.testing.assert_array_equal(ds.images[:3, 0], noise((3, 28, 28)))
        np.testing.assert_array_equal(ds.images[3, 0], noise((1, 28, 28), 1)[0])


@pytest.mark.parametrize("setup, pattern", [
    (lambda p: None, "no images found"),
    (lambda p: (p / "readme.txt").write_text("x"), r"1 other file\(s\) ignored: readme.txt"),
    (lambda p: (p / "photo.gif").write_bytes(b"GIF89a"), r"\.png, \.jpg, \.jpeg, \.npy, \.npz"),
])
def test_empty_folder(tmp_path, setup, pattern):
    root = tmp_path / "empty"
    root.mkdir()
    setup(root)
    with pytest.raises(DataError, match=pattern) as err:
        image_folder(root)
    assert str(root) in str(err.value)


def test_only_bad_files_with_skip_bad(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"1 file\(s\) found, none readable"):
        image_folder(tmp_path, skip_bad=True)


def test_bad_arguments(tmp_path):
    save(tmp_path / "a.png", noise((8, 8)))
    with pytest.raises(DataError, match="no such folder"):
        image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="not a folder"):
        image_folder(tmp_path / "a.png")
    for kw, pattern in ((dict(channels=2), "channels must be 1 .* or 3 .*, got 2"),
                        (dict(channels=True), "got True"),
                        (dict(image_size=48), "image_size must be one of 28, 32, 64, got 48"),
                        (dict(labels="folders"), "labels must be 'auto' .* or 'none', got 'folders'"),
                        (dict(skip_bad="yes"), "skip_bad must be True or False")):
        with pytest.raises(ValueError, match=pattern):
            image_folder(tmp_path, **kw)
    with pytest.raises(ValueError, match="path must be a folder name"):
        image_folder("")


# --------------------------------------------------------------------------- as_float

@pytest.mark.parametrize("channels", [1, 3])
def test_as_float_of_a_folder(tmp_path, channels):
    root = shapes(tmp_path, n=6)
    ds = image_folder(root, channels=channels, image_size=32, cache=False)
    for scale, lo, hi, ref in (("tanh", -1, 1, ds.images / 127.5 - 1), ("sigmoid", 0, 1, ds.images / 255.0)):
        x = ds.as_float(scale)
        assert x.shape == (6, channels, 32, 32) and x.dtype == np.float32
        assert lo <= x.min() < x.max() <= hi
        np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6)
    assert ds.as_float(dtype=np.float64).dtype == np.float64


# --------------------------------------------------------------------------- the shapes generator

def test_shapes_generator_is_deterministic_with_class_folders(tmp_path):
    a = make_shapes_folder(tmp_path / "a", n=9, size=32, seed=3)
    b = make_shapes_folder(tmp_path / "b", n=9, size=32, seed=3)
    c = make_shapes_folder(tmp_path / "c", n=9, size=32, seed=4)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.png"))
    assert files == ["disc/0.png", "disc/3.png", "disc/6.png", "square/1.png", "square/4.png",
                     "square/7.png", "triangle/2.png", "triangle/5.png", "triangle/8.png"]
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert sum((a / f).read_bytes() != (c / f).read_bytes() for f in files) == 9
    with Image.open(a / "disc" / "0.png") as im:
        assert im.mode == "RGB" and im.size == (32, 32)
    ds = image_folder(a, channels=3, image_size=32, cache=False)
    assert ds.classes == ["disc", "square", "triangle"] and np.bincount(ds.labels).tolist() == [3, 3, 3]
    # a larger set starts with the same images
    d = make_shapes_folder(tmp_path / "d", n=12, size=32, seed=3, classes=("disc", "square", "triangle"))
    assert (d / "disc" / "00.png").read_bytes() == (a / "disc" / "0.png").read_bytes()


def test_shapes_look_like_their_class(tmp_path):
    """A disc covers about pi/4 of its bounding box, a square (any rotation) more than half of it,
    a triangle less; the shape's colour differs from the background."""
    root = make_shapes_folder(tmp_path / "s", n=60, size=64, seed=0, classes=SHAPES)
    ds = image_folder(root, channels=3, image_size=64, cache=False)
    img = ds.images.astype(np.int32)
    corner = img[:, :, :1, :1]                                   # the background colour
    mask = np.abs(img - corner).sum(axis=1) > 60                 # (N, H, W): the shape's pixels
    assert mask.any(axis=(1, 2)).all() and (~mask).any(axis=(1, 2)).all()
    fill = mask.sum(axis=(1, 2)) / (64 * 64)
    assert ((fill > 0.02) & (fill < 0.7)).all()
    by_class = {c: fill[ds.labels == i].mean() for i, c in enumerate(ds.classes)}
    assert set(by_class) == set(SHAPES) and by_class["ring"] < by_class["disc"]


def test_shapes_generator_refuses_bad_arguments(tmp_path):
    for kw, pattern in ((dict(n=0), "n must be an integer >= 1, got 0"),
                        (dict(size=4), "size must be an integer >= 8"),
                        (dict(seed=-1), "seed must be"),
                        (dict(classes=("disc", "hexagon")), "classes must be distinct names"),
                        (dict(classes="disc"), "classes must be"),
                        (dict(classes=("disc", "disc")), "distinct")):
        with pytest.raises(ValueError, match=pattern):
            make_shapes_folder(tmp_path / "x", **kw)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        make_shapes_folder(tmp_path / "full", n=3)
    assert sorted(os.listdir(tmp_path / "full")) == ["mine.txt"]


# --------------------------------------------------------------------------- the CLI on a folder
def test_cli_on_a_folder_skip_bad_hint_one_image_and_inpaint_at_the_files_own_size(tmp_path, capsys):
    """train says --skip-bad (not the Python argument) and "1 image"; inpaint --images takes a file
    of the folder's own size (48x48), decoded as training decoded it."""
    from scratchgan import cli
    from scratchgan.data.folder import read_picture
    root = tmp_path / "pics"
    one = save(root / "only.png", noise((48, 48), 5))
    (root / "broken.png").write_text("not a PNG")
    train = ["train", "--dataset", f"folder:{root}", "--channels", "1", "--image-size", "28", "--batch-size", "1",
             "--steps", "1", "--g-hidden", "8", "--d-hidden", "8", "--no-minibatch-std", "--out", str(tmp_path / "run")]
    assert cli.main(train) == 2
    err = capsys.readouterr().err
    assert "(pass --skip-bad to skip them)" in err and "skip_bad=True" not in err
    (root / "broken.png").unlink()
    assert cli.main(train) == 0
    assert "(train), 1 image from " in capsys.readouterr().out             # was "1 images"
    assert cli.main(["inpaint", str(tmp_path / "run"), "--images", str(one), "--steps", "2", "--restarts", "1",
                     "--out", str(tmp_path / "inp.png")]) == 0
    out = capsys.readouterr().out
    assert "(1 image from" in out
    decoded = cli.inpaint._read_images(one, channels=1, size=28)
    np.testing.assert_array_equal(decoded, read_picture(one, 1, 28) / np.float32(255))
    np.testing.assert_array_equal(read_picture(one, 1, 28)[0], image_folder(root, channels=1, image_size=28).images[0])
