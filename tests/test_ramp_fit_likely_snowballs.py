"""LIKELY ramp fit with snowball flagging (stcal #491) on NumPy, array_api_strict and JAX."""

from __future__ import annotations

import numpy as np
import pytest

from stcal_models.algorithms.jump import JumpDetection, SnowballParams
from stcal_models.algorithms.ramp_fitting.likely import LikelyRampFit, likely_fit_arrays
from stcal_models.algorithms.saturation import Saturation
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.simulate import simulate_ramp

JUMP = int(DQ.JUMP_DET)
SAT = int(DQ.SATURATED)


def _np(x):
    return np.asarray(to_numpy(x))


def _scene(seed=5, *, nints=2, ngroups=8, zeroframe=False, nframes=1):
    """A 96x96 exposure with five snowballs and cosmic rays, SATURATED flagged."""
    sim = simulate_ramp(shape=(96, 96), nints=nints, ngroups=ngroups, seed=seed, snowballs=5,
                        cr_rate=2e-4, zeroframe=zeroframe, nframes=nframes, n_stars=5)
    return sim, Saturation()(sim.ramp, sim.refs.saturation)


def _on(xp, sim, ramp):
    if xp is np:
        return ramp, (sim.refs.gain, sim.refs.readnoise)
    arrays = {k: xp.asarray(np.asarray(v)) for k, v in ramp.arrays().items()}
    refs = tuple(r.replace(data=xp.asarray(np.asarray(r.data)))
                 for r in (sim.refs.gain, sim.refs.readnoise))
    return ramp.replace(**arrays), refs


@pytest.fixture(scope="module")
def scene():
    sim, ramp = _scene()
    refs = (sim.refs.gain, sim.refs.readnoise)
    plain = LikelyRampFit().fit(ramp, *refs)
    snow = LikelyRampFit(expand_large_events=True).fit(ramp, *refs)
    return sim, ramp, plain, snow


def test_snowballs_enlarge_the_fit_jumps_around_saturated_cores(scene):
    sim, ramp, plain, snow = scene
    assert plain.snowballs is None
    assert snow.snowballs == len(sim.truth.snowballs)
    before, after = _np(plain.groupdq), _np(snow.groupdq)
    # flags are added; only a grown saturated core replaces a pixel's flags by SATURATED
    kept = (after & before) == before
    assert np.all(kept | (after == SAT))
    assert np.count_nonzero(~kept) < np.count_nonzero(after != before)
    added = (after & JUMP != 0) & (before & JUMP == 0)
    yy, xx = np.mgrid[:96, :96]
    near_any = np.zeros((after.shape[0], 96, 96), bool)
    for intg, group, y, x, radius in sim.truth.snowballs:
        near = np.hypot(yy - y, xx - x) <= 4.5 * radius + 1  # halo 2r, enlarged 2x
        near_any[intg] |= near
        # the enlarged ellipse reaches beyond the jumps the likelihood search found (the
        # event arrives during ``group``: its jump shows in that group or the next)
        assert np.any(added[intg, group:group + 2] & near), (intg, group, y, x)
    # elsewhere only jump regions within edge_size (25) of the border may grow (no core
    # is required there, as documented)
    interior = (yy >= 25) & (yy < 71) & (xx >= 25) & (xx < 71)
    assert not np.any(added & (interior & ~near_any)[:, None])


def test_differences_ending_at_new_jumps_leave_the_fit(scene):
    sim, ramp, plain, snow = scene
    before, after = _np(plain.groupdq), _np(snow.groupdq)
    added = np.any((after & JUMP != 0) & (before & JUMP == 0), axis=1)
    ints_plain, ints_snow = plain.result.rateints, snow.result.rateints
    changed = ~np.isclose(_np(ints_plain.var_rnoise), _np(ints_snow.var_rnoise), rtol=1e-6,
                          equal_nan=True)
    # read-noise variance grows where differences were dropped, and only there
    assert np.all(~changed | added)
    grown = added & np.isfinite(_np(ints_snow.var_rnoise))
    assert np.all(_np(ints_snow.var_rnoise)[grown] >= _np(ints_plain.var_rnoise)[grown] * 0.999)
    assert np.count_nonzero(changed) > 0.5 * np.count_nonzero(grown)
    # the new flags reach the products' DQ
    assert np.all(_np(ints_snow.dq)[added] & JUMP)


