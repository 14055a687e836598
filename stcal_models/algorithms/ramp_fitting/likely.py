"""Likelihood ramp fitting (stcal ``LIKELY``; Brandt 2024) with its own jump detection.

The fit works on resultant differences ``d_i = (r_{i+1} - r_i) / dt_i``, whose
covariance is tridiagonal (Brandt 2024, eqs. 27-28: photon noise from the read times of
each resultant, read noise from the number of reads averaged).  The count rate is the
generalised-least-squares estimate ``a = (1^T C^-1 d) / (1^T C^-1 1)``, computed in
O(ngroups) per pixel with a tridiagonal solve; chi-square is
``(d - a)^T C^-1 (d - a)``.  Jumps are found by omitting the difference (or, when the
resultant they share averages several reads, the pair of differences) whose omission
improves chi-square the most, while the improvement exceeds a threshold.

Public names: :class:`LikelyRampFit` (the step), :class:`LikelyFit` (its result with
chi-square and the updated GROUPDQ), :func:`likely_fit_arrays` (the array kernel,
jit-compiled on JAX and differentiable), :func:`likely_log_likelihood`,
:func:`likely_covariance` / :func:`likely_read_times` (the covariance shapes of an
exposure's read pattern) and ``LIKELY_MIN_NGROUPS``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ...backends import array_namespace, as_namespace, is_jax_array, jit, to_numpy
from ...dqflags import DQ
from ...models import ExposureMeta, RampFitResult, RampModel
from ..base import Step, check_number
from ..jump.large_events import SnowballParams
from .chunks import check_chunk_options, map_row_chunks, on_accelerator, row_chunks
from .common import build_result, prepare_inputs
from .likely_kernel import (
    LikelyCovariance,
    combine_integrations,
    detect_differences,
    fit_with_rate,
    integration_dq,
    likely_covariance,
    scan,
)

__all__ = [
    "LIKELY_MIN_NGROUPS",
    "LikelyFit",
    "LikelyRampFit",
    "likely_covariance",
    "likely_fit_arrays",
    "likely_log_likelihood",
    "likely_read_times",
]

#: Fewer groups than this fall back to the OLS fit (as stcal documents).
LIKELY_MIN_NGROUPS = 4

_JUMP = int(DQ.JUMP_DET)


# --------------------------------------------------------------------------- read times
def likely_read_times(meta: ExposureMeta, *, zeroframe: bool = False) -> list[np.ndarray]:
    """Read times (s) of each resultant: ``frame_time * read index`` of ``meta.resultant_reads``.

    With ``zeroframe=True`` the first resultant is split into its first read (the
    separately downlinked ZEROFRAME) and the mean of its remaining reads.

    Raises
    ------
    ValueError
        If ``zeroframe`` is requested but the first resultant has fewer than two reads.
    """
    reads = [np.asarray(r, dtype=np.float64) * meta.frame_time for r in meta.resultant_reads]
    if zeroframe:
        if reads[0].size < 2:
            raise ValueError(
                "likely_read_times: a zero frame needs a first group of at least 2 reads, "
                f"got {reads[0].size}"
            )
        reads = [reads[0][:1], reads[0][1:], *reads[1:]]
    return reads


def _uses_zeroframe(meta: ExposureMeta, zeroframe: Any, enabled: bool) -> bool:
    return enabled and zeroframe is not None and len(meta.resultant_reads[0]) >= 2


def _static_cov(cov: LikelyCovariance) -> tuple:
    """Hashable form of the covariance constants (a static jit argument)."""
    return (
        tuple(float(x) for x in cov.dt),
        tuple(float(x) for x in cov.alpha_p),
        tuple(float(x) for x in cov.beta_p),
        tuple(float(x) for x in cov.alpha_r),
        tuple(float(x) for x in cov.beta_r),
        tuple(bool(x) for x in cov.pair_allowed),
    )


def _cov_from_static(key: tuple) -> LikelyCovariance:
    dt, ap, bp, ar, br, pairs = (np.asarray(k) for k in key)
    empty = np.zeros(0)
    return LikelyCovariance(
        mean_t=empty, tau=empty, nreads=empty, dt=dt.astype(np.float64),
        alpha_p=ap.astype(np.float64), beta_p=bp.astype(np.float64),
        alpha_r=ar.astype(np.float64), beta_r=br.astype(np.float64),
        pair_allowed=pairs.astype(bool),
    )


# --------------------------------------------------------------------------- kernel
@jit(static_argnames=("cov_key", "nreads0", "threshold_one", "threshold_two",
                      "detect_jumps", "stcal_quirks", "phase"))
def _likely_kernel(data, groupdq, pixeldq, zeroframe, gain, readnoise, dark, use_in=None,
                   rate_in=None, *, cov_key, nreads0, threshold_one, threshold_two,
                   detect_jumps, stcal_quirks, phase="full"):
    """All integrations of a block of pixels; arrays are (nints, ngroups, P) / (P,).

    ``phase`` ``"full"`` detects jumps and fits; ``"detect"`` stops after the jump
    detection and returns the differences kept (``use``, (nints, n, P)), the count-rate
    estimates (``rate``, (nints, P)) and the jump-flagged ``groupdq``; ``"final"`` fits
    with ``use_in`` / ``rate_in`` from a ``"detect"`` pass (``groupdq`` then already
    holds every flag, snowballs included).
    """
    xp = array_namespace(data, groupdq, gain)
    cov = _cov_from_static(cov_key)
    sigma2 = readnoise * readnoise / 2.0
    with_zf = zeroframe is not None
    no_jump = xp.zeros(pixeldq.shape, dtype=xp.bool)

    dt = xp.asarray(np.asarray(cov.dt, dtype=np.float32).reshape(-1, 1))

    def one_integration(carry, x):
        x = list(x)
        r, g = x.pop(0), x.pop(0)
        flags = g
        if with_zf:
            zf = x.pop(0)
            rest = (r[0, ...] * float(nreads0) - zf) / float(nreads0 - 1)
            r = xp.concat([zf[None, ...], rest[None, ...], r[1:, ...]], axis=0)
            flags = xp.concat([g[:1, ...], g], axis=0)
        diffs = (r[1:, ...] - r[:-1, ...]) / dt
        if phase == "final":
            use, rate = x
            out = fit_with_rate(xp, diffs, use, rate, gain, sigma2, cov)
            dq, dnu = integration_dq(xp, g, pixeldq, no_jump)
            gdq_out = g
        else:
            bad = flags != 0
            use = ~(bad[1:, ...] | bad[:-1, ...])
            found = detect_differences(
                xp, diffs, use, gain, sigma2, dark, cov,
                threshold_one=threshold_one, threshold_two=threshold_two,
                detect_jumps=detect_jumps, stcal_quirks=stcal_quirks,
            )
            newly = found["jump_groups"]
            if with_zf:
                # Group 0 is split in two resultants; a jump at either belongs to group 0.
                newly = [newly[0] | newly[1], *newly[2:]]
            newly = xp.stack(newly, axis=0)
            gdq_out = xp.where(newly, g | xp.asarray(_JUMP, dtype=g.dtype), g)
            if phase == "detect":
                return carry, (xp.stack(found["use"], axis=0), found["rate"], gdq_out)
            out = fit_with_rate(xp, diffs, found["use"], found["rate"], gain, sigma2, cov)
            dq, dnu = integration_dq(xp, g, pixeldq, found["jump"])
        err = xp.sqrt(out["var_poisson"] + out["var_rnoise"])
        return carry, (out["slope"], out["var_poisson"], out["var_rnoise"], err,
                       out["chisq"], dq, dnu, gdq_out)

    xs = [data, groupdq]
    if with_zf:
        xs.append(zeroframe)
    if phase == "final":
        xs += [use_in, rate_in]
    if phase == "detect":
        _, (use, rate, gdq_out) = scan(xp, one_integration, 0, xs)
        return {"use": use, "rate": rate, "groupdq": gdq_out}
    _, (slope, vp, vr, err, chisq, dq, dnu, gdq_out) = scan(xp, one_integration, 0, xs)
    rate = combine_integrations(xp, slope, vp, vr, chisq, dq, dnu, pixeldq)
    rate["err"] = xp.sqrt(rate["var_poisson"] + rate["var_rnoise"])
    ints = {"data": slope, "var_poisson": vp, "var_rnoise": vr, "err": err, "dq": dq,
            "chisq": chisq}
    return {"rate": rate, "rateints": ints, "groupdq": gdq_out}


def likely_fit_arrays(
    data,
    groupdq,
    pixeldq,
    gain,
    readnoise,
    meta: ExposureMeta,
    *,
    dark_current=None,
    zeroframe=None,
    threshold_one_omit: float = 20.25,
    threshold_two_omit: float = 23.8,
    detect_jumps: bool = True,
    use_zeroframe: bool = True,
    stcal_quirks: bool = False,
    snowball: SnowballParams | None = None,
) -> dict[str, Any]:
    """The LIKELY fit of whole arrays (no chunking): the differentiable entry point.

    Parameters
    ----------
    data : float32 (nints, ngroups, ny, nx)
    groupdq : uint8, same shape
    pixeldq : uint32 (ny, nx)
    gain : float32 (ny, nx)
        e-/DN.
    readnoise : float32 (ny, nx)
        CDS read noise, DN.
    meta : ExposureMeta
        Read pattern and timing.
    dark_current : float32 (ny, nx), optional
        Added to the final count-rate estimate of each integration (DN/s, as stcal).
    zeroframe : float32 (nints, ny, nx), optional
        Used when ``use_zeroframe`` and the first group averages at least two reads.
    threshold_one_omit, threshold_two_omit, detect_jumps, use_zeroframe, stcal_quirks
        See :class:`LikelyRampFit`.
    snowball : SnowballParams, optional
        Flag snowballs after the jump detection (stcal #491; host side, not traced).

    Returns
    -------
    dict
        ``"rate"`` and ``"rateints"`` (dicts of ``data``, ``dq``, ``err``, ``var_poisson``,
        ``var_rnoise``, ``chisq``), ``"groupdq"`` with the detected jumps flagged and
        ``"snowballs"`` (their number, or None).  On JAX the call is jit-compiled;
        ``jax.grad`` through ``rate["data"]`` with respect to ``data`` or ``readnoise`` is
        defined (jump decisions are constants) when ``snowball`` is None.
    """
    nints, ngroups, ny, nx = (int(s) for s in data.shape)
    if ngroups < 2:
        raise ValueError(f"likely_fit_arrays: data: expected at least 2 groups, got {ngroups}")
    plan = _FitPlan.of(meta, zeroframe, use_zeroframe, threshold_one_omit, threshold_two_omit,
                       detect_jumps, stcal_quirks)
    if dark_current is None:
        xp = array_namespace(data, groupdq, gain)
        dark_current = xp.zeros((ny, nx), dtype=xp.float32)
    arrays = (data, groupdq, pixeldq, gain, readnoise, dark_current,
              zeroframe if plan.with_zf else None)
    if snowball is None or not detect_jumps:
        return {**plan.run("full", *arrays), "snowballs": None}
    found = plan.run("detect", *arrays)
    gdq, use, count = flag_snowballs_in_fit(groupdq, found["groupdq"], found["use"], snowball,
                                            with_zf=plan.with_zf,
                                            group_time=float(meta.group_time))
    arrays = (data, gdq, *arrays[2:])
    return {**plan.run("final", *arrays, use, found["rate"]), "snowballs": count}


@dataclasses.dataclass(frozen=True)
class _FitPlan:
    """The static settings of one fit: covariance and thresholds; runs the kernel on blocks."""

    cov_key: tuple
    nreads0: int
    with_zf: bool
    threshold_one: float
    threshold_two: float
    detect_jumps: bool
    stcal_quirks: bool

    @classmethod
    def of(cls, meta, zeroframe, use_zeroframe, threshold_one, threshold_two, detect_jumps,
           stcal_quirks) -> _FitPlan:
        with_zf = _uses_zeroframe(meta, zeroframe, use_zeroframe)
        cov = likely_covariance(likely_read_times(meta, zeroframe=with_zf))
        return cls(_static_cov(cov), len(meta.resultant_reads[0]), with_zf,
                   float(threshold_one), float(threshold_two), bool(detect_jumps),
                   bool(stcal_quirks))

    def run(self, phase, data, groupdq, pixeldq, gain, readnoise, dark, zeroframe,
            use=None, rate=None) -> dict[str, Any]:
        """One kernel call on (…, ny, nx) arrays; outputs keep the image axes."""
        return _likely_frames(
            data, groupdq, pixeldq, zeroframe, gain, readnoise, dark, use, rate,
            cov_key=self.cov_key, nreads0=self.nreads0, threshold_one=self.threshold_one,
            threshold_two=self.threshold_two, detect_jumps=self.detect_jumps,
            stcal_quirks=self.stcal_quirks, phase=phase,
        )


@jit(static_argnames=("cov_key", "nreads0", "threshold_one", "threshold_two",
                      "detect_jumps", "stcal_quirks", "phase"))
def _likely_frames(data, groupdq, pixeldq, zeroframe, gain, readnoise, dark, use=None,
                   rate=None, **static) -> dict[str, Any]:
    """:func:`_likely_kernel` on (..., ny, nx) arrays.

    The pixels are flattened and restored inside the compiled function, where a reshape
    costs nothing (eagerly, JAX runs each reshape as an operation of its own).
    """
    xp = array_namespace(data, groupdq, gain)
    ny, nx = (int(s) for s in data.shape[-2:])

    def flat(a):
        return None if a is None else xp.reshape(a, (*a.shape[:-2], ny * nx))

    kernel = getattr(_likely_kernel, "eager", _likely_kernel)
    out = kernel(flat(data), flat(groupdq), flat(pixeldq), flat(zeroframe), flat(gain),
                 flat(readnoise), flat(dark), flat(use), flat(rate), **static)
    return _map_tree(lambda v: xp.reshape(v, (*v.shape[:-1], ny, nx)), out)


def flag_snowballs_in_fit(groupdq, jump_groupdq, use, params: SnowballParams, *,
                          with_zf: bool, group_time: float):
    """Snowball flagging between LIKELY's jump detection and its final fit (host side).

    Each integration is searched on its own (as stcal does), so a snowball core is not
    carried into the next integration.  With a zero frame the first group is two
    resultants; the search sees the GROUPDQ of group 0 before the jump detection as an
    extra first plane, as stcal does.  A difference is no longer used when the group it
    ends at is flagged JUMP_DET.

    Parameters
    ----------
    groupdq : uint8 (nints, ngroups, ny, nx)
        GROUPDQ before the fit.
    jump_groupdq : uint8, same shape
        GROUPDQ with the fit's jumps.
    use : bool (nints, ndiffs, ny, nx)
        Differences the jump detection kept.
    params : SnowballParams
    with_zf : bool
        Whether a zero frame split the first group.
    group_time : float

    Returns
    -------
    (groupdq, use, count)
        Arrays in the namespace of ``jump_groupdq`` and the number of snowballs.
    """
    from ..jump.large_events import flag_snowballs

    xp = array_namespace(jump_groupdq)
    gdq = np.array(to_numpy(jump_groupdq), dtype=np.uint8, copy=True)
    keep = np.array(to_numpy(use), dtype=bool, copy=True)
    before = to_numpy(groupdq)
    total = 0
    for i in range(gdq.shape[0]):
        planes = np.concatenate([before[i, :1], gdq[i]], axis=0) if with_zf else gdq[i].copy()
        total += flag_snowballs(planes[None], params, group_time)
        gdq[i] = planes[1:] if with_zf else planes
        ends = planes[1:]
        keep[i] &= (ends & _JUMP) == 0
    return as_namespace(xp, gdq), as_namespace(xp, keep), total


def _map_tree(fn, tree):
    """``fn`` applied to every array of a dict of arrays / dicts (None kept)."""
    if isinstance(tree, dict):
        return {k: _map_tree(fn, v) for k, v in tree.items()}
    return None if tree is None or isinstance(tree, int) else fn(tree)


# --------------------------------------------------------------------------- log-likelihood
def likely_log_likelihood(
    data,
    rate,
    readnoise,
    gain,
    meta: ExposureMeta,
    *,
    groupdq=None,
    dark_current=None,
):
    """Gaussian log-likelihood of a count rate given up-the-ramp data (Brandt 2024).

    ``ln L = -1/2 sum_ints [(d - rate)^T C^-1 (d - rate) + ln det C + n ln 2 pi]`` over the
    usable resultant differences ``d`` (DN/s), with the tridiagonal covariance
    ``C = ((max(rate, 0) + dark) / gain) Cp + (readnoise**2 / 2) Cr`` evaluated at the
    rate itself.  Written with the array API (JAX-differentiable in ``data``, ``rate``,
    ``readnoise`` and ``gain``; the maximum-likelihood rate of the fit is its argmax only
    approximately, since the fit fixes the covariance at a count-rate estimate).

    Parameters
    ----------
    data : float32 (nints, ngroups, ny, nx) or (ngroups, ny, nx)
    rate : float32 (ny, nx)
        Count rate, DN/s.
    readnoise : float32 (ny, nx)
        CDS read noise, DN.
    gain : float32 (ny, nx)
        e-/DN.
    meta : ExposureMeta
        Read pattern and timing.
    groupdq : uint8, same shape as ``data``, optional
        Groups with any flag are excluded (with both their differences).
    dark_current : float32 (ny, nx), optional
        Added to the rate in the Poisson variance.

    Returns
    -------
    array (ny, nx)
        Log-likelihood per pixel.
    """
    xp = array_namespace(data, rate, readnoise, gain)
    if data.ndim == 3:
        data = data[None, ...]
        groupdq = None if groupdq is None else groupdq[None, ...]
    nints, ngroups, ny, nx = (int(s) for s in data.shape)
    if ngroups < 2:
        raise ValueError(f"likely_log_likelihood: data: expected at least 2 groups, got {ngroups}")
    cov = likely_covariance(likely_read_times(meta))
    dt = xp.asarray(np.asarray(cov.dt, dtype=np.float32))[:, None, None]
    ap, bp, ar, br = (xp.asarray(np.asarray(a, dtype=np.float32)) for a in
                      (cov.alpha_p, cov.beta_p, cov.alpha_r, cov.beta_r))
    photon = xp.maximum(rate, xp.zeros_like(rate))
    if dark_current is not None:
        photon = photon + dark_current
    photon = photon / gain
    sigma2 = readnoise * readnoise / 2.0
    alpha = photon[None, ...] * ap[:, None, None] + sigma2[None, ...] * ar[:, None, None]
    beta = photon[None, ...] * bp[:, None, None] + sigma2[None, ...] * br[:, None, None]
    total = xp.zeros((ny, nx), dtype=data.dtype)
    two_pi = math.log(2.0 * math.pi)
    for i in range(nints):
        d = (data[i, 1:, ...] - data[i, :-1, ...]) / dt
        if groupdq is None:
            use = xp.ones(d.shape, dtype=xp.bool)
        else:
            bad = groupdq[i, ...] != 0
            use = ~(bad[1:, ...] | bad[:-1, ...])
        a_m = xp.where(use, alpha, xp.ones_like(alpha))
        b_m = xp.where(use[1:, ...] & use[:-1, ...], beta, xp.zeros_like(beta))
        resid = xp.where(use, d - rate[None, ...], xp.zeros_like(d))
        quad, logdet = _tri_quad_logdet(xp, a_m, b_m, resid)
        n_used = xp.sum(xp.astype(use, data.dtype), axis=0)
        total = total - 0.5 * (quad + logdet + n_used * two_pi)
    return total


def _tri_quad_logdet(xp, alpha, beta, y):
    """``y^T C^-1 y`` and ``ln det C`` for tridiagonal ``C`` along axis 0 (LDL^T sweep)."""
    zero = xp.zeros_like(alpha[:1, ...])
    beta_lo = xp.concat([zero, beta], axis=0)
    one = xp.ones(alpha.shape[1:], dtype=alpha.dtype)
    zeros = xp.zeros(alpha.shape[1:], dtype=alpha.dtype)

    def step(carry, x):
        f_prev, z_prev = carry
        a, b, yi = x
        ratio = b / f_prev
        f = a - b * ratio
        z = yi - ratio * z_prev
        return (f, z), (f, z)

    _, (f, z) = scan(xp, step, (one, zeros), (alpha, beta_lo, y))
    return xp.sum(z * z / f, axis=0), xp.sum(xp.log(f), axis=0)


# --------------------------------------------------------------------------- the step
@dataclasses.dataclass(frozen=True, eq=False)
class LikelyFit:
    """What :meth:`LikelyRampFit.fit` returns.

    Attributes
    ----------
    result : RampFitResult
        ``rate`` and ``rateints`` products (no ``fitopt``: LIKELY has none).
    chisq : array (ny, nx) or None
        Sum over integrations of the fit chi-square (stcal's ``chisq``, #508).
    chisq_ints : array (nints, ny, nx) or None
        Chi-square of each integration's fit (NaN where there is no fit).
    groupdq : array (nints, ngroups, ny, nx)
        The input GROUPDQ with the jumps found by the fit flagged JUMP_DET (at the
        later group of each omitted difference).
    fallback : str or None
        ``"OLS"`` when NGROUPS < 4 and the OLS fit was used instead.
    snowballs : int or None
        Number of snowballs flagged (``expand_large_events``), else None.
    """

    result: RampFitResult
    chisq: Any
    chisq_ints: Any
    groupdq: Any
    fallback: str | None = None
    snowballs: int | None = None


@dataclasses.dataclass(frozen=True, repr=False)
class LikelyRampFit(Step):
    """Fit ramps by maximum likelihood on resultant differences (stcal ``LIKELY``).

    ``LikelyRampFit(...)(ramp, gain_ref, readnoise_ref, dark_current=None)`` returns a
    :class:`~stcal_models.models.RampFitResult`; :meth:`fit` also returns chi-square and
    the GROUPDQ with the jumps it found.

    Parameters
    ----------
    threshold_one_omit : float
        Chi-square improvement needed to omit one resultant difference as a jump.
        Default 20.25 (4.5 sigma).
    threshold_two_omit : float
        Chi-square improvement needed to omit two adjacent differences (a jump inside a
        multi-read resultant).  Default 23.8.
    detect_jumps : bool
        Run the likelihood jump detection (stcal always does).  Default True.
    use_zeroframe : bool
        Use ``ramp.zeroframe`` as an extra first read when the first group averages at
        least two reads (stcal #372).  Default True.
    stcal_quirks : bool
        Reproduce stcal 1.17.0's doubled count-rate estimate when the last difference
        omitted as a jump lay between two omitted ones (see Notes).  Default False.
    max_memory : float or None
        Budget in GiB for the kernel's temporaries; rows are processed in chunks that
        fit and the result is identical to one chunk.  ``None`` uses a budget of the
        input ramp's size (at least 64 MiB) and, on CPU, blocks of about
        ``min(131072, 2**20 / ngroups)`` pixels (which stay in cache and run fastest).
    suppress_one_group : bool
        Passed to the OLS fallback for NGROUPS < 4.  Default True.
    expand_large_events : bool
        After the jump detection, search each integration for snowballs and flag them
        (stcal #491): jump regions around a newly saturated core are enlarged and
        flagged JUMP_DET, large cores are grown and flagged SATURATED, and a difference
        ending at a group newly flagged JUMP_DET is left out of the final fit (whose
        covariance keeps the count-rate estimate of the jump detection).  Runs on the
        host between two kernel passes.  Default False.
    snowball : SnowballParams
        Snowball parameters (the jump step's defaults); used with ``expand_large_events``.
    engine : str
        ``"serial"`` (row chunks one after another) or ``"dask"`` (chunks as tasks of
        dask's threaded scheduler; needs the optional ``dask`` dependency).  Results are
        identical.
    progress : bool or None
        Progress bar over chunks: ``None`` shows one only when the fit takes more than a
        couple of seconds, ``True`` always, ``False`` never.

    Notes
    -----
    Algorithm (stcal documentation "Likelihood Algorithm Details" and Brandt 2024), with
    the details stcal 1.17.0 leaves undocumented measured on small inputs:

    * a group with any GROUPDQ flag removes both differences it belongs to;
    * the covariance used for jump detection is built from the median of *all* of the
      integration's differences (flagged ones included), clipped at 0;
    * each pass omits the single difference, or the pair of adjacent differences (only
      where their shared resultant averages several reads), whose chi-square
      improvement exceeds its threshold by the most; a pixel is examined again only
      after an omission that leaves at least four differences;
    * the final fit rebuilds the covariance from ``max(rate, 0) + dark_current``, where
      ``rate`` is the fit of the remaining differences with the median covariance;
      ``VAR_POISSON`` and ``VAR_RNOISE`` are the two covariance parts propagated through
      the fit weights (so they add up to the fit variance);
    * the exposure rate starts at the median of the integration rates and is refined
      twice, weighting integrations by their total variance with each integration's
      Poisson variance rescaled by ``max(rate / rate_int, 0)``; chi-square values add;
    * rateints DQ: PIXELDQ, SATURATED / JUMP_DET if any group has them (or a jump was
      found), DO_NOT_USE if every group is DO_NOT_USE or SATURATED; rate DQ: their OR
      without DO_NOT_USE, which is set only when every integration has it.

    Differences from stcal 1.17.0 (each found by comparing on small inputs):

    * with exactly two usable differences (or when an omission would leave one), either
      omission explains a jump equally well and stcal's choice depends on round-off
      (it keeps both, drops one or drops both); here the larger difference is dropped;
    * when the median difference is <= 0 (count-rate guess exactly 0), stcal's
      two-omission statistics can come out NaN, which silently stops its jump detection
      for that pixel; here jumps are still detected;
    * stcal's count-rate estimate after jump detection is doubled when the last omitted
      difference sat between two omitted ones, inflating ``VAR_POISSON``; reproduced
      only with ``stcal_quirks=True``;
    * for an explicit (uneven) read pattern stcal uses the read indices as times in
      seconds, ignoring ``frame_time``; here read times are ``frame_time * index`` so
      rates are per second (the two agree when ``frame_time`` is 1);
    * computations are float32 on every backend (stcal uses float64), so chi-square
      improvements within round-off of a threshold may be decided differently.
    """

    threshold_one_omit: float = 20.25
    threshold_two_omit: float = 23.8
    detect_jumps: bool = True
    use_zeroframe: bool = True
    stcal_quirks: bool = False
    max_memory: float | None = None
    suppress_one_group: bool = True
    expand_large_events: bool = False
    snowball: SnowballParams = SnowballParams()
    engine: str = "serial"
    progress: bool | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_number(owner, "threshold_one_omit", self.threshold_one_omit, minimum=0.0,
                     exclusive_minimum=True)
        check_number(owner, "threshold_two_omit", self.threshold_two_omit, minimum=0.0,
                     exclusive_minimum=True)
        for name in ("detect_jumps", "use_zeroframe", "stcal_quirks", "suppress_one_group",
                     "expand_large_events"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{owner}.{name}: expected bool, got {type(value).__name__} {value!r}")
        check_chunk_options(owner, self.max_memory, self.engine, self.progress)
        if not isinstance(self.snowball, SnowballParams):
            raise TypeError(f"{owner}.snowball: expected SnowballParams, got "
                            f"{type(self.snowball).__name__} {self.snowball!r}")

    # ------------------------------------------------------------------ call
    def __call__(self, ramp: RampModel, gain_ref, readnoise_ref, dark_current=None) -> RampFitResult:
        """Fit ``ramp`` and return the rate products; see the class docstring."""
        fitted = self.fit(ramp, gain_ref, readnoise_ref, dark_current)
        return fitted.result.replace(chisq=fitted.chisq, chisq_ints=fitted.chisq_ints)

    def fit(self, ramp: RampModel, gain_ref, readnoise_ref, dark_current=None) -> LikelyFit:
        """Fit ``ramp``; return the products, chi-square and the jump-flagged GROUPDQ.

        Raises
        ------
        TypeError, ValueError
            For inputs of the wrong type or references that do not cover the frame.
        """
        owner = type(self).__name__
        inputs = prepare_inputs(ramp, gain_ref, readnoise_ref, dark_current, owner=owner)
        meta = inputs.meta
        xp = inputs.xp
        nints, ngroups, ny, nx = inputs.shape
        if ngroups < LIKELY_MIN_NGROUPS:
            from .ols import OLSRampFit

            result = OLSRampFit(suppress_one_group=self.suppress_one_group,
                                max_memory=self.max_memory, engine=self.engine,
                                progress=self.progress)(ramp, gain_ref, readnoise_ref,
                                                        dark_current)
            return LikelyFit(result=result, chisq=None, chisq_ints=None,
                             groupdq=inputs.groupdq, fallback="OLS")
        with_zf = _uses_zeroframe(meta, inputs.zeroframe, self.use_zeroframe)
        chunks = row_chunks(ny, _row_bytes(nints, ngroups, nx), self._budget(inputs))
        if self.max_memory is None and not on_accelerator(inputs.data):
            # On CPU the kernel runs fastest on blocks that stay in cache.
            block = max(4096, min(_CPU_BLOCK_PIXELS, _CPU_BLOCK_VALUES // ngroups))
            per = max(1, -(-block // nx))
            if chunks[0][1] - chunks[0][0] > per:
                chunks = row_chunks(ny, 1, per)
        same_size = is_jax_array(inputs.data)
        plan = _FitPlan.of(meta, inputs.zeroframe, self.use_zeroframe, self.threshold_one_omit,
                           self.threshold_two_omit, self.detect_jumps, self.stcal_quirks)
        arrays = (inputs.data, inputs.groupdq, inputs.pixeldq, inputs.gain, inputs.readnoise,
                  inputs.dark_current, inputs.zeroframe if with_zf else None)
        count = None
        run = {"engine": self.engine, "progress": self.progress, "owner": owner}
        if self.expand_large_events and self.detect_jumps:
            found = _run_chunks(xp, plan, "detect", arrays, chunks, same_size, **run)
            gdq, use, count = flag_snowballs_in_fit(
                inputs.groupdq, found["groupdq"], found["use"], self.snowball,
                with_zf=with_zf, group_time=float(meta.group_time),
            )
            arrays = (inputs.data, gdq, *arrays[2:], use, found["rate"])
            out = _run_chunks(xp, plan, "final", arrays, chunks, same_size, **run)
        else:
            out = _run_chunks(xp, plan, "full", arrays, chunks, same_size, **run)
        keys = ("data", "dq", "err", "var_poisson", "var_rnoise")
        result = build_result({k: out["rate"][k] for k in keys},
                              {k: out["rateints"][k] for k in keys}, meta=meta)
        return LikelyFit(result=result, chisq=out["rate"]["chisq"],
                         chisq_ints=out["rateints"]["chisq"], groupdq=out["groupdq"],
                         snowballs=count)

    def _budget(self, inputs) -> int:
        if self.max_memory is not None:
            return int(self.max_memory * 2**30)
        nbytes = math.prod(inputs.shape) * 5 + 16 * math.prod(inputs.frame_shape)
        return max(nbytes, 64 * 2**20)


# --------------------------------------------------------------------------- chunking
_CPU_BLOCK_PIXELS = 131072
_CPU_BLOCK_VALUES = 2**20


def _row_bytes(nints: int, ngroups: int, nx: int) -> int:
    """Estimated bytes of kernel temporaries per image row (about 40 (n, P) arrays)."""
    return nx * (nints * (5 * ngroups + 40) + 160 * ngroups)


def _run_chunks(xp, plan: _FitPlan, phase: str, arrays, chunks, same_size: bool, *,
                engine: str = "serial", progress: bool | None = None,
                owner: str = "LikelyRampFit") -> dict:
    """Run ``plan`` on each row chunk of ``arrays`` (image axes last); full-frame outputs."""

    def fit_rows(r0: int, r1: int) -> dict:
        return plan.run(phase, *(None if a is None else a[..., r0:r1, :] for a in arrays))

    return map_row_chunks(fit_rows, xp, int(arrays[0].shape[-2]), chunks, same_size=same_size,
                          engine=engine, progress=progress, owner=owner)
