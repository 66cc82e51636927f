"""Named data sets: finding them on disk, verified downloads, the bundled MNIST sample.

Look-up order for the files of a data set (first folder holding both files of
the split wins): `data_dir`, `$SCRATCHGAN_DATA`, the cache
(`$XDG_CACHE_HOME/scratchgan/<name>`, default `~/.cache/...`), known system
folders, then, only with `download=True`, a download into the cache.
For `data_dir` and `$SCRATCHGAN_DATA` both the folder itself and its
`<name>/` subfolder are tried, so one root can hold several data sets.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..files.atomic import default_file_mode
from ..files.safeio import open_regular
from .idx import DataError, read_idx

__all__ = [
    "Dataset", "DataError", "DataNotFound", "FileSpec", "Archive", "DatasetSpec",
    "REGISTRY", "BUNDLED_DIR", "load_dataset", "dataset_names", "batches",
    "cache_dir", "download_file", "verify_file",
]


class DataNotFound(DataError):
    """The files of a data set are in none of the searched places and could not be downloaded."""

    def __init__(self, message: str, searched=(), errors=()):
        super().__init__(message)
        self.searched = list(searched)  # [(folder, why)] in look-up order
        self.errors = list(errors)      # download failures, one line each


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class FileSpec:
    """One file of a data set, under its official (gzipped) name."""
    name: str
    md5: tuple = ()               # accepted md5s of the .gz file; the first is the official one
    size: int | None = None       # bytes of the official .gz (progress bar when the server sends no length)
    raw_md5: str | None = None    # md5 of the decompressed IDX bytes: un-gzipped or re-gzipped copies
    sha256: str | None = None     # used instead of md5 when given (the bundled sample)


@dataclass(frozen=True)
class Archive:
    """A zip that holds the files (EMNIST ships only inside NIST's big zip)."""
    urls: tuple
    filename: str                 # name of the zip while it sits in the cache
    md5: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    splits: dict                  # split -> (images FileSpec, labels FileSpec)
    classes: tuple
    mirrors: tuple = ()           # base URLs, tried in order
    archive: Archive | None = None
    system_dirs: tuple = ()
    transposed: bool = False      # images stored column-major (EMNIST)
    label_offset: int = 0         # subtracted from stored labels (EMNIST letters are 1..26)
    bundled: bool = False
    fallback: dict = field(default_factory=dict)  # split -> data set to use when this one is missing
    hint: str = ""                # extra advice for the not-found message


BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED_SENTENCE = "bundled sample: the first 10,000 MNIST training images"

_DIGITS = tuple(str(d) for d in range(10))
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_LETTERS = tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))   # stored labels 1..26 -> 0..25


def _idx_pair(prefix: str, images: dict, labels: dict) -> tuple:
    return (FileSpec(f"{prefix}-images-idx3-ubyte.gz", **images),
            FileSpec(f"{prefix}-labels-idx1-ubyte.gz", **labels))


REGISTRY: dict[str, DatasetSpec] = {}


def _register(spec: DatasetSpec) -> None:
    REGISTRY[spec.name] = spec


# Published md5s and sizes (yann.lecun.com, mirrored by the two mirrors below).
# raw_md5 of the test files: computed from copies whose .gz md5 matches the published one.
_register(DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits, 60,000 train + 10,000 test",
    splits={
        "train": _idx_pair("train",
                           dict(md5=("f68b3c2dcbeaaa9fbdd348bbdeb94873",), size=9912422),
                           dict(md5=("d53e105ee54ea40749a09fcbcd1e9432",), size=28881)),
        "test": _idx_pair("t10k",
                          dict(md5=("9fb629c4189551a2d022fa330f9573f3",), size=1648877,
                               raw_md5="2646ac647ad5339dbf082846283269ea"),
                          dict(md5=("ec29112dd5afa0611ce80d1b7f02629c",), size=4542,
                               raw_md5="27ae3e4e09519cfbb04c329615203637")),
    },
    classes=_DIGITS,
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    fallback={"train": "mnist-bundled"},
))

