"""Atomic file writes: a temporary file in the same folder, flushed to disk, then renamed.

A crash at any moment leaves either the old file or the new one under the final name, never a
partial file, and no temporary file behind on an error (checkpoints, downloads, IDX files, PNGs).
A process killed outright (kill -9, power cut) can leave a temporary file ``.NAME.XXXXXXXX.tmp``;
``TEMP_NAME`` matches exactly those, and the trainer removes them from its run folder at the next
start. The final file gets the permissions a plain ``open(path, "w")`` would give (0666 less the
umask), not the private 0600 of ``mkstemp``.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "default_file_mode", "TEMP_NAME"]

# ".<final name>.<mkstemp's 8 random characters>.tmp"
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def default_file_mode() -> int:
    """0666 less the umask: the permissions open(path, "w") gives a new file."""
    umask = os.umask(0)   # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(f.fileno(), default_file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
