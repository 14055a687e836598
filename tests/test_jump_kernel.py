"""Unit tests of the jump-detection array kernel (``jump.twopoint``) on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from stcal_models.algorithms.jump import twopoint as tp
from stcal_models.algorithms.jump.twopoint import KernelParams, jump_kernel

JUMP, SAT, DNU = 4, 2, 1


def flat_ramp(nints, ngroups, ny=5, nx=5, slope=16.0):
    """Noise-free ramps of ``slope`` DN per group (every difference equals ``slope``)."""
    data = np.zeros((nints, ngroups, ny, nx), np.float32)
    data[:] = (np.arange(ngroups, dtype=np.float32) * slope)[None, :, None, None]
    return data


def run(to_xp, data, gdq=None, *, gain=1.0, rn=4.0, e1=0.0, e2=0.0, **params):
    ny, nx = data.shape[-2:]
    gdq = np.zeros(data.shape, np.uint8) if gdq is None else gdq
    g = np.full((ny, nx), gain, np.float32)
    r = np.full((ny, nx), rn, np.float32)
    out = jump_kernel(
        to_xp(data), to_xp(gdq), to_xp(g), to_xp(r),
        to_xp(np.asarray(e1, np.float32)), to_xp(np.asarray(e2, np.float32)),
        params=KernelParams(**params),
    )
    return np.asarray(out) if not hasattr(out, "__dlpack__") else np.from_dlpack(out)


def test_kernel_features_on_every_backend(xp, to_xp):
    """One scene: a jump with neighbours, after-jump groups, saturation and DO_NOT_USE."""
    data = flat_ramp(2, 8, ny=7, nx=7)
    sigma = np.sqrt(16.0 + 16.0)
    data[0, 3:, 3, 3] += 30 * sigma  # ratio 30: neighbours (6 < 30 < 40) and after-jump
    data[1, 5:, 1, 1] += 60 * sigma  # ratio 60 > max: no neighbours
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 3, 2, 3] = SAT  # neighbour above is saturated in that group
    gdq[0, 3, 3, 4] = DNU  # neighbour right is DO_NOT_USE
    gdq[0, 6:, 3, 3] = SAT  # saturation ends the ramp: no after-jump flags there
    gdq[1, 2, 4, 4] = SAT | JUMP  # stale jump flag on a saturated group is cleared
    out = run(
        to_xp, data, gdq, e1=100.0,
        min_jump_to_flag_neighbors=6.0, max_jump_to_flag_neighbors=40.0, after_jump_groups1=3,
    )
    jump = (out & JUMP) != 0
    assert jump[0, :, 3, 3].tolist() == [False, False, False, True, True, True, False, False]
    assert jump[0, 3, 4, 3] and jump[0, 3, 3, 2]  # below, left
    assert not jump[0, 3, 2, 3] and not jump[0, 3, 3, 4]  # saturated, do-not-use
    assert out[0, 3, 2, 3] == SAT and out[0, 3, 3, 4] == DNU
    assert jump[1, :, 1, 1].tolist() == [False] * 5 + [True] * 3  # jump + 2 groups after
    assert not jump[1, 5, 0, 1] and not jump[1, 5, 1, 2]
    assert out[1, 2, 4, 4] == SAT
    assert jump.sum() == 3 + 2 + 3


@pytest.mark.parametrize(
    "ngroups, ratio, threshold_name, flagged",
    [
        (3, 5.9, "three_group_rejection_threshold", False),
        (3, 6.1, "three_group_rejection_threshold", True),
        (4, 4.9, "four_group_rejection_threshold", False),
        (4, 5.1, "four_group_rejection_threshold", True),
        (6, 3.9, "rejection_threshold", False),
        (6, 4.1, "rejection_threshold", True),
    ],
)
def test_threshold_by_usable_differences(ngroups, ratio, threshold_name, flagged):
    """2 differences -> three-group threshold, 3 -> four-group, 4+ -> rejection_threshold."""
    data = flat_ramp(1, ngroups)
    data[0, ngroups - 1 :, 2, 2] += ratio * np.sqrt(32.0)
    out = run(np.asarray, data)
    assert bool(out[0, ngroups - 1, 2, 2] & JUMP) is flagged
    # the same jump with a threshold just above the ratio is not flagged
    out = run(np.asarray, data, **{threshold_name: ratio + 0.2})
    assert not out[0, ngroups - 1, 2, 2] & JUMP


def test_ratio_equal_to_threshold_is_not_a_jump():
    data = flat_ramp(1, 6)
    data[0, 5:, 2, 2] += 16.0  # |32 - 16| / sqrt(16 + 0) = 4 exactly
    assert not run(np.asarray, data, rn=0.0)[0, 5, 2, 2] & JUMP


def test_saturated_groups_never_flagged():
    data = flat_ramp(1, 6)
    data[0, 3:, 2, 2] += 1000.0
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 3:, 2, 2] = SAT
    out = run(np.asarray, data, gdq, flag_4_neighbors=False)
    assert not (out & JUMP).any()


def test_iteration_finds_second_lower_jump():
    data = flat_ramp(1, 9)
    s = np.sqrt(32.0)
    data[0, 3:, 2, 2] += 200 * s
    data[0, 6:, 2, 2] += 8 * s
    out = run(np.asarray, data, flag_4_neighbors=False)
    assert np.flatnonzero(out[0, :, 2, 2] & JUMP).tolist() == [3, 6]


@pytest.mark.parametrize(
    "diffs, flagged",
    [
        ([16.0, 516.0, 16.0], [2]),  # three differences: plain median, one jump
        ([16.0, 516.0, 1016.0], [1, 3]),  # tied largest ratios flagged together, one left
        ([16.0, 16.0, 16.0, 16.0, 16.0, 516.0, 516.0], [6, 7]),  # all copies clipped
    ],
)
def test_clipped_median_and_ties(diffs, flagged):
    data = flat_ramp(1, len(diffs) + 1)
    data[0, 1:, 2, 2] = np.cumsum(diffs)
    out = run(np.asarray, data, flag_4_neighbors=False)
    assert np.flatnonzero(out[0, :, 2, 2] & JUMP).tolist() == flagged


def test_single_pass_mode_flags_all_outliers_at_once():
    data = flat_ramp(1, 12)
    s = np.sqrt(32.0)
    data[0, 4:, 2, 2] += 6 * s
    data[0, 8:, 2, 2] += 6 * s
    out = run(np.asarray, data, mode="single", flag_4_neighbors=False)
    assert np.flatnonzero(out[0, :, 2, 2] & JUMP).tolist() == [4, 8]


def test_sigma_clip_modes_flag_the_outlier_integration():
    rng = np.random.default_rng(0)
    data = np.cumsum(rng.normal(20.0, 2.0, (30, 4, 4, 4)), axis=1).astype(np.float32)
    data[7, 2:, 1, 1] += 100.0
    for mode in ("sigma_clip_ints", "sigma_clip_all"):
        out = run(np.asarray, data, mode=mode, flag_4_neighbors=False)
        assert out[7, 2, 1, 1] & JUMP
        assert (out & JUMP).sum() <= JUMP * 3


def test_uneven_sampling_normalises_by_mean_time():
    """A resultant of many reads has a larger difference but no jump."""
    pattern = [[1], [2], [3, 4, 5, 6, 7, 8, 9, 10], [11], [12], [13]]
    times = np.array([np.mean(r) for r in pattern])
    nreads = np.array([len(r) for r in pattern])
    data = np.zeros((1, 6, 5, 5), np.float32) + (times * 20.0)[None, :, None, None].astype(np.float32)
    dt = tuple(np.diff(times).tolist())
    nr = tuple((nreads[1:] + nreads[:-1]).tolist())
    out = run(np.asarray, data, dt=dt, nreads=nr, flag_4_neighbors=False)
    assert not (out & JUMP).any()
    even = run(np.asarray, data, flag_4_neighbors=False)  # treated as evenly sampled
    assert (even & JUMP).any()
    data[0, 4:, 2, 2] += 200.0
    out = run(np.asarray, data, dt=dt, nreads=nr, flag_4_neighbors=False)
    assert np.flatnonzero(out[0, :, 2, 2] & JUMP).tolist() == [4]


def test_after_jump_two_thresholds():
    data = flat_ramp(1, 10)
    data[0, 2:, 1, 1] += 150.0  # above dn1 only
    data[0, 2:, 3, 3] += 600.0  # above both
    out = run(
        np.asarray, data, e1=100.0, e2=500.0, after_jump_groups1=1, after_jump_groups2=4,
        flag_4_neighbors=False,
    )
    assert np.flatnonzero(out[0, :, 1, 1] & JUMP).tolist() == [2, 3]
    assert np.flatnonzero(out[0, :, 3, 3] & JUMP).tolist() == [2, 3, 4, 5, 6]


def test_neighbour_range_is_exclusive():
    data = flat_ramp(1, 8)
    s = np.sqrt(32.0)
    data[0, 4:, 2, 2] += 10 * s  # ratio exactly 10 = minimum: no neighbours
    out = run(np.asarray, data, rn=4.0)
    assert (out[0, 4] & JUMP).sum() == JUMP
    out = run(np.asarray, data, min_jump_to_flag_neighbors=9.0)
    assert (out[0, 4] & JUMP).sum() == 5 * JUMP
    out = run(np.asarray, data, min_jump_to_flag_neighbors=5.0, max_jump_to_flag_neighbors=9.5)
    assert (out[0, 4] & JUMP).sum() == JUMP


def test_zero_noise_pixels_are_not_flagged():
    data = np.zeros((1, 6, 3, 3), np.float32)
    data[0, 4:, 1, 1] = 0.0
    out = run(np.asarray, data, rn=0.0)
    assert not (out & JUMP).any()


def test_mode_none_returns_input():
    data = flat_ramp(1, 2)
    gdq = np.full(data.shape, 8, np.uint8)
    np.testing.assert_array_equal(run(np.asarray, data, gdq, mode="none"), gdq)


def test_kernel_params_validates_mode():
    with pytest.raises(ValueError, match="KernelParams.mode"):
        KernelParams(mode="bogus")


@pytest.mark.parametrize("k", [1, 2, 3, 5, 9, 16, 17, 32])
def test_sorting_network_sorts(k):
    rng = np.random.default_rng(k)
    x = rng.integers(0, 5, (k, 300)).astype(np.float32)
    np.testing.assert_array_equal(tp.sort0(np, x), np.sort(x, axis=0))
    assert all(a < b < k for a, b in tp.sorting_network(k))


def test_sort_falls_back_for_long_axes():
    x = np.random.default_rng(0).normal(size=(tp.NETWORK_MAX + 3, 7)).astype(np.float32)
    np.testing.assert_array_equal(tp.sort0(np, x), np.sort(x, axis=0))


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8])
def test_window_or(length):
    src = np.zeros((1, 12, 1, 1), bool)
    src[0, [2, 9], 0, 0] = True
    out = tp.window_or(np, src, length, axis=1)[0, :, 0, 0]
    expected = np.zeros(12, bool)
    for g in (2, 9):
        expected[g : g + length] = True
    np.testing.assert_array_equal(out, expected)


def test_masked_while_eager_and_bound():
    calls = []

    def body(x):
        calls.append(1)
        return x + 1

    out = tp.masked_while(np, lambda x: np.asarray(x < 10), body, np.asarray(0), 4)
    assert int(out) == 4 and len(calls) == 4
    assert tp.masked_while(np, lambda x: np.asarray(True), body, np.asarray(0), 0) == 0


def test_fast_iterative_matches_general_on_ties():
    """The sorted-range formulation equals the general per-pass formulation."""
    rng = np.random.default_rng(3)
    params = KernelParams()
    for _ in range(20):
        k = int(rng.integers(2, 12))
        v = (rng.integers(0, 5, (k, 6, 6)) * 10 + 100).astype(np.float32)
        v += (rng.random(v.shape) < 0.25) * rng.choice([-70, 60, 200], v.shape).astype(np.float32)
        v[rng.random(v.shape) < 0.1] = np.nan
        var = np.full((6, 6), float(rng.choice([0.0, 4.0])), np.float32)
        fast = tp._iterative_sorted(np, np.abs(v), var, params)
        general = tp._iterative(np, np.abs(v), var, None, params)
        np.testing.assert_array_equal(fast, general)
