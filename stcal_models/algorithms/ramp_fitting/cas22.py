"""Casertano (2022) optimal-weight ramp fitting of uneven (Roman) resultants.

:class:`Cas22RampFit` is stcal's ``ramp_fitting.ols_cas22.fit_ramps`` as a step on typed
models: it takes a :class:`~stcal_models.models.RampModel` whose ``meta.read_pattern``
lists the reads averaged into each resultant, the gain and read-noise references, and
returns a :class:`~stcal_models.models.RampFitResult`.  The numeric work is the array-API
kernel :func:`~stcal_models.algorithms.ramp_fitting.cas22_kernel.cas22_fit`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ...backends import array_namespace, is_jax_array, jit
from ...dqflags import DQ
from ...models import FitOptModel, RampFitResult, RampModel
from ..base import Step, check_number
from .cas22_kernel import cas22_fit, read_pattern_times
from .chunks import check_chunk_options, map_row_chunks, on_accelerator, row_chunks
from .common import build_result, prepare_inputs

__all__ = ["Cas22RampFit", "cas22_fit_ramp"]

_DNU = int(DQ.DO_NOT_USE)
_SAT = int(DQ.SATURATED)
_JUMP = int(DQ.JUMP_DET)
_NO_GAIN = int(DQ.NO_GAIN_VALUE)


@dataclasses.dataclass(frozen=True, repr=False)
class Cas22RampFit(Step):
    """Fit uneven resultants with the Casertano et al. (2022) optimal weights.

    ``Cas22RampFit(...)(ramp, gain_ref, readnoise_ref, dark_current=None)`` returns a
    :class:`~stcal_models.models.RampFitResult`: ``rateints`` per integration and ``rate``
    for the exposure, with the slope (DN/s), ``var_poisson``, ``var_rnoise``, ``err`` and
    ``dq``.  Works for any read pattern (Roman MA tables, or the evenly sampled JWST one).

    Parameters
    ----------
    use_jump : bool
        Detect jumps inside the fit (Sharma & Casertano): segments whose largest single-
        or double-difference statistic reaches the threshold are split around the two
        resultants of that difference, which are flagged JUMP_DET.  Default ``False``
        (stcal's ``fit_ramps`` default; romancal turns it on).
    threshold_intercept, threshold_constant : float
        The jump threshold ``intercept - constant * log10(max(slope, 1))``, slope in e-/s
        (stcal's ``intercept=5.5`` and ``constant=1/3``).
    include_diagnostic : bool
        Also return ``fitopt``: per segment (``(nints, nseg, ny, nx)``, segments in
        resultant order, NaN-padded) the ``slope``, ``var_poisson``, ``var_rnoise``,
        ``sigslope`` and ``weights`` (share of the pixel's average).  The Casertano fit
        has no intercept, so ``yint``, ``sigyint`` and ``pedestal`` are NaN and ``crmag``
        is empty.
    max_memory : float or None
        Budget in GiB for the kernel's temporaries; rows are processed in chunks that fit
        and the result is identical to one chunk.  ``None`` uses chunks of about
        :data:`DEFAULT_CHUNK_BYTES` of temporaries on CPU and the input's size on an
        accelerator.
    engine : str
        ``"serial"`` (row chunks one after another) or ``"dask"`` (chunks as tasks of
        dask's threaded scheduler; needs the optional ``dask`` dependency).
    progress : bool or None
        Progress bar over chunks: ``None`` shows one only when the fit takes more than a
        couple of seconds, ``True`` always, ``False`` never.

    Notes
    -----
    Units and conventions (stcal's function takes electrons; these were checked against
    stcal 1.17.0 as a black box):

    * resultants in electrons are ``data * gain``; the read noise of one read is the
      reference's CDS noise ``/ sqrt(2)``, in electrons; read ``k`` (1-based, as in
      ``meta.read_pattern``) happens at ``k * meta.frame_time`` (only differences of
      times enter the results, so the origin does not matter);
    * a resultant is excluded when its GROUPDQ is non-zero (any flag) or its value is not
      finite; pixels whose PIXELDQ has DO_NOT_USE or SATURATED, or whose gain is not a
      positive number (NO_GAIN_VALUE), or whose read noise is negative or not finite, are
      not fitted;
    * ``dark_current`` (DN/s like every ramp fit here, converted with the gain) is added
      back to the ramp before the fit (its shot noise is
      part of the Poisson variance) and subtracted from the slope afterwards, as romancal
      does.

    Outputs follow this project's OLS fit: a pixel without a segment of two or more usable
    resultants gets a NaN slope, zero variances and DO_NOT_USE; ``rateints`` DQ is PIXELDQ
    OR the SATURATED / JUMP_DET flags of its groups (jumps found here included);
    integrations are combined into ``rate`` by inverse total variance (slope) and inverse
    sums of the variances.

    Deliberate differences from stcal's ``fit_ramps`` (which returns 0 for unfittable
    pixels): NaN + DO_NOT_USE there instead; a zero read noise gives the noiseless limit
    of the inverse-read-variance average instead of 0; a non-finite resultant is excluded
    alone instead of spoiling its whole segment.
    """

    use_jump: bool = False
    threshold_intercept: float = 5.5
    threshold_constant: float = 1.0 / 3.0
    include_diagnostic: bool = False
    max_memory: float | None = None
    engine: str = "serial"
    progress: bool | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("use_jump", "include_diagnostic"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"{owner}.{name}: expected bool, got {type(getattr(self, name)).__name__}"
                )
        check_number(owner, "threshold_intercept", self.threshold_intercept)
        check_number(owner, "threshold_constant", self.threshold_constant)
        check_chunk_options(owner, self.max_memory, self.engine, self.progress)

    # ------------------------------------------------------------------ call
    def __call__(self, ramp: RampModel, gain_ref, readnoise_ref, dark_current=None) -> RampFitResult:
        """Fit ``ramp``; see the class docstring.

        Raises
        ------
        TypeError, ValueError
            For inputs of the wrong type or references that do not cover the frame.
        """
        fitted = self._fit(ramp, gain_ref, readnoise_ref, dark_current, self.use_jump)
        return self._result(fitted)

    def flag_jumps(self, ramp: RampModel, gain_ref, readnoise_ref, dark_current=None) -> RampModel:
        """``ramp`` with JUMP_DET set in GROUPDQ where the fit's jump detection finds jumps.

        Runs the detection whatever ``use_jump`` says (the thresholds are this step's).
        """
        fitted = self._fit(ramp, gain_ref, readnoise_ref, dark_current, True)
        xp = fitted["xp"]
        jump = xp.permute_dims(fitted["out"]["jump"], (1, 0, 2, 3))
        flag = xp.where(jump, xp.asarray(_JUMP, dtype=xp.uint8), xp.asarray(0, dtype=xp.uint8))
        return ramp.replace(groupdq=ramp.groupdq | flag)

    # ------------------------------------------------------------------ helpers
    def _fit(self, ramp, gain_ref, readnoise_ref, dark_current, use_jump: bool) -> dict[str, Any]:
        owner = type(self).__name__
        inputs = prepare_inputs(ramp, gain_ref, readnoise_ref, dark_current, owner=owner)
        meta = inputs.meta
        tbar, tau, nreads = read_pattern_times(meta.resultant_reads, meta.frame_time)
        static = dict(
            tbar=tbar,
            tau=tau,
            nreads=nreads,
            use_jump=use_jump,
            intercept=float(self.threshold_intercept),
            constant=float(self.threshold_constant),
            diagnostic=self.include_diagnostic,
        )
        images = (inputs.pixeldq, inputs.gain, inputs.readnoise, inputs.dark_current)

        def fit_rows(r0: int, r1: int) -> dict[str, Any]:
            rows = slice(r0, r1)
            return cas22_fit_ramp(inputs.data[:, :, rows, :], inputs.groupdq[:, :, rows, :],
                                  *(a[rows, :] for a in images), **static)

        nints, ngroups, ny, nx = inputs.shape
        if self.max_memory is not None:
            budget = self.max_memory * 2**30
        elif on_accelerator(inputs.data):
            budget = max(math.prod(inputs.shape) * 5, DEFAULT_CHUNK_BYTES)
        else:
            budget = DEFAULT_CHUNK_BYTES
        chunks = row_chunks(ny, _row_bytes(nints, ngroups, nx), int(budget))
        out = map_row_chunks(fit_rows, inputs.xp, ny, chunks,
                             same_size=is_jax_array(inputs.data), engine=self.engine,
                             progress=self.progress, owner=owner)
        return {"xp": inputs.xp, "meta": meta, "out": out}

    def _result(self, fitted: dict[str, Any]) -> RampFitResult:
        xp = fitted["xp"]
        out = fitted["out"]
        fitopt = None
        if self.include_diagnostic:
            nints, _, ny, nx = (int(s) for s in out["seg_slope"].shape)
            full = xp.full(out["seg_slope"].shape, xp.nan, dtype=xp.float32)
            fitopt = FitOptModel(
                slope=out["seg_slope"],
                sigslope=xp.sqrt(out["seg_var_poisson"] + out["seg_var_rnoise"]),
                var_poisson=out["seg_var_poisson"],
                var_rnoise=out["seg_var_rnoise"],
                weights=out["seg_weights"],
                yint=full,
                sigyint=full,
                pedestal=xp.full((nints, ny, nx), xp.nan, dtype=xp.float32),
                crmag=xp.zeros((nints, 0, ny, nx), dtype=xp.float32),
            )
        keys = ("data", "dq", "err", "var_poisson", "var_rnoise")
        return build_result(
            {k: out[k] for k in keys},
            {k: out["int_" + k] for k in keys},
            meta=fitted["meta"],
            fitopt=fitopt,
        )


#: Default temporaries per row chunk on CPU.  On a 2-core XLA CPU a 1x6x2048x2048 fit ran
#: as fast in 16 MiB chunks as in one piece with 40 % of the memory (NumPy: 10 % faster);
#: on an accelerator the default chunk holds the whole input (or 16 MiB if larger).
DEFAULT_CHUNK_BYTES = 16 * 2**20


def _row_bytes(nints: int, ngroups: int, nx: int) -> int:
    """Estimated bytes of kernel temporaries per image row."""
    return nx * nints * (24 * ngroups + 64)


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
def cas22_fit_ramp(
    data,
    groupdq,
    pixeldq,
    gain,
    readnoise,
    dark_current,
    *,
    tbar: tuple[float, ...],
    tau: tuple[float, ...],
    nreads: tuple[int, ...],
    use_jump: bool = False,
    intercept: float = 5.5,
    constant: float = 1.0 / 3.0,
    diagnostic: bool = False,
) -> dict[str, Any]:
    """The arrays of :class:`Cas22RampFit`: DN in, DN/s out (one ``jax.jit`` on JAX).

    Parameters
    ----------
    data : float32 (nints, ngroups, ny, nx)
        Resultants, DN.
    groupdq : uint8, like ``data``; pixeldq : uint32 (ny, nx)
    gain, readnoise, dark_current : float32 (ny, nx)
        e-/DN, CDS read noise in DN, DN/s.
    tbar, tau, nreads, use_jump, intercept, constant, diagnostic
        As for :func:`~stcal_models.algorithms.ramp_fitting.cas22_kernel.cas22_fit`.

    Returns
    -------
    dict
        ``data``, ``dq``, ``err``, ``var_poisson``, ``var_rnoise`` (exposure, (ny, nx)),
        the same prefixed ``int_`` per integration, ``jump`` (bool (ngroups, nints, ny, nx))
        and with ``diagnostic`` the per-segment ``seg_slope``, ``seg_var_poisson``,
        ``seg_var_rnoise``, ``seg_weights`` ((nints, nseg, ny, nx)).
    """
    xp = array_namespace(data, gain)
    u32 = xp.uint32
    zero = xp.zeros((), dtype=xp.float32)
    none = xp.asarray(0, dtype=u32)

    bad_gain = ~(gain > 0) | ~xp.isfinite(gain)
    gain = xp.where(bad_gain, 1.0, gain)
    bad_rn = ~(readnoise >= 0) | ~xp.isfinite(readnoise)
    read_noise = xp.where(bad_rn, 0.0, readnoise) * gain / math.sqrt(2.0)
    times = xp.asarray(tbar, dtype=xp.float32)[:, None, None, None]
    dark_e = dark_current * gain  # DN/s, as OLS/LIKELY and stcal's ramp_fit, to e-/s
    resultants = xp.permute_dims(data, (1, 0, 2, 3)) * gain + dark_e * times
    flags_in = xp.permute_dims(groupdq, (1, 0, 2, 3))
    out = cas22_fit(
        resultants,
        flags_in != 0,
        read_noise,
        tbar=tbar,
        tau=tau,
        nreads=nreads,
        use_jump=use_jump,
        intercept=intercept,
        constant=constant,
        diagnostic=diagnostic,
    )
    skip = ((pixeldq & xp.asarray(_DNU | _SAT, dtype=pixeldq.dtype)) != 0) | bad_gain | bad_rn

    # ---------------------------------------------------------- per integration
    valid = out["valid"] & ~skip
    slope = xp.where(valid, (out["slope"] - dark_e) / gain, xp.nan)
    vp = xp.where(valid, out["poisson_var"] / (gain * gain), zero)
    vr = xp.where(valid, out["read_var"] / (gain * gain), zero)
    group_flags = xp.zeros(slope.shape, dtype=u32)
    for g in range(int(flags_in.shape[0])):
        group_flags = group_flags | (xp.astype(flags_in[g, ...], u32) & (_SAT | _JUMP))
    # (without detection the jump array is a constant: XLA would fold the reduction slowly)
    found = xp.any(out["jump"], axis=0) if use_jump else xp.zeros(slope.shape, dtype=xp.bool)
    int_dq = (
        xp.astype(pixeldq, u32)
        | group_flags
        | xp.where(found, xp.asarray(_JUMP, dtype=u32), none)
        | xp.where(valid, none, xp.asarray(_DNU, dtype=u32))
        | xp.where(bad_gain, xp.asarray(_NO_GAIN, dtype=u32), none)
    )
    result = {
        "int_data": slope,
        "int_dq": int_dq,
        "int_err": xp.sqrt(vp + vr),
        "int_var_poisson": vp,
        "int_var_rnoise": vr,
        "jump": out["jump"],
    }
    # ---------------------------------------------------------- exposure
    if int(slope.shape[0]) == 1:
        result.update({key[4:]: value[0, ...] for key, value in result.items() if key[:4] == "int_"})
    else:
        result.update(_combine_integrations(xp, valid, slope, vp, vr, int_dq, pixeldq))
    if diagnostic:
        result.update(_segments(xp, out, skip, gain, dark_e))
    return result


def _segments(xp, out, skip, gain, dark_e) -> dict[str, Any]:
    """Per-segment arrays ``(nints, nseg, ny, nx)`` from the kernel's diagnostic ones."""
    ends = out["segment_end"] & ~skip
    n = int(ends.shape[0])
    nseg = max((n + 1) // 3, 1)  # segments of >= 2 resultants with a gap between them
    count = xp.cumulative_sum(xp.astype(ends, xp.int32), axis=0)
    per_segment = {
        "seg_slope": (out["segment_slope"] - dark_e) / gain,
        "seg_var_poisson": out["segment_poisson_var"] / (gain * gain),
        "seg_var_rnoise": out["segment_read_var"] / (gain * gain),
        "seg_weights": out["segment_weight"],
    }
    nan = xp.full(ends.shape[1:], xp.nan, dtype=xp.float32)
    result = {}
    for key, values in per_segment.items():
        slots = []
        for s in range(nseg):
            value = nan
            for i in range(n):
                value = xp.where(ends[i, ...] & (count[i, ...] == s + 1), values[i, ...], value)
            slots.append(value)
        result[key] = xp.stack(slots, axis=1)
    return result


def _inverse_sum(xp, var, use):
    """``1 / sum(1 / var)`` over the integrations where ``use`` and ``var > 0`` (0 if none)."""
    ok = use & (var > 0)
    inv = xp.where(ok, 1.0 / xp.where(ok, var, 1.0), 0.0)
    total = xp.sum(inv, axis=0)
    return xp.where(total > 0, 1.0 / xp.where(total > 0, total, 1.0), 0.0)


def _combine_integrations(xp, valid, slope, vp, vr, int_dq, pixeldq) -> dict[str, Any]:
    """Exposure rate from integrations: slope by inverse total variance, variances by 1/sum(1/v)."""
    total = vp + vr
    ok = valid & (total > 0)
    weight = xp.where(ok, 1.0 / xp.where(ok, total, 1.0), 0.0)
    wsum = xp.sum(weight, axis=0)
    filled = xp.where(valid, slope, 0.0)
    weighted = xp.sum(weight * filled, axis=0) / xp.where(wsum > 0, wsum, 1.0)
    nvalid = xp.sum(xp.astype(valid, xp.float32), axis=0)
    plain = xp.sum(filled, axis=0) / xp.where(nvalid > 0, nvalid, 1.0)
    any_valid = nvalid > 0
    rate = xp.where(wsum > 0, weighted, xp.where(any_valid, plain, xp.nan))
    vp_o = _inverse_sum(xp, vp, valid)
    vr_o = _inverse_sum(xp, vr, valid)
    u32 = xp.uint32
    or_flags = xp.zeros(rate.shape, dtype=u32)
    for k in range(int(int_dq.shape[0])):
        or_flags = or_flags | (int_dq[k, ...] & xp.asarray(_SAT | _JUMP | _NO_GAIN, dtype=u32))
    dq = (
        xp.astype(pixeldq, u32)
        | or_flags
        | xp.where(any_valid, xp.asarray(0, dtype=u32), xp.asarray(_DNU, dtype=u32))
    )
    return {
        "data": rate,
        "dq": dq,
        "err": xp.sqrt(vp_o + vr_o),
        "var_poisson": vp_o,
        "var_rnoise": vr_o,
    }

