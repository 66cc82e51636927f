"""The run folder: what a run writes there, how it is resumed and loaded, and the only files
it ever deletes.

    runs/dcgan/
        config.json  metrics.csv  samples.png  losses.png          (train)
        monitor.png  progress.gif  report.html                     (train, per interval)
        samples/step_0000500.png  monitor/step_0000500.png ...      (train, per interval)
        checkpoints/step_0001000.json  step_0001000-<sha>.npz ...  (train)
        evaluation.json  nearest_neighbours.png                    (evaluate)
        sample_seed1.png  interpolate_slerp.png  inpaint_*.png     (sample, interpolate, inpaint)

``RunFolder`` writes a run (config.json, metrics.csv, checkpoints and their pruning) and finds
the checkpoint to resume from; ``load_run`` builds the trained model of a run folder.

A folder of a user's may hold other things (notes, data, another program's output). So
``--overwrite`` removes only files whose names match ``RUN_FILES`` (and the folders of those
it emptied), and says which other files it left; ``remove_leftovers`` removes only the
temporary files of an interrupted atomic write and checkpoint arrays that no checkpoint
names. Symbolic links are removed as links, never followed to delete what they point to, and
a run's samples/, monitor/ and checkpoints/ must be real folders and its files regular files,
never links (``check_run_folder``).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..files.atomic import TEMP_NAME, atomic_write_bytes
from ..files.safeio import UnsafeFileError, append_text, read_bytes, refuse_link
from ..init import parameter_budget
from ..models import GAN, MODELS, build
from .checkpoint import (CHECKPOINT_NAME, CheckpointError, arrays_path, check_arrays, check_meta, error_text,
                         latest_checkpoint, list_checkpoints, load_checkpoint, read_meta, remove_checkpoint,
                         save_checkpoint)

__all__ = ["RunFolder", "load_run", "METRIC_FIELDS", "RUN_FILES", "RunFolderError", "is_run_file", "run_files",
           "clear_run", "remove_leftovers", "check_writable", "check_run_folder"]

METRIC_FIELDS = ["step", "epoch", "d_loss", "g_loss", "d_real", "d_fake", "time_s", "samples_per_s"]

_STEP = r"step_\d{7,}"
RUN_FILES = [re.compile(p) for p in (
    r"config\.json", r"metrics\.csv", r"samples\.png", r"losses\.png",
    rf"samples/{_STEP}\.png",
    r"monitor\.png", rf"monitor/{_STEP}\.png", r"progress\.gif", r"report\.html",
    rf"checkpoints/{_STEP}\.json", rf"checkpoints/{_STEP}-[0-9a-f]{{12}}\.npz",
    r"evaluation\.json", r"nearest_neighbours\.png",
    r"sample_seed-?\d+\.png", r"interpolate_(linear|slerp|sweep|classes)\.png", r"inpaint_[\w.-]+\.(png|npy)",
)]
_RUN_SUBFOLDERS = ("samples", "monitor", "checkpoints")


class RunFolderError(ValueError):
    """A run folder (or an output path) cannot be used: not a folder, not writable, or it holds
    something the command will not replace."""


def is_run_file(relative: str) -> bool:
    """True for a path (relative to the run folder, with /) that scratchgan writes, or the
    temporary file of such a write."""
    folder, _, name = relative.rpartition("/")
    if TEMP_NAME.match(name):   # .NAME.XXXXXXXX.tmp -> NAME
        name = name[1:].rsplit(".", 2)[0]
        relative = f"{folder}/{name}" if folder else name
    return any(p.fullmatch(relative) for p in RUN_FILES)


def _walk(folder: Path):
    """(relative path, path) of every file under ``folder``, at most one level down, links not followed."""
    for entry in _scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            if entry.name in _RUN_SUBFOLDERS:
                for sub in _scandir(Path(entry.path)):
                    if not sub.is_dir(follow_symlinks=False):
                        yield f"{entry.name}/{sub.name}", Path(sub.path)
        else:
            yield entry.name, Path(entry.path)


def _scandir(folder: Path):
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def run_files(folder) -> tuple[list, list]:
    """(files scratchgan wrote, other files) directly in ``folder`` and its samples/, monitor/
    and checkpoints/ folders. Other folders are left alone and not listed."""
    ours, foreign = [], []
    for rel, path in _walk(Path(folder)):
        (ours if is_run_file(rel) else foreign).append(path)
    return ours, foreign


def clear_run(folder) -> list:
    """Delete the files a run wrote in ``folder`` (``--overwrite``); returns the other files,
    which are kept. samples/, monitor/ and checkpoints/ are removed when that leaves them empty."""
    folder = Path(folder)
    ours, foreign = run_files(folder)
    # checkpoints' .json first, so that a crash half-way never leaves one naming missing arrays
    for path in sorted(ours, key=lambda p: p.suffix != ".json"):
        path.unlink(missing_ok=True)
    for name in _RUN_SUBFOLDERS:
        try:
            (folder / name).rmdir()       # only when empty, never through a link
        except OSError:
            pass
    return foreign


def remove_leftovers(folder) -> list:
    """Remove what an interrupted run left behind: temporary files of atomic writes
    (``.NAME.XXXXXXXX.tmp`` of run files) and checkpoint arrays that no checkpoint .json
    names. Returns the removed paths. Call it only when no other process writes the folder."""
    folder = Path(folder)
    ours, _ = run_files(folder)
    named = set()
    for meta_path in (p for p in ours if CHECKPOINT_NAME.match(p.name)):
        try:
            named.add(arrays_path(meta_path, read_meta(meta_path)).name)
        except CheckpointError:
            continue
    removed = []
    for path in ours:
        orphan = path.suffix == ".npz" and path.parent.name == "checkpoints" and path.name not in named
        if TEMP_NAME.match(path.name) or orphan:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def check_run_folder(folder, files: bool = True) -> None:
    """RunFolderError unless samples/, monitor/ and checkpoints/ are absent or real folders, and every
    file of the run there (``RUN_FILES``) is a regular file, not a link or a FIFO. A link there (in a
    run folder someone shared) would send the run's writes, appends and pruning to another place; a
    FIFO would block the next read of it. ``files=False`` checks the folders alone (``--overwrite``
    removes such links as links, never following them)."""
    for name in _RUN_SUBFOLDERS:
        path = Path(folder) / name
        if path.is_symlink():
            raise RunFolderError(f"{path} is a link (to {os.readlink(path)}); scratchgan writes checkpoints and "
                                 "samples only into real folders of the run (link the whole run folder instead)")
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{path} is a file; the run needs a folder there")
    for path in run_files(folder)[0] if files else ():
        try:
            refuse_link(path)
        except UnsafeFileError as exc:
            raise RunFolderError(str(exc)) from None


def check_writable(folder, what: str) -> Path:
    """Prove, before any long work, that files can be written in ``folder``: in it when it exists,
    else in its nearest existing parent (in which it will be made). Nothing is created, so a
    command refused later leaves no empty folder behind. RunFolderError naming ``what`` (e.g.
    "--out runs/x") otherwise."""
    folder = Path(folder)
    probe = folder
    try:
        while not probe.exists() and probe != probe.parent and not probe.is_symlink():
            probe = probe.parent
        if not probe.is_dir():
            where = "exists and is not a folder" if probe == folder else "lies under a file, not a folder"
            raise RunFolderError(f"{what}: {folder} {where}")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except RunFolderError:
        raise
    except OSError as exc:
        raise RunFolderError(f"{what}: cannot write in {probe} ({exc.strerror or exc})") from None
    return folder


class RunFolder:
    """The run folder a training run writes (rank 0 of a data-parallel run alone):

        run = RunFolder("runs/dcgan"); run.start(fresh=True); run.write_config(meta)
        run.append_metrics(row); run.save_checkpoint(arrays, meta, keep=3)
        arrays, meta, path = run.newest_checkpoint()      # to resume; None when there is none
    """

    def __init__(self, path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.metrics = self.path / "metrics.csv"
        self._started = False

    def start(self, fresh: bool) -> None:
        """Once per process: make the folder, refuse links and FIFOs among its files, clear what an
        interrupted run left behind, and start a new metrics log for a ``fresh`` run."""
        if self._started:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        check_run_folder(self.path)
        remove_leftovers(self.path)
        if fresh:                              # a new run never appends to an old log
            self.metrics.unlink(missing_ok=True)
        self._started = True

    def write_config(self, meta: dict) -> None:
        atomic_write_bytes(self.path / "config.json", (json.dumps(meta, indent=2) + "\n").encode())

    def append_metrics(self, row: dict) -> None:
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
        if not os.path.lexists(self.metrics):
            w.writeheader()
        w.writerow(row)
        append_text(self.metrics, buf.getvalue())   # never through a link planted in the run folder

    def truncate_metrics(self, step: int) -> None:
        """Drop log rows written after ``step``'s checkpoint (a crash between checkpoints). A log that
        cannot be read as this run's metrics is refused (RunFolderError), not rewritten."""
        path = self.metrics
        if not os.path.lexists(path):
            return
        try:
            text = read_bytes(path, "metrics log").decode("utf-8")
            if not text.endswith("\n"):             # a row torn by a crash mid-append: dropped
                text = text[:text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(text, newline=""))
            rows = list(reader)
            if reader.fieldnames != METRIC_FIELDS or any(None in r or None in r.values() for r in rows):
                raise ValueError("the header or a row does not have the columns " + ",".join(METRIC_FIELDS))
            rows = [r for r in rows if int(r["step"]) <= step]
        except UnsafeFileError:
            raise
        except (ValueError, UnicodeDecodeError, csv.Error, OSError) as exc:
            raise RunFolderError(f"{path}: cannot be read as this run's metrics ({exc}); move it away to resume "
                                 "(a new one is started)") from None
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(path, buf.getvalue().encode())

    def save_checkpoint(self, arrays: dict, meta: dict, keep: int):
        """Write checkpoints/step_NNNNNNN (meta["step"]) and keep the newest ``keep``: older ones
        are removed only after the new one is complete. Returns the .json path."""
        path = save_checkpoint(self.checkpoints / f"step_{meta['step']:07d}", arrays, meta)
        for _, old in list_checkpoints(self.checkpoints)[:-keep]:
            remove_checkpoint(old)
        return path

    def newest_checkpoint(self):
        """(arrays, meta, path) of the newest checkpoint, or None when there is none.

        Every checkpoint's metadata in the folder is checked first (the arrays file each names
        must be its own), so that pruning later can never delete a file the run did not write;
        the newest must load, or CheckpointError says why (an older one is not silently used)."""
        found = list_checkpoints(self.checkpoints)
        if not found:
            return None
        for _, meta_path in found:
            try:
                meta = read_meta(meta_path)
            except CheckpointError:
                continue               # unreadable: it names nothing, pruning removes the .json alone
            arrays_path(meta_path, meta)   # raises for a hostile name, before anything is touched
        path = found[-1][1]
        arrays, meta = load_checkpoint(path)
        return arrays, meta, path


