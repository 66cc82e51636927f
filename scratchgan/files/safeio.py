"""Untrusted files: the one place that opens what a user hands in.

A data folder, an image, a .npy, a checkpoint or a run folder someone shared is untrusted. Every
file scratchgan did not just write is opened here, and the rules hold for all of them:

- **Regular files only.** The path is checked before it is opened and the open file again
  (``fstat``), and it is opened with ``O_NONBLOCK``: a FIFO, a device or a folder in its place is
  refused at once instead of blocking the program or reading forever.
- **Images only in the formats named.** Pillow picks a decoder from a file's first bytes, and some
  decoders run outside programs (its EPS plugin runs Ghostscript). Pictures open as PNG or JPEG,
  images read back from a run folder as PNG only (``formats=``), whatever their names say.
- **Claims are checked against contents before allocating.** An image's pixel count is bounded
  (``MAX_IMAGE_PIXELS``, ``--max-image-pixels``) before it is decoded; a .npy header's shape must
  account for exactly the bytes the file holds.
- **Writes never follow a link.** Whole files are written by ``atomic.atomic_write_bytes`` (a
  temporary file renamed over the name: a link there is replaced, not followed); appends open with
  ``O_NOFOLLOW`` and refuse anything but a regular file.

Every refusal is an ``UnsafeFileError`` (a ``ValueError``: one ``error:`` line, exit 2) naming the file.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np

__all__ = ["UnsafeFileError", "MAX_IMAGE_PIXELS", "PICTURE_FORMATS", "RUN_IMAGE_FORMATS", "check_regular",
           "open_regular", "read_bytes", "open_image", "read_npy", "npy_header", "npz_members", "append_text", "refuse_link"]

MAX_IMAGE_PIXELS = 1 << 25          # 33.5 million pixels (e.g. 8192 x 4096): about 100 MB decoded as RGB
PICTURE_FORMATS = ("PNG", "JPEG")   # a user's pictures
RUN_IMAGE_FORMATS = ("PNG",)        # what scratchgan writes into a run folder and reads back
MAX_INFLATION = 1100                # deflate expands at most ~1032x: a zip member claiming more lies

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafeFileError(ValueError):
    """A file is not what it claims or not where it may be: not a regular file, a link where
    scratchgan writes, an image in a format it does not open, or a header that lies about its size.
    ``reason``: the message without the file's name."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path, what: str, why: str) -> UnsafeFileError:
    return UnsafeFileError(f"{what + ' ' if what else ''}{path}: {why}", why)


