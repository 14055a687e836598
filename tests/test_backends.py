import warnings

import array_api_strict
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stcal_models.backends import (
    array_namespace,
    backend_name,
    jit,
    max_filter2d,
    median,
    nanmedian,
    to_backend,
    to_numpy,
)

RNG = np.random.default_rng(1)


def _np_nanmedian(x, axis):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=axis)


def _with_nans(shape=(5, 7, 6)):
    x = RNG.normal(size=shape).astype(np.float32)
    x[RNG.random(shape) < 0.3] = np.nan
    x[0, 0, :] = np.nan  # an all-NaN slice
    return x


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_nanmedian_matches_numpy(xp, to_xp, axis):
    x = _with_nans()
    expected = _np_nanmedian(x, axis=axis)
    got = to_numpy(nanmedian(to_xp(x), axis=axis))
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


def test_nanmedian_keepdims(xp, to_xp):
    x = _with_nans()
    got = nanmedian(to_xp(x), axis=1, keepdims=True)
    assert tuple(got.shape) == (5, 1, 6)


@pytest.mark.parametrize("axis", [0, -1])
def test_median_matches_numpy(xp, to_xp, axis):
    x = RNG.normal(size=(4, 9, 3)).astype(np.float32)
    x[1, 2, 0] = np.nan
    got = to_numpy(median(to_xp(x), axis=axis))
    np.testing.assert_allclose(got, np.median(x, axis=axis), rtol=1e-6, equal_nan=True)


def test_nanmedian_under_jit():
    x = _with_nans()
    got = jax.jit(lambda a: nanmedian(a, axis=0))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), _np_nanmedian(x, axis=0), equal_nan=True)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_max_filter2d_matches_scipy(xp, to_xp, size):
    from scipy.ndimage import maximum_filter

    mask = RNG.random((2, 11, 13)) < 0.05
    expected = maximum_filter(mask, size=(1, size, size), mode="constant", cval=False)
    got = to_numpy(max_filter2d(to_xp(mask), size))
    np.testing.assert_array_equal(got, expected)
    values = RNG.integers(0, 9, size=(11, 13)).astype(np.uint8)
    expected_v = maximum_filter(values, size=size, mode="constant", cval=0)
    np.testing.assert_array_equal(to_numpy(max_filter2d(to_xp(values), size)), expected_v)


def test_max_filter2d_rejects_even_size():
    with pytest.raises(ValueError, match="size"):
        max_filter2d(np.zeros((3, 3), bool), 2)


def test_namespace_and_conversion(xp, to_xp):
    x = to_xp(np.arange(6, dtype=np.float32))
    assert array_namespace(x) is not None
    back = to_numpy(x)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, np.arange(6, dtype=np.float32))
    as_jax = to_backend(x, "jax")
    assert backend_name(as_jax) == "jax"
    assert backend_name(to_backend(as_jax, "numpy")) == "numpy"


def test_to_backend_rejects_unknown_and_narrowing():
    with pytest.raises(ValueError, match="backend"):
        to_backend(np.zeros(2, np.float32), "torch")
    with pytest.raises(TypeError, match="float64"):
        to_backend(np.zeros(2), "jax")


def test_to_numpy_from_array_api_strict():
    x = array_api_strict.asarray([1.0, 2.0], dtype=array_api_strict.float32)
    assert to_numpy(x).dtype == np.float32


def test_jit_compiles_for_jax_and_runs_eagerly_otherwise():
    calls = []

    @jit(static_argnames=("power",))
    def kernel(x, power):
        calls.append(type(x))
        return x**power

    np_out = kernel(np.arange(3.0, dtype=np.float32), power=2)
    assert isinstance(np_out, np.ndarray)
    assert kernel.trace_count() == 0
    for _ in range(3):
        out = kernel(jnp.arange(3.0), power=2)
    assert kernel.trace_count() == 1  # compiled once for this shape/static value
    np.testing.assert_allclose(np.asarray(out), [0, 1, 4])
    kernel(jnp.arange(3.0), power=3)
    assert kernel.trace_count() == 2
    kernel(jnp.arange(4.0), power=3)
    assert kernel.trace_count() == 3