def load_run(run_dir, checkpoint=None, use_ema: bool = True):
    """(gan, meta) from a run folder's newest (or a given) checkpoint, on the selected backend.
    With ``use_ema`` (the default) G gets the moving average of its weights when the run kept one
    (--ema); meta["weights"] says which ("ema" or "raw"). CheckpointError naming the file when it
    is missing, damaged or does not describe a model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder" if not run_dir.exists() else
                              f"{run_dir}: not a run folder (a file)")
    path = checkpoint or latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found in {run_dir / 'checkpoints'}")
    arrays, meta = load_checkpoint(path)
    check_meta(meta, path)
    try:
        # the .json's settings are not covered by the arrays' checksum: build no more weights than they carry
        with parameter_budget(sum(a.nbytes for a in arrays.values()) // 4, "the model its metadata describes"):
            gan = _build_from_meta(meta)
        check_arrays(arrays)
        g_prefix = "Gema." if use_ema and any(k.startswith("Gema.") for k in arrays) else "G."
        meta = dict(meta, weights="ema" if g_prefix == "Gema." else "raw")
        for net, prefix in ((gan.G, g_prefix), (gan.D, "D.")):
            try:
                part = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                if prefix == "Gema.":
                    part.pop("updates", None)      # the average's update count, not a weight
                net.load_state_dict(part)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{prefix[0]}: {error_text(exc)}") from None
    except (CheckpointError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: does not describe a model this version can load "
                              f"({error_text(exc)})") from None
    return gan, meta


def _build_from_meta(meta) -> GAN:
    """The model a checkpoint's metadata describes (its "model" entry: kind and builder arguments)."""
    model = meta.get("model")
    if not isinstance(model, dict) or model.get("kind") not in MODELS:
        raise CheckpointError(f"'model' must name one of {', '.join(MODELS)}, got {model!r:.100}")
    if meta.get("dtype", "float32") not in ("float32", "float64"):
        raise CheckpointError(f"'dtype' must be float32 or float64, got {meta.get('dtype')!r:.40}")
    model = dict(model)
    gan = build(model.pop("kind"), **model)
    if meta.get("dtype") == "float64":
        gan.astype(np.float64)
    return gan
