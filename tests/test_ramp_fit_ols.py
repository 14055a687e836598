"""Unit tests of OLSRampFit on every backend (numpy, array_api_strict, jax)."""

from __future__ import annotations

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stcal_models.algorithms.ramp_fitting.common import build_result, prepare_inputs
from stcal_models.algorithms.ramp_fitting.ols import OLSRampFit, _batcher_pairs, ols_fit_arrays
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.models import (
    DarkRef,
    ExposureMeta,
    FitOptModel,
    GainRef,
    RampFitResult,
    RampModel,
    ReadnoiseRef,
    RefMeta,
)

DNU, SAT, JUMP, CL = int(DQ.DO_NOT_USE), int(DQ.SATURATED), int(DQ.JUMP_DET), int(DQ.CHARGELOSS)
NO_GAIN = int(DQ.NO_GAIN_VALUE)
TG = 10.0
GAIN = 2.0
RN = 10.0


# ------------------------------------------------------------------ helpers
@pytest.fixture(params=("numpy", "array_api_strict"))
def eager_xp(request):
    """Namespaces that run the kernel eagerly (JAX is covered by the scenario tests,
    which share shapes so that XLA compiles the kernel only a few times)."""
    import array_api_strict

    return np if request.param == "numpy" else array_api_strict


@pytest.fixture
def to_eager(eager_xp):
    def convert(array):
        return np.asarray(array) if eager_xp is np else eager_xp.asarray(np.asarray(array))

    return convert


def _ramp(to_xp, data, gdq=None, pdq=None, zeroframe=None, **meta):
    data = np.asarray(data, np.float32)
    nints, ngroups = data.shape[:2]
    meta.setdefault("frame_time", TG)
    return RampModel(
        data=to_xp(data),
        groupdq=None if gdq is None else to_xp(np.asarray(gdq, np.uint8)),
        pixeldq=None if pdq is None else to_xp(np.asarray(pdq, np.uint32)),
        zeroframe=None if zeroframe is None else to_xp(np.asarray(zeroframe, np.float32)),
        meta=ExposureMeta(nints=nints, ngroups=ngroups, **meta),
    )


def _refs(to_xp, shape, gain=GAIN, rn=RN):
    g = np.full(shape, gain, np.float32) if np.isscalar(gain) else np.asarray(gain, np.float32)
    r = np.full(shape, rn, np.float32) if np.isscalar(rn) else np.asarray(rn, np.float32)
    return GainRef(data=to_xp(g)), ReadnoiseRef(data=to_xp(r))


def _line(values, ngroups, nints=1, offset=1000.0):
    """Noise-free ramps ``offset + rate * TG * (g + 1)``; ``values`` are rates, shape (ny, nx)."""
    rate = np.asarray(values, np.float32)
    g = np.arange(ngroups, dtype=np.float32)[:, None, None]
    one = offset + rate[None] * TG * (g + 1)
    return np.broadcast_to(one, (nints, ngroups, *rate.shape)).astype(np.float32).copy()


def _np(result: RampFitResult):
    out = {}
    for prefix, model in (("", result.rate), ("int_", result.rateints)):
        for name in ("data", "dq", "err", "var_poisson", "var_rnoise"):
            out[prefix + name] = to_numpy(getattr(model, name))
    return out


def _fit(to_xp, data, gdq=None, pdq=None, zeroframe=None, dark=None, gain=GAIN, rn=RN,
         step=None, **meta):
    ramp = _ramp(to_xp, data, gdq, pdq, zeroframe, **meta)
    gref, rref = _refs(to_xp, ramp.shape[-2:], gain, rn)
    step = step or OLSRampFit(suppress_one_group=False)
    return _np(step(ramp, gref, rref, dark))


def _vr(n, nframes=1, t=TG, rn=RN):
    """Documented read-noise variance of an n-group segment (CDS noise rn)."""
    n = max(n, 2)
    return 12 * rn**2 / (2 * nframes * (n**3 - n) * t**2)


