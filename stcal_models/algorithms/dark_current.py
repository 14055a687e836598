"""Dark current subtraction with a frame-level dark reference averaged to the science readout.

Follows the stcal 1.17 documentation of the dark current step (changelog #63, #121,
#165, #243, #368) and the JWST dark-current description; stcal is only a test oracle.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from ..backends import array_namespace, as_namespace, jit
from ..models import DarkRef, ExposureMeta, RampModel
from .base import Step, check_int, check_number
from .linearity import flag_nan_groups

__all__ = ["DarkCurrent", "DarkResult", "dark_frame_weights", "dark_kernel"]

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- result
@dataclasses.dataclass(frozen=True, eq=False)
class DarkResult:
    """Output of :class:`DarkCurrent`.

    Attributes
    ----------
    ramp : RampModel
        The dark-subtracted ramp (new ``data``, ``pixeldq`` and, with ``flag_nan``,
        ``groupdq``).
    average_dark_current : array, float32 (ny, nx)
        Average dark current in DN/s (stcal's ramp fitting adds it to its DN/s slope
        estimate) for ramp fitting's Poisson variance: the step's
        ``average_dark_current`` if set, else the reference's (scalar broadcast or 2-D,
        cut to the science frame), else zeros.  Pass it as ``dark_current=`` to the
        ramp-fitting steps.
    averaged_dark : array, float32 (ngroups, ny, nx) or (ndark_ints, ngroups, ny, nx)
        The frame-averaged dark that was subtracted (stcal's ``dark_output``), NaN
        already replaced by zero.
    """

    ramp: RampModel
    average_dark_current: Any
    averaged_dark: Any

    def __post_init__(self) -> None:
        if not isinstance(self.ramp, RampModel):
            raise TypeError(f"DarkResult.ramp: expected RampModel, got {type(self.ramp).__name__}")
        frame = tuple(self.ramp.shape[-2:])
        for name in ("average_dark_current", "averaged_dark"):
            value = getattr(self, name)
            if not hasattr(value, "shape") or tuple(value.shape[-2:]) != frame:
                got = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
                raise ValueError(
                    f"DarkResult.{name}: expected an array ending in {frame}, got {got}"
                )

    def replace(self, **changes: Any) -> DarkResult:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        return (
            f"DarkResult(ramp={self.ramp!r}, average_dark_current=<{tuple(self.average_dark_current.shape)}>, "
            f"averaged_dark=<{tuple(self.averaged_dark.shape)}>)"
        )

    def _repr_html_(self) -> str:
        import html

        return (
            "<div style='font-family:monospace;font-size:12px'><b>DarkResult</b>"
            f"<div>average_dark_current: {html.escape(str(tuple(self.average_dark_current.shape)))}"
            f", averaged_dark: {html.escape(str(tuple(self.averaged_dark.shape)))}</div>"
            f"{self.ramp._repr_html_()}</div>"
        )


def _register() -> None:
    import jax

    names = ("ramp", "average_dark_current", "averaged_dark")

    def flatten(result):
        return tuple(getattr(result, n) for n in names), None

    def unflatten(_aux, children):
        obj = object.__new__(DarkResult)
        for name, value in zip(names, children, strict=True):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_node(DarkResult, flatten, unflatten)


_register()


# ----------------------------------------------------------------------------- host side
def dark_frame_weights(pattern, n_dark_frames: int) -> np.ndarray:
    """Weights turning dark frames into science groups: ``avg[g] = sum_j W[g, j] dark[j]``.

    Group ``g`` is the mean of the dark frames ``pattern[g]`` (1-based frame numbers from
    the start of the integration).  Frames beyond the end of the dark are extrapolated
    linearly from its last two frames: ``dark[L] + (j - L) (dark[L] - dark[L-1])``.

    Parameters
    ----------
    pattern : tuple of tuple of int
        Frames averaged into each group (``ExposureMeta.resultant_reads``).
    n_dark_frames : int
        Frames available in the dark reference.

    Returns
    -------
    numpy.ndarray, float64 (ngroups, n_used)
        ``n_used = min(n_dark_frames, max frame)``: only the frames that matter.

    Raises
    ------
    ValueError
        If extrapolation is needed and the dark has fewer than two frames.
    """
    needed = max(max(r) for r in pattern)
    n_used = min(n_dark_frames, needed)
    if needed > n_dark_frames and n_dark_frames < 2:
        raise ValueError(
            f"DarkCurrent: dark: expected at least 2 frames to extrapolate to the {needed} "
            f"frames the science readout needs, got {n_dark_frames}"
        )
    last = n_dark_frames - 1
    weights = np.zeros((len(pattern), n_used), dtype=np.float64)
    for g, frames in enumerate(pattern):
        share = 1.0 / len(frames)
        for frame in frames:
            j = frame - 1
            if j <= last:
                weights[g, j] += share
            else:
                weights[g, last] += share * (1 + (j - last))
                weights[g, last - 1] -= share * (j - last)
    return weights


def _terms(weights: np.ndarray) -> tuple[tuple[tuple[int, float], ...], ...]:
    """Per group, the ``(frame, weight)`` pairs with non-zero weight (static kernel input)."""
    return tuple(tuple((int(j), float(row[j])) for j in np.flatnonzero(row)) for row in weights)


def _block(pattern, n_dark_frames: int) -> tuple[int, int, int] | None:
    """``(first, step, nframes)`` (0-based) when ``pattern`` is evenly sampled within the dark."""
    nframes = len(pattern[0])
    first = pattern[0][0] - 1
    step = pattern[1][0] - pattern[0][0] if len(pattern) > 1 else nframes
    for g, reads in enumerate(pattern):
        if reads != tuple(range(first + g * step + 1, first + g * step + nframes + 1)):
            return None
    if step < nframes or first + len(pattern) * step > n_dark_frames:
        return None
    return first, step, nframes


# ----------------------------------------------------------------------------- kernel
@jit(static_argnames=("terms", "block", "flag_nan"))
def dark_kernel(
    data, groupdq, pixeldq, dark, dark_dq, int_index=None, *, terms, block=None, flag_nan=True
):
    """Subtract a frame-averaged dark; the array-API kernel behind :class:`DarkCurrent`.

    An evenly sampled readout (``block``) averages a reshaped view of the dark; any other
    pattern streams over the frames each group needs.

    Parameters
    ----------
    data : float32 (nints, ngroups, ny, nx)
    groupdq : uint8, same shape
    pixeldq : uint32 (ny, nx)
    dark : float32 (nframes, ny, nx) or (ndark_ints, nframes, ny, nx)
        Dark frames (NaN is treated as zero).
    dark_dq : uint32 (ny, nx)
        OR-ed into ``pixeldq``.
    int_index : int32 (nints,) or None
        Dark integration used by each science integration (4-D darks).
    terms : tuple
        Static ``((frame, weight), ...)`` per group (from :func:`dark_frame_weights`).
    block : tuple of int or None
        Static ``(first, step, nframes)``: group ``g`` is the mean of dark frames
        ``first + g*step ... + nframes - 1`` (0-based); overrides ``terms``.
    flag_nan : bool
        Set ``DO_NOT_USE`` in ``groupdq`` where ``data`` is NaN.

    Returns
    -------
    data, groupdq, pixeldq, averaged_dark
    """
    xp = array_namespace(data)

    if block is not None:
        averaged = _block_average(xp, dark, data.shape[1], *block)
    else:
        averaged = _stream_average(xp, dark, terms)
    if averaged.ndim == 4:
        per_int = xp.take(averaged, int_index, axis=0)
    else:
        per_int = xp.expand_dims(averaged, axis=0)
    out = data - per_int
    new_pdq = pixeldq | dark_dq
    new_gdq = flag_nan_groups(data, groupdq) if flag_nan else groupdq
    return out, new_gdq, new_pdq, averaged


def _zero_nan(xp, x):
    if isinstance(x, np.ndarray) and not np.isnan(np.sum(x, dtype=np.float64)):
        return x  # eager NumPy without NaN: skip the full-size copy
    return xp.where(xp.isnan(x), xp.asarray(0.0, dtype=x.dtype), x)


def _nan_zero_sum(xp, x, axis):
    """NumPy sum along ``axis`` counting NaN as zero (``nansum`` only when needed)."""
    total = np.sum(x, axis=axis)
    return np.nansum(x, axis=axis) if np.isnan(total).any() else total


def _block_average(xp, dark, ngroups, first, step, nframes):
    frames = dark[..., first : first + ngroups * step, :, :]
    lead = tuple(dark.shape[:-3])
    ny, nx = dark.shape[-2:]
    frames = xp.reshape(frames, (*lead, ngroups, step, ny, nx))[..., :nframes, :, :]
    if nframes == 1:
        return _zero_nan(xp, frames[..., 0, :, :])
    if isinstance(frames, np.ndarray):
        return _nan_zero_sum(xp, frames, -3) / float(nframes)
    # traced: frame-by-frame adds fuse into one pass (XLA reduces a middle axis slowly)
    acc = _zero_nan(xp, frames[..., 0, :, :])
    for k in range(1, nframes):
        acc = acc + _zero_nan(xp, frames[..., k, :, :])
    return acc / float(nframes)


def _stream_average(xp, dark, terms):
    def frame(j):
        return _zero_nan(xp, dark[..., j, :, :])

    groups = []
    for row in terms:
        n = len(row)
        if all(w == 1.0 / n for _, w in row):  # a plain mean: sum, then divide
            acc = frame(row[0][0])
            for j, _ in row[1:]:
                acc = acc + frame(j)
            if n > 1:
                acc = acc / float(n)
        else:  # extrapolated frames enter with other weights
            acc = None
            for j, w in row:
                term = frame(j) * w
                acc = term if acc is None else acc + term
        groups.append(acc)
    return xp.stack(groups, axis=dark.ndim - 3)


# ----------------------------------------------------------------------------- step
@dataclasses.dataclass(frozen=True)
class DarkCurrent(Step):
    r"""Subtract a dark reference ramp averaged to the science readout.

    The dark reference (:class:`~stcal_models.models.DarkRef`) is frame-level: read with
    ``nframes=1, groupgap=0`` (``dark.meta``), its own group 0 subtracted.  Science group
    :math:`g` averages the frames :math:`\mathcal{F}_g` of the read pattern
    (``ramp.meta.resultant_reads``, which encodes ``nframes``, ``groupgap`` and
    ``nskip``, or an explicit uneven pattern), so the subtracted dark is

    .. math:: D_g = \frac{1}{|\mathcal{F}_g|} \sum_{f \in \mathcal{F}_g} d_f ,
              \qquad S'_{i,g} = S_{i,g} - D_g .

    NaN dark values count as zero.  When the science readout needs more frames than the
    dark has, the missing frames are extrapolated linearly from the dark's last two
    frames, :math:`d_f = d_L + (f - L)(d_L - d_{L-1})` (stcal #368).  A dark whose
    ``meta.nframes``/``groupgap`` equal the science values (and ``nskip == 0``) is used
    group by group without averaging.  A 4-D dark ``(ndark_ints, nframes, ny, nx)``
    (MIRI) gives science integration :math:`i` the dark integration
    :math:`\min(i + s - 1, n_\mathrm{dark\,ints} - 1)`, :math:`s` the 1-based
    ``integration_start`` of a segmented exposure.  The dark DQ is OR-ed into PIXELDQ;
    GROUPDQ and ERR are not changed (except by ``flag_nan``).

    The step also returns the average dark current (DN/s) that ramp fitting adds to its
    Poisson variance: ``average_dark_current`` if set, else the reference's
    ``average_dark_current`` (scalar or 2-D), else zero — always a float32 ``(ny, nx)``
    array in the ramp's namespace.

    Parameters
    ----------
    average_dark_current : float or None, default None
        Average dark current in DN/s overriding the reference's value (JWST's step
        argument of the same name).
    flag_nan : bool, default True
        Groups whose science value is NaN get ``DO_NOT_USE`` in GROUPDQ (the value stays
        NaN).  ``False`` leaves GROUPDQ untouched, like stcal.

    Returns
    -------
    DarkResult
        ``(ramp, average_dark_current, averaged_dark)``.

    Notes
    -----
    Differences from stcal 1.17.0: frames dropped at the start of an integration
    (``meta.nskip``, JWST ``DRPFRMS1``) shift the dark frames used (stcal ignores them;
    identical when ``nskip == 0``); uneven (Roman-style) read patterns are averaged
    exactly; NaN science values are flagged (``flag_nan``); a dark that is neither
    frame-level nor read like the science data is an error rather than being averaged
    as if it were frame-level.
    """

    average_dark_current: float | None = None
    flag_nan: bool = True

    def __post_init__(self) -> None:
        check_number(
            "DarkCurrent",
            "average_dark_current",
            self.average_dark_current,
            minimum=0.0,
            allow_none=True,
        )
        if not isinstance(self.flag_nan, bool):
            raise TypeError(
                f"DarkCurrent.flag_nan: expected bool, got {type(self.flag_nan).__name__}"
            )

    def __call__(self, ramp: RampModel, dark: DarkRef, *, integration_start: int = 1) -> DarkResult:
        """Subtract ``dark`` from ``ramp``.

        Parameters
        ----------
        ramp : RampModel
        dark : DarkRef
            Cut to the science subarray when larger (``for_science``).
        integration_start : int, default 1
            1-based number of the first integration of ``ramp`` in its exposure (JWST
            ``INTSTART`` of a segmented file); selects the dark integration of 4-D darks.

        Returns
        -------
        DarkResult

        Raises
        ------
        TypeError, ValueError
            For arguments of the wrong type, a dark that does not cover the science frame,
            a dark read out differently from both frame level and the science readout, or
            one too short to extrapolate.
        """
        if not isinstance(ramp, RampModel):
            raise TypeError(f"DarkCurrent: ramp: expected RampModel, got {type(ramp).__name__}")
        if not isinstance(dark, DarkRef):
            raise TypeError(f"DarkCurrent: dark: expected DarkRef, got {type(dark).__name__}")
        check_int("DarkCurrent", "integration_start", integration_start, minimum=1)
        nints, ngroups, ny, nx = ramp.shape
        frame = (ny, nx)
        xp = ramp.xp
        ref = dark.for_science(ramp.meta, frame)
        pattern = _dark_pattern(ramp.meta, ref)
        n_dark_frames = int(ref.data.shape[-3])
        needed = max(max(r) for r in pattern)
        if needed > n_dark_frames:
            _log.info(
                "DarkCurrent: the dark has %d frames, the science readout needs %d; "
                "extrapolating linearly from the last two dark frames",
                n_dark_frames,
                needed,
            )
        weights = dark_frame_weights(pattern, n_dark_frames)
        block = _block(pattern, n_dark_frames)
        n_used = weights.shape[1] if block is None else block[0] + ngroups * block[1]
        dark_data = as_namespace(xp, ref.data[..., :n_used, :, :], xp.float32)
        dark_dq = (
            as_namespace(xp, ref.dq, xp.uint32)
            if ref.dq is not None
            else xp.zeros(frame, dtype=xp.uint32)
        )
        int_index = None
        if dark_data.ndim == 4:
            n_dark_ints = int(dark_data.shape[0])
            idx = np.minimum(np.arange(nints) + integration_start - 1, n_dark_ints - 1)
            int_index = xp.asarray(idx.astype(np.int32))
        data, gdq, pdq, averaged = dark_kernel(
            ramp.data,
            ramp.groupdq,
            ramp.pixeldq,
            dark_data,
            dark_dq,
            int_index,
            terms=None if block is not None else _terms(weights),
            block=block,
            flag_nan=self.flag_nan,
        )
        return DarkResult(
            ramp=ramp.replace(data=data, groupdq=gdq, pixeldq=pdq),
            average_dark_current=self._average_dark_current(xp, ref, frame),
            averaged_dark=averaged,
        )

    def _average_dark_current(self, xp, ref: DarkRef, frame: tuple[int, int]):
        if self.average_dark_current is not None:
            return xp.full(frame, float(self.average_dark_current), dtype=xp.float32)
        value = ref.average_dark_current
        if value is None:
            return xp.zeros(frame, dtype=xp.float32)
        value = as_namespace(xp, value, xp.float32)
        if value.ndim == 0:
            return xp.broadcast_to(value, frame)
        return value


# ----------------------------------------------------------------------------- helpers
def _dark_pattern(meta: ExposureMeta, ref: DarkRef) -> tuple[tuple[int, ...], ...]:
    """Dark 'frames' (1-based along the dark's group axis) averaged into each science group."""
    if ref.meta.nframes == 1 and ref.meta.groupgap == 0:
        return meta.resultant_reads
    same_readout = (
        (ref.meta.nframes, ref.meta.groupgap) == (meta.nframes, meta.groupgap)
        and meta.nskip == 0
        and meta.read_pattern is None
    )
    if same_readout:
        return tuple((g + 1,) for g in range(meta.ngroups))
    raise ValueError(
        "DarkCurrent: dark.meta: expected a frame-level dark (nframes=1, groupgap=0) or one "
        f"read like the science data (nframes={meta.nframes}, groupgap={meta.groupgap}, "
        f"nskip=0, evenly sampled), got nframes={ref.meta.nframes}, "
        f"groupgap={ref.meta.groupgap}"
    )
