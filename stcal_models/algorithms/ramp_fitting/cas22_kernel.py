"""Array-API kernel of the Casertano (2022) optimal-weight fit of uneven resultants.

The fit follows Casertano et al. (2022), *Determination of count rates for uneven
resultants* (Roman-STScI-000394), section 5, and the jump detection of the romancal
"Optimized Least-squares with Uneven Ramps" documentation (Sharma & Casertano):

* resultant ``i`` averages ``N_i`` reads taken at ``t_k = k * read_time``; its mean time is
  ``tbar_i`` and its Poisson "variance time" ``tau_i = sum_k (2 (N_i - k) + 1) t_k / N_i**2``;
* a segment (run of usable resultants) is fitted with weights
  ``W_i = (1 + P) N_i / (1 + P N_i) * |tbar_i - tbar_mid|**P`` whose power ``P`` comes from
  the segment's signal to noise ``S = s / sqrt(rn**2 + s)``, ``s = max(R_last - R_first, 0)``
  (``P`` = 0, 0.4, 1, 3, 6, 10 from S = 0, 5, 10, 20, 50, 100 on);
* ``K_i = (F0 tbar_i - F1) W_i / (F2 F0 - F1**2)``, slope ``sum K_i R_i``, read variance
  ``rn**2 sum K_i**2 / N_i`` and Poisson variance per unit rate
  ``sum K_i**2 tau_i + 2 sum_{i<j} K_i K_j tbar_i``;
* with jump detection every single and double difference of a segment gives a statistic
  ``delta / sqrt(var)`` (``delta`` the excess slope over the segment's, ``var`` its
  variance less the correction ``slope / (tbar_last - tbar_first)``).  The segment's
  statistic starts from its last single difference and is replaced by any larger one
  (a NaN last difference therefore means "no jump"); when it reaches
  ``intercept - constant * log10(max(slope, 1))`` both resultants of that difference are
  flagged and the segment is split around them, until no segment has a jump;
* segments of two or more resultants are averaged with inverse read-variance weights.

How it is computed: the coefficients ``K_i`` depend only on the segment's first and last
resultant and on ``P``, so they are tabulated once per read pattern (on the host, in
double precision) and gathered per pixel.  Everything per pixel is then a few scans over
the resultants carrying per-pixel state (``jax.lax.scan`` on JAX, a Python loop over
resultants otherwise): a backward scan finds each segment's end, a forward scan fits,
a backward scan evaluates the jump statistics and a forward scan marks the flagged
resultants.  The data-dependent splitting is a fixed number of masked passes under
``jax.jit``; eagerly, later passes only revisit the pixels that had a jump.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat
import numpy as np

from ...backends import array_namespace, jit

__all__ = ["EAGER_CHUNK", "POWER_TABLE", "cas22_fit", "read_pattern_times"]

#: ``(lower signal-to-noise bound, power)`` of the optimal weights (Fixsen et al. 2000).
POWER_TABLE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (5.0, 0.4),
    (10.0, 1.0),
    (20.0, 3.0),
    (50.0, 6.0),
    (100.0, 10.0),
)
_NPOW = len(POWER_TABLE)

#: Pixels per block when running eagerly (NumPy, array_api_strict): blocks of this size
#: keep the per-resultant temporaries in cache.
EAGER_CHUNK = 65536


def read_pattern_times(
    read_pattern: Sequence[Sequence[int]], read_time: float
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, ...]]:
    """Mean times, variance times and read counts of the resultants of a read pattern.

    Parameters
    ----------
    read_pattern : sequence of sequence of int
        1-based, increasing read indices averaged into each resultant.
    read_time : float
        Seconds per read (Roman ``FRAME_TIME``); read ``k`` happens at ``k * read_time``.

    Returns
    -------
    tbar, tau : tuple of float
        ``tbar_i`` (mean read time, s) and ``tau_i`` (Casertano 2022: the variance of a
        resultant of a unit-rate Poisson ramp, s).
    nreads : tuple of int
        Reads averaged into each resultant.
    """
    tbar, tau, nreads = [], [], []
    for reads in read_pattern:
        times = [float(k) * float(read_time) for k in reads]
        n = len(times)
        tbar.append(math.fsum(times) / n)
        tau.append(math.fsum((2 * (n - k) + 1) * t for k, t in enumerate(times, start=1)) / n**2)
        nreads.append(n)
    return tuple(tbar), tuple(tau), tuple(nreads)


# --------------------------------------------------------------------------- host tables
@functools.lru_cache(maxsize=32)
def _tables(tbar: tuple[float, ...], tau: tuple[float, ...], nreads: tuple[int, ...]):
    """Coefficient and variance tables of every segment ``(first, last)`` and power.

    Returns NumPy float32 arrays: ``coeff`` ``[(first * n + last) * NPOW + p, i]``
    flattened, ``rvc`` and ``pvc`` ``[(first * n + last) * NPOW + p]`` (read variance per
    unit read-noise variance, Poisson variance per unit rate), ``inv_span``
    ``[first * n + last]`` and the per-difference constants of the jump statistic.
    """
    t = np.asarray(tbar, dtype=np.float64)
    tv = np.asarray(tau, dtype=np.float64)
    nr = np.asarray(nreads, dtype=np.float64)
    n = t.size
    coeff = np.zeros((n, n, _NPOW, n))
    rvc = np.zeros((n, n, _NPOW))
    pvc = np.zeros((n, n, _NPOW))
    inv_span = np.zeros((n, n))
    tol = 1e-9 * max(1.0, float(np.max(np.abs(t))))
    for first in range(n):
        for last in range(first + 1, n):
            sl = slice(first, last + 1)
            ts, taus, ns = t[sl], tv[sl], nr[sl]
            half = (ts[-1] - ts[0]) / 2
            inv_span[first, last] = 1.0 / (2 * half)
            # Offsets from the midpoint; exact coincidences are exactly zero so that
            # |u|**P vanishes there instead of being (rounding error)**P.
            offset = ts - (ts[0] + ts[-1]) / 2
            u = np.where(np.abs(offset) <= tol, 0.0, offset / half)
            since = ts - ts[0]
            for p_index, (_, power) in enumerate(POWER_TABLE):
                w = (1 + power) * ns / (1 + power * ns) * np.abs(u) ** power
                f0, f1, f2 = w.sum(), (w * u).sum(), (w * u * u).sum()
                det = (f2 * f0 - f1 * f1) * half
                if det == 0:
                    continue
                k = (f0 * u - f1) * w / det
                suffix = np.concatenate([np.cumsum(k[::-1])[::-1][1:], [0.0]])
                coeff[first, last, p_index, sl] = k
                rvc[first, last, p_index] = np.sum(k * k / ns)
                # sum K_i^2 tau_i + 2 sum_{i<j} K_i K_j tbar_i, times from the first
                # resultant (the sum does not depend on the origin because sum K = 0).
                pvc[first, last, p_index] = np.sum(
                    k * k * (taus - ts[0]) + 2 * k * since * suffix
                )
    stats = np.zeros((6, n))
    for step, row in ((1, 0), (2, 3)):
        for i in range(n - step):
            j = i + step
            dt = t[j] - t[i]
            stats[row, i] = 1.0 / dt
            stats[row + 1, i] = (1.0 / nr[i] + 1.0 / nr[j]) / dt**2
            stats[row + 2, i] = (tv[i] + tv[j] - 2.0 * t[i]) / dt**2
    f32 = np.float32
    return {
        "coeff": coeff.reshape(-1).astype(f32),
        "rvc": rvc.reshape(-1).astype(f32),
        "pvc": pvc.reshape(-1).astype(f32),
        "inv_span": inv_span.reshape(-1).astype(f32),
        "stats": stats.astype(f32),
    }


# --------------------------------------------------------------------------- scans
def _scan(xp, body: Callable, carry: tuple, xs: tuple, reverse: bool = False):
    """``jax.lax.scan`` on JAX, the same loop in Python otherwise (``ys`` stacked, in order)."""
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return jax.lax.scan(body, carry, xs, reverse=reverse)
    n = int(xs[0].shape[0])
    order = range(n - 1, -1, -1) if reverse else range(n)
    ys = [None] * n
    for i in order:
        carry, ys[i] = body(carry, tuple(x[i, ...] for x in xs))
    stacked = tuple(xp.stack([y[j] for y in ys], axis=0) for j in range(len(ys[0])))
    return carry, stacked


def _take(xp, table, index):
    """``table[index]`` for a 1-D table and an integer index array of any shape."""
    return xp.reshape(xp.take(table, xp.reshape(index, (-1,))), index.shape)


def _power_index(xp, signal, rn2):
    """Index into :data:`POWER_TABLE` of the signal-to-noise ``signal / sqrt(rn**2 + signal)``."""
    denom = rn2 + signal
    snr = xp.where(denom > 0, signal / xp.sqrt(xp.where(denom > 0, denom, 1.0)), 0.0)
    index = xp.zeros(snr.shape, dtype=xp.int32)
    for bound, _ in POWER_TABLE[1:]:
        index = index + xp.astype(snr >= bound, xp.int32)
    return index


# --------------------------------------------------------------------------- passes
def _fit_pass(xp, res, usable, rn2, tab, totals: bool, diagnostic: bool = False) -> dict:
    """Fit every run of usable resultants of every pixel (``res``: (n, npix))."""
    n, npix = (int(s) for s in res.shape)
    index = xp.arange(n, dtype=xp.int32)
    zeros_i = xp.zeros((npix,), dtype=xp.int32)
    zeros_f = xp.zeros((npix,), dtype=xp.float32)
    false = xp.zeros((npix,), dtype=xp.bool)

    def last_of_run(carry, x):
        r, u, i = x
        last_c, r_c, u_c = carry
        cont = u & u_c
        last = xp.where(cont, last_c, i)
        r_last = xp.where(cont, r_c, r)
        return (last, r_last, u), (last, r_last)

    _, (last, r_last) = _scan(xp, last_of_run, (zeros_i, zeros_f, false), (res, usable, index), True)

    coeff, rvc_t, pvc_t = tab["coeff"], tab["rvc"], tab["pvc"]

    def fit(carry, x):
        r, u, last_i, r_last_i, i = x
        first_c, r_c, u_c, acc_c, w_c, ws_c, wwp_c = carry
        cont = u & u_c
        first = xp.where(cont, first_c, i)
        r_first = xp.where(cont, r_c, r)
        power = _power_index(xp, xp.maximum(r_last_i - r_first, 0.0), rn2)
        code = (first * n + last_i) * _NPOW + power
        k = xp.where(u, _take(xp, coeff, code * n + i), 0.0)
        acc = xp.where(cont, acc_c, 0.0) + k * (r - r_first)
        end = u & (last_i == i)
        ys = (first, acc, end)
        if totals or diagnostic:
            good = end & (last_i > first) & xp.isfinite(acc)
            rvc = _take(xp, rvc_t, code)
            pvc = _take(xp, pvc_t, code)
            good = good & (rvc > 0)
            w = xp.where(good, 1.0 / xp.where(good, rvc, 1.0), 0.0)
            w_c = w_c + w
            ws_c = ws_c + xp.where(good, w * acc, 0.0)
            wwp_c = wwp_c + w * w * xp.where(good, pvc, 0.0)
            if diagnostic:
                ys = (*ys, good, xp.where(good, rvc, 0.0), xp.where(good, pvc, 0.0), w)
        return (first, r_first, u, acc, w_c, ws_c, wwp_c), ys

    init = (zeros_i, zeros_f, false, zeros_f, zeros_f, zeros_f, zeros_f)
    carry, ys = _scan(xp, fit, init, (res, usable, last, r_last, index))
    out = {"first": ys[0], "acc": ys[1], "end": ys[2], "last": last}
    if totals or diagnostic:
        out.update(w=carry[4], ws=carry[5], wwp=carry[6])
    if diagnostic:
        out.update(seg_good=ys[3], seg_rvc=ys[4], seg_pvc=ys[5], seg_w=ys[6])
    return out


def _jump_pass(xp, res, usable, fit, rn2, tab, intercept: float, constant: float):
    """Flags of one round of jump detection on every segment (bool, like ``res``)."""
    n, npix = (int(s) for s in res.shape)
    index = xp.arange(n, dtype=xp.int32)
    zeros_i = xp.zeros((npix,), dtype=xp.int32)
    zeros_f = xp.zeros((npix,), dtype=xp.float32)
    false = xp.zeros((npix,), dtype=xp.bool)
    stats = tab["stats"]
    inv_span_t = tab["inv_span"]

    def statistic(diff, alpha, idt, a, b, inv_span):
        delta = diff * idt - alpha
        var = rn2 * a + alpha * (b - inv_span)
        positive = var > 0
        return xp.where(positive, delta / xp.sqrt(xp.where(positive, var, 1.0)), xp.nan)

    def scan_stats(carry, x):
        r, u, first, last, acc, i, idt1, a1, b1, idt2, a2, b2 = x
        alpha_c, m_c, k_c, r1, r2 = carry
        alpha = xp.where(u & (last == i), acc, alpha_c)
        inv_span = _take(xp, inv_span_t, first * n + last)
        s1 = statistic(r1 - r, alpha, idt1, a1, b1, inv_span)
        s2 = statistic(r2 - r, alpha, idt2, a2, b2, inv_span)
        has1 = u & (last >= i + 1)
        has2 = u & (last >= i + 2)
        s = xp.where(has2 & ~xp.isnan(s2), xp.where(xp.isnan(s1), s2, xp.maximum(s1, s2)), s1)
        is_last = has1 & (last == i + 1)
        update = has1 & ((s > m_c) | ((s == m_c) & (k_c != last - 1)))
        m = xp.where(is_last | update, s, m_c)
        k = xp.where(is_last | update, i, k_c)
        threshold = intercept - constant * xp.log10(xp.maximum(alpha, 1.0))
        detect = u & (first == i) & (last - first >= 2) & (m >= threshold)
        return (alpha, m, k, r, r1), (detect, k)

    xs = (res, usable, fit["first"], fit["last"], fit["acc"], index) + tuple(
        stats[j, ...] for j in range(6)
    )
    _, (detect, k) = _scan(
        xp, scan_stats, (zeros_f, zeros_f, zeros_i, zeros_f, zeros_f), xs, reverse=True
    )

    def mark(carry, x):
        u, first, det_i, k_i, i = x
        det_c, k_c = carry
        start = u & (first == i)
        det = xp.where(start, det_i, det_c)
        kk = xp.where(start, k_i, k_c)
        flag = u & det & ((kk == i) | (kk == i - 1))
        return (det, kk), (flag,)

    _, (flags,) = _scan(xp, mark, (false, zeros_i), (usable, fit["first"], detect, k, index))
    return flags


def _averages(xp, rn2, w, ws, wwp):
    """Pixel slope and variances from the weighted sums of the segments."""
    valid = w > 0
    safe = xp.where(valid, w, 1.0)
    slope = ws / safe
    pois = wwp / (safe * safe) * xp.maximum(slope, 0.0)
    return {
        "slope": xp.where(valid, slope, xp.nan),
        "read_var": xp.where(valid, rn2 / safe, xp.nan),
        "poisson_var": xp.where(valid, pois, xp.nan),
        "valid": valid,
    }


# --------------------------------------------------------------------------- kernel
@jit(
    static_argnames=(
        "tbar",
        "tau",
        "nreads",
        "use_jump",
        "intercept",
        "constant",
        "diagnostic",
    )
)
def cas22_fit(
    resultants: Any,
    excluded: Any,
    read_noise: Any,
    *,
    tbar: tuple[float, ...],
    tau: tuple[float, ...],
    nreads: tuple[int, ...],
    use_jump: bool = False,
    intercept: float = 5.5,
    constant: float = 1.0 / 3.0,
    diagnostic: bool = False,
) -> dict[str, Any]:
    """Casertano (2022) slopes of uneven resultants, with optional jump splitting.

    Parameters
    ----------
    resultants : float32 array (nresultants, ...)
        Resultants in electrons; the trailing axes are pixels (any shape).
    excluded : bool array, same shape
        Resultants not to use (flagged in DQ).  Non-finite resultants are excluded too.
    read_noise : float32 array broadcastable to the pixel shape
        Read noise of one read, electrons.
    tbar, tau, nreads : tuple
        From :func:`read_pattern_times` (static: one compilation per read pattern).
    use_jump : bool
        Detect jumps and split segments around them.
    intercept, constant : float
        Jump threshold ``intercept - constant * log10(max(slope, 1))`` (slope in e-/s).
    diagnostic : bool
        Also return the per-segment values (see below).

    Returns
    -------
    dict
        ``slope`` (e-/s), ``read_var`` and ``poisson_var`` ((e-/s)**2) per pixel, NaN where
        ``valid`` is False (no segment of two or more usable resultants); ``jump`` (bool,
        like ``resultants``): resultants flagged by the jump detection.  With
        ``diagnostic``, arrays like ``resultants`` that are set at the last resultant of
        each fitted segment (``segment_end``) and NaN elsewhere: ``segment_slope``,
        ``segment_read_var``, ``segment_poisson_var`` and ``segment_weight`` (the
        segment's share of the pixel's average).
    """
    xp = array_namespace(resultants, excluded, read_noise)
    n = int(resultants.shape[0])
    if not (len(tbar) == len(tau) == len(nreads) == n):
        raise ValueError(
            f"cas22_fit.tbar/tau/nreads: expected {n} entries (resultants.shape[0]), "
            f"got {len(tbar)}, {len(tau)}, {len(nreads)}"
        )
    pix_shape = tuple(int(s) for s in resultants.shape[1:])
    npix = math.prod(pix_shape)
    host = _tables(tuple(float(t) for t in tbar), tuple(float(t) for t in tau), tuple(nreads))
    tab = {name: xp.asarray(value) for name, value in host.items()}
    params = dict(
        tab=tab,
        passes=(n - 1) // 2 if use_jump else 0,
        intercept=float(intercept),
        constant=float(constant),
        diagnostic=diagnostic,
    )
    res = xp.reshape(xp.astype(resultants, xp.float32), (n, npix))
    excl = xp.reshape(excluded, (n, npix))
    rn = xp.astype(read_noise, xp.float32)
    rn2 = xp.reshape(xp.broadcast_to(rn * rn, pix_shape), (npix,))
    if array_api_compat.is_jax_namespace(xp) or npix <= EAGER_CHUNK:
        flat = _fit_flat(xp, res, excl, rn2, **params)
    else:
        # Eagerly, pixel blocks that stay in cache are several times faster than whole frames.
        blocks = [slice(a, min(a + EAGER_CHUNK, npix)) for a in range(0, npix, EAGER_CHUNK)]
        parts = [_fit_flat(xp, res[:, b], excl[:, b], rn2[b], **params) for b in blocks]
        flat = {
            key: xp.concat([part[key] for part in parts], axis=parts[0][key].ndim - 1)
            for key in parts[0]
        }
    return {
        key: xp.reshape(value, (n, *pix_shape) if value.ndim == 2 else pix_shape)
        for key, value in flat.items()
    }


def _fit_flat(xp, raw, excluded, rn2, *, tab, passes, intercept, constant, diagnostic):
    """:func:`cas22_fit` on ``(n, npix)`` resultants."""
    n, npix = (int(s) for s in raw.shape)
    finite = xp.isfinite(raw)
    res = xp.where(finite, raw, 0.0)
    usable = finite & ~excluded
    jump = xp.zeros((n, npix), dtype=xp.bool)
    sums = None
    if passes and not array_api_compat.is_jax_namespace(xp):
        # Eager: every pass only revisits the pixels whose segments just changed.
        usable, jump, sums = _eager_passes(xp, res, usable, rn2, tab, passes, intercept, constant)
    elif passes:
        import jax

        # Detection only decides which resultants are used: no gradient flows through it,
        # which lets it shrink to the pixels with a jump (the fit below stays differentiable).
        usable, jump = _jax_passes(
            xp, jax.lax.stop_gradient(res), usable, jax.lax.stop_gradient(rn2), tab, passes,
            intercept, constant,
        )
    if sums is None or diagnostic:
        final = _fit_pass(xp, res, usable, rn2, tab, totals=True, diagnostic=diagnostic)
        sums = (final["w"], final["ws"], final["wwp"])
    out = _averages(xp, rn2, *sums)
    out["jump"] = jump
    if diagnostic:
        good = final["seg_good"]
        total = xp.where(sums[0] > 0, sums[0], 1.0)
        out.update(
            segment_end=good,
            segment_slope=xp.where(good, final["acc"], xp.nan),
            segment_read_var=xp.where(good, rn2 * final["seg_rvc"], xp.nan),
            segment_poisson_var=xp.where(
                good, final["seg_pvc"] * xp.maximum(final["acc"], 0.0), xp.nan
            ),
            segment_weight=xp.where(good, final["seg_w"] / total, xp.nan),
        )
    return out


def _eager_passes(xp, res, usable, rn2, tab, passes, intercept, constant):
    """Jump passes that shrink to the pixels with a jump in the previous pass (not under jit)."""
    n, npix = (int(s) for s in res.shape)
    w = xp.zeros((npix,), dtype=xp.float32)
    ws = xp.zeros((npix,), dtype=xp.float32)
    wwp = xp.zeros((npix,), dtype=xp.float32)
    jump = xp.zeros((n, npix), dtype=xp.bool)
    active = xp.ones((npix,), dtype=xp.bool)
    sub_res, sub_usable, sub_rn2 = res, usable, rn2
    for step in range(passes + 1):
        fit = _fit_pass(xp, sub_res, sub_usable, sub_rn2, tab, totals=True)
        if step < passes:
            flags = _jump_pass(xp, sub_res, sub_usable, fit, sub_rn2, tab, intercept, constant)
            changed = xp.any(flags, axis=0)
        else:
            changed = xp.zeros((int(sub_rn2.shape[0]),), dtype=xp.bool)
        # Back to full size: position of every active pixel in the current subset.
        slot = xp.clip(xp.cumulative_sum(xp.astype(active, xp.int64)) - 1, 0, None)
        done = active & ~xp.take(changed, slot)
        w = xp.where(done, xp.take(fit["w"], slot), w)
        ws = xp.where(done, xp.take(fit["ws"], slot), ws)
        wwp = xp.where(done, xp.take(fit["wwp"], slot), wwp)
        if step == passes or not bool(xp.any(changed)):
            break
        jump = jump | (active & xp.take(flags, slot, axis=1))
        active = active & ~done
        keep = xp.nonzero(changed)[0]
        sub_res = xp.take(sub_res, keep, axis=1)
        sub_usable = xp.take(sub_usable & ~flags, keep, axis=1)
        sub_rn2 = xp.take(sub_rn2, keep)
    return usable & ~jump, jump, (w, ws, wwp)


def _jax_passes(xp, res, usable, rn2, tab, passes, intercept, constant):
    """Jump passes under ``jax.jit``: one pass over every pixel, the others over batches of
    the pixels that had a jump (a fixed-size batch, repeated while any is left)."""
    import jax
    import jax.numpy as jnp

    n, npix = (int(s) for s in res.shape)
    fit = _fit_pass(xp, res, usable, rn2, tab, totals=False)
    flags = _jump_pass(xp, res, usable, fit, rn2, tab, intercept, constant)
    usable = usable & ~flags
    if passes == 1:
        return usable, flags
    batch = min(npix, max(1024, -(-npix // 16)))

    def more_passes(state):
        pending, use, found = state
        index = jnp.nonzero(pending, size=batch, fill_value=npix)[0]
        real = index < npix
        sub_res = jnp.take(res, index, axis=1, mode="clip")
        sub_rn2 = jnp.take(rn2, index, mode="clip")
        sub_use = jnp.take(use, index, axis=1, mode="clip") & real
        sub_found = jnp.zeros((n, batch), dtype=bool)

        def one_pass(_, sub):
            u, f = sub
            fit = _fit_pass(xp, sub_res, u, sub_rn2, tab, totals=False)
            new = _jump_pass(xp, sub_res, u, fit, sub_rn2, tab, intercept, constant)
            return u & ~new, f | new

        sub_use, sub_found = jax.lax.fori_loop(0, passes - 1, one_pass, (sub_use, sub_found))
        old = jnp.take(found, index, axis=1, mode="clip")
        use = use.at[:, index].set(sub_use, mode="drop")
        found = found.at[:, index].set(old | sub_found, mode="drop")
        pending = pending.at[index].set(False, mode="drop")
        return pending, use, found

    state = (jnp.any(flags, axis=0), usable, flags)
    _, usable, jump = jax.lax.while_loop(lambda st: jnp.any(st[0]), more_passes, state)
    return usable, jump