# First md5: the published one (Zalando's README). Second: Debian's
# dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose build rewrote the gzip
# headers (file name dropped, mtime reset) but not the compressed data: putting
# the upstream header back reproduces the published md5s and sizes exactly.
# raw_md5 is the md5 of the decompressed bytes, the same for both.
_register(DatasetSpec(
    name="fashion-mnist",
    description="Fashion-MNIST (Zalando) clothing images, 60,000 train + 10,000 test",
    splits={
        "train": _idx_pair("train",
                           dict(md5=("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                     "cf8536b0aa1a6ac5fa3f23001093305c"), size=26421880,
                                raw_md5="f4a8712d7a061bf5bd6d2ca38dc4d50a"),
                           dict(md5=("25c81989df183df01b3e8a0aad5dffbe",
                                     "10bea18fdb374794d4bb42e356e600c9"), size=29515,
                                raw_md5="9018921c3c673c538a1fc5bad174d6f9")),
        "test": _idx_pair("t10k",
                          dict(md5=("bef4ecab320f06d8554ea6380940ec79",
                                    "f78720b4224f21cce2f2ccf2d7a94c9a"), size=4422102,
                               raw_md5="8181f5470baa50b63fa0f6fddb340f0a"),
                          dict(md5=("bb300cfdad3c16e7a12a480ee83cd310",
                                    "0d30e22e447f3c33dab9ed536400ac01"), size=5148,
                               raw_md5="15d484375f8d13e6eb1aabb0c3f46965")),
    },
    classes=_FASHION,
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    hint="on Debian/Ubuntu: apt-get install dataset-fashion-mnist "
         "(puts the files in /usr/share/datasets/fashion-mnist, found automatically)",
))

# No per-file checksums are published for EMNIST: the zip's md5 is verified and
# the files extracted from it are trusted; copies found elsewhere are only
# checked for a well-formed IDX layout.
_register(DatasetSpec(
    name="emnist-letters",
    description="EMNIST letters (NIST), 124,800 train + 20,800 test, classes A..Z",
    splits={
        "train": _idx_pair("emnist-letters-train", {}, {}),
        "test": _idx_pair("emnist-letters-test", {}, {}),
    },
    classes=_LETTERS,
    archive=Archive(urls=("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",),
                    filename="emnist-gzip.zip", md5="58c8d27c78d21e728a6bc7b3cc06412e"),
    transposed=True,
    label_offset=1,
))

# sha256s from ../shared/data/README.md; see bundled/README.md.
_register(DatasetSpec(
    name="mnist-bundled",
    description=BUNDLED_SENTENCE,
    splits={
        "train": (FileSpec("train10k-images-idx3-ubyte.gz",
                           sha256="8d551838fb581003d4f038c33d8d052a3dedcbc154329f95e0fcb9eefddc3819"),
                  FileSpec("train10k-labels-idx1-ubyte.gz",
                           sha256="f3bae815f00c58b96a05ff628c21688da13b12a78d300b16d286e3621d68b536")),
    },
    classes=_DIGITS,
    system_dirs=(str(BUNDLED_DIR),),
    bundled=True,
))


def dataset_names() -> list[str]:
    """Names accepted by load_dataset."""
    return list(REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    key = str(name).strip().lower().replace("_", "-")
    if key not in REGISTRY:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[key]


# --------------------------------------------------------------------------- Dataset

@dataclass
class Dataset:
    """Images with labels (N,) int64; `classes[label]` is the class name.

    `images` is uint8, either (N, H, W) (grey: the IDX data sets) or (N, C, H, W) with C = 1 or 3
    (image folders); `image_shape` is (C, H, W) in both cases and `as_float` always gives
    (N, C, H, W).
    """
    name: str
    split: str
    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    classes: list
    source: str
    is_bundled: bool = False
    note: str = ""                # set when something other than what was asked is returned
    cache_file: str = ""          # image folders: the cache .npy the images came from or went to
    from_cache: bool = False      # image folders: True when read from that cache without decoding
    contents: str = ""            # image folders: its files' count, bytes and a digest of names and sizes

    def __post_init__(self):
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (3, 4) \
                or (images.ndim == 4 and images.shape[1] not in (1, 3)):
            what = (f"{images.dtype} array of shape {images.shape}" if isinstance(images, np.ndarray)
                    else type(images).__name__)
            raise DataError(f"Dataset {self.name!r}: images must be a uint8 array (N, H, W) or "
                            f"(N, C, H, W) with C = 1 or 3, got {what}")
        if not isinstance(labels, np.ndarray) or labels.shape != images.shape[:1]:
            got = labels.shape if isinstance(labels, np.ndarray) else type(labels).__name__
            raise DataError(f"Dataset {self.name!r}: expected labels of shape ({images.shape[0]},), got {got}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple:
        """(C, H, W) of one image: (1, 28, 28) for MNIST, (3, 64, 64) for a 64-pixel RGB folder."""
        shape = tuple(int(d) for d in self.images.shape[1:])
        return (1, *shape) if len(shape) == 2 else shape

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"image_shape={self.image_shape}, classes={len(self.classes)}, "
                f"source={self.source!r})")

    def class_index(self, c) -> int:
        """Label of a class given as an int label, its name, or its label as a string."""
        n = len(self.classes)
        if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)):
            if 0 <= c < n:
                return int(c)
        elif isinstance(c, str):
            if c in self.classes:
                return self.classes.index(c)
            folded = [k.lower() for k in self.classes]
            if c.strip().lower() in folded:
                return folded.index(c.strip().lower())
            if c.strip().isdigit() and int(c) < n:  # "3" from a command line
                return int(c)
        shown = ", ".join(f"{i}={k!r}" for i, k in enumerate(self.classes))
        raise DataError(f"unknown class {c!r} for {self.name}; valid labels (or names): {shown}")

    def filter_classes(self, classes) -> "Dataset":
        """Keep only items whose label is in `classes` (ints or names); labels keep their values."""
        if isinstance(classes, (str, int, np.integer)):
            classes = [classes]
        wanted = np.unique([self.class_index(c) for c in classes]).astype(np.int64)
        if wanted.size == 0:
            raise DataError(f"filter_classes: no classes given; valid: {list(self.classes)}")
        keep = np.isin(self.labels, wanted)
        return dataclasses.replace(self, images=self.images[keep], labels=self.labels[keep])

    def as_float(self, scale: str = "tanh", dtype=np.float32) -> np.ndarray:
        """Images as (N, C, H, W) (C = 1 for the IDX data sets): "tanh" -> [-1, 1], "sigmoid" -> [0, 1]."""
        levels = np.arange(256, dtype=np.float64)
        if scale == "tanh":
            lut = levels / 127.5 - 1.0   # 0 -> -1 and 255 -> 1 exactly
        elif scale == "sigmoid":
            lut = levels / 255.0
        else:
            raise ValueError(f"scale must be 'tanh' or 'sigmoid', got {scale!r}")
        # a 256-entry table indexed by the pixels: one gather, no float arithmetic per pixel
        return lut.astype(dtype)[self.images].reshape(len(self.images), *self.image_shape)


