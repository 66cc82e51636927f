"""The run folder: which files in it scratchgan wrote, and the only ones it ever deletes.

    runs/dcgan/
        config.json  metrics.csv  samples.png  losses.png          (train)
        monitor.png  progress.gif  report.html                     (train, per interval)
        samples/step_0000500.png  monitor/step_0000500.png ...      (train, per interval)
        checkpoints/step_0001000.json  step_0001000-<sha>.npz ...  (train)
        evaluation.json  nearest_neighbours.png                    (evaluate)
        sample_seed1.png  interpolate_slerp.png  inpaint_*.png     (sample, interpolate, inpaint)

A folder of a user's may hold other things (notes, data, another program's output). So
``--overwrite`` removes only files whose names match ``RUN_FILES`` (and the folders of those
it emptied), and says which other files it left; ``remove_leftovers`` removes only the
temporary files of an interrupted atomic write and checkpoint arrays that no checkpoint
names. Symbolic links are removed as links, never followed to delete what they point to, and
a run's samples/, monitor/ and checkpoints/ must be real folders and its files regular files,
never links (``check_run_folder``).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .atomic import TEMP_NAME
from .checkpoint import CHECKPOINT_NAME, CheckpointError, arrays_path, read_meta
from .safeio import UnsafeFileError, refuse_link

__all__ = ["RUN_FILES", "RunFolderError", "is_run_file", "run_files", "clear_run", "remove_leftovers",
           "check_writable", "check_run_folder"]

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
