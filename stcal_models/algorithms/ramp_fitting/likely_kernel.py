"""Array-API kernel of the LIKELY ramp fit (Brandt 2024): covariance, solves, jumps, combination.

Everything here is a plain function of arrays written against the array API.  Loops
over groups are unrolled Python loops over (P,) rows (XLA fuses them well); the only
concessions to JAX are :func:`scan` (``jax.lax.scan`` on JAX inputs, a Python loop
otherwise) and the data-dependent jump iterations, which on JAX run as a
``jax.lax.while_loop`` over a compact block of the still-active pixels (NumPy and other
namespaces use boolean indexing).  Jump decisions carry no gradient; everything else is
differentiable under JAX.

Notation (per pixel, one integration)
-------------------------------------
``d_i = (r_{i+1} - r_i) / dt_i`` are the ``n = ngroups - 1`` resultant differences
scaled to count rates.  Their covariance is tridiagonal,

``C = (c / gain) * Cp + sigma**2 * Cr``

with ``c`` the count rate (DN/s), ``sigma = cds_noise / sqrt(2)`` the read noise of one
read and ``Cp``/``Cr`` the photon/read-noise shapes of Brandt (2024) eqs. 27-28, which
depend only on the read times.  A difference that is not used is removed from the
problem (marginalised), which for a tridiagonal matrix is the same as cutting its two
couplings and giving it zero weight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...backends import is_jax_array
from ...dqflags import DQ

__all__ = [
    "LikelyCovariance",
    "combine_integrations",
    "detect_differences",
    "fit_differences",
    "fit_with_rate",
    "integration_dq",
    "likely_covariance",
    "row_nanmedian",
    "scan",
]

_DNU = int(DQ.DO_NOT_USE)
_SAT = int(DQ.SATURATED)
_JUMP = int(DQ.JUMP_DET)


# --------------------------------------------------------------------------- loops
def scan(xp, fn: Callable, carry: Any, xs: Sequence[Any], *, reverse: bool = False):
    """``jax.lax.scan`` on JAX arrays, a Python loop otherwise.

    ``fn(carry, x) -> (carry, y)`` where ``x`` is a tuple of the ``i``-th slices of
    ``xs`` (arrays sharing their leading axis) and ``y`` a tuple of arrays; returns the
    final carry and the ``y`` stacked along a new leading axis.
    """
    xs = tuple(xs)
    if _is_jax(xs) or _is_jax(carry):
        import jax

        return jax.lax.scan(fn, carry, xs, reverse=reverse)
    n = int(xs[0].shape[0])
    order = range(n - 1, -1, -1) if reverse else range(n)
    ys: list[tuple] = []
    for i in order:
        carry, y = fn(carry, tuple(x[i, ...] for x in xs))
        ys.append(y)
    if reverse:
        ys.reverse()
    stacked = tuple(xp.stack([y[k] for y in ys], axis=0) for k in range(len(ys[0])))
    return carry, stacked


def _is_jax(tree) -> bool:
    if isinstance(tree, (tuple, list)):
        return any(_is_jax(t) for t in tree)
    if isinstance(tree, dict):
        return any(_is_jax(t) for t in tree.values())
    return is_jax_array(tree)


# --------------------------------------------------------------------------- covariance
@dataclasses.dataclass(frozen=True)
class LikelyCovariance:
    """Shapes of the covariance of resultant differences (Brandt 2024, eqs. 27-28).

    All arrays are float64 NumPy arrays (host constants).  With ``n`` differences:

    Attributes
    ----------
    mean_t : (n + 1,)
        Mean read time of each resultant, s.
    tau : (n + 1,)
        ``tau_i = sum_k (2 N_i - 2k + 1) t_ik / N_i**2``, the photon-noise variance of
        resultant ``i`` per unit count rate.
    nreads : (n + 1,)
        Reads averaged into each resultant.
    dt : (n,)
        ``mean_t[i + 1] - mean_t[i]``: differences are divided by it.
    alpha_p, beta_p : (n,), (n - 1,)
        Diagonal and first off-diagonal of the photon-noise covariance of the scaled
        differences per unit count rate (DN/s).
    alpha_r, beta_r : (n,), (n - 1,)
        The same for read noise per unit read variance (one read, DN**2).
    pair_allowed : (n - 1,) bool
        Whether omitting differences ``i`` and ``i + 1`` together is a jump hypothesis:
        only when the resultant they share averages more than one read.
    """

    mean_t: np.ndarray
    tau: np.ndarray
    nreads: np.ndarray
    dt: np.ndarray
    alpha_p: np.ndarray
    beta_p: np.ndarray
    alpha_r: np.ndarray
    beta_r: np.ndarray
    pair_allowed: np.ndarray

    @property
    def ndiffs(self) -> int:
        """Number of resultant differences."""
        return int(self.dt.shape[0])


def likely_covariance(read_times: Sequence[Sequence[float]]) -> LikelyCovariance:
    """Covariance shapes for resultants averaging reads at ``read_times`` (seconds).

    Parameters
    ----------
    read_times : sequence of sequences of float
        For each resultant, the times of the reads averaged into it (increasing).

    Raises
    ------
    ValueError
        If fewer than two resultants are given or the times do not increase.
    """
    groups = [np.asarray(t, dtype=np.float64).ravel() for t in read_times]
    if len(groups) < 2:
        raise ValueError(f"read_times: expected at least 2 resultants, got {len(groups)}")
    if any(g.size == 0 for g in groups):
        raise ValueError("read_times: every resultant needs at least one read")
    flat = np.concatenate(groups)
    if np.any(np.diff(flat) <= 0):
        raise ValueError("read_times: expected strictly increasing read times")
    nreads = np.array([g.size for g in groups], dtype=np.float64)
    mean_t = np.array([g.mean() for g in groups])
    # Var(r_i) per unit rate: (1/N^2) sum_{k,l} min(t_k, t_l) = sum_k (2N - 2k + 1) t_k / N^2
    tau = np.array(
        [np.sum((2.0 * (g.size - np.arange(1, g.size + 1)) + 1.0) * g) / g.size**2 for g in groups]
    )
    dt = mean_t[1:] - mean_t[:-1]
    alpha_p = (tau[1:] + tau[:-1] - 2.0 * mean_t[:-1]) / dt**2
    beta_p = (mean_t[1:-1] - tau[1:-1]) / (dt[1:] * dt[:-1])
    alpha_r = (1.0 / nreads[1:] + 1.0 / nreads[:-1]) / dt**2
    beta_r = -1.0 / (nreads[1:-1] * dt[1:] * dt[:-1])
    return LikelyCovariance(
        mean_t=mean_t,
        tau=tau,
        nreads=nreads,
        dt=dt,
        alpha_p=alpha_p,
        beta_p=beta_p,
        alpha_r=alpha_r,
        beta_r=beta_r,
        pair_allowed=nreads[1:-1] > 1,
    )


# --------------------------------------------------------------------------- row helpers
# Per-difference quantities are Python lists of (P,) arrays.  Loops over differences are
# unrolled, which XLA fuses into a few passes over memory (much faster on CPU than
# (n, P) temporaries with leading-axis reductions) and which NumPy runs row by row.
#
# Reductions over the rows (sums, counts, maxima) come in two forms.  On short ramps they
# are chains of elementwise operations, so that XLA fuses a whole fit into one loop over
# the pixels.  On long ramps that one loop grows past what XLA compiles well, so the rows
# are stacked and reduced with ``argmax`` or a matmul: XLA then materialises each
# reduction instead of re-deriving long elementwise chains inside every consumer, which
# keeps its compile time near-linear in the number of rows.  The two forms must not be
# mixed within one fit (a materialised stack of chained rows re-derives the chain in
# every row), so the choice is made once, from the number of differences.

#: Ramps with at most this many differences use the chained reductions.
_CHAIN_MAX_DIFFS = 32


def _chained(n: int) -> bool:
    """Whether reductions over ``n`` difference rows are chained (see above)."""
    return n <= _CHAIN_MAX_DIFFS


def _running_argmax(xp, rows, *, chain: bool):
    """Maximum and first index of the maximum over a list of (P,) rows.

    A NaN row never wins in the chained form.
    """
    n = len(rows)
    if chain:
        best = rows[0]
        at = xp.zeros(best.shape, dtype=xp.int32)
        for i in range(1, n):
            better = rows[i] > best
            best = xp.where(better, rows[i], best)
            at = xp.where(better, xp.asarray(i, dtype=xp.int32), at)
        return best, at
    stacked = xp.stack(list(rows), axis=0)
    at = xp.astype(xp.argmax(stacked, axis=0), xp.int32)
    hit = xp.reshape(xp.arange(n, dtype=xp.int32), (n, 1)) == at[None, ...]
    picked = xp.where(hit, stacked, xp.zeros_like(stacked))
    ones = xp.ones((1, n), dtype=stacked.dtype)
    return (ones @ picked)[0, ...], at


def _count(xp, masks, *, chain: bool):
    """Number of true rows per pixel (float32)."""
    return _sum(xp, [xp.astype(m, xp.float32) for m in masks], chain=chain)


def _sum(xp, rows, *, chain: bool):
    """Sum of a list of (P,) rows."""
    if chain or len(rows) == 1:
        total = rows[0]
        for r in rows[1:]:
            total = total + r
        return total
    stacked = xp.stack(list(rows), axis=0)
    ones = xp.ones((1, len(rows)), dtype=stacked.dtype)
    return (ones @ stacked)[0, ...]


def _network_stages(n: int) -> list[list[tuple[int, int]]]:
    """Batcher's odd-even merge sort for ``n`` inputs as stages of disjoint comparators."""
    m = 1
    while m < n:
        m *= 2
    stages = []
    p = 1
    while p < m:
        k = p
        while k >= 1:
            stage = []
            for j in range(k % p, m - k, 2 * k):
                for i in range(min(k, m - j - k)):
                    a, b = i + j, i + j + k
                    if (a // (2 * p)) == (b // (2 * p)) and b < n:
                        stage.append((a, b))
            if stage:
                stages.append(stage)
            k //= 2
        p *= 2
    return stages


def _jax_sorted_rows(vals):
    """Sort the rows of a JAX (n, P) array with the comparator network, one scan step a stage.

    A rolled loop keeps XLA from re-deriving the whole network inside its consumers.
    """
    import jax
    import jax.numpy as jnp

    n = int(vals.shape[0])
    stages = _network_stages(n)
    perm = np.tile(np.arange(n, dtype=np.int32), (len(stages), 1))
    role = np.zeros((len(stages), n), dtype=np.int32)
    for k, stage in enumerate(stages):
        for a, b in stage:
            perm[k, a], perm[k, b] = b, a
            role[k, a], role[k, b] = -1, 1

    def step(v, x):
        pk, rk = x
        other = jnp.take(v, pk, axis=0)
        rk = rk[:, None]
        new = jnp.where(rk < 0, jnp.minimum(v, other), jnp.where(rk > 0, jnp.maximum(v, other), v))
        return new, None

    out, _ = jax.lax.scan(step, vals, (jnp.asarray(perm), jnp.asarray(role)))
    return out


def row_nanmedian(xp, rows):
    """Median over a list of rows ignoring NaN (NaN where every row is NaN).

    NumPy uses ``np.nanmedian``.  JAX ranks every value against the others on short
    ramps (one fused pass over the pixels, no intermediate arrays) and sorts with a
    rolled comparator network on long ones; other namespaces run the network unrolled.
    All of them trace and differentiate under JAX.
    """
    if isinstance(rows[0], np.ndarray):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(np.stack(rows, axis=0), axis=0).astype(rows[0].dtype)
    inf = xp.asarray(xp.inf, dtype=rows[0].dtype)
    vals = [xp.where(xp.isnan(r), inf, r) for r in rows]
    n = len(vals)
    chain = _chained(n)
    count = xp.astype(_count(xp, [~xp.isnan(r) for r in rows], chain=chain), xp.int32)
    lo_i = (count - 1) // 2
    hi_i = count // 2
    zero = xp.zeros_like(vals[0])
    if _is_jax(vals[0]) and chain and n > 1:
        # The rank of each value in a stable sort (ties ordered by row): NaN, now +inf,
        # rank after every number and so never reach the middle of ``count``.
        ranks = []
        for i, v in enumerate(vals):
            before = [xp.astype((vals[j] <= v) if j < i else (vals[j] < v), xp.int32)
                      for j in range(n) if j != i]
            ranks.append(_sum(xp, before, chain=True))
    else:
        if _is_jax(vals[0]) and n > 1:
            ordered = _jax_sorted_rows(xp.stack(vals, axis=0))
            vals = [ordered[i, ...] for i in range(n)]
        else:
            for stage in _network_stages(n):
                for a, b in stage:
                    vals[a], vals[b] = xp.minimum(vals[a], vals[b]), xp.maximum(vals[a], vals[b])
        ranks = list(range(n))
    # Both middle elements, half each (one element twice for an odd count).
    halves = [xp.where(lo_i == r, v * 0.5, zero) + xp.where(hi_i == r, v * 0.5, zero)
              for r, v in zip(ranks, vals, strict=True)]
    mid = _sum(xp, halves, chain=chain)
    return xp.where(count > 0, mid, xp.full_like(mid, xp.nan))


# --------------------------------------------------------------------------- solves
@dataclasses.dataclass(frozen=True)
class _Cov:
    """Covariance shapes as Python floats (baked into traced code)."""

    ap: tuple[float, ...]
    bp: tuple[float, ...]
    ar: tuple[float, ...]
    br: tuple[float, ...]
    pairs: tuple[bool, ...]

    @classmethod
    def of(cls, cov: LikelyCovariance) -> _Cov:
        return cls(
            tuple(float(x) for x in cov.alpha_p),
            tuple(float(x) for x in cov.beta_p),
            tuple(float(x) for x in cov.alpha_r),
            tuple(float(x) for x in cov.beta_r),
            tuple(bool(x) for x in cov.pair_allowed),
        )


def _fit(xp, cov: _Cov, diffs, use, centre, photon, sigma2, *, want_inverse=False):
    """GLS fit of a constant to the used differences (lists of rows).

    ``photon`` is the count rate over the gain (P,), ``sigma2`` the read variance (P,).
    Returns a dict with ``slope``, ``chisq``, the solves ``xu = C^-1 u`` and
    ``xd = C^-1 (d - centre)`` (lists) and, if ``want_inverse``, the diagonal and first
    super-diagonal of ``C^-1`` (lists), all restricted to the used differences.
    """
    n = len(diffs)
    one = xp.ones_like(centre)
    zero = xp.zeros_like(centre)
    u = [xp.astype(m, centre.dtype) for m in use]
    dc = [xp.where(use[i], diffs[i] - centre, zero) for i in range(n)]
    alpha = [xp.where(use[i], photon * cov.ap[i] + sigma2 * cov.ar[i], one) for i in range(n)]
    beta = [
        xp.where(use[i] & use[i + 1], photon * cov.bp[i] + sigma2 * cov.br[i], zero)
        for i in range(n - 1)
    ]
    chain = _chained(n)
    # Forward elimination (pivots f) for the two right-hand sides.  In the chained form
    # the pivots are inverted once and multiplied (fewer divisions in the fused loop);
    # the stacked form divides, which XLA schedules better on long ramps.
    f, zu, zd = [alpha[0]], [u[0]], [dc[0]]
    inv = [1.0 / alpha[0]] if chain else None
    for i in range(1, n):
        ratio = beta[i - 1] * inv[i - 1] if chain else beta[i - 1] / f[i - 1]
        f.append(alpha[i] - beta[i - 1] * ratio)
        if chain:
            inv.append(1.0 / f[i])
        zu.append(u[i] - ratio * zu[i - 1])
        zd.append(dc[i] - ratio * zd[i - 1])

    def solved(z, x_next, i):
        top = z if x_next is None else z - beta[i] * x_next
        return top * inv[i] if chain else top / f[i]

    xu, xd = [None] * n, [None] * n
    xu[n - 1] = solved(zu[n - 1], None, n - 1)
    xd[n - 1] = solved(zd[n - 1], None, n - 1)
    for i in range(n - 2, -1, -1):
        xu[i] = solved(zu[i], xu[i + 1], i)
        xd[i] = solved(zd[i], xd[i + 1], i)
    a_sum = _sum(xp, [u[i] * xu[i] for i in range(n)], chain=chain)
    b_sum = _sum(xp, [dc[i] * xu[i] for i in range(n)], chain=chain)
    d_sum = _sum(xp, [dc[i] * xd[i] for i in range(n)], chain=chain)
    valid = a_sum > 0
    safe_a = xp.where(valid, a_sum, one)
    shift = b_sum / safe_a
    nan = xp.full_like(centre, xp.nan)
    out = {
        "slope": xp.where(valid, centre + shift, nan),
        "chisq": xp.where(valid, d_sum - b_sum * shift, nan),
        "a": safe_a,
        "shift": shift,
        "xu": xu,
        "xd": xd,
        "valid": valid,
    }
    if want_inverse:
        # Backward pivots b_i; W_ii = 1 / (f_i - beta_i^2 / b_{i+1}).
        wdiag = [None] * n
        b_next = alpha[n - 1]
        wdiag[n - 1] = 1.0 / f[n - 1]
        for i in range(n - 2, -1, -1):
            s = beta[i] * beta[i] / b_next
            wdiag[i] = 1.0 / (f[i] - s)
            b_next = alpha[i] - s
        out["wdiag"] = wdiag
        out["woff"] = [-beta[i] * wdiag[i + 1] * inv[i] if chain
                       else -beta[i] * wdiag[i + 1] / f[i] for i in range(n - 1)]
    return out


def _tri_quadratic(xp, w, a_diag, b_off):
    """``w^T T w`` per pixel for tridiagonal ``T`` (diagonal/couplings as floats)."""
    n = len(w)
    terms = [w[i] * w[i] * a_diag[i] for i in range(n)]
    terms += [2.0 * b_off[i] * w[i] * w[i + 1] for i in range(n - 1)]
    return _sum(xp, terms, chain=_chained(n))


# --------------------------------------------------------------------------- jumps
def _omission_gains(xp, fit, use, pairs):
    """Chi-square improvements from omitting each difference and each allowed pair.

    Uses the GLS identity: omitting a set ``S`` of differences improves chi2 by
    ``(W r)_S^T (P_SS)^-1 (W r)_S`` with ``P = W - W u u^T W / (u^T W u)``.
    A pair's improvement is split as ``top + extra``: ``top`` the single improvement of
    its member with the larger one, ``extra`` what omitting the other member adds (a
    Schur complement, computed directly so that it keeps its precision when a huge jump
    makes ``top`` large).  Returns lists of rows ``gain1``, ``gain2 = top + extra``,
    ``top`` and ``extra``; disallowed pairs are ``-inf``.
    """
    xu, xd, a_sum, shift = fit["xu"], fit["xd"], fit["a"], fit["shift"]
    n = len(xu)
    zero = xp.zeros_like(a_sum)
    one = xp.ones_like(a_sum)
    chain = _chained(n)
    count = _count(xp, use, chain=chain)
    wr = [xd[i] - shift * xu[i] for i in range(n)]
    pd = [fit["wdiag"][i] - xu[i] * xu[i] / a_sum for i in range(n)]
    gain1 = []
    for i in range(n):
        ok = use[i] & (count >= 2) & (pd[i] > 0)
        gain1.append(xp.where(ok, wr[i] * wr[i] / xp.where(ok, pd[i], one), zero))
    gain2, tops, extras = [], [], []
    neg_inf = xp.full_like(a_sum, -xp.inf)
    for i in range(n - 1):
        if not pairs[i]:
            gain2.append(neg_inf)
            tops.append(neg_inf)
            extras.append(neg_inf)
            continue
        p, q = wr[i], wr[i + 1]
        p11, p22 = pd[i], pd[i + 1]
        p12 = fit["woff"][i] - xu[i] * xu[i + 1] / a_sum
        det = p11 * p22 - p12 * p12
        both = use[i] & use[i + 1]
        ok = both & (count >= 3) & (det > 0)
        first_top = gain1[i] >= gain1[i + 1]
        # extra = (p_kk r_o - p_ko r_k)^2 / (p_kk det), k the top member, o the other
        p_top = xp.where(first_top, p11, p22)
        num = xp.where(first_top, p11 * q - p12 * p, p22 * p - p12 * q)
        den = xp.where(ok, p_top * det, one)
        extra = xp.where(ok, num * num / den, zero)
        # A pair with one member already omitted is the single omission of the other.
        top = xp.where(ok, xp.maximum(gain1[i], gain1[i + 1]),
                       xp.where(both, zero, gain1[i] + gain1[i + 1]))
        tops.append(top)
        extras.append(extra)
        gain2.append(top + extra)
    return gain1, gain2, tops, extras


def _jump_pass(xp, cov: _Cov, inputs, state, threshold_one: float, threshold_two: float):
    """One pass of the jump search over all pixels of ``inputs``/``state`` (tuples of rows)."""
    diffs, centre, photon, sigma2 = inputs
    use_k, active, found, isolated, groups = state
    use_k, diffs = list(use_k), list(diffs)
    n = len(diffs)
    any_pair = any(cov.pairs)
    fit = _fit(xp, cov, diffs, use_k, centre, photon, sigma2, want_inverse=True)
    gain1, gain2, tops, extras = _omission_gains(xp, fit, use_k, cov.pairs)
    chain = _chained(n)
    count = _count(xp, use_k, chain=chain)
    best1, at1 = _running_argmax(xp, gain1, chain=chain)
    neg_inf = xp.full_like(centre, -xp.inf)
    _, larger = _running_argmax(
        xp, [xp.where(use_k[i], diffs[i], neg_inf) for i in range(n)], chain=chain)
    at1 = xp.where(count == 2.0, larger, at1)
    if any_pair:
        # Pairs sharing the largest top member are ranked by their extra (exact), the
        # others by their whole improvement.
        best_top, _ = _running_argmax(xp, tops, chain=chain)
        sharing = [t == best_top for t in tops]
        best_extra, _ = _running_argmax(
            xp, [xp.where(g, e, neg_inf) for g, e in zip(sharing, extras, strict=True)],
            chain=chain)
        keys = [xp.where(~g | (e == best_extra), g2, neg_inf)
                for g, e, g2 in zip(sharing, extras, gain2, strict=True)]
        best2, at2 = _running_argmax(xp, keys, chain=chain)
        top2, extra2 = xp.zeros_like(best2), xp.zeros_like(best2)
        for i in range(n - 1):
            top2 = xp.where(at2 == i, tops[i], top2)
            extra2 = xp.where(at2 == i, extras[i], extra2)
        jump = active & ((best1 > threshold_one) | (best2 > threshold_two))
        # pair excess - single excess; exact when the pair's top member is the best single
        delta = xp.where(top2 == best1, extra2, best2 - best1)
        single = delta <= (threshold_two - threshold_one)
        at = xp.where(single, at1, at2)
    else:
        jump = active & (best1 > threshold_one)
        single = xp.ones_like(jump)
        at = at1
    drop = []
    for i in range(n):
        hit = single & (at == i)
        if any_pair:
            hit = hit | (~single & ((at == i) | (at == i - 1)))
        drop.append(jump & hit)
    # Was the omitted single difference enclosed by already omitted neighbours?
    enclosed = xp.zeros_like(jump)
    for i in range(1, n - 1):
        enclosed = enclosed | (drop[i] & ~use_k[i - 1] & ~use_k[i + 1])
    isolated = xp.where(jump, enclosed & single, isolated)
    # Each omitted difference flags the later of its two resultants (a pair flags two).
    groups = (groups[0], *(groups[g] | drop[g - 1] for g in range(1, n + 1)))
    new_use = tuple(use_k[i] & ~drop[i] for i in range(n))
    new_count = _count(xp, new_use, chain=chain)
    return new_use, jump & (new_count >= 4.0), found | jump, isolated, groups


def _mask_jumps(xp, cov: _Cov, diffs, use, centre, photon, sigma2,
                threshold_one: float, threshold_two: float):
    """Iteratively omit the difference (or pair) whose omission improves chi2 the most.

    The covariance is built once from ``photon`` (the median-based count rate over the
    gain).  Every pixel is examined once; a pixel keeps iterating while it had a jump
    omitted in the previous pass and at least four differences remain.  The omission
    with the larger excess over its threshold wins (pairs only where the shared
    resultant averages several reads).  With exactly two differences left both
    omissions explain the data equally well; the larger difference (the one a cosmic ray
    would raise) is dropped.  The passes run on the candidate pixels only (those whose
    chi-square could exceed a threshold, :func:`_jump_candidates`), gathered into a
    compact block.

    Returns the final ``use`` rows, whether a jump was found, whether the last omission
    was a single difference between two already omitted ones, and rows (n + 1) marking
    the resultants at which a jump was placed (the later resultant of each omitted
    difference: both later resultants of an omitted pair, as stcal flags them).
    """
    n = len(diffs)
    no = xp.zeros(centre.shape, dtype=xp.bool)
    inputs = (tuple(diffs), centre, photon, sigma2)

    def one_pass(inp, st):
        return _jump_pass(xp, cov, inp, st, threshold_one, threshold_two)

    candidate = _jump_candidates(xp, cov, diffs, use, centre, photon, sigma2,
                                 threshold_one, threshold_two)
    state = (tuple(use), candidate, no, no, tuple(no for _ in range(n + 1)))
    if _is_jax(centre) and n <= _PACKED_MAX_DIFFS:
        # The compaction gathers and scatters every array of the state: pack the rows
        # of flags into the bits of one array each, and the differences into one array.
        def packed_pass(inp, st):
            stacked, *rest = inp
            out = one_pass((tuple(_rows(stacked)), *rest), _unpack_state(xp, st, n))
            return _pack_state(xp, out)

        packed_inputs = (xp.stack(diffs, axis=0), centre, photon, sigma2)
        state = _unpack_state(xp, _jax_compact_passes(
            packed_pass, packed_inputs, _pack_state(xp, state), max_iter=n), n)
    elif _is_jax(centre):
        state = _jax_compact_passes(one_pass, inputs, state, max_iter=n)
    else:
        for _ in range(n):
            if not bool(xp.any(state[1])):
                break
            mask = state[1]
            sub = one_pass(_take(inputs, mask), _take(state, mask))
            state = _put(state, sub, mask)
    use_out, _, found, isolated, groups = state
    return list(use_out), found, isolated, list(groups)


def _jump_candidates(xp, cov: _Cov, diffs, use, centre, photon, sigma2,
                     threshold_one: float, threshold_two: float):
    """Pixels whose chi-square could improve past a threshold by an omission (P,) bool.

    The jump passes run on these alone; every other pixel has no jump.
    """
    n = len(diffs)
    # With few differences chi-square itself is a cheap bound (an omission lowers it by at
    # most its value); with many, clean ramps often exceed the threshold in total, and
    # the omission gains themselves are the better screen.
    slack = 1.0 - 1e-3
    if n <= _CHISQ_SCREEN_MAX_DIFFS:
        lowest = min(threshold_one, threshold_two) if any(cov.pairs) else threshold_one
        chisq = _fit(xp, cov, diffs, use, centre, photon, sigma2)["chisq"]
        candidate = chisq > lowest * slack
    else:
        fit = _fit(xp, cov, diffs, use, centre, photon, sigma2, want_inverse=True)
        gain1, gain2, _, _ = _omission_gains(xp, fit, use, cov.pairs)
        chain = _chained(n)
        candidate = _running_argmax(xp, gain1, chain=chain)[0] > threshold_one * slack
        if any(cov.pairs):
            best2 = _running_argmax(xp, gain2, chain=chain)[0]
            candidate = candidate | (best2 > threshold_two * slack)
    return candidate


#: Up to this many differences the jump-search state is packed into bits (uint32).
_PACKED_MAX_DIFFS = 32


def _pack_rows(xp, rows):
    """Bool rows (at most 32) as the bits of one uint32 array, row ``i`` in bit ``i``."""
    bits = xp.zeros(rows[0].shape, dtype=xp.uint32)
    for i, row in enumerate(rows):
        bits = bits | (xp.astype(row, xp.uint32) << i)
    return bits


def _unpack_rows(xp, bits, n: int):
    """The ``n`` bool rows packed by :func:`_pack_rows`."""
    return [((bits >> i) & 1) != 0 for i in range(n)]


def _pack_state(xp, state):
    """Jump-search state with its rows of flags packed (resultant 0 is never flagged)."""
    use, active, found, isolated, groups = state
    return (_pack_rows(xp, use), active, found, isolated, _pack_rows(xp, groups[1:]))


def _unpack_state(xp, packed, n: int):
    """Inverse of :func:`_pack_state`."""
    use_bits, active, found, isolated, group_bits = packed
    no = xp.zeros_like(active)
    return (tuple(_unpack_rows(xp, use_bits, n)), active, found, isolated,
            (no, *_unpack_rows(xp, group_bits, n)))


#: Up to this many differences the jump search is screened by chi-square alone.
_CHISQ_SCREEN_MAX_DIFFS = 12


def _take(tree, mask):
    """The pixels where ``mask`` is true, from every (P,) array of a nested tuple."""
    if isinstance(tree, tuple):
        return tuple(_take(t, mask) for t in tree)
    return tree[mask]


def _put(full, part, mask):
    """Scatter ``part`` back into ``full`` where ``mask`` (nested tuples of (P,))."""
    if isinstance(full, tuple):
        return tuple(_put(f, p, mask) for f, p in zip(full, part, strict=True))
    import array_api_extra as xpx

    return xpx.at(full)[mask].set(part, copy=True)


def _jax_compact_passes(one_pass, inputs, state, *, max_iter: int):
    """Later jump passes on JAX, on compact blocks of the still-active pixels.

    Arrays of ``inputs`` and ``state`` have the pixels on their last axis and
    ``state[1]`` marks the active ones.

    Each round gathers up to ``capacity`` active pixels (a sixteenth of the chunk, at
    least 256) and runs passes on them while more than an eighth of the block is active;
    most candidates have one jump, so after two passes few remain, and those are
    gathered into a block of that eighth and iterated to completion there (a pass costs
    in proportion to its block).  Everything is scattered back, and rounds repeat while
    any pixel is active, so the result does not depend on the block sizes.
    """
    import jax
    import jax.numpy as jnp

    npix = int(inputs[1].shape[0])
    capacity = min(npix, max(256, npix // 16))
    small = max(32, capacity // 8)

    def passes(inp, st, stop_at):
        def cond(s):
            k, inner_state = s
            return (k < max_iter) & (jnp.sum(inner_state[1], dtype=jnp.int32) > stop_at)

        def body(s):
            k, inner_state = s
            return k + 1, one_pass(inp, inner_state)

        return jax.lax.while_loop(cond, body, (0, st))[1]

    def gathered(inp, st, size, then):
        """``then`` on up to ``size`` active pixels of ``inp``/``st``, scattered back."""
        total = int(st[1].shape[0])
        (idx,) = jnp.nonzero(st[1], size=size, fill_value=total)
        safe = jnp.minimum(idx, total - 1)
        sub_in = jax.tree_util.tree_map(lambda a: a[..., safe], inp)
        sub_st = jax.tree_util.tree_map(lambda a: a[..., safe], st)
        sub_st = (sub_st[0], sub_st[1] & (idx < total), *sub_st[2:])
        out = then(sub_in, sub_st)
        return jax.tree_util.tree_map(lambda f, p: f.at[..., idx].set(p, mode="drop"), st,
                                      out)

    def block(inp, st):
        if small >= capacity:
            return passes(inp, st, 0)
        st = passes(inp, st, small)
        return gathered(inp, st, small, lambda i, s: passes(i, s, 0))

    def round_body(st):
        return gathered(inputs, st, capacity, block)

    return jax.lax.while_loop(lambda st: jnp.any(st[1]), round_body, state)


# --------------------------------------------------------------------------- one integration
def fit_differences(
    xp,
    diffs,
    use,
    gain,
    sigma2,
    dark,
    cov: LikelyCovariance,
    *,
    threshold_one: float = 20.25,
    threshold_two: float = 23.8,
    detect_jumps: bool = True,
    stcal_quirks: bool = False,
):
    """LIKELY fit of one integration's differences.

    Parameters
    ----------
    xp : namespace
    diffs : float32 (n, P) array or list of n (P,) rows
        Resultant differences divided by ``cov.dt``.
    use : bool (n, P) array or list of n (P,) rows
        Differences allowed by the group DQ.
    gain : float32 (P,)
        e-/DN.
    sigma2 : float32 (P,)
        Variance of one read, DN**2 (CDS noise squared over 2).
    dark : float32 (P,)
        Dark current added to the final count-rate estimate (as stcal does).
    cov : LikelyCovariance
    threshold_one, threshold_two : float
        Chi-square improvements needed to omit one difference / two adjacent ones.
    detect_jumps : bool
        Run the likelihood jump detection.
    stcal_quirks : bool
        Reproduce stcal 1.17.0's count-rate estimate after jump detection, which is
        twice the true value when the last omitted difference sat between two already
        omitted ones (it then inflates the Poisson variance).  Off by default.

    Returns
    -------
    dict
        ``slope``, ``chisq``, ``var_poisson``, ``var_rnoise`` (P,), ``jump`` (bool (P,):
        a jump was omitted), ``jump_groups`` (list of n + 1 bool rows: resultants where
        a jump was placed), ``use`` (list of rows) and ``rate`` (the count-rate estimate
        the final covariance was built from).
    """
    found = detect_differences(
        xp, diffs, use, gain, sigma2, dark, cov, threshold_one=threshold_one,
        threshold_two=threshold_two, detect_jumps=detect_jumps, stcal_quirks=stcal_quirks,
    )
    final = fit_with_rate(xp, diffs, found["use"], found["rate"], gain, sigma2, cov)
    return {**final, **found}


def detect_differences(
    xp,
    diffs,
    use,
    gain,
    sigma2,
    dark,
    cov: LikelyCovariance,
    *,
    threshold_one: float = 20.25,
    threshold_two: float = 23.8,
    detect_jumps: bool = True,
    stcal_quirks: bool = False,
):
    """First half of :func:`fit_differences`: jump detection and the count-rate estimate.

    Returns
    -------
    dict
        ``use`` (list of n rows: differences kept), ``jump`` (P,), ``jump_groups``
        (list of n + 1 rows) and ``rate`` (P,): ``max(fit of the kept differences with
        the median covariance, 0) + dark``, from which the final covariance is built.
    """
    c = _Cov.of(cov)
    diffs, use = _rows(diffs), _rows(use)
    n = len(diffs)
    # stcal's initial guess is the median of *all* differences, DQ-flagged ones included.
    centre = row_nanmedian(xp, diffs)
    centre = xp.where(xp.isnan(centre), xp.zeros_like(centre), centre)
    guess = xp.maximum(centre, xp.zeros_like(centre))
    no = xp.zeros(centre.shape, dtype=xp.bool)
    if detect_jumps:
        sg = _stop_gradient
        use_j, jump, isolated, groups = _mask_jumps(
            xp, c, [sg(d) for d in diffs], use, sg(centre), sg(guess / gain), sg(sigma2),
            threshold_one, threshold_two,
        )
    else:
        use_j, jump, isolated, groups = use, no, no, [no] * (n + 1)
    # Count-rate estimate from the (masked) differences with the median-based covariance.
    first = _fit(xp, c, diffs, use_j, centre, guess / gain, sigma2)
    rate = xp.where(first["valid"], first["slope"], xp.zeros_like(centre))
    rate = xp.maximum(rate, xp.zeros_like(rate))
    if stcal_quirks:
        rate = xp.where(isolated, 2.0 * rate, rate)
    return {"use": list(use_j), "jump": jump, "jump_groups": groups, "rate": rate + dark}


def fit_with_rate(xp, diffs, use, rate, gain, sigma2, cov: LikelyCovariance):
    """Second half of :func:`fit_differences`: the fit with the covariance at ``rate``.

    ``rate`` (P,) is the count-rate estimate (DN/s, dark current included); returns
    ``slope``, ``chisq``, ``var_poisson`` and ``var_rnoise`` (P,), NaN where no
    difference is kept.
    """
    c = _Cov.of(cov)
    diffs, use = _rows(diffs), _rows(use)
    final = _fit(xp, c, diffs, use, rate, rate / gain, sigma2)
    # The weights are xu / a: the quadratic forms of xu are divided by a**2 once.
    a2 = final["a"] * final["a"]
    unit_poisson = _tri_quadratic(xp, final["xu"], c.ap, c.bp) / (a2 * gain)
    var_rnoise = sigma2 * _tri_quadratic(xp, final["xu"], c.ar, c.br) / a2
    nan = xp.full_like(rate, xp.nan)
    valid = final["valid"]
    return {
        "slope": final["slope"],
        "chisq": final["chisq"],
        "var_poisson": xp.where(valid, rate * unit_poisson, nan),
        "var_rnoise": xp.where(valid, var_rnoise, nan),
    }


def _rows(x):
    """A list of rows from an (n, P) array or a sequence of (P,) arrays."""
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x[i, ...] for i in range(int(x.shape[0]))]


def _stop_gradient(x):
    if is_jax_array(x):
        import jax

        return jax.lax.stop_gradient(x)
    return x


def integration_dq(xp, groupdq, pixeldq, jump):
    """Per-integration DQ from the group DQ rows.

    ``pixeldq`` plus SATURATED / JUMP_DET if any group has them (or ``jump``: a jump
    found by the fit), DO_NOT_USE when every group is DO_NOT_USE or SATURATED.
    ``groupdq`` is uint8 (ngroups, P) or a list of rows; returns ``(dq, all_dnu)``.
    """
    groupdq = _rows(groupdq)
    sat = xp.zeros(pixeldq.shape, dtype=xp.bool)
    jmp = jump
    dnu = xp.ones(pixeldq.shape, dtype=xp.bool)
    for g in groupdq:
        g = xp.astype(g, xp.uint32)
        sat = sat | ((g & _SAT) != 0)
        jmp = jmp | ((g & _JUMP) != 0)
        dnu = dnu & ((g & (_DNU | _SAT)) != 0)
    zero = xp.zeros_like(pixeldq)
    out = pixeldq
    out = out | xp.where(sat, zero + _SAT, zero)
    out = out | xp.where(jmp, zero + _JUMP, zero)
    out = out | xp.where(dnu, zero + _DNU, zero)
    return out, dnu


def combine_integrations(xp, slope, var_poisson, var_rnoise, chisq, int_dq, int_dnu, pixeldq):
    """Exposure-level rate from per-integration fits ((nints, P) arrays or lists of rows).

    The rate starts at the median of the integration slopes and is refined twice.  In
    each pass an integration's Poisson variance is rescaled to the current rate,
    ``var_poisson * max(rate / slope, 0)``, and integrations are weighted by the
    inverse of their total variance; the variances of the weighted mean are propagated
    through the weights.  Chi-square values add (NaN if any integration has none).
    """
    slope, var_poisson, var_rnoise = _rows(slope), _rows(var_poisson), _rows(var_rnoise)
    chisq, int_dq, int_dnu = _rows(chisq), _rows(int_dq), _rows(int_dnu)
    nints = len(slope)
    chain = _chained(nints)
    zero = xp.zeros_like(slope[0])
    one = xp.ones_like(zero)
    valid = [~xp.isnan(s) for s in slope]
    s = [xp.where(valid[i], slope[i], zero) for i in range(nints)]
    vp = [xp.where(valid[i], var_poisson[i], zero) for i in range(nints)]
    vr = [xp.where(valid[i], var_rnoise[i], zero) for i in range(nints)]
    nonzero = [valid[i] & (s[i] != 0) for i in range(nints)]
    safe_s = [xp.where(nonzero[i], s[i], one) for i in range(nints)]
    any_valid = valid[0]
    for v in valid[1:]:
        any_valid = any_valid | v
    g = row_nanmedian(xp, list(slope))
    g = xp.where(any_valid, g, zero)
    rate = vp_out = vr_out = zero
    for _ in range(2):
        w, vpg = [], []
        for i in range(nints):
            ratio = xp.where(nonzero[i], g / safe_s[i], zero)
            vpg_i = vp[i] * xp.maximum(ratio, zero)
            total = vpg_i + vr[i]
            ok = valid[i] & (total > 0)
            w.append(xp.where(ok, 1.0 / xp.where(ok, total, one), zero))
            vpg.append(vpg_i)
        wsum = _sum(xp, w, chain=chain)
        safe = xp.where(wsum > 0, wsum, one)
        rate = _sum(xp, [w[i] * s[i] for i in range(nints)], chain=chain) / safe
        vp_out = _sum(xp, [w[i] * w[i] * vpg[i] for i in range(nints)], chain=chain)
        vp_out = vp_out / (safe * safe)
        vr_out = _sum(xp, [w[i] * w[i] * vr[i] for i in range(nints)], chain=chain)
        vr_out = vr_out / (safe * safe)
        g = rate
    nan = xp.full_like(rate, xp.nan)
    rate = xp.where(any_valid, rate, nan)
    vp_out = xp.where(any_valid, vp_out, nan)
    vr_out = xp.where(any_valid, vr_out, nan)
    chi = _sum(xp, list(chisq), chain=chain)
    keep = xp.asarray(_SAT | _JUMP, dtype=xp.uint32)
    dq = pixeldq
    all_dnu = int_dnu[0]
    for i in range(nints):
        dq = dq | (int_dq[i] & keep)
        all_dnu = all_dnu & int_dnu[i]
    dq = dq | xp.where(all_dnu, xp.zeros_like(dq) + _DNU, xp.zeros_like(dq))
    return {"data": rate, "var_poisson": vp_out, "var_rnoise": vr_out, "chisq": chi, "dq": dq}
