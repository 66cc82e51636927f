"""The backend switch (NumPy / CuPy), dtypes, random streams and conversions.

The CuPy comparisons at the bottom need a CUDA GPU and are skipped cleanly without one.
The "no CuPy" error paths are tested everywhere by faking the import.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import types

import numpy as np
import pytest

import scratchgan as sg
from scratchgan import backend
from scratchgan.backend import BackendError
from scratchgan.gradcheck import gradcheck
from scratchgan.layers.base import double_backward_layers

from conftest import ON_STANDIN, env_without_cupy, requires_gpu


def H(a):
    return backend.to_numpy(a)


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------- selection
def test_use_numpy():
    backend.use("numpy")
    assert backend.name() == "numpy" and backend.xp() is np
    backend.use("NumPy")  # case-insensitive
    assert backend.name() == "numpy"
    assert isinstance(backend.asarray([1.0, 2.0]), np.ndarray)


def test_use_unknown_backend_names_the_choices():
    before = backend.name()
    with pytest.raises(BackendError) as info:
        backend.use("nonsense")
    msg = str(info.value)
    assert "nonsense" in msg and "numpy" in msg and "cupy" in msg
    assert backend.name() == before


def test_use_cupy_without_cupy_raises_clear_error(no_cupy):
    with pytest.raises(BackendError) as info:
        backend.use("cupy")
    msg = str(info.value)
    assert "cupy" in msg.lower() and "not installed" in msg and "numpy" in msg
    assert backend.name() == "numpy" and backend.xp() is np  # the failed switch changed nothing
    with pytest.raises(BackendError):
        sg.Dense(2, 2).to("cupy")


@pytest.mark.parametrize("count", [0, "raise"])
def test_use_cupy_without_gpu_raises_clear_error(monkeypatch, count):
    def get_device_count():
        if count == "raise":
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return count

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend, "_cupy", None)
    backend.use("numpy")
    with pytest.raises(BackendError, match="GPU"):
        backend.use("cupy")
    assert backend.name() == "numpy"
    assert backend._cupy is None  # a failed import is not cached as a working CuPy


def _import_in_subprocess(env_value, env=None):
    env = {**(env or os.environ), "SCRATCHGAN_BACKEND": env_value}
    code = "import scratchgan.backend as b; print(b.name())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_env_var_selects_backend_at_import():
    ok = _import_in_subprocess("numpy")
    assert ok.returncode == 0 and ok.stdout.strip() == "numpy", ok.stderr
    bad = _import_in_subprocess("nonsense")
    assert bad.returncode != 0 and "BackendError" in bad.stderr and "nonsense" in bad.stderr
    on_cupy = _import_in_subprocess("cupy")    # the stand-in (on PYTHONPATH) or the real one
    assert on_cupy.returncode == 0 and on_cupy.stdout.strip() == "cupy", on_cupy.stderr
    if ON_STANDIN:                             # without the stand-in, no CuPy at all
        nogpu = _import_in_subprocess("cupy", env_without_cupy())
        assert nogpu.returncode != 0 and "BackendError" in nogpu.stderr


# ---------------------------------------------------------------------------- arrays
def test_array_module_of_numpy_arrays():
    a, b = np.zeros(3), np.ones((2, 2), np.float32)
    assert backend.array_module(a) is np
    assert backend.array_module(a, b, None, 3.0) is np
    assert backend.array_module() is np
    assert not backend.is_cupy_array(a)


def test_to_numpy_asarray_round_trip():
    x = rng(0).standard_normal((3, 4)).astype(np.float32)
    y = backend.asarray(x)
    assert y.dtype == np.float32 and y.shape == (3, 4)
    back = backend.to_numpy(y)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, x)
    z = backend.asarray(x, dtype=np.float64)
    assert z.dtype == np.float64
    np.testing.assert_array_equal(backend.to_numpy(z), x.astype(np.float64))
    np.testing.assert_array_equal(backend.to_numpy(backend.asarray([[1, 2], [3, 4]])), [[1, 2], [3, 4]])


def test_as_strided_and_synchronize_on_numpy():
    x = np.arange(6.0)
    v = backend.as_strided(x, (5, 2), (8, 8))
    np.testing.assert_array_equal(v[:, 1], x[1:])
    with pytest.raises(ValueError):
        v[0, 0] = 1.0  # read-only view
    backend.synchronize()
    backend.synchronize(np)


# ---------------------------------------------------------------------------- dtypes
def test_default_dtype_is_float32():
    assert backend.default_dtype() == np.float32
    for layer in (sg.Dense(3, 2), sg.Conv2D(1, 2, 3), sg.ConvTranspose2D(1, 2, 3), sg.BatchNorm1d(2)):
        for k, p, g in layer.named_parameters():
            assert p.dtype == np.float32 and g.dtype == np.float32, (layer, k)


def test_set_default_dtype_float64_affects_new_layers():
    old = sg.Dense(3, 2)
    backend.set_default_dtype(np.float64)
    assert backend.default_dtype() == np.float64
    for layer in (sg.Dense(3, 2), sg.Conv2D(1, 2, 3), sg.ConvTranspose2D(1, 2, 3), sg.BatchNorm2d(2)):
        for k, p, g in layer.named_parameters():
            assert p.dtype == np.float64 and g.dtype == np.float64, (layer, k)
        for k, b in layer.named_buffers():
            if np.dtype(b.dtype).kind == "f":
                assert b.dtype == np.float64, (layer, k)
    assert old.params["weight"].dtype == np.float32  # existing layers are not touched
    assert sg.Dense(3, 2, dtype=np.float32).params["weight"].dtype == np.float32  # explicit wins
    backend.set_default_dtype("float32")
    assert sg.Dense(3, 2).params["weight"].dtype == np.float32


@pytest.mark.parametrize("bad", [np.int32, np.float16, "complex128", np.int64])
def test_set_default_dtype_rejects_non_float32_64(bad):
    with pytest.raises(BackendError):
        backend.set_default_dtype(bad)
    assert backend.default_dtype() == np.float32


def test_astype_round_trip():
    m = sg.Sequential(sg.Dense(3, 4, rng=0), sg.BatchNorm1d(4))
    w = H(m[0].params["weight"]).copy()
    m.astype(np.float64)
    assert m.dtype == np.float64 and m[1].buffers["running_var"].dtype == np.float64
    assert m[1].buffers["num_batches_tracked"].dtype == np.int64
    m.astype(np.float32)
    np.testing.assert_array_equal(H(m[0].params["weight"]), w)


# ---------------------------------------------------------------------------- random streams
def test_random_generator_deterministic_and_counter_dependent():
    a = backend.random_generator(np, 123, 0).random(50)
    b = backend.random_generator(np, 123, 0).random(50)
    c = backend.random_generator(np, 123, 1).random(50)
    d = backend.random_generator(np, 124, 0).random(50)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    e = backend.random_generator(np, 2**40 + 5, 3).random(5)  # large seeds are fine
    np.testing.assert_array_equal(e, backend.random_generator(np, 2**40 + 5, 3).random(5))


# ---------------------------------------------------------------------------- module.to
def test_module_to_numpy_keeps_values():
    m = sg.Sequential(sg.Dense(3, 4, rng=0), sg.BatchNorm1d(4), sg.Dropout(0.5))
    m.forward(backend.asarray(rng(0).standard_normal((5, 3)).astype(np.float32)))
    before = {k: H(v).copy() for k, v in m.state_dict().items()}
    assert m.to("numpy") is m
    for k, v in m.state_dict().items():
        assert isinstance(v, np.ndarray), k
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    with pytest.raises(BackendError):
        m.to("tpu")


# ---------------------------------------------------------------------------- GPU: CuPy == NumPy
# Every layer of the library, on both backends (real CuPy on a GPU, else the stand-in): forward,
# backward (input and parameter gradients, buffers) and, where the layer has one, double backward
# agree to float32 rounding. test_every_layer_has_an_equality_case keeps the table complete.
def _phi():
    return sg.Sequential(sg.Dense(5, 4, rng=0), sg.LeakyReLU(0.2))


GPU_LAYERS = {
    "dense": (lambda: sg.Dense(5, 4, rng=0), (6, 5)),
    "dense_nobias": (lambda: sg.Dense(5, 4, bias=False, rng=0), (6, 5)),
    "conv2d": (lambda: sg.Conv2D(3, 4, 3, stride=2, padding=1, rng=0), (2, 3, 7, 6)),
    "conv2d_s1": (lambda: sg.Conv2D(2, 3, 3, padding=1, rng=0), (2, 2, 5, 5)),
    "convT": (lambda: sg.ConvTranspose2D(3, 2, 4, stride=2, padding=1, output_padding=1, rng=0), (2, 3, 3, 4)),
    "convT_fourier": (lambda: sg.ConvTranspose2D(3, 2, 5, padding=2, algorithm="fourier", rng=0), (2, 3, 4, 5)),
    "convT_fourier_s2": (lambda: sg.ConvTranspose2D(3, 2, 5, stride=2, padding=2, output_padding=1,
                                                    algorithm="fourier", rng=0), (2, 3, 3, 4)),
    "bn1d": (lambda: sg.BatchNorm1d(4), (6, 4)),
    "bn1d_eval": (lambda: sg.BatchNorm1d(4).eval(), (6, 4)),
    "bn2d": (lambda: sg.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    "bn2d_affine": (lambda: sg.BatchNorm2d(3), (2, 3, 4, 4)),
    "layernorm": (lambda: sg.LayerNorm((3, 4, 4)), (2, 3, 4, 4)),
    "layernorm_1d": (lambda: sg.LayerNorm(5, elementwise_affine=False), (4, 5)),
    "relu": (lambda: sg.ReLU(), (4, 5)),
    "leaky": (lambda: sg.LeakyReLU(0.2), (4, 5)),
    "sigmoid": (lambda: sg.Sigmoid(), (4, 5)),
    "tanh": (lambda: sg.Tanh(), (4, 5)),
    "dropout_eval": (lambda: sg.Dropout(0.5).eval(), (4, 5)),
    "reshape": (lambda: sg.Reshape(5, 1, 1), (4, 5)),
    "flatten": (lambda: sg.Flatten(), (2, 3, 2, 2)),
    "upsample": (lambda: sg.Upsample2D(2), (2, 3, 2, 3)),
    "maxpool": (lambda: sg.MaxPool2D(2), (2, 3, 4, 6)),
    "avgpool": (lambda: sg.AvgPool2D(3, stride=2), (2, 3, 7, 5)),
    "minibatch_std": (lambda: sg.MinibatchStd(), (4, 6)),
    "spectral_dense": (lambda: sg.spectral_norm(sg.Dense(5, 4, rng=0)), (6, 5)),
    "spectral_conv": (lambda: sg.spectral_norm(sg.Conv2D(3, 4, 3, stride=2, padding=1, rng=0), seed=1), (2, 3, 6, 6)),
    "projection": (lambda: sg.Projection(_phi(), 4, 3, rng=1), "projection"),
    "chain": (lambda: sg.Sequential(sg.Dense(6, 2 * 3 * 3, rng=0), sg.Reshape(2, 3, 3), sg.BatchNorm2d(2), sg.ReLU(),
                                    sg.ConvTranspose2D(2, 3, 4, stride=2, padding=1, rng=1), sg.Tanh(),
                                    sg.Conv2D(3, 2, 3, stride=2, padding=1, rng=2), sg.LeakyReLU(0.2),
                                    sg.Flatten(), sg.Dense(2 * 3 * 3, 1, rng=3)), (4, 6)),
    "critic": (lambda: sg.Sequential(sg.spectral_norm(sg.Conv2D(2, 3, 3, stride=2, padding=1, rng=0)),
                                     sg.LeakyReLU(0.2), sg.Flatten(), sg.LayerNorm(12), sg.ReLU(),
                                     sg.Dense(12, 1, rng=1)), (3, 2, 4, 4)),
}
# The single layers with a double backward (a Sequential's is driven layer by layer by GradientPenalty:
# test_cupy_gradient_penalty_matches_numpy).
DOUBLE_BACKWARD = sorted(name for name, (make, _) in GPU_LAYERS.items()
                         if type(make()).__name__ in double_backward_layers())


def _input(shape, seed=1):
    if shape == "projection":    # [x (5 features), one-hot label of 3 classes]
        x = rng(seed).standard_normal((6, 5)).astype(np.float32)
        return np.concatenate([x, np.eye(3, dtype=np.float32)[[0, 2, 1, 1, 0, 2]]], axis=1)
    x = rng(seed).standard_normal(shape).astype(np.float32)
    return np.where(np.abs(x) < 1e-2, np.float32(0.5), x)     # away from ReLU's kink: the same branch on both


def _close(a, b, what, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(H(a), H(b), rtol=rtol, atol=atol, err_msg=what)


def _on_both(name):
    make, shape = GPU_LAYERS[name]
    backend.use("numpy")
    cpu = make()
    gpu = cpu.copy().to("cupy")
    return cpu, gpu, _input(shape)


def test_every_layer_has_an_equality_case():
    covered = {type(m).__name__ for make, _ in GPU_LAYERS.values() for _, m in make().named_modules()}
    layers = {n for n in sg.layers.__all__ if isinstance(getattr(sg.layers, n), type)
              and issubclass(getattr(sg.layers, n), sg.Module) and n != "Module"}
    assert layers - covered == {"Dropout"} - covered, f"layers with no CuPy == NumPy case: {sorted(layers - covered)}"
    assert "Dropout" in covered     # in eval mode; train mode draws CuPy's own stream (test below)


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(GPU_LAYERS))
def test_cupy_matches_numpy(name):
    import cupy as cp

    cpu, gpu, x = _on_both(name)
    y_c, cache_c = cpu.forward(x)
    y_g, cache_g = gpu.forward(cp.asarray(x))
    assert isinstance(y_g, cp.ndarray) and y_g.dtype == np.float32
    _close(y_g, y_c, "forward")
    dy = rng(2).standard_normal(y_c.shape).astype(np.float32)
    dx_c = cpu.backward(dy, cache_c)
    dx_g = gpu.backward(cp.asarray(dy), cache_g)
    assert isinstance(dx_g, cp.ndarray) and dx_g.dtype == np.float32
    _close(dx_g, dx_c, "dX")
    for (k, _, g_c), (_, p_g, g_g) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert isinstance(p_g, cp.ndarray) and isinstance(g_g, cp.ndarray), k
        _close(g_g, g_c, k)
    for (k, b_c), (_, b_g) in zip(cpu.named_buffers(), gpu.named_buffers()):
        _close(b_g, b_c, k, rtol=1e-5, atol=1e-6)


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", DOUBLE_BACKWARD)
def test_cupy_double_backward_matches_numpy(name):
    """The gradient penalty's second pass (docs/double-backward.md): ddY, ddX and the parameter
    gradients it accumulates, on both backends."""
    import cupy as cp

    cpu, gpu, x = _on_both(name)
    y_c, cache_c = cpu.forward(x)
    y_g, cache_g = gpu.forward(cp.asarray(x))
    dy = rng(2).standard_normal(y_c.shape).astype(np.float32)
    ddx = rng(3).standard_normal(x.shape).astype(np.float32)
    dd_c = cpu.double_backward(ddx, dy, cache_c)
    dd_g = gpu.double_backward(cp.asarray(ddx), cp.asarray(dy), cache_g)
    for what, a_c, a_g in zip(("ddY", "ddX"), dd_c, dd_g):
        assert (a_c is None) == (a_g is None), what
        if a_c is not None:
            assert isinstance(a_g, cp.ndarray) and a_g.dtype == np.float32, what
            _close(a_g, a_c, what)
    for (k, _, g_c), (_, _, g_g) in zip(cpu.named_parameters(), gpu.named_parameters()):
        _close(g_g, g_c, k)


@requires_gpu
@pytest.mark.gpu
def test_cupy_gradient_penalty_matches_numpy():
    """WGAN-GP's whole penalty through a critic of spectral-norm conv, LayerNorm and dense layers:
    its value and the critic's parameter gradients, on both backends."""
    import cupy as cp
    from scratchgan.penalty import GradientPenalty

    cpu, gpu, x = _on_both("critic")
    p_c, p_g = GradientPenalty(cpu), GradientPenalty(gpu)
    v_c, cache_c = p_c.forward(x)
    v_g, cache_g = p_g.forward(cp.asarray(x))
    assert isinstance(v_g, cp.ndarray)
    _close(v_g, v_c, "penalty", rtol=1e-4, atol=1e-6)
    p_c.backward(np.ones_like(v_c), cache_c)
    p_g.backward(cp.ones_like(v_g), cache_g)
    for (k, _, g_c), (_, _, g_g) in zip(cpu.named_parameters(), gpu.named_parameters()):
        _close(g_g, g_c, k)


