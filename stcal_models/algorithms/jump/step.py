"""``JumpDetection``: the jump (cosmic-ray) detection step."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from ...backends import array_namespace, is_jax_array, to_backend, to_numpy
from ...dqflags import DQ
from ...models import ExposureMeta, GainRef, RampModel, ReadnoiseRef
from ..base import Step, check_choice, check_int, check_number
from .chunking import BYTES_PER_ELEMENT, BYTES_PER_ELEMENT_JAX, rows_per_chunk, run_chunks
from .twopoint import NETWORK_MAX, KernelParams, jump_kernel

__all__ = ["JumpDetection", "detection_mode", "uneven_sampling"]

_GIB = float(1 << 30)


def uneven_sampling(meta: ExposureMeta) -> tuple[tuple[float, ...], tuple[int, ...]] | None:
    """Per-difference mean-time steps (frames) and read counts of an explicit read pattern.

    Returns ``None`` for exposures without an explicit ``read_pattern`` (evenly sampled
    JWST groups, whose noise is ``rn**2 / nframes`` per difference).
    """
    if meta.read_pattern is None:
        return None
    reads = meta.read_pattern
    times = [sum(r) / len(r) for r in reads]
    counts = [len(r) for r in reads]
    dt = tuple(float(b - a) for a, b in zip(times, times[1:], strict=False))
    nreads = tuple(int(a + b) for a, b in zip(counts, counts[1:], strict=False))
    return dt, nreads


def detection_mode(step: JumpDetection, ramp: RampModel) -> str:
    """The kernel mode :class:`JumpDetection` uses for ``ramp`` (see :data:`twopoint.MODES`).

    Sigma clipping across integrations is used when ``only_use_ints`` and there are at
    least ``minimum_sigclip_groups`` integrations, or, without ``only_use_ints``, when the
    usable groups (``nints * ngroups`` less groups that are ``DO_NOT_USE`` over the whole
    frame) reach ``minimum_sigclip_groups``.  Unevenly sampled ramps always use two-point
    differences.  Otherwise: nothing with fewer than ``minimum_groups`` groups, a single
    pass with at least ``min_diffs_single_pass`` differences per integration, else the
    iterative two-point rejection.
    """
    nints, ngroups = ramp.nints, ramp.ngroups
    sampling = uneven_sampling(ramp.meta)
    even = sampling is None or (len(set(sampling[0])) <= 1 and len(set(sampling[1])) <= 1)
    if even:
        if step.only_use_ints:
            if nints >= step.minimum_sigclip_groups:
                return "sigma_clip_ints"
        else:
            total = nints * ngroups
            if total >= step.minimum_sigclip_groups:
                xp = ramp.xp
                dnu = (ramp.groupdq & int(DQ.DO_NOT_USE)) != 0
                whole = xp.all(xp.reshape(dnu, (nints, ngroups, -1)), axis=2)
                total -= int(xp.sum(xp.astype(whole, xp.int32)))
            if total >= step.minimum_sigclip_groups:
                return "sigma_clip_all"
    if ngroups < max(3, step.minimum_groups):
        return "none"
    if ngroups - 1 >= step.min_diffs_single_pass:
        return "single"
    return "iterative"


@dataclasses.dataclass(frozen=True, repr=False)
class JumpDetection(Step):
    """Flag jumps (cosmic rays) in ramps: two-point differences, sigma clipping, snowballs, showers.

    ``JumpDetection(...)(ramp, gain_ref, readnoise_ref)`` returns a new
    :class:`~stcal_models.models.RampModel` whose GROUPDQ has ``JUMP_DET`` on groups that
    contain a jump and whose PIXELDQ has ``NO_GAIN_VALUE | DO_NOT_USE`` where the gain is
    not positive or is NaN; the science data are not changed.  The algorithm is the one
    of the stcal 1.17.0 documentation (Anderson & Gordon 2011); see
    :mod:`stcal_models.algorithms.jump.twopoint` for the numeric kernel and
    :mod:`stcal_models.algorithms.jump.large_events` for snowballs and showers.

    Parameters
    ----------
    rejection_threshold : float
        Sigma threshold with four or more usable differences (default 4).
    three_group_rejection_threshold : float
        Threshold with two usable differences (three groups; default 6).
    four_group_rejection_threshold : float
        Threshold with three usable differences (four groups; default 5).
    flag_4_neighbors : bool
        Flag the four adjacent pixels of jumps whose ratio lies strictly between
        ``min_jump_to_flag_neighbors`` (default 10) and ``max_jump_to_flag_neighbors``
        (default 1000) sigma.
    after_jump_flag_dn1, after_jump_flag_time1, after_jump_flag_dn2, after_jump_flag_time2 : float
        Jumps of at least ``dn`` DN (times the median gain) also flag the groups within
        ``time`` seconds after them (``floor(time / group_time)`` groups; defaults 0).
    min_diffs_single_pass : int
        Differences per integration from which all outliers are flagged in one pass
        (default 10).
    minimum_groups : int
        Fewest groups for two-point detection (default 3; stcal never flags with fewer
        than 3 groups and ignores larger values).
    minimum_sigclip_groups : int
        Integrations (``only_use_ints``) or usable groups needed for sigma clipping
        (default 100).
    only_use_ints : bool
        Sigma-clip across integrations only (default True) rather than all differences.
    expand_large_events, min_sat_area, min_jump_area, expand_factor, use_ellipses,
    sat_required_snowball, min_sat_radius_extend, sat_expand, edge_size,
    mask_snowball_core_next_int, snowball_time_masked_next_int :
        NIR snowball flagging (see :class:`~.large_events.SnowballParams`;
        ``SnowballParams.from_step(step)`` extracts them).
    find_showers, extend_snr_threshold, extend_min_area, extend_inner_radius,
    extend_outer_radius, extend_ellipse_expand_ratio, max_shower_amplitude,
    time_masked_after_shower, max_extended_width :
        MIRI shower flagging (see :func:`~.large_events.find_showers`).
    memory_budget : float
        Bytes of kernel temporaries allowed on top of the input (default 2 GiB); the
        frame is processed in row chunks sized from it.
    engine : {"serial", "dask"}
        Run the chunks one after another or with Dask (optional dependency, threads);
        the flags are identical.

    Notes
    -----
    Behaviour reproduced from stcal 1.17.0 where the documentation is silent (checked
    against it as a test oracle): all integrations of a pixel are pooled for the median;
    the iterative rejection works on absolute differences and flags every difference
    sharing the largest ratio, dropping every copy of the largest difference from the
    clipped median; the single pass and the neighbour/after-jump tests use the plain
    median of the signed differences; the after-jump threshold is ``dn`` times the median
    gain of the frame; JUMP_DET is removed from SATURATED/DO_NOT_USE groups; group 0 never
    seeds neighbours or after-jump flags; two-point detection needs three groups; showers
    need ten usable differences and are undone where they move a pixel's mean difference
    by more than ``max_shower_amplitude`` (electrons per group).

    Differences from stcal
    ----------------------
    * ``minimum_groups`` is honoured: no two-point detection with fewer groups (stcal
      1.17.0 accepts the parameter but always requires only three groups; the default, 3,
      gives identical results).
    * ``use_ellipses`` is accepted and, as in stcal 1.17.0, has no effect.
    * ``sat_expand`` and the times are given as the JWST step does: the saturated core's
      full axes grow by ``2 * sat_expand`` pixels, times become ``time // group_time``
      groups.
    * Sigma-clip statistics are float32 (astropy works in float64) and the shower ring
      convolution is float64 via ``scipy.ndimage`` (stcal's differs by < 1e-7); a value
      lying within rounding of a bound may be classified differently (not seen in tests).
    * Snowballs and showers run on the host with NumPy/scikit-image on whole frames.
    """

    rejection_threshold: float = 4.0
    three_group_rejection_threshold: float = 6.0
    four_group_rejection_threshold: float = 5.0
    flag_4_neighbors: bool = True
    max_jump_to_flag_neighbors: float = 1000.0
    min_jump_to_flag_neighbors: float = 10.0
    after_jump_flag_dn1: float = 0.0
    after_jump_flag_time1: float = 0.0
    after_jump_flag_dn2: float = 0.0
    after_jump_flag_time2: float = 0.0
    min_diffs_single_pass: int = 10
    minimum_groups: int = 3
    minimum_sigclip_groups: int = 100
    only_use_ints: bool = True
    expand_large_events: bool = False
    min_sat_area: float = 1.0
    min_jump_area: float = 5.0
    expand_factor: float = 2.0
    use_ellipses: bool = False
    sat_required_snowball: bool = True
    min_sat_radius_extend: float = 2.5
    sat_expand: int = 2
    edge_size: int = 25
    mask_snowball_core_next_int: bool = True
    snowball_time_masked_next_int: float = 4000.0
    find_showers: bool = False
    extend_snr_threshold: float = 1.2
    extend_min_area: int = 90
    extend_inner_radius: float = 1.0
    extend_outer_radius: float = 2.6
    extend_ellipse_expand_ratio: float = 1.1
    max_shower_amplitude: float = 4.0
    time_masked_after_shower: float = 15.0
    max_extended_width: int = 200
    memory_budget: float = 2 * _GIB
    engine: str = "serial"

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in (
            "rejection_threshold",
            "three_group_rejection_threshold",
            "four_group_rejection_threshold",
        ):
            check_number(name, field, getattr(self, field), minimum=0, exclusive_minimum=True)
        for field in (
            "max_jump_to_flag_neighbors",
            "min_jump_to_flag_neighbors",
            "after_jump_flag_dn1",
            "after_jump_flag_time1",
            "after_jump_flag_dn2",
            "after_jump_flag_time2",
            "min_sat_area",
            "min_jump_area",
            "min_sat_radius_extend",
            "snowball_time_masked_next_int",
            "extend_snr_threshold",
            "extend_inner_radius",
            "max_shower_amplitude",
            "time_masked_after_shower",
        ):
            check_number(name, field, getattr(self, field), minimum=0)
        if self.min_jump_to_flag_neighbors > self.max_jump_to_flag_neighbors:
            raise ValueError(
                f"{name}.min_jump_to_flag_neighbors: expected <= max_jump_to_flag_neighbors "
                f"({self.max_jump_to_flag_neighbors}), got {self.min_jump_to_flag_neighbors}"
            )
        check_number(name, "expand_factor", self.expand_factor, minimum=0, exclusive_minimum=True)
        check_number(
            name,
            "extend_ellipse_expand_ratio",
            self.extend_ellipse_expand_ratio,
            minimum=0,
            exclusive_minimum=True,
        )
        check_number(
            name, "extend_outer_radius", self.extend_outer_radius, minimum=0, exclusive_minimum=True
        )
        if self.extend_outer_radius <= self.extend_inner_radius:
            raise ValueError(
                f"{name}.extend_outer_radius: expected > extend_inner_radius "
                f"({self.extend_inner_radius}), got {self.extend_outer_radius}"
            )
        for field in ("min_diffs_single_pass", "minimum_groups", "minimum_sigclip_groups"):
            check_int(name, field, getattr(self, field), minimum=1)
        for field in ("sat_expand", "edge_size", "extend_min_area"):
            check_int(name, field, getattr(self, field), minimum=0)
        check_int(name, "max_extended_width", self.max_extended_width, minimum=1)
        for field in (
            "flag_4_neighbors",
            "only_use_ints",
            "expand_large_events",
            "use_ellipses",
            "sat_required_snowball",
            "mask_snowball_core_next_int",
            "find_showers",
        ):
            value = getattr(self, field)
            if not isinstance(value, bool):
                raise TypeError(
                    f"{name}.{field}: expected bool, got {type(value).__name__} {value!r}"
                )
        check_number(name, "memory_budget", self.memory_budget, minimum=0, exclusive_minimum=True)
        check_choice(name, "engine", self.engine, ("serial", "dask"))

    # ------------------------------------------------------------------ helpers
    def groups_after(self, seconds: float, group_time: float) -> int:
        """Whole groups in ``seconds`` (``floor(seconds / group_time)``)."""
        return int(seconds // group_time)

    def kernel_params(self, ramp: RampModel, mode: str | None = None) -> KernelParams:
        """The static :class:`KernelParams` for ``ramp``."""
        meta = ramp.meta
        sampling = uneven_sampling(meta)
        gt = float(meta.group_time)
        return KernelParams(
            mode=mode or detection_mode(self, ramp),
            rejection_threshold=float(self.rejection_threshold),
            three_group_rejection_threshold=float(self.three_group_rejection_threshold),
            four_group_rejection_threshold=float(self.four_group_rejection_threshold),
            nframes=int(meta.nframes),
            dt=None if sampling is None else sampling[0],
            nreads=None if sampling is None else sampling[1],
            flag_4_neighbors=bool(self.flag_4_neighbors),
            min_jump_to_flag_neighbors=float(self.min_jump_to_flag_neighbors),
            max_jump_to_flag_neighbors=float(self.max_jump_to_flag_neighbors),
            after_jump_groups1=self.groups_after(self.after_jump_flag_time1, gt),
            after_jump_groups2=self.groups_after(self.after_jump_flag_time2, gt),
        )

    # ------------------------------------------------------------------ call
    def __call__(
        self, ramp: RampModel, gain_ref: GainRef, readnoise_ref: ReadnoiseRef
    ) -> RampModel:
        """Flag jumps in ``ramp``; returns a new model (inputs are not modified)."""
        if not isinstance(ramp, RampModel):
            raise TypeError(f"JumpDetection: ramp: expected RampModel, got {type(ramp).__name__}")
        if not isinstance(gain_ref, GainRef):
            raise TypeError(
                f"JumpDetection: gain_ref: expected GainRef, got {type(gain_ref).__name__}"
            )
        if not isinstance(readnoise_ref, ReadnoiseRef):
            raise TypeError(
                f"JumpDetection: readnoise_ref: expected ReadnoiseRef, got {type(readnoise_ref).__name__}"
            )
        frame = ramp.shape[-2:]
        gain_ref = gain_ref.for_science(ramp.meta, frame)
        readnoise_ref = readnoise_ref.for_science(ramp.meta, frame)
        xp = ramp.xp
        gain = _as_namespace(gain_ref.data, ramp.data)
        readnoise = _as_namespace(readnoise_ref.data, ramp.data)

        pixeldq = ramp.pixeldq
        bad_gain = ~(gain > 0)  # NaN compares False
        pixeldq = pixeldq | xp.where(
            bad_gain,
            xp.asarray(int(DQ.NO_GAIN_VALUE | DQ.DO_NOT_USE), dtype=xp.uint32),
            xp.asarray(0, dtype=xp.uint32),
        )

        gdq = self.detect(ramp, gain, readnoise)
        if self.expand_large_events or self.find_showers:
            from .large_events import flag_large_events_and_showers

            gdq_np = flag_large_events_and_showers(
                self, ramp, to_numpy(gdq), to_numpy(gain), to_numpy(readnoise)
            )
            gdq = _as_namespace(gdq_np, ramp.data)
        return ramp.replace(groupdq=gdq, pixeldq=pixeldq)

    def detect(self, ramp: RampModel, gain, readnoise):
        """Two-point / sigma-clip detection with neighbours and after-jump flags (GROUPDQ)."""
        params = self.kernel_params(ramp)
        if params.mode == "none":
            return ramp.groupdq
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN gain
            med_gain = np.float32(np.nanmedian(to_numpy(gain)))
        e1 = np.float32(np.float32(self.after_jump_flag_dn1) * med_gain)
        e2 = np.float32(np.float32(self.after_jump_flag_dn2) * med_gain)
        arrays: dict[str, Any] = {
            "data": ramp.data,
            "gdq": ramp.groupdq,
            "gain": gain,
            "readnoise": readnoise,
            "after_e1": _as_namespace(np.asarray(e1, dtype=np.float32), ramp.data),
            "after_e2": _as_namespace(np.asarray(e2, dtype=np.float32), ramp.data),
        }
        halo = 1 if params.flag_4_neighbors else 0
        pooled = ramp.nints * (ramp.ngroups - 1)
        wide = is_jax_array(ramp.data) and max(pooled, ramp.nints) > NETWORK_MAX
        per_element = BYTES_PER_ELEMENT_JAX if wide else BYTES_PER_ELEMENT
        rows = rows_per_chunk(ramp.shape, self.memory_budget, halo, per_element)

        def kernel(**kw):
            return jump_kernel(**kw, params=params)

        return run_chunks(
            kernel,
            arrays,
            rows,
            halo,
            engine=self.engine,
            pad_value={"data": 0.0, "gdq": int(DQ.DO_NOT_USE), "gain": 1.0, "readnoise": 1.0},
        )


def _as_namespace(array, like):
    """``array`` converted to the namespace of ``like`` (NumPy, JAX or another array-API library)."""
    if is_jax_array(like):
        return to_backend(array, "jax")
    if isinstance(like, np.ndarray):
        return to_numpy(array)
    xp = array_namespace(like)
    return xp.asarray(to_numpy(array))
