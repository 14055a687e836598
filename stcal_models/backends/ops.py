"""Operations the array API standard lacks, written once for every namespace.

NumPy inputs take NumPy's own routine where it is faster; every other namespace
(array_api_strict, JAX, ...) runs the generic array-API formulation, which traces
under ``jax.jit``.
"""

from __future__ import annotations

import numpy as np

from .namespace import array_namespace


def nanmedian(x, /, *, axis: int = -1, keepdims: bool = False):
    """Median along ``axis`` ignoring NaNs; all-NaN slices give NaN (no warning)."""
    xp = array_namespace(x)
    if isinstance(x, np.ndarray):
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmedian(x, axis=axis, keepdims=keepdims)
    axis = axis % x.ndim
    valid = ~xp.isnan(x)
    count = xp.sum(xp.astype(valid, xp.int32), axis=axis, keepdims=True)
    filled = xp.where(valid, x, xp.asarray(xp.inf, dtype=x.dtype))
    ordered = xp.sort(filled, axis=axis)
    return _middle(xp, ordered, count, axis, keepdims)


def median(x, /, *, axis: int = -1, keepdims: bool = False):
    """Median along ``axis`` (NaN propagates like ``numpy.median``)."""
    xp = array_namespace(x)
    if isinstance(x, np.ndarray):
        return np.median(x, axis=axis, keepdims=keepdims)
    axis = axis % x.ndim
    n = x.shape[axis]
    ordered = xp.sort(x, axis=axis)
    count = xp.full([1 if i == axis else s for i, s in enumerate(x.shape)], n, dtype=xp.int32)
    out = _middle(xp, ordered, count, axis, keepdims)
    has_nan = xp.any(xp.isnan(x), axis=axis, keepdims=keepdims)
    return xp.where(has_nan, xp.asarray(xp.nan, dtype=out.dtype), out)


def _middle(xp, ordered, count, axis, keepdims):
    """Average of the two middle elements of the first ``count`` entries along ``axis``."""
    n = ordered.shape[axis]
    lo = xp.clip((count - 1) // 2, 0, max(n - 1, 0))
    hi = xp.clip(count // 2, 0, max(n - 1, 0))
    a = xp.take_along_axis(ordered, lo, axis=axis)
    b = xp.take_along_axis(ordered, hi, axis=axis)
    mid = (a + b) / 2
    mid = xp.where(count > 0, mid, xp.asarray(xp.nan, dtype=mid.dtype))
    if not keepdims:
        mid = xp.squeeze(mid, axis=axis)
    return mid


def max_filter2d(mask, /, size: int):
    """Maximum over a ``(size, size)`` box centred on each element of the last two axes.

    ``mask`` is boolean or numeric with at least two dimensions; ``size`` is odd.
    Out-of-bounds neighbours are ignored.  Written as shifted maxima (separable, so
    ``2 * size`` array operations) so that it runs on any namespace and under ``jax.jit``.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size: expected a positive odd integer, got {size}")
    if size == 1:
        return mask
    xp = array_namespace(mask)
    half = size // 2
    out = mask
    for axis in (-2, -1):
        out = _max_shift_along(xp, out, half, axis)
    return out


def _max_shift_along(xp, x, half: int, axis: int):
    n = x.shape[axis]
    fill_value = False if x.dtype == xp.bool else 0
    result = x
    for shift in range(1, half + 1):
        if shift >= n:
            break
        pad_shape = list(x.shape)
        pad_shape[axis] = shift
        pad = xp.full(pad_shape, fill_value, dtype=x.dtype)
        lead = _slice(x, axis, shift, n)
        trail = _slice(x, axis, 0, n - shift)
        forward = xp.concat([lead, pad], axis=axis)
        backward = xp.concat([pad, trail], axis=axis)
        if x.dtype == xp.bool:
            result = result | forward | backward
        else:
            result = xp.maximum(result, xp.maximum(forward, backward))
    return result


def _slice(x, axis: int, start: int, stop: int):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]
