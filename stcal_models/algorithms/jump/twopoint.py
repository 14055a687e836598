"""Array-API kernel of jump detection: two-point differences, sigma clipping, neighbours.

The kernel follows the "Jump Detection" section of the stcal 1.17.0 documentation and
Anderson & Gordon (2011, PASP 123, 1237).  For one row chunk of a ramp it

1. converts the science values to electrons (``data * gain``), blanks groups flagged
   ``SATURATED`` or ``DO_NOT_USE`` and forms the first differences of adjacent groups;
   with an uneven read pattern (Roman resultants, stcal #454) each difference is divided
   by the difference of the resultants' mean read times, and its read-noise variance is
   ``2 rn**2 / (n_a + n_b)`` for resultants of ``n_a`` and ``n_b`` reads (``rn**2 / nframes``
   for evenly sampled JWST groups);
2. pools the differences of all integrations of a pixel and, depending on the mode,

   * ``"iterative"`` (fewer differences per integration than ``min_diffs_single_pass``):
     clipped median of the absolute differences (every copy of the largest dropped with
     four or more usable differences, plain median of three, the smaller of two),
     expected noise ``sqrt(|median| + read variance)``, difference ratio
     ``|diff - median| / noise``; when the largest ratio exceeds the threshold for the
     number of usable differences (four or more / three / two) every difference with
     that ratio is flagged and the pixel is re-examined without them, until no new jump
     is found or at most two differences were left.  The iteration is a fixed-bound
     masked loop (``lax.while_loop`` under ``jax.jit``);
   * ``"single"``: one pass with the plain median of the signed differences;
   * ``"sigma_clip_ints"`` / ``"sigma_clip_all"``: the iterative sigma clipping of
     ``astropy.stats.sigma_clip`` (median centre, population standard deviation, five
     iterations, ``rejection_threshold`` sigma) across integrations or across all
     differences of a pixel;

3. flags the four neighbours of every jump whose ratio (plain median of the signed
   differences) lies strictly between ``min_jump_to_flag_neighbors`` and
   ``max_jump_to_flag_neighbors``, never onto groups flagged ``SATURATED``/``DO_NOT_USE``;
4. flags the groups after every jump whose excess ``diff - median`` (electrons) reaches
   ``after_jump_flag_dn * median(gain)``, first for the (dn1, n1) pair, then (dn2, n2).

Everything is written against the array API without in-place writes, so the same
function runs eagerly on NumPy or array_api_strict and compiles under ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from ...backends import array_namespace, is_jax_array, jit

__all__ = [
    "KernelParams",
    "MODES",
    "jump_kernel",
    "masked_while",
    "sort0",
    "sorting_network",
    "window_or",
]

DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4

#: Detection modes of the kernel (chosen on the host by :class:`JumpDetection`).
MODES = ("iterative", "single", "sigma_clip_ints", "sigma_clip_all", "none")

#: Iterations of the astropy-style sigma clip (``astropy.stats.sigma_clip`` ``maxiters``).
SIGMA_CLIP_ITERS = 5


@dataclasses.dataclass(frozen=True)
class KernelParams:
    """Static (hashable) parameters of :func:`jump_kernel`.

    Attributes
    ----------
    mode : str
        One of :data:`MODES`.
    rejection_threshold, three_group_rejection_threshold, four_group_rejection_threshold : float
        Thresholds (sigma) for four or more, two and three usable differences.
    nframes : int
        Frames averaged per group (evenly sampled data only).
    dt, nreads : tuple or None
        Per-difference mean-time step (frames) and total reads of the two resultants, for
        unevenly sampled data; ``None`` for evenly sampled data.
    flag_4_neighbors : bool
    min_jump_to_flag_neighbors, max_jump_to_flag_neighbors : float
    after_jump_groups1, after_jump_groups2 : int
        Groups flagged after jumps above the first and second thresholds.
    """

    mode: str = "iterative"
    rejection_threshold: float = 4.0
    three_group_rejection_threshold: float = 6.0
    four_group_rejection_threshold: float = 5.0
    nframes: int = 1
    dt: tuple[float, ...] | None = None
    nreads: tuple[int, ...] | None = None
    flag_4_neighbors: bool = True
    min_jump_to_flag_neighbors: float = 10.0
    max_jump_to_flag_neighbors: float = 1000.0
    after_jump_groups1: int = 0
    after_jump_groups2: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"KernelParams.mode: expected one of {MODES}, got {self.mode!r}")


def masked_while(xp, cond, body, state, max_iterations: int):
    """Run ``state = body(state)`` while ``cond(state)`` holds, at most ``max_iterations`` times.

    Under JAX this is ``lax.while_loop`` (traceable, one compiled body); for every other
    namespace the same ``cond``/``body`` run eagerly.  ``cond`` returns a 0-d boolean array.
    """
    if max_iterations <= 0:
        return state
    probe = state[0] if isinstance(state, tuple) else state
    if is_jax_array(probe):
        import jax

        def jcond(carry):
            it, inner = carry
            return (it < max_iterations) & cond(inner)

        def jbody(carry):
            it, inner = carry
            return it + 1, body(inner)

        _, out = jax.lax.while_loop(jcond, jbody, (0, state))
        return out
    it = 0
    while it < max_iterations and bool(cond(state)):
        state = body(state)
        it += 1
    return state


# ----------------------------------------------------------------------------- helpers
#: Largest leading-axis length sorted with a comparator network (elementwise min/max on
#: 2-D planes, fast on every backend); longer axes use ``xp.sort``.
NETWORK_MAX = 32


@functools.cache
def sorting_network(k: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort for ``k`` items.

    Built for the next power of two and restricted to indices below ``k`` (the missing
    items behave as ``+inf`` and their comparators do nothing).
    """
    n = 1
    while n < k:
        n *= 2
    pairs = []
    p = 1
    while p < n:
        step = p
        while step >= 1:
            for j in range(step % p, n - step, 2 * step):
                for i in range(min(step, n - j - step)):
                    if (i + j) // (2 * p) == (i + j + step) // (2 * p):
                        pairs.append((i + j, i + j + step))
            step //= 2
        p *= 2
    return tuple((a, b) for a, b in pairs if b < k)


