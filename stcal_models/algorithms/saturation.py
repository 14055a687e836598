"""Saturation and A/D-floor flagging of up-the-ramp data.

Implements the behaviour documented for stcal 1.17.0's ``flag_saturated_pixels``
(section "Saturation" of the stcal documentation and its changelog):

* a group whose value reaches the pixel's saturation threshold is flagged ``SATURATED``,
  and so is every later group of that integration;
* a group at or below the A/D floor (``<= 0`` DN) is flagged ``AD_FLOOR | DO_NOT_USE``;
* thresholds that are NaN or carry ``NO_SAT_CHECK`` in the reference DQ are raised above
  the A-to-D limit so they never saturate; the reference DQ (and ``NO_SAT_CHECK`` for
  NaN thresholds) is propagated to PIXELDQ;
* charge migration: every ``SATURATED`` group flag is grown to a ``(2N+1) x (2N+1)`` box,
  ``N = n_pix_grow_sat``;
* frame-averaged groups (a read pattern with several reads per group): a group whose
  average already exceeds the threshold scaled by ``mean(reads) / last(read)`` and whose
  next group is saturated is flagged ``DO_NOT_USE`` (grown like saturation); and the
  group-2 rule flags the second group ``DO_NOT_USE`` when the three documented criteria
  hold (first-group rate does not predict saturation by group 3, using the superbias when
  given; the group 1 -> 2 jump exceeds the remaining counts divided by the reads in group 2;
  group 3 is saturated);
* ZEROFRAME values that are saturated (grown like the groups) or at the A/D floor are set
  to 0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import array_api_compat
import array_api_extra as xpx

from ..backends import array_namespace, backend_name, jit, max_filter2d, to_backend, to_numpy
from ..dqflags import DQ
from ..models import RampModel, SaturationRef, SuperbiasRef
from .base import Step, check_int, check_number

__all__ = ["Saturation"]

_SAT = int(DQ.SATURATED)
_DNU = int(DQ.DO_NOT_USE)
_AD = int(DQ.AD_FLOOR)
_NSC = int(DQ.NO_SAT_CHECK)


@dataclasses.dataclass(frozen=True, repr=False)
class Saturation(Step):
    """Flag saturated groups, A/D-floor groups and charge migration in a ramp.

    Parameters
    ----------
    n_pix_grow_sat : int
        Half-width ``N`` of the ``(2N+1) x (2N+1)`` box flagged around each saturated
        pixel (charge migration).  ``0`` disables growth.  Default 1.
    atod_limit : float
        Hard DN limit of the A-to-D converter.  Thresholds that are NaN or flagged
        ``NO_SAT_CHECK`` are replaced by ``atod_limit + 1``.  Default 65535.
    use_read_pattern : bool
        Apply the read-pattern rules for frame-averaged groups (the documented
        group-2 rule and the "saturated within the group" rule), using
        ``ramp.meta.resultant_reads``.  They never fire when every group is one read.
        ``False`` reproduces ``flag_saturated_pixels(..., read_pattern=None)``.
        Default True.

    Notes
    -----
    Details the documentation leaves open, reproduced from stcal 1.17.0: a group is
    saturated when its value is *greater than or equal to* the threshold; ``SATURATED``
    flags already present in the input GROUPDQ are grown (but not carried to later
    groups); the read-pattern rules set ``DO_NOT_USE`` rather than ``SATURATED``; the
    "saturated within the group" flag is grown like saturation (the group-2 flag is
    not) and skips groups already ``DO_NOT_USE``.

    Differences from stcal: NaN science values are flagged ``DO_NOT_USE`` (stcal leaves
    them unflagged); a one-row or one-column frame works (stcal raises ``IndexError``
    when growing).  On JAX without x64 the two read-pattern comparisons that stcal makes
    in float64 are made in float32, so a value within one float32 ulp of those
    thresholds may be classified differently.
    """

    n_pix_grow_sat: int = 1
    atod_limit: float = 65535
    use_read_pattern: bool = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_int(owner, "n_pix_grow_sat", self.n_pix_grow_sat, minimum=0)
        check_number(owner, "atod_limit", self.atod_limit, minimum=0)
        if not isinstance(self.use_read_pattern, bool):
            raise TypeError(
                f"{owner}.use_read_pattern: expected bool, got "
                f"{type(self.use_read_pattern).__name__} {self.use_read_pattern!r}"
            )

    def __call__(
        self, ramp: RampModel, saturation_ref: SaturationRef, bias: Any = None
    ) -> RampModel:
        """Return a new ramp with GROUPDQ, PIXELDQ and ZEROFRAME updated.

        Parameters
        ----------
        ramp : RampModel
            Raw ramp; not modified.
        saturation_ref : SaturationRef
            Thresholds (DN) and their DQ; a larger reference is cut to the science
            subarray with :meth:`SaturationRef.for_science`.
        bias : array (ny, nx) or SuperbiasRef, optional
            Superbias (DN) used by the group-2 rule; a larger ``SuperbiasRef`` is cut
            to the science subarray.

        Returns
        -------
        RampModel
            ``ramp`` with the new flags (and zeroed saturated ZEROFRAME values).

        Raises
        ------
        TypeError
            If ``ramp``/``saturation_ref`` are not the expected models or ``bias`` is
            not a real-valued array.
        ValueError
            If the reference does not cover the science frame or ``bias`` has the
            wrong shape.
        """
        owner = type(self).__name__
        if not isinstance(ramp, RampModel):
            raise TypeError(f"{owner}: ramp: expected RampModel, got {type(ramp).__name__}")
        if not isinstance(saturation_ref, SaturationRef):
            raise TypeError(
                f"{owner}: saturation_ref: expected SaturationRef, "
                f"got {type(saturation_ref).__name__}"
            )
        nints, ngroups, ny, nx = ramp.shape
        try:
            ref = saturation_ref.for_science(ramp.meta, (ny, nx))
        except ValueError as exc:
            raise ValueError(f"{owner}: saturation_ref: {exc}") from exc
        xp = ramp.xp
        backend = ramp.backend
        threshold = _like(ref.data, ramp.data, xp, backend)
        threshold_dq = None if ref.dq is None else _like(ref.dq, ramp.data, xp, backend)
        if isinstance(bias, SuperbiasRef):
            try:
                bias = bias.for_science(ramp.meta, (ny, nx)).data
            except ValueError as exc:
                raise ValueError(f"{owner}: bias: {exc}") from exc
        bias_arr = None if bias is None else _prepare_bias(bias, (ny, nx), ramp.data, xp, backend)

        dilution, group2 = (None, None)
        if self.use_read_pattern:
            dilution, group2 = read_pattern_constants(ramp.meta.resultant_reads, ngroups)

        gdq, pdq, zf = _saturation_kernel(
            ramp.data,
            ramp.groupdq,
            ramp.pixeldq,
            threshold,
            threshold_dq,
            ramp.zeroframe,
            bias_arr,
            n_pix_grow_sat=self.n_pix_grow_sat,
            atod_limit=float(self.atod_limit),
            dilution=dilution,
            group2=group2,
            grow_existing=_has_flag(xp, ramp.groupdq, _SAT),
        )
        changes = {"groupdq": gdq, "pixeldq": pdq}
        if ramp.zeroframe is not None:
            changes["zeroframe"] = zf
        return ramp.replace(**changes)


# ---------------------------------------------------------------------- helpers
def read_pattern_constants(
    read_pattern, ngroups: int
) -> tuple[tuple[float, ...] | None, tuple[float, float, int] | None]:
    """Static constants of the read-pattern rules.

    Parameters
    ----------
    read_pattern : sequence of sequences of int
        For each group the 1-based indices of the reads averaged into it.
    ngroups : int
        Groups per integration; ``len(read_pattern)`` must equal it.

    Returns
    -------
    dilution : tuple of float or None
        ``mean(reads) / last(read)`` of each group but the last, or ``None`` when every
        such factor is 1 (the rule cannot fire).
    group2 : tuple or None
        ``(mean read of group 1, last read of group 3, reads in group 2)``, or ``None``
        when there are fewer than 3 groups or group 2 is a single read (cannot fire).

    Raises
    ------
    ValueError
        If the read pattern's length differs from ``ngroups`` or a group has no reads.
    """
    pattern = [list(r) for r in read_pattern]
    if len(pattern) != ngroups:
        raise ValueError(
            f"Saturation: read_pattern: expected {ngroups} groups (ngroups), got {len(pattern)}"
        )
    for k, reads in enumerate(pattern):
        if not reads:
            raise ValueError(f"Saturation: read_pattern: group {k} has no reads")
    factors = tuple(float(sum(r) / len(r) / r[-1]) for r in pattern[:-1])
    dilution = factors if any(f != 1.0 for f in factors) else None
    group2 = None
    if ngroups >= 3 and len(pattern[1]) > 1:
        first = pattern[0]
        group2 = (float(sum(first) / len(first)), float(pattern[2][-1]), len(pattern[1]))
    return dilution, group2


def _like(x, template, xp, backend: str):
    """``x`` on the same backend/namespace as ``template``."""
    if backend_name(x) == backend_name(template):
        return x
    if backend in ("numpy", "jax"):
        return to_backend(x, backend)
    return xp.asarray(to_numpy(x))


def _prepare_bias(bias, frame_shape, template, xp, backend: str):
    """Validate the superbias and return it as float32 on the ramp's backend."""
    import numpy as np

    if not (hasattr(bias, "shape") and hasattr(bias, "dtype")):
        raise TypeError(f"Saturation: bias: expected a 2-D array, got {type(bias).__name__}")
    host = np.asarray(to_numpy(bias))
    if host.dtype.kind not in "fiu":
        raise TypeError(f"Saturation: bias: expected a real-valued array, got dtype {host.dtype}")
    if tuple(host.shape) != tuple(frame_shape):
        raise ValueError(
            f"Saturation: bias: expected shape {tuple(frame_shape)} (the science frame), "
            f"got {tuple(host.shape)}"
        )
    host = host.astype(np.float32, copy=False)
    if backend in ("numpy", "jax"):
        if backend == "numpy" and host is bias:
            return host
        return to_backend(host, backend)
    return xp.asarray(host)


