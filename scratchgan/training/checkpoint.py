"""Checkpoints as ``.npz`` (arrays) + ``.json`` (everything else); never pickle.

    NAME-<sha>.npz   G.<param>, D.<param>, optG.<state>, optD.<state> (host arrays)
    NAME.json        step, config, random-state counters, data position, the .npz's name and sha256

Both files are written to temporary names and renamed into place, the .json last. The .npz
name carries a prefix of its own checksum, so a new .npz never replaces the one an existing
.json points to: a crash at any moment leaves the previous complete checkpoint or the new
one, never half a file (and re-saving the same step is safe too).
Loading checks the .npz against the sha256 in the .json and reads it with
``allow_pickle=False``, so a checkpoint can never execute code.

A run folder is shared like any archive, so the .json is untrusted: the arrays file it names
must be exactly ``NAME-<first 12 hex digits of its sha256>.npz`` beside it (a name derived
from the checksum, never a path). Anything else is refused before any file is read or
deleted (docs/reliability.md).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from .. import backend
from ..files.atomic import atomic_write_bytes
from ..files.safeio import UnsafeFileError, npz_members, read_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "read_meta", "check_meta", "arrays_path", "latest_checkpoint",
           "list_checkpoints", "parameter_bound", "remove_checkpoint", "CheckpointError", "CHECKPOINT_NAME",
           "atomic_write_bytes", "MAX_META_BYTES", "check_arrays", "error_text"]

MAX_META_BYTES = 16 << 20   # a checkpoint's .json: settings, counters and class names, never this large

# The trainer's checkpoints: step_0000020.json (+ step_0000020-<sha>.npz); the step is in the name.
CHECKPOINT_NAME = re.compile(r"^step_(\d{7,})\.json$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupted, hostile or does not fit the model."""


def save_checkpoint(path_stem, arrays: dict, meta: dict) -> Path:
    """Save host copies of ``arrays`` and the JSON-able ``meta``; returns the .json path."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{k: backend.to_numpy(v) for k, v in arrays.items()})
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    meta_path = stem.with_suffix(".json")
    npz_path = meta_path.parent / _npz_name(meta_path, digest)
    previous = _previous_arrays(meta_path)
    atomic_write_bytes(npz_path, data)
    meta = dict(meta, npz_sha256=digest, npz_file=npz_path.name)
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    if previous is not None and previous != npz_path:  # the old arrays of a re-saved step
        previous.unlink(missing_ok=True)
    return meta_path


def _npz_name(meta_path: Path, digest: str) -> str:
    return f"{meta_path.stem}-{digest[:12]}.npz"


def read_meta(meta_path) -> dict:
    """A checkpoint's .json as a dict; CheckpointError naming the file if it is not one."""
    meta_path = Path(meta_path)
    try:
        meta = json.loads(read_bytes(meta_path, max_bytes=MAX_META_BYTES))
    except UnsafeFileError as exc:
        raise CheckpointError(f"{meta_path}: cannot read it: {exc.reason}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: checkpoint metadata not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{meta_path}: cannot read it ({exc.strerror or exc})") from None
    except RecursionError:
        raise CheckpointError(f"{meta_path}: not valid JSON (nested too deeply)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: not a scratchgan checkpoint (the JSON is a {type(meta).__name__}, "
                              "not an object)")
    return meta


def arrays_path(meta_path, meta: dict) -> Path:
    """The .npz that ``meta`` (read from ``meta_path``) names, after checking that the name is
    exactly NAME-<sha[:12]>.npz beside the .json. Never a path taken from the file."""
    meta_path = Path(meta_path)
    digest, name = meta.get("npz_sha256"), meta.get("npz_file")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise CheckpointError(f"{meta_path}: not a scratchgan checkpoint ('npz_sha256' must be a sha256 hex "
                              f"digest, got {_short(digest)})")
    expected = _npz_name(meta_path, digest)
    if name != expected:
        raise CheckpointError(f"{meta_path}: 'npz_file' must be {expected!r} (named by the checkpoint and its "
                              f"checksum), got {_short(name)}; refusing to read or delete it")
    return meta_path.parent / expected