def test_backends_agree(xp, scene):
    sim, ramp, _, snow = scene
    ramp_x, refs = _on(xp, sim, ramp)
    got = LikelyRampFit(expand_large_events=True).fit(ramp_x, *refs)
    assert got.snowballs == snow.snowballs
    np.testing.assert_array_equal(_np(got.groupdq), _np(snow.groupdq))
    for name in ("data", "dq", "var_rnoise", "var_poisson", "err"):
        a, b = _np(getattr(got.result.rateints, name)), _np(getattr(snow.result.rateints, name))
        if name == "dq":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6, equal_nan=True)


def test_chunked_equals_single_chunk(scene):
    sim, ramp, _, snow = scene
    tiny = LikelyRampFit(expand_large_events=True, max_memory=0.002).fit(
        ramp, sim.refs.gain, sim.refs.readnoise)
    np.testing.assert_array_equal(_np(tiny.groupdq), _np(snow.groupdq))
    for name in ("data", "dq", "err"):
        np.testing.assert_array_equal(_np(getattr(tiny.result.rate, name)),
                                      _np(getattr(snow.result.rate, name)))


def test_arrays_entry_point_matches_the_step(scene):
    sim, ramp, _, snow = scene
    out = likely_fit_arrays(ramp.data, ramp.groupdq, ramp.pixeldq, sim.refs.gain.data,
                            sim.refs.readnoise.data, ramp.meta, snowball=SnowballParams())
    assert out["snowballs"] == snow.snowballs
    np.testing.assert_array_equal(_np(out["groupdq"]), _np(snow.groupdq))
    np.testing.assert_array_equal(_np(out["rate"]["dq"]), _np(snow.result.rate.dq))


def test_core_requirement_and_size_parameters(scene):
    sim, ramp, plain, snow = scene
    refs = (sim.refs.gain, sim.refs.readnoise)
    huge_core = LikelyRampFit(expand_large_events=True,
                              snowball=SnowballParams(min_sat_area=1e4, edge_size=0)).fit(ramp, *refs)
    assert huge_core.snowballs == 0
    np.testing.assert_array_equal(_np(huge_core.groupdq), _np(plain.groupdq))
    wide = LikelyRampFit(expand_large_events=True,
                         snowball=SnowballParams(expand_factor=3.0)).fit(ramp, *refs)
    assert np.count_nonzero(_np(wide.groupdq) & JUMP) > np.count_nonzero(_np(snow.groupdq) & JUMP)


def test_zeroframe_exposures_flag_snowballs_too():
    sim, ramp = _scene(6, zeroframe=True, nframes=2)
    refs = (sim.refs.gain, sim.refs.readnoise)
    plain = LikelyRampFit().fit(ramp, *refs)
    snow = LikelyRampFit(expand_large_events=True).fit(ramp, *refs)
    assert snow.snowballs > 0
    assert np.count_nonzero(_np(snow.groupdq) & JUMP) > np.count_nonzero(_np(plain.groupdq) & JUMP)


def test_off_without_jump_detection_and_inputs_untouched(scene):
    sim, ramp, _, _ = scene
    gdq = np.array(ramp.groupdq, copy=True)
    fit = LikelyRampFit(expand_large_events=True, detect_jumps=False).fit(
        ramp, sim.refs.gain, sim.refs.readnoise)
    assert fit.snowballs is None
    np.testing.assert_array_equal(np.asarray(ramp.groupdq), gdq)


def test_parameters_are_validated():
    with pytest.raises(TypeError, match="snowball"):
        LikelyRampFit(snowball={"min_jump_area": 5})
    with pytest.raises(TypeError, match="expand_large_events"):
        LikelyRampFit(expand_large_events="yes")
    with pytest.raises(ValueError, match="expand_factor"):
        SnowballParams(expand_factor=0.0)
    with pytest.raises(TypeError, match="sat_expand"):
        SnowballParams(sat_expand=1.5)


def test_params_from_the_jump_step():
    step = JumpDetection(min_jump_area=12.0, sat_expand=3, edge_size=0)
    params = SnowballParams.from_step(step)
    assert (params.min_jump_area, params.sat_expand, params.edge_size) == (12.0, 3, 0)
    assert "expand_large_events" in repr(LikelyRampFit(expand_large_events=True))
