"""Parity of JumpDetection with stcal 1.17.0 ``stcal.jump.jump.detect_jumps_data``.

The oracle is driven through ``JumpData`` built from a minimal model object (data,
groupdq, pixeldq, ``meta.exposure.nframes`` and ``read_pattern``) exactly as the JWST step
does: times are turned into groups with ``time // group_time`` and ``sat_expand`` is doubled.
Two-point, neighbour, after-jump, sigma-clip and uneven-sampling GROUPDQ must be identical;
snowball and shower flags must agree to a Jaccard index of at least 0.98 (they are in fact
identical on these scenes).
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from stcal_models.algorithms.jump import JumpDetection
from stcal_models.algorithms.jump import large_events as le
from stcal_models.dqflags import as_dict
from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef

pytestmark = pytest.mark.parity


# ----------------------------------------------------------------------------- oracle
def stcal_jump(step: JumpDetection, ramp: RampModel, gain, readnoise):
    """Run stcal's ``detect_jumps_data`` with ``step``'s parameters; NumPy in and out."""
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    meta = ramp.meta
    flags = as_dict()
    flags["GOOD"] = 0
    pattern = None if meta.read_pattern is None else [list(r) for r in meta.read_pattern]
    model = SimpleNamespace(
        data=np.array(ramp.data, dtype=np.float32),
        groupdq=np.array(ramp.groupdq),
        pixeldq=np.array(ramp.pixeldq),
        meta=SimpleNamespace(exposure=SimpleNamespace(nframes=meta.nframes, read_pattern=pattern)),
    )
    jd = JumpData(
        jump_model=model,
        gain2d=np.asarray(gain, dtype=np.float32),
        rnoise2d=np.asarray(readnoise, dtype=np.float32),
        dqflags=flags,
    )
    gt = meta.group_time
    jd.set_detection_settings(
        step.rejection_threshold,
        step.three_group_rejection_threshold,
        step.four_group_rejection_threshold,
        step.max_jump_to_flag_neighbors,
        step.min_jump_to_flag_neighbors,
        step.flag_4_neighbors,
    )
    jd.set_after_jump(
        step.after_jump_flag_dn1,
        int(step.after_jump_flag_time1 // gt),
        step.after_jump_flag_dn2,
        int(step.after_jump_flag_time2 // gt),
    )
    jd.set_snowball_info(
        step.expand_large_events,
        step.min_jump_area,
        step.min_sat_area,
        step.expand_factor,
        step.sat_required_snowball,
        step.min_sat_radius_extend,
        step.sat_expand * 2,
        step.edge_size,
    )
    jd.set_shower_info(
        step.find_showers,
        step.extend_snr_threshold,
        step.extend_min_area,
        step.extend_inner_radius,
        step.extend_outer_radius,
        step.extend_ellipse_expand_ratio,
        step.min_diffs_single_pass,
        step.max_extended_width,
    )
    jd.set_sigma_clipping_info(step.minimum_groups, step.minimum_sigclip_groups, step.only_use_ints)
    jd.max_shower_amplitude = step.max_shower_amplitude
    jd.grps_masked_after_shower = int(step.time_masked_after_shower // gt)
    jd.mask_persist_grps_next_int = step.mask_snowball_core_next_int
    jd.persist_grps_flagged = int(step.snowball_time_masked_next_int // gt)
    jd.use_ellipses = step.use_ellipses
    jd.max_cores = "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gdq, pdq, _, _ = detect_jumps_data(jd)
    return gdq, pdq


def ours(step, ramp, gain, readnoise, xp):
    """Run JumpDetection with the ramp's arrays in namespace ``xp``; NumPy out."""
    if xp is not np:
        ramp = ramp.replace(**{k: xp.asarray(v) for k, v in ramp.arrays().items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = step(ramp, GainRef(data=gain), ReadnoiseRef(data=readnoise))
    from stcal_models.backends import to_numpy

    return to_numpy(out.groupdq), to_numpy(out.pixeldq)


# ----------------------------------------------------------------------------- scenes
def two_point_scene(seed, nints, ngroups, ny=16, nx=16, *, integer=False, pattern=None):
    """Ramps with noise, cosmic rays near threshold, saturation, DO_NOT_USE and old jumps."""
    rng = np.random.default_rng(seed)
    flux = rng.uniform(0.0, 60.0, (ny, nx))
    if pattern is None:
        times = np.arange(ngroups, dtype=float)
    else:
        times = np.array([np.mean(r) for r in pattern]) - np.mean(pattern[0])
    data = flux[None, None] * times[None, :, None, None] + np.zeros((nints, ngroups, 1, 1))
    data = data + rng.normal(0.0, np.sqrt(flux + 16.0)[None, None], data.shape)
    hits = rng.random(data.shape) < 0.35 / ngroups
    hits[:, 0] = False
    data = data + np.cumsum(hits * rng.uniform(8.0, 250.0, data.shape), axis=1)
    if integer:
        data = np.round(data / 4.0)
    data = data.astype(np.float32)
    gdq = np.zeros(data.shape, dtype=np.uint8)
    sat = rng.random((nints, ny, nx)) < 0.12
    start = rng.integers(1, ngroups, (nints, ny, nx))
    group = np.arange(ngroups)[None, :, None, None]
    gdq[(group >= start[:, None]) & sat[:, None]] |= 2
    gdq |= ((rng.random(data.shape) < 0.03) * 1).astype(np.uint8)
    gdq |= ((rng.random(data.shape) < 0.01) * 4).astype(np.uint8)
    gain = rng.uniform(0.8, 3.0, (ny, nx)).astype(np.float32)
    gain[0, 0] = 0.0
    gain[3, 5] = np.nan
    gain[7, 2] = -1.0
    readnoise = rng.uniform(2.0, 8.0, (ny, nx)).astype(np.float32)
    meta = ExposureMeta(
        nints=nints,
        ngroups=ngroups,
        frame_time=10.0,
        read_pattern=pattern,
    )
    pdq = np.zeros((ny, nx), dtype=np.uint32)
    pdq[1, 1] = 1
    return RampModel(data=data, groupdq=gdq, pixeldq=pdq, meta=meta), gain, readnoise


TWO_POINT = dict(
    min_jump_to_flag_neighbors=6.0,
    max_jump_to_flag_neighbors=40.0,
    after_jump_flag_dn1=30.0,
    after_jump_flag_time1=15.0,
    after_jump_flag_dn2=120.0,
    after_jump_flag_time2=35.0,
)


def assert_same(mine, theirs):
    gdq, pdq = mine
    ogdq, opdq = theirs
    diff = np.argwhere(gdq != ogdq)
    assert diff.size == 0, f"{len(diff)} GROUPDQ differences, first at {diff[:3].tolist()}"
    np.testing.assert_array_equal(pdq, opdq)


# ----------------------------------------------------------------------------- tests
def test_two_point_neighbours_after_jump(xp):
    ramp, gain, rn = two_point_scene(1, nints=2, ngroups=6)
    step = JumpDetection(**TWO_POINT)
    assert_same(ours(step, ramp, gain, rn, xp), stcal_jump(step, ramp, gain, rn))


def test_integer_data_with_ties(xp):
    """Equal differences: every copy of a maximum is flagged / clipped together."""
    ramp, gain, rn = two_point_scene(2, nints=2, ngroups=6, integer=True)
    step = JumpDetection(**TWO_POINT)
    assert_same(ours(step, ramp, gain, rn, xp), stcal_jump(step, ramp, gain, rn))


@pytest.mark.parametrize("seed", range(6))
def test_random_two_point_numpy(seed):
    rng = np.random.default_rng(100 + seed)
    nints, ngroups = int(rng.integers(1, 4)), int(rng.choice([3, 4, 5, 7, 9, 10, 13]))
    ramp, gain, rn = two_point_scene(seed, nints, ngroups, 12, 10, integer=bool(seed % 2))
    step = JumpDetection(
        rejection_threshold=float(rng.uniform(3.5, 5.0)),
        three_group_rejection_threshold=float(rng.uniform(5.0, 7.0)),
        four_group_rejection_threshold=float(rng.uniform(4.0, 6.0)),
        flag_4_neighbors=bool(seed != 3),
        **TWO_POINT,
    )
    assert_same(ours(step, ramp, gain, rn, np), stcal_jump(step, ramp, gain, rn))


def test_single_pass(xp):
    ramp, gain, rn = two_point_scene(3, nints=1, ngroups=12)
    step = JumpDetection(**TWO_POINT)
    assert_same(ours(step, ramp, gain, rn, xp), stcal_jump(step, ramp, gain, rn))


def test_sigma_clip_across_integrations(xp):
    ramp, gain, rn = two_point_scene(4, nints=12, ngroups=4, ny=10, nx=10)
    step = JumpDetection(only_use_ints=True, minimum_sigclip_groups=12, **TWO_POINT)
    assert_same(ours(step, ramp, gain, rn, xp), stcal_jump(step, ramp, gain, rn))


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_sigma_clip_all_differences(backend):
    import array_api_strict

    xp = np if backend == "numpy" else array_api_strict
    ramp, gain, rn = two_point_scene(4, nints=12, ngroups=4, ny=10, nx=10)
    step = JumpDetection(only_use_ints=False, minimum_sigclip_groups=40, **TWO_POINT)
    assert_same(ours(step, ramp, gain, rn, xp), stcal_jump(step, ramp, gain, rn))


def test_uneven_sampling(xp):
    pattern = [[1], [2, 3], [4, 5, 6, 7], [8], [9, 10], [11, 12, 13]]
    ramp, gain, rn = two_point_scene(5, nints=1, ngroups=6, pattern=pattern)
    step = JumpDetection(**TWO_POINT)
    assert_same(ours(step, ramp, gain, rn, xp), stcal_jump(step, ramp, gain, rn))


def test_chunked_run_matches_oracle():
    ramp, gain, rn = two_point_scene(6, nints=2, ngroups=5, ny=23, nx=9)
    step = JumpDetection(memory_budget=20_000.0, **TWO_POINT)
    assert_same(ours(step, ramp, gain, rn, np), stcal_jump(step, ramp, gain, rn))


# ----------------------------------------------------------------------------- large events
def snowball_scene(seed, nints=2, ngroups=6, ny=48, nx=56):
    rng = np.random.default_rng(seed)
    flux = rng.uniform(5.0, 30.0, (ny, nx))
    data = np.cumsum(rng.normal(flux, np.sqrt(flux + 25.0), (nints, ngroups, ny, nx)), axis=1)
    data = data.astype(np.float32)
    gdq = np.zeros(data.shape, dtype=np.uint8)
    yy, xx = np.mgrid[:ny, :nx]
    for _ in range(4):
        i, g = int(rng.integers(0, nints)), int(rng.integers(1, ngroups))
        cy, cx, r = rng.uniform(0, ny), rng.uniform(0, nx), rng.uniform(3.0, 9.0)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        data[i, g:] += (2000.0 * np.exp(-d2 / (2 * (r / 1.5) ** 2))).astype(np.float32)
        core = d2 < (r * rng.uniform(0.2, 0.6)) ** 2
        gdq[i, min(ngroups - 1, g + int(rng.random() < 0.3)) :][:, core] |= 2
    meta = ExposureMeta(nints=nints, ngroups=ngroups, frame_time=10.0)
    gain = np.full((ny, nx), 1.5, dtype=np.float32)
    rn = np.full((ny, nx), 5.0, dtype=np.float32)
    return RampModel(data=data, groupdq=gdq, meta=meta), gain, rn


def shower_scene(seed, nints=2, ngroups=8, ny=48, nx=56, gain=1.0, readnoise=5.0):
    rng = np.random.default_rng(seed)
    flux = rng.uniform(5.0, 30.0)
    data = np.cumsum(rng.normal(flux, np.sqrt(flux + 25.0), (nints, ngroups, ny, nx)), axis=1)
    data = data.astype(np.float32)
    yy, xx = np.mgrid[:ny, :nx]
    for _ in range(3):
        i, g = int(rng.integers(0, nints)), int(rng.integers(1, ngroups))
        cy, cx, r = rng.uniform(10, ny - 10), rng.uniform(10, nx - 10), rng.uniform(6.0, 14.0)
        blob = rng.uniform(5.0, 20.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (r / 2) ** 2))
        data[i, g:] += blob.astype(np.float32)
    pdq = np.zeros((ny, nx), dtype=np.uint32)
    pdq[:, :2] = 1 << 31
    meta = ExposureMeta(nints=nints, ngroups=ngroups, frame_time=10.0)
    return (
        RampModel(data=data, pixeldq=pdq, meta=meta),
        np.full((ny, nx), gain, np.float32),
        np.full((ny, nx), readnoise, np.float32),
    )


def jaccard(a, b):
    fa, fb = (a & 6) != 0, (b & 6) != 0
    return (fa & fb).sum() / max(1, (fa | fb).sum())


@pytest.mark.parametrize(
    "seed, params",
    [
        (0, dict(expand_large_events=True)),
        (1, dict(expand_large_events=True, sat_expand=1, edge_size=10, min_sat_radius_extend=1.0)),
        (2, dict(expand_large_events=True, sat_required_snowball=False, expand_factor=1.5)),
        (3, dict(expand_large_events=True, snowball_time_masked_next_int=40.0, max_extended_width=15)),
        (4, dict(expand_large_events=True, min_jump_area=12.0, min_sat_area=3.0)),
    ],
)
def test_snowballs(seed, params):
    ramp, gain, rn = snowball_scene(seed)
    step = JumpDetection(**params)
    gdq, _ = ours(step, ramp, gain, rn, np)
    ogdq, _ = stcal_jump(step, ramp, gain, rn)
    assert ((ogdq & 6) != (ramp.groupdq & 6)).any(), "scene has no snowball flags"
    assert jaccard(gdq, ogdq) >= 0.98
    np.testing.assert_array_equal(gdq, ogdq)  # identical on these scenes


def test_snowballs_strict_backend():
    import array_api_strict

    ramp, gain, rn = snowball_scene(5)
    step = JumpDetection(expand_large_events=True)
    gdq, _ = ours(step, ramp, gain, rn, array_api_strict)
    assert jaccard(gdq, stcal_jump(step, ramp, gain, rn)[0]) >= 0.98


@pytest.mark.parametrize(
    "seed, params",
    [
        (1, dict(find_showers=True, extend_min_area=40)),
        (4, dict(find_showers=True, time_masked_after_shower=30.0, max_extended_width=30)),
        (5, dict(find_showers=True, max_shower_amplitude=1.0, extend_min_area=40)),
        (13, dict(find_showers=True, extend_ellipse_expand_ratio=1.5, extend_snr_threshold=1.5,
                  extend_outer_radius=3.5, extend_inner_radius=1.5)),
        (6, dict(find_showers=True, extend_min_area=40, minimum_sigclip_groups=8)),
        (104, dict(find_showers=True, extend_min_area=40, max_shower_amplitude=0.5)),
        (105, dict(find_showers=True, extend_min_area=40, max_shower_amplitude=2.0)),
    ],
)
def test_showers(seed, params):
    nints = 8 if "minimum_sigclip_groups" in params else 3
    if seed > 100:  # non-unit gain: electrons throughout
        ramp, gain, rn = shower_scene(seed - 100, nints=nints, gain=2.5, readnoise=3.0)
    else:
        ramp, gain, rn = shower_scene(seed, nints=nints)
    step = JumpDetection(**params)
    gdq, _ = ours(step, ramp, gain, rn, np)
    ogdq, _ = stcal_jump(step, ramp, gain, rn)
    assert ((ogdq & 4) != 0).sum() > 0
    assert jaccard(gdq, ogdq) >= 0.98
    np.testing.assert_array_equal(gdq, ogdq)


def test_showers_found_in_scene():
    ramp, gain, rn = shower_scene(1, nints=3)
    step = JumpDetection(find_showers=True, extend_min_area=40)
    gdq, _ = ours(step, ramp, gain, rn, np)
    two_point, _ = ours(JumpDetection(), ramp, gain, rn, np)
    assert ((gdq & 4) != 0).sum() > ((two_point & 4) != 0).sum() + 50


def test_showers_need_ten_differences():
    ramp, gain, rn = shower_scene(1, nints=1, ngroups=10)  # nine differences
    step = JumpDetection(find_showers=True, extend_min_area=40)
    gdq, _ = ours(step, ramp, gain, rn, np)
    plain, _ = ours(JumpDetection(), ramp, gain, rn, np)
    np.testing.assert_array_equal(gdq, stcal_jump(step, ramp, gain, rn)[0])
    np.testing.assert_array_equal(gdq, plain)


# ----------------------------------------------------------------------------- primitives
def test_region_ellipses_match_stcal():
    from scipy import ndimage
    from stcal.jump import jump as sj

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:30, :30]
    for trial in range(40):
        img = ndimage.binary_dilation(rng.random((30, 30)) < 0.03, iterations=trial % 3)
        if trial % 4 == 0:  # a ring: its area counts the hole
            d2 = (yy - 15) ** 2 + (xx - 14) ** 2
            img = img | ((d2 <= 16) & (d2 >= rng.integers(1, 10)))
        img = img.astype(np.uint8) * 4
        area = float(rng.choice([3, 30, 45, 49]))
        theirs = sorted(sj.find_ellipses(img, 4, area), key=lambda e: e[0][::-1])
        mine = sorted(le.find_ellipses(img & 4, area), key=lambda e: e[0][::-1])
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_allclose(a[0], b[0])
            np.testing.assert_allclose(a[1], b[1])
            assert np.isclose(a[2], b[2]) or np.isclose(abs(a[2] - b[2]), 180.0)


