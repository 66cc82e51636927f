"""Short training runs of every model family, loss and option, bit for bit as recorded.

Each case trains a few steps through the command line on the bundled data and compares the
SHA-256 of every checkpoint array, the checkpoints' counters and every picture the run wrote
(sample and monitor grids, the loss plot) with ``tests/data/run_checksums.json``. A change that
only reorganises code must leave them all unchanged; a change of the numbers fails here and says
which run and which file.

Float rounding depends on the BLAS kernels, NumPy, Matplotlib and Pillow, so the record holds the
platform it was made on; elsewhere the test is skipped, saying so. Re-record (after checking that a
change of numbers is intended) with

    python tests/test_run_checksums.py --record
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RECORD = Path(__file__).with_name("data") / "run_checksums.json"
SHORT = ["--steps", "6", "--sample-every", "3", "--checkpoint-every", "3", "--log-every", "2", "--quiet",
         "--threads", "1", "--seed", "3"]

# name: the train flags after SHORT ("resume": train 3 steps, then --resume to 6; "ranks": mpiexec -n 2)
CASES = {
    "mlp": [],
    "mlp-tutorial": ["--model", "mlp-tutorial"],
    "cgan": ["--model", "cgan"],
    "cgan-tutorial": ["--model", "cgan-tutorial"],
    "dcgan": ["--model", "dcgan"],
    "dcgan-tutorial": ["--model", "dcgan-tutorial"],
    "wgan": ["--loss", "wgan", "--batch-size", "16"],
    "wgan-gp": ["--model", "dcgan", "--loss", "wgan-gp", "--batch-size", "16"],
    "cgan-wgan-gp": ["--model", "cgan-tutorial", "--loss", "wgan-gp", "--batch-size", "16"],
    "hinge": ["--loss", "hinge"],
    "lsgan": ["--model", "cgan", "--loss", "lsgan"],
    "noise-decay-smoothing": ["--model", "mlp-tutorial", "--instance-noise", "0.2", "--lr-decay", "linear",
                              "--label-smoothing", "0.1", "--k", "2", "--g-loss", "minimax"],
    "no-ema-float64": ["--model", "dcgan", "--no-ema", "--dtype", "float64", "--batch-size", "8"],
    "folder-rgb32": ["--model", "dcgan", "--dataset", "folder:{shapes}", "--batch-size", "8"],
    "resume": [],
    "ranks": ["--batch-size", "16"],
}


def platform_key() -> dict:
    """What float rounding and the pictures' bytes depend on."""
    import matplotlib
    import PIL
    import scipy
    import scipy.linalg  # noqa: F401  (its own BLAS, loaded by other tests or not: listed either way)
    from threadpoolctl import threadpool_info
    blas = sorted(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
                  if i.get("user_api") == "blas")
    return {"machine": platform.machine(), "numpy": np.__version__, "scipy": scipy.__version__,
            "matplotlib": matplotlib.__version__, "pillow": PIL.__version__, "blas": blas,
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "")}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def checksums(run: Path) -> dict:
    """{file or checkpoint array: sha} of what a run folder holds that must not change."""
    out = {}
    for meta_path in sorted((run / "checkpoints").glob("step_*.json")):
        meta = json.loads(meta_path.read_text())
        out[f"{meta_path.name}:counters"] = [meta["step"], meta["batch_index"], meta["noise_calls"]]
        with np.load(run / "checkpoints" / meta["npz_file"], allow_pickle=False) as npz:
            for name in sorted(npz.files):
                a = npz[name]
                out[f"{meta_path.name}:{name}"] = f"{a.dtype}{list(a.shape)}:{_sha(np.ascontiguousarray(a).tobytes())}"
    pictures = ["samples.png", "monitor.png", "losses.png", *[f"samples/{p.name}" for p in (run / "samples").glob("*")],
                *[f"monitor/{p.name}" for p in (run / "monitor").glob("*")]]
    for rel in sorted(pictures):
        out[rel] = _sha((run / rel).read_bytes())
    return out


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def _env():
    env = dict(os.environ, MPLBACKEND="Agg")
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        env.pop(name, None)
    return env


def train_case(name: str, tmp: Path) -> Path:
    """Run case ``name`` in ``tmp``; returns its run folder."""
    from scratchgan import cli
    flags = list(CASES[name])
    if "folder:{shapes}" in flags:
        from scratchgan.data import make_shapes_folder
        make_shapes_folder(tmp / "shapes", n=40, size=32, seed=0)
        flags[flags.index("folder:{shapes}")] = f"folder:{tmp / 'shapes'}"
    out = tmp / "run"
    if name == "ranks":
        mpiexec = _mpiexec()
        if mpiexec is None:
            pytest.skip("needs mpi4py and mpiexec: pip install '.[mpi]'")
        done = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "scratchgan", "train", "--out", str(out),
                               *SHORT, *flags], capture_output=True, text=True, timeout=300, env=_env())
        assert done.returncode == 0, done.stderr[-3000:]
        return out
    if name == "resume":
        first = [a if a != "6" else "3" for a in SHORT]      # --steps 3, then --resume to 6
        assert cli.main(["train", "--out", str(out), *first, *flags]) == 0
        assert cli.main(["train", "--out", str(out), "--resume", "--steps", "6", "--quiet", "--threads", "1"]) == 0
        return out
    assert cli.main(["train", "--out", str(out), *SHORT, *flags]) == 0
    return out


def _record() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


@pytest.mark.parametrize("name", list(CASES))
def test_run_is_bit_for_bit_as_recorded(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    record = _record()
    if record.get("platform") != platform_key():
        pytest.skip(f"checksums were recorded on {record.get('platform')}, this is {platform_key()}; "
                    "re-record with python tests/test_run_checksums.py --record")
    got = checksums(train_case(name, tmp_path))
    want = record["runs"][name]
    assert sorted(got) == sorted(want), f"{name}: other files or arrays than recorded"
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"{name}: {len(differ)} of {len(want)} differ from the record, e.g. {differ[:5]}"


def test_a_resumed_run_is_the_uninterrupted_one(tmp_path):
    """Not only as recorded: the resumed run's last checkpoint is the plain run's."""
    record = _record()
    if record.get("platform") != platform_key():
        pytest.skip("no record for this platform")
    final = lambda run: {k: v for k, v in record["runs"][run].items() if k.startswith("step_0000006.json:")}  # noqa: E731
    assert final("resume") == final("mlp") and final("mlp")


def test_ranks_as_threads_are_bit_for_bit_the_mpiexec_ranks(tmp_path, monkeypatch):
    """`train --ranks 2` (threads of one process, no MPI) writes the recorded `mpiexec -n 2` run's
    checkpoints and pictures: the same rows per rank, the same sums (a0 + a1) in every all-reduce."""
    from scratchgan import cli
    monkeypatch.setenv("MPLBACKEND", "Agg")
    record = _record()
    if record.get("platform") != platform_key():
        pytest.skip("no record for this platform")
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), "--ranks", "2", *SHORT, *CASES["ranks"]]) == 0
    got, want = checksums(out), record["runs"]["ranks"]
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"{len(differ)} of {len(want)} differ from the mpiexec run, e.g. {differ[:5]}"


def main():
    import tempfile
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    os.environ["MPLBACKEND"] = "Agg"
    runs = {}
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            runs[name] = checksums(train_case(name, Path(tmp)))
            print(name, len(runs[name]), "checksums", flush=True)
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps({"platform": platform_key(), "runs": runs}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
