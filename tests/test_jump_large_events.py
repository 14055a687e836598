"""Snowball (NIR) and shower (MIRI) flagging: primitives and the effect of every parameter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stcal_models.algorithms.jump import JumpDetection
from stcal_models.algorithms.jump import large_events as le
from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef

JUMP, SAT, DNU = 4, 2, 1


# ----------------------------------------------------------------------------- primitives
def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_find_ellipses_of_a_disc_and_area_threshold():
    mask = disc((40, 40), 20, 18, 6)
    (centre, axes, theta), = le.find_ellipses(mask, 5)
    assert centre == pytest.approx((18.0, 20.0))
    assert axes[0] == pytest.approx(axes[1]) and 10.5 < axes[0] < 11.5
    assert le.find_ellipses(mask, int(mask.sum())) and not le.find_ellipses(mask, mask.sum() + 1)
    two = mask | disc((40, 40), 5, 5, 1)
    assert len(le.find_ellipses(two, 1)) == 2 and len(le.find_ellipses(two, 6)) == 1


def test_find_ellipses_orientation_of_a_bar():
    mask = np.zeros((30, 30), bool)
    mask[10:14, 5:20] = True
    (_, (minor, major), theta), = le.find_ellipses(mask, 1)
    assert minor < major and abs(theta) == pytest.approx(90.0)


def test_draw_ellipse_and_point_inside():
    image = le.draw_ellipse((21, 21), (10, 10), (6, 2), 0.0)
    assert image[10, 4] == 0 and image[10, 5] and image[10, 15] and not image[10, 16]
    assert image[9, 10] and not image[8, 10]
    assert not le.draw_ellipse((5, 5), (2, 2), (0, 1), 0.0).any()
    e = ((10.0, 10.0), (4.0, 12.0), 0.0)  # major axis 12 along x
    assert le.point_inside_ellipse((16.0, 10.0), e) and not le.point_inside_ellipse((10.0, 13.0), e)
    assert le.point_inside_ellipse((10.0, 16.0), ((10.0, 10.0), (4.0, 12.0), 90.0))
    assert not le.point_inside_ellipse((10.0, 10.0), ((10.0, 10.0), (0.0, 12.0), 0.0))


def test_expanded_half_axes():
    e = ((0.0, 0.0), (3.0, 7.0), 0.0)
    assert le.expanded_half_axes(e, 2.0, True, 200) == (3, 5)  # minor x2, major +3
    assert le.expanded_half_axes(e, 2.0, False, 200) == (2, 4)  # +2 pixels each
    assert le.expanded_half_axes(((0.0, 0.0), (30.0, 70.0), 0.0), 2.0, True, 50) == (25, 25)


# ----------------------------------------------------------------------------- snowballs
def snowball_gdq(nints=2, ngroups=5, ny=60, nx=60, cy=30, cx=30, jump_r=6, sat_r=3.0, group=2):
    gdq = np.zeros((nints, ngroups, ny, nx), np.uint8)
    gdq[0, group][disc((ny, nx), cy, cx, jump_r)] |= JUMP
    gdq[0, group:][:, disc((ny, nx), cy, cx, sat_r)] = SAT
    return gdq


def flagged(gdq, flag=JUMP):
    return int(((gdq & flag) != 0).sum())


def snow(gdq, **params):
    out = gdq.copy()
    n = le.flag_snowballs(out, JumpDetection(expand_large_events=True, **params), 10.0)
    return out, n


def test_snowball_expands_jump_region_and_saturated_core():
    gdq = snowball_gdq()
    out, n = snow(gdq)
    assert n == 1
    assert flagged(out[0, 2]) > 2.5 * flagged(gdq[0, 2])  # ellipse doubled (expand_factor 2)
    assert flagged(out[0, 3], SAT) > flagged(gdq[0, 3], SAT)  # core grown by sat_expand
    assert flagged(out[0, 1]) == 0 and flagged(out[0, 3]) == 0


@pytest.mark.parametrize(
    "name, low, high",
    [
        ("expand_factor", 1.5, 3.0),
        ("max_extended_width", 10, 200),
        ("sat_expand", 1, 4),
    ],
)
def test_snowball_size_parameters(name, low, high):
    gdq = snowball_gdq(sat_r=4.0)
    small, _ = snow(gdq, **{name: low})
    large, _ = snow(gdq, **{name: high})
    flag = SAT if name == "sat_expand" else JUMP
    assert flagged(small[0], flag) < flagged(large[0], flag)


def test_snowball_area_and_core_requirements():
    gdq = snowball_gdq()
    assert snow(gdq, min_jump_area=500.0)[1] == 0
    assert snow(gdq, min_sat_area=100.0)[1] == 0  # core too small: not a snowball
    assert snow(gdq, min_sat_area=100.0, sat_required_snowball=False)[1] == 1
    no_core = gdq.copy()
    no_core[no_core == SAT] = 0
    assert snow(no_core)[1] == 0
    assert snow(no_core, sat_required_snowball=False)[1] == 1


def test_snowball_near_the_edge_needs_no_core():
    gdq = snowball_gdq(cy=8, cx=30)
    gdq[gdq == SAT] = 0
    assert snow(gdq, edge_size=25)[1] == 1
    assert snow(gdq, edge_size=5)[1] == 0


def test_saturated_core_growth_needs_minimum_radius():
    gdq = snowball_gdq(sat_r=3.0)
    grown, _ = snow(gdq, min_sat_radius_extend=2.5)
    kept, _ = snow(gdq, min_sat_radius_extend=6.0)
    assert flagged(grown[0, 4], SAT) > flagged(gdq[0, 4], SAT) == flagged(kept[0, 4], SAT)


def test_snowball_core_masked_in_next_integration():
    gdq = snowball_gdq(nints=3, ngroups=6)
    on, _ = snow(gdq, snowball_time_masked_next_int=30.0)
    assert [flagged(on[1, g]) > 0 for g in range(6)] == [False, True, True, False, False, False]
    assert flagged(on[2]) == 0
    off, _ = snow(gdq, mask_snowball_core_next_int=False)
    assert flagged(off[1]) == 0
    short, _ = snow(gdq, snowball_time_masked_next_int=15.0)
    assert flagged(short[1]) == 0


def test_snowball_core_saturating_in_next_group():
    gdq = snowball_gdq()
    gdq[0, 2][gdq[0, 2] == SAT] = 0  # the core saturates only in group 3
    assert snow(gdq)[1] == 1


# ----------------------------------------------------------------------------- showers
def shower_ramp(nints=3, ngroups=8, ny=48, nx=56, seed=1, amplitude=12.0, radius=10.0):
    rng = np.random.default_rng(seed)
    data = np.cumsum(rng.normal(20.0, np.sqrt(45.0), (nints, ngroups, ny, nx)), axis=1)
    yy, xx = np.mgrid[:ny, :nx]
    blob = amplitude * np.exp(-((yy - 24) ** 2 + (xx - 28) ** 2) / (2 * (radius / 2) ** 2))
    data[min(1, nints - 1), 3:] += blob
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[:, :2] = 1 << 31
    meta = ExposureMeta(nints=nints, ngroups=ngroups, frame_time=10.0)
    ramp = RampModel(data=data.astype(np.float32), pixeldq=pdq, meta=meta)
    return ramp, GainRef(data=np.ones((ny, nx), np.float32)), ReadnoiseRef(
        data=np.full((ny, nx), 5.0, np.float32)
    )


SHOWER = JumpDetection(find_showers=True, extend_min_area=40, time_masked_after_shower=0.0)


def shower_flags(step=SHOWER, **ramp_kw):
    ramp, gain, rn = shower_ramp(**ramp_kw)
    return step(ramp, gain, rn).groupdq


def test_shower_found_where_single_pixels_are_not_jumps():
    base = JumpDetection()(*shower_ramp()).groupdq
    out = shower_flags()
    new = ((out & JUMP) != 0) & ((base & JUMP) == 0)
    assert new[1, 3].sum() > 80
    assert new[0].sum() == 0 and new[2].sum() == 0
    assert not new[1, :, :, :2].any()  # reference pixels never flagged


@pytest.mark.parametrize(
    "name, more, less",
    [
        ("extend_snr_threshold", 1.2, 4.0),
        ("extend_min_area", 40, 2000),
        ("extend_ellipse_expand_ratio", 1.6, 1.1),
        ("time_masked_after_shower", 25.0, 0.0),
        ("max_extended_width", 200, 10),
        ("max_shower_amplitude", 100.0, 0.01),
    ],
)
def test_shower_parameters(name, more, less):
    a = shower_flags(dataclasses.replace(SHOWER, **{name: more}))
    b = shower_flags(dataclasses.replace(SHOWER, **{name: less}))
    assert flagged(a) > flagged(b)


def test_shower_ring_radii_matter():
    a = shower_flags(dataclasses.replace(SHOWER, extend_inner_radius=1.0, extend_outer_radius=2.6))
    b = shower_flags(dataclasses.replace(SHOWER, extend_inner_radius=3.0, extend_outer_radius=4.0))
    assert flagged(a) != flagged(b)


def test_shower_groups_after_follow_group_time():
    out = shower_flags(dataclasses.replace(SHOWER, time_masked_after_shower=25.0))
    base = shower_flags()
    extra = ((out & JUMP) != 0) & ((base & JUMP) == 0)
    assert extra[1, 4].any() and extra[1, 5].any() and not extra[1, 6].any()


def test_showers_need_enough_differences():
    out = shower_flags(nints=1, ngroups=10)  # nine differences
    base = JumpDetection()(*shower_ramp(nints=1, ngroups=10)).groupdq
    np.testing.assert_array_equal(out, base)


def test_find_showers_direct_call_counts():
    ramp, gain, rn = shower_ramp()
    gdq = np.zeros(ramp.shape, np.uint8)
    kwargs = dict(
        nframes=1, snr_threshold=1.2, min_area=40, inner_radius=1.0, outer_radius=2.6,
        expand_ratio=1.1, groups_masked=0, max_width=200, max_amplitude=1e6,
        minimum_sigclip_groups=100, min_diffs=10,
    )
    out, n = le.find_showers(ramp.data, gdq, ramp.pixeldq, np.full(ramp.shape[2:], 5.0), **kwargs)
    assert n >= 1 and flagged(out) > 80
    # with enough integrations the noise comes from sigma-clipped statistics across them
    clipped, n2 = le.find_showers(
        ramp.data, gdq, ramp.pixeldq, np.full(ramp.shape[2:], 5.0),
        **{**kwargs, "minimum_sigclip_groups": 3},
    )
    assert clipped.shape == gdq.shape and clipped.dtype == np.uint8
    assert n2 != n or not np.array_equal(clipped, out)