# ------------------------------------------------------------------ core formulas
def test_linear_ramps_exact_slopes_and_documented_variances(xp, to_xp):
    rates = np.array([[0.5, 3.0, 40.0], [200.0, 900.0, 2500.0]], np.float32)
    out = _fit(to_xp, _line(rates, 6))
    np.testing.assert_allclose(out["data"], rates, rtol=1e-5)
    np.testing.assert_allclose(out["int_data"][0], rates, rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"], _vr(6), rtol=1e-5)
    # Poisson: slope estimate (median first difference / TG) over tgroup * gain * (n - 1)
    np.testing.assert_allclose(out["var_poisson"], rates / (TG * GAIN * 5), rtol=1e-5)
    np.testing.assert_allclose(out["err"], np.sqrt(out["var_poisson"] + out["var_rnoise"]),
                               rtol=1e-6)
    assert out["dq"].dtype == np.uint32 and not out["dq"].any()


def _scenario():
    """Two integrations of 6 groups, 16 pixels, one special case per pixel."""
    rng = np.random.default_rng(5)
    rates = rng.uniform(2.0, 400.0, (2, 8)).astype(np.float32)
    data = _line(rates, 6, 2) + rng.normal(0, 5, (2, 6, 2, 8)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    zf = (data[:, 0] * 0.5).astype(np.float32)
    gdq[0, 3, 0, 1] = JUMP  # jump splits the ramp
    data[0, 3:, 0, 1] += 2000.0
    gdq[:, 4:, 0, 2] = SAT  # saturation ends the segment
    gdq[0, 1:, 0, 3] = SAT  # saturated from the second group
    gdq[1, :, 0, 4] = SAT  # fully saturated: zero frame
    gdq[0, :, 0, 5] = DNU  # an invalid integration (its zero frame is bad too)
    zf[0, 0, 5] = 0.0
    gdq[0, 3:, 0, 6] = CL | DNU  # charge loss
    gdq[0, 1, 0, 7] = JUMP  # a one-group segment beside a longer one
    gdq[:, 2, 1, 0] = DNU | SAT
    gdq[1, 1:, 1, 1] = SAT
    gdq[1, :, 1, 2] = SAT
    pdq = np.zeros((2, 8), np.uint32)
    pdq[1, 3] = DNU
    gain = np.full((2, 8), GAIN, np.float32)
    gain[1, 4] = np.nan
    data[:, :, 1, 5] = _line([[-3.0]], 6, 2)[:, :, 0, 0]  # negative rate
    return data, gdq, pdq, zf, gain


@pytest.mark.parametrize("suppress", [False, True])
def test_backends_agree_on_mixed_special_cases(xp, to_xp, suppress):
    data, gdq, pdq, zf, gain = _scenario()
    # save_opt only once: every JAX variant costs an XLA compilation
    step = OLSRampFit(suppress_one_group=suppress, save_opt=not suppress)
    results = {}
    for name, conv in (("ref", np.asarray), ("xp", to_xp)):
        ramp = _ramp(conv, data, gdq, pdq, zf)
        gref, rref = _refs(conv, (2, 8), gain=gain)
        result = step(ramp, gref, rref, conv(np.full((2, 8), 0.5, np.float32)))
        assert result.rate.backend == ("numpy" if name == "ref" else result.rate.backend)
        results[name] = (_np(result), result.fitopt)
    ref, got = results["ref"][0], results["xp"][0]
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=2e-6, atol=1e-7, equal_nan=True,
                                   err_msg=key)
    for name in ("slope", "sigslope", "yint", "sigyint", "weights", "var_poisson",
                 "var_rnoise", "pedestal", "crmag") if not suppress else ():
        np.testing.assert_allclose(to_numpy(getattr(results["xp"][1], name)),
                                   getattr(results["ref"][1], name), rtol=2e-6, atol=1e-6,
                                   equal_nan=True, err_msg=name)
    # spot checks of the documented behaviour
    if suppress:  # the zero frame is not used with suppress_one_group
        assert np.isnan(ref["int_data"][1, 0, 4])
    else:
        np.testing.assert_allclose(ref["int_data"][1, 0, 4], zf[1, 0, 4] / TG, rtol=1e-6)
    assert np.isnan(ref["int_data"][0, 0, 5]) and ref["int_dq"][0, 0, 5] == DNU
    assert np.isnan(ref["data"][1, 3]) and np.isnan(ref["data"][1, 4])
    assert ref["dq"][1, 4] == DNU | NO_GAIN
    assert ref["var_poisson"][1, 5] > 0  # dark current keeps it positive
    assert np.isnan(ref["int_data"][0, 0, 3]) == suppress


def test_optimal_weights_follow_fixsen_exponent():
    # A 6-group segment with a kink: the weighted fit differs by exponent.  Bright
    # pixels (S >= 100, P = 10) weight the end groups only: the slope tends to the
    # end-point slope (last - first) / (5 TG).
    y = np.array([0.0, 40.0, 30.0, 60.0, 45.0, 100.0], np.float32)
    data = (1000.0 + y * 500)[None, :, None, None]
    out = _fit(np.asarray, data)
    endpoint = (y[-1] - y[0]) * 500 / (5 * TG)
    assert abs(out["data"][0, 0] - endpoint) / endpoint < 2e-3
    faint = (1000.0 + y * 0.01)[None, :, None, None]
    out = _fit(np.asarray, faint)
    i = np.arange(6)
    ols = np.polyfit(i, y * 0.01, 1)[0] / TG  # S < 5: unweighted least squares
    np.testing.assert_allclose(out["data"][0, 0], ols, rtol=1e-3)


def test_jump_splits_segments(to_eager):
    data = _line([[20.0, 20.0]], 8)
    gdq = np.zeros(data.shape, np.uint8)
    data[0, 4:, 0, 0] += 5000.0
    gdq[0, 4, 0, 0] = JUMP
    out = _fit(to_eager, data, gdq)
    np.testing.assert_allclose(out["data"][0], [20.0, 20.0], rtol=1e-5)
    # two 4-group segments: 1 / (2 / vr(4)) for read noise
    np.testing.assert_allclose(out["var_rnoise"][0, 0], _vr(4) / 2, rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"][0, 1], _vr(8), rtol=1e-5)
    assert out["dq"][0].tolist() == [JUMP, 0]
    assert out["int_dq"][0, 0].tolist() == [JUMP, 0]


def test_saturation_ends_segment_and_flags(to_eager):
    data = _line([[30.0]], 6)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 3:, 0, 0] = SAT
    data[0, 3:, 0, 0] = 65535.0
    out = _fit(to_eager, data, gdq)
    np.testing.assert_allclose(out["data"][0, 0], 30.0, rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"][0, 0], _vr(3), rtol=1e-5)
    assert out["dq"][0, 0] == SAT and out["int_dq"][0, 0, 0] == SAT


def test_integrations_combine_by_inverse_variance(to_eager):
    data = np.concatenate([_line([[10.0]], 5), _line([[30.0]], 5)])
    out = _fit(to_eager, data)
    vr = _vr(5)
    vp = out["int_var_poisson"][:, 0, 0]
    w = 1 / (vp + vr)
    np.testing.assert_allclose(out["data"][0, 0], (10 * w[0] + 30 * w[1]) / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"][0, 0], vr / 2, rtol=1e-5)
    # one slope estimate for both integrations: the mean of their median differences
    np.testing.assert_allclose(vp, [20.0 / (TG * GAIN * 4)] * 2, rtol=1e-5)


def test_negative_rate_gives_zero_poisson_variance(to_eager):
    out = _fit(to_eager, _line([[-5.0, 5.0]], 5))
    assert out["var_poisson"][0, 0] == 0 and out["var_poisson"][0, 1] > 0
    np.testing.assert_allclose(out["err"][0, 0], np.sqrt(_vr(5)), rtol=1e-5)


def test_dark_current_added_to_poisson_variance(to_eager):
    data = _line([[8.0, -8.0]], 5)
    dark = to_eager(np.array([[3.0, 3.0]], np.float32))
    out = _fit(to_eager, data, dark=dark)
    np.testing.assert_allclose(out["var_poisson"][0], [(8 + 3) / 80, 3 / 80], rtol=1e-5)
    # a DarkRef's average_dark_current (scalar) works the same way
    ref = DarkRef(data=to_eager(np.zeros((5, 1, 2), np.float32)),
                  average_dark_current=to_eager(np.asarray(3.0, np.float32)))
    out2 = _fit(to_eager, data, dark=ref)
    np.testing.assert_allclose(out2["var_poisson"], out["var_poisson"], rtol=1e-6)


# ------------------------------------------------------------------ special cases
def test_ngroups_one_and_two(to_eager):
    one = _line([[50.0]], 1)
    out = _fit(to_eager, one, nframes=2, frame_time=TG / 2)
    # the single group's mean time is frame_time * (nframes + 1) / 2
    np.testing.assert_allclose(out["data"][0, 0], one[0, 0, 0, 0] / (TG / 2 * 1.5), rtol=1e-5)
    two = _line([[50.0]], 2)
    out = _fit(to_eager, two)
    np.testing.assert_allclose(out["data"][0, 0], 50.0, rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"][0, 0], _vr(2), rtol=1e-5)


@pytest.mark.parametrize("suppress", [False, True])
def test_saturated_from_second_group(to_eager, suppress):
    data = _line([[400.0, 10.0]], 5)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 1:, 0, 0] = SAT
    out = _fit(to_eager, data, gdq, step=OLSRampFit(suppress_one_group=suppress))
    if suppress:
        assert np.isnan(out["data"][0, 0]) and np.isnan(out["int_data"][0, 0, 0])
        assert out["int_dq"][0, 0, 0] == SAT | DNU and out["dq"][0, 0] == SAT | DNU
        assert out["var_poisson"][0, 0] == 0 and out["var_rnoise"][0, 0] == 0
    else:
        np.testing.assert_allclose(out["data"][0, 0], data[0, 0, 0, 0] / TG, rtol=1e-5)
        np.testing.assert_allclose(out["var_rnoise"][0, 0], _vr(1), rtol=1e-5)
        assert out["int_dq"][0, 0, 0] == SAT
    np.testing.assert_allclose(out["data"][0, 1], 10.0, rtol=1e-5)


def test_one_group_segment_ignored_beside_longer_ones(to_eager):
    data = _line([[15.0]], 6)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 1, 0, 0] = JUMP  # segments [0] [1..5]
    data[0, 0, 0, 0] += 3000.0  # would bias the slope if the one-group segment were used
    out = _fit(to_eager, data, gdq)
    np.testing.assert_allclose(out["data"][0, 0], 15.0, rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"][0, 0], _vr(5), rtol=1e-5)


def test_zeroframe_replaces_fully_saturated_integration(to_eager):
    data = _line([[900.0, 900.0]], 4)
    gdq = np.full(data.shape, SAT, np.uint8)
    zf = np.array([[[450.0, 0.0]]], np.float32)  # 0 marks a bad zero frame
    out = _fit(to_eager, data, gdq, zeroframe=zf, frame_time=TG / 2, nframes=2)
    np.testing.assert_allclose(out["data"][0, 0], 450.0 / (TG / 2), rtol=1e-5)
    assert out["int_dq"][0, 0].tolist() == [SAT, SAT | DNU]
    assert np.isnan(out["data"][0, 1])
    # without the zero frame the integration is invalid
    out = _fit(to_eager, data, gdq, frame_time=TG / 2, nframes=2)
    assert np.isnan(out["data"]).all() and (out["dq"][0] == SAT | DNU).all()


def test_invalid_integrations_nan_and_dq_rules(to_eager):
    data = np.concatenate([_line([[12.0, 12.0]], 4)] * 2)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, :, 0, 0] = DNU  # pixel 0: first integration all DO_NOT_USE
    gdq[:, :, 0, 1] = SAT  # pixel 1: every integration saturated from group 0
    gdq[1, 2, 0, 0] = JUMP
    out = _fit(to_eager, data, gdq)
    assert np.isnan(out["int_data"][0, 0, 0]) and out["int_dq"][0, 0, 0] == DNU
    np.testing.assert_allclose(out["data"][0, 0], 12.0, rtol=1e-5)
    assert out["dq"][0, 0] == JUMP  # DO_NOT_USE only when all integrations are
    assert np.isnan(out["data"][0, 1]) and out["dq"][0, 1] == SAT | DNU
    assert (out["int_dq"][:, 0, 1] == SAT | DNU).all()
    assert out["err"][0, 1] == 0


def test_pixeldq_and_bad_gain(to_eager):
    data = _line([[5.0, 5.0, 5.0, 5.0]], 4)
    pdq = np.array([[DNU, int(DQ.HOT), 0, 0]], np.uint32)
    gain = np.array([[GAIN, GAIN, np.nan, 0.0]], np.float32)
    out = _fit(to_eager, data, pdq=pdq, gain=gain)
    assert np.isnan(out["data"][0, 0]) and out["dq"][0, 0] == DNU
    np.testing.assert_allclose(out["data"][0, 1], 5.0, rtol=1e-5)
    assert out["dq"][0, 1] == int(DQ.HOT)
    assert np.isnan(out["data"][0, 2:]).all()
    assert (out["dq"][0, 2:] == DNU | NO_GAIN).all()


def test_nframes_groupgap_timing(to_eager):
    data = _line([[25.0]], 5)
    out = _fit(to_eager, data, nframes=4, groupgap=1, frame_time=2.0)  # TGROUP = 10 s
    np.testing.assert_allclose(out["data"][0, 0], 25.0, rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"][0, 0], _vr(5, nframes=4), rtol=1e-5)


def test_chargeloss_recomputes_read_noise_variance_only(to_eager):
    data = _line([[40.0]], 6)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 3:, 0, 0] = CL | DNU
    out = _fit(to_eager, data, gdq)
    np.testing.assert_allclose(out["data"][0, 0], 40.0, rtol=1e-5)
    np.testing.assert_allclose(out["var_rnoise"][0, 0], _vr(6), rtol=1e-5)  # as if all good
    np.testing.assert_allclose(out["err"][0, 0] ** 2, out["var_poisson"][0, 0] + _vr(3),
                               rtol=1e-5)  # the fit's own read noise
    assert out["dq"][0, 0] == 0


# ------------------------------------------------------------------ fitopt
def test_fitopt_product(to_eager):
    data = _line([[20.0, 20.0]], 7)
    gdq = np.zeros(data.shape, np.uint8)
    data[0, 4:, 0, 0] += 800.0
    gdq[0, 4, 0, 0] = JUMP
    ramp = _ramp(to_eager, data, gdq)
    gref, rref = _refs(to_eager, (1, 2))
    result = OLSRampFit(save_opt=True)(ramp, gref, rref)
    opt = result.fitopt
    assert isinstance(opt, FitOptModel)
    slope = to_numpy(opt.slope)
    assert slope.shape == (1, 2, 1, 2)  # two segments at most
    np.testing.assert_allclose(slope[0, :, 0, 0], [20.0, 20.0], rtol=1e-5)
    np.testing.assert_allclose(slope[0, :, 0, 1], [20.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(to_numpy(opt.var_rnoise)[0, :, 0, 0], [_vr(4), _vr(3)], rtol=1e-5)
    np.testing.assert_allclose(to_numpy(opt.crmag)[0, :, 0, 0], [1000.0], rtol=1e-5)
    np.testing.assert_allclose(to_numpy(opt.crmag)[0, :, 0, 1], [0.0])
    # yint: the fit extrapolated to group index 0; pedestal: first group minus one rate step
    np.testing.assert_allclose(to_numpy(opt.yint)[0, 0, 0, 1], 1000 + 20 * TG, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(opt.pedestal)[0, 0, 1], 1000 + 20 * TG - 20, rtol=1e-5)
    w = to_numpy(opt.weights)[0, 0, 0, 1]
    vp = to_numpy(opt.var_poisson)[0, 0, 0, 1]
    np.testing.assert_allclose(w, 1 / (vp + _vr(7)) ** 2, rtol=1e-5)


# ------------------------------------------------------------------ truth
@pytest.mark.parametrize("cr_rate", [0.0, 1e-3])
def test_pulls_unbiased_on_simulated_ramps(cr_rate):
    from stcal_models.simulate import simulate_ramp

    flux = np.random.default_rng(1).uniform(0.5, 200.0, (320, 320))
    sim = simulate_ramp(shape=(320, 320), nints=1, ngroups=10, seed=7, flux=flux, gain=2.0,
                        readnoise=10.0, saturation=65535.0, frame_time=TG, cr_rate=cr_rate)
    jumps = np.where(sim.truth.jump_mask, np.uint8(JUMP), np.uint8(0))
    ramp = sim.ramp.replace(groupdq=sim.ramp.groupdq | jumps)
    result = OLSRampFit()(ramp, sim.refs.gain, sim.refs.readnoise)
    pull = (result.rate.data - flux) / result.rate.err
    assert pull.size == 102400 and np.isfinite(pull).all()
    assert abs(pull.mean()) < 0.02
    assert abs(pull.std() - 1.0) < 0.05


# ------------------------------------------------------------------ step mechanics
def _noisy(shape=(2, 6, 12, 10), seed=3):
    rng = np.random.default_rng(seed)
    nints, ngroups, ny, nx = shape
    rate = rng.uniform(0.5, 300.0, (ny, nx)).astype(np.float32)
    data = _line(rate, ngroups, nints) + rng.normal(0, 7, shape).astype(np.float32)
    gdq = np.zeros(shape, np.uint8)
    gdq[rng.random(shape) < 0.05] = JUMP
    gdq[:, 4:, :3, :3] = SAT
    gdq[0, :, ny // 2, nx // 2] = CL | DNU
    return data, gdq


def test_row_chunks_and_dask_match_serial(backend):
    data, gdq, pdq, zf, gain = _scenario()
    ramp = _ramp(np.asarray, data, gdq, pdq, zf)
    gref, rref = _refs(np.asarray, (2, 8), gain=gain)
    if backend == "jax":
        ramp, gref, rref = ramp.to_backend("jax"), gref.to_backend("jax"), rref.to_backend("jax")
    whole = _np(OLSRampFit()(ramp, gref, rref))
    tiny = 1e-6  # GiB: one row per chunk
    chunked = _np(OLSRampFit(max_memory=tiny)(ramp, gref, rref))
    pytest.importorskip("dask")
    dasked = _np(OLSRampFit(max_memory=tiny, engine="dask")(ramp, gref, rref))
    for key, value in whole.items():
        np.testing.assert_array_equal(dasked[key], chunked[key])
        if backend == "numpy":
            np.testing.assert_array_equal(chunked[key], value)
        else:
            np.testing.assert_allclose(chunked[key], value, rtol=1e-6, equal_nan=True)


def test_dask_missing_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    data, gdq = _noisy((1, 4, 4, 4))
    ramp = _ramp(np.asarray, data, gdq)
    gref, rref = _refs(np.asarray, (4, 4))
    with pytest.raises(ImportError, match="dask"):
        OLSRampFit(engine="dask")(ramp, gref, rref)


def test_progress_bar_shown_when_requested(capsys):
    data, gdq = _noisy((1, 4, 8, 4))
    ramp = _ramp(np.asarray, data, gdq)
    gref, rref = _refs(np.asarray, (8, 4))
    OLSRampFit(progress=True, max_memory=1e-6)(ramp, gref, rref)
    assert "OLSRampFit" in capsys.readouterr().err
    OLSRampFit(progress=False, max_memory=1e-6)(ramp, gref, rref)
    assert "OLSRampFit" not in capsys.readouterr().err


def test_inputs_not_mutated_and_subarray_refs():
    data, gdq = _noisy((1, 5, 6, 6))
    ramp = _ramp(np.asarray, data, gdq, xstart=3, ystart=2)
    before = (ramp.data.copy(), ramp.groupdq.copy())
    big_gain = np.full((20, 20), GAIN, np.float32)
    big_gain[1, 2] = 7.0  # science pixel (0, 0) sits at reference (1, 2)
    gref = GainRef(data=big_gain, meta=RefMeta())
    rref = ReadnoiseRef(data=np.full((20, 20), RN, np.float32))
    inputs = prepare_inputs(ramp, gref, rref)
    assert inputs.gain.shape == (6, 6) and inputs.gain[0, 0] == 7.0
    OLSRampFit()(ramp, gref, rref)
    np.testing.assert_array_equal(ramp.data, before[0])
    np.testing.assert_array_equal(ramp.groupdq, before[1])


def test_jax_compiles_once_per_shape():
    data, gdq, pdq, zf, gain = _scenario()
    ramp = _ramp(np.asarray, data, gdq, pdq, zf).to_backend("jax")
    gref, rref = (m.to_backend("jax") for m in _refs(np.asarray, (2, 8), gain=gain))
    step = OLSRampFit()
    step(ramp, gref, rref)
    count = ols_fit_arrays.trace_count()
    result = step(ramp.replace(data=ramp.data + 1.0), gref, rref)
    assert ols_fit_arrays.trace_count() == count
    assert result.rate.backend == "jax"


def test_gradients_finite_and_match_finite_differences():
    # The mixed scenario (shared with other tests, so the forward pass is compiled once):
    # jumps, saturation, zero frame, charge loss, bad pixels, NaN rates.
    data, gdq, pdq, zf, gain = _scenario()
    ramp = _ramp(np.asarray, data, gdq, pdq, zf).to_backend("jax")
    gref, rref = (m.to_backend("jax") for m in _refs(np.asarray, (2, 8), gain=gain))
    step = OLSRampFit()

    def rates(values, rn):
        return step(ramp.replace(data=values), gref, rref.replace(data=rn)).rate.data

    def total(values, rn):
        rate = rates(values, rn)
        return jnp.sum(jnp.where(jnp.isfinite(rate), rate, 0.0))

    g_data, g_rn = jax.grad(total, argnums=(0, 1))(ramp.data, rref.data)
    g_data, g_rn = np.asarray(g_data), np.asarray(g_rn)
    assert np.isfinite(g_data).all() and np.isfinite(g_rn).all()
    assert g_data[1, 5, 0, 0] > 0  # a clean ramp's rate rises with its last group
    # Rates are pixel-local: compare with central differences of the pixel's own rate
    # (float32 differences of the total would drown in rounding).
    for index in ((1, 5, 0, 0), (0, 2, 0, 1), (0, 4, 0, 7), (1, 0, 0, 6)):
        bump = np.zeros(data.shape, np.float32)
        bump[index] = 1.0
        pix = index[2:]
        up = float(rates(ramp.data + bump, rref.data)[pix])
        down = float(rates(ramp.data - bump, rref.data)[pix])
        np.testing.assert_allclose((up - down) / 2, g_data[index], rtol=2e-2, atol=2e-4)
    # The read noise moves the weights of segments of unequal length: check the pixel
    # where it matters most.
    pix = np.unravel_index(np.argmax(np.abs(g_rn)), g_rn.shape)
    assert abs(g_rn[pix]) > 1e-3
    bump = np.zeros((2, 8), np.float32)
    bump[pix] = 0.25
    up = float(rates(ramp.data, rref.data + bump)[pix])
    down = float(rates(ramp.data, rref.data - bump)[pix])
    np.testing.assert_allclose((up - down) / 0.5, g_rn[pix], rtol=5e-2, atol=1e-4)


def test_kernel_on_strict_arrays_matches_numpy():
    import array_api_strict as aas

    data, gdq = _noisy((2, 5, 5, 4))
    args = (np.zeros((5, 4), np.uint32), None, np.full((5, 4), GAIN, np.float32),
            np.full((5, 4), RN, np.float32), np.zeros((5, 4), np.float32))
    kw = dict(frame_time=TG, group_time=TG, nframes=1, suppress_one_group=True)
    ref = ols_fit_arrays(data, gdq, *args, **kw)
    strict = ols_fit_arrays(aas.asarray(data), aas.asarray(gdq),
                            *(None if a is None else aas.asarray(a) for a in args), **kw)
    for key, value in ref.items():
        np.testing.assert_allclose(np.asarray(to_numpy(strict[key])), value, rtol=1e-6,
                                   equal_nan=True)


def test_long_ramps_use_sort_median():
    data = _line([[3.0, 30.0]], 60)
    out = _fit(np.asarray, data)
    np.testing.assert_allclose(out["data"][0], [3.0, 30.0], rtol=1e-4)
    np.testing.assert_allclose(out["var_poisson"][0], np.array([3.0, 30.0]) / (TG * GAIN * 59),
                               rtol=1e-4)


def test_batcher_network_sorts():
    rng = np.random.default_rng(0)
    for n in range(1, 20):
        keys = list(rng.normal(size=n))
        for a, b in _batcher_pairs(n):
            keys[a], keys[b] = min(keys[a], keys[b]), max(keys[a], keys[b])
        assert keys == sorted(keys)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"suppress_one_group": 1}, TypeError, "suppress_one_group"),
        ({"save_opt": "yes"}, TypeError, "save_opt"),
        ({"weighting": "unweighted"}, ValueError, "weighting"),
        ({"max_memory": 0}, ValueError, "max_memory"),
        ({"engine": "ray"}, ValueError, "engine"),
        ({"progress": "auto"}, TypeError, "progress"),
    ],
)
def test_parameter_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        OLSRampFit(**kwargs)


def test_bad_inputs_named():
    data, gdq = _noisy((1, 4, 4, 4))
    ramp = _ramp(np.asarray, data, gdq)
    gref, rref = _refs(np.asarray, (4, 4))
    step = OLSRampFit()
    with pytest.raises(TypeError, match="RampModel"):
        step(data, gref, rref)
    with pytest.raises(TypeError, match="gain_ref"):
        step(ramp, rref, rref)
    with pytest.raises(TypeError, match="readnoise_ref"):
        step(ramp, gref, gref)
    with pytest.raises(ValueError, match="dark_current"):
        step(ramp, gref, rref, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="covering"):
        step(ramp, *_refs(np.asarray, (3, 3)))
    uneven = RampModel(data=data[:, :3], meta=ExposureMeta(
        nints=1, ngroups=3, read_pattern=[[1], [2, 3], [4, 5, 6, 7]]))
    with pytest.raises(ValueError, match="uneven"):
        step(uneven, gref, rref)


def test_build_result_casts_and_fills_err():
    rate = {"data": np.ones((2, 2)), "dq": np.zeros((2, 2), np.int64),
            "var_poisson": np.full((2, 2), 3.0), "var_rnoise": np.ones((2, 2))}
    ints = {k: v[None] for k, v in rate.items()}
    result = build_result(rate, ints)
    assert result.rate.data.dtype == np.float32 and result.rate.dq.dtype == np.uint32
    np.testing.assert_allclose(result.rate.err, 2.0)
    with pytest.raises(ValueError, match="keys"):
        build_result({"slope": rate["data"]}, ints)


def test_long_ramps_compute_weights_without_table(monkeypatch):
    from stcal_models.algorithms.ramp_fitting import ols

    data, gdq = _noisy((1, 9, 4, 4))
    kw = dict(frame_time=TG, group_time=TG, nframes=1, suppress_one_group=False)
    args = (np.zeros((4, 4), np.uint32), None, np.full((4, 4), GAIN, np.float32),
            np.full((4, 4), RN, np.float32), np.zeros((4, 4), np.float32))
    table = ols_fit_arrays(data, gdq, *args, **kw)
    monkeypatch.setattr(ols._WeightTerms, "TABLE_MAX", 0)
    direct = ols_fit_arrays(data, gdq, *args, **kw)
    for key, value in table.items():
        np.testing.assert_allclose(direct[key], value, rtol=2e-5, equal_nan=True, err_msg=key)


def test_rate_writes_rate_layout_fits(tmp_path):
    from astropy.io import fits

    data, gdq = _noisy((2, 5, 4, 4))
    result = OLSRampFit()(_ramp(np.asarray, data, gdq), *_refs(np.asarray, (4, 4)))
    path = tmp_path / "x_rate.fits"
    result.rate.to_fits(path)
    with fits.open(path) as hdul:
        names = [h.name for h in hdul]
        assert {"SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"} <= set(names)
        np.testing.assert_array_equal(hdul["SCI"].data, result.rate.data)
        np.testing.assert_array_equal(hdul["DQ"].data, result.rate.dq)


# ------------------------------------------------------------------ closed form + gather
def _mostly_clean_scene(seed=3, nints=2, ngroups=7, shape=(9, 11)):
    """Noisy ramps where about a fifth of the pixels carry a flag, plus bad references."""
    rng = np.random.default_rng(seed)
    full = (nints, ngroups, *shape)
    flux = rng.lognormal(2.0, 2.0, shape)
    flux[0, :3] = (-4.0, 0.0, 3e3)
    counts = rng.poisson(np.abs(flux) * TG, full) * np.sign(flux)
    data = 500.0 + np.cumsum(counts + rng.normal(0, 7, full), axis=1)
    gdq = np.zeros(full, np.uint8)
    hit = rng.random(shape) < 0.2
    groups = rng.integers(0, ngroups, shape)
    kinds = rng.choice(np.array([JUMP, SAT, DNU, DNU | CL], np.uint8), shape)
    for y, x in zip(*np.nonzero(hit), strict=True):
        k = int(rng.integers(0, nints))
        gdq[k, groups[y, x]:, y, x] |= kinds[y, x]  # saturation and charge loss stay on
        if kinds[y, x] == JUMP:
            gdq[k, groups[y, x] + 1:, y, x] = 0
    pdq = np.zeros(shape, np.uint32)
    pdq[1, 1] = DNU
    gain = np.full(shape, GAIN, np.float32)
    gain[2, 2] = np.nan
    rn = np.full(shape, RN, np.float32)
    rn[3, 3] = 0.0
    zf = rng.uniform(100, 900, (nints, *shape)).astype(np.float32)
    dark = rng.uniform(-0.5, 2.0, shape).astype(np.float32)
    return data.astype(np.float32), gdq, pdq, zf, gain, rn, dark


@pytest.mark.parametrize("suppress", [True, False])
def test_closed_form_for_unflagged_pixels_matches_the_segment_fit(xp, to_xp, suppress):
    data, gdq, pdq, zf, gain, rn, dark = _mostly_clean_scene()
    flagged = (gdq != 0).any(axis=(0, 1))
    assert 0.05 < flagged.mean() < 0.5  # both paths of OLSRampFit run
    ramp = _ramp(to_xp, data, gdq, pdq, zf)
    result = OLSRampFit(suppress_one_group=suppress)(
        ramp, GainRef(data=to_xp(gain)), ReadnoiseRef(data=to_xp(rn)), to_xp(dark))
    # The reference: the general segment kernel on every pixel at once.
    ref = ols_fit_arrays(data, gdq, pdq, zf, gain, rn, dark, frame_time=TG, group_time=TG,
                         nframes=1, suppress_one_group=suppress)
    rtol = 2e-6 if xp is jnp else 0.0  # XLA fuses the two paths differently
    pairs = (("rate", ""), ("rateints", "int_"))
    for product, prefix in pairs:
        model = getattr(result, product)
        for name, key in (("data", "slope"), ("err", "err"), ("var_poisson", "var_poisson"),
                          ("var_rnoise", "var_rnoise")):
            np.testing.assert_allclose(to_numpy(getattr(model, name)), ref[prefix + key],
                                       rtol=rtol, atol=0, equal_nan=True,
                                       err_msg=f"{product}.{name}")
        np.testing.assert_array_equal(to_numpy(model.dq), ref[prefix + "dq"])


def test_closed_form_changes_nothing_when_most_pixels_are_flagged():
    data, gdq, pdq, zf, gain, rn, dark = _mostly_clean_scene(seed=4)
    gdq[0, 3] |= JUMP  # every pixel flagged: the segment fit alone
    step = OLSRampFit()
    result = step(_ramp(np.asarray, data, gdq, pdq, zf), *_refs(np.asarray, gain.shape,
                                                                gain=gain, rn=rn), dark)
    ref = ols_fit_arrays(data, gdq, pdq, zf, gain, rn, dark, frame_time=TG, group_time=TG,
                         nframes=1, suppress_one_group=True)
    np.testing.assert_array_equal(result.rate.data, ref["slope"])
    np.testing.assert_array_equal(result.rateints.dq, ref["int_dq"])


def test_jax_flagged_pixel_count_changes_do_not_recompile():
    # Flagged pixels are padded to a power-of-two number of rows: a few more or fewer
    # flagged pixels reuse the compiled kernels.
    data, gdq, pdq, zf, gain, rn, dark = _mostly_clean_scene(seed=5, shape=(16, 16))
    refs = [m.to_backend("jax") for m in _refs(np.asarray, gain.shape, gain=gain, rn=rn)]
    step = OLSRampFit()
    step(_ramp(np.asarray, data, gdq, pdq, zf).to_backend("jax"), *refs)
    count = ols_fit_arrays.trace_count()
    clean = np.flatnonzero(~(gdq != 0).any(axis=(0, 1)))
    gdq2 = gdq.copy()
    gdq2[0, 4].flat[clean[:3]] = JUMP  # three more flagged pixels, same bucket of rows
    result = step(_ramp(np.asarray, data, gdq2, pdq, zf).to_backend("jax"), *refs)
    assert ols_fit_arrays.trace_count() == count
    ref = ols_fit_arrays(data, gdq2, pdq, None, gain, rn, np.zeros_like(gain), frame_time=TG,
                         group_time=TG, nframes=1, suppress_one_group=True)
    np.testing.assert_allclose(np.asarray(result.rate.data), ref["slope"], rtol=2e-6,
                               equal_nan=True)


def test_closed_form_chunking_matches_one_piece(backend, monkeypatch):
    # Mostly unflagged pixels (closed form + gathered flagged pixels): row chunks from a
    # memory budget, dask, and (JAX) the few statically placed chunks of the default
    # budget all give the one-piece result.
    from stcal_models.algorithms.ramp_fitting import ols

    data, gdq, pdq, zf, gain, rn, dark = _mostly_clean_scene(seed=6, shape=(12, 8))
    ramp = _ramp(np.asarray, data, gdq, pdq, zf)
    gref, rref = _refs(np.asarray, gain.shape, gain=gain, rn=rn)
    if backend == "jax":
        ramp, gref, rref = ramp.to_backend("jax"), gref.to_backend("jax"), rref.to_backend("jax")
    whole = _np(OLSRampFit()(ramp, gref, rref, dark))
    tiny = 1e-6  # GiB: one row per chunk
    results = {"budget": _np(OLSRampFit(max_memory=tiny)(ramp, gref, rref, dark))}
    pytest.importorskip("dask")
    results["dask"] = _np(OLSRampFit(max_memory=tiny, engine="dask")(ramp, gref, rref, dark))
    monkeypatch.setattr(ols, "DEFAULT_CHUNK_BYTES", 1)  # as many chunks as rows, capped
    results["default chunks"] = _np(OLSRampFit()(ramp, gref, rref, dark))
    for label, result in results.items():
        for key, value in whole.items():
            if backend == "numpy":
                np.testing.assert_array_equal(result[key], value, err_msg=f"{label} {key}")
            else:
                np.testing.assert_allclose(result[key], value, rtol=1e-6, equal_nan=True,
                                           err_msg=f"{label} {key}")


def test_long_ramp_median_on_jax_matches_numpy():
    # More than 48 differences: NumPy sorts, JAX runs the comparator network in a loop.
    from stcal_models.algorithms.ramp_fitting.ols import _median_of_planes

    rng = np.random.default_rng(7)
    n, shape = 61, (2, 5, 7)
    planes = rng.normal(size=(n, *shape)).astype(np.float32)
    planes[rng.random(planes.shape) < 0.3] = np.inf  # unusable differences sort last
    count = np.isfinite(planes).sum(axis=0).astype(np.int32)
    count[0, 0, 0] = 0
    planes[:, 0, 0, 0] = np.inf
    ref = _median_of_planes(np, list(planes), count)
    finite = np.where(np.isfinite(planes), planes, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-unusable pixel
        expected = np.nan_to_num(np.nanmedian(finite, axis=0), nan=0.0)
    np.testing.assert_allclose(ref, expected, rtol=1e-6)
    got = jax.jit(lambda p, c: _median_of_planes(jnp, p, c))([jnp.asarray(p) for p in planes],
                                                             jnp.asarray(count))
    np.testing.assert_array_equal(np.asarray(got), ref)