@requires_gpu
@pytest.mark.gpu
def test_cupy_dropout_reproducible_and_unbiased():
    import cupy as cp

    x = cp.ones((200, 100), np.float32)
    a, b = sg.Dropout(0.3, seed=5).to("cupy"), sg.Dropout(0.3, seed=5).to("cupy")
    ya, yb = a.forward(x)[0], b.forward(x)[0]
    assert isinstance(ya, cp.ndarray) and ya.dtype == np.float32
    np.testing.assert_array_equal(H(ya), H(yb))
    assert not np.array_equal(H(a.forward(x)[0]), H(ya))
    assert abs(float((ya == 0).mean()) - 0.3) < 0.02
    assert int(a.buffers["calls"]) == 2


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["dense", "conv2d", "convT", "bn1d", "bn2d", "leaky", "upsample", "chain"])
def test_gradcheck_on_cupy_float64(name):
    import cupy as cp

    make, shape = GPU_LAYERS[name]
    backend.use("cupy")
    layer = make().astype(np.float64)
    assert isinstance(next(iter(layer.params.values()), cp.zeros(1)), cp.ndarray)
    x = rng(3).standard_normal(shape)
    if name in ("leaky", "chain"):
        x = np.where(np.abs(x) < 1e-3, 1e-2, x)
    result = gradcheck(layer, cp.asarray(x), tol=1e-6, max_elements=40)
    assert result.passed, str(result)