def _has_flag(xp, dq, flag: int) -> bool:
    """Whether any element of ``dq`` carries ``flag`` (a host-side decision, one pass)."""
    return bool(_any_flag(dq, flag=flag))


@jit(static_argnames=("flag",))
def _any_flag(dq, *, flag: int):
    xp = array_namespace(dq)
    # a max of the masked values: much faster on XLA CPU than ``any`` of a boolean array
    return xp.max(dq & xp.asarray(flag, dtype=dq.dtype)) != 0


def _wide_float(xp):
    """float64 when the namespace computes in it (JAX only with x64 enabled), else None."""
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return xp.float64 if jax.config.jax_enable_x64 else None
    return xp.float64


def _bits(xp, mask, value: int, dtype):
    """``value`` where ``mask`` is True, 0 elsewhere, as ``dtype``.

    A cast and a product: several times faster on NumPy than ``where`` with scalars.
    """
    return xp.astype(mask, dtype) * xp.asarray(value, dtype=dtype)


def _divide(xp, x, divisor: float):
    """Correctly rounded ``x / divisor`` (float32 or float64 ``x``, Python-float divisor).

    XLA's CPU division is not correctly rounded (it can be one ulp off); stcal's
    comparisons are reproduced bit for bit only with IEEE division.  On JAX the quotient
    is corrected with the exact remainder ``x - q * divisor`` (Dekker's two-product),
    which needs no fused multiply-add; other namespaces divide correctly already.
    """
    d = xp.asarray(divisor, dtype=x.dtype)
    q = x / d
    if not array_api_compat.is_jax_namespace(xp):
        return q
    p = q * d
    q_hi, q_lo = _split(xp, q)
    d_hi, d_lo = _split(xp, xp.full_like(q, divisor))
    error = ((q_hi * d_hi - p) + q_hi * d_lo + q_lo * d_hi) + q_lo * d_lo  # q*d - p, exact
    remainder = (x - p) - error  # x - q*d, exact
    inf = xp.asarray(math.inf, dtype=x.dtype)
    up, down = xp.nextafter(q, inf), xp.nextafter(q, -inf)
    two = xp.asarray(2.0, dtype=x.dtype)
    below = xp.where(two * remainder < (down - q) * d, down, q)
    return xp.where(two * remainder > (up - q) * d, up, below)