def batches(n_items: int, batch_size: int, seed: int, epoch: int,
            drop_last: bool = True) -> Iterator[np.ndarray]:
    """Index arrays (batch_size,) covering a fresh permutation of range(n_items) per (seed, epoch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n_items)
    stop = n_items - n_items % batch_size if drop_last else n_items
    return (order[i:i + batch_size] for i in range(0, stop, batch_size))


# --------------------------------------------------------------------------- look-up

def cache_dir(name: str | None = None) -> Path:
    """$XDG_CACHE_HOME/scratchgan[/name], or ~/.cache/scratchgan[/name]."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"  # XDG: ignore relative
    root = root / "scratchgan"
    return root / name if name else root


def _search_dirs(spec: DatasetSpec, data_dir) -> list[tuple[Path, str]]:
    """(folder, why it is searched), in look-up order."""
    dirs = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        dirs += [(d, "data_dir / --data-dir"), (d / spec.name, "data_dir / --data-dir")]
    env = os.environ.get("SCRATCHGAN_DATA")
    if env:
        d = Path(env).expanduser()
        dirs += [(d, "$SCRATCHGAN_DATA"), (d / spec.name, "$SCRATCHGAN_DATA")]
    dirs.append((cache_dir(spec.name), "cache"))
    dirs += [(Path(d), "system folder") for d in spec.system_dirs]
    return dirs


