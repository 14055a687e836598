"""Snowballs (NIR) and showers (MIRI): large jump events flagged on the host with scikit-image.

These steps work on whole 2-D DQ planes (regions may span any row chunk), so they run on
NumPy arrays on the host after the array-API kernel; :class:`JumpDetection` converts at
the boundary and back.

Regions and ellipses
    A region is an 8-connected set of flagged pixels (``skimage.measure.label``).  Its
    "ellipse" is described as ``((x_centre, y_centre), (minor, major), theta_deg)`` from the
    region's moments (``regionprops``): the full axis lengths are the moment-ellipse axes
    less one pixel (the extent of a contour through pixel centres), ``theta`` the
    orientation.  Regions covering (holes included) fewer pixels than the area threshold
    are ignored.
    Ellipses are drawn with ``skimage.draw.ellipse`` (pixel centres strictly inside) at the
    rounded centre with rounded half-axes.

Snowballs (``expand_large_events``)
    For every group after the first: regions of JUMP_DET pixels of at least
    ``min_jump_area`` pixels are snowball candidates; regions of pixels newly saturated in
    this group (or in the next one, for events that happened within a group) of at least
    ``min_sat_area`` pixels are saturated cores.  A candidate is a snowball when a core's
    centre lies inside its ellipse, when it is within ``edge_size`` of the detector edge,
    or always when ``sat_required_snowball`` is off.  Cores whose minor axis exceeds
    ``min_sat_radius_extend`` are grown by ``2 * sat_expand`` pixels (full axes) and
    flagged SATURATED from this group on; with ``mask_snowball_core_next_int`` the
    (ungrown) ellipses of those cores are flagged JUMP_DET in the following integration for
    ``snowball_time_masked_next_int`` seconds.  Snowball ellipses are enlarged by
    ``expand_factor`` (the minor axis is multiplied, the major axis grows by the same
    number of pixels, both capped at ``max_extended_width``) and flagged JUMP_DET in the
    group, except on saturated pixels.

Showers (``find_showers``)
    See :func:`find_showers`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Ellipse",
    "SnowballParams",
    "draw_ellipse",
    "expanded_half_axes",
    "find_ellipses",
    "find_showers",
    "flag_large_events_and_showers",
    "flag_snowballs",
    "point_inside_ellipse",
]

DO_NOT_USE = 1
SATURATED = 2
JUMP_DET = 4
REFERENCE_PIXEL = 1 << 31

#: Usable first differences (all integrations) needed before showers are searched for.
MIN_DIFFS_FOR_SHOWERS = 10

#: ``((x_centre, y_centre), (minor, major), theta_deg)``
Ellipse = tuple[tuple[float, float], tuple[float, float], float]


# ----------------------------------------------------------------------------- primitives
def find_ellipses(mask: np.ndarray, min_area: float) -> list[Ellipse]:
    """Ellipses of the 8-connected regions of ``mask`` covering at least ``min_area`` pixels.

    The area counts the region with its holes filled; the ellipse comes from the moments
    of the region's own pixels.
    """
    from skimage import measure

    labels = measure.label(np.asarray(mask) != 0, connectivity=2)
    out: list[Ellipse] = []
    for region in measure.regionprops(labels):
        if region.area_filled < min_area:
            continue
        cy, cx = region.centroid
        minor = float(region.axis_minor_length) - 1.0
        major = float(region.axis_major_length) - 1.0
        out.append(((float(cx), float(cy)), (minor, major), float(np.rad2deg(region.orientation))))
    return out


def draw_ellipse(
    shape: Sequence[int], centre: tuple[float, float], half_axes: tuple[float, float], theta: float
) -> np.ndarray:
    """Boolean image of an ellipse; ``centre=(x, y)``, ``half_axes=(along theta, across)``.

    The first half-axis lies along ``theta`` degrees measured from +x towards -y (image
    rows increase downwards), as ``skimage.draw.ellipse`` draws a column radius rotated by
    ``theta``.  Pixel centres strictly inside are set.
    """
    from skimage import draw

    image = np.zeros(tuple(int(s) for s in shape), dtype=bool)
    a, b = half_axes
    if a <= 0 or b <= 0:
        return image
    rr, cc = draw.ellipse(
        centre[1], centre[0], b, a, shape=image.shape, rotation=np.deg2rad(theta)
    )
    image[rr, cc] = True
    return image


def draw_rounded(shape, ellipse_centre, full_axes, theta) -> np.ndarray:
    """:func:`draw_ellipse` at the rounded centre with rounded half axes (``full / 2``)."""
    x, y = ellipse_centre
    a1, a2 = full_axes
    return draw_ellipse(shape, (round(x), round(y)), (round(a1 / 2), round(a2 / 2)), theta)


def point_inside_ellipse(point: tuple[float, float], ellipse: Ellipse) -> bool:
    """True when ``point=(x, y)`` is inside or on ``ellipse`` (major axis along ``theta``)."""
    (xc, yc), (a0, a1), theta = ellipse
    minor, major = min(a0, a1), max(a0, a1)
    if minor <= 0:
        return False
    t = math.radians(theta)
    dx, dy = point[0] - xc, point[1] - yc
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return (u / (major / 2)) ** 2 + (v / (minor / 2)) ** 2 <= 1


def expanded_half_axes(
    ellipse: Ellipse, expansion: float, by_ratio: bool, max_width: float
) -> tuple[int, int]:
    """Rounded half axes of an enlarged ellipse (both full axes capped at ``max_width``).

    ``by_ratio``: the minor axis is multiplied by ``expansion`` and the major axis grows
    by the same number of pixels (no very long flagged ellipses); otherwise ``expansion``
    pixels are added to both axes.
    """
    e0, e1 = ellipse[1]
    if by_ratio:
        if e1 < e0:
            a1, a2 = e0 + (expansion - 1.0) * e1, e1 * expansion
        else:
            a1, a2 = e0 * expansion, e1 + (expansion - 1.0) * e0
    else:
        a1, a2 = e0 + expansion, e1 + expansion
    a1, a2 = min(a1, max_width), min(a2, max_width)
    return round(a1 / 2), round(a2 / 2)


def extend_ellipses(
    gdq: np.ndarray,
    intg: int,
    grp: int,
    ellipses: Sequence[Ellipse],
    expansion: float,
    by_ratio: bool,
    groups_masked: int,
    max_width: float,
) -> None:
    """Flag enlarged ``ellipses`` JUMP_DET in groups ``grp .. grp+groups_masked`` (in place).

    Pixels saturated in a flagged group are excluded from it and from all later groups.
    """
    if not ellipses:
        return
    ngroups = gdq.shape[1]
    image = np.zeros(gdq.shape[-2:], dtype=bool)
    for ellipse in ellipses:
        half = expanded_half_axes(ellipse, expansion, by_ratio, max_width)
        x, y = ellipse[0]
        image |= draw_ellipse(image.shape, (round(x), round(y)), half, ellipse[2])
    last = min(grp + groups_masked + 1, ngroups)
    for g in range(grp, last):
        image &= (gdq[intg, g] & SATURATED) == 0
        gdq[intg, g][image] |= JUMP_DET


# ----------------------------------------------------------------------------- snowballs
def _near_edge(ellipse: Ellipse, low: float, high: float) -> bool:
    x, y = ellipse[0]
    return x < low or y < low or x > high or y > high


def flag_snowballs(gdq: np.ndarray, params: Any, group_time: float) -> int:
    """Flag snowballs in ``gdq`` (uint8, (nints, ngroups, ny, nx)) in place; returns their count.

    ``params`` is a :class:`~stcal_models.algorithms.jump.JumpDetection` (its snowball
    fields are read).
    """
    nints, ngroups, ny, nx = gdq.shape
    persist = np.zeros((nints, ny, nx), dtype=bool)
    sat_expand = 2 * params.sat_expand
    total = 0
    low = params.edge_size
    high = max(0, ny - params.edge_size)
    for intg in range(nints):
        for grp in range(1, ngroups):
            cur_sat = (gdq[intg, grp] & SATURATED) != 0
            prev_sat = (gdq[intg, grp - 1] & SATURATED) != 0
            new_sat = cur_sat & ~prev_sat
            if grp < ngroups - 1:
                next_new = ((gdq[intg, grp + 1] & SATURATED) != 0) & ~cur_sat
            else:
                next_new = np.zeros_like(cur_sat)
            sat_ellipses = find_ellipses(new_sat, params.min_sat_area)
            next_ellipses = find_ellipses(next_new, params.min_sat_area)
            jump_ellipses = find_ellipses((gdq[intg, grp] & JUMP_DET) != 0, params.min_jump_area)
            if params.sat_required_snowball:
                snowballs = []
                for jump in jump_ellipses:
                    if _near_edge(jump, low, high) or any(
                        point_inside_ellipse(sat[0], jump) for sat in (*sat_ellipses, *next_ellipses)
                    ):
                        snowballs.append(jump)
                _extend_saturation(
                    gdq, intg, grp, sat_ellipses, params.min_sat_radius_extend, sat_expand,
                    params.max_extended_width, persist,
                )
            else:
                snowballs = jump_ellipses
            total += len(snowballs)
            extend_ellipses(
                gdq, intg, grp, snowballs, params.expand_factor, True, 0, params.max_extended_width
            )
    if params.mask_snowball_core_next_int:
        masked = int(params.snowball_time_masked_next_int // group_time)
        last = min(masked, ngroups)
        if masked >= 1 and last > 1:
            for intg in range(1, nints):
                gdq[intg, 1:last][:, persist[intg - 1]] |= JUMP_DET
    return total


def _extend_saturation(gdq, intg, grp, sat_ellipses, min_radius, expand, max_width, persist):
    """Grow saturated cores wider than ``min_radius`` and flag them SATURATED from ``grp`` on."""
    image = np.zeros(gdq.shape[-2:], dtype=bool)
    core = np.zeros_like(image)
    for ellipse in sat_ellipses:
        if min(ellipse[1]) > min_radius:
            a1 = min(ellipse[1][0] + expand, max_width)
            a2 = min(ellipse[1][1] + expand, max_width)
            image |= draw_rounded(image.shape, ellipse[0], (a1, a2), ellipse[2])
            core |= draw_rounded(image.shape, ellipse[0], ellipse[1], ellipse[2])
    if image.any():
        gdq[intg, grp:, image] = SATURATED
    persist[intg] |= core


# ----------------------------------------------------------------------------- showers
def _ring_kernel(inner: float, outer: float) -> np.ndarray:
    """The normalised ring (annulus) kernel of ``astropy.convolution.Ring2DKernel``."""
    from astropy.convolution import Ring2DKernel

    return np.asarray(Ring2DKernel(inner, outer).array, dtype=np.float64)


def _convolve_nan(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Normalised convolution that interpolates over NaNs and keeps them NaN.

    Equivalent to ``astropy.convolution.convolve(image, kernel, preserve_nan=True)``:
    pixels outside the image count as zeros, NaNs are left out of each pixel's weights.
    """
    from scipy import ndimage

    valid = ~np.isnan(image)
    flipped = kernel[::-1, ::-1]
    num = ndimage.convolve(np.where(valid, image, 0.0).astype(np.float64), flipped,
                           mode="constant", cval=0.0)
    den = ndimage.convolve(valid.astype(np.float64), flipped, mode="constant", cval=1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~valid] = np.nan
    return out


