"""Parity of Cas22RampFit with stcal 1.17.0 ``stcal.ramp_fitting.ols_cas22.fit_ramps``.

stcal's function takes resultants and the read noise of one read in electrons, a DQ array
(non-zero = unusable), the read time and the read pattern; it returns slopes and the read /
Poisson / total variances in electrons.  The step is fed the same simulated exposures in
DN with the gain and the CDS read noise; stcal gets ``data * gain`` and
``readnoise * gain / sqrt(2)`` (both float32, computed the way the step computes them).

Tolerances: slopes agree within ``1e-5 * |slope| + 1e-4 * sigma``; the ``1e-4 * sigma``
floor covers stcal's float32 sum ``sum_i K_i R_i`` over resultants of thousands of
electrons, which for slopes near zero is the larger error (the project computes it from
``R_i - R_first``, the test of the kernel against a float64 reference shows it within
1e-5).  Read variances agree within 1e-5; Poisson variances, which are proportional to the
slope, within 1e-5 plus the same slope floor.  Jump flags and the set of unfittable
pixels are identical.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from stcal.ramp_fitting.ols_cas22 import fit_ramps

from stcal_models.algorithms.ramp_fitting.cas22 import Cas22RampFit
from stcal_models.algorithms.ramp_fitting.cas22_kernel import cas22_fit, read_pattern_times
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.simulate import simulate_ramp

pytestmark = pytest.mark.parity

READ_TIME = 3.04
PATTERNS = {
    # Roman-like: single first read, resultants growing to ten reads
    "roman": [[1], [2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18],
              [19, 20, 21, 22, 23, 24, 25, 26, 27, 28]],
    # uneven lengths and gaps (skipped reads), eight resultants
    "gaps": [[1], [3, 4], [5], [7, 8, 9], [10, 11], [14], [15, 16, 17, 18], [20, 21]],
}
SHAPE = (40, 60)


def _exposure(pattern, seed, cr_rate, flag_rate=0.03):
    rng = np.random.default_rng(seed)
    gain = rng.uniform(1.5, 2.5, SHAPE).astype(np.float32)
    readnoise = rng.uniform(6.0, 16.0, SHAPE).astype(np.float32)
    sim = simulate_ramp(shape=SHAPE, read_pattern=pattern, frame_time=READ_TIME, seed=seed,
                        cr_rate=cr_rate, readnoise=readnoise, gain=gain, n_stars=12)
    groupdq = np.where(sim.truth.saturated, np.uint8(DQ.SATURATED), np.uint8(0))
    groupdq[rng.random(groupdq.shape) < flag_rate] |= np.uint8(DQ.DO_NOT_USE)
    return sim.ramp.replace(groupdq=groupdq), sim.refs.gain, sim.refs.readnoise


def _stcal(ramp, gain_ref, readnoise_ref, use_jump):
    """stcal on the exposure; slopes and variances in DN, jumps per resultant."""
    gain = gain_ref.data
    n = ramp.ngroups
    resultants = (ramp.data[0] * gain).reshape(n, -1)
    dq = (ramp.groupdq[0] != 0).astype(np.int32).reshape(n, -1)
    read_noise = ((readnoise_ref.data * gain) / np.float32(math.sqrt(2.0))).reshape(-1)
    pattern = [list(r) for r in ramp.meta.read_pattern]
    out = fit_ramps(resultants, dq, read_noise, ramp.meta.frame_time, pattern, use_jump=use_jump)
    g = gain.reshape(-1)
    slope = out.parameters[:, 1] / g
    read_var = out.variances[:, 0] / g**2
    poisson_var = out.variances[:, 1] / g**2
    unfitted = (out.parameters[:, 1] == 0) & (out.variances[:, 2] == 0)
    jumps = ((out.dq & int(DQ.JUMP_DET)) != 0).reshape(n, *SHAPE)
    return (*(a.reshape(SHAPE) for a in (slope, read_var, poisson_var, unfitted)), jumps)


def _assert_close(mine, ref, sigma, rtol=1e-5, floor=1e-4):
    bad = np.abs(mine - ref) > rtol * np.abs(ref) + floor * sigma
    assert not bad.any(), (np.argwhere(bad)[:5], mine[bad][:5], ref[bad][:5])


@pytest.mark.parametrize(
    ("pattern", "use_jump", "backend"),
    [("roman", False, "numpy"), ("roman", True, "numpy"), ("gaps", True, "numpy"),
     ("roman", True, "jax")],
)
def test_cas22_matches_stcal(pattern, use_jump, backend):
    ramp, gain, readnoise = _exposure(PATTERNS[pattern], seed=1, cr_rate=0.003 if use_jump else 0)
    slope, read_var, poisson_var, unfitted, jumps = _stcal(ramp, gain, readnoise, use_jump)
    step = Cas22RampFit(use_jump=use_jump)
    result = step(ramp.to_backend(backend), gain, readnoise)
    rate = result.rate
    data = to_numpy(rate.data)
    dq = to_numpy(rate.dq)

    # unfittable pixels: stcal returns 0; here NaN with DO_NOT_USE
    np.testing.assert_array_equal(np.isnan(data), unfitted)
    np.testing.assert_array_equal((dq & DQ.DO_NOT_USE) != 0, unfitted)
    ok = ~unfitted
    assert ok.sum() > 0.95 * ok.size

    sigma = np.sqrt(read_var + poisson_var)
    _assert_close(data[ok], slope[ok], sigma[ok])
    _assert_close(to_numpy(rate.var_rnoise)[ok], read_var[ok], 0 * sigma[ok])
    # Poisson variance = coefficient * slope: the slope tolerance, scaled
    coefficient = poisson_var / np.maximum(np.abs(slope), 1e-30)
    _assert_close(to_numpy(rate.var_poisson)[ok], poisson_var[ok], coefficient[ok] * sigma[ok])
    # most pixels agree to the pure relative tolerance
    rel = np.abs(data - slope)[ok] / np.abs(slope)[ok]
    assert np.mean(rel <= 1e-5) > 0.99

    # jump flags, per resultant, identical
    if use_jump:
        assert jumps.sum() > 50
        flagged = step.flag_jumps(ramp.to_backend(backend), gain, readnoise)
        mine = (to_numpy(flagged.groupdq)[0] & DQ.JUMP_DET) != 0
        np.testing.assert_array_equal(mine, jumps)
        np.testing.assert_array_equal((dq & DQ.JUMP_DET) != 0, jumps.any(axis=0))
    else:
        assert not jumps.any() and not (dq & DQ.JUMP_DET).any()


def test_cas22_kernel_matches_stcal_on_hard_ramps():
    """Negative slopes, sub-electron read noise and frequent hits: the statistics' NaN cases.

    A jump statistic is NaN when its variance (read noise + slope-dependent terms) is
    negative, which happens for strongly negative slopes.  stcal starts each segment's
    statistic from its last single difference and replaces it by any larger one, so a NaN
    last difference means no jump and a NaN elsewhere is skipped; the kernel does the same.
    """
    rng = np.random.default_rng(21)
    pattern = PATTERNS["gaps"]
    npix = 6000
    nreads = pattern[-1][-1]
    flux = np.where(rng.random(npix) < 0.5, -rng.uniform(0, 60, npix), 10 ** rng.uniform(-2, 4, npix))
    rn = rng.uniform(0.3, 8.0, npix).astype(np.float32)
    inc = rng.poisson(np.clip(flux, 0, None)[None, :] * READ_TIME, (nreads, npix)).astype(float)
    inc += np.where(flux < 0, flux * READ_TIME, 0.0)[None, :]
    inc += (rng.random((nreads, npix)) < 1.5 / nreads) * rng.uniform(0, 500, (nreads, npix))
    reads = np.cumsum(inc, axis=0) + rng.normal(size=inc.shape) * rn[None, :]
    res = np.stack([reads[np.asarray(r) - 1].mean(axis=0) for r in pattern]).astype(np.float32)
    dq = (rng.random(res.shape) < 0.05).astype(np.int32)
    out = fit_ramps(res, dq.copy(), rn, READ_TIME, pattern, use_jump=True)
    tbar, tau, nr = read_pattern_times(pattern, READ_TIME)
    mine = cas22_fit(res, dq != 0, rn, tbar=tbar, tau=tau, nreads=nr, use_jump=True)
    np.testing.assert_array_equal(mine["jump"], (out.dq & int(DQ.JUMP_DET)) != 0)
    unfitted = (out.parameters[:, 1] == 0) & (out.variances[:, 2] == 0)
    np.testing.assert_array_equal(~mine["valid"], unfitted)
    ok = ~unfitted
    sigma = np.sqrt(out.variances[ok, 2])
    _assert_close(mine["slope"][ok], out.parameters[ok, 1], sigma)
    _assert_close(mine["read_var"][ok], out.variances[ok, 0], 0 * sigma)


def test_documented_differences():
    """Where the step deliberately departs from stcal, and by how much."""
    tbar, tau, nr = read_pattern_times(PATTERNS["roman"], READ_TIME)
    t = np.asarray(tbar, np.float32)
    flat = np.full(6, 1.2e5, np.float32)  # a saturated, unflagged ramp
    ramp = (5.0 * t + 2000.0).astype(np.float32)
    res = np.stack([flat, ramp, ramp, ramp], axis=1)
    dq = np.zeros(res.shape, np.int32)
    dq[:, 2] = 1  # nothing usable
    rn = np.array([8.0, 8.0, 8.0, 0.0], np.float32)  # last pixel: zero read noise
    out = fit_ramps(res, dq.copy(), rn, READ_TIME, PATTERNS["roman"], include_diagnostic=True)
    mine = cas22_fit(res, dq != 0, rn, tbar=tbar, tau=tau, nreads=nr)
    # 1. float32 rounding: stcal's sum of K_i R_i leaves a residue of order 1e-7 * R / T
    assert mine["slope"][0] == 0 and 0 < abs(out.parameters[0, 1]) < 1e-6 * 1.2e5 / (t[-1] - t[0])
    np.testing.assert_allclose(mine["slope"][1], out.parameters[1, 1], rtol=1e-5)
    # 2. nothing to fit: stcal returns zeros, the kernel NaN (the step adds DO_NOT_USE)
    assert out.parameters[2, 1] == 0 and out.variances[2, 2] == 0
    assert not mine["valid"][2] and np.isnan(mine["slope"][2])
    # 3. zero read noise: stcal's inverse-read-variance average is 0/0 and it returns 0;
    #    the kernel takes the noiseless limit, which is the segment's own fit
    assert out.parameters[3, 1] == 0
    segment = out.fits[3]["fits"][0]
    np.testing.assert_allclose(mine["slope"][3], segment["slope"], rtol=1e-5)
    assert mine["read_var"][3] == 0