def _file_in(folder: Path, fs: FileSpec) -> Path | None:
    """The file for `fs` in `folder`: the .gz name, un-gzipped, or the un-gzipped 'x.idx3-ubyte' spelling."""
    raw = fs.name[:-3] if fs.name.endswith(".gz") else fs.name
    for candidate in (fs.name, raw, raw.replace("-idx", ".idx")):
        p = folder / candidate
        if p.is_file():
            return p
    return None


def _find(spec: DatasetSpec, split: str, data_dir):
    """-> ((folder, [images path, labels path]) or None, searched folders)."""
    searched = _search_dirs(spec, data_dir)
    for folder, _ in searched:
        paths = [_file_in(folder, fs) for fs in spec.splits[split]]
        if all(paths):
            return (folder, paths), searched
    return None, searched


# --------------------------------------------------------------------------- checksums

_VERIFIED: set = set()   # (path, size, mtime_ns) already verified in this process


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_gzip(path: Path) -> bool:
    with open_regular(path) as f:
        return f.read(2) == b"\x1f\x8b"


def _gunzip_md5(path: Path) -> str | None:
    try:
        with open_regular(path) as raw, gzip.open(raw, "rb") as f:
            h = hashlib.md5()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            return h.hexdigest()
    except (OSError, EOFError, ValueError):   # ValueError: UnsafeFileError, not a regular file
        return None


def verify_file(path, fs: FileSpec) -> None:
    """Raise DataError if `path` fails the checksum known for `fs`; never touches the file."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    advice = ("The file was left as it is: it is damaged or a different version; "
              "replace it, or point data_dir / --data-dir elsewhere.")
    if fs.sha256:
        got = _digest(path, "sha256")
        if got != fs.sha256:
            raise DataError(f"{path}: sha256 mismatch: expected {fs.sha256}, got {got}. {advice}")
    else:
        gz = _is_gzip(path)
        accepted = list(fs.md5) if gz else []
        if fs.raw_md5:
            accepted.append(fs.raw_md5)
        if accepted:
            got = _digest(path, "md5")
            # a re-gzipped copy of the right data is fine too
            ok = got in accepted or (gz and fs.raw_md5 is not None and _gunzip_md5(path) == fs.raw_md5)
            if not ok:
                want = " or ".join(accepted)
                raise DataError(f"{path}: md5 mismatch: expected {want}, got {got}. {advice}")
    _VERIFIED.add(key)


# --------------------------------------------------------------------------- download

CONNECT_TIMEOUT = 10.0
_CHUNK = 1 << 16
_urlopen = urllib.request.urlopen   # the one network entry point; tests replace it


def _unlink_quiet(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _progress_bar(total, desc: str, progress: bool):
    from tqdm import tqdm  # deferred: only downloads need it
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not (progress and sys.stderr.isatty()))


def download_file(url: str, dest, md5=(), size: int | None = None, progress: bool = True) -> Path:
    """Fetch `url` to `dest`; the file appears under `dest` only complete and md5-verified."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    accepted = (md5,) if isinstance(md5, str) else tuple(md5)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        if hasattr(os, "fchmod"):   # the umask's permissions, not mkstemp's private 0600
            os.fchmod(fd, default_file_mode())
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=CONNECT_TIMEOUT) as resp:
            length = getattr(resp, "headers", {}).get("Content-Length")
            total = int(length) if length and str(length).isdigit() else size
            with _progress_bar(total, dest.name, progress) as bar:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        got = digest.hexdigest()
        if accepted and got not in accepted:
            raise DataError(f"{url}: md5 mismatch: expected {accepted[0]}, got {got}; "
                            "the download was discarded")
        os.replace(tmp, dest)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return dest