def _short(value, limit=80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _previous_arrays(meta_path: Path):
    """The .npz an existing, valid .json points to (to remove after a re-save), else None."""
    try:
        return arrays_path(meta_path, read_meta(meta_path))
    except CheckpointError:
        return None


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint (its .json, or the stem) -> (arrays, meta)."""
    meta_path = Path(path)
    if meta_path.suffix == ".npz":  # NAME-<sha>.npz -> NAME.json
        meta_path = meta_path.with_name(meta_path.stem.rsplit("-", 1)[0] + ".json")
    elif meta_path.suffix != ".json":
        meta_path = meta_path.with_suffix(".json")
    meta = read_meta(meta_path)
    npz_path = arrays_path(meta_path, meta)
    try:
        data = read_bytes(npz_path)
    except UnsafeFileError as exc:
        raise CheckpointError(f"{npz_path}: cannot read it: {exc.reason}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{npz_path}: checkpoint arrays not found (metadata {meta_path.name} exists)") from None
    except OSError as exc:
        raise CheckpointError(f"{npz_path}: cannot read it ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["npz_sha256"]:
        raise CheckpointError(f"{npz_path}: checksum mismatch (expected {meta['npz_sha256']}, got {digest}); "
                              "the file is truncated or corrupted")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            npz_members(zf)          # every header against its member's size, before anything is allocated
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, MemoryError, zipfile.BadZipFile, NotImplementedError) as exc:
        # e.g. an object array: refused rather than unpickled
        raise CheckpointError(f"{npz_path}: not a plain-array checkpoint ({type(exc).__name__}: "
                              f"{_short(str(exc), 200)})") from None
    return arrays, meta


def check_meta(meta: dict, meta_path="checkpoint") -> dict:
    """The one validation of a checkpoint's metadata that every command relies on (CheckpointError
    naming the file and the field): the counters are integers >= 0, the dtype is float32 or float64,
    "model" is an object naming its kind, "class_names" (if any) a list of strings."""
    for key in ("step", "batch_index", "noise_calls"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckpointError(f"{meta_path}: checkpoint metadata {key!r} must be an integer >= 0, "
                                  f"got {_short(v)}")
    if meta.get("dtype", "float32") not in ("float32", "float64"):
        raise CheckpointError(f"{meta_path}: checkpoint metadata 'dtype' must be float32 or float64, "
                              f"got {_short(meta.get('dtype'))}")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("kind"), str):
        raise CheckpointError(f"{meta_path}: checkpoint metadata 'model' must be an object with a 'kind', "
                              f"got {_short(model)}")
    names = meta.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{meta_path}: checkpoint metadata 'class_names' must be a list of strings, "
                              f"got {_short(names)}")
    return meta


def parameter_bound(meta_path, meta: dict) -> int:
    """The most weights a model described by this checkpoint can have: its arrays file's size over
    4 bytes (every weight is stored there at float32 or wider). Building the model the .json
    describes is held to this (``init.parameter_budget``), since the .json's settings are not
    covered by the arrays' checksum: a crafted one could otherwise ask for gigabytes."""
    try:
        return os.stat(arrays_path(meta_path, meta)).st_size // 4
    except OSError:
        return 0


def remove_checkpoint(meta_path) -> None:
    """Delete a checkpoint's .json (first, so it is never left pointing at nothing) and .npz.

    A .json that names any file other than its own arrays is refused (CheckpointError) and
    nothing is deleted; an unreadable .json is removed alone (its arrays, if any, become an
    orphan that ``runfolder.remove_leftovers`` removes)."""
    meta_path = Path(meta_path)
    try:
        meta = read_meta(meta_path)
    except CheckpointError:
        npz_path = None
    else:
        npz_path = arrays_path(meta_path, meta)
    meta_path.unlink(missing_ok=True)
    if npz_path is not None:
        npz_path.unlink(missing_ok=True)


def list_checkpoints(folder) -> list:
    """The trainer's checkpoints in ``folder`` as [(step, path of the .json)], oldest first.

    Only files named step_NNNNNNN.json count (the step is read from the name, so a foreign or
    damaged .json can neither hide nor impersonate one)."""
    found = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    for path in entries:
        m = CHECKPOINT_NAME.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest_checkpoint(folder):
    """The .json of the newest checkpoint (by the step in its name) in ``folder``, or None.

    It is not opened here: a damaged newest checkpoint is reported when it is loaded, rather
    than silently passed over for an older one."""
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def check_arrays(arrays: dict) -> None:
    """CheckpointError unless every array is of a real number type and, floating, finite (a saved
    run never holds NaN/inf)."""
    for name, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise CheckpointError(f"checkpoint array {name!r} has dtype {a.dtype}, not a real number type")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"checkpoint array {name!r} holds NaN or inf values")


def error_text(exc) -> str:
    """An exception's text without the quotes KeyError puts around it."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
