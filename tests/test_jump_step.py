"""Tests of the ``JumpDetection`` step: parameters, modes, models, chunking and Dask."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from stcal_models.algorithms.jump import JumpDetection, detection_mode, uneven_sampling
from stcal_models.algorithms.jump.chunking import plan_chunks, rows_per_chunk, run_chunks
from stcal_models.dqflags import DQ
from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef

JUMP, SAT, DNU = 4, 2, 1


def noisy_ramp(nints=1, ngroups=8, ny=12, nx=10, seed=0, crs=True, **meta_kw):
    rng = np.random.default_rng(seed)
    flux = rng.uniform(5.0, 40.0, (ny, nx))
    data = np.cumsum(rng.normal(flux, np.sqrt(flux + 25.0), (nints, ngroups, ny, nx)), axis=1)
    if crs:
        hits = rng.random(data.shape) < 0.4 / ngroups
        hits[:, 0] = False
        data = data + np.cumsum(hits * rng.uniform(50, 500, data.shape), axis=1)
    meta = ExposureMeta(nints=nints, ngroups=ngroups, frame_time=10.0, **meta_kw)
    return RampModel(data=data.astype(np.float32), meta=meta)


def refs(ny=12, nx=10, gain=2.0, rn=5.0):
    return (
        GainRef(data=np.full((ny, nx), gain, np.float32)),
        ReadnoiseRef(data=np.full((ny, nx), rn, np.float32)),
    )


# ----------------------------------------------------------------------------- parameters
def test_defaults_are_the_documented_ones():
    step = JumpDetection()
    assert step.rejection_threshold == 4.0
    assert step.three_group_rejection_threshold == 6.0
    assert step.four_group_rejection_threshold == 5.0
    assert step.flag_4_neighbors is True
    assert (step.min_jump_to_flag_neighbors, step.max_jump_to_flag_neighbors) == (10.0, 1000.0)
    assert step.min_diffs_single_pass == 10 and step.minimum_groups == 3
    assert step.minimum_sigclip_groups == 100 and step.only_use_ints is True
    assert step.expand_large_events is False and step.find_showers is False
    assert step.max_extended_width == 200 and step.memory_budget == 2 * 2**30
    assert repr(step) == "JumpDetection()"
    assert "rejection_threshold" in step._repr_html_()


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("rejection_threshold", 0.0, ValueError),
        ("rejection_threshold", "4", TypeError),
        ("three_group_rejection_threshold", -1.0, ValueError),
        ("four_group_rejection_threshold", float("nan"), ValueError),
        ("min_jump_to_flag_neighbors", 2000.0, ValueError),
        ("max_jump_to_flag_neighbors", -1.0, ValueError),
        ("after_jump_flag_dn1", -1.0, ValueError),
        ("after_jump_flag_time1", -1.0, ValueError),
        ("after_jump_flag_dn2", "x", TypeError),
        ("after_jump_flag_time2", -5.0, ValueError),
        ("min_diffs_single_pass", 0, ValueError),
        ("min_diffs_single_pass", 2.5, TypeError),
        ("minimum_groups", 0, ValueError),
        ("minimum_sigclip_groups", 0, ValueError),
        ("only_use_ints", 1, TypeError),
        ("flag_4_neighbors", "yes", TypeError),
        ("expand_large_events", None, TypeError),
        ("min_sat_area", -1.0, ValueError),
        ("min_jump_area", -1.0, ValueError),
        ("expand_factor", 0.0, ValueError),
        ("use_ellipses", 0, TypeError),
        ("sat_required_snowball", "no", TypeError),
        ("min_sat_radius_extend", -1.0, ValueError),
        ("sat_expand", -1, ValueError),
        ("sat_expand", 1.5, TypeError),
        ("edge_size", -1, ValueError),
        ("mask_snowball_core_next_int", 1, TypeError),
        ("snowball_time_masked_next_int", -1.0, ValueError),
        ("find_showers", 1, TypeError),
        ("extend_snr_threshold", -1.0, ValueError),
        ("extend_min_area", -1, ValueError),
        ("extend_inner_radius", -1.0, ValueError),
        ("extend_outer_radius", 0.5, ValueError),
        ("extend_ellipse_expand_ratio", 0.0, ValueError),
        ("max_shower_amplitude", -1.0, ValueError),
        ("time_masked_after_shower", -1.0, ValueError),
        ("max_extended_width", 0, ValueError),
        ("memory_budget", 0.0, ValueError),
        ("engine", "threads", ValueError),
    ],
)
def test_bad_parameters_name_the_field(field, value, error):
    with pytest.raises(error, match=f"JumpDetection.{field}"):
        JumpDetection(**{field: value})


def test_bad_inputs():
    ramp = noisy_ramp()
    gain, rn = refs()
    with pytest.raises(TypeError, match="ramp"):
        JumpDetection()(ramp.data, gain, rn)
    with pytest.raises(TypeError, match="gain_ref"):
        JumpDetection()(ramp, rn, rn)
    with pytest.raises(TypeError, match="readnoise_ref"):
        JumpDetection()(ramp, gain, gain)
    with pytest.raises(ValueError, match="GainRef"):
        JumpDetection()(ramp, GainRef(data=np.ones((4, 4), np.float32)), rn)


def test_inputs_not_mutated_and_data_unchanged():
    ramp = noisy_ramp()
    before = {k: np.array(v, copy=True) for k, v in ramp.arrays().items()}
    out = JumpDetection()(ramp, *refs())
    for k, v in ramp.arrays().items():
        np.testing.assert_array_equal(v, before[k])
    np.testing.assert_array_equal(out.data, ramp.data)
    assert (out.groupdq & JUMP).any()
    assert out.meta == ramp.meta


def test_no_gain_value_flags():
    ramp = noisy_ramp()
    g = np.full((12, 10), 2.0, np.float32)
    g[0, 0], g[1, 1], g[2, 2] = 0.0, -1.0, np.nan
    out = JumpDetection()(ramp, GainRef(data=g), refs()[1])
    bad = int(DQ.NO_GAIN_VALUE | DQ.DO_NOT_USE)
    assert out.pixeldq[0, 0] == bad and out.pixeldq[1, 1] == bad and out.pixeldq[2, 2] == bad
    assert (out.pixeldq != 0).sum() == 3


def test_reference_cut_to_subarray():
    ramp = noisy_ramp(xstart=3, ystart=2)
    gain = GainRef(data=np.full((20, 20), 2.0, np.float32))
    rn = ReadnoiseRef(data=np.full((20, 20), 5.0, np.float32))
    g = np.full((20, 20), 2.0, np.float32)
    g[1, 2] = 0.0  # science pixel (0, 0) of the subarray
    out = JumpDetection()(ramp, GainRef(data=g), rn)
    assert out.pixeldq[0, 0] == int(DQ.NO_GAIN_VALUE | DQ.DO_NOT_USE)
    origin = ramp.replace(meta=ramp.meta.replace(xstart=1, ystart=1))
    np.testing.assert_array_equal(out.groupdq, JumpDetection()(origin, *refs()).groupdq)
    del gain


def test_backend_is_preserved_numpy_and_jax():
    ramp = noisy_ramp(nints=2, ngroups=6)
    step = JumpDetection(after_jump_flag_dn1=30.0, after_jump_flag_time1=15.0)
    a = step(ramp, *refs())
    b = step(ramp.to_backend("jax"), *refs())
    assert b.backend == "jax" and a.backend == "numpy"
    np.testing.assert_array_equal(np.asarray(b.groupdq), a.groupdq)
    np.testing.assert_array_equal(np.asarray(b.pixeldq), a.pixeldq)


# ----------------------------------------------------------------------------- modes
@pytest.mark.parametrize(
    "nints, ngroups, kwargs, mode",
    [
        (1, 2, {}, "none"),
        (1, 3, {}, "iterative"),
        (1, 4, {"minimum_groups": 5}, "none"),
        (1, 10, {}, "iterative"),
        (1, 11, {}, "single"),
        (1, 11, {"min_diffs_single_pass": 11}, "iterative"),
        (100, 3, {}, "sigma_clip_ints"),
        (5, 3, {"minimum_sigclip_groups": 5}, "sigma_clip_ints"),
        (5, 4, {"minimum_sigclip_groups": 20, "only_use_ints": False}, "sigma_clip_all"),
        (5, 4, {"minimum_sigclip_groups": 21, "only_use_ints": False}, "iterative"),
        (5, 4, {"minimum_sigclip_groups": 6}, "iterative"),
    ],
)
def test_detection_mode(nints, ngroups, kwargs, mode):
    ramp = noisy_ramp(nints, ngroups, ny=3, nx=3, crs=False)
    assert detection_mode(JumpDetection(**kwargs), ramp) == mode


def test_whole_do_not_use_groups_do_not_count_towards_sigma_clip():
    ramp = noisy_ramp(5, 4, ny=3, nx=3, crs=False)
    gdq = np.zeros(ramp.shape, np.uint8)
    gdq[0, 1] = DNU
    step = JumpDetection(minimum_sigclip_groups=20, only_use_ints=False)
    assert detection_mode(step, ramp.replace(groupdq=gdq)) == "iterative"
    gdq[0, 1, 0, 0] = 0
    assert detection_mode(step, ramp.replace(groupdq=gdq)) == "sigma_clip_all"


def test_uneven_sampling_and_its_mode():
    pattern = [[1], [2, 3], [4, 5, 6, 7], [8]]
    meta = ExposureMeta(nints=1, ngroups=4, read_pattern=pattern)
    dt, nreads = uneven_sampling(meta)
    assert dt == (1.5, 3.0, 2.5) and nreads == (3, 6, 5)
    assert uneven_sampling(ExposureMeta(nints=1, ngroups=4)) is None
    ramp = RampModel(data=np.zeros((200, 4, 2, 2), np.float32), meta=meta.replace(nints=200))
    assert detection_mode(JumpDetection(), ramp) == "iterative"  # never sigma clip


def test_minimum_groups_disables_detection():
    ramp = noisy_ramp(1, 4)
    assert (JumpDetection()(ramp, *refs()).groupdq & JUMP).any()
    out = JumpDetection(minimum_groups=5)(ramp, *refs())
    np.testing.assert_array_equal(out.groupdq, ramp.groupdq)


def test_min_diffs_single_pass_changes_the_method():
    data = np.zeros((1, 11, 3, 3), np.float32) + (np.arange(11) * 16.0)[None, :, None, None]
    data[0, 5:, 1, 1] -= 40.0  # one difference of -24: an outlier only as a signed value
    ramp = RampModel(data=data.astype(np.float32), meta=ExposureMeta(nints=1, ngroups=11))
    gain, rn = refs(3, 3, 1.0, float(np.sqrt(48.0)))
    single = JumpDetection(flag_4_neighbors=False)(ramp, gain, rn).groupdq[0, :, 1, 1]
    iterative = JumpDetection(flag_4_neighbors=False, min_diffs_single_pass=11)(ramp, gain, rn)
    assert np.flatnonzero(single & JUMP).tolist() == [5]
    assert not (iterative.groupdq[0, :, 1, 1] & JUMP).any()


def test_after_jump_times_become_groups():
    step = JumpDetection(after_jump_flag_time1=25.0, after_jump_flag_time2=30.0)
    ramp = noisy_ramp(1, 6)  # group_time 10 s
    params = step.kernel_params(ramp)
    assert (params.after_jump_groups1, params.after_jump_groups2) == (2, 3)
    data = np.zeros((1, 8, 3, 3), np.float32) + (np.arange(8) * 10.0)[None, :, None, None]
    data[0, 2:, 1, 1] += 400.0
    ramp = RampModel(data=data.astype(np.float32), meta=ExposureMeta(nints=1, ngroups=8, frame_time=10.0))
    gain, rn = refs(3, 3, 1.0, 4.0)
    base = JumpDetection(flag_4_neighbors=False)
    for dn, time, expected in ((100.0, 25.0, [2, 3, 4]), (500.0, 25.0, [2]), (100.0, 9.9, [2])):
        out = dataclasses.replace(base, after_jump_flag_dn1=dn, after_jump_flag_time1=time)(
            ramp, gain, rn
        )
        assert np.flatnonzero(out.groupdq[0, :, 1, 1] & JUMP).tolist() == expected
    out = dataclasses.replace(base, after_jump_flag_dn2=300.0, after_jump_flag_time2=40.0)(
        ramp, gain, rn
    )
    assert np.flatnonzero(out.groupdq[0, :, 1, 1] & JUMP).tolist() == [2, 3, 4, 5, 6]


def test_use_ellipses_is_accepted_but_has_no_effect():
    ramp = noisy_ramp(2, 6)
    a = JumpDetection(expand_large_events=True)(ramp, *refs())
    b = JumpDetection(expand_large_events=True, use_ellipses=True)(ramp, *refs())
    np.testing.assert_array_equal(a.groupdq, b.groupdq)


# ----------------------------------------------------------------------------- chunking
def test_rows_per_chunk_and_plan():
    assert rows_per_chunk((1, 10, 2048, 2048), 2 * 2**30) == 2048
    rows = rows_per_chunk((1, 10, 2048, 2048), 256 * 2**20)
    assert 100 < rows < 2048
    assert rows_per_chunk((1, 10, 2048, 2048), 1.0) == 1
    assert plan_chunks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ValueError, match="rows"):
        plan_chunks(10, 0)


@pytest.mark.parametrize("budget", [5_000.0, 20_000.0, 60_000.0])
def test_chunked_equals_whole_frame(budget):
    ramp = noisy_ramp(2, 6, ny=17, nx=9, seed=3)
    gain, rn = refs(17, 9)
    step = JumpDetection(min_jump_to_flag_neighbors=4.0, after_jump_flag_dn1=20.0,
                         after_jump_flag_time1=20.0)
    whole = step(ramp, gain, rn)
    chunked = dataclasses.replace(step, memory_budget=budget)(ramp, gain, rn)
    assert rows_per_chunk(ramp.shape, budget) < 17
    np.testing.assert_array_equal(chunked.groupdq, whole.groupdq)


def test_chunked_jax_compiles_once_for_padded_chunks():
    from stcal_models.algorithms.jump.twopoint import jump_kernel

    ramp = noisy_ramp(1, 5, ny=13, nx=6, seed=4).to_backend("jax")
    gain, rn = refs(13, 6)
    before = jump_kernel.trace_count()
    step = JumpDetection(memory_budget=20_000.0)
    out = step(ramp, gain, rn)
    assert jump_kernel.trace_count() - before == 1
    whole = JumpDetection()(ramp.to_backend("numpy"), gain, rn)
    np.testing.assert_array_equal(np.asarray(out.groupdq), whole.groupdq)


def test_run_chunks_rejects_unknown_engine():
    gdq = np.zeros((1, 2, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="engine"):
        run_chunks(lambda **kw: kw["gdq"], {"gdq": gdq}, 2, 1, engine="mpi")


def test_dask_engine_matches_serial():
    pytest.importorskip("dask")
    ramp = noisy_ramp(2, 6, ny=17, nx=9, seed=5)
    gain, rn = refs(17, 9)
    serial = JumpDetection(memory_budget=20_000.0)(ramp, gain, rn)
    parallel = JumpDetection(memory_budget=20_000.0, engine="dask")(ramp, gain, rn)
    np.testing.assert_array_equal(parallel.groupdq, serial.groupdq)


def test_dask_engine_missing_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    ramp = noisy_ramp(1, 5, ny=17, nx=9)
    with pytest.raises(ImportError, match="optional dependency 'dask'"):
        JumpDetection(memory_budget=20_000.0, engine="dask")(ramp, *refs(17, 9))