_FETCH_ERRORS = (OSError, ValueError, http.client.HTTPException)  # URLError/timeouts are OSErrors


def _download_files(spec: DatasetSpec, split: str, progress: bool) -> list[str]:
    """Download the split's missing files into the cache; -> failure lines (empty on success)."""
    dest = cache_dir(spec.name)
    errors = []
    for fs in spec.splits[split]:
        if _file_in(dest, fs):
            continue
        for mirror in spec.mirrors:
            url = mirror + fs.name
            try:
                download_file(url, dest / fs.name, fs.md5, fs.size, progress)
                break
            except _FETCH_ERRORS as exc:
                errors.append(f"{url}: {exc}")
        else:
            return errors
    return []


def _download_archive(spec: DatasetSpec, progress: bool) -> list[str]:
    """Download the data set's zip, verify it, extract its files for every split into the cache."""
    arc, dest = spec.archive, cache_dir(spec.name)
    zpath = dest / arc.filename
    errors = []
    if zpath.is_file() and _digest(zpath, "md5") != arc.md5:
        errors.append(f"{zpath}: md5 mismatch with {arc.md5} (left in place; delete it to retry)")
        return errors
    if not zpath.is_file():
        for url in arc.urls:
            try:
                download_file(url, zpath, arc.md5, None, progress)
                break
            except _FETCH_ERRORS as exc:
                errors.append(f"{url}: {exc}")
        else:
            return errors
    wanted = [fs.name for pair in spec.splits.values() for fs in pair]
    try:
        _extract(zpath, dest, wanted)
    except (zipfile.BadZipFile, OSError, DataError) as exc:
        return [f"{zpath}: extraction failed: {exc}"]
    zpath.unlink()  # hundreds of MB, no longer needed once the files are out
    return []


def _extract(zpath: Path, dest: Path, names: list[str]) -> None:
    """Extract members whose base name is in `names` into `dest`, each atomically."""
    with zipfile.ZipFile(zpath) as zf:
        by_base = {Path(m).name: m for m in zf.namelist()}
        missing = [n for n in names if n not in by_base]
        if missing:
            raise DataError(f"{zpath}: archive lacks {', '.join(missing)}")
        for name in names:
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, zf.open(by_base[name]) as src:
                    shutil.copyfileobj(src, out, _CHUNK)  # zipfile checks the CRC as it reads
                os.replace(tmp, dest / name)
            except BaseException:
                _unlink_quiet(tmp)
                raise


# --------------------------------------------------------------------------- loading

def _not_found(spec: DatasetSpec, split: str, searched, download: bool, errors) -> DataNotFound:
    need = " + ".join(fs.name for fs in spec.splits[split])
    lines = [f"{spec.name} ({split} split) not found: need {need} (gzipped or not)", "Searched, in order:"]
    if not os.environ.get("SCRATCHGAN_DATA"):
        lines.append("  $SCRATCHGAN_DATA (not set)")
    for folder, why in searched:
        lines.append(f"  {folder}  [{why}{'' if folder.is_dir() else '; no such folder'}]")
    can_download = bool(spec.mirrors or spec.archive)
    if errors:
        lines.append("Download failed:")
        lines += [f"  {e}" for e in errors]
    elif can_download and not download:
        lines.append("Download is off.")
    lines.append("What to do:")
    lines.append("  - put the files in a folder and pass it as --data-dir DIR (Python: data_dir=DIR), "
                 "or set SCRATCHGAN_DATA=DIR")
    if can_download:
        lines.append(f"  - or allow a download into {cache_dir(spec.name)} "
                     "(--download on the command line, download=True in Python)")
    if spec.hint:
        lines.append(f"  - or {spec.hint}")
    lines.append("  - 'mnist-bundled' (the first 10,000 MNIST training images, shipped with "
                 "scratchgan) works offline")
    return DataNotFound("\n".join(lines), searched, errors)


