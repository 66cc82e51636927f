"""BLAS threads: --threads, $SCRATCHGAN_THREADS, and the default that leaves a busy core alone
(backend.idle_cores), measured by `scratchgan bench --contention` (docs/performance.md)."""
from __future__ import annotations

import os

import pytest

from scratchgan import backend, cli
from scratchgan.evaluation.bench import busy_core

pytest.importorskip("threadpoolctl")


def test_set_threads_sets_the_blas_pool_and_refuses_nonsense(restore_threads):
    backend.set_threads(1)
    assert backend.threads() == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(backend.BackendError, match="threads must be an integer >= 1"):
            backend.set_threads(bad)


def test_threads_flag_and_environment(restore_threads, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SCRATCHGAN_THREADS", "two")
    assert cli.main(["bench", "--models", "mlp", "--batch-sizes", "16", "--repeats", "1"]) == cli.EXIT_USAGE
    assert "error: SCRATCHGAN_THREADS: expected an integer in 1..1024, got 'two'" in capsys.readouterr().err
    for huge in ("9" * 20, "2048"):      # the range of --threads (a 20-digit count overflowed inside threadpoolctl)
        monkeypatch.setenv("SCRATCHGAN_THREADS", huge)
        assert cli.main(["gradcheck"]) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert err == f"error: SCRATCHGAN_THREADS: expected an integer in 1..1024, got {huge}\n", err
    monkeypatch.setenv("SCRATCHGAN_THREADS", "1")
    assert cli.main(["train", "--steps", "1", "--out", str(tmp_path / "a"), "--quiet"]) == cli.EXIT_OK
    assert backend.threads() == 1
    assert cli.main(["train", "--steps", "1", "--out", str(tmp_path / "b"), "--quiet", "--threads", "0"]) == \
        cli.EXIT_USAGE
    assert "argument --threads: expected an integer in 1..1024, got 0" in capsys.readouterr().err


def test_idle_cores_counts_a_busy_core_out():
    cores = backend.available_cores()
    assert 1 <= backend.idle_cores() <= cores
    if cores < 2:
        pytest.skip("one core: nothing to leave to the other process")
    with busy_core(max(os.sched_getaffinity(0))):
        assert backend.idle_cores() <= cores - 1      # other load can only lower it


def test_train_leaves_a_busy_core_alone_unless_blas_threads_are_set(restore_threads, monkeypatch, capsys, tmp_path):
    cores = backend.available_cores()
    if cores < 2:
        pytest.skip("needs 2 cores")
    for name in cli.args._BLAS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SCRATCHGAN_THREADS", raising=False)
    backend.use("numpy")       # the BLAS threads are the CPU backend's (also under SCRATCHGAN_BACKEND=cupy)
    backend.set_threads(cores)
    with busy_core(max(os.sched_getaffinity(0))):
        assert cli.main(["train", "--steps", "1", "--out", str(tmp_path / "a"), "--quiet"]) == cli.EXIT_OK
        assert "busy with other processes: using" in capsys.readouterr().err
        assert backend.threads() <= cores - 1
        backend.set_threads(cores)
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", str(cores))   # the user's choice stands
        assert cli.main(["train", "--steps", "1", "--out", str(tmp_path / "b"), "--quiet"]) == cli.EXIT_OK
        assert "busy with other processes" not in capsys.readouterr().err
        assert backend.threads() == cores


def test_bench_contention_reports_idle_and_busy_steps(restore_threads, capsys):
    import json
    assert cli.main(["bench", "--contention", "--models", "mlp", "--batch-sizes", "16", "--repeats", "1",
                     "--json"]) == cli.EXIT_OK
    row = json.loads(capsys.readouterr().out)["models"][0]
    assert row["ms_idle"] > 0 and row["ms_busy"] > 0
    assert row["busy_over_idle"] == pytest.approx(row["ms_busy"] / row["ms_idle"])
    assert 1 <= row["threads_busy"] <= row["threads_idle"] <= backend.available_cores()


def test_bench_contention_takes_the_image_shapes(restore_threads, capsys):
    import json
    assert cli.main(["bench", "--contention", "--models", "mlp", "--batch-sizes", "8", "--repeats", "1",
                     "--image-shapes", "3x32x32", "--json"]) == cli.EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert [row["image_shape"] for row in result["models"]] == [[3, 32, 32]]
    assert result["blas"] and "thread" not in result["blas"]   # the library and kernels; threads vary per row


def test_blas_description_names_the_kernels_and_a_forced_core_type(monkeypatch, restore_threads):
    from threadpoolctl import threadpool_info
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        pytest.skip("no BLAS library loaded")
    backend.set_threads(1)
    text = backend.blas_description()
    assert text.endswith("1 thread(s)") or "1 thread(s) (" in text
    if pools[0].get("architecture"):
        assert any(f"{p['architecture']} kernels" in text for p in pools)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    forced = backend.blas_description()
    assert ("OPENBLAS_CORETYPE=Prescott set in the environment" in forced) == text.startswith("OpenBLAS")
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert "OPENBLAS_CORETYPE" not in backend.blas_description(threads=False)


def test_bench_ranks_times_one_process_against_thread_ranks(restore_threads, capsys):
    import json
    backend.set_threads(2)
    assert cli.main(["bench", "--ranks", "2", "--models", "mlp", "--batch-sizes", "16", "--repeats", "1",
                     "--image-shapes", "3x32x32", "--threads", "2", "--json"]) == cli.EXIT_OK
    result = json.loads(capsys.readouterr().out)
    (row,) = result["models"]
    assert row["image_shape"] == [3, 32, 32] and (row["ranks"], row["threads"], row["threads_per_rank"]) == (2, 2, 1)
    assert row["ms_one_process"] > 0 and row["ranks_over_one"] == pytest.approx(row["ms_ranks"] / row["ms_one_process"])
    assert backend.threads() == 2                          # the ranks' share was given back
    assert cli.main(["bench", "--ranks", "3", "--models", "mlp", "--batch-sizes", "16", "--repeats", "1"]) == 2
    assert "does not split evenly over 3 ranks" in capsys.readouterr().err
    assert cli.main(["bench", "--ranks", "2", "--contention"]) == 2
    assert "leave out --distributed, --contention and --layers" in capsys.readouterr().err
