"""Seeded synthetic exposures with known truth: up-the-ramp data and dithered star fields.

:func:`simulate_ramp` builds a :class:`~stcal_models.models.RampModel` frame by frame
(Poisson charge, per-read Gaussian read noise, bias, optional nonlinearity, cosmic rays,
snowballs, saturation) together with the matching reference models and the truth that
produced it.  :func:`simulate_scene` builds dithered rate images of one star field, each
with a gwcs imaging WCS, for the mosaic steps.

Everything is NumPy on the host and reproducible from ``seed``: the scene, the cosmic
rays, the snowballs and the noise of each block of rows draw from independent streams
(``numpy.random.SeedSequence(seed, spawn_key=...)``), so the result does not depend on
the number of threads used.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .algorithms.base import check_int, check_number
from .models import (
    Catalog,
    DarkRef,
    ExposureMeta,
    GainRef,
    ImageModel,
    LinearityRef,
    RampModel,
    ReadnoiseRef,
    RefMeta,
    SaturationRef,
)

__all__ = [
    "ExposureRefs",
    "RampTruth",
    "SceneTruth",
    "SimulatedExposure",
    "SimulatedScene",
    "imaging_wcs",
    "simulate_ramp",
    "simulate_scene",
]

ADC_MAX = 65535.0
"""Largest value the 16-bit A/D converter records (DN)."""

_BLOCK_ROWS = 128  # rows per noise stream / thread task (fixed: results do not depend on threads)
_OWNER = "simulate_ramp"
_SCENE = "simulate_scene"

# Independent random streams: spawn_key[0] of SeedSequence(seed, spawn_key=...).
_STREAM_SCENE, _STREAM_CR, _STREAM_SNOW, _STREAM_NOISE = 0, 1, 2, 3

_JUMP_DTYPE = np.dtype(
    [
        ("integration", np.int32),
        ("group", np.int32),
        ("y", np.int32),
        ("x", np.int32),
        ("amplitude", np.float32),
        ("time", np.float64),
    ]
)


# =============================================================================== results
@dataclasses.dataclass(frozen=True, eq=False)
class RampTruth:
    """What :func:`simulate_ramp` put into the data.

    Attributes
    ----------
    flux : ndarray, float64, (ny, nx)
        True count rate in DN/s, sky included (dark current excluded).
    jumps : ndarray, structured
        One row per point cosmic-ray hit: ``integration``, ``group`` (first affected
        0-based group), ``y``, ``x``, ``amplitude`` (DN) and ``time`` (s after reset).
    jump_mask : ndarray, bool, (nints, ngroups, ny, nx)
        True at the first affected group of every hit, snowball footprints included.
    saturated : ndarray, bool, (nints, ngroups, ny, nx)
        True where the group value reached the saturation level (every read averaged
        into the group was saturated).
    bias, gain, readnoise, dark_current : float or ndarray (ny, nx)
        As given: DN, e-/DN, CDS read noise in DN, DN/s.
    saturation : float or ndarray (ny, nx)
        The clip level actually applied: ``min(saturation, 65535)`` DN.
    nonlinearity : float or None
        ``alpha`` of ``s_meas = s * (1 - alpha * s)`` (bias-subtracted DN).
    linearity_coeffs : ndarray, float64, (ncoeffs,) or None
        Polynomial (lowest power first) mapping bias-subtracted measured DN to linear DN.
    snowballs : list of tuple
        ``(integration, group, y, x, radius)`` of each injected snowball.
    """

    flux: np.ndarray
    jumps: np.ndarray
    jump_mask: np.ndarray
    saturated: np.ndarray
    bias: float | np.ndarray
    gain: float | np.ndarray
    readnoise: float | np.ndarray
    dark_current: float | np.ndarray
    saturation: float | np.ndarray
    nonlinearity: float | None
    linearity_coeffs: np.ndarray | None
    snowballs: list[tuple[int, int, int, int, float]]


@dataclasses.dataclass(frozen=True, eq=False)
class ExposureRefs:
    """Reference models matching a simulated exposure.

    ``linearity`` is set when a nonlinearity was simulated and ``dark`` when
    ``dark_current > 0``: a frame-level dark ramp (``meta.nframes=1``, ``groupgap=0``) of
    the noiseless dark signal in DN, with ``average_dark_current`` in e-/s.
    """

    gain: GainRef
    readnoise: ReadnoiseRef
    saturation: SaturationRef
    linearity: LinearityRef | None = None
    dark: DarkRef | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class SimulatedExposure:
    """A simulated ramp (``ramp``), its ``truth`` and its reference models (``refs``)."""

    ramp: RampModel
    truth: RampTruth
    refs: ExposureRefs

    def __repr__(self) -> str:
        return (
            f"SimulatedExposure({self.ramp!r}, {len(self.truth.jumps)} cosmic rays, "
            f"{len(self.truth.snowballs)} snowballs, "
            f"{int(self.truth.saturated.any(axis=(0, 1)).sum())} saturated pixels)"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class SceneTruth:
    """What :func:`simulate_scene` put into the images.

    Attributes
    ----------
    catalog : Catalog
        The true stars: ``ra``, ``dec`` (deg), ``flux`` (DN/s, total) and ``x``, ``y`` in
        the undithered reference pixel frame (tangent point at the frame centre).
    sky_levels : ndarray, float64, (n_exposures,)
        Sky level of each exposure, DN/s.
    outlier_masks : list of ndarray, bool, (ny, nx)
        Pixels where a cosmic-ray-like outlier was added.
    catalogs : list of Catalog
        Per exposure: the true stars with ``x``, ``y`` their 0-based pixel positions there.
    dither : ndarray, float64, (n_exposures, 2)
        ``(dx, dy)`` pixel offsets of each exposure.
    """

    catalog: Catalog
    sky_levels: np.ndarray
    outlier_masks: list[np.ndarray]
    catalogs: list[Catalog]
    dither: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class SimulatedScene:
    """Dithered rate images (``exposures``, :class:`ImageModel` with a gwcs WCS) and ``truth``."""

    exposures: list[ImageModel]
    truth: SceneTruth

    def __repr__(self) -> str:
        shape = self.exposures[0].shape if self.exposures else ()
        return (
            f"SimulatedScene({len(self.exposures)} exposures of {shape}, "
            f"{len(self.truth.catalog)} stars)"
        )


# =============================================================================== ramps
def simulate_ramp(
    *,
    shape: tuple[int, int] = (256, 256),
    nints: int = 1,
    ngroups: int | None = None,
    meta: ExposureMeta | None = None,
    nframes: int = 1,
    groupgap: int = 0,
    frame_time: float = 10.73677,
    read_pattern: Sequence[Sequence[int]] | None = None,
    seed: int = 0,
    flux: float | np.ndarray | None = None,
    sky: float = 1.0,
    n_stars: int = 20,
    gain: float | np.ndarray = 2.0,
    readnoise: float | np.ndarray = 10.0,
    bias: float | np.ndarray = 1000.0,
    dark_current: float | np.ndarray = 0.0,
    cr_rate: float = 0.0,
    cr_amplitude: tuple[float, float] = (200.0, 5000.0),
    saturation: float | np.ndarray = 60000.0,
    nonlinearity: float | None = None,
    zeroframe: bool = False,
    snowballs: int = 0,
) -> SimulatedExposure:
    """Simulate up-the-ramp data with known truth.

    Charge accumulates frame by frame: every read adds a Poisson draw of
    ``(flux + dark_current) * gain * dt`` electrons (``dt`` the time since the previous
    read), converted to DN.  A read at 1-based index ``k`` happens at ``k * frame_time``
    after reset.  Cosmic rays add their amplitude (DN) to every read after their arrival
    time.  The accumulated signal ``s`` (DN, bias-subtracted) passes the nonlinearity
    ``s * (1 - alpha * s)``, then each read gets independent Gaussian read noise of
    ``readnoise / sqrt(2)`` DN and the bias; reads are clipped at 0 and at the saturation
    level (which stays reached: a saturated pixel remains saturated for the rest of the
    integration).  A group (resultant) is the mean of its reads (JWST
    ``nframes``/``groupgap``/``nskip`` pattern, or an explicit Roman read pattern); a group
    whose reads are all saturated is exactly the saturation level.  Integrations start
    from a reset.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` pixels.
    nints : int
        Integrations (ignored when ``meta`` is given).
    ngroups : int or None
        Groups per integration; ``None`` means 10, or ``len(read_pattern)``.
    meta : ExposureMeta or None
        Full readout description; when given it overrides ``nints``, ``ngroups``,
        ``nframes``, ``groupgap``, ``frame_time`` and ``read_pattern``.
    nframes, groupgap : int
        JWST frames averaged per group and frames dropped between groups.
    frame_time : float
        Seconds per frame (read).
    read_pattern : list of list of int or None
        Roman-style resultants: the 1-based read indices averaged into each.
    seed : int
        Seed of every random draw; the same seed gives identical output.
    flux : None, float or ndarray (ny, nx)
        Count rate in DN/s.  ``None``: a scene of ``sky`` plus ``n_stars`` Gaussian point
        sources, a few bright enough to saturate.  A scalar or array is the total rate
        (``sky`` and ``n_stars`` are then not used).
    sky : float
        Sky level of the default scene, DN/s.
    n_stars : int
        Point sources of the default scene.
    gain : float or ndarray
        e-/DN.
    readnoise : float or ndarray
        CDS read noise in DN (the noise of a two-read difference, as the JWST reference
        file holds it); one read has ``readnoise / sqrt(2)``.
    bias : float or ndarray
        DN added to every read.
    dark_current : float or ndarray
        DN/s (Poisson, like the flux).
    cr_rate : float
        Expected cosmic-ray hits per pixel per second.
    cr_amplitude : (float, float)
        Range of hit amplitudes in DN (drawn log-uniform).
    saturation : float or ndarray
        Full well in DN including bias; values clip at ``min(saturation, 65535)``.
    nonlinearity : float or None
        ``alpha`` (1/DN) of ``s_meas = s * (1 - alpha * s)``; ``alpha * (saturation - bias)``
        must stay below 0.2.
    zeroframe : bool
        Also record ``ramp.zeroframe``: the first read of each integration.
    snowballs : int
        Large cosmic-ray "snowballs" to inject: a saturated core of radius 3-6 px in a
        decaying halo out to twice the radius, arriving during a group >= 1.

    Returns
    -------
    SimulatedExposure
        ``ramp`` (NumPy :class:`RampModel`), ``truth`` (:class:`RampTruth`) and ``refs``
        (:class:`ExposureRefs`).

    Raises
    ------
    TypeError, ValueError
        For arguments of the wrong type or out of range, naming the argument.
    """
    ny, nx = _check_shape(_OWNER, shape)
    check_int(_OWNER, "seed", seed, minimum=0)
    meta = _exposure_meta(meta, nints, ngroups, nframes, groupgap, frame_time, read_pattern)
    check_number(_OWNER, "sky", sky, minimum=0.0)
    check_int(_OWNER, "n_stars", n_stars, minimum=0)
    check_number(_OWNER, "cr_rate", cr_rate, minimum=0.0)
    check_int(_OWNER, "snowballs", snowballs, minimum=0)
    if not isinstance(zeroframe, bool):
        raise TypeError(f"{_OWNER}.zeroframe: expected bool, got {type(zeroframe).__name__}")
    cr_lo, cr_hi = _check_range(_OWNER, "cr_amplitude", cr_amplitude)
    gain_m = _pixel_map("gain", gain, (ny, nx), minimum=0.0, exclusive=True)
    readnoise_m = _pixel_map("readnoise", readnoise, (ny, nx), minimum=0.0)
    bias_m = _pixel_map("bias", bias, (ny, nx), minimum=0.0)
    dark_m = _pixel_map("dark_current", dark_current, (ny, nx), minimum=0.0)
    saturation_m = _pixel_map("saturation", saturation, (ny, nx), minimum=0.0, exclusive=True)
    clip = np.minimum(saturation_m, ADC_MAX)
    if np.any(np.asarray(clip) <= np.asarray(bias_m)):
        raise ValueError(f"{_OWNER}.saturation: expected a level above the bias everywhere")
    alpha = None
    coeffs = None
    if nonlinearity is not None:
        check_number(_OWNER, "nonlinearity", nonlinearity, minimum=0.0)
        alpha = float(nonlinearity)
        span = float(np.max(np.asarray(clip) - np.asarray(bias_m)))
        if alpha * span >= 0.2:
            raise ValueError(
                f"{_OWNER}.nonlinearity: expected alpha * (saturation - bias) < 0.2, got "
                f"{alpha:g} * {span:g} = {alpha * span:g}"
            )
        coeffs = _inverse_nonlinearity(alpha, span) if alpha > 0 else np.array([0.0, 1.0])

    pattern = meta.resultant_reads
    ft = meta.frame_time
    last_read = pattern[-1][-1]
    t_int = ft * last_read

    if flux is None:
        flux_m = _default_scene(seed, (ny, nx), sky, n_stars, clip, bias_m, gain_m, t_int)
    else:
        flux_m = np.broadcast_to(
            np.asarray(_pixel_map("flux", flux, (ny, nx), minimum=0.0), dtype=np.float64),
            (ny, nx),
        ).copy()

    hits, table = _cosmic_rays(seed, meta, (ny, nx), cr_rate, cr_lo, cr_hi)
    snow_hits, snow_list = _snowballs(seed, meta, (ny, nx), snowballs, clip)
    hits = {k: np.concatenate([hits[k], snow_hits[k]]) for k in hits}

    data = np.empty((meta.nints, meta.ngroups, ny, nx), dtype=np.float32)
    saturated = np.zeros(data.shape, dtype=bool)
    zframe = np.empty((meta.nints, ny, nx), dtype=np.float32) if zeroframe else None
    run = _RampRun(
        meta=meta,
        seed=seed,
        rate_e=(flux_m + dark_m) * gain_m,
        gain=gain_m,
        sigma=readnoise_m / math.sqrt(2.0),
        bias=bias_m,
        clip=clip,
        alpha=alpha,
        hits=hits,
        data=data,
        saturated=saturated,
        zeroframe=zframe,
    )
    tasks = [
        (i, r0, min(r0 + _BLOCK_ROWS, ny))
        for i in range(meta.nints)
        for r0 in range(0, ny, _BLOCK_ROWS)
    ]
    workers = min(len(tasks), os.cpu_count() or 1, 8)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(lambda t: run.block(*t), tasks):
                pass
    else:
        for task in tasks:
            run.block(*task)

    jump_mask = np.zeros(data.shape, dtype=bool)
    jump_mask[hits["integration"], hits["group"], hits["y"], hits["x"]] = True

    ramp = RampModel(data=data, zeroframe=zframe, meta=meta)
    refs = _exposure_refs(meta, (ny, nx), gain_m, readnoise_m, clip, coeffs, dark_m)
    truth = RampTruth(
        flux=flux_m,
        jumps=table,
        jump_mask=jump_mask,
        saturated=saturated,
        bias=bias_m,
        gain=gain_m,
        readnoise=readnoise_m,
        dark_current=dark_m,
        saturation=clip,
        nonlinearity=alpha,
        linearity_coeffs=coeffs,
        snowballs=snow_list,
    )
    return SimulatedExposure(ramp=ramp, truth=truth, refs=refs)


@dataclasses.dataclass
class _RampRun:
    """Shared inputs of the per-(integration, row block) ramp simulation."""

    meta: ExposureMeta
    seed: int
    rate_e: Any
    gain: Any
    sigma: Any
    bias: Any
    clip: Any
    alpha: float | None
    hits: dict[str, np.ndarray]
    data: np.ndarray
    saturated: np.ndarray
    zeroframe: np.ndarray | None

    def block(self, integration: int, r0: int, r1: int) -> None:
        """Simulate rows ``r0:r1`` of one integration, read by read, into the outputs."""
        meta = self.meta
        pattern = meta.resultant_reads
        group_of = {k: g for g, reads in enumerate(pattern) for k in reads}
        last_of_group = {reads[-1]: g for g, reads in enumerate(pattern)}
        needed = sorted(set(group_of) | ({1} if self.zeroframe is not None else set()))
        rng = np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(_STREAM_NOISE, integration, r0))
        )
        rows = slice(r0, r1)
        nx = self.data.shape[-1]
        bshape = (r1 - r0, nx)
        rate_e, gain, sigma, bias, clip = (
            _rows(v, rows) for v in (self.rate_e, self.gain, self.sigma, self.bias, self.clip)
        )
        clip32 = np.broadcast_to(np.asarray(clip, dtype=np.float32), bshape)
        sigma32 = np.asarray(sigma, dtype=np.float32)

        h = self.hits
        sel = (h["integration"] == integration) & (h["y"] >= r0) & (h["y"] < r1)
        h_read, h_y, h_x, h_amp = h["read"][sel], h["y"][sel] - r0, h["x"][sel], h["amp"][sel]

        charge = np.zeros(bshape, dtype=np.float64)  # electrons
        extra = np.zeros(bshape, dtype=np.float64)  # cosmic-ray DN
        group_sum = np.zeros(bshape, dtype=np.float32)
        n_sat = np.zeros(bshape, dtype=np.int32)
        held = np.zeros(bshape, dtype=bool)
        s_cap = None if not self.alpha else 0.5 / self.alpha
        previous = 0
        for k in needed:
            lam = rate_e * ((k - previous) * meta.frame_time)
            charge += rng.poisson(np.broadcast_to(lam, bshape))
            arrived = (h_read > previous) & (h_read <= k)
            if np.any(arrived):
                np.add.at(extra, (h_y[arrived], h_x[arrived]), h_amp[arrived])
            signal = charge / gain + extra
            if self.alpha:
                signal = np.minimum(signal, s_cap)
                signal = signal * (1.0 - self.alpha * signal)
            value = (bias + signal).astype(np.float32)
            value += rng.standard_normal(bshape, dtype=np.float32) * sigma32
            value = np.maximum(value, np.float32(0.0), dtype=np.float32)
            held |= value >= clip32
            value = np.where(held, clip32, value).astype(np.float32, copy=False)
            if k == 1 and self.zeroframe is not None:
                self.zeroframe[integration, rows] = value
            g = group_of.get(k)
            if g is not None:
                group_sum += value
                n_sat += held
                if k in last_of_group:
                    nread = len(pattern[g])
                    full = n_sat == nread
                    mean = group_sum / np.float32(nread)
                    self.data[integration, g, rows] = np.where(full, clip32, mean)
                    self.saturated[integration, g, rows] = full
                    group_sum[...] = 0.0
                    n_sat[...] = 0
            previous = k


def _rows(value: Any, rows: slice) -> Any:
    return value[rows] if isinstance(value, np.ndarray) and value.ndim == 2 else value


def _exposure_meta(
    meta, nints, ngroups, nframes, groupgap, frame_time, read_pattern
) -> ExposureMeta:
    if meta is not None:
        if not isinstance(meta, ExposureMeta):
            raise TypeError(
                f"{_OWNER}.meta: expected ExposureMeta or None, got {type(meta).__name__}"
            )
        return meta
    check_int(_OWNER, "nints", nints, minimum=1)
    if ngroups is not None:
        check_int(_OWNER, "ngroups", ngroups, minimum=1)
    check_number(_OWNER, "frame_time", frame_time, minimum=0.0, exclusive_minimum=True)
    if read_pattern is not None:
        try:
            pattern = [list(r) for r in read_pattern]
        except TypeError as exc:
            raise TypeError(
                f"{_OWNER}.read_pattern: expected a list of lists of 1-based read indices, "
                f"got {type(read_pattern).__name__}"
            ) from exc
        if ngroups is not None and ngroups != len(pattern):
            raise ValueError(
                f"{_OWNER}.ngroups: expected len(read_pattern) = {len(pattern)}, got {ngroups}"
            )
        return ExposureMeta(
            nints=nints,
            ngroups=len(pattern),
            frame_time=float(frame_time),
            read_pattern=pattern,
            instrument="WFI",
            detector="WFI01",
            exposure_type="WFI_IMAGE",
        )
    check_int(_OWNER, "nframes", nframes, minimum=1)
    check_int(_OWNER, "groupgap", groupgap, minimum=0)
    return ExposureMeta(
        nints=nints,
        ngroups=10 if ngroups is None else ngroups,
        nframes=nframes,
        groupgap=groupgap,
        frame_time=float(frame_time),
    )


def _check_shape(owner: str, shape: Any) -> tuple[int, int]:
    try:
        ny, nx = shape
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{owner}.shape: expected (ny, nx), got {shape!r}") from exc
    for name, v in (("ny", ny), ("nx", nx)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(
                f"{owner}.shape: expected positive ints (ny, nx), got {shape!r} ({name})"
            )
    return int(ny), int(nx)


def _check_range(owner: str, name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{owner}.{name}: expected (low, high), got {value!r}") from exc
    if not (0.0 < lo <= hi < math.inf):
        raise ValueError(f"{owner}.{name}: expected 0 < low <= high, finite; got {value!r}")
    return lo, hi


def _pixel_map(
    name: str,
    value: Any,
    shape: tuple[int, int],
    *,
    minimum: float,
    exclusive: bool = False,
    owner: str = _OWNER,
) -> float | np.ndarray:
    """A scalar (as float) or an (ny, nx) float64 array, finite and above ``minimum``."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        check_number(owner, name, float(value), minimum=minimum, exclusive_minimum=exclusive)
        return float(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{owner}.{name}: expected a number or a NumPy array {shape}, got {type(value).__name__}"
        )
    if value.shape != shape:
        raise ValueError(f"{owner}.{name}: expected shape {shape}, got {value.shape}")
    arr = np.array(value, dtype=np.float64)  # a copy: the truth never aliases caller arrays
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}.{name}: expected finite values")
    low = float(arr.min())
    if low < minimum or (exclusive and low <= minimum):
        op = ">" if exclusive else ">="
        raise ValueError(f"{owner}.{name}: expected values {op} {minimum}, got minimum {low}")
    return arr


def _inverse_nonlinearity(alpha: float, span: float) -> np.ndarray:
    """Coefficients (lowest power first) of a polynomial ``s(m)`` inverting ``m = s - alpha s^2``.

    The exact inverse is ``s = m + m**2 q(m)`` with ``q(m) = 4 alpha / (1 + sqrt(1 - 4 alpha m))**2``;
    ``q`` is fitted by least squares on ``m`` in ``[-0.02 span, 1.02 span]``, so the polynomial
    has no constant term and a unit linear term.  The degree (at most 9 in all) is the one
    whose float32-rounded coefficients (as :class:`LinearityRef` stores them) invert best.
    """
    m = np.linspace(-0.02 * span, 1.02 * span, 2001)
    root = 1.0 + np.sqrt(1.0 - 4.0 * alpha * m)
    q = 4.0 * alpha / root**2
    exact = 2.0 * m / root
    best, best_err = None, math.inf
    for degree in range(0, 8):
        fit = np.polynomial.Polynomial.fit(m, q, degree).convert().coef
        coef = np.concatenate([[0.0, 1.0], fit])
        approx = np.polynomial.polynomial.polyval(m, coef.astype(np.float32).astype(np.float64))
        err = float(np.max(np.abs(approx - exact) / np.maximum(np.abs(exact), 0.01 * span)))
        if err < best_err:
            best, best_err = coef, err
        if err < 1e-7:
            break
    return best


def _default_scene(seed, shape, sky, n_stars, clip, bias, gain, t_int) -> np.ndarray:
    """Sky plus Gaussian stars; about one in seven (at least one) saturates within ``t_int``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_SCENE,)))
    ny, nx = shape
    flux = np.full(shape, float(sky), dtype=np.float64)
    if n_stars == 0:
        return flux
    sigma = rng.uniform(1.0, 1.6, n_stars)
    x = rng.uniform(-0.5, nx - 0.5, n_stars)
    y = rng.uniform(-0.5, ny - 0.5, n_stars)
    well = float(np.min(np.asarray(clip) - np.asarray(bias)))
    sat_peak = well / t_int  # DN/s at which a pixel saturates by the last read
    peak = np.exp(rng.uniform(np.log(0.5), np.log(0.3 * sat_peak), n_stars))
    n_bright = max(1, n_stars // 7)
    peak[:n_bright] = rng.uniform(3.0, 30.0, n_bright) * sat_peak
    total = peak * 2.0 * np.pi * sigma**2
    return flux + _render_stars(shape, x, y, total, sigma)


def _render_stars(shape, x, y, total, sigma) -> np.ndarray:
    """Pixel-integrated circular Gaussians as one (ny, n) @ (n, nx) product."""
    from scipy.special import erf

    ny, nx = shape

    def profile(n, centre):
        edges = np.arange(n + 1, dtype=np.float64) - 0.5
        z = (edges[:, None] - centre[None, :]) / (np.sqrt(2.0) * sigma[None, :])
        return 0.5 * np.diff(erf(z), axis=0)  # (n, nstars)

    gy = profile(ny, np.asarray(y, dtype=np.float64))
    gx = profile(nx, np.asarray(x, dtype=np.float64))
    return (gy * np.asarray(total, dtype=np.float64)[None, :]) @ gx.T


def _group_of_reads(meta: ExposureMeta, reads: np.ndarray) -> np.ndarray:
    """First group whose last read is at or after each 1-based read index."""
    last = np.array([r[-1] for r in meta.resultant_reads])
    return np.searchsorted(last, reads, side="left").astype(np.int32)


def _empty_hits() -> dict[str, np.ndarray]:
    return {
        "integration": np.zeros(0, np.int32),
        "group": np.zeros(0, np.int32),
        "read": np.zeros(0, np.int64),
        "y": np.zeros(0, np.int32),
        "x": np.zeros(0, np.int32),
        "amp": np.zeros(0, np.float64),
    }


def _cosmic_rays(seed, meta, shape, rate, lo, hi):
    """Point hits: Poisson count per integration, uniform position and arrival time."""
    ny, nx = shape
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_CR,)))
    ft = meta.frame_time
    last_read = meta.resultant_reads[-1][-1]
    t_int = ft * last_read
    counts = (
        rng.poisson(rate * t_int * ny * nx, meta.nints) if rate > 0 else np.zeros(meta.nints, int)
    )
    n = int(counts.sum())
    integ = np.repeat(np.arange(meta.nints, dtype=np.int32), counts)
    y = rng.integers(0, ny, n).astype(np.int32)
    x = rng.integers(0, nx, n).astype(np.int32)
    time = rng.uniform(0.0, t_int, n)
    amp = np.exp(rng.uniform(math.log(lo), math.log(hi), n)).astype(np.float32)
    read = np.minimum(np.floor(time / ft).astype(np.int64) + 1, last_read)
    group = _group_of_reads(meta, read)
    order = np.lexsort((x, y, time, integ))
    integ, group, read, y, x, time, amp = (a[order] for a in (integ, group, read, y, x, time, amp))
    table = np.zeros(n, dtype=_JUMP_DTYPE)
    table["integration"], table["group"], table["y"], table["x"] = integ, group, y, x
    table["amplitude"], table["time"] = amp, time
    hits = {
        "integration": integ,
        "group": group,
        "read": read,
        "y": y,
        "x": x,
        "amp": amp.astype(np.float64),
    }
    return hits, table


def _snowballs(seed, meta, shape, count, clip):
    """Snowball footprints as per-pixel hits: saturating core, exponential halo."""
    hits = _empty_hits()
    if count == 0:
        return hits, []
    ny, nx = shape
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_SNOW,)))
    pattern = meta.resultant_reads
    big = 4.0 * float(np.max(clip))
    parts = []
    record = []
    for _ in range(count):
        integ = int(rng.integers(0, meta.nints))
        group = int(rng.integers(1, meta.ngroups)) if meta.ngroups > 1 else 0
        first = pattern[group - 1][-1] + 1 if group > 0 else 1
        read = int(rng.integers(first, pattern[group][-1] + 1))
        yc, xc = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        radius = float(rng.uniform(3.0, 6.0))
        halo = float(rng.uniform(1000.0, 4000.0))
        reach = int(math.ceil(2.0 * radius))
        yy, xx = np.mgrid[
            max(0, yc - reach) : min(ny, yc + reach + 1),
            max(0, xc - reach) : min(nx, xc + reach + 1),
        ]
        d = np.hypot(yy - yc, xx - xc)
        inside = d <= 2.0 * radius
        yy, xx, d = yy[inside], xx[inside], d[inside]
        amp = np.where(d <= radius, big, halo * np.exp(-2.5 * (d - radius) / radius))
        m = yy.size
        parts.append(
            {
                "integration": np.full(m, integ, np.int32),
                "group": np.full(m, group, np.int32),
                "read": np.full(m, read, np.int64),
                "y": yy.astype(np.int32),
                "x": xx.astype(np.int32),
                "amp": amp,
            }
        )
        record.append((integ, group, yc, xc, radius))
    hits = {k: np.concatenate([p[k] for p in parts]) for k in hits}
    return hits, record


def _exposure_refs(meta, shape, gain, readnoise, clip, coeffs, dark) -> ExposureRefs:
    ny, nx = shape
    rmeta = dict(
        instrument=meta.instrument, detector=meta.detector, xstart=meta.xstart, ystart=meta.ystart
    )

    def full(v):
        return np.broadcast_to(np.asarray(v, dtype=np.float32), shape).copy()

    linearity = None
    if coeffs is not None:
        c = np.broadcast_to(coeffs.astype(np.float32)[:, None, None], (coeffs.size, ny, nx)).copy()
        linearity = LinearityRef(coeffs=c, meta=RefMeta(**rmeta, units="DN"))
    dark_ref = None
    if np.any(np.asarray(dark) > 0):
        if meta.read_pattern is None:
            nframes_dark = meta.ngroups * (meta.nframes + meta.groupgap) + meta.nskip
        else:
            nframes_dark = meta.resultant_reads[-1][-1]
        times = meta.frame_time * np.arange(1, nframes_dark + 1, dtype=np.float64)
        ramp = (times[:, None, None] * np.broadcast_to(np.asarray(dark, np.float64), shape)).astype(
            np.float32
        )
        avg = np.asarray(np.asarray(dark) * np.asarray(gain), dtype=np.float32)
        dark_ref = DarkRef(
            data=ramp,
            average_dark_current=avg,
            meta=RefMeta(**rmeta, units="DN", nframes=1, groupgap=0),
        )
    return ExposureRefs(
        gain=GainRef(data=full(gain), meta=RefMeta(**rmeta, units="electron/DN")),
        readnoise=ReadnoiseRef(data=full(readnoise), meta=RefMeta(**rmeta, units="DN")),
        saturation=SaturationRef(data=full(clip), meta=RefMeta(**rmeta, units="DN")),
        linearity=linearity,
        dark=dark_ref,
    )


# =============================================================================== scenes
_DEFAULT_DITHER = ((0.0, 0.0), (5.25, 3.5), (-3.75, 7.25), (8.5, -4.75), (-6.5, -5.25))


def simulate_scene(
    *,
    n_exposures: int = 3,
    shape: tuple[int, int] = (256, 256),
    n_stars: int = 50,
    seed: int = 0,
    pixel_scale: float = 0.031,
    ra: float = 10.0,
    dec: float = -20.0,
    dither: Sequence[tuple[float, float]] | None = None,
    sky_levels: Sequence[float] | None = None,
    outlier_fraction: float = 1e-3,
    psf_sigma: float = 1.5,
    star_flux: tuple[float, float] = (20.0, 2000.0),
    exptime: float = 100.0,
    gain: float = 2.0,
    readnoise: float = 0.02,
) -> SimulatedScene:
    """Simulate dithered rate images of one star field, each with a gwcs imaging WCS.

    Exposure ``j`` has its reference pixel (tangent point ``ra``, ``dec``) at the frame
    centre plus ``dither[j]``, so every star sits ``dither[j]`` pixels away from its
    reference-frame position; north is up and east left (``CD = diag(-scale, scale)``).

    Parameters
    ----------
    n_exposures : int
        Number of images.
    shape : (int, int)
        ``(ny, nx)`` of each image.
    n_stars : int
        Stars, placed so that they lie inside every exposure.
    seed : int
        Seed of every random draw.
    pixel_scale : float
        arcsec per pixel.
    ra, dec : float
        Tangent point, deg.
    dither : sequence of (dx, dy) or None
        Pixel offsets per exposure; ``None`` cycles a small sub-pixel pattern.
    sky_levels : sequence of float or None
        Sky per exposure, DN/s; ``None`` draws uniformly in 0.5-2.0.
    outlier_fraction : float
        Fraction of pixels per exposure given a cosmic-ray-like outlier (30-300 sigma).
    psf_sigma : float
        Gaussian PSF sigma, pixels.
    star_flux : (float, float)
        Range of total star fluxes in DN/s (log-uniform).
    exptime : float
        Exposure time (s) setting the Poisson variance ``rate / (gain * exptime)``.
    gain : float
        e-/DN.
    readnoise : float
        Read-noise sigma of the rate image, DN/s (``var_rnoise = readnoise**2``).

    Returns
    -------
    SimulatedScene
        ``exposures`` (list of NumPy :class:`ImageModel`: float32 ``data``, ``err``,
        ``var_poisson``, ``var_rnoise``; uint32 zero ``dq``; ``wcs``) and ``truth``.
    """
    ny, nx = _check_shape(_SCENE, shape)
    check_int(_SCENE, "n_exposures", n_exposures, minimum=1)
    check_int(_SCENE, "n_stars", n_stars, minimum=0)
    check_int(_SCENE, "seed", seed, minimum=0)
    check_number(_SCENE, "pixel_scale", pixel_scale, minimum=0.0, exclusive_minimum=True)
    check_number(_SCENE, "ra", ra, minimum=0.0, maximum=360.0)
    check_number(_SCENE, "dec", dec, minimum=-90.0, maximum=90.0)
    check_number(_SCENE, "outlier_fraction", outlier_fraction, minimum=0.0, maximum=1.0)
    check_number(_SCENE, "psf_sigma", psf_sigma, minimum=0.0, exclusive_minimum=True)
    check_number(_SCENE, "exptime", exptime, minimum=0.0, exclusive_minimum=True)
    check_number(_SCENE, "gain", gain, minimum=0.0, exclusive_minimum=True)
    check_number(_SCENE, "readnoise", readnoise, minimum=0.0)
    flux_lo, flux_hi = _check_range(_SCENE, "star_flux", star_flux)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM_SCENE,)))

    if dither is None:
        offsets = np.array(
            [
                np.add(_DEFAULT_DITHER[j % len(_DEFAULT_DITHER)], 1.5 * (j // len(_DEFAULT_DITHER)))
                for j in range(n_exposures)
            ],
            dtype=np.float64,
        )
        offsets[0] = 0.0
    else:
        offsets = np.asarray(dither, dtype=np.float64)
        if offsets.shape != (n_exposures, 2) or not np.all(np.isfinite(offsets)):
            raise ValueError(
                f"{_SCENE}.dither: expected {n_exposures} finite (dx, dy) pairs, got shape "
                f"{offsets.shape}"
            )
    if sky_levels is None:
        skies = rng.uniform(0.5, 2.0, n_exposures)
    else:
        skies = np.asarray(sky_levels, dtype=np.float64)
        if skies.shape != (n_exposures,) or not np.all(np.isfinite(skies)) or np.any(skies < 0):
            raise ValueError(
                f"{_SCENE}.sky_levels: expected {n_exposures} finite values >= 0, got {sky_levels!r}"
            )

    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    margin = float(np.max(np.abs(offsets))) + 4.0 * psf_sigma + 2.0
    half_x, half_y = nx / 2.0 - margin, ny / 2.0 - margin
    if half_x <= 0 or half_y <= 0:
        raise ValueError(
            f"{_SCENE}.shape: expected a frame larger than twice the dither plus PSF margin "
            f"({2 * margin:.1f} px), got {shape!r}"
        )
    u = rng.uniform(-half_x, half_x, n_stars)
    v = rng.uniform(-half_y, half_y, n_stars)
    fluxes = np.exp(rng.uniform(math.log(flux_lo), math.log(flux_hi), n_stars))
    ref_wcs = imaging_wcs(shape, (cx, cy), ra, dec, pixel_scale)
    star_ra, star_dec = ref_wcs(cx + u, cy + v, with_bounding_box=False)
    star_ra, star_dec = (
        np.atleast_1d(star_ra).astype(np.float64),
        np.atleast_1d(star_dec).astype(np.float64),
    )
    catalog = Catalog(x=cx + u, y=cy + v, ra=star_ra, dec=star_dec, flux=fluxes, name="truth")
    sigmas = np.full(n_stars, float(psf_sigma))

    exposures, catalogs, masks = [], [], []
    for j in range(n_exposures):
        dx, dy = offsets[j]
        x, y = cx + dx + u, cy + dy + v
        rate = skies[j] + _render_stars((ny, nx), x, y, fluxes, sigmas)
        var_p = rate / (gain * exptime)
        var_r = np.full((ny, nx), readnoise**2)
        err = np.sqrt(var_p + var_r)
        data = rate + rng.standard_normal((ny, nx)) * err
        n_out = int(rng.binomial(ny * nx, outlier_fraction))
        flat = rng.choice(ny * nx, size=n_out, replace=False)
        mask = np.zeros(ny * nx, dtype=bool)
        mask[flat] = True
        mask = mask.reshape(ny, nx)
        data[mask] += rng.uniform(30.0, 300.0, n_out) * err[mask]
        wcs = imaging_wcs(shape, (cx + dx, cy + dy), ra, dec, pixel_scale)
        exposures.append(
            ImageModel(
                data=data.astype(np.float32),
                dq=np.zeros((ny, nx), np.uint32),
                err=err.astype(np.float32),
                var_poisson=var_p.astype(np.float32),
                var_rnoise=var_r.astype(np.float32),
                wcs=wcs,
            )
        )
        catalogs.append(
            Catalog(
                x=x,
                y=y,
                ra=star_ra.copy(),
                dec=star_dec.copy(),
                flux=fluxes.copy(),
                name=f"exposure {j}",
            )
        )
        masks.append(mask)
    truth = SceneTruth(
        catalog=catalog, sky_levels=skies, outlier_masks=masks, catalogs=catalogs, dither=offsets
    )
    return SimulatedScene(exposures=exposures, truth=truth)


def imaging_wcs(
    shape: tuple[int, int],
    crpix: tuple[float, float],
    ra: float,
    dec: float,
    pixel_scale: float,
    rotation: float = 0.0,
):
    """A gwcs imaging WCS: detector (0-based x, y) -> ICRS through a TAN projection.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)``; sets the bounding box ``((-0.5, nx - 0.5), (-0.5, ny - 0.5))``.
    crpix : (float, float)
        0-based ``(x, y)`` pixel at the tangent point.
    ra, dec : float
        Tangent point, deg.
    pixel_scale : float
        arcsec per pixel.
    rotation : float
        Position angle of the detector y axis east of north, deg.
    """
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as m
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gwcs_wcs

    ny, nx = shape
    scale = pixel_scale / 3600.0
    theta = math.radians(rotation)
    cd = scale * np.array([[-math.cos(theta), math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    transform = (
        (m.Shift(-crpix[0]) & m.Shift(-crpix[1]))
        | m.AffineTransformation2D(matrix=cd, translation=[0.0, 0.0])
        | m.Pix2Sky_TAN()
        | m.RotateNative2Celestial(ra, dec, 180.0)
    )
    detector = cf.Frame2D(name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    wcs = gwcs_wcs.WCS([(detector, transform), (sky, None)])
    wcs.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return wcs
