"""Shared test configuration.

Backends
--------
* The default backend of a test run is the library's: NumPy, or CuPy when the
  environment says ``SCRATCHGAN_BACKEND=cupy`` (the library reads it at import).
  Tests build their arrays with ``scratchgan.backend.asarray`` / ``backend.xp()`` and
  read results back with ``backend.to_numpy``, so the whole suite runs on either.
* ``xp_backend``: a fixture parametrised over ["numpy", "cupy"] that selects the
  backend for one test and restores the default afterwards.
* "cupy" is the real CuPy where it imports and sees a CUDA device; everywhere else it is the
  strict NumPy-backed stand-in in tests/cupy_standin (docs/architecture.md), put first on
  sys.path and on PYTHONPATH (so subprocesses, the CLI and mpiexec ranks get it too). The
  session's header and summary say which one ran. SCRATCHGAN_TEST_CUPY=standin forces the
  stand-in even where a GPU is present.
* An autouse fixture restores the backend and the default dtype after every test, so
  a test that changes them cannot leak into the next one.

Hypothesis
----------
Profile "dev" (default): deadline=None, max_examples=25, so the suite stays fast on
two CPU cores. Profile "ci" (selected when CI=true): the same, derandomised, so a CI
run is reproducible. HYPOTHESIS_PROFILE=<name> picks a profile explicitly.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Many tiny matrix products: BLAS threads only add contention on a small shared machine
# (about 8x faster for the tiny models here). Set before numpy loads BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings


# ---------------------------------------------------------------------------- hypothesis
_common = dict(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("dev", **_common)
settings.register_profile("ci", derandomize=True, **_common)
settings.register_profile("thorough", **{**_common, "max_examples": 200})

_ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _ci else "dev"))

# ---------------------------------------------------------------------------- backends
DEFAULT_BACKEND = (os.environ.get("SCRATCHGAN_BACKEND") or "numpy").lower()


STANDIN_DIR = Path(__file__).resolve().parent / "cupy_standin"


def cupy_unavailable_reason():
    """None when CuPy imports and sees a CUDA device, else the reason why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising on import
        return f"CuPy is not importable ({type(exc).__name__}: {exc})"
    if getattr(cupy, "STANDIN", False):      # a parent process put the stand-in on PYTHONPATH
        return "the stand-in is on PYTHONPATH"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy imports but no CUDA device is usable ({type(exc).__name__}: {exc})"
    if count <= 0:
        return "CuPy imports but no CUDA device is visible"
    return None


def _use_standin():
    """Make `import cupy` (here and in child processes) find the stand-in."""
    for name in [m for m in sys.modules if m == "cupy" or m.startswith("cupy.")]:
        del sys.modules[name]
    sys.path.insert(0, str(STANDIN_DIR))
    if str(STANDIN_DIR) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STANDIN_DIR), os.environ.get("PYTHONPATH")]))
    import cupy
    assert getattr(cupy, "STANDIN", False), cupy.__file__


_force_standin = os.environ.get("SCRATCHGAN_TEST_CUPY", "").lower() == "standin"
_REAL_CUPY_REASON = "SCRATCHGAN_TEST_CUPY=standin" if _force_standin else cupy_unavailable_reason()
ON_STANDIN = _REAL_CUPY_REASON is not None
if ON_STANDIN:
    _use_standin()
from scratchgan import backend  # noqa: E402  (after the stand-in is on the path: it reads SCRATCHGAN_BACKEND)

HAS_GPU = True      # the cupy cases always run: on the GPU, or on the stand-in
CUPY_WHERE = (f"the NumPy-backed CuPy stand-in (tests/cupy_standin), NOT a GPU ({_REAL_CUPY_REASON})"
              if ON_STANDIN else "the real CuPy on a CUDA GPU")

requires_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy (real or the stand-in)")
# A test that needs the hardware itself (timings, device memory) and not only CuPy's rules.
requires_real_gpu = pytest.mark.skipif(ON_STANDIN, reason=f"needs a real GPU: {_REAL_CUPY_REASON}")


def env_without_cupy(env=None) -> dict:
    """An environment for a child process in which `import cupy` finds no stand-in (the real CuPy,
    if installed, still imports)."""
    env = dict(os.environ if env is None else env)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != STANDIN_DIR]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


@pytest.fixture
def no_cupy(monkeypatch):
    """Make `import cupy` fail in this process and forget any cached CuPy module."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backend, "_cupy", None)
    backend.use("numpy")


@pytest.fixture
def restore_threads():
    """Give the BLAS library its thread count back after a test that sets it."""
    before = backend.threads()
    yield
    if before:
        backend.set_threads(before)


@pytest.fixture
def cupy_counts():
    """The stand-in's transfer and scalar-read counter (skips on the real CuPy, which has none)."""
    import cupy
    if not getattr(cupy, "STANDIN", False):
        pytest.skip("transfer counts are the stand-in's; the real CuPy does not count them")
    cupy.reset_counts()
    return cupy


def pytest_collection_modifyitems(config, items):
    """Mark every test of the CuPy path ``cupy``, so that ``pytest -m cupy`` runs exactly them."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (params.get("xp_backend") == "cupy" or item.get_closest_marker("gpu")
                or Path(str(item.fspath)).name.startswith("test_cupy_")):
            item.add_marker(pytest.mark.cupy)


def pytest_report_header(config):
    return f"CuPy tests run on {CUPY_WHERE}"


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"CuPy tests ran on {CUPY_WHERE}")


def _restore_defaults():
    backend.use(DEFAULT_BACKEND)
    backend.set_default_dtype(np.float32)


@pytest.fixture(autouse=True)
def _restore_backend_state():
    """Every test starts and ends on the run's default backend and float32."""
    _restore_defaults()
    yield
    _restore_defaults()


@pytest.fixture(params=["numpy", "cupy"])
def xp_backend(request):
    """Run the test once on NumPy and once on CuPy (the real one or the stand-in).

    Yields the backend's name; ``scratchgan.backend.xp()`` is then that namespace.
    """
    name = request.param
    backend.use(name)
    try:
        yield name
    finally:
        backend.use("numpy")
        _restore_defaults()


@pytest.fixture
def xp():
    """The array namespace of the selected backend (numpy or cupy)."""
    return backend.xp()
