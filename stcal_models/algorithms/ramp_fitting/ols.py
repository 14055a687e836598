"""Ordinary-least-squares ramp fitting with Fixsen optimal weighting (stcal ``OLS_C``).

The fit follows the "Ramp Fitting" section of the stcal 1.17.0 documentation: segments
are the runs of usable groups between saturation / DO_NOT_USE flags, split where a group
carries JUMP_DET; every segment is fitted by least squares with the optimal weights
``w_i = |(i - i_mid) / i_mid| ** P`` whose exponent ``P`` is chosen from the segment's
signal-to-noise ratio; segment slopes are combined per integration and integrations per
exposure by inverse variance, and the Poisson / read-noise variances are carried
separately at every level.

Behaviour that the documentation leaves open was matched to stcal's ``OLS_C`` by
black-box experiments (see ``OLSRampFit``'s notes).  The numeric core
(:func:`ols_fit_arrays`) is written once against the array API, vectorised over pixels,
and runs eagerly on NumPy / array_api_strict and compiled with ``jax.jit`` on JAX:

1. per-group summaries (median first difference through a min/max sorting network over
   group planes, flag counts) -- a compiled function of its own so that XLA materialises
   the median instead of re-evaluating it in every consumer;
2. a reverse loop over groups giving, for each group, the length and weight-exponent code
   of the segment that starts there;
3. a forward loop over groups carrying per-pixel accumulators (the small integers packed
   in one int32), with the optimal-weighting coefficients looked up in a host table.

No (ngroups x ngroups) or sorted copies of the cube are made; rows are processed in
chunks (48 MiB of temporaries by default, which also keeps the loops in cache).

Most pixels of an exposure have no flagged group at all.  :class:`OLSRampFit` fits those
in closed form (one segment per integration: no loops over groups carrying state) and
gathers the pixels with a flagged group into a compact ramp for passes 2 and 3, putting
their results back afterwards; the median of pass 1 is compiled apart from the
differences it sorts (fused, XLA re-derives them in every comparator).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from ...backends import array_namespace, jit, to_numpy
from ...dqflags import DQ
from ...models import RampFitResult, RampModel
from ..base import Step, check_choice
from .chunks import check_chunk_options, map_row_chunks
from .common import build_result, prepare_inputs

__all__ = ["OLSRampFit", "ols_fit_arrays"]

_DNU = int(DQ.DO_NOT_USE)
_SAT = int(DQ.SATURATED)
_JUMP = int(DQ.JUMP_DET)
_CL = int(DQ.CHARGELOSS)
_NO_GAIN = int(DQ.NO_GAIN_VALUE)
_NOT_JUMP = 0xFF & ~_JUMP

#: Signal-to-noise edges and the optimal-weighting exponents between them (Fixsen et al.).
_SNR_EDGES = (5.0, 10.0, 20.0, 50.0, 100.0)
_EXPONENTS = (0.0, 0.4, 1.0, 3.0, 6.0, 10.0)

#: Largest number of first differences sorted with an unrolled sorting network.
_NETWORK_MAX = 48


# --------------------------------------------------------------------------- loop helpers
def _is_jax(xp) -> bool:
    return "jax" in getattr(xp, "__name__", "")


def _plane(xp, x, g, axis: int = 1):
    """``x[:, g]`` (or ``x[g]`` for ``axis=0``) for a Python int or a traced index.

    ``x`` may also be a list of planes (unrolled :func:`_scan` outputs) with ``axis=0``.
    """
    if isinstance(x, list):
        return x[g]
    if _is_jax(xp) and not isinstance(g, int):
        from jax import lax

        return lax.dynamic_index_in_dim(x, g, axis=axis, keepdims=False)
    return x[g, ...] if axis == 0 else x[:, g, ...]


def _scan(xp, body, carry, length: int, *, reverse: bool = False, collect: bool = False):
    """Run ``carry, out = body(g, carry)`` for ``g`` in ``range(length)`` (or reversed).

    Other namespaces loop in Python over groups with ``g`` a Python int and return the
    per-step outputs as a list; JAX runs ``lax.fori_loop`` (one traced body, ``g``
    traced; unrolling compiled much slower and ran no faster) and returns the outputs
    stacked on a leading axis.  Index the outputs with :func:`_plane` (axis 0).
    """
    if _is_jax(xp):
        import jax
        import jax.numpy as jnp
        from jax import lax

        # fori_loop, not scan: XLA CPU runs it about twice as fast here.  Collected
        # outputs go into a preallocated buffer updated in place (one plane per step).
        index = (lambda k: length - 1 - k) if reverse else (lambda k: k)
        if not collect:
            return lax.fori_loop(0, length, lambda k, c: body(index(k), c)[0], carry), None
        _, probe = jax.eval_shape(lambda c: body(0, c), carry)
        buffer = jnp.zeros((length, *probe.shape), dtype=probe.dtype)

        def step(k, state):
            c, buf = state
            g = index(k)
            c, out = body(g, c)
            return c, lax.dynamic_update_index_in_dim(buf, out, g, axis=0)

        carry, buffer = lax.fori_loop(0, length, step, (carry, buffer))
        return carry, buffer
    outs = [None] * length
    order = range(length - 1, -1, -1) if reverse else range(length)
    for g in order:
        carry, out = body(g, carry)
        if collect:
            outs[g] = out
    return carry, (outs if collect else None)


class _WeightTerms:
    """Optimal-weighting terms of group ``i`` in a segment of ``n`` groups with exponent code ``pc``.

    The weights ``w_i = |(i - i_mid) / i_mid| ** P`` are symmetric about the midpoint, so
    the weighted least-squares slope (per group) is ``sum_i c_i y_i`` with
    ``c_i = w_i u_i / sum_j w_j u_j**2`` and ``u_i = i - i_mid``.  For ramps of up to
    ``TABLE_MAX`` groups these depend on three small integers only and are looked up in a
    table built once on the host (XLA gathers from a small table at the cost of an add,
    while ``exp``/``log`` cost five); longer ramps evaluate them element-wise.
    """

    TABLE_MAX = 128

    def __init__(self, xp, ngroups: int):
        self.xp = xp
        self.ngroups = ngroups
        self.tabulated = ngroups <= self.TABLE_MAX
        if self.tabulated:
            coef, weight, den = _weight_tables(ngroups)
            self._coef = xp.asarray(coef)
            self._weight = xp.asarray(weight)
            self._den = xp.asarray(den)

    def _index(self, n, pc, i):
        xp = self.xp
        i = xp.clip(i, 0, self.ngroups - 1)
        return (xp.clip(n, 0, self.ngroups) * 8 + pc) * self.ngroups + i

    def _direct(self, n, pc, i):
        xp = self.xp
        nf = xp.astype(n, xp.float32)
        imid = (nf - 1) / 2
        u = xp.astype(i, xp.float32) - imid
        p = xp.zeros_like(u)
        for k, value in enumerate(_EXPONENTS):
            if value:
                p = xp.where(pc == k, xp.asarray(value, dtype=xp.float32), p)
        w = _power(xp, xp.abs(_safe_div(xp, u, imid, imid > 0)), p)
        # sum_j w_j u_j^2 in closed form is not available for fractional P: sum the terms
        den = xp.zeros_like(u)
        for j in range(self.ngroups):
            uj = j - imid
            wj = _power(xp, xp.abs(_safe_div(xp, uj, imid, imid > 0)), p)
            den = den + xp.where(j < n, wj * uj * uj, xp.zeros_like(u))
        return w, u, den

    def coef(self, n, pc, i):
        """``c_i`` (zero for one-group segments)."""
        if self.tabulated:
            return _lookup(self.xp, self._coef, self._index(n, pc, i))
        w, u, den = self._direct(n, pc, i)
        return _safe_div(self.xp, w * u, den, (n >= 2) & (den > 0))

    def weight(self, n, pc, i):
        """``w_i``."""
        if self.tabulated:
            return _lookup(self.xp, self._weight, self._index(n, pc, i))
        return self._direct(n, pc, i)[0]

    def den(self, n, pc):
        """``sum_j w_j u_j**2`` of the segment."""
        if self.tabulated:
            xp = self.xp
            return _lookup(xp, self._den, xp.clip(n, 0, self.ngroups) * 8 + pc)
        return self._direct(n, pc, self.xp.zeros_like(n))[2]


@functools.lru_cache(maxsize=32)
def _weight_tables(ngroups: int):
    """Host tables of ``c_i``, ``w_i`` (index ``(n * 8 + pc) * ngroups + i``) and ``den``."""
    coef = np.zeros(((ngroups + 1) * 8, ngroups))
    weight = np.zeros_like(coef)
    den = np.zeros((ngroups + 1) * 8)
    for n in range(1, ngroups + 1):
        imid = (n - 1) / 2
        u = np.arange(n) - imid
        for pc, p in enumerate(_EXPONENTS):
            w = np.abs(u / imid) ** p if imid > 0 else np.ones(n)
            d = float(np.sum(w * u * u))
            row = n * 8 + pc
            weight[row, :n] = w
            den[row] = d
            if n >= 2:
                coef[row, :n] = w * u / d
    return (coef.astype(np.float32).ravel(), weight.astype(np.float32).ravel(),
            den.astype(np.float32))


@functools.lru_cache(maxsize=32)
def _clean_coefficients(ngroups: int) -> np.ndarray:
    """float32 ``c_i`` of a full-length segment, one row per exponent code."""
    coef = _weight_tables(ngroups)[0].reshape((ngroups + 1) * 8, ngroups)
    return coef[ngroups * 8: ngroups * 8 + len(_EXPONENTS)]


def _lookup(xp, table, index):
    """``table[index]`` element-wise (``take`` on the flattened index, as the array API allows)."""
    flat = xp.reshape(index, (-1,))
    return xp.reshape(xp.take(table, flat), index.shape)


def _no_grad(xp, x):
    """``x`` with its gradient stopped on JAX (identity elsewhere)."""
    if _is_jax(xp):
        from jax import lax

        return lax.stop_gradient(x)
    return x


def _timing(frame_time: float, group_time: float, nframes: int, suppress_one_group: bool,
            ngroups: int) -> tuple[float, float, float, bool]:
    """Group time, mean time of the first group, frame time, and the effective
    ``suppress_one_group`` (stcal ignores it for NGROUPS=1)."""
    t_first = float(frame_time) * (nframes + 1) / 2.0
    return (float(group_time), t_first, float(frame_time),
            suppress_one_group and ngroups > 1)


def _select_rows(rows: tuple[int, int] | None, *arrays):
    """``arrays`` cut to image rows ``rows = (r0, r1)`` (all rows for ``None``).

    Static row bounds let XLA read the chunk straight from the full array; slicing
    outside a compiled function copies it.
    """
    if rows is None:
        return arrays
    window = slice(*rows)
    return tuple(None if a is None else a[..., window, :] for a in arrays)


def _power(xp, base, exponent):
    """``base ** exponent`` for ``base >= 0`` with ``0 ** 0 = 1``, as ``exp(p log b)``.

    XLA's CPU ``pow`` is several times slower than ``exp``/``log``; the masked branches
    never evaluate ``log(0)`` so gradients stay finite.
    """
    positive = base > 0
    safe = xp.where(positive, base, xp.ones_like(base))
    value = xp.exp(exponent * xp.log(safe))
    value = xp.where(positive, value, xp.where(exponent > 0, xp.zeros_like(base), xp.ones_like(base)))
    return xp.where(exponent > 0, value, xp.ones_like(base))


def _safe_div(xp, num, den, ok):
    """``num / den`` where ``ok``, else 0; the masked branch never divides by zero (grad-safe)."""
    one = xp.ones_like(den)
    return xp.where(ok, num / xp.where(ok, den, one), xp.zeros_like(num))


# --------------------------------------------------------------------------- median
def _batcher_pairs(n: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort for ``n`` keys (pairs touching >= n dropped)."""
    pairs = []
    size = 1
    while size < n:
        size *= 2
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if (a // (2 * p)) == (b // (2 * p)) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return pairs


def _median_of_planes(xp, planes, count):
    """Median of the finite values among ``planes`` (invalid entries are ``+inf``).

    ``count`` is the number of valid entries per element; elements with none give 0.
    Small inputs use a sorting network of element-wise min/max (fast under XLA);
    larger ones sort a stacked array.
    """
    n = len(planes)
    if n <= _NETWORK_MAX:
        keys = list(planes)
        for a, b in _batcher_pairs(n):
            lo = xp.minimum(keys[a], keys[b])
            hi = xp.maximum(keys[a], keys[b])
            keys[a], keys[b] = lo, hi
        lo_idx = (count - 1) // 2
        hi_idx = count // 2
        zero = xp.zeros_like(keys[0])
        lo_val, hi_val = zero, zero
        for k, key in enumerate(keys):
            lo_val = xp.where(lo_idx == k, key, lo_val)
            hi_val = xp.where(hi_idx == k, key, hi_val)
    else:
        stacked = xp.stack(planes, axis=0)
        if _is_jax(xp):  # XLA's CPU sort is slow: the network, one rolled stage at a time
            from .likely_kernel import _jax_sorted_rows

            flat = _jax_sorted_rows(xp.reshape(stacked, (n, -1)))
            ordered = xp.reshape(flat, stacked.shape)
        else:
            ordered = xp.sort(stacked, axis=0)
        del stacked
        lo_idx = xp.clip((count - 1) // 2, 0, n - 1)
        hi_idx = xp.clip(count // 2, 0, n - 1)
        lo_val = xp.take_along_axis(ordered, lo_idx[None, ...], axis=0)[0, ...]
        hi_val = xp.take_along_axis(ordered, hi_idx[None, ...], axis=0)[0, ...]
    mid = (lo_val + hi_val) / 2
    return xp.where(count > 0, mid, xp.zeros_like(mid))


# --------------------------------------------------------------------------- kernel
@jit(static_argnames=("rows",))
def _group_statistics(data, groupdq, *, rows: tuple[int, int] | None = None) -> dict[str, Any]:
    """Pass 1a of the OLS kernel: flag counts and first differences, group by group.

    Per integration and pixel: the number of unflagged groups, whether every group is
    DO_NOT_USE/SATURATED, the OR of SATURATED/JUMP_DET flags after the first group,
    CHARGELOSS presence, and the usable first differences (``+inf`` where unusable) with
    their count.  A compiled function of its own: its outputs are materialised, otherwise
    XLA fuses the differences into every comparator of the median network (about ten
    times slower).  ``rows`` selects image rows (see :func:`_select_rows`).
    """
    data, groupdq = _select_rows(rows, data, groupdq)
    xp = array_namespace(data, groupdq)
    f32 = xp.float32
    ngroups = int(data.shape[1])
    q0 = xp.astype(groupdq[:, 0, ...], xp.int32)
    y0 = data[:, 0, ...]
    bad0 = (q0 & (_DNU | _SAT)) != 0
    zeros_i = xp.zeros(q0.shape, dtype=xp.int32)
    clean_count = zeros_i
    all_bad = xp.ones(q0.shape, dtype=xp.bool)
    dq_or = zeros_i
    any_cl = xp.zeros(q0.shape, dtype=xp.bool)
    planes = []
    n_valid = zeros_i
    inf = xp.asarray(xp.inf, dtype=f32)
    prev_bad = bad0
    prev_y = y0
    for g in range(ngroups):
        q = xp.astype(groupdq[:, g, ...], xp.int32)
        bad = (q & (_DNU | _SAT)) != 0
        clean_count = clean_count + xp.astype(q == 0, xp.int32)
        all_bad = all_bad & bad
        if g > 0:
            dq_or = dq_or | (q & (_SAT | _JUMP))
        any_cl = any_cl | ((q & _CL) != 0)
        if g > 0:
            y = data[:, g, ...]
            valid = ~bad & ~prev_bad & ((q & _JUMP) == 0)
            planes.append(xp.where(valid, y - prev_y, inf))
            n_valid = n_valid + xp.astype(valid, xp.int32)
            prev_y = y
        prev_bad = bad
    return {"planes": planes, "n_valid": n_valid, "clean_count": clean_count,
            "all_bad": all_bad, "dq_or": dq_or, "any_cl": any_cl}


def _group_summaries(data, groupdq, zeroframe, dark_current, *, frame_time: float,
                     group_time: float, nframes: int, suppress_one_group: bool,
                     rows: tuple[int, int] | None = None):
    """Pass 1 of the OLS kernel: statistics that need no segment boundaries.

    :func:`_group_statistics` and, per pixel, the Poisson-variance numerator
    ``max(slope_est, 0) + dark_current`` where the slope estimate is the mean over
    integrations of each one's median usable first difference; also the one-group timing,
    ZEROFRAME use and suppression.  ``rows`` selects image rows (see :func:`_select_rows`).
    """
    stats = _group_statistics(data, groupdq, rows=rows)
    planes = stats.pop("planes")
    stats["median_diff"] = _median_difference(planes, stats["n_valid"])
    del planes
    return _summaries_from_statistics(
        data, groupdq, zeroframe, dark_current, stats,
        frame_time=frame_time, group_time=group_time, nframes=nframes,
        suppress_one_group=suppress_one_group, rows=rows,
    )


@jit
def _median_difference(planes, n_valid):
    """Median usable first difference (0 where none): a compiled function of its own, as
    XLA fused with its consumers re-evaluates the network several times."""
    xp = array_namespace(n_valid)
    if not planes:
        return xp.zeros(n_valid.shape, dtype=xp.float32)
    return _median_of_planes(xp, planes, n_valid)


@jit(static_argnames=("frame_time", "group_time", "nframes", "suppress_one_group", "rows"))
def _summaries_from_statistics(data, groupdq, zeroframe, dark_current, stats, *,
                               frame_time: float, group_time: float, nframes: int,
                               suppress_one_group: bool, rows: tuple[int, int] | None = None):
    """Pass 1b: :func:`_group_summaries` given the :func:`_group_statistics` ``stats``."""
    data, groupdq, zeroframe, dark_current = _select_rows(
        rows, data, groupdq, zeroframe, dark_current)
    xp = array_namespace(data, groupdq, dark_current)
    f32 = xp.float32
    nints, ngroups = int(data.shape[0]), int(data.shape[1])
    tg, t_first, tf, suppress_one_group = _timing(
        frame_time, group_time, nframes, suppress_one_group, ngroups)
    dark = xp.astype(dark_current, f32)
    q0 = xp.astype(groupdq[:, 0, ...], xp.int32)
    y0 = data[:, 0, ...]
    bad0 = (q0 & (_DNU | _SAT)) != 0
    n_valid = stats["n_valid"]
    clean_count, all_bad = stats["clean_count"], stats["all_bad"]
    dq_or, any_cl = stats["dq_or"], stats["any_cl"]
    median_diff = stats["median_diff"]

    suppressed = (clean_count == 1) if suppress_one_group else xp.zeros_like(all_bad)
    special = (clean_count == 1) & (q0 == 0)  # the lone clean group is the first one
    t_one = xp.where(special, xp.asarray(t_first, dtype=f32), xp.asarray(tg, dtype=f32))
    use_zf = (clean_count == 0) & xp.zeros_like(all_bad)
    if zeroframe is not None and not suppress_one_group:
        use_zf = (clean_count == 0) & (zeroframe != 0)

    # Per-integration contribution to the slope estimate used for the Poisson variance.
    if ngroups == 1:  # the group's value over the first group's time, flagged or not
        first_only = xp.where((q0 & _SAT) != 0, xp.asarray(xp.nan, dtype=f32), y0 / t_first)
    else:
        first_only = xp.where(bad0, xp.zeros_like(y0), y0 / t_one)
    contrib = xp.where(n_valid > 0, median_diff / tg, first_only)
    contrib = xp.where(special, y0 / t_first, contrib)
    contrib = xp.where(suppressed, xp.zeros_like(contrib), contrib)
    if zeroframe is not None:  # with NGROUPS=1 stcal times it like the group it replaces
        contrib = xp.where(use_zf, zeroframe / (t_first if ngroups == 1 else tf), contrib)
    estimate = _sum_ints(xp, contrib) / nints  # NaN stays NaN (NGROUPS=1 with a bad group)
    # Numerator of the Poisson variance: a negative slope estimate counts as zero, the dark
    # current is added as given (a negative sum gives negative segment variances, as in
    # stcal; the reported variances are clipped at zero).
    estimate = xp.where(xp.isnan(estimate), xp.zeros_like(estimate), estimate)
    poisson = xp.maximum(estimate, xp.zeros_like(estimate)) + dark
    return {
        "poisson": poisson,
        "clean_count": clean_count,
        "all_bad": all_bad,
        "dq_or": dq_or,
        "any_cl": any_cl,
        "t_one": t_one,
        "special": special,
        "use_zf": use_zf,
        "suppressed": suppressed,
    }



@jit(
    static_argnames=(
        "frame_time",
        "group_time",
        "nframes",
        "suppress_one_group",
        "has_chargeloss",
        "save_opt",
        "clean",
        "rows",
    )
)
def _fit_segments(
    data,
    groupdq,
    pixeldq,
    zeroframe,
    gain,
    readnoise,
    summary,
    *,
    frame_time: float,
    group_time: float,
    nframes: int,
    suppress_one_group: bool,
    has_chargeloss: bool = True,
    save_opt: bool = False,
    clean: bool = False,
    rows: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Passes 2 and 3 of :func:`ols_fit_arrays` given the pass-1 ``summary``.

    ``clean=True`` is the closed form for ramps without any GROUPDQ flag (no loops over
    segments); its results are meaningless for pixels with a flagged group.  ``rows``
    selects image rows of the frame-sized inputs (``summary`` is already cut).
    """
    if clean and (has_chargeloss or save_opt):
        raise ValueError("_fit_segments: clean=True needs has_chargeloss=False, save_opt=False")
    data, groupdq, pixeldq, zeroframe, gain, readnoise = _select_rows(
        rows, data, groupdq, pixeldq, zeroframe, gain, readnoise)
    xp = array_namespace(data, groupdq, pixeldq, gain, readnoise)
    f32 = xp.float32
    nints, ngroups = int(data.shape[0]), int(data.shape[1])
    tg, t_first, tf, suppress_one_group = _timing(
        frame_time, group_time, nframes, suppress_one_group, ngroups)

    gain = xp.astype(gain, f32)
    rn = xp.astype(readnoise, f32)
    pixeldq = xp.astype(pixeldq, xp.uint32)
    # Pixels without a usable gain are not fitted (NO_GAIN_VALUE | DO_NOT_USE).
    bad_gain = ~(gain > 0) | ~xp.isfinite(gain)
    pdq = pixeldq | xp.where(
        bad_gain, xp.asarray(_DNU | _NO_GAIN, dtype=xp.uint32), xp.asarray(0, dtype=xp.uint32)
    )
    skip = (pdq & xp.asarray(_DNU | _SAT, dtype=xp.uint32)) != 0
    safe_gain = xp.where(bad_gain, xp.ones_like(gain), gain)
    rn_var_e = (rn * safe_gain) ** 2 / (2 * nframes)  # group read-noise variance, e-
    k_rn = 6.0 * rn**2 / nframes  # 12 * (rn**2 / 2) / nframes, DN**2

    poisson, all_bad = summary["poisson"], summary["all_bad"]
    dq_or, any_cl, t_one = summary["dq_or"], summary["any_cl"], summary["t_one"]
    use_zf, suppressed = summary["use_zf"], summary["suppressed"]
    q0 = xp.astype(groupdq[:, 0, ...], xp.int32)
    y0 = data[:, 0, ...]
    zeros_i = xp.zeros(q0.shape, dtype=xp.int32)

    zf32 = xp.zeros_like(y0)
    gain_b = safe_gain
    inv_tg2 = 1.0 / tg**2

    weights = _WeightTerms(xp, ngroups)
    k_rn_tg2 = k_rn * inv_tg2  # read-noise variance numerator of a segment slope
    pois_tg = _safe_div(xp, poisson, tg * gain_b, gain_b > 0)  # Poisson numerator

    # Small per-pixel integers of the current segment travel packed in one int32 (memory
    # traffic of the loop carry dominates on CPU): position i, length n, exponent code pc,
    # "previous group usable" and "a one-group segment was kept".
    bits = max(1, int(ngroups).bit_length())
    if 2 * bits + 5 > 31:
        raise ValueError(f"ols_fit_arrays: expected at most 8191 groups, got {ngroups}")
    mask = (1 << bits) - 1
    sh_n, sh_pc, sh_prev, sh_has1 = bits, 2 * bits, 2 * bits + 3, 2 * bits + 4
    n_slots = max(1, (ngroups + 1) // 2)
    sigma2 = (rn * safe_gain) ** 2 / (2.0 * nframes)  # read variance of one group, e-**2

    if clean:
        # Every group of every integration is unflagged: one segment per integration.
        state = _unflagged_state(xp, data, gain_const=_no_grad(xp, safe_gain),
                                 rn_var_const=_no_grad(xp, rn_var_e), weights=weights,
                                 k_rn_tg2=k_rn_tg2, pois_tg=pois_tg, rn=rn, tg=tg)
    else:
        # ---------------------------------------------------------------- pass 2 (reverse):
        # for every group, the length of the segment starting there and its weight exponent.
        code_dtype = xp.uint8 if ngroups * 8 + 7 <= 255 else xp.int32

        # The segment codes are piecewise constant in the data: no gradient flows through them.
        data_const = _no_grad(xp, data)
        gain_const = _no_grad(xp, safe_gain)
        rn_var_const = _no_grad(xp, rn_var_e)

        def backward(g, carry):
            end_idx, end_val, clean_next = carry
            q = xp.astype(_plane(xp, groupdq, g), xp.int32)
            y = _plane(xp, data_const, g)
            usable = (q & _NOT_JUMP) == 0
            new_end = ~(clean_next & usable)
            end_idx = xp.where(new_end, xp.asarray(g, dtype=xp.int16), end_idx)
            end_val = xp.where(new_end, y, end_val)
            n = xp.astype(end_idx, xp.int32) - g + 1
            pcode = _exponent_code(xp, (end_val - y) * gain_const, rn_var_const)
            code = xp.astype(xp.where(usable, n * 8 + pcode, zeros_i), code_dtype)
            return (end_idx, end_val, q == 0), code

        init_back = (xp.zeros(y0.shape, dtype=xp.int16), xp.zeros_like(y0), xp.zeros_like(all_bad))
        _, codes = _scan(xp, backward, init_back, ngroups, reverse=True, collect=True)

        # ---------------------------------------------------------------- pass 3 (forward):
        # weighted least squares per segment, streamed; segment results accumulated per
        # integration.  The weights are symmetric about the segment midpoint, so the slope is
        # sum_i c_i (y_i - y_start) with table coefficients c_i (see _WeightTerms).

        def forward(g, c):
            q = xp.astype(_plane(xp, groupdq, g), xp.int32)
            y = _plane(xp, data, g)
            code = xp.astype(_plane(xp, codes, g, axis=0), xp.int32)
            seg = c["seg"]
            prev_usable = ((seg >> sh_prev) & 1) == 1
            has1 = ((seg >> sh_has1) & 1) == 1
            usable = (q & _NOT_JUMP) == 0
            clean = q == 0
            start = usable & ~(clean & prev_usable)
            n = xp.where(start, code // 8, (seg >> sh_n) & mask)
            pc = xp.where(start, code % 8, (seg >> sh_pc) & 7)
            i = xp.where(start, zeros_i, (seg & mask) + 1)
            ys = xp.where(start, y, c["ys"])
            coef = weights.coef(n, pc, i)  # w u / sum(w u^2): slope = sum(coef * y) per group
            num = xp.where(start, zf32, c["num"]) + xp.where(usable, coef * (y - ys), zf32)
            end = usable & (i == n - 1)
            multi = end & (n >= 2)
            nf = xp.astype(n, f32)
            slope = xp.where(multi, num / tg, zf32)
            slope = xp.where(multi & (rn == 0), xp.asarray(xp.nan, dtype=f32), slope)
            n3 = nf**3 - nf
            # 1 / (vr_s + vp_s) with vr_s = k / (n^3 - n) and vp_s = b / (n - 1)
            denom = k_rn_tg2 + pois_tg * nf * (nf + 1)
            invc = _safe_div(xp, n3, denom, multi & (denom != 0))
            lone = end & (n == 1) & ((q & _JUMP) == 0)
            one = lone & ~has1
            out = dict(c)
            if save_opt:
                vr = _safe_div(xp, k_rn_tg2, n3, multi)
                vp = _safe_div(xp, pois_tg, nf - 1, multi)
                out.update(_opt_step(xp, c, g, start, usable, multi, weights.weight(n, pc, i), y, ys,
                                     nf, slope, vp, vr, weights.den(n, pc), sigma2, tg, n_slots))
                out["o_n1"] = c["o_n1"] + xp.astype(lone, xp.int32)
            seg = (
                i
                | (n << sh_n)
                | (pc << sh_pc)
                | (xp.astype(usable, xp.int32) << sh_prev)
                | (xp.astype(has1 | one, xp.int32) << sh_has1)
            )
            out.update(
                seg=seg,
                ys=ys,
                num=num,
                inv_c=c["inv_c"] + invc,
                slope_c=c["slope_c"] + slope * invc,
                sum_n3=c["sum_n3"] + xp.where(multi, n3, zf32),
                sum_nm1=c["sum_nm1"] + xp.where(multi, nf - 1, zf32),
                first1=xp.where(one, y, c["first1"]),
            )
            if has_chargeloss:
                # Read-noise variance recomputed as if CHARGELOSS | DO_NOT_USE groups were good.
                both = (q & (_DNU | _CL)) == (_DNU | _CL)
                qr = xp.where(both, q & ~(_DNU | _CL), q)
                usable_r = (qr & _NOT_JUMP) == 0
                clean_r = qr == 0
                cont_r = clean_r & c["r_prev"]
                close = (c["r_len"] > 0) & ~cont_r
                out.update(_close_run(xp, c, close))
                out["r_len"] = xp.where(usable_r, xp.where(cont_r, c["r_len"] + 1, 1), zeros_i)
                out["r_jump"] = xp.where(cont_r, c["r_jump"], (qr & _JUMP) != 0)
                out["r_prev"] = usable_r
            return out, None

        state = {
            "seg": zeros_i,
            "ys": zf32,
            "num": zf32,
            "inv_c": zf32,
            "slope_c": zf32,
            "sum_n3": zf32,
            "sum_nm1": zf32,
            "first1": zf32,
        }
        if has_chargeloss:
            state.update(
                r_prev=xp.zeros_like(all_bad),
                r_len=zeros_i,
                r_jump=xp.zeros_like(all_bad),
                r_n3=zf32,
                r_multi=zeros_i,
                r_has1=xp.zeros_like(all_bad),
            )
        if save_opt:
            state.update(_opt_init(xp, zf32, zeros_i, n_slots))
        state, _ = _scan(xp, forward, state, ngroups)

    # ---------------------------------------------------------------- per integration
    has_multi = state["sum_nm1"] > 0
    one_group = ~has_multi & (((state["seg"] >> sh_has1) & 1) == 1)
    t_one2 = t_one**2
    int_slope = _safe_div(xp, state["slope_c"], state["inv_c"], has_multi & (state["inv_c"] != 0))
    int_slope = xp.where(one_group, state["first1"] / t_one, int_slope)
    int_vp = _safe_div(xp, poisson, tg * gain_b * state["sum_nm1"], has_multi)
    int_vp = xp.where(one_group, poisson / (t_one * gain_b), int_vp)
    int_vr = _safe_div(xp, k_rn * inv_tg2, state["sum_n3"], has_multi)
    int_vr = xp.where(one_group, k_rn / (6.0 * t_one2), int_vr)
    one_weight = _safe_div(
        xp, xp.ones_like(int_vp), int_vp + int_vr, one_group & (int_vp + int_vr != 0)
    )
    weight = xp.where(one_group, one_weight, state["inv_c"])
    if zeroframe is not None:
        zf_vp = poisson / (tf * gain_b)
        zf_vr = k_rn / (6.0 * tf**2)
        int_slope = xp.where(use_zf, zeroframe / tf, int_slope)
        int_vp = xp.where(use_zf, zf_vp, int_vp)
        int_vr = xp.where(use_zf, zf_vr, int_vr)
        zf_ok = use_zf & (zf_vp + zf_vr != 0)
        weight = xp.where(use_zf, _safe_div(xp, xp.ones_like(zf_vp), zf_vp + zf_vr, zf_ok), weight)
    fitted = has_multi | one_group | use_zf
    invalid = (all_bad & ~use_zf) | suppressed
    dead = ~fitted | invalid | skip
    int_slope = xp.where(dead, zf32, int_slope)
    int_slope = xp.where(invalid | skip, xp.asarray(xp.nan, dtype=f32), int_slope)
    int_vp = xp.where(dead, zf32, int_vp)
    int_vr_fit = xp.where(dead, zf32, int_vr)
    weight = xp.where(dead, zf32, weight)

    if has_chargeloss:
        state.update(_close_run(xp, state, state["r_len"] > 0))
        # A recomputed one-group segment is timed as the fit timed its lone group.
        r_special = summary["special"]
        if suppress_one_group:  # stcal then times every recomputed one-group segment by TGROUP
            r_special = xp.zeros_like(r_special)
        r_t = xp.where(r_special, xp.asarray(t_first, dtype=f32), xp.asarray(tg, dtype=f32))
        r_t = xp.where(use_zf, xp.asarray(tf, dtype=f32), r_t)  # ZEROFRAME integrations
        r_vr = _safe_div(xp, k_rn * inv_tg2, state["r_n3"], state["r_multi"] > 0)
        r_one = (state["r_multi"] == 0) & state["r_has1"]
        r_vr = xp.where(r_one, k_rn / (6.0 * r_t**2), r_vr)
        int_vr_out = xp.where(any_cl, xp.where(bad_gain, zf32, r_vr), int_vr_fit)
    else:
        int_vr_out = int_vr_fit
    # The integration error is the combined-variance estimate 1 / sum_s 1 / (vp_s + vr_s).
    int_err = xp.sqrt(_safe_div(xp, xp.ones_like(weight), weight, weight != 0))
    int_vp = xp.maximum(int_vp, zf32)

    u32 = xp.uint32
    int_dq = (
        pdq[None, ...]
        | xp.astype(dq_or, u32)
        | xp.astype(xp.where(use_zf, q0 & _JUMP, q0 & (_SAT | _JUMP)), u32)
        | xp.where(invalid, xp.asarray(_DNU, dtype=u32), xp.asarray(0, dtype=u32))
    )

    # ---------------------------------------------------------------- exposure level
    wsum = _sum_ints(xp, weight)
    rate = _safe_div(xp, _sum_ints(xp, _weighted(xp, int_slope, weight)), wsum, wsum != 0)
    rate = xp.where(wsum != 0, rate, xp.asarray(xp.nan, dtype=f32))
    vp_o = _inv_sum(xp, int_vp)
    vr_o = _inv_sum(xp, int_vr_out)
    vr_o_fit = _inv_sum(xp, int_vr_fit)
    err_o = xp.sqrt(vp_o + vr_o_fit)
    int_flags = xp.astype(int_dq, u32)
    or_flags = xp.zeros(pdq.shape, dtype=u32)
    for k in range(nints):
        or_flags = or_flags | (int_flags[k, ...] & xp.asarray(_SAT | _JUMP, dtype=u32))
    all_dnu = _sum_ints(xp, xp.astype((int_flags & xp.asarray(_DNU, dtype=u32)) == 0, xp.int32)) == 0
    rate_dq = (
        pdq | or_flags | xp.where(all_dnu, xp.asarray(_DNU, dtype=u32), xp.asarray(0, dtype=u32))
    )
    return {
        "slope": rate,
        "var_poisson": vp_o,
        "var_rnoise": vr_o,
        "err": err_o,
        "dq": rate_dq,
        "int_slope": int_slope,
        "int_var_poisson": int_vp,
        "int_var_rnoise": int_vr_out,
        "int_err": int_err,
        "int_dq": int_dq,
        **(
            {"fitopt": _opt_finish(xp, state, data, groupdq, one_group, use_zf, dead,
                                   int_slope, int_vp, int_vr_fit, t_one, tf, t_first, tg,
                                   n_slots, zeroframe)}
            if save_opt
            else {}
        ),
    }


def _exponent_code(xp, x, rn_var):
    """Index into ``_EXPONENTS`` of a segment whose signal is ``x`` electrons.

    The signal-to-noise ratio is ``x / sqrt(rn_var + x)`` (0 where that is not positive).
    """
    arg = rn_var + x
    snr = xp.where(
        arg > 0, x / xp.sqrt(xp.where(arg > 0, arg, xp.ones_like(arg))), xp.zeros_like(x)
    )
    code = xp.zeros(x.shape, dtype=xp.int32)
    for edge in _SNR_EDGES:
        code = code + xp.astype(snr >= edge, xp.int32)
    return code


def _unflagged_state(xp, data, *, gain_const, rn_var_const, weights, k_rn_tg2, pois_tg, rn,
                     tg: float) -> dict[str, Any]:
    """Per-integration accumulators of the forward pass for ramps without flagged groups.

    Every integration is one segment of ``ngroups`` groups, so the segment length is known
    and the weight exponent follows from the first and last groups; the slope is summed in
    the same order and with the same coefficients as the general forward pass.
    """
    f32 = xp.float32
    ngroups = int(data.shape[1])
    y0 = data[:, 0, ...]
    first = _no_grad(xp, y0)
    pcode = _exponent_code(xp, (_no_grad(xp, data[:, ngroups - 1, ...]) - first) * gain_const,
                           rn_var_const)
    n = xp.full(y0.shape, ngroups, dtype=xp.int32)
    zf32 = xp.zeros_like(y0)
    num = zf32
    table = _clean_coefficients(ngroups) if weights.tabulated else None
    for g in range(ngroups):
        if table is None:
            coef = weights.coef(n, pcode, xp.full(y0.shape, g, dtype=xp.int32))
        else:  # one coefficient per exponent code: a chain of selects beats a gather
            coef = xp.full(y0.shape, float(table[0, g]), dtype=f32)
            for code in range(1, len(_EXPONENTS)):
                coef = xp.where(pcode == code, xp.asarray(float(table[code, g]), dtype=f32),
                                coef)
        num = num + coef * (data[:, g, ...] - y0)
    nf = xp.astype(n, f32)
    slope = num / tg
    slope = xp.where(rn == 0, xp.asarray(xp.nan, dtype=f32), slope)
    n3 = nf**3 - nf
    denom = k_rn_tg2 + pois_tg * nf * (nf + 1)
    invc = _safe_div(xp, n3, denom, denom != 0)
    return {
        "seg": xp.zeros(y0.shape, dtype=xp.int32),
        "inv_c": zf32 + invc,
        "slope_c": zf32 + slope * invc,
        "sum_n3": n3,
        "sum_nm1": nf - 1,
        "first1": zf32,
    }


def ols_fit_arrays(
    data,
    groupdq,
    pixeldq,
    zeroframe,
    gain,
    readnoise,
    dark_current,
    *,
    frame_time: float,
    group_time: float,
    nframes: int,
    suppress_one_group: bool,
    has_chargeloss: bool = True,
    save_opt: bool = False,
) -> dict[str, Any]:
    """OLS ramp fit of arrays; the array-API kernel behind :class:`OLSRampFit`.

    Parameters
    ----------
    data : float32 (nints, ngroups, ny, nx)
    groupdq : uint8 (nints, ngroups, ny, nx)
    pixeldq : uint32 (ny, nx)
    zeroframe : float32 (nints, ny, nx) or None
    gain, readnoise, dark_current : float32 (ny, nx)
        Gain (e-/DN), CDS read noise (DN) and average dark current.
    frame_time, group_time : float
        Seconds per frame and per group.
    nframes : int
        Frames averaged into a group.
    suppress_one_group : bool
        Suppress integrations with exactly one unflagged group.
    has_chargeloss : bool
        Whether any group carries CHARGELOSS (``False`` skips the read-noise recalculation).
    save_opt : bool
        Also return ``fitopt``: per-segment arrays with ``(ngroups + 1) // 2`` segment slots and
        ``ngroups - 1`` cosmic-ray slots, plus the counts ``nseg``/``ncr`` used to trim them.

    Returns
    -------
    dict
        ``slope``, ``var_poisson``, ``var_rnoise``, ``err``, ``dq`` (2-D) and the same with
        an ``int_`` prefix (3-D, per integration).
    """
    summary = _group_summaries(
        data, groupdq, zeroframe, dark_current, frame_time=frame_time, group_time=group_time,
        nframes=nframes, suppress_one_group=suppress_one_group,
    )
    return _fit_segments(
        data, groupdq, pixeldq, zeroframe, gain, readnoise, summary, frame_time=frame_time,
        group_time=group_time, nframes=nframes, suppress_one_group=suppress_one_group,
        has_chargeloss=has_chargeloss, save_opt=save_opt,
    )


def _trace_count() -> int:
    return sum(f.trace_count() for f in (_group_statistics, _median_difference,
                                         _summaries_from_statistics, _fit_segments))


ols_fit_arrays.trace_count = _trace_count


def _weighted(xp, slope, weight):
    """``slope * weight`` with non-contributing (zero-weight) integrations as exact zeros."""
    ok = weight != 0
    return xp.where(ok, xp.where(ok, slope, xp.zeros_like(slope)) * weight, xp.zeros_like(slope))


def _sum_ints(xp, x):
    """Sum over the leading (integration) axis.

    Written as explicit additions of planes for moderate ``nints``: XLA on CPU reduces
    over a non-minor axis an order of magnitude slower than it adds planes.
    """
    n = int(x.shape[0])
    if n > 64:
        return xp.sum(x, axis=0)
    total = x[0, ...]
    for k in range(1, n):
        total = total + x[k, ...]
    return total


def _inv_sum(xp, var):
    """``1 / sum(1 / var)`` over integrations with ``var > 0`` (0 where none)."""
    ok = var > 0
    inv = _safe_div(xp, xp.ones_like(var), var, ok)
    total = _sum_ints(xp, inv)
    return _safe_div(xp, xp.ones_like(total), total, total > 0)


def _close_run(xp, c, close):
    """Account a finished run of the CHARGELOSS read-noise segmentation."""
    n = xp.astype(c["r_len"], xp.float32)
    multi = close & (c["r_len"] >= 2)
    one = close & (c["r_len"] == 1) & ~c["r_jump"]
    return {
        "r_n3": c["r_n3"] + xp.where(multi, n**3 - n, xp.zeros_like(n)),
        "r_multi": c["r_multi"] + xp.astype(multi, xp.int32),
        "r_has1": c["r_has1"] | one,
    }


# --------------------------------------------------------------------------- step
#: Default temporaries per row chunk.  Chunks this small keep the group loops' per-pixel
#: state in cache: on a 2-core XLA CPU a 2048x2048 frame ran about twice as fast in
#: 48 MiB chunks as in one piece (NumPy likewise), and the peak memory stays low.
DEFAULT_CHUNK_BYTES = 48 * 2**20
_WEIGHTINGS = ("optimal",)


@dataclasses.dataclass(frozen=True, repr=False)
class OLSRampFit(Step):
    """Fit ramps by optimally weighted ordinary least squares (stcal ``OLS_C``).

    ``OLSRampFit(...)(ramp, gain_ref, readnoise_ref, dark_current=None)`` returns a
    :class:`~stcal_models.models.RampFitResult` with ``rate`` (exposure) and ``rateints``
    (per integration) products: slope (DN/s), ``var_poisson``, ``var_rnoise``, ``err`` and
    ``dq``.

    Parameters
    ----------
    suppress_one_group : bool
        Give no slope (NaN, DO_NOT_USE) for integrations with exactly one unflagged group
        (e.g. saturated from the second group on).  Default ``True`` (the JWST pipeline's
        default for the step).
    save_opt : bool
        Also return the optional per-segment product (``RampFitResult.fitopt``).
    weighting : str
        ``"optimal"``, the only weighting stcal supports.
    max_memory : float or None
        Budget in GiB for the kernel's temporaries; rows are processed in chunks that fit.
        ``None`` uses chunks of about 48 MiB (:data:`DEFAULT_CHUNK_BYTES`), the fastest
        size measured on CPU; results do not depend on the chunking.
    engine : str
        ``"serial"`` (chunks one after another) or ``"dask"`` (chunks as tasks of dask's
        threaded scheduler; needs the optional ``dask`` dependency).  Results are identical.
    progress : bool or None
        Progress bar over chunks: ``None`` shows one only when the fit takes more than a
        couple of seconds, ``True`` always, ``False`` never.

    Notes
    -----
    The read-noise reference is the CDS noise ``R`` in DN; one group carries
    ``R**2 / (2 * nframes)``, so a segment of ``n`` groups has
    ``VAR_RNOISE = 12 R**2 / (2 nframes (n**3 - n) tgroup**2)``.  The weight exponent uses
    ``S = x / sqrt(gain**2 R**2 / (2 nframes) + x)`` with ``x = gain * (last - first)``.
    ``VAR_POISSON = (max(slope_est, 0) + dark_current) / (tgroup gain (n - 1))`` where the
    slope estimate is the mean over integrations of each integration's median usable first
    difference; ``dark_current`` is added as given (DN/s).  Where the documentation is
    silent this class reproduces stcal 1.17.0 ``OLS_C`` as observed: a group is usable when
    it carries no flag other than JUMP_DET; a one-group segment flagged JUMP_DET is dropped;
    when all segments have one group only the first is used; an integration whose only
    unflagged group is the first is timed by the first group's mean time
    ``frame_time (nframes + 1) / 2``; ZEROFRAME replaces integrations without any unflagged
    group (not with ``suppress_one_group``); the CHARGELOSS read-noise variance treats
    groups flagged exactly ``CHARGELOSS | DO_NOT_USE`` as good (``VAR_RNOISE`` only, ``ERR``
    keeps the fitted variance); the integration ``ERR`` is the combined-variance estimate.
    The ``save_opt`` product copies stcal's layout and conventions: SIGSLOPE/SIGYINT in DN
    per group from the weighted fit with the read noise in electrons, YINT at group index
    0, WEIGHTS ``1 / (vp + vr)**2``, PEDESTAL ``first group - rate * t_first / tgroup``.
    """

    suppress_one_group: bool = True
    save_opt: bool = False
    weighting: str = "optimal"
    max_memory: float | None = None
    engine: str = "serial"
    progress: bool | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("suppress_one_group", "save_opt"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"{owner}.{name}: expected bool, got {type(getattr(self, name)).__name__}"
                )
        check_choice(owner, "weighting", self.weighting, _WEIGHTINGS)
        check_chunk_options(owner, self.max_memory, self.engine, self.progress)

    # ------------------------------------------------------------------ call
    def __call__(self, ramp: RampModel, gain_ref, readnoise_ref, dark_current=None) -> RampFitResult:
        """Fit ``ramp``; see the class docstring.

        Raises
        ------
        TypeError, ValueError
            For inputs of the wrong type, references not covering the frame, or an
            uneven (Roman-style) read pattern.
        """
        owner = type(self).__name__
        inputs = prepare_inputs(ramp, gain_ref, readnoise_ref, dark_current, owner=owner)
        meta = inputs.meta
        if meta.read_pattern is not None and meta.is_uneven:
            raise ValueError(
                f"{owner}: expected an evenly sampled exposure (JWST nframes/groupgap), got an "
                "uneven read pattern; use the Casertano fit for Roman-style resultants"
            )
        nints, ngroups, ny, nx = inputs.shape
        params = dict(
            frame_time=float(meta.frame_time),
            group_time=float(meta.group_time),
            nframes=int(meta.nframes),
            suppress_one_group=self.suppress_one_group,
        )
        # One host sync: CHARGELOSS anywhere, and which pixels have any flagged group.
        flagged, counts = _flag_census(inputs.groupdq)
        has_cl, n_flagged = (int(v) for v in to_numpy(counts))
        closed_form = (
            not self.save_opt and ngroups >= 2 and n_flagged <= _CLOSED_FORM_MAX_FLAGGED * ny * nx
        )
        if not closed_form:
            out = self._fit(inputs, params, has_cl, clean=False, owner=owner)
        else:
            # Unflagged pixels (most of a typical exposure) in closed form; the others
            # gathered into a compact ramp, fitted segment by segment and put back.
            out = self._fit(inputs, params, False, clean=True, owner=owner)
            if n_flagged:
                # JAX pads with an index past the frame (gathered as zeros, never put back).
                pad = ny * nx if _is_jax(inputs.xp) else None
                index = _flagged_index(flagged, n_flagged, nx, pad=pad)
                subset = _take_pixels(_pixel_arrays(inputs), inputs.xp.asarray(index))
                sub_out = self._fit(dataclasses.replace(inputs, **subset), params, has_cl,
                                    clean=False, owner=f"{owner} (flagged pixels)")
                for key in list(out):
                    out[key] = _put_pixels(out[key], sub_out.pop(key), index, n_flagged)
        rate = {k: out[k] for k in ("data", "dq", "err", "var_poisson", "var_rnoise")}
        ints = {k: out["int_" + k] for k in ("data", "dq", "err", "var_poisson", "var_rnoise")}
        return build_result(rate, ints, meta=meta, fitopt=out.get("fitopt"))

    # ------------------------------------------------------------------ helpers
    def _fit(self, inputs, params: dict, has_cl: bool, *, clean: bool, owner: str):
        """Run the kernel over row chunks of ``inputs`` and join the chunk outputs."""
        nints, ngroups, ny, nx = inputs.shape
        chunks = _row_chunks(ny, _row_bytes(nints, ngroups, nx), self._budget(inputs))
        if clean and _is_jax(inputs.xp) and self.max_memory is None:
            # The closed form, compiled per chunk position, reads its rows straight from
            # the full arrays (an eager JAX slice is a copy); few positions, few compiles.
            # (With a memory budget the chunks follow it and are sliced eagerly.)
            if len(chunks) > _MAX_STATIC_CHUNKS:
                chunks = _row_chunks(ny, 1, -(-ny // _MAX_STATIC_CHUNKS))

            def fit_static(r0: int, r1: int) -> dict[str, Any]:
                summary = _group_summaries(inputs.data, inputs.groupdq, inputs.zeroframe,
                                           inputs.dark_current, rows=(r0, r1), **params)
                return _fit_segments(inputs.data, inputs.groupdq, inputs.pixeldq,
                                     inputs.zeroframe, inputs.gain, inputs.readnoise, summary,
                                     has_chargeloss=False, clean=True, rows=(r0, r1), **params)

            return self._join_chunks(inputs.xp, ny, fit_static, chunks, owner)

        def fit_rows(r0: int, r1: int) -> dict[str, Any]:
            rows = slice(r0, r1)
            zf = None if inputs.zeroframe is None else inputs.zeroframe[:, rows, :]
            data, groupdq = inputs.data[:, :, rows, :], inputs.groupdq[:, :, rows, :]
            summary = _group_summaries(data, groupdq, zf, inputs.dark_current[rows, :],
                                       **params)
            return _fit_segments(data, groupdq, inputs.pixeldq[rows, :], zf,
                                 inputs.gain[rows, :], inputs.readnoise[rows, :], summary,
                                 has_chargeloss=has_cl, save_opt=self.save_opt, clean=clean,
                                 **params)

        return self._join_chunks(inputs.xp, ny, fit_rows, chunks, owner)

    def _budget(self, inputs) -> int:
        if self.max_memory is not None:
            return int(self.max_memory * 2**30)
        return DEFAULT_CHUNK_BYTES

    def _join_chunks(self, xp, ny: int, fn, chunks, owner: str) -> dict[str, Any]:
        """``fn(r0, r1)`` on every row chunk, written into full-frame outputs (renamed)."""
        joined = map_row_chunks(fn, xp, ny, chunks, engine=self.engine, progress=self.progress,
                                owner=owner)
        return _rename_outputs(xp, joined)


#: Largest fraction of pixels with a flagged group for which the unflagged ones are fitted
#: in closed form and the flagged ones gathered apart (beyond it the gather costs more
#: than it saves).
_CLOSED_FORM_MAX_FLAGGED = 0.5
#: Most row chunks of the closed form under JAX (each chunk position is compiled apart).
_MAX_STATIC_CHUNKS = 4


@jit
def _flag_census(groupdq):
    """Pixels with any GROUPDQ flag, and ``[any CHARGELOSS, number of those pixels]``.

    The OR over groups is written plane by plane (XLA on CPU reduces over leading axes
    slowly).
    """
    xp = array_namespace(groupdq)
    nints, ngroups = int(groupdq.shape[0]), int(groupdq.shape[1])
    if nints * ngroups > 1024:
        flagged = xp.any(groupdq != 0, axis=(0, 1))
        any_cl = xp.any((groupdq & xp.asarray(_CL, dtype=groupdq.dtype)) != 0)
    else:
        combined = groupdq[0, 0, ...]
        for k in range(nints):
            for g in range(ngroups):
                combined = combined | groupdq[k, g, ...]
        flagged = combined != 0
        any_cl = xp.any((combined & xp.asarray(_CL, dtype=combined.dtype)) != 0)
    counts = xp.stack([xp.astype(any_cl, xp.int32), xp.sum(xp.astype(flagged, xp.int32))])
    return flagged, counts


def _flagged_index(flagged, count: int, nx: int, *, pad: int | None) -> np.ndarray:
    """Flat indices of the ``count`` flagged pixels, padded to whole rows of ``nx``.

    The number of rows is rounded up to a power of two (few distinct shapes to compile
    under JAX).  The padding is ``pad``, or the first flagged pixel again when ``None``.
    """
    index = np.flatnonzero(to_numpy(flagged))
    rows = 1 << max(0, int(-(-count // nx) - 1).bit_length())
    padded = np.full(rows * nx, index[0] if pad is None else pad, dtype=np.int32)
    padded[:count] = index
    return padded


def _pixel_arrays(inputs) -> dict[str, Any]:
    """The per-pixel arrays of the fit inputs (leading axes kept, pixels last two)."""
    return {
        name: getattr(inputs, name)
        for name in ("data", "groupdq", "pixeldq", "zeroframe", "gain", "readnoise",
                     "dark_current")
    }


@jit
def _take_pixels(arrays: dict[str, Any], index):
    """``arrays`` reduced to the pixels ``index`` (flat), laid out as rows of the frame width.

    Indices past the last pixel (JAX padding) give zeros.
    """
    xp = array_namespace(index)
    out = {}
    for name, x in arrays.items():
        if x is None:
            out[name] = None
            continue
        lead, nx = tuple(x.shape[:-2]), int(x.shape[-1])
        flat = xp.reshape(x, (*lead, -1))
        if _is_jax(xp):
            taken = xp.take(flat, index, axis=len(lead), mode="fill", fill_value=0)
        else:
            taken = xp.take(flat, index, axis=len(lead))
        out[name] = xp.reshape(taken, (*lead, int(index.shape[0]) // nx, nx))
    return out


def _put_pixels(full, subset, index, count: int):
    """``full`` with the pixels ``index[:count]`` (flat) replaced by ``subset``'s first ``count``.

    ``full`` is a fresh kernel output and may be updated in place.
    """
    xp = array_namespace(full)
    if _is_jax(xp):
        return _scatter_pixels(full, subset, index)
    lead = tuple(full.shape[:-2])
    values = xp.reshape(subset, (*lead, -1))[..., :count]
    if isinstance(full, np.ndarray):
        flat = full.reshape((*lead, -1))  # a view when ``full`` is contiguous, else a copy
        flat[..., np.asarray(index[:count])] = values
        return flat.reshape(full.shape)
    # Namespaces without integer-array assignment: pick each pixel's value by its slot.
    mask = np.zeros(int(np.prod(full.shape[-2:])), dtype=bool)
    mask[np.asarray(index[:count])] = True
    slot = xp.asarray(np.clip(np.cumsum(mask) - 1, 0, None))
    picked = xp.take(values, slot, axis=len(lead))
    merged = xp.where(xp.asarray(mask), picked, xp.reshape(full, (*lead, -1)))
    return xp.reshape(merged, full.shape)


def _scatter_pixels(full, subset, index):
    """JAX: ``full`` with flat pixels ``index`` set from ``subset`` (out-of-range dropped).

    ``full`` is donated: the update happens in place.
    """
    import jax

    global _SCATTER
    if _SCATTER is None:

        def scatter(full, subset, index):
            lead = tuple(full.shape[:-2])
            flat = full.reshape((*lead, -1))
            values = subset.reshape((*lead, -1))
            return flat.at[..., index].set(values, mode="drop").reshape(full.shape)

        _SCATTER = jax.jit(scatter, donate_argnums=0)
    return _SCATTER(full, subset, index)


_SCATTER = None


def _row_bytes(nints: int, ngroups: int, nx: int) -> int:
    """Estimated bytes of kernel temporaries per image row."""
    return nints * nx * (6 * ngroups + 120)


def _row_chunks(ny: int, row_bytes: int, budget: int) -> list[tuple[int, int]]:
    """Split ``ny`` rows into chunks of at most ``budget // row_bytes`` rows.

    Prefers a chunk count that divides ``ny`` (equal chunks: JAX compiles one shape), as
    long as that does not more than double the number of chunks.
    """
    rows = max(1, min(ny, budget // max(row_bytes, 1)))
    n = -(-ny // rows)
    for count in range(n, 2 * n + 1):
        if ny % count == 0:
            n = count
            break
    size = -(-ny // n)
    return [(r0, min(ny, r0 + size)) for r0 in range(0, ny, size)]


_OUT_NAMES = {
    "slope": "data",
    "var_poisson": "var_poisson",
    "var_rnoise": "var_rnoise",
    "err": "err",
    "dq": "dq",
}


def _rename_outputs(xp, joined: dict[str, Any]) -> dict[str, Any]:
    """The kernel's full-frame outputs with ``slope`` renamed ``data`` and fitopt trimmed."""
    out: dict[str, Any] = {}
    for key, value in joined.items():
        name = key
        for src, dst in _OUT_NAMES.items():
            if key == src:
                name = dst
            elif key == "int_" + src:
                name = "int_" + dst
        out[name] = _trim_fitopt(xp, value) if key == "fitopt" else value
    return out


# --------------------------------------------------------------------------- fitopt
_OPT_SEG = ("slope", "sigslope", "yint", "sigyint", "weights", "var_poisson", "var_rnoise")


def _opt_init(xp, zf32, zeros_i, n_slots: int) -> dict[str, Any]:
    """Carry of the optional per-segment product: running sums and one plane per slot."""
    out = {"o_sw": zf32, "o_swy": zf32, "o_count": zeros_i, "o_n1": zeros_i}
    for name in _OPT_SEG:
        out["o_" + name] = [zf32] * n_slots
    return out


def _opt_step(xp, c, g, start, usable, multi, w, y, ys, nf, slope, vp, vr, den, sigma2, tg,
              n_slots):
    """Accumulate the weight sums of the current segment and store finished segments."""
    zero = xp.zeros_like(c["o_sw"])
    sw = xp.where(start, zero, c["o_sw"]) + xp.where(usable, w, zero)
    swy = xp.where(start, zero, c["o_swy"]) + xp.where(usable, w * (y - ys), zero)
    gi = xp.astype(xp.asarray(g), xp.float32) if not isinstance(g, int) else float(g)
    x_mid = gi - (nf - 1) / 2  # absolute group index of the segment midpoint (at its end)
    slope_g = slope * tg  # DN per group
    ybar = ys + _safe_div(xp, swy, sw, multi & (sw > 0))
    yint = ybar - slope_g * x_mid
    two = multi & (nf == 2)
    var_slope = _safe_div(xp, sigma2, den, multi & (den > 0))
    var_yint = sigma2 * (_safe_div(xp, xp.ones_like(sw), sw, multi & (sw > 0))
                         + _safe_div(xp, x_mid * x_mid, den, multi & (den > 0)))
    var_slope = xp.where(two, 2 * sigma2, var_slope)
    var_yint = xp.where(two, 2 * sigma2, var_yint)
    varc = vp + vr
    weights = _safe_div(xp, xp.ones_like(varc), varc * varc, multi & (varc != 0))
    values = {
        "slope": slope,
        "sigslope": xp.sqrt(var_slope),
        "yint": yint,
        "sigyint": xp.sqrt(var_yint),
        "weights": weights,
        "var_poisson": vp,
        "var_rnoise": vr,
    }
    out = {"o_sw": sw, "o_swy": swy, "o_count": c["o_count"] + xp.astype(multi, xp.int32)}
    for name in _OPT_SEG:
        slots = list(c["o_" + name])
        for k in range(n_slots):
            slots[k] = xp.where(multi & (c["o_count"] == k), values[name], slots[k])
        out["o_" + name] = slots
    return out


def _opt_finish(xp, state, data, groupdq, one_group, use_zf, dead, int_slope, int_vp, int_vr,
                t_one, tf, t_first, tg, n_slots, zeroframe):
    """Per-segment, pedestal and cosmic-ray-magnitude arrays (untrimmed) with their counts."""
    zero = xp.zeros_like(int_slope)
    single = (one_group | use_zf) & ~dead
    one_var = int_vp + int_vr
    one_w = _safe_div(xp, xp.ones_like(one_var), one_var * one_var, single & (one_var != 0))
    single_values = {
        "slope": int_slope,
        "sigslope": zero,
        "yint": zero,
        "sigyint": zero,
        "weights": one_w,
        "var_poisson": int_vp,
        "var_rnoise": int_vr,
    }
    out = {}
    keep = ~dead
    for name in _OPT_SEG:
        slots = list(state["o_" + name])
        slots[0] = xp.where(single, single_values[name], slots[0])
        slots = [xp.where(keep, s, zero) for s in slots]
        out[name] = xp.stack(slots, axis=1)
    # Segment slots in use: the multi-group segments, else the one-group ones (stcal's count).
    count = state["o_count"]
    nseg = xp.where(count > 0, count, state["o_n1"])
    out["nseg"] = xp.where(use_zf, xp.maximum(nseg, xp.ones_like(nseg)), nseg)
    # Pedestal: the integration slope extrapolated from the first group to time zero.
    y0 = data[:, 0, ...]
    sat0 = (xp.astype(groupdq[:, 0, ...], xp.int32) & _SAT) != 0
    if zeroframe is not None:
        y0 = xp.where(use_zf, zeroframe, y0)
        sat0 = sat0 & ~use_zf
    ped = y0 - int_slope * (t_first / tg)
    out["pedestal"] = xp.where(sat0 | xp.isnan(ped), zero, ped)
    # Cosmic-ray magnitudes: first differences at JUMP_DET groups, in ramp order.
    ngroups = int(data.shape[1])
    count = xp.zeros(y0.shape, dtype=xp.int32)
    slots = [zero] * max(ngroups - 1, 1)
    prev_q = xp.astype(groupdq[:, 0, ...], xp.int32)
    for g in range(1, ngroups):
        q = xp.astype(groupdq[:, g, ...], xp.int32)
        jump = (q & _JUMP) != 0
        mag = data[:, g, ...] - data[:, g - 1, ...]
        mag = xp.where(((q | prev_q) & _SAT) != 0, xp.asarray(xp.nan, dtype=mag.dtype), mag)
        for k in range(g):
            slots[k] = xp.where(jump & (count == k), mag, slots[k])
        count = count + xp.astype(jump, xp.int32)
        prev_q = q
    out["crmag"] = xp.stack(slots, axis=1)
    out["ncr"] = count
    return out


def _trim_fitopt(xp, joined: dict[str, Any]) -> dict[str, Any]:
    """Full-frame fitopt arrays with the unused segment / cosmic-ray slots cut (host sync)."""
    joined = dict(joined)
    nseg = max(0, int(xp.max(joined.pop("nseg"))))
    ncr = max(0, int(xp.max(joined.pop("ncr"))))
    out = {name: joined[name][:, :nseg, ...] for name in _OPT_SEG}
    out["pedestal"] = joined["pedestal"]
    out["crmag"] = joined["crmag"][:, :ncr, ...]
    return out
