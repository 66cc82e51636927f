"""Image folders: your own pictures (PNG, JPEG, .npy/.npz arrays) as a Dataset, decoded once and cached.

`image_folder(path, channels, image_size)` reads every image under `path` in sorted order,
converts it to grey ("L") or RGB with Pillow, centre-crops it to a square and resizes it to
`image_size` with Pillow's antialiased bilinear filter, and returns a `Dataset` whose images are
uint8 (N, C, H, W). Classes come from the first-level subfolders, as torchvision's `ImageFolder`
names them. The decoded array is kept as a .npy in `cache_dir("folders")`, named by a hash of
every file's relative path, size and mtime, so the second load of an unchanged folder reads one
file instead of decoding thousands. docs/data.md describes the conventions.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files.atomic import atomic_write_bytes, default_file_mode
from ..files.safeio import (MAX_IMAGE_PIXELS, PICTURE_FORMATS, UnsafeFileError, npy_header, npz_members, open_image,
                      open_regular, read_bytes)
from .datasets import Dataset, cache_dir
from .idx import DataError

__all__ = ["image_folder", "read_picture", "BadFilesError", "IMAGE_SUFFIXES", "ARRAY_SUFFIXES", "IMAGE_SIZES",
           "CACHE_VERSION"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")   # any case
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SIZES = (28, 32, 64)
CHANNELS = (1, 3)
LABEL_MODES = ("auto", "none")
CACHE_VERSION = 2          # part of the cache key: bump when decoding changes (2: PNG/JPEG by content only)
CACHE_FORMAT = "scratchgan-folder-cache"
MAX_LISTED = 10            # bad files named in a message; the rest are counted
_CHUNK = 1024              # at most this many images of an array stack converted at a time ...
_CHUNK_BYTES = 16 << 20    # ... and at most about this many bytes of them
_RELEASE_BYTES = 16 << 20  # written cache pages dropped from this process every this many bytes
_HASH_CHUNK = 8 << 20
_MODE = {1: "L", 3: "RGB"}


class _BadFile(Exception):
    """One file that cannot be read as images; the message says why."""


@dataclass
class _Entry:
    rel: str              # path relative to the folder, with "/"
    path: Path
    size: int
    mtime_ns: int
    is_array: bool
    label: int = 0
    count: int = 1        # images the file holds (arrays: from their headers)
    members: tuple = ()   # arrays: ((member name or None, shape, dtype), ...)


# --------------------------------------------------------------------------- finding the files

def _inside(path: str, real_root: str) -> bool:
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _scan(root: Path):
    """-> (entries sorted by path, bad [(rel, why)], ignored [rel], links out [rel]); hidden names are
    skipped. A link is followed only when it resolves inside the folder: one that leads out of it
    (``ln -s .. PICS/up``) is skipped and listed, so the data is never pulled from elsewhere."""
    entries, bad, ignored, links_out = [], [], [], []
    real_root = os.path.realpath(root)
    stack, seen = [(root, ())], set()
    while stack:
        folder, parts = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:     # a link back up the tree
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                listed = list(it)
        except OSError as exc:
            bad.append(("/".join(parts) or ".", f"cannot list the folder: {exc.strerror or exc}"))
            continue
        for e in listed:
            if e.name.startswith("."):
                continue
            sub = parts + (e.name,)
            rel = "/".join(sub)
            try:
                if e.is_symlink() and not _inside(e.path, real_root):
                    links_out.append(rel)
                    continue
                if e.is_dir():
                    stack.append((Path(e.path), sub))
                    continue
                suffix = os.path.splitext(e.name)[1].lower()
                if suffix not in IMAGE_SUFFIXES + ARRAY_SUFFIXES:
                    ignored.append(rel)
                elif not e.is_file():
                    bad.append((rel, "not a regular file (a broken link?)"))
                else:
                    s = e.stat()
                    entries.append(_Entry(rel, Path(e.path), s.st_size, s.st_mtime_ns, suffix in ARRAY_SUFFIXES))
            except OSError as exc:
                bad.append((rel, f"cannot read: {exc.strerror or exc}"))
    entries.sort(key=lambda en: en.rel.split("/"))
    return entries, bad, sorted(ignored), sorted(links_out)


# --------------------------------------------------------------------------- arrays

def _check_array(shape, dtype) -> int:
    """Images in an array of this header (channels-last), or _BadFile saying what was expected."""
    shape, dtype = tuple(shape), np.dtype(dtype)
    if not (dtype == np.uint8 or dtype.kind == "f"):
        raise _BadFile(f"dtype {dtype} (expected uint8, or float in [0, 1])")
    expected = "(H, W), (H, W, C), (N, H, W) or (N, H, W, C), channels last with C = 1, 3 or 4"
    if len(shape) == 4 and shape[-1] not in (1, 3, 4):
        hint = " (channels first? transpose to (N, H, W, C))" if shape[1] in (1, 3, 4) else ""
        raise _BadFile(f"shape {shape}: expected {expected}{hint}")
    if len(shape) not in (2, 3, 4):
        raise _BadFile(f"shape {shape}: expected {expected}")
    if 0 in shape:
        raise _BadFile(f"shape {shape} holds no images")
    return shape[0] if len(shape) == 4 or (len(shape) == 3 and shape[-1] not in (1, 3, 4)) else 1


def _as_stack(a: np.ndarray) -> np.ndarray:
    """(N, H, W, C) view of an accepted array."""
    if a.ndim == 2:
        return a[None, :, :, None]
    if a.ndim == 3:
        return a[None] if a.shape[-1] in (1, 3, 4) else a[..., None]
    return a


def _plan_array(entry: _Entry) -> None:
    """Read the headers of a .npy/.npz (not the data): sets entry.members and entry.count."""
    members = []
    try:
        with open_regular(entry.path) as raw:
            if entry.path.suffix.lower() == ".npy":   # the header must account for the file's bytes exactly
                shape, _, dtype = npy_header(raw, available=os.fstat(raw.fileno()).st_size)
                members.append((None, shape, dtype))
            else:
                with zipfile.ZipFile(raw) as zf:
                    members.extend(npz_members(zf))
    except _BadFile:
        raise
    except UnsafeFileError as exc:
        raise _BadFile(exc.reason) from None
    except Exception as exc:   # numpy's and zipfile's parsers, on an untrusted file
        raise _BadFile(f"not a readable array file ({type(exc).__name__}: {exc})") from None
    if not members:
        raise _BadFile("the .npz archive holds no arrays")
    count = 0
    for name, shape, dtype in members:
        try:
            count += _check_array(shape, dtype)
        except _BadFile as exc:
            raise _BadFile(f"{name}: {exc}" if name else str(exc)) from None
    entry.members, entry.count = tuple(members), count


def _rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint8 with Pillow's own integer formula for convert("L") (ITU-R 601-2)."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _array_chunks(entry: _Entry, channels: int, size: int):
    """Yield (k, C, size, size) uint8 blocks from an array file."""
    from PIL import Image
    if entry.members[0][0] is None:
        try:
            arrays = [(None, np.load(entry.path, mmap_mode="r", allow_pickle=False))]
        except Exception as exc:
            raise _BadFile(f"not a readable .npy ({type(exc).__name__}: {exc})") from None
        zf = None
    else:
        try:
            zf = np.load(entry.path, allow_pickle=False)
        except Exception as exc:
            raise _BadFile(f"not a readable .npz ({type(exc).__name__}: {exc})") from None
        arrays = ((name, None) for name, _, _ in entry.members)
    try:
        for name, a in arrays:
            where = f"{name}: " if name else ""
            if a is None:
                try:
                    a = zf[name]     # a .npz member is read whole
                except Exception as exc:
                    raise _BadFile(f"{where}cannot read ({type(exc).__name__}: {exc})") from None
            try:
                _check_array(a.shape, a.dtype)
            except _BadFile as exc:
                raise _BadFile(f"{where}{exc}") from None
            stack = _as_stack(a)
            step = max(1, min(_CHUNK, _CHUNK_BYTES // (stack[0].nbytes * (4 // stack.itemsize or 1))))
            for start in range(0, stack.shape[0], step):
                try:
                    block = np.asarray(stack[start:start + step])
                except Exception as exc:   # a truncated memory-mapped file
                    raise _BadFile(f"{where}cannot read ({type(exc).__name__}: {exc})") from None
                if block.dtype != np.uint8:
                    finite = np.isfinite(block)
                    if not finite.all():
                        raise _BadFile(f"{where}float values must be finite, found NaN or inf")
                    lo, hi = float(block.min()), float(block.max())
                    if lo < 0 or hi > 1:
                        raise _BadFile(f"{where}float values must lie in [0, 1], found {lo:g}..{hi:g}")
                    block = np.rint(block.astype(np.float32) * 255).astype(np.uint8)
                c_in = block.shape[-1]
                if channels == 1:
                    block = block[..., 0] if c_in == 1 else _rgb_to_grey(block[..., :3])
                    block = block[..., None]
                else:
                    block = np.repeat(block, 3, axis=-1) if c_in == 1 else block[..., :3]
                if block.shape[1:3] != (size, size):   # crop and resize each image with Pillow
                    mode = _MODE[channels]
                    block = np.stack([
                        _to_array(_square(Image.fromarray(np.ascontiguousarray(im if channels == 3 else im[..., 0]),
                                                          mode), size), channels).transpose(1, 2, 0)
                        for im in block])
                yield np.ascontiguousarray(block.transpose(0, 3, 1, 2))
    finally:
        if zf is not None:
            zf.close()


# --------------------------------------------------------------------------- picture files

def _to_mode(im, channels: int):
    """A decoded Pillow image in mode "L" (channels 1) or "RGB" (channels 3)."""
    from PIL import Image
    if im.mode.startswith("I"):    # 16-bit PNGs: Pillow's convert would clip at 255, scale instead
        a = np.asarray(im).astype(np.int64)
        im = Image.fromarray((np.clip(a, 0, 65535) >> 8).astype(np.uint8), "L")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Palette images with Transparency ... RGBA"
        return im.convert(_MODE[channels])


def _square(im, size: int):
    """Centre crop to a square (the odd pixel goes to the right/bottom), then resize to size x size."""
    from PIL import Image
    w, h = im.size
    s = min(w, h)
    if (w, h) != (s, s):
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    if s != size:
        im = im.resize((size, size), Image.Resampling.BILINEAR)   # antialiased when shrinking
    return im


def _to_array(im, channels: int) -> np.ndarray:
    a = np.asarray(im)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def _picture(entry: _Entry, channels: int, size: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """(1, C, size, size) uint8 from a PNG or JPEG file (by its content: no other decoder is ever tried)."""
    from PIL import Image, ImageOps
    try:
        with open_image(entry.path, PICTURE_FORMATS, max_pixels) as im:   # decoded now: a truncated file fails here
            if im.getexif().get(0x0112, 1) != 1:   # EXIF orientation, as a photo viewer shows it
                im = ImageOps.exif_transpose(im)
            im = _to_mode(im, channels)
    except Image.UnidentifiedImageError:
        raise _BadFile("not a PNG or JPEG image (whatever its name says)") from None
    except UnsafeFileError as exc:
        raise _BadFile(exc.reason) from None
    except Exception as exc:   # Pillow's decoders, on an untrusted file
        raise _BadFile(f"cannot decode the image: {_reason(exc, entry.path)}") from None
    return _to_array(_square(im, size), channels)[None]


def read_picture(path, channels: int, size: int) -> np.ndarray:
    """One PNG or JPEG file decoded as image_folder decodes each of its pictures (mode, centre
    crop, resize): (1, C, size, size) uint8. DataError when it cannot be read as an image."""
    path = Path(path)
    try:
        return _picture(_Entry(path.name, path, 0, 0, False), channels, size)
    except _BadFile as exc:
        raise DataError(f"{path}: cannot read it as an image ({exc})") from None


def _reason(exc: Exception, path: Path) -> str:
    """An exception's message without the file name (the listing already names the file)."""
    text = str(exc).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
    return text or type(exc).__name__