def _read(spec: DatasetSpec, split: str, paths, source: str) -> Dataset:
    img_path, lab_path = paths
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{img_path}: expected uint8 images of shape (N, 28, 28), "
                        f"found {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{lab_path}: expected {images.shape[0]} labels (N,), found shape {labels.shape}")
    if spec.transposed:
        images = np.ascontiguousarray(images.transpose(0, 2, 1))
    labels = labels.astype(np.int64) - spec.label_offset
    n = len(spec.classes)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        lo, hi = spec.label_offset, n - 1 + spec.label_offset
        raise DataError(f"{lab_path}: labels must lie in {lo}..{hi}, found "
                        f"{labels.min() + spec.label_offset}..{labels.max() + spec.label_offset}")
    return Dataset(name=spec.name, split=split, images=images, labels=labels,
                   classes=list(spec.classes), source=source, is_bundled=spec.bundled)


def _load_from(spec: DatasetSpec, split: str, folder: Path, paths) -> Dataset:
    for p, fs in zip(paths, spec.splits[split]):
        verify_file(p, fs)
    source = f"{spec.description} ({folder})" if spec.bundled else str(folder)
    return _read(spec, split, paths, source)


def _load(spec: DatasetSpec, split: str, data_dir, download: bool, progress: bool) -> Dataset:
    found, searched = _find(spec, split, data_dir)
    errors = []
    if found is None and download and (spec.mirrors or spec.archive):
        errors = (_download_archive(spec, progress) if spec.archive
                  else _download_files(spec, split, progress))
        found, searched = _find(spec, split, data_dir)
    if found is None:
        raise _not_found(spec, split, searched, download, errors)
    return _load_from(spec, split, *found)


def _load_fallback(spec: DatasetSpec, split: str, missing: DataNotFound) -> Dataset:
    sub = REGISTRY[spec.fallback[split]]
    paths = [_file_in(BUNDLED_DIR, fs) for fs in sub.splits[split]]
    if not all(paths):
        raise DataError(f"the bundled sample is missing from {BUNDLED_DIR} (broken install?)") from missing
    ds = _load_from(sub, split, BUNDLED_DIR, paths)
    where = ", ".join(str(d) for d, _ in missing.searched)
    why = f"full {spec.name.upper()} not found in {where}"
    if missing.errors:
        why += "; download failed"
    ds.source = ds.note = f"{sub.description} ({why})"
    warnings.warn(f"{ds.note}. For all of it: --data-dir / SCRATCHGAN_DATA, or --download.",
                  UserWarning, stacklevel=3)
    return ds


def load_dataset(name: str = "mnist", split: str = "train", data_dir=None, download: bool = False,
                 allow_bundled: bool = True, classes=None, progress: bool = True) -> Dataset:
    """Load a named data set: images (N, 28, 28) uint8, labels (N,) int64.

    With allow_bundled, a missing full MNIST train split falls back to the
    bundled 10,000-image sample, with a warning and `note`/`source` saying so.
    """
    spec = get_spec(name)
    if split not in spec.splits:
        raise DataError(f"{spec.name} has no split {split!r}; it has: {', '.join(spec.splits)}")
    try:
        ds = _load(spec, split, data_dir, download, progress)
    except DataNotFound as missing:
        if not (allow_bundled and split in spec.fallback):
            raise
        ds = _load_fallback(spec, split, missing)
    if classes is not None:
        ds = ds.filter_classes(classes)
    return ds
