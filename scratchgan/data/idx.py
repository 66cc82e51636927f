"""Reader and writer for the IDX format used by MNIST and its relatives.

Layout: 2 zero bytes, a type code, the number of dimensions, then one
big-endian uint32 per dimension, then the items in C order, big-endian.
Files may be gzipped; that is detected by the gzip magic, not the suffix.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..files.atomic import atomic_write_bytes
from ..files.safeio import UnsafeFileError, read_bytes

__all__ = ["DataError", "read_idx", "write_idx", "parse_idx", "IDX_TYPES"]


class DataError(ValueError):
    """A data file is missing, malformed, or fails its checksum."""


# type code -> big-endian dtype of the stored items
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _decompress(data: bytes, label: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{label}: corrupted gzip stream ({exc})") from exc


def parse_idx(data: bytes, label: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (raw or gzipped) to a native-endian array of the stored shape."""
    if data[:2] == _GZIP_MAGIC:
        data = _decompress(data, label)
    if len(data) < 4:
        raise DataError(f"{label}: too short for an IDX header: {len(data)} bytes, need at least 4")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{label}: bad IDX magic: expected first two bytes 00 00, "
                        f"found {data[0]:02x} {data[1]:02x} (not an IDX file?)")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataError(f"{label}: unknown IDX type code 0x{code:02X}, expected one of {known}")
    if ndim == 0:
        raise DataError(f"{label}: IDX header says 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{label}: truncated header: {ndim} dimensions need {header} bytes, "
                        f"file has {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow on a bogus header
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else f"{found - expected} extra bytes"
        shape = "x".join(map(str, dims))
        raise DataError(f"{label}: {what}: header says {shape} = {expected} bytes of data, "
                        f"file has {found}")
    arr = np.frombuffer(data, dtype, offset=header).reshape(dims)
    # astype copies: the result is writable, native-endian and owns its memory
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or gzipped) -> array of the shape in its header."""
    path = Path(path)
    try:
        data = read_bytes(path)    # a regular file: a FIFO or a device is refused, never read forever
    except (OSError, UnsafeFileError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    return parse_idx(data, str(path))


def _encode(array) -> bytes:
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _CODE_OF:
        raise DataError(f"write_idx: dtype {arr.dtype} has no IDX type code; use one of "
                        "uint8, int8, int16, int32, float32, float64")
    if not 1 <= arr.ndim <= 255:
        raise DataError(f"write_idx: IDX needs 1..255 dimensions, array has {arr.ndim}")
    if any(d >= 2**32 for d in arr.shape):
        raise DataError(f"write_idx: dimension too large for IDX: {arr.shape}")
    code = _CODE_OF[native]
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return head + np.ascontiguousarray(arr, IDX_TYPES[code]).tobytes()


def write_idx(path, array) -> None:
    """Write `array` as IDX to `path` (gzipped when it ends in .gz), atomically."""
    path = Path(path)
    payload = _encode(array)
    if path.suffix == ".gz":
        # mtime=0 and no file name: identical arrays give identical files
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)


