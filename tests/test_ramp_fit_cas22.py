"""Cas22RampFit: Casertano (2022) fit of uneven resultants, its kernel and its jump splitting."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stcal_models.algorithms.ramp_fitting import cas22_kernel
from stcal_models.algorithms.ramp_fitting.cas22 import Cas22RampFit
from stcal_models.algorithms.ramp_fitting.cas22_kernel import cas22_fit, read_pattern_times
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.models import (
    ExposureMeta,
    GainRef,
    RampFitResult,
    RampModel,
    ReadnoiseRef,
)

PATTERN = [[1], [2, 3], [4, 5, 6, 7], [8], [9, 10, 11], [12, 13, 14, 15, 16]]
LONG = [[1], [2, 3], [4, 5, 6, 7], [8], [9, 10, 11], [12, 13, 14, 15, 16], [17, 18], [19, 20, 21]]
READ_TIME = 3.04
POWERS = (0.0, 0.4, 1.0, 3.0, 6.0, 10.0)


# ============================================================================ reference
def _power(snr: float) -> float:
    for bound, power in zip((5, 10, 20, 50, 100), POWERS, strict=False):
        if snr < bound:
            return power
    return POWERS[-1]


def _fit_segment(r, rn, t, tau, nr):
    """Float64 Casertano (2022) fit of one segment (the documented equations, term by term)."""
    s = max(r[-1] - r[0], 0.0)
    power = _power(s / math.sqrt(rn**2 + s) if rn**2 + s > 0 else 0.0)
    mid, half = (t[0] + t[-1]) / 2, (t[-1] - t[0]) / 2
    u = np.where(np.abs(t - mid) < 1e-9 * max(1.0, t[-1]), 0.0, (t - mid) / half)
    w = (1 + power) * nr / (1 + power * nr) * np.abs(u) ** power
    f0, f1, f2 = w.sum(), (w * t).sum(), (w * t * t).sum()
    k = (f0 * t - f1) * w / (f2 * f0 - f1**2)
    pv = (k * k * tau).sum() + sum(
        2 * k[i] * k[j] * t[i] for i in range(len(t)) for j in range(i + 1, len(t))
    )
    return (k * r).sum(), (k * k * rn**2 / nr).sum(), pv


def _reference(r, excluded, rn, t, tau, nr, use_jump=False, intercept=5.5, constant=1 / 3):
    """Float64 scalar reference for one pixel: (slope, read_var, poisson_var, jump flags)."""
    n = len(r)
    good = ~excluded & np.isfinite(r)
    queue, i = [], 0
    while i < n:
        if good[i]:
            j = i
            while j + 1 < n and good[j + 1]:
                j += 1
            queue.append((i, j))
            i = j + 1
        else:
            i += 1
    fits, jumps = [], np.zeros(n, bool)
    while queue:
        a, b = queue.pop()
        if b == a:
            continue
        sl = slice(a, b + 1)
        slope, rv, pv = _fit_segment(r[sl], rn, t[sl], tau[sl], nr[sl])
        if use_jump and b - a >= 2:
            stats = []
            for p in range(a, b):
                vals = []
                for q in (p + 1, p + 2):
                    if q > b:
                        continue
                    dt = t[q] - t[p]
                    delta = (r[q] - r[p]) / dt - slope
                    var = (
                        rn**2 * (1 / nr[q] + 1 / nr[p]) + slope * (tau[q] + tau[p] - 2 * t[p])
                    ) / dt**2 - slope / (t[b] - t[a])
                    vals.append(delta / math.sqrt(var) if var > 0 else math.nan)
                finite = [v for v in vals if not math.isnan(v)]
                stats.append(max(finite) if finite else math.nan)
            best, k = stats[-1], len(stats) - 1  # start from the last difference
            for p, value in enumerate(stats[:-1]):
                if value > best:
                    best, k = value, p
            if best >= intercept - constant * math.log10(max(slope, 1.0)):
                k += a
                jumps[k] = jumps[k + 1] = True
                if k - 1 >= a:
                    queue.append((a, k - 1))
                if k + 2 <= b:
                    queue.append((k + 2, b))
                continue
        fits.append((slope, rv, pv))
    if not fits:
        return math.nan, math.nan, math.nan, jumps
    f = np.array(fits)
    w = 1 / f[:, 1]
    slope = (w * f[:, 0]).sum() / w.sum()
    return slope, 1 / w.sum(), (w * w * f[:, 2]).sum() / w.sum() ** 2 * max(slope, 0), jumps


def _simulate(rng, pattern, npix, flux, rn, cr_rate=0.0, cr_max=800.0):
    """Resultants (e-) of Poisson ramps read at k * READ_TIME with per-read noise ``rn``."""
    nreads = pattern[-1][-1]
    inc = rng.poisson(np.clip(flux, 0, None)[None, :] * READ_TIME, (nreads, npix)).astype(float)
    inc += np.where(flux < 0, flux * READ_TIME, 0.0)[None, :]
    inc += (rng.random((nreads, npix)) < cr_rate / nreads) * rng.uniform(0, cr_max, (nreads, npix))
    reads = np.cumsum(inc, axis=0) + rng.normal(size=(nreads, npix)) * rn[None, :]
    return np.stack([reads[np.asarray(r) - 1].mean(axis=0) for r in pattern]).astype(np.float32)


def _times(pattern=PATTERN):
    tbar, tau, nreads = read_pattern_times(pattern, READ_TIME)
    return dict(tbar=tbar, tau=tau, nreads=nreads)


def _np(out):
    return {k: to_numpy(v) for k, v in out.items()}


# ============================================================================ kernel
def test_read_pattern_times_match_the_covariance_of_averaged_reads():
    tbar, tau, nreads = read_pattern_times([[1], [2, 3], [5, 6, 7]], 2.0)
    assert nreads == (1, 2, 3)
    assert tbar == pytest.approx((2.0, 5.0, 12.0))
    for reads, t in zip([[1], [2, 3], [5, 6, 7]], tau, strict=True):
        times = np.asarray(reads, float) * 2.0
        # variance of the mean of a unit-rate Poisson process read at ``times``
        expected = np.minimum.outer(times, times).sum() / len(times) ** 2
        assert t == pytest.approx(expected)


@pytest.mark.parametrize("use_jump", [False, True])
def test_kernel_matches_float64_reference(xp, to_xp, use_jump):
    rng = np.random.default_rng(3)
    npix = 300
    flux = np.where(rng.random(npix) < 0.2, -rng.uniform(0, 30, npix), 10 ** rng.uniform(-2, 4, npix))
    rn = rng.uniform(0.5, 15, npix)
    res = _simulate(rng, LONG, npix, flux, rn, cr_rate=1.0)
    excluded = rng.random(res.shape) < 0.08
    times = _times(LONG)
    out = _np(
        cas22_fit(
            to_xp(res), to_xp(excluded), to_xp(rn.astype(np.float32)), use_jump=use_jump, **times
        )
    )
    t, tau, nr = (np.asarray(times[k], float) for k in ("tbar", "tau", "nreads"))
    ref = [
        _reference(res[:, p].astype(float), excluded[:, p], float(np.float32(rn[p])), t, tau, nr,
                   use_jump=use_jump)
        for p in range(npix)
    ]
    slope, rv, pv = (np.array([r[i] for r in ref]) for i in range(3))
    jumps = np.stack([r[3] for r in ref], axis=1)
    np.testing.assert_array_equal(out["jump"], jumps)
    np.testing.assert_array_equal(out["valid"], np.isfinite(slope))
    sigma = np.sqrt(np.nan_to_num(rv + pv))
    ok = np.isfinite(slope)
    assert np.all(np.abs(out["slope"] - slope)[ok] <= 1e-5 * np.maximum(np.abs(slope), sigma)[ok])
    np.testing.assert_allclose(out["read_var"][ok], rv[ok], rtol=1e-5)
    np.testing.assert_allclose(out["poisson_var"][ok], pv[ok], rtol=1e-4, atol=1e-9)
    assert np.all(np.isnan(out["slope"][~ok]))
    if use_jump:
        assert jumps.any(axis=0).sum() > 20  # the inputs do exercise the splitting


NPIX = 16  # the small kernel tests share one compiled JAX signature: (6, 16), jumps on


def _padded(columns, rn):
    """``columns`` (6, k) padded to NPIX pixels with a plain ramp; read noise likewise."""
    t = np.asarray(_times()["tbar"])
    res = np.repeat((20.0 * t)[:, None], NPIX, axis=1)
    res[:, : columns.shape[1]] = columns
    noise = np.full(NPIX, 5.0)
    noise[: len(rn)] = rn
    return res.astype(np.float32), noise.astype(np.float32)


def _fit16(xp, to_xp, res, noise, excluded=None):
    excluded = np.zeros(res.shape, bool) if excluded is None else excluded
    return _np(cas22_fit(to_xp(res), to_xp(excluded), to_xp(noise), use_jump=True, **_times()))


def test_noiseless_ramps_give_the_rate_for_every_weight_power(xp, to_xp):
    t = np.asarray(_times()["tbar"])
    # rates spanning every signal-to-noise bin of the weight table, and negative ones
    rates = np.array([-20.0, -0.5, 0.0, 0.05, 0.2, 1.0, 5.0, 30.0, 300.0, 3e3, 3e4])
    res, noise = _padded(100.0 + rates[None, :] * t[:, None], np.full(rates.size, 5.0))
    out = _fit16(xp, to_xp, res, noise)
    np.testing.assert_allclose(out["slope"][: rates.size], rates, rtol=1e-5, atol=2e-5)
    assert not out["jump"].any()
    assert np.all(out["poisson_var"][: rates.size][rates <= 0] == 0)


def test_jump_is_flagged_and_split_out(xp, to_xp):
    t = np.asarray(_times()["tbar"])
    hit = 50.0 * t + 100.0
    hit[3:] += 500.0  # a cosmic ray before the first read of resultant 3
    res, noise = _padded(hit[:, None], [5.0])
    split = _fit16(xp, to_xp, res, noise)
    times = {k: np.asarray(v, float) for k, v in _times().items()}
    plain = _reference(hit, np.zeros(6, bool), 5.0, times["tbar"], times["tau"], times["nreads"])
    assert abs(plain[0] - 50.0) > 5.0  # without detection the jump biases the slope
    np.testing.assert_allclose(split["slope"][:2], [50.0, 20.0], rtol=1e-5)
    flagged = np.nonzero(split["jump"][:, 0])[0].tolist()
    assert flagged in ([2, 3], [3, 4]) and not split["jump"][:, 1:].any()
    assert split["read_var"][0] > plain[1]  # fewer resultants, larger read variance


def test_edge_cases(xp, to_xp):
    t = np.asarray(_times()["tbar"])
    res, noise = _padded(np.repeat((10.0 * t)[:, None], 6, axis=1), [5, 5, 5, 5, 0, 5])
    res[2, 3] = np.nan
    excluded = np.zeros(res.shape, bool)
    excluded[:, 0] = True  # nothing usable
    excluded[1:, 1] = True  # one resultant
    excluded[2:, 2] = True  # two resultants
    out = _fit16(xp, to_xp, res, noise, excluded)
    np.testing.assert_array_equal(out["valid"][:6], [False, False, True, True, True, True])
    assert np.all(np.isnan(out["slope"][:2])) and np.all(np.isnan(out["read_var"][:2]))
    np.testing.assert_allclose(out["slope"][2:6], 10.0, rtol=1e-5)
    # zero read noise (pixel 4): the noiseless limit of the inverse-read-variance average
    assert out["read_var"][4] == 0 and np.isfinite(out["poisson_var"][4])
    # the NaN resultant is dropped alone: the pixel keeps a finite fit
    assert np.isfinite(out["slope"][3]) and out["read_var"][3] > out["read_var"][5]


def test_eager_blocks_give_identical_results(monkeypatch):
    rng = np.random.default_rng(5)
    npix = 700
    flux = 10 ** rng.uniform(-1, 3, npix)
    rn = np.full(npix, 6.0)
    res = _simulate(rng, PATTERN, npix, flux, rn, cr_rate=1.0)
    args = (res, np.zeros(res.shape, bool), rn.astype(np.float32))
    whole = cas22_fit(*args, use_jump=True, diagnostic=True, **_times())
    monkeypatch.setattr(cas22_kernel, "EAGER_CHUNK", 128)
    blocks = cas22_fit(*args, use_jump=True, diagnostic=True, **_times())
    for key, value in whole.items():
        np.testing.assert_array_equal(value, blocks[key], err_msg=key)


def test_truth_unbiased_slopes_and_unit_pulls():
    """1e5 pixels, uneven pattern, rates 0.3-1000 e-/s: slope bias and pull width."""
    rng = np.random.default_rng(42)
    pattern = [[1], [2, 3], [4, 5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15, 16], [17, 18, 19, 20]]
    npix = 100_000
    flux = 10 ** rng.uniform(-0.5, 3, npix)
    rn = np.full(npix, 8.0)
    res = _simulate(rng, pattern, npix, flux, rn)
    times = _times(pattern)
    out = cas22_fit(res, np.zeros(res.shape, bool), rn.astype(np.float32), **times)
    err = out["slope"] - flux
    pull = err / np.sqrt(out["read_var"] + out["poisson_var"])
    # the variance the fit assigns, evaluated at the true rate (not the noisy estimate)
    pv_true = out["poisson_var"] / np.maximum(out["slope"], 1e-6) * flux
    true_pull = err / np.sqrt(out["read_var"] + pv_true)
    assert abs(true_pull.mean()) < 3 * 1.0 / math.sqrt(npix) + 0.005
    assert abs(pull.std() - 1) < 0.05
    assert abs(true_pull.std() - 1) < 0.05
    # with the fitted rate in the Poisson term, larger estimates carry larger errors, which
    # pulls the mean of the estimated pull slightly negative (about -0.02 here)
    assert -0.05 < pull.mean() < 0.01


# ============================================================================ gradients
def test_jax_gradients_match_finite_differences():
    rng = np.random.default_rng(11)
    npix = 16
    flux = np.linspace(2.0, 400.0, npix)
    rn = np.full(npix, 6.0)
    res = _simulate(rng, PATTERN, npix, flux, rn)
    times = _times()
    excluded = jnp.zeros(res.shape, bool)

    def slope(r, noise):
        return cas22_fit(r, excluded, noise, use_jump=True, **times)["slope"]

    def err(r, noise):
        out = cas22_fit(r, excluded, noise, use_jump=True, **times)
        return jnp.sqrt(out["read_var"] + out["poisson_var"])

    r = jnp.asarray(res)
    noise = jnp.asarray(rn.astype(np.float32))
    p = 5

    def both(x, y):
        out = cas22_fit(x, excluded, y, use_jump=True, **times)
        return jnp.stack([out["slope"][p], jnp.sqrt(out["read_var"] + out["poisson_var"])[p]])

    jac_data, jac_rn = jax.jacrev(both, argnums=(0, 1))(r, noise)
    g_data, g_rn, g_err = jac_data[0], jac_rn[0], jac_rn[1]
    for g in (g_data, g_rn, g_err):
        assert bool(jnp.all(jnp.isfinite(g)))
    # only the pixel's own resultants matter, with the fit's coefficients (sum zero)
    assert float(jnp.abs(g_data[:, np.arange(npix) != p]).max()) == 0
    assert abs(float(g_data[:, p].sum())) < 1e-5
    h = 20.0  # the slope is linear in the data between changes of weights or jumps
    for i in range(len(PATTERN)):
        bump = np.zeros(res.shape, np.float32)
        bump[i, p] = h
        fd = (slope(r + bump, noise)[p] - slope(r - bump, noise)[p]) / (2 * h)
        assert float(fd) == pytest.approx(float(g_data[i, p]), rel=1e-3, abs=2e-6)
    h = 0.05
    bump = np.zeros(npix, np.float32)
    bump[p] = h
    fd_rn = (slope(r, noise + bump)[p] - slope(r, noise - bump)[p]) / (2 * h)
    assert float(g_rn[p]) == 0 and float(fd_rn) == 0  # weights are piecewise constant in rn
    fd_err = (err(r, noise + bump)[p] - err(r, noise - bump)[p]) / (2 * h)
    assert float(fd_err) == pytest.approx(float(g_err[p]), rel=1e-3)
    assert float(g_err[p]) > 0


# ============================================================================ step
def _ramp(shape=(12, 14), nints=1, pattern=PATTERN, seed=0, flux=None, cr=0.0):
    rng = np.random.default_rng(seed)
    ny, nx = shape
    npix = ny * nx
    gain = np.full(shape, 2.0, np.float32)
    rn_cds = np.full(shape, 12.0, np.float32)
    if flux is None:
        flux = 10 ** rng.uniform(-0.5, 2.5, npix)  # DN/s
    data = np.stack(
        [
            _simulate(rng, pattern, npix, flux * 2.0, np.full(npix, 12.0 * 2.0 / math.sqrt(2)), cr)
            .reshape(len(pattern), ny, nx) / 2.0
            for _ in range(nints)
        ]
    ).astype(np.float32)
    meta = ExposureMeta(nints=nints, ngroups=len(pattern), frame_time=READ_TIME,
                        read_pattern=pattern, instrument="WFI", detector="WFI01")
    return (
        RampModel(data=data, meta=meta),
        GainRef(data=gain),
        ReadnoiseRef(data=rn_cds),
        flux.reshape(shape),
    )


def test_step_parameters_are_validated():
    assert Cas22RampFit().parameters() == {
        "use_jump": False,
        "threshold_intercept": 5.5,
        "threshold_constant": 1.0 / 3.0,
        "include_diagnostic": False,
        "max_memory": None,
        "engine": "serial",
        "progress": None,
    }
    with pytest.raises(ValueError, match="max_memory"):
        Cas22RampFit(max_memory=0.0)
    with pytest.raises(ValueError, match="engine"):
        Cas22RampFit(engine="ray")
    with pytest.raises(TypeError, match="progress"):
        Cas22RampFit(progress="yes")
    with pytest.raises(TypeError, match="use_jump"):
        Cas22RampFit(use_jump=1)
    with pytest.raises(TypeError, match="include_diagnostic"):
        Cas22RampFit(include_diagnostic="yes")
    with pytest.raises(ValueError, match="threshold_intercept"):
        Cas22RampFit(threshold_intercept=math.nan)
    with pytest.raises(TypeError, match="threshold_constant"):
        Cas22RampFit(threshold_constant="1/3")
    ramp, gain, rn, _ = _ramp()
    with pytest.raises(TypeError, match="gain_ref"):
        Cas22RampFit()(ramp, rn, rn)
    with pytest.raises(TypeError, match="ramp"):
        Cas22RampFit()(ramp.data, gain, rn)


def test_step_units_and_products(backend):
    ramp, gain, rn, flux = _ramp(cr=0.5)
    ramp = ramp.to_backend(backend)
    result = Cas22RampFit(use_jump=True)(ramp, gain, rn)
    assert isinstance(result, RampFitResult)
    assert result.rate.backend == backend and result.rateints.shape == (1, 12, 14)
    # the kernel in electrons, with the per-read noise CDS / sqrt(2)
    data = np.moveaxis(to_numpy(ramp.data)[0], 0, 0) * 2.0
    out = cas22_fit(data, np.zeros(data.shape, bool), np.full((12, 14), 12.0 * 2 / math.sqrt(2),
                    np.float32), use_jump=True, **_times())
    rate = result.rate
    ok = out["valid"]
    assert ok.sum() > 150 and not ok.all()  # some pixels lose every segment to jumps
    np.testing.assert_allclose(to_numpy(rate.data), out["slope"] / 2.0, rtol=2e-5)
    np.testing.assert_allclose(to_numpy(rate.var_rnoise)[ok], out["read_var"][ok] / 4.0, rtol=2e-5)
    np.testing.assert_allclose(to_numpy(rate.var_poisson)[ok], out["poisson_var"][ok] / 4.0,
                               rtol=1e-4, atol=1e-9)
    assert (to_numpy(rate.var_rnoise)[~ok] == 0).all()
    np.testing.assert_array_equal((to_numpy(rate.dq) & DQ.DO_NOT_USE) != 0, ~ok)
    np.testing.assert_allclose(to_numpy(rate.err), np.sqrt(to_numpy(rate.var_rnoise)
                                                           + to_numpy(rate.var_poisson)), rtol=1e-6)
    jumped = out["jump"].any(axis=0)
    assert jumped.any()
    np.testing.assert_array_equal((to_numpy(rate.dq) & DQ.JUMP_DET) != 0, jumped)
    np.testing.assert_array_equal(to_numpy(result.rateints.data)[0], to_numpy(rate.data))

    if backend == "jax":  # one compilation per shape and parameters
        count = cas22_fit.trace_count()
        Cas22RampFit(use_jump=True)(ramp.replace(data=ramp.data + 1.0), gain, rn)
        assert cas22_fit.trace_count() == count
    else:
        plain = Cas22RampFit()(_ramp()[0], gain, rn).rate  # no cosmic rays
        pulls = (to_numpy(plain.data) - flux) / to_numpy(plain.err)
        assert np.abs(pulls).max() < 5


def test_step_dq_handling():
    ramp, gain, rn, _ = _ramp()
    groupdq = np.zeros(ramp.groupdq.shape, np.uint8)
    groupdq[0, 4:, 0, 0] = DQ.SATURATED
    groupdq[0, 1:, 0, 1] = DQ.SATURATED  # one usable resultant: no slope
    groupdq[0, 2, 0, 2] = DQ.JUMP_DET  # an upstream jump flag splits the segment
    pixeldq = np.zeros(ramp.pixeldq.shape, np.uint32)
    pixeldq[1, 0] = DQ.DO_NOT_USE
    gain_data = gain.data.copy()
    gain_data[1, 1] = np.nan
    result = Cas22RampFit()(ramp.replace(groupdq=groupdq, pixeldq=pixeldq), gain.replace(data=gain_data), rn)
    data, dq = to_numpy(result.rate.data), to_numpy(result.rate.dq)
    assert np.isfinite(data[0, 0]) and dq[0, 0] == DQ.SATURATED
    assert np.isnan(data[0, 1]) and dq[0, 1] == DQ.SATURATED | DQ.DO_NOT_USE
    assert to_numpy(result.rate.var_poisson)[0, 1] == 0 and to_numpy(result.rate.err)[0, 1] == 0
    assert np.isfinite(data[0, 2]) and dq[0, 2] == DQ.JUMP_DET
    assert np.isnan(data[1, 0]) and dq[1, 0] == DQ.DO_NOT_USE
    assert np.isnan(data[1, 1]) and dq[1, 1] == DQ.DO_NOT_USE | DQ.NO_GAIN_VALUE
    assert np.isfinite(data[2:]).all() and (dq[2:] == 0).all()


def test_step_combines_integrations():
    ramp, gain, rn, _ = _ramp(nints=3, seed=4)
    result = Cas22RampFit()(ramp, gain, rn)
    ints = result.rateints
    vp, vr = to_numpy(ints.var_poisson), to_numpy(ints.var_rnoise)
    w = 1 / (vp + vr)
    np.testing.assert_allclose(
        to_numpy(result.rate.data), (w * to_numpy(ints.data)).sum(0) / w.sum(0), rtol=1e-5
    )
    np.testing.assert_allclose(to_numpy(result.rate.var_rnoise), 1 / (1 / vr).sum(0), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(result.rate.var_poisson), 1 / (1 / vp).sum(0), rtol=1e-5)


def test_diagnostic_segments_and_flag_jumps():
    ramp, gain, rn, _ = _ramp(pattern=LONG, cr=1.0, seed=8)
    step = Cas22RampFit(use_jump=True, include_diagnostic=True)
    result = step(ramp, gain, rn)
    opt = result.fitopt
    assert opt.slope.shape == (1, 3, 12, 14) and opt.crmag.shape == (1, 0, 12, 14)
    weights = np.nan_to_num(to_numpy(opt.weights))
    np.testing.assert_allclose(weights.sum(axis=1)[0], 1.0, rtol=1e-5)
    mean = (weights * np.nan_to_num(to_numpy(opt.slope))).sum(axis=1)[0]
    np.testing.assert_allclose(mean, to_numpy(result.rate.data), rtol=1e-4, atol=1e-5)
    assert np.isnan(to_numpy(opt.yint)).all()
    assert (np.isfinite(to_numpy(opt.slope)).sum(axis=1) >= 2).any()  # split pixels exist
    flagged = step.flag_jumps(ramp, gain, rn)
    assert isinstance(flagged, RampModel)
    jumps = (to_numpy(flagged.groupdq) & DQ.JUMP_DET) != 0
    np.testing.assert_array_equal(jumps.any(axis=1)[0], (to_numpy(result.rate.dq) & DQ.JUMP_DET) != 0)
    # fitting the flagged ramp without detection reproduces the split fit
    again = Cas22RampFit()(flagged, gain, rn)
    np.testing.assert_allclose(to_numpy(again.rate.data), to_numpy(result.rate.data), rtol=1e-6)


def test_dark_current_is_added_back_for_the_fit():
    """``dark_current`` (DN/s) fits ``data + dark * t`` and subtracts ``dark``."""
    ramp, gain, rn, _ = _ramp(seed=2)
    dark = Cas22RampFit()(ramp, gain, rn, dark_current=5.0)
    t = np.asarray(ramp.meta.resultant_times, np.float32)[None, :, None, None]
    added = Cas22RampFit()(ramp.replace(data=ramp.data + 5.0 * t), gain, rn)
    np.testing.assert_allclose(to_numpy(dark.rate.data), to_numpy(added.rate.data) - 5.0,
                               rtol=1e-5, atol=1e-5)
    for name in ("var_poisson", "var_rnoise"):
        np.testing.assert_allclose(getattr(dark.rate, name), getattr(added.rate, name), rtol=1e-5)
    plain = Cas22RampFit()(ramp, gain, rn)
    assert np.mean(to_numpy(dark.rate.var_poisson) > to_numpy(plain.rate.var_poisson)) > 0.9


def test_evenly_sampled_pattern():
    meta = ExposureMeta(nints=1, ngroups=5, nframes=2, groupgap=1, frame_time=2.0)
    explicit = meta.replace(read_pattern=meta.resultant_reads)
    t = np.asarray(meta.resultant_times, np.float32)
    data = np.broadcast_to((7.0 * t)[None, :, None, None], (1, 5, 3, 4)).astype(np.float32)
    gain = GainRef(data=np.ones((3, 4), np.float32))
    rn = ReadnoiseRef(data=np.full((3, 4), 4.0, np.float32))
    a = Cas22RampFit()(RampModel(data=data, meta=meta), gain, rn)
    b = Cas22RampFit()(RampModel(data=data, meta=explicit), gain, rn)
    np.testing.assert_allclose(to_numpy(a.rate.data), 7.0, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(a.rate.data), to_numpy(b.rate.data))


@pytest.mark.parametrize("diagnostic", [False, True])
def test_row_chunks_and_dask_equal_one_chunk(xp, diagnostic):
    ramp, gain, rn, _ = _ramp(shape=(7, 5), nints=2, pattern=LONG, cr=1.0, seed=4)
    gdq = np.zeros(ramp.data.shape, np.uint8)
    gdq[1, 5:, 3, 2] = DQ.SATURATED
    pixeldq = np.zeros((7, 5), np.uint32)
    pixeldq[6, 4] = DQ.DO_NOT_USE
    ramp = ramp.replace(groupdq=gdq, pixeldq=pixeldq)
    if xp is not np:
        ramp = RampModel(data=xp.asarray(np.asarray(ramp.data)), groupdq=xp.asarray(gdq),
                         pixeldq=xp.asarray(pixeldq), meta=ramp.meta)
        gain, rn = GainRef(data=xp.asarray(gain.data)), ReadnoiseRef(data=xp.asarray(rn.data))
    step = Cas22RampFit(use_jump=True, include_diagnostic=diagnostic, max_memory=1.0)
    whole = step(ramp, gain, rn)
    # 2 rows per chunk: 2, 2, 2 and 1 rows (on JAX the last overlaps the one before)
    rows2 = 2.5 * 5 * 2 * (24 * len(LONG) + 64) / 2**30
    for engine in ("serial", "dask"):
        if engine == "dask":
            pytest.importorskip("dask")
        chunked = Cas22RampFit(use_jump=True, include_diagnostic=diagnostic, max_memory=rows2,
                               engine=engine)(ramp, gain, rn)
        for product in ("rate", "rateints", "fitopt"):
            a, b = getattr(whole, product), getattr(chunked, product)
            if a is None:
                assert b is None
                continue
            for name in ("data", "dq", "err", "var_poisson", "var_rnoise", "slope", "weights"):
                if hasattr(a, name) and getattr(a, name) is not None:
                    np.testing.assert_array_equal(to_numpy(getattr(b, name)),
                                                  to_numpy(getattr(a, name)))
    assert (to_numpy(whole.rate.dq) & DQ.JUMP_DET).any()