# --------------------------------------------------------------------------- decoding

def _listing(root: Path, bad, what: str, total: int | None = None) -> str:
    total = len(bad) if total is None else total
    lines = [f"  {rel}: {why}" for rel, why in bad[:MAX_LISTED]]
    if total > len(lines):
        lines.append(f"  ... and {total - len(lines)} more")
    return f"{root}: {total} {what}:\n" + "\n".join(lines)


class BadFilesError(DataError):
    """Files of an image folder that cannot be read as images, named with why. The message says
    how to skip them: ``skip`` is the Python argument; the CLI gives its flag (``with_skip``)."""

    def __init__(self, root: Path, bad, total: int | None = None, skip: str = "skip_bad=True"):
        self.root, self.bad, self.total = root, bad, total
        super().__init__(_listing(root, bad, f"file(s) could not be read as images (pass {skip} to skip them)", total))

    def with_skip(self, skip: str) -> "BadFilesError":
        return BadFilesError(self.root, self.bad, self.total, skip)


def _bad_error(root: Path, bad, total: int | None = None) -> DataError:
    return BadFilesError(root, bad, total)


def _fill(out, entries, channels: int, size: int, progress: bool, skip_bad: bool, release=None,
          max_pixels: int = MAX_IMAGE_PIXELS):
    """Decode every entry into out[0:], in order. -> (images written, [(label, count)], bad files).

    Without skip_bad, the first bad file dooms the call: later files are only decoded to find
    the other bad ones, and nothing more is written.
    """
    from tqdm import tqdm
    bad, labels, pos = [], [], 0
    bar = tqdm(total=len(out), desc="decoding images", unit="img",
               disable=not (progress and sys.stderr.isatty()))
    with bar:
        for entry in entries:
            start = pos
            try:
                blocks = _array_chunks(entry, channels, size) if entry.is_array else \
                    iter([_picture(entry, channels, size, max_pixels)])
                for block in blocks:
                    if bad and not skip_bad:
                        continue
                    out[pos:pos + len(block)] = block
                    pos += len(block)
                    if release is not None:
                        release(pos)
            except _BadFile as exc:
                bad.append((entry.rel, str(exc)))
                pos = start      # drop what this file had written
                continue
            labels.append((entry.label, pos - start))
            bar.update(entry.count)
    return pos, labels, bad