def _split(xp, x):
    """Veltkamp split: ``x == hi + lo`` with half-width mantissas, so products are exact."""
    c = x * xp.asarray(4097.0 if x.dtype == xp.float32 else 134217729.0, dtype=x.dtype)
    hi = c - (c - x)
    return hi, x - hi


def _at_least(xp, threshold, factor):
    """Smallest float32 ``t`` with ``x >= t  <=>  x >= float64(threshold) * factor`` for float32 x.

    ``factor`` is a Python float or an array (float64 where available).  stcal compares
    float32 data with a float64 product; precomputing the float32 bound keeps the
    comparison with the data in float32.  Without float64 (JAX with x64 off) the product
    is rounded to float32.
    """
    if isinstance(factor, float) and factor == 1.0:
        return threshold
    wide = _wide_float(xp)
    if wide is None:
        return threshold * factor
    exact = xp.astype(threshold, wide) * factor
    rounded = xp.astype(exact, threshold.dtype)
    up = xp.nextafter(rounded, xp.asarray(math.inf, dtype=threshold.dtype))
    return xp.where(xp.astype(rounded, wide) < exact, up, rounded)


@jit(static_argnames=("n_pix_grow_sat", "atod_limit", "dilution", "group2", "grow_existing"))
def _saturation_kernel(
    data,
    groupdq,
    pixeldq,
    threshold,
    threshold_dq,
    zeroframe,
    bias,
    *,
    n_pix_grow_sat: int,
    atod_limit: float,
    dilution: tuple[float, ...] | None,
    group2: tuple[float, float, int] | None,
    grow_existing: bool,
):
    """Array-API kernel: new ``(groupdq, pixeldq, zeroframe)``.

    ``data`` is ``(nints, ngroups, ny, nx)`` float32; ``threshold``, ``threshold_dq`` and
    ``bias`` are ``(ny, nx)`` (the last two may be None); ``zeroframe`` is
    ``(nints, ny, nx)`` or None.  ``grow_existing`` says whether ``groupdq`` holds
    SATURATED flags (they are then grown too).  No input is modified.
    """
    xp = array_namespace(data, groupdq, pixeldq, threshold)
    f32, u8, u32 = data.dtype, groupdq.dtype, pixeldq.dtype
    nints, ngroups, ny, nx = data.shape
    size = 2 * n_pix_grow_sat + 1

    # Thresholds: NaN or NO_SAT_CHECK -> above the A/D limit; DQ propagated to PIXELDQ.
    nan_thr = xp.isnan(threshold)
    pdq = pixeldq | _bits(xp, nan_thr, _NSC, u32)
    no_check = nan_thr
    if threshold_dq is not None:
        no_check = no_check | ((threshold_dq & xp.asarray(_NSC, dtype=u32)) != 0)
        pdq = pdq | xp.astype(threshold_dq, u32)
    thr = xp.where(no_check, xp.asarray(atod_limit + 1.0, dtype=f32), threshold)

    # Saturation is monotone in time, so it is carried by one 2-D map per integration:
    # ``late = ngroups - (first group at or above the threshold)`` (0: never).  Growing
    # the box is then a 2-D maximum filter of ``late``; group g is saturated where
    # ``late >= ngroups - g``.
    # Intermediate integer type: XLA's CPU reductions and bit operations are fast on
    # int32 and slow on uint8; NumPy is fastest on the smallest type.
    on_jax = array_api_compat.is_jax_namespace(xp)
    work = xp.int32 if on_jax or ngroups >= 255 else u8
    weight = xp.reshape(xp.arange(ngroups, 0, -1, dtype=work), (1, ngroups, 1, 1))
    late = xp.max(xp.astype(data >= thr, work) * weight, axis=1)
    late = max_filter2d(late, size)
    grown = late[:, None, :, :] >= weight
    existing = None
    if grow_existing:
        # SATURATED flags already in the input are grown in their own group only.
        existing = max_filter2d((groupdq & xp.asarray(_SAT, dtype=u8)) != 0, size)
        grown = grown | existing

    def grown_at(g: int):
        plane = late >= ngroups - g
        return plane if existing is None else plane | existing[:, g, :, :]

    floor = data <= 0
    flags = (
        _bits(xp, grown, _SAT, work)
        | _bits(xp, floor, _AD | _DNU, work)
        | _bits(xp, xp.isnan(data), _DNU, work)
    )

    if dilution is not None and ngroups >= 2:
        # A frame-averaged group that already holds more than a saturating last read would,
        # followed by a saturated group, saturated within the group: DO_NOT_USE (grown).
        if existing is None and ngroups <= 32:
            within = _within_group_monotone(xp, data, groupdq, thr, late, dilution, size, on_jax)
        else:
            within = _within_group_general(xp, data, groupdq, thr, grown, floor, dilution, size)
        flags = flags | _bits(xp, within, _DNU, work)
    gdq = groupdq | xp.astype(flags, u8, copy=False)

    if group2 is not None and ngroups >= 3:
        mean_first, last_third, reads_second = group2
        g0, g1 = data[:, 0, :, :], data[:, 1, :, :]
        b = xp.zeros_like(thr) if bias is None else bias
        # 1. the rate from group 1 (above the superbias) does not saturate by group 3
        #    (stcal evaluates this in float64 from the float32 difference)
        wide = _wide_float(xp)
        wide = f32 if wide is None else wide
        rate = _divide(xp, xp.astype(g0 - b, wide), mean_first)
        no_early = rate * last_third + xp.astype(b, wide) < xp.astype(thr, wide)
        # 2. the group 1 -> 2 jump exceeds the remaining counts over the reads of group 2
        jump = (g1 - g0) > _divide(xp, thr - g0, float(reads_second))
        # 3. group 3 is saturated (and group 2 is not already)
        hit = no_early & jump & grown_at(2) & ~grown_at(1)
        gdq = xpx.at(gdq, (slice(None), 1, ...)).set(gdq[:, 1, :, :] | _bits(xp, hit, _DNU, u8))

    zf = None
    if zeroframe is not None:
        zero_sat = max_filter2d(zeroframe >= thr, size) | (zeroframe <= 0)
        zf = xp.where(zero_sat, xp.asarray(0.0, dtype=zeroframe.dtype), zeroframe)
    return gdq, pdq, zf


