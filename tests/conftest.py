"""Shared test configuration.

Backends
--------
* The default backend of a test run is the library's: NumPy, or CuPy when the
  environment says ``SCRATCHGAN_BACKEND=cupy`` (the library reads it at import).
  Tests build their arrays with ``scratchgan.backend.asarray`` / ``backend.xp()`` and
  read results back with ``backend.to_numpy``, so the whole suite runs on either.
* ``xp_backend``: a fixture parametrised over ["numpy", "cupy"] that selects the
  backend for one test and restores the default afterwards; "cupy" is skipped with a
  reason unless CuPy imports and a CUDA device is visible.
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

# Many tiny matrix products: BLAS threads only add contention on a small shared machine
# (about 8x faster for the tiny models here). Set before numpy loads BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from scratchgan import backend

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


def cupy_unavailable_reason():
    """None when CuPy imports and sees a CUDA device, else the reason why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising on import
        return f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy imports but no CUDA device is usable ({type(exc).__name__}: {exc})"
    if count <= 0:
        return "CuPy imports but no CUDA device is visible"
    return None


_CUPY_REASON = cupy_unavailable_reason()
HAS_GPU = _CUPY_REASON is None

requires_gpu = pytest.mark.skipif(not HAS_GPU, reason=f"needs CuPy and a CUDA GPU: {_CUPY_REASON}")


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
    """Run the test once on NumPy and once on CuPy (skipped cleanly without a GPU).

    Yields the backend's name; ``scratchgan.backend.xp()`` is then that namespace.
    """
    name = request.param
    if name == "cupy" and not HAS_GPU:
        pytest.skip(f"cupy backend not available: {_CUPY_REASON}")
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