def sort0(xp, x):
    """``x`` sorted along axis 0 (no NaNs expected); a comparator network for short axes."""
    k = x.shape[0]
    if k > NETWORK_MAX:
        return xp.sort(x, axis=0)
    planes = [x[i, ...] for i in range(k)]
    for a, b in sorting_network(k):
        lo = xp.minimum(planes[a], planes[b])
        hi = xp.maximum(planes[a], planes[b])
        planes[a], planes[b] = lo, hi
    return xp.stack(planes, axis=0)


def _sum0(xp, x, dtype=None):
    """Sum along axis 0 as a running sum of planes (XLA reduces a leading axis slowly)."""
    if dtype is not None:
        x = xp.astype(x, dtype)
    k = x.shape[0]
    if k > NETWORK_MAX:
        return xp.sum(x, axis=0)
    total = x[0, ...]
    for i in range(1, k):
        total = total + x[i, ...]
    return total


def _count0(xp, mask):
    """Number of ``True`` along axis 0 (int32)."""
    return _sum0(xp, mask, xp.int32)


def _max_argmax0(xp, x):
    """Maximum along axis 0 and the index of its first occurrence (no NaNs expected)."""
    best = x[0, ...]
    index = xp.zeros(best.shape, dtype=xp.int32)
    for i in range(1, x.shape[0]):
        better = x[i, ...] > best
        best = xp.where(better, x[i, ...], best)
        index = xp.where(better, xp.asarray(i, dtype=xp.int32), index)
    return best, index


def _sorted_with_count(xp, x):
    """Sort along axis 0 with NaNs last; also return the count of non-NaN values."""
    valid = ~xp.isnan(x)
    n = _count0(xp, valid)
    s = sort0(xp, xp.where(valid, x, xp.asarray(math.inf, dtype=x.dtype)))
    return s, n


def _take0(xp, s, idx):
    """``s[idx[y, x], y, x]`` for a (K, ...) array and an integer index image."""
    return xp.take_along_axis(s, idx[None, ...], axis=0)[0, ...]