# --------------------------------------------------------------------------- the cache

def _slug(root: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", root.name or "root")[:40].strip("._") or "folder"


def _cache_key(root: Path, entries, channels: int, size: int, labels: str,
               max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[str, str]:
    """-> (stem shared by every cache of this folder and these settings, full key)."""
    settings = {"version": CACHE_VERSION, "folder": str(root), "channels": channels,
                "image_size": size, "labels": labels, "max_pixels": int(max_pixels)}
    prefix = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    files = [[e.rel, e.size, e.mtime_ns] for e in entries]
    key = hashlib.sha256(json.dumps({**settings, "files": files}, sort_keys=True).encode()).hexdigest()
    return f"{_slug(root)}-{prefix}", key


def _read_npy_hashed(path: Path):
    """-> (array, sha256 of the whole file): one pass, the array filled as the bytes are hashed."""
    with open_regular(path, "image cache") as f:
        shape, fortran, dtype = npy_header(f, available=os.fstat(f.fileno()).st_size)   # before allocating
        header_len = f.tell()
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise ValueError(f"expected a C-order uint8 (N, C, H, W) array, found {dtype} {shape}")
        arr = np.empty(shape, np.uint8)
        f.seek(0)
        h = hashlib.sha256(f.read(header_len))
        view = memoryview(arr.reshape(-1))
        for start in range(0, arr.nbytes, _HASH_CHUNK):
            part = view[start:start + _HASH_CHUNK]
            if f.readinto(part) != len(part):
                raise ValueError("file shrank while being read")
            h.update(part)
    return arr, h.hexdigest()


def _labels_from_runs(runs, n: int, n_classes: int) -> np.ndarray:
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    if runs[:, 1].sum() != n or (runs[:, 1] < 0).any() or (runs[:, 0] < 0).any() \
            or (runs[:, 0] >= n_classes).any():
        raise ValueError("label runs do not fit the images")
    return np.repeat(runs[:, 0], runs[:, 1])


def _runs(labels) -> list:
    runs = []
    for label, count in labels:
        if count == 0:
            continue
        if runs and runs[-1][0] == label:
            runs[-1][1] += count
        else:
            runs.append([label, count])
    return runs


def _load_cache(npy: Path, meta_path: Path, key: str):
    """-> (images, meta) from a valid cache, or None (absent, or damaged: warned, then rebuilt)."""
    if not (os.path.lexists(npy) and os.path.lexists(meta_path)):
        return None
    try:
        meta = json.loads(read_bytes(meta_path, "image cache record", 16 << 20).decode("utf-8"))
        if not (isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT
                and meta.get("version") == CACHE_VERSION and meta.get("key") == key
                and meta.get("npy_file") == npy.name and isinstance(meta.get("sha256"), str)
                and isinstance(meta.get("classes"), list) and all(isinstance(c, str) for c in meta["classes"])
                and isinstance(meta.get("skipped"), list) and isinstance(meta.get("n_skipped"), int)
                and isinstance(meta.get("notes"), list) and all(isinstance(t, str) for t in meta["notes"])):
            raise ValueError("the .json is not a cache record for this folder")
        images, sha = _read_npy_hashed(npy)
        if sha != meta["sha256"]:
            raise ValueError(f"sha256 mismatch: the .json says {meta['sha256']}, the file has {sha}")
        if list(images.shape) != meta.get("shape"):
            raise ValueError(f"shape {images.shape} differs from the .json's {meta.get('shape')}")
        meta["labels_array"] = _labels_from_runs(meta.get("label_runs"), len(images), len(meta["classes"]))
        meta["skipped"] = [(str(r), str(w)) for r, w in meta["skipped"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        warnings.warn(f"image cache {npy} is damaged ({exc}); decoding the folder again", UserWarning,
                      stacklevel=3)
        return None
    return images, meta


def _remove_stale(folder: Path, stem: str, keep: str) -> None:
    """Delete this folder's older caches (same folder and settings, other key): only names we write."""
    pattern = re.compile(re.escape(stem) + r"-[0-9a-f]{20}\.(npy|json)")
    for p in folder.iterdir():
        if pattern.fullmatch(p.name) and p.stem != keep and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
            except OSError:
                pass


def _release_pages(out, upto: int, state: dict) -> None:
    """Write back the cache pages filled so far and drop them from this process's memory."""
    mm = getattr(out, "_mmap", None)
    byte_end = out.offset + upto * out.itemsize * int(np.prod(out.shape[1:]))
    if mm is None or byte_end - state["done"] < _RELEASE_BYTES:
        return
    start = state["done"] - state["done"] % mmap.PAGESIZE
    stop = byte_end - byte_end % mmap.PAGESIZE
    if stop > start:
        mm.flush(start, stop - start)
        if hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            mm.madvise(mmap.MADV_DONTNEED, start, stop - start)   # shared mapping: data stays in the file
        state["done"] = stop


def _build_cache(npy: Path, entries, n_planned: int, channels: int, size: int, progress: bool,
                 skip_bad: bool, max_pixels: int = MAX_IMAGE_PIXELS):
    """Decode into a memory-mapped temporary .npy beside `npy`, then rename it into place.

    -> (images written, labels, bad); without skip_bad nothing is renamed when a file is bad. Raises OSError when
    the cache cannot be written (no space: reserved up front, so it fails here, not mid-write).
    """
    fd, tmp = tempfile.mkstemp(dir=npy.parent, prefix=f".{npy.name}.", suffix=".tmp")
    os.close(fd)
    shape = (n_planned, channels, size, size)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        if hasattr(os, "posix_fallocate"):
            fd = os.open(tmp, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, out.offset + out.nbytes)
            finally:
                os.close(fd)
        state = {"done": out.offset}
        n, labels, bad = _fill(out, entries, channels, size, progress, skip_bad,
                               release=lambda pos: _release_pages(out, pos, state), max_pixels=max_pixels)
        keep = n > 0 and (skip_bad or not bad)
        if keep and n < n_planned:      # arrays skipped: copy into a file of the final size
            fd2, tmp2 = tempfile.mkstemp(dir=npy.parent, prefix=f".{npy.name}.", suffix=".tmp")
            os.close(fd2)
            try:
                small = np.lib.format.open_memmap(tmp2, mode="w+", dtype=np.uint8, shape=(n, *shape[1:]))
                for i in range(0, n, _CHUNK):
                    small[i:i + _CHUNK] = out[i:min(i + _CHUNK, n)]
                small.flush()
                del small
            except BaseException:
                os.unlink(tmp2)
                raise
            del out
            os.replace(tmp2, tmp)
        else:
            out.flush()
            del out
        if keep:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, npy)
        return n, labels, bad
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------- the public function

def _check_args(channels, image_size, labels, skip_bad) -> None:
    if not isinstance(channels, (int, np.integer)) or isinstance(channels, bool) or channels not in CHANNELS:
        raise ValueError(f"image_folder: channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) \
            or image_size not in IMAGE_SIZES:
        raise ValueError(f"image_folder: image_size must be one of {', '.join(map(str, IMAGE_SIZES))}, "
                         f"got {image_size!r}")
    if labels not in LABEL_MODES:
        raise ValueError(f"image_folder: labels must be 'auto' (from subfolders) or 'none', got {labels!r}")
    if not isinstance(skip_bad, bool):
        raise ValueError(f"image_folder: skip_bad must be True or False, got {skip_bad!r}")


def image_folder(path, channels: int = 1, image_size: int = 28, labels: str = "auto",
                 skip_bad: bool = False, cache=True, progress: bool = False,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> Dataset:
    """Every image under `path` as a Dataset of uint8 (N, channels, image_size, image_size).

    path: a folder; PNG and JPEG files (.png .jpg .jpeg, any case) and .npy/.npz arrays in it and
        in its subfolders are read, sorted by path; hidden names (".x") and other files are skipped.
        Arrays are channels-last: (H, W), (H, W, C) with C in 1, 3, 4, or stacks (N, H, W) and
        (N, H, W, C); uint8, or float in [0, 1] (rounded to 0..255). A 3-D array whose last axis
        is 1, 3 or 4 is one image, any other 3-D array a stack of grey images.
    channels: 1 (grey, Pillow's "L") or 3 (RGB); alpha is dropped.
    image_size: 28, 32 or 64: each image is centre-cropped to a square, then resized with
        Pillow's bilinear filter (antialiased when shrinking).
    labels: "auto": when every image lies in a first-level subfolder, classes are those folders'
        names sorted, label = index (torchvision's ImageFolder); otherwise no classes (all labels
        0, classes ["image"]). "none": no classes in any case.
    skip_bad: unreadable files (not an image, truncated, wrong array shape or dtype) raise one
        DataError naming them; with skip_bad they are skipped and counted in `Dataset.note`.
    cache: True: keep the decoded array in cache_dir("folders") and reuse it while no file
        changes; a folder path: cache there instead; False: decode every time.
    progress: a progress bar on a terminal while decoding.
    max_pixels: a picture whose header claims more pixels is a bad file, refused before it is decoded.

    Untrusted folders (docs/data.md): files are opened as PNG or JPEG by their content (a file of
    another format named .png is a bad file, never handed to another decoder), only when regular
    (a FIFO is a bad file); links are followed only inside the folder, and those leading out of
    it are skipped and named in `Dataset.note`; an array header must match its file's size.
    """
    _check_args(channels, image_size, labels, skip_bad)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"image_folder: max_pixels must be an integer >= 1, got {max_pixels!r}")
    channels, image_size = int(channels), int(image_size)
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"image_folder: path must be a folder name, got {path!r}")
    root = Path(os.path.abspath(Path(path).expanduser()))
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (image_folder reads a folder of images)")
    entries, bad, ignored, links_out = _scan(root)
    if not entries and not bad:
        kinds = ", ".join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)
        msg = f"{root}: no images found (looked for {kinds} files, in any case, in the folder and its subfolders)"
        if ignored:
            shown = ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
            msg += f"; {len(ignored)} other file(s) ignored: {shown}"
        if links_out:
            msg += f"; {len(links_out)} link(s) leading out of the folder skipped: {', '.join(links_out[:5])}"
        raise DataError(msg)

    # labels, from the first-level subfolders
    notes = []
    if links_out:
        shown = ", ".join(links_out[:5]) + (", ..." if len(links_out) > 5 else "")
        notes.append(f"skipped {len(links_out)} link(s) leading out of the folder (only links inside it are "
                     f"followed): {shown}")
    classes = ["image"]
    if labels == "auto" and entries and all("/" in e.rel for e in entries):
        classes = sorted({e.rel.split("/", 1)[0] for e in entries})
        index = {c: i for i, c in enumerate(classes)}
        for e in entries:
            e.label = index[e.rel.split("/", 1)[0]]
    elif labels == "auto" and any("/" in e.rel for e in entries):
        top = next(e.rel for e in entries if "/" not in e.rel)
        notes.append(f"unlabelled: some images lie directly in the folder (e.g. {top}), "
                     "so its subfolders are not used as classes")

    # array headers: how many images each file holds
    for e in entries:
        if e.is_array:
            try:
                _plan_array(e)
            except _BadFile as exc:
                bad.append((e.rel, str(exc)))
    listed_bad = {rel for rel, _ in bad}
    entries_ok = [e for e in entries if e.rel not in listed_bad]
    n_planned = sum(e.count for e in entries_ok)

    # the cache: hit, or build
    npy = None
    if cache is not False and cache is not None:
        folder = cache_dir("folders") if cache is True else Path(cache).expanduser()
        stem, key = _cache_key(root, entries, channels, image_size, labels, max_pixels)
        npy = folder / f"{stem}-{key[:20]}.npy"
        hit = _load_cache(npy, npy.with_suffix(".json"), key)
        if hit is not None:
            images, meta = hit
            if meta["n_skipped"] and not skip_bad:
                raise _bad_error(root, meta["skipped"], meta["n_skipped"])
            return _dataset(root, images, meta["labels_array"], meta["classes"], meta["skipped"],
                            meta["n_skipped"], meta.get("notes", []), str(npy), True, _contents(entries))
    if n_planned == 0:
        raise DataError(_listing(root, bad, "file(s) found, none readable as images"))
    n = None
    if npy is not None:
        try:
            npy.parent.mkdir(parents=True, exist_ok=True)
            n, runs, bad_decode = _build_cache(npy, entries_ok, n_planned, channels, image_size,
                                               progress, skip_bad, max_pixels)
        except OSError as exc:
            warnings.warn(f"cannot write the image cache in {npy.parent} ({exc.strerror or exc}); "
                          "decoding without a cache", UserWarning, stacklevel=2)
            npy = None
    if npy is None:
        out = np.empty((n_planned, channels, image_size, image_size), np.uint8)
        n, runs, bad_decode = _fill(out, entries_ok, channels, image_size, progress, skip_bad, max_pixels=max_pixels)
        images = out if n == n_planned else out[:n].copy()
    bad = sorted(bad + bad_decode, key=lambda b: b[0].split("/"))
    if bad and not skip_bad:
        raise _bad_error(root, bad)
    if n == 0:
        raise DataError(_listing(root, bad, "file(s) found, none readable as images"))
    label_runs = _runs(runs)
    label_array = np.repeat(np.array([r[0] for r in label_runs], np.int64),
                            np.array([r[1] for r in label_runs], np.int64))
    if npy is not None:   # built into the cache: read it back, hashing it on the way, then its record
        images, sha = _read_npy_hashed(npy)
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key,
                "npy_file": npy.name, "sha256": sha, "shape": list(images.shape),
                "folder": str(root), "files": len(entries), "bytes": sum(e.size for e in entries),
                "channels": channels, "image_size": image_size, "labels": labels,
                "resample": "bilinear", "classes": classes, "label_runs": label_runs,
                "skipped": [list(b) for b in bad[:MAX_LISTED]], "n_skipped": len(bad), "notes": notes}
        try:
            atomic_write_bytes(npy.with_suffix(".json"), (json.dumps(meta, indent=1) + "\n").encode())
        except OSError as exc:    # e.g. the disk filled: the images are decoded, only the record is lost
            warnings.warn(f"cannot write the image cache record in {npy.parent} ({exc.strerror or exc}); "
                          "going on without a cache", UserWarning, stacklevel=2)
            npy.unlink(missing_ok=True)
            npy = None
        else:
            _remove_stale(npy.parent, stem, npy.stem)
    return _dataset(root, images, label_array, classes, bad, len(bad), notes,
                    str(npy) if npy is not None else "", False, _contents(entries))


def _contents(entries) -> str:
    """What the folder holds, in one line a run records and compares on resume: the files, their
    bytes and a digest of their paths and sizes (not their times: a copied folder is the same data)."""
    digest = hashlib.sha256(json.dumps([[e.rel, e.size] for e in entries]).encode()).hexdigest()
    return f"{len(entries)} files, {sum(e.size for e in entries):,} bytes, sha256 {digest[:16]}"


def _dataset(root, images, labels, classes, bad, n_bad, notes, cache_file, from_cache, contents="") -> Dataset:
    notes = list(notes)
    if n_bad:
        listed = bad[:MAX_LISTED]
        shown = "; ".join(f"{rel} ({why})" for rel, why in listed)
        more = f"; and {n_bad - len(listed)} more" if n_bad > len(listed) else ""
        notes.insert(0, f"skipped {n_bad} unreadable file(s): {shown}{more}")
    return Dataset(name=f"folder:{root}", split="train", images=images, labels=labels,
                   classes=list(classes), source=str(root), note="; ".join(notes),
                   cache_file=cache_file, from_cache=from_cache, contents=contents)
