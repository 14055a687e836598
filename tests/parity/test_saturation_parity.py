"""Parity of Saturation with stcal 1.17.0 ``flag_saturated_pixels`` (GROUPDQ, PIXELDQ, ZEROFRAME)."""

from __future__ import annotations

import contextlib

import jax
import numpy as np
import pytest

from stcal_models.algorithms.saturation import Saturation
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ, as_dict
from stcal_models.models import ExposureMeta, RampModel, SaturationRef

pytestmark = pytest.mark.parity

SAT = int(DQ.SATURATED)
NY, NX = 14, 15


def _simulate(seed: int, meta: ExposureMeta, *, existing_flags: bool):
    """Frame-level ramps averaged into groups, with hard saturation and every bad input kind.

    Bright pixels reach full well in the middle of a frame-averaged group, so the
    read-pattern rules (group 2 and "saturated within the group") fire; some pixels sit
    at or below the A/D floor; thresholds include NaN and NO_SAT_CHECK.
    """
    rng = np.random.default_rng(seed)
    nints, ngroups = meta.nints, meta.ngroups
    reads = meta.resultant_reads
    nreads = reads[-1][-1]
    bias = rng.normal(2000.0, 300.0, (NY, NX)).astype(np.float32)
    cr_pixels = ((2, 3), (11, 7), (6, 12))
    for y, x in cr_pixels:
        bias[y, x] = 100.0  # a low pedestal: the rate criterion holds without a superbias too
    thr = rng.normal(9000.0, 400.0, (NY, NX)).astype(np.float32)
    full_well = thr + rng.uniform(0.0, 800.0, (NY, NX)).astype(np.float32)
    # rates in DN/frame: faint sky up to pixels that saturate within the first groups
    rate = rng.lognormal(np.log(150.0), 1.3, (nints, NY, NX)).astype(np.float32)
    rate *= 12.0 / nreads
    t = np.arange(1, nreads + 1, dtype=np.float32)
    frames = bias[None, None] + rate[:, None] * t[None, :, None, None]
    # cosmic rays in the middle of group 2: the group-2 rule's target
    second = reads[1]
    hit_frame = second[len(second) // 2]  # 1-based; later reads of group 2 are hit
    for y, x in cr_pixels:
        frames[:, hit_frame - 1 :, y, x] += 2.0 * thr[y, x]
    frames = np.minimum(frames, full_well[None, None])
    frames += rng.normal(0.0, 5.0, frames.shape).astype(np.float32)
    data = np.stack([frames[:, [r - 1 for r in group]].mean(axis=1) for group in reads], axis=1)
    data = data.astype(np.float32)
    # A/D floor, a dead column and a negative cosmic-ray dip
    data[:, :, 3, 0] = 0.0
    data[rng.random(data.shape) < 0.01] = -rng.uniform(0.0, 50.0)
    # saturation in group 1 and a pixel dropping back below the threshold after saturating
    data[:, :, 5, 5] = thr[5, 5] + 100.0
    data[0, 2:, 7, 8] = np.linspace(thr[7, 8] + 1.0, thr[7, 8] - 500.0, ngroups - 2)
    zeroframe = frames[:, 0].copy()
    zeroframe[:, 9, 2] = thr[9, 2] + 10.0
    zeroframe[:, 10, 12] = -3.0
    zeroframe[:, 0, 0] = np.nan
    thr[rng.random((NY, NX)) < 0.04] = np.nan
    sat_dq = np.zeros((NY, NX), np.uint32)
    sat_dq[rng.random((NY, NX)) < 0.04] |= int(DQ.NO_SAT_CHECK)
    sat_dq[rng.random((NY, NX)) < 0.04] |= int(DQ.DO_NOT_USE) | int(DQ.DEAD)
    pdq = np.zeros((NY, NX), np.uint32)
    pdq[rng.random((NY, NX)) < 0.1] = int(DQ.HOT)
    gdq = np.zeros(data.shape, np.uint8)
    if existing_flags:
        for flag in (DQ.SATURATED, DQ.DO_NOT_USE, DQ.JUMP_DET):
            gdq[rng.random(data.shape) < 0.02] |= int(flag)
    return data, gdq, pdq, zeroframe, thr, sat_dq, bias


def _stcal(data, gdq, pdq, zeroframe, thr, sat_dq, bias, n, read_pattern):
    from stcal.saturation.saturation import flag_saturated_pixels

    return flag_saturated_pixels(
        data.copy(),
        gdq.copy(),
        pdq.copy(),
        thr.copy(),
        sat_dq.copy(),
        65535,
        as_dict(),
        n_pix_grow_sat=n,
        zframe=None if zeroframe is None else zeroframe.copy(),
        read_pattern=None if read_pattern is None else [list(r) for r in read_pattern],
        bias=None if bias is None else bias.copy(),
    )


def _ours(to_xp, meta, data, gdq, pdq, zeroframe, thr, sat_dq, bias, n, use_read_pattern=True):
    ramp = RampModel(
        data=to_xp(data),
        groupdq=to_xp(gdq),
        pixeldq=to_xp(pdq),
        zeroframe=None if zeroframe is None else to_xp(zeroframe),
        meta=meta,
    )
    ref = SaturationRef(data=to_xp(thr), dq=to_xp(sat_dq))
    step = Saturation(n_pix_grow_sat=n, use_read_pattern=use_read_pattern)
    out = step(ramp, ref, bias=None if bias is None else to_xp(bias))
    zf = None if out.zeroframe is None else to_numpy(out.zeroframe)
    return to_numpy(out.groupdq), to_numpy(out.pixeldq), zf


JWST = {"nframes": 4, "groupgap": 1}  # e.g. NIRCam MEDIUM8-like frame averaging
ROMAN = {"read_pattern": ((1,), (2, 3), (4, 5, 6), (7,), (8, 9, 10, 11), (12, 13))}

CASES = [
    # (seed, n_pix_grow_sat, nints, ngroups, readout, zeroframe, bias, existing flags)
    (1, 0, 1, 5, {}, True, False, False),
    (2, 1, 2, 6, {}, True, False, True),
    (3, 2, 1, 4, {"nframes": 1, "groupgap": 2}, False, True, False),
    (4, 0, 1, 6, JWST, True, True, False),
    (5, 1, 2, 5, JWST, True, True, True),
    (6, 2, 1, 12, JWST, False, False, False),
    (7, 1, 1, 6, ROMAN, True, True, False),
    (9, 1, 1, 32, {"nframes": 2}, False, True, False),  # long ramps: 31 bits of groups
    (10, 1, 1, 34, {"nframes": 2}, False, False, False),
]


@pytest.mark.parametrize(
    ("seed", "n", "nints", "ngroups", "readout", "with_zf", "with_bias", "existing"), CASES
)
def test_flags_equal_stcal(
    xp, to_xp, seed, n, nints, ngroups, readout, with_zf, with_bias, existing
):
    meta = ExposureMeta(nints=nints, ngroups=ngroups, **readout)
    data, gdq, pdq, zf, thr, sat_dq, bias = _simulate(seed, meta, existing_flags=existing)
    zf = zf if with_zf else None
    bias = bias if with_bias else None
    expected = _stcal(data, gdq, pdq, zf, thr, sat_dq, bias, n, meta.resultant_reads)
    got = _ours(to_xp, meta, data, gdq, pdq, zf, thr, sat_dq, bias, n)
    np.testing.assert_array_equal(got[0], expected[0], err_msg="GROUPDQ")
    np.testing.assert_array_equal(got[1], expected[1], err_msg="PIXELDQ")
    if with_zf:
        np.testing.assert_array_equal(got[2], expected[2], err_msg="ZEROFRAME")
    # the inputs exercise what they are meant to
    flags = expected[0]
    assert (flags & SAT).any() and (flags & int(DQ.AD_FLOOR)).any()
    if meta.nframes > 1 or meta.is_uneven:
        pattern_only = _stcal(data, gdq, pdq, zf, thr, sat_dq, bias, n, None)[0]
        assert (flags != pattern_only).any(), "the read-pattern rules did not fire"


def test_without_read_pattern_equals_stcal(xp, to_xp):
    meta = ExposureMeta(nints=1, ngroups=5, **JWST)
    data, gdq, pdq, zf, thr, sat_dq, bias = _simulate(8, meta, existing_flags=False)
    expected = _stcal(data, gdq, pdq, zf, thr, sat_dq, bias, 1, None)
    got = _ours(to_xp, meta, data, gdq, pdq, zf, thr, sat_dq, bias, 1, use_read_pattern=False)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- float rounding at thresholds
def _ulp_sweep(center: float, k: int = 12) -> np.ndarray:
    """Float32 values from ``k`` ulps below to ``k`` ulps above ``center``."""
    c = np.float32(center)
    lo, hi = [c], [c]
    for _ in range(k):
        lo.append(np.nextafter(lo[-1], np.float32(-np.inf)))
        hi.append(np.nextafter(hi[-1], np.float32(np.inf)))
    return np.array(sorted(lo[1:] + hi), np.float32)


def _wide_context(xp):
    """The jax backend computes the float64 comparisons only with x64 enabled."""
    return jax.enable_x64(True) if xp.__name__.startswith("jax") else contextlib.nullcontext()


@pytest.mark.parametrize("rule", ["within_group", "group2_rate", "group2_jump"])
def test_rounding_at_read_pattern_thresholds_equals_stcal(xp, to_xp, rule):
    rng = np.random.default_rng({"within_group": 1, "group2_rate": 2, "group2_jump": 3}[rule])
    pattern = ((1,), (2, 4, 7), (8, 9, 11), (12,))  # inexact mean/last ratios
    mean_first, last_third, mean_second, last_second = 1.0, 11.0, 13 / 3, 7.0
    rows = []
    for trial in range(16):
        thr = np.float32(rng.integers(5000, 60000) if trial % 2 else rng.uniform(5000, 60000))
        b = np.float32(rng.uniform(-200.0, 0.05 * thr))
        if rule == "within_group":
            g1 = np.float32(0.2 * thr)  # the group-2 rule cannot fire (rate criterion)
            sweep = _ulp_sweep(np.float64(thr) * (mean_second / last_second))
            groups = [np.full_like(sweep, g1), sweep, np.full_like(sweep, 2 * thr)]
        elif rule == "group2_rate":
            sweep = _ulp_sweep(b + (np.float64(thr) - b) / last_third * mean_first)
            groups = [sweep, np.full_like(sweep, 0.5 * thr), np.full_like(sweep, 2 * thr)]
        else:
            g1 = np.float32(0.5 * thr / 11)
            sweep = _ulp_sweep(g1 + (thr - g1) / np.float32(3))
            groups = [np.full_like(sweep, g1), sweep, np.full_like(sweep, 2 * thr)]
        rows.append((thr, b, np.stack(groups + [np.full_like(sweep, 2 * thr)])))
    data = np.stack([r[2] for r in rows], axis=1)[None].astype(np.float32)
    ny, nx = data.shape[2:]
    thr = np.repeat(np.array([r[0] for r in rows], np.float32)[:, None], nx, axis=1)
    bias = np.repeat(np.array([r[1] for r in rows], np.float32)[:, None], nx, axis=1)
    gdq = np.zeros(data.shape, np.uint8)
    pdq = np.zeros((ny, nx), np.uint32)
    sat_dq = np.zeros((ny, nx), np.uint32)
    meta = ExposureMeta(nints=1, ngroups=4, read_pattern=pattern)
    expected = _stcal(data, gdq, pdq, None, thr, sat_dq, bias, 0, pattern)[0]
    # the sweep straddles the threshold in every trial
    assert ((expected[0, 1] & int(DQ.DO_NOT_USE)) != 0).any(axis=1).all()
    assert ((expected[0, 1] & int(DQ.DO_NOT_USE)) == 0).any(axis=1).all()
    with _wide_context(xp):
        got = _ours(to_xp, meta, data, gdq, pdq, None, thr, sat_dq, bias, 0)[0]
    np.testing.assert_array_equal(got, expected)