def _within_group_general(xp, data, groupdq, thr, grown, floor, dilution, size: int):
    """The "saturated within the group" mask, ``(nints, ngroups, ny, nx)``, any input flags."""
    nints, ngroups, ny, nx = data.shape
    bounds = {f: _at_least(xp, thr, f) for f in set(dilution)}
    if len(bounds) == 1:
        bound = next(iter(bounds.values()))[None, None, :, :]
    else:
        bound = xp.stack([bounds[f] for f in dilution], axis=0)[None, :, :, :]
    within = (
        (data[:, :-1, :, :] >= bound)
        & grown[:, 1:, :, :]
        & ~grown[:, :-1, :, :]
        & ((groupdq[:, :-1, :, :] & xp.asarray(_DNU, dtype=groupdq.dtype)) == 0)
        & ~floor[:, :-1, :, :]
    )
    last = xp.zeros((nints, 1, ny, nx), dtype=xp.bool)
    return xp.concat([max_filter2d(within, size), last], axis=1)


def _within_group_monotone(xp, data, groupdq, thr, late, dilution, size: int, on_jax: bool):
    """The "saturated within the group" mask when saturation is monotone (no input flags).

    Group g is then followed by the first saturated group only where
    ``late == ngroups - 1 - g``: one candidate group per pixel, so the test is 2-D.  The
    hits are packed as bits ``1 << g``, grown with a bitwise-OR box filter and unpacked.
    """
    nints, ngroups, ny, nx = data.shape
    packed_type = xp.int32 if on_jax or ngroups > 17 else (xp.uint8 if ngroups <= 9 else xp.uint16)
    candidate = (late >= 1) & (late <= ngroups - 1)
    group = xp.astype(xp.where(candidate, ngroups - 1 - late, 0), xp.int32)
    index = group[:, None, :, :]
    value = xp.take_along_axis(data, index, axis=1)[:, 0, :, :]
    prior = xp.take_along_axis(groupdq, index, axis=1)[:, 0, :, :]
    wide = _wide_float(xp)
    factors = xp.asarray(dilution, dtype=thr.dtype if wide is None else wide)
    factor = xp.reshape(xp.take(factors, xp.reshape(group, (-1,)), axis=0), group.shape)
    hit = (
        candidate
        & (value >= _at_least(xp, thr, factor))
        & ((prior & xp.asarray(_DNU, dtype=groupdq.dtype)) == 0)
        & (value > 0)
    )
    # bit g for the candidate groups 0 .. ngroups - 2 (the last group is never one)
    powers = xp.asarray([1 << g for g in range(ngroups - 1)] + [0], dtype=packed_type)
    bit = xp.reshape(xp.take(powers, xp.reshape(group, (-1,)), axis=0), group.shape)
    packed = _or_filter2d(xp, xp.where(hit, bit, xp.asarray(0, dtype=packed_type)), size)
    return (packed[:, None, :, :] & xp.reshape(powers, (1, ngroups, 1, 1))) != 0


def _or_filter2d(xp, x, size: int):
    """Bitwise OR over a ``(size, size)`` box of the last two axes (edges ignored)."""
    half = size // 2
    for axis in (x.ndim - 2, x.ndim - 1):
        n = x.shape[axis]
        out = x
        for shift in range(1, min(half, n - 1) + 1):
            pad_shape = list(x.shape)
            pad_shape[axis] = shift
            pad = xp.zeros(pad_shape, dtype=x.dtype)
            lead = [slice(None)] * x.ndim
            lead[axis] = slice(shift, n)
            trail = [slice(None)] * x.ndim
            trail[axis] = slice(0, n - shift)
            out = (
                out
                | xp.concat([x[tuple(lead)], pad], axis=axis)
                | xp.concat([pad, x[tuple(trail)]], axis=axis)
            )
        x = out
    return x
