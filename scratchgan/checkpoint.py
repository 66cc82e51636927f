"""Checkpoints as ``.npz`` (arrays) + ``.json`` (everything else); never pickle.

    NAME-<sha>.npz   G.<param>, D.<param>, optG.<state>, optD.<state> (host arrays)
    NAME.json        step, config, random-state counters, data position, the .npz's name and sha256

Both files are written to temporary names and renamed into place, the .json last. The .npz
name carries a prefix of its own checksum, so a new .npz never replaces the one an existing
.json points to: a crash at any moment leaves the previous complete checkpoint or the new
one, never half a file (and re-saving the same step is safe too).
Loading checks the .npz against the sha256 in the .json and reads it with
``allow_pickle=False``, so a checkpoint can never execute code.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from . import backend
from .atomic import atomic_write_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "remove_checkpoint", "CheckpointError",
           "atomic_write_bytes"]


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupted or does not fit the model."""


def save_checkpoint(path_stem, arrays: dict, meta: dict) -> Path:
    """Save host copies of ``arrays`` and the JSON-able ``meta``; returns the .json path."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{k: backend.to_numpy(v) for k, v in arrays.items()})
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    npz_path = stem.parent / f"{stem.name}-{digest[:12]}.npz"
    meta_path = stem.with_suffix(".json")
    previous = _npz_of(meta_path) if meta_path.exists() else None
    atomic_write_bytes(npz_path, data)
    meta = dict(meta, npz_sha256=digest, npz_file=npz_path.name)
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    if previous is not None and previous != npz_path:  # the old arrays of a re-saved step
        previous.unlink(missing_ok=True)
    return meta_path


def _npz_of(meta_path: Path):
    try:
        return meta_path.parent / json.loads(meta_path.read_text())["npz_file"]
    except (ValueError, KeyError, OSError):
        return None


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint (its .json, or the stem) -> (arrays, meta)."""
    meta_path = Path(path)
    if meta_path.suffix == ".npz":  # NAME-<sha>.npz -> NAME.json
        meta_path = meta_path.with_name(meta_path.stem.rsplit("-", 1)[0] + ".json")
    elif meta_path.suffix != ".json":
        meta_path = meta_path.with_suffix(".json")
    if not meta_path.exists():
        raise CheckpointError(f"{meta_path}: checkpoint metadata not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("npz_file"), str):
        raise CheckpointError(f"{meta_path}: not a scratchgan checkpoint (no 'npz_file' entry)")
    npz_path = meta_path.parent / Path(meta["npz_file"]).name  # never a path outside the folder
    if not npz_path.exists():
        raise CheckpointError(f"{npz_path}: checkpoint arrays not found (metadata {meta_path.name} exists)")
    data = npz_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("npz_sha256"):
        raise CheckpointError(f"{npz_path}: checksum mismatch (expected {meta.get('npz_sha256')}, got {digest}); "
                              "the file is truncated or corrupted")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # e.g. an object array: refused rather than unpickled
        raise CheckpointError(f"{npz_path}: not a plain-array checkpoint ({exc})") from None
    return arrays, meta


def remove_checkpoint(meta_path) -> None:
    """Delete a checkpoint's .json (first, so it is never left pointing at nothing) and .npz."""
    meta_path = Path(meta_path)
    npz_path = _npz_of(meta_path)
    meta_path.unlink(missing_ok=True)
    if npz_path is not None:
        npz_path.unlink(missing_ok=True)


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