def _nan_flagged(data: np.ndarray, gdq: np.ndarray) -> np.ndarray:
    """Data with NaN where GROUPDQ is exactly JUMP, SATURATED or DO_NOT_USE (or two of them).

    Groups carrying other combinations (e.g. ``SATURATED | JUMP_DET``) keep their values,
    as in stcal.
    """
    flagged = np.isin(gdq, (DO_NOT_USE, SATURATED, SATURATED | DO_NOT_USE, JUMP_DET,
                            JUMP_DET | DO_NOT_USE))
    return np.where(flagged, np.nan, data)


def _dnu_groups(gdq: np.ndarray) -> int:
    """Number of groups whose every pixel is DO_NOT_USE."""
    return int(np.all((gdq & DO_NOT_USE) != 0, axis=(2, 3)).sum())


def _revert_bright(max_amplitude, indata, ingdq, gdq) -> np.ndarray:
    """Undo new flags of a pixel-integration whose mean difference moved by more than allowed.

    The mean first difference is computed with groups flagged JUMP/SATURATED/DO_NOT_USE
    left out, before (``ingdq``) and after (``gdq``) shower flagging; unless the two agree
    within ``max_amplitude`` (NaN counts as disagreement) the pixel's flags in that
    integration return to ``ingdq``.
    """
    import warnings

    out = gdq.copy()
    for intg in range(indata.shape[0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            before = np.nanmean(np.diff(np.where((ingdq[intg] & 7) != 0, np.nan, indata[intg]), axis=0), axis=0)
            after = np.nanmean(np.diff(np.where((gdq[intg] & 7) != 0, np.nan, indata[intg]), axis=0), axis=0)
        revert = ~(np.abs(after - before) <= max_amplitude)
        out[intg][:, revert] = ingdq[intg][:, revert]
    return out


def find_showers(
    data: np.ndarray,
    gdq: np.ndarray,
    pixeldq: np.ndarray,
    readnoise: np.ndarray,
    *,
    nframes: int,
    snr_threshold: float,
    min_area: float,
    inner_radius: float,
    outer_radius: float,
    expand_ratio: float,
    groups_masked: int,
    max_width: float,
    max_amplitude: float,
    minimum_sigclip_groups: int,
    min_diffs: int,
) -> tuple[np.ndarray, int]:
    """Flag MIRI cosmic-ray showers: faint extended emission found by ring filtering.

    For each group the signal-to-noise ratio of the first difference against the
    pixel's median difference (noise ``sqrt(|median| + rn**2 / nframes)``; with at least
    ``minimum_sigclip_groups`` integrations the sigma-clipped median and standard deviation
    across integrations) is computed with pixels already flagged in that group left
    out, smoothed with a ring kernel of ``inner_radius``/``outer_radius``, and thresholded
    at ``snr_threshold``.  Regions of at least ``min_area`` pixels are showers; their
    ellipses, enlarged by ``expand_ratio``, are flagged JUMP_DET in the group and the
    ``groups_masked`` following groups.  Reference pixels are excluded, nothing is done
    with fewer than ``min_diffs`` usable differences, and a pixel's new flags are undone
    when they change its mean difference by more than ``max_amplitude``.

    ``data`` (electrons) and ``readnoise`` (electrons) are NumPy arrays; returns the new
    GROUPDQ and the number of showers.
    """
    import warnings

    nints, ngroups, ny, nx = gdq.shape
    total_diffs = nints * (ngroups - 1) - _dnu_groups(gdq)
    if total_diffs < min_diffs:
        return gdq, 0
    work = gdq.copy()
    values = _nan_flagged(data, work)
    refpix = (pixeldq & REFERENCE_PIXEL) != 0
    work[:, :, refpix] = DO_NOT_USE
    diffs = np.diff(values, axis=1)
    kernel = _ring_kernel(inner_radius, outer_radius)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if nints >= minimum_sigclip_groups:
            from astropy.stats import sigma_clipped_stats

            _, median, stddev = sigma_clipped_stats(
                np.ma.masked_invalid(diffs), sigma=5, axis=0
            )
            median = np.asarray(median, dtype=np.float64)
            sigma = np.asarray(stddev, dtype=np.float64)
        else:
            median = np.nanmedian(diffs, axis=(0, 1))
            sigma = np.sqrt(np.abs(median) + readnoise**2 / nframes)
    found = []
    for intg in range(nints):
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.abs(diffs[intg] - median) / sigma
        for grp in range(1, ngroups):
            plane = ratio[grp - 1].astype(np.float64, copy=True)
            plane[(work[intg, grp] & (JUMP_DET | SATURATED | DO_NOT_USE)) != 0] = np.nan
            smooth = _convolve_nan(plane, kernel)
            with np.errstate(invalid="ignore"):
                extended = smooth > snr_threshold
            ellipses = find_ellipses(extended, min_area)
            if ellipses:
                found.append((intg, grp, ellipses))
    out = work.copy()
    total = 0
    for intg, grp, ellipses in found:
        total += len(ellipses)
        extend_ellipses(out, intg, grp, ellipses, expand_ratio, True, groups_masked, max_width)
    out = _revert_bright(max_amplitude, data, gdq, out)
    return out, total


@dataclasses.dataclass(frozen=True)
class SnowballParams:
    """Parameters of NIR snowball flagging (the snowball fields of ``JumpDetection``).

    Used by :class:`~stcal_models.algorithms.ramp_fitting.LikelyRampFit` (stcal #491),
    whose own jump detection can be followed by snowball flagging; the defaults are the
    documented jump-step defaults.

    Parameters
    ----------
    min_sat_area : float
        Fewest pixels of a saturated core (default 1).
    min_jump_area : float
        Fewest pixels of a jump region to be a snowball candidate (default 5).
    expand_factor : float
        Factor by which snowball ellipses are enlarged (default 2).
    sat_required_snowball : bool
        Require a saturated core inside the jump ellipse (default True).
    min_sat_radius_extend : float
        Minor axis above which a saturated core is grown (default 2.5).
    sat_expand : int
        Pixels by which a grown core's half axes increase (default 2; full axes grow by
        twice this, as the JWST step passes it).
    edge_size : int
        Distance from the detector edge within which no core is required (default 25).
    mask_snowball_core_next_int : bool
        Flag the core in the next integration (default True; LIKELY flags integration
        by integration, so it has no effect there, as in stcal).
    snowball_time_masked_next_int : float
        Seconds flagged in the next integration (default 4000).
    max_extended_width : int
        Cap on the enlarged ellipse axes, pixels (default 200).
    """

    min_sat_area: float = 1.0
    min_jump_area: float = 5.0
    expand_factor: float = 2.0
    sat_required_snowball: bool = True
    min_sat_radius_extend: float = 2.5
    sat_expand: int = 2
    edge_size: int = 25
    mask_snowball_core_next_int: bool = True
    snowball_time_masked_next_int: float = 4000.0
    max_extended_width: int = 200

    def __post_init__(self) -> None:
        from ..base import check_int, check_number

        owner = type(self).__name__
        for name in ("min_sat_area", "min_jump_area", "min_sat_radius_extend",
                     "snowball_time_masked_next_int"):
            check_number(owner, name, getattr(self, name), minimum=0)
        check_number(owner, "expand_factor", self.expand_factor, minimum=0,
                     exclusive_minimum=True)
        for name in ("sat_expand", "edge_size"):
            check_int(owner, name, getattr(self, name), minimum=0)
        check_int(owner, "max_extended_width", self.max_extended_width, minimum=1)
        for name in ("sat_required_snowball", "mask_snowball_core_next_int"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(
                    f"{owner}.{name}: expected bool, got {type(value).__name__} {value!r}"
                )

    @classmethod
    def from_step(cls, step: Any) -> SnowballParams:
        """The snowball parameters of a ``JumpDetection`` (or any object with those fields)."""
        return cls(**{f.name: getattr(step, f.name) for f in dataclasses.fields(cls)})


def flag_large_events_and_showers(
    step: Any, ramp: Any, gdq: np.ndarray, gain: np.ndarray, readnoise: np.ndarray
) -> np.ndarray:
    """Snowball and/or shower flagging of a GROUPDQ already through two-point detection.

    ``step`` is the :class:`~stcal_models.algorithms.jump.JumpDetection` instance; arrays
    are NumPy (host).  Returns a new uint8 GROUPDQ.
    """
    out = np.array(gdq, dtype=np.uint8, copy=True)
    group_time = float(ramp.meta.group_time)
    if step.expand_large_events:
        flag_snowballs(out, step, group_time)
    if step.find_showers:
        from ...backends import to_numpy

        data = to_numpy(ramp.data).astype(np.float32) * gain.astype(np.float32)
        out, _ = find_showers(
            data,
            out,
            np.asarray(to_numpy(ramp.pixeldq)),
            readnoise.astype(np.float32) * gain.astype(np.float32),
            nframes=int(ramp.meta.nframes),
            snr_threshold=float(step.extend_snr_threshold),
            min_area=float(step.extend_min_area),
            inner_radius=float(step.extend_inner_radius),
            outer_radius=float(step.extend_outer_radius),
            expand_ratio=float(step.extend_ellipse_expand_ratio),
            groups_masked=int(step.time_masked_after_shower // group_time),
            max_width=float(step.max_extended_width),
            max_amplitude=float(step.max_shower_amplitude),
            minimum_sigclip_groups=int(step.minimum_sigclip_groups),
            min_diffs=MIN_DIFFS_FOR_SHOWERS,
        )
    return out
