"""Linearity correction: classic per-group polynomial and read-level (resultant-averaging) forms.

The step follows the stcal 1.17 documentation (linearity step, changelog #55, #65, #81,
#506) and the JWST linearity description; stcal is used only as a test oracle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends import array_namespace, as_namespace, jit
from ..dqflags import DQ
from ..models import LinearityRef, RampModel, SaturationRef
from .base import Step, check_number

__all__ = [
    "Linearity",
    "apply_polynomial",
    "flag_nan_groups",
    "linearity_kernel",
    "prepare_coefficients",
]

_SATURATED = int(DQ.SATURATED)
_NO_LIN_CORR = int(DQ.NO_LIN_CORR)


# ----------------------------------------------------------------------------- kernels
def apply_polynomial(coeffs, x):
    """Evaluate ``sum_k coeffs[k] * x**k`` by Horner's rule.

    Parameters
    ----------
    coeffs : array, (ncoeffs, ny, nx)
        Coefficients, lowest power first; broadcast against the last two axes of ``x``.
    x : array, (..., ny, nx)

    Returns
    -------
    array, same shape as ``x``
    """
    ncoeffs = int(coeffs.shape[0])
    if isinstance(x, np.ndarray) and isinstance(coeffs, np.ndarray):
        # eager NumPy: one temporary updated in place instead of one per operation
        out = coeffs[ncoeffs - 1] * x
        out += coeffs[ncoeffs - 2]
        for k in range(ncoeffs - 3, -1, -1):
            out *= x
            out += coeffs[k]
        return out
    out = coeffs[ncoeffs - 1, ...] * x + coeffs[ncoeffs - 2, ...]
    for k in range(ncoeffs - 3, -1, -1):
        out = out * x + coeffs[k, ...]
    return out


def prepare_coefficients(coeffs, ref_dq=None):
    """Replace unusable coefficients by the identity polynomial.

    A pixel is unusable when any of its coefficients is NaN, its linear term is zero, or
    (``ref_dq`` given) the reference DQ carries ``NO_LIN_CORR``.

    Returns
    -------
    coeffs : array, (ncoeffs, ny, nx)
        ``[0, 1, 0, ...]`` at unusable pixels, the input elsewhere.
    flag : array of bool, (ny, nx)
        Pixels made benign because of NaN or zero-linear-term coefficients (these get
        ``NO_LIN_CORR`` in PIXELDQ; reference-flagged pixels carry it already).
    """
    xp = array_namespace(coeffs)
    bad = xp.any(xp.isnan(coeffs), axis=0) | (coeffs[1, ...] == 0)
    benign_mask = bad
    if ref_dq is not None:
        benign_mask = bad | ((ref_dq & _NO_LIN_CORR) != 0)
    ncoeffs = int(coeffs.shape[0])
    identity = xp.reshape(
        xp.asarray([0.0, 1.0] + [0.0] * (ncoeffs - 2), dtype=coeffs.dtype), (ncoeffs, 1, 1)
    )
    return xp.where(xp.expand_dims(benign_mask, axis=0), identity, coeffs), bad


def _classic(xp, data, sat, coeffs):
    corrected = apply_polynomial(coeffs, data)
    if isinstance(corrected, np.ndarray):
        np.copyto(corrected, data, where=sat)  # our own temporary: no new array
        return corrected
    return xp.where(sat, data, corrected)


def _read_level(xp, data, sat, classic, lin, ilin, pattern, cap, additional_correction):
    """Read-level correction of one exposure; see :class:`Linearity` for the model."""
    ngroups = len(pattern)
    mean_read = [sum(r) / len(r) for r in pattern]
    # last resultant used for the rate: max(n_unsaturated - 2, 1)
    n_unsat = xp.sum(xp.astype(~sat, xp.int32), axis=1)
    last = xp.maximum(n_unsat - 2, 1)
    first = classic[:, 0, ...]
    last_value = xp.zeros_like(first)
    span = xp.zeros(first.shape, dtype=data.dtype)
    for k in range(1, ngroups):
        here = last == k
        last_value = xp.where(here, classic[:, k, ...], last_value)
        span = xp.where(here, xp.asarray(mean_read[k] - mean_read[0], dtype=data.dtype), span)
    rate = (last_value - first) / span
    # a non-finite rate (NaN science values) falls back to the classic correction
    usable = xp.isfinite(rate)
    rate = xp.where(usable, rate, xp.zeros_like(rate))
    out = []
    for k, reads in enumerate(pattern):
        simulated = [
            apply_polynomial(ilin, first + rate * float(read - mean_read[0])) for read in reads
        ]
        total = simulated[0]
        for s in simulated[1:]:
            total = total + s
        offset = data[:, k, ...] - total / float(len(reads))
        if additional_correction is not None:
            # the callable sees all reads of the resultant at once: (nints, nreads, ny, nx)
            nonlinear = xp.stack([s + offset for s in simulated], axis=1)
            nonlinear = nonlinear + additional_correction(nonlinear)
            reads_nl = [nonlinear[:, i, ...] for i in range(len(reads))]
        else:
            reads_nl = [s + offset for s in simulated]
        acc = None
        for value in reads_nl:
            if cap is not None:
                value = xp.where(value > cap, cap, value)
            value = apply_polynomial(lin, value)
            acc = value if acc is None else acc + value
        corrected = acc / float(len(reads))
        corrected = xp.where(usable, corrected, classic[:, k, ...])
        out.append(xp.where(sat[:, k, ...], data[:, k, ...], corrected))
    return xp.stack(out, axis=1)


@jit(static_argnames=("pattern", "additional_correction", "flag_nan"))
def linearity_kernel(
    data,
    groupdq,
    pixeldq,
    coeffs,
    ref_dq,
    zeroframe=None,
    inverse_coeffs=None,
    cap=None,
    *,
    pattern=None,
    additional_correction=None,
    flag_nan: bool = True,
):
    """Linearity-correct ramps; the array-API kernel behind :class:`Linearity`.

    Parameters
    ----------
    data : float32 (nints, ngroups, ny, nx)
    groupdq : uint8, same shape
    pixeldq : uint32 (ny, nx)
    coeffs : float32 (ncoeffs, ny, nx)
        Linearity coefficients, lowest power first.
    ref_dq : uint32 (ny, nx)
        Linearity reference DQ.
    zeroframe : float32 (nints, ny, nx) or None
        Classic-corrected where non-zero (zero marks a saturated zero frame).
    inverse_coeffs : float32 (ncoeffs_inv, ny, nx) or None
        Inverse-linearity coefficients; given with ``pattern`` they select the
        read-level correction.
    cap : float32 (ny, nx) or None
        Upper limit of the simulated non-linear reads (``+inf`` where there is none).
    pattern : tuple of tuple of int or None
        1-based reads averaged into each resultant (static).
    additional_correction : callable or None
        Added to the simulated non-linear reads (static; read-level only).
    flag_nan : bool
        Set ``DO_NOT_USE`` in ``groupdq`` where ``data`` is NaN.

    Returns
    -------
    data, groupdq, pixeldq, zeroframe
        New arrays (``zeroframe`` is ``None`` when none was given).
    """
    xp = array_namespace(data)
    lin, lin_bad = prepare_coefficients(coeffs, ref_dq)
    new_pdq = (
        pixeldq
        | ref_dq
        | xp.where(
            lin_bad, xp.asarray(_NO_LIN_CORR, dtype=xp.uint32), xp.asarray(0, dtype=xp.uint32)
        )
    )
    sat = (groupdq & _SATURATED) != 0
    classic = _classic(xp, data, sat, lin)
    if inverse_coeffs is not None and pattern is not None and len(pattern) > 1:
        ilin, ilin_bad = prepare_coefficients(inverse_coeffs, ref_dq)
        new_pdq = new_pdq | xp.where(
            ilin_bad, xp.asarray(_NO_LIN_CORR, dtype=xp.uint32), xp.asarray(0, dtype=xp.uint32)
        )
        out = _read_level(xp, data, sat, classic, lin, ilin, pattern, cap, additional_correction)
    else:
        out = classic
    new_gdq = flag_nan_groups(data, groupdq) if flag_nan else groupdq
    new_zf = None
    if zeroframe is not None:
        new_zf = xp.where(zeroframe != 0, apply_polynomial(lin, zeroframe), zeroframe)
    return out, new_gdq, new_pdq, new_zf


def flag_nan_groups(data, groupdq):
    """``groupdq`` with ``DO_NOT_USE`` set where ``data`` is NaN.

    NumPy inputs without any NaN return ``groupdq`` itself (one cheap reduction instead of
    three full-size temporaries); other namespaces always take the traced formulation.
    """
    if isinstance(data, np.ndarray) and not np.isnan(np.sum(data, dtype=np.float64)):
        return groupdq
    xp = array_namespace(data)
    # DO_NOT_USE is bit 0 (value 1), so the NaN mask cast to uint8 is the flag itself
    return groupdq | xp.astype(xp.isnan(data), xp.uint8)


# ----------------------------------------------------------------------------- step
@dataclasses.dataclass(frozen=True)
class Linearity(Step):
    r"""Correct ramps for detector non-linearity with per-pixel polynomials.

    **Classic correction** (JWST; always used without ``inverse``). Each group value
    :math:`F` becomes

    .. math:: F_c = \sum_{k=0}^{n} c_k F^k = c_0 + c_1 F + c_2 F^2 + \dots

    with the coefficients :math:`c_k` of :class:`~stcal_models.models.LinearityRef`
    (``coeffs[k]``, lowest power first).  Groups flagged ``SATURATED`` keep their value.
    Pixels whose coefficients contain a NaN, whose linear term :math:`c_1` is zero, or
    that carry ``NO_LIN_CORR`` in the reference DQ are left uncorrected (identity
    polynomial); the first two cases get ``NO_LIN_CORR`` added to PIXELDQ, and the whole
    reference DQ is OR-ed into PIXELDQ.  A ZEROFRAME is corrected the same way where it
    is non-zero (zero marks a saturated zero frame).

    **Read-level correction** (stcal 1.17, #506; used when ``inverse`` is given and the
    ramp has more than one resultant).  A resultant :math:`R_k` is the mean of the raw
    reads :math:`r_i, i \in \mathcal{R}_k` (the read pattern), and the non-linearity of
    a mean is not the mean of the non-linearity, so the classic correction of
    :math:`R_k` is biased when several reads are averaged.  With :math:`P` the linearity
    polynomial, :math:`Q` the inverse-linearity polynomial (linear counts to raw DN) and
    :math:`\bar t_k` the mean read number of resultant :math:`k`:

    1. Estimate a linear ramp from classic-corrected resultants: the first, and
       :math:`j = \max(N_\mathrm{unsat} - 2, 1)` where :math:`N_\mathrm{unsat}` counts
       the groups not flagged ``SATURATED``:
       :math:`a = P(R_0)`, :math:`b = (P(R_j) - P(R_0)) / (\bar t_j - \bar t_0)`
       (a saturated :math:`R_j` enters uncorrected).
    2. Simulate each read as it would have been recorded:
       :math:`\tilde r_i = Q(a + b\,(i - \bar t_0))`.
    3. Shift the simulated reads of each resultant so that they average to the
       observed value: :math:`r'_i = \tilde r_i + R_k - \langle \tilde r \rangle_k`;
       then add ``additional_correction(r')`` if given and cap at
       ``saturation_cap * S`` (:math:`S` the saturation threshold) if ``saturation``
       is given.
    4. Linearize read by read and average:
       :math:`R_{c,k} = \langle P(r'_i) \rangle_{i \in \mathcal{R}_k}`.

    Saturated resultants keep their value.  Inverse coefficients with a NaN or a zero
    linear term become the identity and the pixel gets ``NO_LIN_CORR`` (it is still
    corrected with :math:`P`); pixels with ``NO_LIN_CORR`` in the linearity reference DQ
    use the identity for both :math:`P` and :math:`Q` (so only the cap and the
    additional correction can change them).  When all resultants are single reads and
    there is no cap or additional correction this reduces exactly to the classic
    correction.

    Parameters
    ----------
    saturation_cap : float, default 1.2
        Simulated non-linear reads are capped at ``saturation_cap`` times the saturation
        threshold (stcal uses 1.2).  Only used when ``saturation`` is passed.
    additional_correction : callable or None, default None
        Mission-specific correction (e.g. integral non-linearity) added to the simulated
        non-linear reads in step 3: called with an array of reads whose last two axes
        are ``(ny, nx)`` and must return an array of the same shape, written with the
        array API of its input (it is traced under ``jax.jit``).
    flag_nan : bool, default True
        Groups whose science value is NaN get ``DO_NOT_USE`` in GROUPDQ; the value stays
        NaN.  ``False`` leaves GROUPDQ untouched, like stcal.

    Notes
    -----
    Differences from stcal 1.17.0: NaN science values are flagged (``flag_nan``) and a
    pixel whose read-level rate estimate is not finite falls back to the classic
    correction instead of turning its whole ramp into NaN; a single-resultant ramp uses
    the classic correction (stcal raises ``IndexError``); saturation thresholds that are
    NaN or flagged ``NO_SAT_CHECK`` do not cap; the inverse reference's own DQ is not
    used (stcal takes no inverse DQ).  Science PIXELDQ ``NO_LIN_CORR`` does not by itself
    disable the correction (only the reference DQ does), as in stcal.

    Examples
    --------
    >>> corrected = Linearity()(ramp, lin_ref)                         # doctest: +SKIP
    >>> corrected = Linearity()(ramp, lin_ref, inverse=ilin_ref,
    ...                         saturation=sat_ref)                    # doctest: +SKIP
    """

    saturation_cap: float = 1.2
    additional_correction: Callable[[Any], Any] | None = None
    flag_nan: bool = True

    def __post_init__(self) -> None:
        check_number(
            "Linearity", "saturation_cap", self.saturation_cap, minimum=0.0, exclusive_minimum=True
        )
        if self.additional_correction is not None and not callable(self.additional_correction):
            raise TypeError(
                "Linearity.additional_correction: expected a callable or None, got "
                f"{type(self.additional_correction).__name__}"
            )
        if not isinstance(self.flag_nan, bool):
            raise TypeError(
                f"Linearity.flag_nan: expected bool, got {type(self.flag_nan).__name__}"
            )

    def __call__(
        self,
        ramp: RampModel,
        linearity: LinearityRef,
        inverse: LinearityRef | None = None,
        saturation: SaturationRef | None = None,
        read_pattern=None,
    ) -> RampModel:
        """Return a linearity-corrected copy of ``ramp``.

        Parameters
        ----------
        ramp : RampModel
        linearity : LinearityRef
            Linearity coefficients (raw DN to linear DN).  Cut to the science subarray.
        inverse : LinearityRef or None
            Inverse-linearity coefficients (linear DN to raw DN); selects the
            read-level correction.
        saturation : SaturationRef or None
            Saturation thresholds for the read-level cap (needs ``inverse``).
        read_pattern : sequence of sequences of int or None
            1-based reads averaged into each resultant; ``None`` uses
            ``ramp.meta.resultant_reads``.  Its length must equal ``ngroups``.

        Returns
        -------
        RampModel
            New ``data``, ``groupdq`` (``flag_nan``), ``pixeldq`` and ``zeroframe``.

        Raises
        ------
        TypeError, ValueError
            For arguments of the wrong type, references that do not cover the science
            frame, coefficient/read-pattern mismatches.
        """
        if not isinstance(ramp, RampModel):
            raise TypeError(f"Linearity: ramp: expected RampModel, got {type(ramp).__name__}")
        _check_ref("linearity", linearity, LinearityRef)
        if inverse is not None:
            _check_ref("inverse", inverse, LinearityRef)
        if saturation is not None:
            _check_ref("saturation", saturation, SaturationRef)
            if inverse is None:
                raise ValueError(
                    "Linearity: saturation: only used by the read-level correction; "
                    "expected inverse coefficients as well, got inverse=None"
                )
        nints, ngroups, ny, nx = ramp.shape
        frame = (ny, nx)
        xp = ramp.xp
        lin_ref = linearity.for_science(ramp.meta, frame)
        coeffs = as_namespace(xp, lin_ref.coeffs, xp.float32)
        ref_dq = (
            as_namespace(xp, lin_ref.dq, xp.uint32)
            if lin_ref.dq is not None
            else xp.zeros(frame, dtype=xp.uint32)
        )
        inverse_coeffs = cap = pattern = None
        if inverse is not None:
            pattern = _check_pattern(read_pattern, ramp)
            inverse_coeffs = as_namespace(
                xp, inverse.for_science(ramp.meta, frame).coeffs, xp.float32
            )
            if saturation is not None:
                sat_ref = saturation.for_science(ramp.meta, frame)
                cap = _cap(xp, sat_ref, self.saturation_cap)
        elif read_pattern is not None:
            _check_pattern(read_pattern, ramp)
        data, gdq, pdq, zf = linearity_kernel(
            ramp.data,
            ramp.groupdq,
            ramp.pixeldq,
            coeffs,
            ref_dq,
            ramp.zeroframe,
            inverse_coeffs,
            cap,
            pattern=pattern,
            additional_correction=self.additional_correction,
            flag_nan=self.flag_nan,
        )
        changes = {"data": data, "groupdq": gdq, "pixeldq": pdq}
        if zf is not None:
            changes["zeroframe"] = zf
        return ramp.replace(**changes)


# ----------------------------------------------------------------------------- helpers
def _check_ref(name: str, ref: Any, cls: type) -> None:
    if not isinstance(ref, cls):
        raise TypeError(f"Linearity: {name}: expected {cls.__name__}, got {type(ref).__name__}")


def _check_pattern(read_pattern, ramp: RampModel) -> tuple[tuple[int, ...], ...]:
    """The read pattern as a tuple of tuples, validated against ``ramp``."""
    if read_pattern is None:
        return ramp.meta.resultant_reads
    try:
        pattern = tuple(tuple(int(r) for r in resultant) for resultant in read_pattern)
    except TypeError as exc:
        raise TypeError(
            "Linearity: read_pattern: expected a sequence of sequences of 1-based read "
            f"indices, got {read_pattern!r}"
        ) from exc
    if len(pattern) != ramp.ngroups:
        raise ValueError(
            f"Linearity: read_pattern: expected {ramp.ngroups} resultants (ngroups), "
            f"got {len(pattern)}"
        )
    try:
        ramp.meta.replace(read_pattern=pattern)
    except ValueError as exc:
        raise ValueError(f"Linearity: read_pattern: {exc}") from exc
    return pattern


def _cap(xp, sat_ref: SaturationRef, factor: float):
    sat = as_namespace(xp, sat_ref.data, xp.float32)
    cap = sat * xp.asarray(factor, dtype=xp.float32)
    skip = xp.isnan(cap)
    if sat_ref.dq is not None:
        skip = skip | ((as_namespace(xp, sat_ref.dq, xp.uint32) & int(DQ.NO_SAT_CHECK)) != 0)
    return xp.where(skip, xp.asarray(xp.inf, dtype=xp.float32), cap)