def check_regular(path, what: str = "") -> os.stat_result:
    """The stat of ``path`` (links followed) when it is a regular file, else UnsafeFileError.
    FileNotFoundError and other OSErrors pass through for the caller to word."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, what, f"is {_kind(st.st_mode)}, not a regular file; refusing to read it")
    return st


def open_regular(path, what: str = ""):
    """``path`` opened for binary reading, after checking it is a regular file, without ever
    blocking on a FIFO (O_NONBLOCK) and checked again once open (a swap in between is caught)."""
    check_regular(path, what)
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, what, f"is {_kind(st.st_mode)}, not a regular file; refusing to read it")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, what: str = "", max_bytes: int | None = None) -> bytes:
    """The whole of a regular file; with ``max_bytes``, UnsafeFileError for a larger one (a small
    record such as a checkpoint's .json never needs to be read whole when it is huge)."""
    with open_regular(path, what) as f:
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise _refuse(path, what, f"is over {max_bytes:,} bytes, more than a file of this kind holds")
    return data


def open_image(path, formats=PICTURE_FORMATS, max_pixels: int = MAX_IMAGE_PIXELS, what: str = ""):
    """A decoded Pillow image from a regular file in one of ``formats``, after checking that the
    pixel count its header claims is at most ``max_pixels`` (before any pixel is decoded).

    PIL.UnidentifiedImageError when the file is in no format named; UnsafeFileError for too many
    pixels; Pillow's own errors for a damaged file."""
    from PIL import Image
    with open_regular(path, what) as f:
        with warnings.catch_warnings():   # Pillow's own bomb warning: the bound below is the one that counts
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(f, formats=list(formats))
            except Image.DecompressionBombError:
                raise _refuse(path, what, f"its header claims over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
                                          "Pillow's own limit") from None
        try:
            w, h = im.size
            if w * h > max_pixels:
                raise _refuse(path, what, f"its header claims {w}x{h} = {w * h:,} pixels, more than the "
                                          f"{max_pixels:,} allowed (--max-image-pixels raises the bound)")
            im.load()
        except BaseException:
            im.close()
            raise
    return im


def npy_header(f, available: int | None = None, what: str = "", path="") -> tuple:
    """(shape, fortran_order, dtype) of the .npy whose bytes start at ``f``'s position. With
    ``available`` (the bytes from that position to the end of the file or member), the data the
    header claims must be exactly that many bytes: a lying header is refused before anything is
    allocated. ValueError for a malformed header (numpy's own parsers), UnsafeFileError for a lie."""
    start = f.tell()
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported here")
    if dtype.hasobject:
        raise _refuse(path, what, "holds Python objects, which scratchgan never unpickles")
    if available is not None:
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = available - (f.tell() - start)
        if claimed != held:
            raise _refuse(path, what, f"its header claims {shape} {dtype} ({claimed:,} bytes of data) but the "
                                      f"file holds {held:,}")
    return shape, fortran, dtype


def npz_members(zf, what: str = "", path="") -> list:
    """[(member name without .npy, shape, dtype)] of an open ``zipfile.ZipFile`` holding .npy arrays,
    each header checked against the member's size in the archive, and each size against what
    deflate can make of its compressed bytes (at most ~1032x): an archive cannot claim more than it
    holds. UnsafeFileError otherwise; ValueError for a malformed header."""
    members = []
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise _refuse(path, what, f"member {info.filename!r} is not a .npy array")
        if info.file_size > MAX_INFLATION * max(info.compress_size, 1):
            raise _refuse(path, what, f"member {info.filename!r} claims {info.file_size:,} bytes from "
                                      f"{info.compress_size:,} compressed, more than deflate can make")
        with zf.open(info) as f:   # zipfile stops at file_size: the header must account for exactly that
            try:
                shape, _, dtype = npy_header(f, available=info.file_size)
            except UnsafeFileError as exc:
                raise _refuse(path, what, f"member {info.filename!r}: {exc.reason}") from None
        members.append((info.filename[:-4], shape, dtype))
    return members


def read_npy(path, what: str = "") -> np.ndarray:
    """A .npy array from a regular file whose header matches its size (no pickle, no lie)."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        npy_header(f, available=size, what=what, path=path)
        f.seek(0)
        data = f.read()
    return np.load(io.BytesIO(data), allow_pickle=False)


def refuse_link(path, what: str = "") -> None:
    """UnsafeFileError when ``path`` is a symbolic link (dangling or not) or exists and is not a
    regular file: scratchgan writes into a run folder only files it owns there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, what, f"is a link (to {os.readlink(path)}); scratchgan never writes through links "
                                  "in a run folder: remove it")
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, what, f"is {_kind(st.st_mode)}; scratchgan writes a regular file there: remove it")


def append_text(path, text: str) -> None:
    """Append ``text`` (UTF-8) to a regular file, created if absent, never through a link
    (O_NOFOLLOW) and never blocking on a FIFO."""
    path = Path(path)
    refuse_link(path)
    # O_NOFOLLOW: a link planted after the check fails here (ELOOP) instead of being followed
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, 0o666)
    with os.fdopen(fd, "ab") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(path, "", "is not a regular file; scratchgan appends only to its own files")
        f.write(text.encode("utf-8"))
