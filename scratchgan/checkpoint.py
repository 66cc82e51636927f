"""Checkpoints as ``.npz`` (arrays) + ``.json`` (everything else); never pickle.

    NAME.npz   G.<param>, D.<param>, optG.<state>, optD.<state> (host arrays)
    NAME.json  step, config, random-state counters, data position, and the sha256 of NAME.npz

Both files are written to temporary names and renamed into place (the .json last), so a
crash leaves either the previous complete checkpoint or the new one, never half a file.
Loading checks the .npz against the sha256 in the .json and reads it with
``allow_pickle=False``, so a checkpoint can never execute code.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import backend

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "CheckpointError", "atomic_write_bytes"]


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupted or does not fit the model."""


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path_stem, arrays: dict, meta: dict) -> Path:
    """Save host copies of ``arrays`` and the JSON-able ``meta`` as PATH.npz + PATH.json."""
    import io
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{k: backend.to_numpy(v) for k, v in arrays.items()})
    data = buf.getvalue()
    atomic_write_bytes(stem.with_suffix(".npz"), data)
    meta = dict(meta, npz_sha256=hashlib.sha256(data).hexdigest(), npz_file=stem.with_suffix(".npz").name)
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True).encode())
    return stem.with_suffix(".json")


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint (PATH.json or PATH.npz or the stem) -> (arrays, meta)."""
    stem = Path(path)
    if stem.suffix in (".json", ".npz"):
        stem = stem.with_suffix("")
    meta_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not meta_path.exists():
        raise CheckpointError(f"{meta_path}: checkpoint metadata not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from None
    if not npz_path.exists():
        raise CheckpointError(f"{npz_path}: checkpoint arrays not found (metadata {meta_path.name} exists)")
    data = npz_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("npz_sha256"):
        raise CheckpointError(f"{npz_path}: checksum mismatch (expected {meta.get('npz_sha256')}, got {digest}); "
                              "the file is truncated or corrupted")
    import io
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, meta


def latest_checkpoint(folder):
    """The newest complete checkpoint (by step) in ``folder``, or None."""
    best = None
    for meta_path in Path(folder).glob("*.json"):
        try:
            step = json.loads(meta_path.read_text())["step"]
        except (ValueError, KeyError, OSError):
            continue
        if best is None or step > best[0]:
            best = (step, meta_path)
    return None if best is None else best[1]