def test_point_inside_and_axes_match_stcal():
    from stcal.jump import jump as sj
    from stcal.jump.jump_class import JumpData

    rng = np.random.default_rng(1)
    jd = JumpData()
    for _ in range(500):
        e = ((rng.uniform(0, 20), rng.uniform(0, 20)), (rng.uniform(1, 10), rng.uniform(1, 10)),
             rng.uniform(-90, 90))
        p = (rng.uniform(0, 20), rng.uniform(0, 20))
        assert le.point_inside_ellipse(p, e) == bool(sj.point_inside_ellipse(p, e))
        ratio, expansion = bool(rng.integers(0, 2)), float(rng.uniform(1, 3))
        jd.max_extended_width = int(rng.choice([8, 200]))
        assert le.expanded_half_axes(e, expansion, ratio, jd.max_extended_width) == tuple(
            sj.compute_axes(ratio, e, expansion, jd)
        )


def test_revert_bright_showers_matches_stcal():
    from stcal.jump import jump as sj
    from stcal.jump.jump_class import JumpData

    rng = np.random.default_rng(2)
    for _ in range(30):
        shape = (int(rng.integers(1, 3)), int(rng.integers(3, 8)), 5, 6)
        data = np.cumsum(rng.normal(10, 3, shape), axis=1).astype(np.float32)
        data += (rng.random(shape) < 0.1) * rng.uniform(0, 50, shape).astype(np.float32)
        ingdq = ((rng.random(shape) < 0.1) * rng.choice([1, 2, 4, 6, 8], shape)).astype(np.uint8)
        gdq = ingdq | ((rng.random(shape) < 0.3) * 4).astype(np.uint8)
        jd = JumpData()
        jd.fl_sat, jd.fl_jump, jd.fl_dnu = 2, 4, 1
        jd.max_shower_amplitude = float(rng.uniform(0.5, 10))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = sj.max_flux_showers(jd, shape[0], data.copy(), ingdq.copy(), gdq.copy())
        np.testing.assert_array_equal(
            le._revert_bright(jd.max_shower_amplitude, data, ingdq, gdq), theirs
        )