def _nanmedian0(xp, x):
    """Median along axis 0 ignoring NaNs (NaN where nothing is left); float32 like NumPy.

    Short axes use the comparator network, longer ones a sort (``lax.top_k`` of the upper
    half on JAX, much faster there than XLA's sort).
    """
    k = x.shape[0]
    if k > NETWORK_MAX and is_jax_array(x):
        return _nanmedian0_topk(xp, x)
    s, n = _sorted_with_count(xp, x)
    lo = xp.clip((n - 1) // 2, 0, k - 1)
    hi = xp.clip(n // 2, 0, k - 1)
    med = (_take0(xp, s, lo) + _take0(xp, s, hi)) / 2
    return xp.where(n > 0, med, xp.asarray(math.nan, dtype=x.dtype))


def _nanmedian0_topk(xp, x):
    """JAX median along axis 0 from the largest ``k // 2 + 1`` values of each pixel."""
    import jax

    k = x.shape[0]
    valid = ~xp.isnan(x)
    n = _count0(xp, valid)
    key = xp.moveaxis(xp.where(valid, x, xp.asarray(-math.inf, dtype=x.dtype)), 0, -1)
    top = jax.lax.top_k(key, k // 2 + 1)[0]  # descending
    d_lo = xp.clip(n // 2, 0, k // 2)[..., None]
    d_hi = xp.clip((n - 1) // 2, 0, k // 2)[..., None]
    a = xp.take_along_axis(top, d_lo, axis=-1)[..., 0]
    b = xp.take_along_axis(top, d_hi, axis=-1)[..., 0]
    return xp.where(n > 0, (a + b) / 2, xp.asarray(math.nan, dtype=x.dtype))


def _clipped_median0(xp, x):
    """The two-point clipped median along axis 0 of non-negative values (NaN = unusable).

    Four or more usable values: every copy of the largest value is dropped and the median
    of the rest returned (NaN when nothing is left); three: their median; two: the
    smaller; fewer: NaN.  Also returns the usable count.
    """
    k = x.shape[0]
    s, n = _sorted_with_count(xp, x)
    top = _take0(xp, s, xp.clip(n - 1, 0, k - 1))
    n_top = _count0(xp, (s == top) & (xp.reshape(xp.arange(k, dtype=xp.int32), (k, 1, 1)) < n))
    m = xp.where(n >= 4, n - n_top, n)
    lo = xp.clip((m - 1) // 2, 0, k - 1)
    hi = xp.clip(m // 2, 0, k - 1)
    med = (_take0(xp, s, lo) + _take0(xp, s, hi)) / 2
    med = xp.where(n == 2, s[0, ...], med)
    med = xp.where((n >= 2) & (m > 0), med, xp.asarray(math.nan, dtype=x.dtype))
    return med, n


def _sigma(xp, med, var_rn, dt):
    """Expected noise of each difference (rate units when ``dt`` is given); 0 -> NaN."""
    if dt is None:
        sig = xp.sqrt(xp.abs(med) + var_rn)
    else:
        sig = xp.sqrt(xp.abs(med) * dt + var_rn) / dt
    return xp.where(sig == 0, xp.asarray(math.nan, dtype=sig.dtype), sig)


def _shift(xp, x, offset: int, axis: int):
    """``x`` moved by ``offset`` along ``axis`` (positive: towards higher indices), zero-filled."""
    n = x.shape[axis]
    if offset == 0:
        return x
    if abs(offset) >= n:
        return xp.zeros_like(x)
    pad_shape = list(x.shape)
    pad_shape[axis] = abs(offset)
    pad = xp.zeros(tuple(pad_shape), dtype=x.dtype)
    index = [slice(None)] * x.ndim
    if offset > 0:
        index[axis] = slice(0, n - offset)
        return xp.concat([pad, x[tuple(index)]], axis=axis)
    index[axis] = slice(-offset, n)
    return xp.concat([x[tuple(index)], pad], axis=axis)


def window_or(xp, src, length: int, axis: int):
    """``out[g] = any(src[g - length + 1 .. g])`` along ``axis`` in O(log length) shifts."""
    if length <= 1:
        return src
    acc = None
    offset = 0
    block = src  # covers a window of `width` ending at g
    width = 1
    remaining = length
    while remaining:
        if remaining & 1:
            piece = _shift(xp, block, offset, axis)
            acc = piece if acc is None else (acc | piece)
            offset += width
        remaining >>= 1
        if remaining:
            block = block | _shift(xp, block, width, axis)
            width *= 2
    return acc


def _sigma_clip_mask(xp, x, axis: int, sigma: float):
    """Values of ``x`` (NaN = missing) that ``astropy.stats.sigma_clip`` would reject.

    Centre: median; scale: population standard deviation; bounds ``centre -/+ sigma*std``
    (values strictly outside are rejected); :data:`SIGMA_CLIP_ITERS` iterations, which
    equals astropy's global stopping rule because an unchanged slice stays unchanged.
    ``axis`` is 0 (leading axis).
    """
    assert axis == 0
    nan = xp.asarray(math.nan, dtype=x.dtype)
    zero = xp.zeros_like(x)

    def body(kept):
        cen = _nanmedian0(xp, xp.where(kept, x, nan))
        cnt = _sum0(xp, kept, x.dtype)
        mean = _sum0(xp, xp.where(kept, x, zero)) / cnt
        dev = xp.where(kept, x - mean, zero)
        std = xp.sqrt(_sum0(xp, dev * dev) / cnt)
        return kept & ~((x < cen - sigma * std) | (x > cen + sigma * std))

    kept = masked_while(xp, lambda k: xp.asarray(True), body, ~xp.isnan(x), SIGMA_CLIP_ITERS)
    return (~kept) & ~xp.isnan(x)


# ----------------------------------------------------------------------------- kernel
@jit(static_argnames=("params",))
def jump_kernel(data, gdq, gain, readnoise, after_e1, after_e2, *, params: KernelParams):
    """Flag jumps in one chunk of ramps; returns the new GROUPDQ (uint8).

    Parameters
    ----------
    data : array, float32, (nints, ngroups, ny, nx)
        Science values in DN.
    gdq : array, uint8, same shape
        Input GROUPDQ.
    gain, readnoise : array, float32, (ny, nx)
        Gain (e-/DN) and CDS read noise (DN).
    after_e1, after_e2 : 0-d float32 arrays
        After-jump thresholds in electrons (``dn * median(gain)``).
    params : KernelParams
        Static parameters (hashed; one compilation per distinct value and shape).
    """
    xp = array_namespace(data, gdq, gain, readnoise)
    nints, ngroups, ny, nx = (int(s) for s in data.shape)
    f32 = data.dtype
    nan = xp.asarray(math.nan, dtype=f32)
    ndiffs = ngroups - 1
    if ndiffs < 1 or params.mode == "none":
        return gdq
    k_total = nints * ndiffs

    bad = (gdq & (SATURATED | DO_NOT_USE)) != 0
    electrons = xp.where(bad, nan, data * gain)
    diffs = electrons[:, 1:, ...] - electrons[:, :-1, ...]
    rn_e = readnoise * gain
    if params.dt is None:
        dt = None
        var_rn = (rn_e * rn_e) / float(params.nframes)
        rates = diffs
    else:
        dt_one = xp.asarray(params.dt, dtype=f32)[:, None, None]
        nreads = xp.asarray(params.nreads, dtype=f32)[:, None, None]
        var_one = (rn_e * rn_e)[None, ...] * 2.0 / nreads
        rates = diffs / dt_one[None, ...]
        dt = xp.concat([dt_one] * nints, axis=0)
        var_rn = xp.concat([var_one] * nints, axis=0)
    pooled = xp.reshape(rates, (k_total, ny, nx))

    # Plain median of the signed differences: neighbours, after-jump, single pass.
    med_u = _nanmedian0(xp, pooled)
    sig_u = _sigma(xp, med_u, var_rn, dt)
    excess = pooled - med_u
    ratio_u = xp.abs(excess) / sig_u
    if dt is not None:
        excess = excess * dt

    mode = params.mode
    if mode == "single":
        jumps = ratio_u > params.rejection_threshold
    elif mode == "iterative":
        if dt is None:
            jumps = _iterative_sorted(xp, xp.abs(pooled), var_rn, params)
        else:
            jumps = _iterative(xp, xp.abs(pooled), var_rn, dt, params)
    elif mode == "sigma_clip_ints":
        jumps = _sigma_clip_mask(xp, diffs, 0, params.rejection_threshold)
    else:  # sigma_clip_all
        jumps = _sigma_clip_mask(
            xp, xp.reshape(diffs, (k_total, ny, nx)), 0, params.rejection_threshold
        )

    jumps = xp.reshape(jumps, (nints, ndiffs, ny, nx))
    zero_row = xp.zeros((nints, 1, ny, nx), dtype=xp.bool)
    new_jump = xp.concat([zero_row, jumps], axis=1)
    jump_u8 = xp.asarray(JUMP_DET, dtype=xp.uint8)
    zero_u8 = xp.asarray(0, dtype=xp.uint8)
    usable = ~bad
    # JUMP_DET never stays on a SATURATED / DO_NOT_USE group.
    out = xp.where(usable, gdq, gdq & (255 - JUMP_DET))
    out = out | xp.where(new_jump, jump_u8, zero_u8)

    # Per-group views of the ratio and excess (group g <- difference g-1); group 0 has
    # no difference ending in it and never seeds neighbour or after-jump flags.
    nan_row = xp.full((nints, 1, ny, nx), math.nan, dtype=f32)
    ratio_g = xp.concat([nan_row, xp.reshape(ratio_u, (nints, ndiffs, ny, nx))], axis=1)
    excess_g = xp.concat([nan_row, xp.reshape(excess, (nints, ndiffs, ny, nx))], axis=1)

    if params.flag_4_neighbors:
        is_jump = (out & JUMP_DET) != 0
        src = (
            is_jump
            & (ratio_g < params.max_jump_to_flag_neighbors)
            & (ratio_g > params.min_jump_to_flag_neighbors)
        )
        spread = (
            _shift(xp, src, 1, 2)
            | _shift(xp, src, -1, 2)
            | _shift(xp, src, 1, 3)
            | _shift(xp, src, -1, 3)
        )
        out = out | xp.where(spread & usable, jump_u8, zero_u8)

    for threshold, groups in (
        (after_e1, params.after_jump_groups1),
        (after_e2, params.after_jump_groups2),
    ):
        if groups <= 0:
            continue
        is_jump = (out & JUMP_DET) != 0
        src = is_jump & (excess_g >= threshold)
        covered = window_or(xp, src, groups + 1, axis=1)
        out = out | xp.where(covered & usable, jump_u8, zero_u8)
    return out


def _thresholds(xp, n, params: KernelParams, dtype):
    """Rejection threshold for ``n`` usable differences (inf below two)."""
    return xp.where(
        n >= 4,
        xp.asarray(params.rejection_threshold, dtype=dtype),
        xp.where(
            n == 3,
            xp.asarray(params.four_group_rejection_threshold, dtype=dtype),
            xp.where(
                n == 2,
                xp.asarray(params.three_group_rejection_threshold, dtype=dtype),
                xp.asarray(math.inf, dtype=dtype),
            ),
        ),
    )


def _iterative(xp, absdiff, var_rn, dt, params: KernelParams):
    """Iterative two-point rejection on pooled absolute differences ``(K, ny, nx)``.

    Each pass recomputes the clipped median and the ratios of the remaining
    differences and, when the largest ratio exceeds the threshold for the number of
    usable differences, flags every difference with that largest ratio.  A pixel stops
    when nothing new is found or at most two differences were left before the pass.
    General form (any noise per difference); see :func:`_iterative_sorted`.
    """
    f32 = absdiff.dtype
    nan = xp.asarray(math.nan, dtype=f32)
    ninf = xp.asarray(-math.inf, dtype=f32)

    def body(state):
        mask, active = state
        w = xp.where(mask, nan, absdiff)
        med, n = _clipped_median0(xp, w)
        sig = _sigma(xp, med, var_rn, dt)
        ratio = xp.abs(w - med) / sig
        ratio = xp.where(xp.isnan(ratio), ninf, ratio)
        rmax, _ = _max_argmax0(xp, ratio)
        new = active & (rmax > _thresholds(xp, n, params, f32))
        mask = mask | ((ratio == rmax) & new)
        return mask, new & (n > 2)

    def cond(state):
        return xp.any(state[1])

    shape = absdiff.shape
    mask0 = xp.zeros(shape, dtype=xp.bool)
    active0 = xp.ones(shape[1:], dtype=xp.bool)
    mask, _ = masked_while(xp, cond, body, (mask0, active0), shape[0])
    return mask


def _run_bounds0(xp, s):
    """First and last sorted position of the run of equal values each position belongs to."""
    k = s.shape[0]
    pos = xp.reshape(xp.arange(k, dtype=xp.int32), (k, 1, 1)) + xp.zeros(s.shape, dtype=xp.int32)
    starts = [pos[0, ...]]
    for i in range(1, k):
        starts.append(xp.where(s[i, ...] == s[i - 1, ...], starts[-1], pos[i, ...]))
    ends = [pos[k - 1, ...]]
    for i in range(k - 2, -1, -1):
        ends.append(xp.where(s[i, ...] == s[i + 1, ...], ends[-1], pos[i, ...]))
    ends.reverse()
    return xp.stack(starts, axis=0), xp.stack(ends, axis=0)


def _iterative_sorted(xp, absdiff, var_rn, params: KernelParams):
    """:func:`_iterative` for evenly sampled data, sorting each pixel's differences once.

    Every difference of a pixel then has the same expected noise, so the largest ratio
    ``|a - median| / noise`` always belongs to the smallest or the largest remaining
    value, together with all copies of it.  The values still in play are therefore a
    contiguous range ``[lo, hi)`` of the sorted differences that shrinks by whole runs of
    equal values; each pass costs a few per-pixel gathers instead of a sort, and the
    flagged differences are those outside the final value range.
    """
    k_total = absdiff.shape[0]
    f32 = absdiff.dtype
    nan = xp.asarray(math.nan, dtype=f32)
    ninf = xp.asarray(-math.inf, dtype=f32)
    valid = ~xp.isnan(absdiff)
    srt = sort0(xp, xp.where(valid, absdiff, xp.asarray(math.inf, dtype=f32)))
    run_start, run_end = _run_bounds0(xp, srt)
    n0 = _count0(xp, valid)

    def take(arr, idx):
        return _take0(xp, arr, xp.clip(idx, 0, k_total - 1))

    def body(state):
        lo, hi, active = state
        n = hi - lo
        s_lo = take(srt, lo)
        s_hi = take(srt, hi - 1)
        # clipped median: all copies of the largest value dropped when n >= 4
        top_start = xp.maximum(take(run_start, hi - 1), lo)
        m = xp.where(n >= 4, top_start - lo, n)
        med = (take(srt, lo + (m - 1) // 2) + take(srt, lo + m // 2)) / 2
        med = xp.where(n == 2, s_lo, med)
        med = xp.where((n >= 2) & (m > 0), med, nan)
        sig = _sigma(xp, med, var_rn, None)
        r_lo = xp.abs(s_lo - med) / sig
        r_hi = xp.abs(s_hi - med) / sig
        r_lo = xp.where(xp.isnan(r_lo), ninf, r_lo)
        r_hi = xp.where(xp.isnan(r_hi), ninf, r_hi)
        rmax = xp.maximum(r_lo, r_hi)
        new = active & (rmax > _thresholds(xp, n, params, f32))
        cut_lo = new & (r_lo == rmax)
        cut_hi = new & (r_hi == rmax)
        lo_next = xp.where(cut_lo, take(run_end, lo) + 1, lo)
        hi_next = xp.where(cut_hi, top_start, hi)
        return lo_next, xp.maximum(hi_next, lo_next), new & (n > 2)

    def cond(state):
        return xp.any(state[2])

    shape = absdiff.shape[1:]
    state = (xp.zeros(shape, dtype=xp.int32), n0, xp.ones(shape, dtype=xp.bool))
    lo, hi, _ = masked_while(xp, cond, body, state, k_total)
    v_lo = take(srt, lo)
    v_hi = take(srt, hi - 1)
    outside = (absdiff < v_lo) | (absdiff > v_hi)
    return valid & (outside | (lo >= hi))
