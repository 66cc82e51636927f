"""The CuPy stand-in (tests/cupy_standin) is as strict as CuPy where the project can go wrong:
these check its rules, so that a stand-in grown lax fails here rather than letting GPU bugs by.
Skipped where the real CuPy runs the cupy cases (conftest.py)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import ON_STANDIN

pytestmark = pytest.mark.skipif(not ON_STANDIN, reason="the real CuPy is in use: these test the stand-in")


@pytest.fixture
def cp(cupy_counts):
    return cupy_counts


def test_it_is_the_stand_in_on_the_path_with_one_device(cp):
    assert cp.STANDIN and cp.cuda.runtime.getDeviceCount() == 1
    d = cp.zeros((2, 3), np.float32)
    assert isinstance(d, cp.ndarray) and not isinstance(d, np.ndarray)
    assert cp.get_array_module(d) is cp and cp.get_array_module(np.zeros(2)) is np
    cp.cuda.get_current_stream().synchronize()


@pytest.mark.parametrize("implicit", [
    lambda d: np.asarray(d), lambda d: np.array(d), lambda d: d.__array__(), lambda d: np.exp(d),
    lambda d: np.sum(d), lambda d: np.mean(d, axis=0), lambda d: np.concatenate([d, d]),
    lambda d: np.float32(1.0) + np.ones(3) * d, lambda d: np.testing.assert_allclose(d, 0),
])
def test_implicit_conversion_to_numpy_is_a_type_error(cp, implicit):
    with pytest.raises(TypeError):
        implicit(cp.zeros(3, np.float32))


def test_matplotlib_and_pillow_refuse_device_arrays(cp, tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image
    d = cp.zeros((4, 4), np.float32)
    with pytest.raises((TypeError, AttributeError)):
        Image.fromarray(d)
    fig, ax = plt.subplots()
    try:
        with pytest.raises(TypeError):
            ax.imshow(d)
            fig.savefig(tmp_path / "x.png")
    finally:
        plt.close(fig)


@pytest.mark.parametrize("mixed", [
    lambda d, h: d + h, lambda d, h: h + d, lambda d, h: d * h, lambda d, h: h @ d, lambda d, h: d.__iadd__(h),
    lambda d, h: h.__iadd__(d), lambda d, h: __import__("cupy").concatenate([d, h]),
    lambda d, h: __import__("cupy").where(d > 0, h, 0.0), lambda d, h: __import__("cupy").maximum(d, h),
    lambda d, h: __import__("cupy").matmul(d, h), lambda d, h: d.dot(h),
])
def test_host_and_device_arrays_do_not_meet(cp, mixed):
    with pytest.raises(TypeError):
        mixed(cp.ones(3, np.float32), np.ones(3, np.float32))


def test_scalars_mix_and_results_stay_on_the_device(cp):
    d = cp.arange(6, dtype=np.float32).reshape(2, 3)
    for out in (d * 2, 2.0 * d, np.float32(2) * d, d - np.float64(1), 1 - d, -d, abs(d), d ** 2, d / 3, d @ d.T,
                d.sum(), d.max(axis=0), d[0], d[0, 1], cp.exp(d), cp.sqrt(d).mean(), d > 1, d.astype(np.float64)):
        assert isinstance(out, cp.ndarray), type(out)
    assert (d * 2).dtype == np.float32 and d.sum().shape == ()
    assert cp.counts() == {"host_to_device": 0, "device_to_host": 0, "scalar_reads": 0}


def test_transfers_and_scalar_reads_are_counted(cp):
    h = np.arange(4.0)
    d = cp.asarray(h)
    assert cp.counts()["host_to_device"] == 1
    cp.asarray(d), cp.asarray(d, dtype=np.float32), d.copy(), copy.deepcopy(d)   # on the device: no transfer
    assert cp.counts()["host_to_device"] == 1
    np.testing.assert_array_equal(d.get(), h)
    np.testing.assert_array_equal(cp.asnumpy(d), h)
    assert cp.counts()["device_to_host"] == 2
    s = d.sum()
    assert float(s) == 6.0 and int(s) == 6 and bool(s) and s.item() == 6.0 and f"{s:.1f}" == "6.0"
    if s:
        pass
    assert cp.counts()["scalar_reads"] == 6
    d[np.array([0, 1])] = 5.0           # a host index is copied to the device
    d[2:] = np.ones(2)                  # and so is a host value
    assert cp.counts()["host_to_device"] == 3
    cp.reset_counts()
    assert cp.counts() == {"host_to_device": 0, "device_to_host": 0, "scalar_reads": 0}


def test_views_write_through_and_strided_views_stay_on_the_device(cp):
    d = cp.zeros((3, 4), np.float32)
    d[1][...] = 1.0
    d.reshape(-1)[:2] = 2.0
    v = cp.lib.stride_tricks.as_strided(d, shape=(2, 2), strides=(d.strides[0], d.strides[1]))
    assert isinstance(v, cp.ndarray)
    np.testing.assert_array_equal(d.get(), [[2, 2, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    with pytest.raises(TypeError):
        cp.lib.stride_tricks.as_strided(np.zeros(3), shape=(3,), strides=(8,))


def test_random_streams_differ_from_numpy_and_take_one_integer_seed(cp):
    a = cp.random.default_rng(7).random(1000, dtype=np.float32)
    assert isinstance(a, cp.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a.get(), cp.random.default_rng(7).random(1000, dtype=np.float32).get())
    assert not np.allclose(a.get(), np.random.default_rng(7).random(1000, dtype=np.float32))
    z = cp.random.default_rng(7).standard_normal((500, 2), dtype=np.float32).get()
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1
    with pytest.raises(TypeError):
        cp.random.default_rng([7, 1])     # NumPy accepts a sequence; CuPy does not