@requires_gpu
@pytest.mark.gpu
def test_to_cupy_and_back_round_trip_and_mixing_is_an_error():
    import cupy as cp

    backend.use("numpy")     # built on the host (also under SCRATCHGAN_BACKEND=cupy), then moved
    m = sg.Sequential(sg.Dense(3, 4, rng=0), sg.BatchNorm1d(4), sg.Dropout(0.5))
    m.forward(rng(0).standard_normal((5, 3)).astype(np.float32))
    before = {k: H(v).copy() for k, v in m.state_dict().items()}
    m.to("cupy")
    assert isinstance(m[0].params["weight"], cp.ndarray) and isinstance(m[0].grads["weight"], cp.ndarray)
    assert isinstance(m[1].buffers["running_mean"], cp.ndarray)
    assert isinstance(m[1].buffers["num_batches_tracked"], np.ndarray)  # host counter
    with pytest.raises((BackendError, sg.ShapeError)):
        m.forward(rng(0).standard_normal((5, 3)).astype(np.float32))  # NumPy input into a CuPy model
    with pytest.raises(BackendError):
        backend.array_module(np.zeros(2), cp.zeros(2))
    m.to("numpy")
    for k, v in m.state_dict().items():
        assert isinstance(v, np.ndarray), k
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@requires_gpu
@pytest.mark.gpu
def test_cupy_backend_selection_and_conversions(xp_backend):
    import cupy as cp

    x = rng(0).standard_normal((2, 3)).astype(np.float32)
    a = backend.asarray(x)
    assert (xp_backend == "cupy") == isinstance(a, cp.ndarray)
    assert backend.array_module(a) is (cp if xp_backend == "cupy" else np)
    np.testing.assert_array_equal(backend.to_numpy(a), x)
    layer = sg.Dense(3, 2, rng=0)
    assert (xp_backend == "cupy") == isinstance(layer.params["weight"], cp.ndarray)
    # same seed -> same weights on either backend (drawn on the host)
    np.testing.assert_array_equal(H(layer.params["weight"]), H(sg.Dense(3, 2, rng=0).to("numpy").params["weight"]))
    g = backend.random_generator(cp, 7, 1)
    np.testing.assert_array_equal(H(g.random(10)), H(backend.random_generator(cp, 7, 1).random(10)))


_FAULTS = """
import resource, sys, numpy as np
from scratchgan import backend
if sys.argv[1] == "tuned":
    assert backend.tune_host_allocator()
a = np.ones(10 * 2**20, np.float32); del a                # 40 MB: allocated, touched, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(10 * 2**20, np.float32); del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_host_allocator_reuses_freed_memory_instead_of_faulting_it_in_again():
    """Counted page faults, not time: by default every 40 MB temporary is a fresh mmap whose
    pages fault in again; after tuning, freed blocks are reused."""
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])
    assert faults("default") > 1000
    assert faults("tuned") < 100
