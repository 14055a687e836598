"""Tests of the LIKELY ramp fit (Brandt 2024) on NumPy, array_api_strict and JAX."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stcal_models.algorithms.ramp_fitting.likely import (
    LikelyFit,
    LikelyRampFit,
    likely_covariance,
    likely_fit_arrays,
    likely_log_likelihood,
    likely_read_times,
)
from stcal_models.dqflags import DQ
from stcal_models.models import ExposureMeta, GainRef, RampFitResult, RampModel, ReadnoiseRef

GAIN = 2.0
CDS = 10.0
FT = 10.0


# ----------------------------------------------------------------------------- helpers
def _simulate(rng, rate, ngroups, shape, *, nframes=1, nints=1, ft=FT, offset=1000.0):
    """Frame-level Poisson + read-noise ramps averaged into groups, float32."""
    nreads = ngroups * nframes
    npix = int(np.prod(shape))
    rate = np.broadcast_to(np.asarray(rate, dtype=np.float64), shape).reshape(npix)
    out = np.empty((nints, ngroups, npix))
    for i in range(nints):
        electrons = np.cumsum(rng.poisson(rate * GAIN * ft, (nreads, npix)), axis=0) / GAIN
        reads = electrons + rng.normal(0.0, CDS / np.sqrt(2.0), (nreads, npix))
        out[i] = reads.reshape(ngroups, nframes, npix).mean(axis=1)
    return (out + offset).reshape(nints, ngroups, *shape).astype(np.float32)


def _refs(shape, gain=GAIN, cds=CDS):
    return (GainRef(data=np.full(shape, gain, np.float32)),
            ReadnoiseRef(data=np.full(shape, cds, np.float32)))


def _dense_cov(read_times):
    """Covariance shapes of scaled differences from min(t_k, t_l), no shortcuts."""
    groups = [np.asarray(t, float) for t in read_times]
    n = len(groups)
    cp = np.array([[np.mean(np.minimum.outer(a, b)) for b in groups] for a in groups])
    cr = np.diag([1.0 / len(a) for a in groups])
    means = np.array([a.mean() for a in groups])
    dmat = np.zeros((n - 1, n))
    for i in range(n - 1):
        dt = means[i + 1] - means[i]
        dmat[i, i], dmat[i, i + 1] = -1.0 / dt, 1.0 / dt
    return dmat @ cp @ dmat.T, dmat @ cr @ dmat.T, np.diff(means)


def _dense_gls(d, cov_p, cov_r, rate_guess, gain, sigma2):
    """GLS fit of a constant: slope, chi2, Poisson and read-noise variances (float64)."""
    c = max(rate_guess, 0.0) / gain * cov_p + sigma2 * cov_r
    w_all = np.linalg.solve(c, np.ones(len(d)))
    a = w_all.sum()
    slope = w_all @ d / a
    r = d - slope
    w = w_all / a
    return slope, r @ np.linalg.solve(c, r), w @ (max(rate_guess, 0.0) / gain * cov_p) @ w, \
        w @ (sigma2 * cov_r) @ w


def _dense_likely(ramp, read_times, gain=GAIN, cds=CDS):
    """Reference for a clean ramp: median guess -> GLS -> GLS with the fitted rate."""
    cov_p, cov_r, dt = _dense_cov(read_times)
    d = np.diff(ramp.astype(np.float64)) / dt
    sigma2 = cds**2 / 2.0
    first = _dense_gls(d, cov_p, cov_r, max(np.median(d), 0.0), gain, sigma2)[0]
    return _dense_gls(d, cov_p, cov_r, max(first, 0.0), gain, sigma2)


def _np(x):
    from stcal_models.backends import to_numpy

    return np.asarray(to_numpy(x))


def _model(xp, data, groupdq=None, meta=None, zeroframe=None):
    nints, ngroups, ny, nx = data.shape
    meta = meta or ExposureMeta(nints=nints, ngroups=ngroups, frame_time=FT)
    gdq = np.zeros(data.shape, np.uint8) if groupdq is None else groupdq
    arrays = dict(data=data, groupdq=gdq, pixeldq=np.zeros((ny, nx), np.uint32))
    if zeroframe is not None:
        arrays["zeroframe"] = zeroframe
    if xp is not np:
        arrays = {k: xp.asarray(v) for k, v in arrays.items()}
    return RampModel(**arrays, meta=meta)


# ----------------------------------------------------------------------------- covariance
def test_covariance_matches_dense_definition():
    reads = [[1.0], [2.0, 3.0], [4.0, 5.0, 6.0], [7.0], [8.0, 9.0, 10.0, 11.0]]
    times = [np.asarray(r) * 3.0 for r in reads]
    cov = likely_covariance(times)
    cov_p, cov_r, dt = _dense_cov(times)
    np.testing.assert_allclose(cov.dt, dt)
    np.testing.assert_allclose(cov.alpha_p, np.diag(cov_p), rtol=1e-12)
    np.testing.assert_allclose(cov.beta_p, np.diag(cov_p, 1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cov.alpha_r, np.diag(cov_r), rtol=1e-12)
    np.testing.assert_allclose(cov.beta_r, np.diag(cov_r, 1), rtol=1e-12)
    # differences two apart are uncorrelated: the matrix really is tridiagonal
    assert np.allclose(np.triu(cov_p, 2), 0) and np.allclose(np.triu(cov_r, 2), 0)
    assert list(cov.pair_allowed) == [True, True, False]


@pytest.mark.parametrize("bad", [[[1.0]], [[1.0], []], [[2.0], [1.0]]])
def test_covariance_rejects_bad_read_times(bad):
    with pytest.raises(ValueError, match="read_times"):
        likely_covariance(bad)


def test_read_times_follow_meta_and_zeroframe():
    meta = ExposureMeta(nints=1, ngroups=3, nframes=2, groupgap=1, frame_time=2.0)
    times = likely_read_times(meta)
    assert [list(t) for t in times] == [[2.0, 4.0], [8.0, 10.0], [14.0, 16.0]]
    split = likely_read_times(meta, zeroframe=True)
    assert [list(t) for t in split] == [[2.0], [4.0], [8.0, 10.0], [14.0, 16.0]]
    with pytest.raises(ValueError, match="zero frame"):
        likely_read_times(ExposureMeta(nints=1, ngroups=3), zeroframe=True)


# ----------------------------------------------------------------------------- the fit
def test_clean_ramps_match_dense_reference(xp):
    rng = np.random.default_rng(3)
    rates = np.array([[0.0, 0.3, 2.0, 8.0], [20.0, 60.0, 150.0, 5.0]])
    data = _simulate(rng, rates, 7, rates.shape)
    gain_ref, rn_ref = _refs(rates.shape)
    if xp is not np:
        gain_ref, rn_ref = (GainRef(data=xp.asarray(gain_ref.data)),
                            ReadnoiseRef(data=xp.asarray(rn_ref.data)))
    fit = LikelyRampFit(detect_jumps=False).fit(_model(xp, data), gain_ref, rn_ref)
    assert isinstance(fit, LikelyFit) and isinstance(fit.result, RampFitResult)
    times = likely_read_times(ExposureMeta(nints=1, ngroups=7, frame_time=FT))
    for y in range(2):
        for x in range(4):
            slope, chisq, vp, vr = _dense_likely(data[0, :, y, x], times)
            rate = fit.result.rate
            np.testing.assert_allclose(_np(rate.data)[y, x], slope, rtol=2e-5, atol=2e-5)
            np.testing.assert_allclose(_np(rate.var_poisson)[y, x], vp, rtol=2e-4, atol=1e-7)
            np.testing.assert_allclose(_np(rate.var_rnoise)[y, x], vr, rtol=2e-4)
            np.testing.assert_allclose(_np(fit.chisq)[y, x], chisq, rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(_np(rate.err)[y, x], np.sqrt(vp + vr), rtol=2e-4)
    assert not np.any(_np(fit.result.rate.dq))


def test_backends_agree(xp):
    """Jumps, saturation and several integrations give the same answer on every backend."""
    rng = np.random.default_rng(11)
    data = _simulate(rng, 4.0, 6, (5, 8), nints=2)
    data[0, 3:, 1, 2] += 400.0
    data[1, 2:, 3, 5] += 250.0
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 4:, 2, 2] = DQ.SATURATED
    gdq[1, :, 0, 0] = DQ.SATURATED
    ref = LikelyRampFit().fit(_model(np, data, gdq), *_refs((5, 8)))
    gain_ref, rn_ref = _refs((5, 8))
    if xp is not np:
        gain_ref = GainRef(data=xp.asarray(gain_ref.data))
        rn_ref = ReadnoiseRef(data=xp.asarray(rn_ref.data))
    got = LikelyRampFit().fit(_model(xp, data, gdq), gain_ref, rn_ref)
    for name in ("data", "err", "var_poisson", "var_rnoise"):
        for a, b in ((got.result.rate, ref.result.rate), (got.result.rateints, ref.result.rateints)):
            np.testing.assert_allclose(_np(getattr(a, name)), _np(getattr(b, name)),
                                       rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(_np(got.result.rate.dq), _np(ref.result.rate.dq))
    np.testing.assert_array_equal(_np(got.groupdq), _np(ref.groupdq))
    np.testing.assert_allclose(_np(got.chisq), _np(ref.chisq), rtol=1e-4, atol=1e-4,
                               equal_nan=True)
    assert _np(got.result.rate.dq)[1, 2] & DQ.JUMP_DET
    assert _np(got.result.rateints.dq)[1, 0, 0] == DQ.SATURATED | DQ.DO_NOT_USE


def test_jump_is_found_flagged_and_removed():
    rng = np.random.default_rng(5)
    rate = 3.0
    data = _simulate(rng, rate, 10, (3, 3))
    data[0, 6:, 1, 1] += 500.0
    fit = LikelyRampFit().fit(_model(np, data), *_refs((3, 3)))
    gdq = fit.groupdq[0, :, 1, 1]
    assert gdq[6] == DQ.JUMP_DET and np.count_nonzero(gdq) == 1
    assert fit.result.rate.dq[1, 1] == DQ.JUMP_DET
    assert np.count_nonzero(fit.result.rate.dq) == 1
    slope = fit.result.rate.data[1, 1]
    assert abs(slope - rate) < 4 * fit.result.rate.err[1, 1]
    # without jump detection the jump biases the slope and chi-square is large
    plain = LikelyRampFit(detect_jumps=False).fit(_model(np, data), *_refs((3, 3)))
    assert plain.result.rate.data[1, 1] > rate + 3.0 and plain.chisq[1, 1] > 100


def test_jump_inside_multi_read_group_omits_a_pair():
    rng = np.random.default_rng(8)
    nframes, ngroups = 4, 8
    data = _simulate(rng, 2.0, ngroups, (2, 2), nframes=nframes, ft=2.5)
    # a cosmic ray after the second read of group 4: half of it in group 4's average
    data[0, 4, 0, 0] += 300.0 * 2 / 4
    data[0, 5:, 0, 0] += 300.0
    meta = ExposureMeta(nints=1, ngroups=ngroups, nframes=nframes, frame_time=2.5)
    fit = LikelyRampFit().fit(_model(np, data, meta=meta), *_refs((2, 2)))
    # each omitted difference flags its later group (as stcal): groups 4 and 5
    assert list(np.nonzero(fit.groupdq[0, :, 0, 0])[0]) == [4, 5]
    assert set(fit.groupdq[0, :, 0, 0].tolist()) == {0, int(DQ.JUMP_DET)}
    # both differences touching group 4 are gone: read-noise variance of two segments
    vr_two_segments = fit.result.rate.var_rnoise[0, 0]
    assert vr_two_segments > 1.5 * fit.result.rate.var_rnoise[1, 1]
    assert abs(fit.result.rate.data[0, 0] - 2.0) < 5 * fit.result.rate.err[0, 0]


def test_dq_rules_and_invalid_integrations():
    rng = np.random.default_rng(2)
    data = _simulate(rng, 5.0, 6, (1, 5), nints=2)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 3:, 0, 0] = DQ.SATURATED                    # partly saturated
    gdq[0, :, 0, 1] = DQ.SATURATED                     # one integration all saturated
    gdq[:, :, 0, 2] = DQ.DO_NOT_USE                    # every group unusable
    gdq[0, 2, 0, 3] = DQ.OUTLIER                       # any flag removes a group
    ramp = _model(np, data, gdq).replace(pixeldq=np.array([[0, 0, 0, 0, DQ.HOT]], np.uint32))
    fit = LikelyRampFit().fit(ramp, *_refs((1, 5)))
    ints, rate = fit.result.rateints, fit.result.rate
    assert list(ints.dq[0, 0]) == [DQ.SATURATED, DQ.SATURATED | DQ.DO_NOT_USE,
                                   DQ.DO_NOT_USE, 0, DQ.HOT]
    assert list(rate.dq[0]) == [DQ.SATURATED, DQ.SATURATED, DQ.DO_NOT_USE, 0, DQ.HOT]
    assert np.isnan(ints.data[0, 0, 1]) and np.isfinite(rate.data[0, 1])
    assert rate.data[0, 1] == ints.data[1, 0, 1]
    assert np.isnan(rate.data[0, 2]) and np.isnan(rate.err[0, 2])
    # the outlier group removes two differences: larger read-noise variance
    assert ints.var_rnoise[0, 0, 3] > ints.var_rnoise[1, 0, 3] * 1.2


def test_integrations_combine_by_inverse_variance():
    rng = np.random.default_rng(4)
    data = _simulate(rng, 10.0, 8, (2, 2), nints=3)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[1, 4:, 0, 0] = DQ.SATURATED
    fit = LikelyRampFit().fit(_model(np, data, gdq), *_refs((2, 2)))
    s = fit.result.rateints.data[:, 0, 0].astype(float)
    vp = fit.result.rateints.var_poisson[:, 0, 0].astype(float)
    vr = fit.result.rateints.var_rnoise[:, 0, 0].astype(float)
    g = np.median(s)
    for _ in range(2):
        vpg = vp * np.maximum(g / s, 0)
        w = 1.0 / (vpg + vr)
        g_new = (w * s).sum() / w.sum()
        var_p, var_r = (w**2 * vpg).sum() / w.sum() ** 2, (w**2 * vr).sum() / w.sum() ** 2
        g = g_new
    np.testing.assert_allclose(fit.result.rate.data[0, 0], g, rtol=1e-5)
    np.testing.assert_allclose(fit.result.rate.var_poisson[0, 0], var_p, rtol=1e-4)
    np.testing.assert_allclose(fit.result.rate.var_rnoise[0, 0], var_r, rtol=1e-4)
    np.testing.assert_allclose(fit.chisq[0, 0], fit.chisq_ints[:, 0, 0].sum(), rtol=1e-5)


def test_dark_current_enters_the_poisson_variance():
    rng = np.random.default_rng(9)
    data = _simulate(rng, 5.0, 6, (2, 2))
    base = LikelyRampFit().fit(_model(np, data), *_refs((2, 2)))
    dark = LikelyRampFit().fit(_model(np, data), *_refs((2, 2)), 3.0)
    ratio = dark.result.rate.var_poisson / base.result.rate.var_poisson
    assert np.all(ratio > 1.4) and np.all(ratio < 1.8)
    np.testing.assert_allclose(dark.result.rate.var_rnoise, base.result.rate.var_rnoise,
                               rtol=0.05)


def test_zeroframe_adds_a_first_read():
    rng = np.random.default_rng(6)
    nframes, ngroups = 4, 5
    frames = np.cumsum(rng.poisson(5.0 * GAIN * 2.5, (nframes * ngroups, 4)), 0) / GAIN
    frames = frames + rng.normal(0, CDS / np.sqrt(2), frames.shape) + 500
    data = frames.reshape(ngroups, nframes, 4).mean(1).reshape(1, ngroups, 2, 2)
    data = data.astype(np.float32)
    zf = frames[0].reshape(1, 2, 2).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 1:, 0, 0] = DQ.SATURATED   # only the first group: the zero frame still gives a rate
    meta = ExposureMeta(nints=1, ngroups=ngroups, nframes=nframes, frame_time=2.5)
    with_zf = LikelyRampFit().fit(_model(np, data, gdq, meta, zeroframe=zf), *_refs((2, 2)))
    without = LikelyRampFit(use_zeroframe=False).fit(
        _model(np, data, gdq, meta, zeroframe=zf), *_refs((2, 2)))
    assert np.isnan(without.result.rate.data[0, 0])
    rest = (data[0, 0, 0, 0] * 4 - zf[0, 0, 0]) / 3
    expected = (rest - zf[0, 0, 0]) / (2.5 * (3.0 - 1.0))
    np.testing.assert_allclose(with_zf.result.rate.data[0, 0], expected, rtol=1e-5)
    # unsaturated pixels: the fit of [zero frame, rest of group 0, groups 1...]
    times = likely_read_times(meta, zeroframe=True)
    for x in range(2):
        r = data[0, :, 1, x].astype(float)
        z = float(zf[0, 1, x])
        augmented = np.concatenate([[z, (4 * r[0] - z) / 3], r[1:]])
        slope, chisq, vp, vr = _dense_likely(augmented, times)
        np.testing.assert_allclose(with_zf.result.rate.data[1, x], slope, rtol=1e-4)
        np.testing.assert_allclose(with_zf.result.rate.var_rnoise[1, x], vr, rtol=1e-3)
    assert not np.allclose(with_zf.result.rate.data[1], without.result.rate.data[1], rtol=1e-6)


def test_stcal_quirks_only_change_enclosed_omissions():
    rng = np.random.default_rng(12)
    data = _simulate(rng, 5.0, 10, (1, 2))
    # pixel 0: jumps so that the last omitted difference sits between omitted ones
    data[0, 3:, 0, 0] += 3000.0
    data[0, 5:, 0, 0] += 2500.0
    data[0, 4:, 0, 0] += 1000.0
    data[0, 7:, 0, 1] += 800.0    # pixel 1: one ordinary jump
    plain = LikelyRampFit().fit(_model(np, data), *_refs((1, 2)))
    quirk = LikelyRampFit(stcal_quirks=True).fit(_model(np, data), *_refs((1, 2)))
    assert list(np.nonzero(plain.groupdq[0, :, 0, 0])[0]) == [3, 4, 5]
    ratio = quirk.result.rate.var_poisson[0, 0] / plain.result.rate.var_poisson[0, 0]
    assert 1.7 < ratio < 2.3
    assert quirk.result.rate.var_poisson[0, 1] == plain.result.rate.var_poisson[0, 1]


def test_both_jump_screens_give_the_same_answer(monkeypatch):
    """The chi-square and omission-gain screens only decide where the passes run."""
    from stcal_models.algorithms.ramp_fitting import likely_kernel

    rng = np.random.default_rng(14)
    data = _simulate(rng, 8.0, 16, (6, 10))
    hits = rng.random(data.shape) < 0.03
    data += np.cumsum(hits * 300.0, axis=1).astype(np.float32)
    ramp, refs = _model(np, data), _refs((6, 10))
    monkeypatch.setattr(likely_kernel, "_CHISQ_SCREEN_MAX_DIFFS", 12)
    gains_screen = LikelyRampFit().fit(ramp, *refs)
    monkeypatch.setattr(likely_kernel, "_CHISQ_SCREEN_MAX_DIFFS", 100)
    chisq_screen = LikelyRampFit().fit(ramp, *refs)
    assert np.count_nonzero(gains_screen.groupdq) > 10
    np.testing.assert_array_equal(gains_screen.groupdq, chisq_screen.groupdq)
    np.testing.assert_array_equal(gains_screen.result.rate.data, chisq_screen.result.rate.data)


# ----------------------------------------------------------------------------- truth
def test_slopes_are_unbiased_with_unit_pulls():
    rng = np.random.default_rng(2024)
    shape = (100, 1000)
    rates = rng.uniform(0.5, 60.0, shape)
    data = _simulate(rng, rates, 10, shape)
    fit = LikelyRampFit().fit(_model(np, data), *_refs(shape))
    pull = (fit.result.rate.data - rates) / fit.result.rate.err
    assert abs(np.mean(pull)) < 0.05
    assert abs(np.std(pull) - 1.0) < 0.05
    # false jump detections are rare (threshold 4.5 sigma)
    assert np.count_nonzero(fit.result.rate.dq & DQ.JUMP_DET) < 1e-3 * pull.size


# ----------------------------------------------------------------------------- chunks
def _chunk_scenario(xp):
    rng = np.random.default_rng(21)
    data = _simulate(rng, 6.0, 6, (5, 8), nints=2)
    data[0, 3:, 2, 3] += 300.0
    data[1, 2:, 4, 6] += 300.0
    gdq = np.zeros(data.shape, np.uint8)
    gdq[1, 4:, 0, 1] = DQ.SATURATED
    ramp = _model(xp, data, gdq)
    gain_ref, rn_ref = _refs((5, 8))
    if xp is not np:
        gain_ref = GainRef(data=xp.asarray(gain_ref.data))
        rn_ref = ReadnoiseRef(data=xp.asarray(rn_ref.data))
    return ramp, (gain_ref, rn_ref)


def _assert_fits_equal(one, other):
    for a, b in ((one.result.rate, other.result.rate),
                 (one.result.rateints, other.result.rateints)):
        for name in ("data", "err", "var_poisson", "var_rnoise", "dq"):
            np.testing.assert_array_equal(_np(getattr(a, name)), _np(getattr(b, name)))
    np.testing.assert_array_equal(_np(one.groupdq), _np(other.groupdq))
    np.testing.assert_array_equal(_np(one.chisq), _np(other.chisq))
    np.testing.assert_array_equal(_np(one.chisq_ints), _np(other.chisq_ints))


@pytest.mark.parametrize("expand_large_events", [False, True])
def test_chunked_and_dask_equal_single_chunk(xp, expand_large_events):
    from stcal_models.algorithms.ramp_fitting.likely import _row_bytes

    ramp, refs = _chunk_scenario(xp)
    before = (_np(ramp.data).copy(), _np(ramp.groupdq).copy())
    one = LikelyRampFit(max_memory=1.0, expand_large_events=expand_large_events).fit(ramp, *refs)
    # two rows per chunk: chunks of 2, 2 and 1 rows (on JAX the last one overlaps the
    # chunk before it)
    budget = 2.5 * _row_bytes(2, 6, 8) / 2**30
    tiny = LikelyRampFit(max_memory=budget, expand_large_events=expand_large_events)
    _assert_fits_equal(one, tiny.fit(ramp, *refs))
    pytest.importorskip("dask")
    _assert_fits_equal(one, dataclasses.replace(tiny, engine="dask").fit(ramp, *refs))
    np.testing.assert_array_equal(_np(ramp.data), before[0])
    np.testing.assert_array_equal(_np(ramp.groupdq), before[1])
    assert _np(one.groupdq)[0, 3, 2, 3] & DQ.JUMP_DET


def test_progress_bar_shown_when_requested(capsys):
    ramp, refs = _chunk_scenario(np)
    LikelyRampFit(progress=True, max_memory=1e-6).fit(ramp, *refs)
    assert "LikelyRampFit" in capsys.readouterr().err
    LikelyRampFit(progress=False, max_memory=1e-6).fit(ramp, *refs)
    assert "LikelyRampFit" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- gradients
def _grad_inputs():
    rng = np.random.default_rng(31)
    data = _simulate(rng, np.array([[2.0, 8.0, 30.0]]), 6, (1, 3))
    data[0, 4:, 0, 1] += 400.0
    meta = ExposureMeta(nints=1, ngroups=6, frame_time=FT)
    return data, meta


def test_gradients_of_slope_match_finite_differences():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    data, meta = _grad_inputs()
    shape = data.shape[-2:]
    gdq, pdq = np.zeros(data.shape, np.uint8), np.zeros(shape, np.uint32)
    gain, rn = np.full(shape, GAIN, np.float32), np.full(shape, CDS, np.float32)

    def total(d, r, xp):
        out = likely_fit_arrays(d, xp.asarray(gdq), xp.asarray(pdq), xp.asarray(gain), r, meta)
        return xp.sum(out["rate"]["data"])

    g_data, g_rn = jax.grad(lambda d, r: total(d, r, jnp), argnums=(0, 1))(
        jnp.asarray(data), jnp.asarray(rn))
    g_data, g_rn = np.asarray(g_data), np.asarray(g_rn)
    assert np.all(np.isfinite(g_data)) and np.all(np.isfinite(g_rn))

    def f_np(d, r):
        return float(total(d, r, np))

    eps = 0.25
    for idx in [(0, 0, 0, 0), (0, 3, 0, 1), (0, 5, 0, 2), (0, 2, 0, 1)]:
        up, down = data.copy(), data.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (f_np(up, rn) - f_np(down, rn)) / (2 * eps)
        np.testing.assert_allclose(g_data[idx], fd, rtol=2e-2, atol=2e-4)
    # read noise changes the weights (and so the slope) of the jump-free pixels
    for idx in [(0, 0), (0, 2)]:
        up, down = rn.copy(), rn.copy()
        up[idx] += 0.5
        down[idx] -= 0.5
        fd = (f_np(data, up) - f_np(data, down)) / 1.0
        np.testing.assert_allclose(g_rn[idx], fd, rtol=5e-2, atol=2e-4)


def test_log_likelihood_matches_dense_gaussian_and_its_gradient():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    data, meta = _grad_inputs()
    shape = data.shape[-2:]
    rate = np.array([[2.5, 7.0, 29.0]], np.float32)
    rn = np.full(shape, CDS, np.float32)
    gain = np.full(shape, GAIN, np.float32)
    got = likely_log_likelihood(data, rate, rn, gain, meta)
    cov_p, cov_r, dt = _dense_cov(likely_read_times(meta))
    for x in range(3):
        d = np.diff(data[0, :, 0, x].astype(float)) / dt
        c = rate[0, x] / GAIN * cov_p + CDS**2 / 2 * cov_r
        r = d - rate[0, x]
        expected = -0.5 * (r @ np.linalg.solve(c, r) + np.linalg.slogdet(c)[1]
                           + len(d) * np.log(2 * np.pi))
        np.testing.assert_allclose(got[0, x], expected, rtol=1e-5)
    grad = jax.grad(lambda r: jnp.sum(likely_log_likelihood(
        jnp.asarray(data), r, jnp.asarray(rn), jnp.asarray(gain), meta)))(jnp.asarray(rate))
    eps = 1e-2
    for x in range(3):
        up, down = rate.copy(), rate.copy()
        up[0, x] += eps
        down[0, x] -= eps
        fd = (np.sum(likely_log_likelihood(data, up, rn, gain, meta).astype(float))
              - np.sum(likely_log_likelihood(data, down, rn, gain, meta).astype(float))) / (2 * eps)
        np.testing.assert_allclose(float(grad[0, x]), fd, rtol=2e-2, atol=2e-2)
    # at the fitted rate of the jump-free pixels the likelihood is near its maximum
    fitted = LikelyRampFit(detect_jumps=False).fit(_model(np, data), *_refs(shape))
    slope = fitted.result.rate.data.astype(np.float32)
    g_fit = jax.grad(lambda r: jnp.sum(likely_log_likelihood(
        jnp.asarray(data), r, jnp.asarray(rn), jnp.asarray(gain), meta)))(jnp.asarray(slope))
    scaled = np.abs(np.asarray(g_fit)) * fitted.result.rate.err
    assert scaled[0, 0] < 0.2 and scaled[0, 2] < 0.2 and scaled[0, 1] > 1.0


# ----------------------------------------------------------------------------- API
def test_call_returns_rampfitresult_and_inputs_untouched():
    rng = np.random.default_rng(1)
    data = _simulate(rng, 4.0, 5, (2, 3))
    data[0, 2:, 0, 0] += 400
    ramp = _model(np, data)
    before = ramp.groupdq.copy(), ramp.data.copy()
    result = LikelyRampFit()(ramp, *_refs((2, 3)))
    assert isinstance(result, RampFitResult)
    assert result.rate.data.dtype == np.float32 and result.rate.dq.dtype == np.uint32
    np.testing.assert_array_equal(ramp.groupdq, before[0])
    np.testing.assert_array_equal(ramp.data, before[1])


def test_few_groups_fall_back_to_ols():
    pytest.importorskip("stcal_models.algorithms.ramp_fitting.ols")
    rng = np.random.default_rng(1)
    data = _simulate(rng, 4.0, 3, (2, 2))
    fit = LikelyRampFit().fit(_model(np, data), *_refs((2, 2)))
    assert fit.fallback == "OLS" and fit.chisq is None
    assert np.all(np.isfinite(fit.result.rate.data))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("threshold_one_omit", 0.0, ValueError),
        ("threshold_two_omit", "big", TypeError),
        ("detect_jumps", 1, TypeError),
        ("max_memory", -1.0, ValueError),
        ("stcal_quirks", None, TypeError),
        ("engine", "ray", ValueError),
        ("progress", "yes", TypeError),
    ],
)
def test_parameters_are_validated(field, value, error):
    with pytest.raises(error, match=field):
        LikelyRampFit(**{field: value})


def test_bad_inputs_raise_naming_the_argument():
    rng = np.random.default_rng(1)
    ramp = _model(np, _simulate(rng, 4.0, 5, (2, 2)))
    with pytest.raises(TypeError, match="gain_ref"):
        LikelyRampFit()(ramp, np.ones((2, 2)), _refs((2, 2))[1])
    with pytest.raises(TypeError, match="ramp"):
        LikelyRampFit()(ramp.data, *_refs((2, 2)))
    with pytest.raises(ValueError):
        LikelyRampFit()(ramp, *_refs((1, 1)))


def test_defaults_and_repr():
    step = LikelyRampFit()
    assert step.threshold_one_omit == 20.25 and step.threshold_two_omit == 23.8
    assert repr(step) == "LikelyRampFit()"
    assert "threshold_one_omit" in step._repr_html_()
    assert dataclasses.replace(step, detect_jumps=False).non_default_parameters() == {
        "detect_jumps": False}


def test_call_carries_chisq_in_the_result():
    """``LikelyRampFit()(...)`` returns the chi-square (#508) in the standard result."""
    import numpy as np

    from stcal_models.algorithms.ramp_fitting.likely import LikelyRampFit
    from stcal_models.simulate import simulate_ramp

    sim = simulate_ramp(shape=(12, 10), ngroups=8, nints=2, seed=5)
    step = LikelyRampFit()
    result = step(sim.ramp, sim.refs.gain, sim.refs.readnoise)
    fitted = step.fit(sim.ramp, sim.refs.gain, sim.refs.readnoise)
    assert result.chisq.shape == (12, 10) and result.chisq_ints.shape == (2, 12, 10)
    np.testing.assert_array_equal(np.asarray(result.chisq), np.asarray(fitted.chisq))
    finite = np.isfinite(np.asarray(result.chisq))
    assert finite.mean() > 0.9
    # chi-square of a good fit is of order the number of degrees of freedom
    assert 0.3 * 2 * 7 < np.median(np.asarray(result.chisq)[finite]) < 3 * 2 * 7


# ----------------------------------------------------------------------------- JAX forms
def test_jax_median_by_ranks_is_exact():
    """The rank median (JAX, up to 32 rows) equals np.nanmedian, ties and NaN included."""
    jax = pytest.importorskip("jax")
    from stcal_models.algorithms.ramp_fitting.likely_kernel import row_nanmedian

    rng = np.random.default_rng(41)
    for n in (2, 3, 8, 19, 32):
        values = np.round(rng.normal(0.0, 2.0, (n, 500))).astype(np.float32)  # many ties
        values[rng.random(values.shape) < 0.2] = np.nan
        values[:, :3] = np.nan  # all-NaN pixels
        got = jax.jit(lambda v: row_nanmedian(jax.numpy, list(v)))(jax.numpy.asarray(values))
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            want = np.nanmedian(values, axis=0)
        np.testing.assert_array_equal(np.asarray(got), want)


def test_jax_chained_and_packed_forms_match_the_stacked_ones(monkeypatch):
    """Short ramps reduce rows as chains and pack the jump-search state into bits; the
    stacked, unpacked forms used on long ramps give the same fit on the same pixels."""
    jax = pytest.importorskip("jax")
    from stcal_models.algorithms.ramp_fitting import likely_kernel

    rng = np.random.default_rng(43)
    shape = (12, 21)
    data = _simulate(rng, rng.uniform(1.0, 40.0, shape), 14, shape, nframes=2, nints=2)
    hits = rng.random(data.shape) < 0.04
    data += np.cumsum(hits * rng.uniform(100.0, 900.0, data.shape), axis=1).astype(np.float32)
    jnp = jax.numpy

    def fit(cols):
        # a different frame width compiles afresh, so each form is really traced
        part = np.ascontiguousarray(data[..., :cols])
        meta = ExposureMeta(nints=2, ngroups=14, nframes=2, frame_time=FT)
        refs = (r.to_backend("jax") for r in _refs(part.shape[-2:]))
        return LikelyRampFit().fit(_model(jnp, part, meta=meta), *refs)

    short = fit(20)
    monkeypatch.setattr(likely_kernel, "_CHAIN_MAX_DIFFS", 0)
    monkeypatch.setattr(likely_kernel, "_PACKED_MAX_DIFFS", 0)
    long = fit(21)
    assert np.count_nonzero(np.asarray(short.groupdq) & int(DQ.JUMP_DET)) > 20
    np.testing.assert_array_equal(np.asarray(short.groupdq), np.asarray(long.groupdq)[..., :20])
    for name in ("data", "var_poisson", "var_rnoise"):
        np.testing.assert_allclose(np.asarray(getattr(short.result.rateints, name)),
                                   np.asarray(getattr(long.result.rateints, name))[..., :20],
                                   rtol=2e-5)
