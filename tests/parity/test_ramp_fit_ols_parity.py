"""Parity of OLSRampFit with stcal 1.17.0 ``ramp_fit(..., algorithm="OLS_C")``.

Both fits see the same simulated ramps: Poisson + read noise, cosmic-ray jumps flagged
JUMP_DET, saturation from a random group on, DO_NOT_USE groups, other group flags,
CHARGELOSS | DO_NOT_USE runs, ZEROFRAME, dark current, bad pixels, NGROUPS
1/2/3/4/10/100, several integrations, ``suppress_one_group`` both ways, nframes/groupgap.
DQ must be identical; rates, errors and variances agree to 1e-5 relative (stcal computes
in float32 too, the differences are rounding).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stcal_models.algorithms.ramp_fitting.ols import OLSRampFit
from stcal_models.dqflags import as_dict
from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef

pytestmark = pytest.mark.parity

NY, NX = 12, 12
TGROUP = 10.0


class _StcalModel(SimpleNamespace):
    """The attributes of a JWST RampModel that stcal's ``ramp_fit`` reads."""

    def hasattr(self, name):
        return hasattr(self, name)


def _simulate(seed, nints, ngroups, *, p_jump=0.1, p_sat=0.3, p_dnu=0.05, p_cl=0.0,
              p_flag=0.0, zeroframe=False, dark=False, badpix=False, nframes=1, groupgap=0):
    rng = np.random.default_rng(seed)
    gain = rng.uniform(1.0, 5.0, (NY, NX)).astype(np.float32)
    readnoise = rng.uniform(3.0, 20.0, (NY, NX)).astype(np.float32)
    flux = rng.uniform(-5.0, 300.0, (NY, NX))
    shape = (nints, ngroups, NY, NX)
    electrons = rng.poisson(np.abs(flux) * TGROUP / 2, shape) / 2.0 * np.sign(flux)
    data = 1000.0 + np.cumsum(electrons + rng.normal(0, 10 / np.sqrt(2), shape), axis=1)
    gdq = np.zeros(shape, np.uint8)
    jumps = rng.random(shape) < p_jump
    gdq[jumps] |= 4
    data += np.cumsum(jumps * 500.0, axis=1)
    groups = np.arange(ngroups)[None, :, None, None]
    first = rng.integers(0, ngroups, (nints, 1, NY, NX))
    gdq[(groups >= first) & (rng.random((nints, 1, NY, NX)) < p_sat)] |= 2
    gdq[rng.random(shape) < p_dnu] |= 1
    if p_cl:
        first = rng.integers(0, ngroups, (nints, 1, NY, NX))
        gdq[(groups >= first) & (rng.random((nints, 1, NY, NX)) < p_cl)] |= 129
    if p_flag:
        mask = rng.random(shape) < p_flag
        gdq[mask] |= rng.choice(np.array([8, 16, 32, 64, 128], np.uint8), int(mask.sum()))
    pdq = np.zeros((NY, NX), np.uint32)
    if badpix:
        pdq[rng.random((NY, NX)) < 0.1] |= 1
        pdq[rng.random((NY, NX)) < 0.1] |= 4 | (1 << 19)
        gain[rng.random((NY, NX)) < 0.05] = np.nan
        gain[rng.random((NY, NX)) < 0.05] = 0.0
    zf = None
    if zeroframe:
        zf = rng.uniform(100.0, 2000.0, (nints, NY, NX)).astype(np.float32)
        zf[rng.random(zf.shape) < 0.2] = 0.0
    dark_current = rng.uniform(-1.0, 5.0, (NY, NX)).astype(np.float32) if dark else None
    frame_time = TGROUP / (nframes + groupgap)
    return dict(data=data.astype(np.float32), gdq=gdq, pdq=pdq, zf=zf, gain=gain,
                readnoise=readnoise, dark=dark_current, nframes=nframes, groupgap=groupgap,
                frame_time=frame_time)


def _stcal(case, suppress, save_opt=False):
    from stcal.ramp_fitting.ramp_fit import ramp_fit

    nints, ngroups = case["data"].shape[:2]
    exposure = SimpleNamespace(
        frame_time=case["frame_time"], group_time=TGROUP, groupgap=case["groupgap"],
        nframes=case["nframes"], drop_frames1=0, ngroups=ngroups, nints=nints,
        zero_frame=case["zf"] is not None,
    )
    dark = case["dark"] if case["dark"] is not None else np.zeros((NY, NX), np.float32)
    model = _StcalModel(
        data=case["data"].copy(), groupdq=case["gdq"].copy(), pixeldq=case["pdq"].copy(),
        meta=SimpleNamespace(instrument=SimpleNamespace(name="NIRCAM"), exposure=exposure),
        average_dark_current=dark,
    )
    if case["zf"] is not None:
        model.zeroframe = case["zf"].copy()
    return ramp_fit(model, save_opt, case["readnoise"].copy(), case["gain"].copy(), "OLS_C",
                    "optimal", "none", as_dict(), suppress_one_group=suppress)


def _ours(case, suppress, save_opt=False, backend="numpy"):
    nints, ngroups = case["data"].shape[:2]
    meta = ExposureMeta(nints=nints, ngroups=ngroups, nframes=case["nframes"],
                        groupgap=case["groupgap"], frame_time=case["frame_time"])
    ramp = RampModel(data=case["data"], groupdq=case["gdq"], pixeldq=case["pdq"],
                     zeroframe=case["zf"], meta=meta)
    gain, readnoise = GainRef(data=case["gain"]), ReadnoiseRef(data=case["readnoise"])
    dark = case["dark"]
    if backend == "jax":
        import jax.numpy as jnp

        ramp, gain, readnoise = (m.to_backend("jax") for m in (ramp, gain, readnoise))
        dark = None if dark is None else jnp.asarray(dark)
    step = OLSRampFit(suppress_one_group=suppress, save_opt=save_opt)
    return step(ramp, gain, readnoise, dark)


def _compare(ours, theirs, rtol):
    image, integ, _ = theirs
    for model, ref, label in ((ours.rate, image, "rate"), (ours.rateints, integ, "rateints")):
        np.testing.assert_array_equal(np.asarray(model.dq), ref["dq"], err_msg=f"{label} dq")
        for name, key in (("data", "slope"), ("err", "err"), ("var_poisson", "var_poisson"),
                          ("var_rnoise", "var_rnoise")):
            np.testing.assert_allclose(np.asarray(getattr(model, name)), ref[key], rtol=rtol,
                                       atol=1e-30, equal_nan=True, err_msg=f"{label} {name}")


CASES = {
    "typical 2x10": dict(seed=1, nints=2, ngroups=10, p_dnu=0.0),
    "ngroups 1": dict(seed=2, nints=3, ngroups=1),
    "ngroups 2": dict(seed=3, nints=3, ngroups=2),
    "ngroups 3": dict(seed=4, nints=2, ngroups=3),
    "ngroups 4": dict(seed=5, nints=4, ngroups=4),
    "zeroframe": dict(seed=6, nints=2, ngroups=5, zeroframe=True, nframes=2),
    "dark current": dict(seed=7, nints=2, ngroups=6, dark=True, p_sat=0.1),
    "chargeloss and flags": dict(seed=8, nints=3, ngroups=7, p_cl=0.3, p_flag=0.2),
    "nframes groupgap": dict(seed=9, nints=2, ngroups=6, nframes=4, groupgap=1),
    "bad pixels": dict(seed=10, nints=3, ngroups=6, badpix=True),
    "everything": dict(seed=11, nints=4, ngroups=9, p_flag=0.2, p_cl=0.3, zeroframe=True,
                       dark=True, nframes=3, groupgap=2, badpix=True),
    # Long ramps: a few jumps and DO_NOT_USE groups per ramp, so segments of tens of
    # groups; values reach ~8e4 DN (float32 spacing 0.008), still within 1e-5.
    "ngroups 100": dict(seed=14, nints=2, ngroups=100, p_jump=0.02, p_dnu=0.01),
    "ngroups 100 everything": dict(seed=15, nints=2, ngroups=100, p_jump=0.02, p_dnu=0.01,
                                   p_cl=0.3, p_flag=0.02, zeroframe=True, dark=True,
                                   nframes=2, badpix=True),
    # Fewer than half the pixels carry any flag: unflagged long ramps next to flagged ones.
    "ngroups 100 mostly clean": dict(seed=18, nints=2, ngroups=100, p_jump=0.001, p_sat=0.15,
                                     p_dnu=0.0005),
    "ngroups 10 mostly clean": dict(seed=19, nints=3, ngroups=10, p_jump=0.005, p_sat=0.1,
                                    p_dnu=0.002, zeroframe=True, dark=True),
    # CHARGELOSS read-noise variance with one-group segments timed apart from TGROUP
    # (nframes > 1, groupgap > 0), with and without ZEROFRAME, and NGROUPS=1 rules.
    "chargeloss ngroups 1": dict(seed=20, nints=3, ngroups=1, p_cl=0.4, zeroframe=True,
                                 nframes=3, groupgap=1),
    "chargeloss ngroups 2": dict(seed=21, nints=3, ngroups=2, p_cl=0.4, zeroframe=True,
                                 nframes=3, groupgap=1),
    "chargeloss ngroups 3": dict(seed=22, nints=3, ngroups=3, p_cl=0.4, zeroframe=True,
                                 nframes=3, groupgap=1),
    "chargeloss ngroups 4": dict(seed=23, nints=2, ngroups=4, p_cl=0.4, nframes=4),
    "ngroups 1 zeroframe": dict(seed=24, nints=3, ngroups=1, p_jump=0.3, zeroframe=True,
                                nframes=2, groupgap=1),
}


@pytest.mark.parametrize("suppress", [False, True], ids=["keep1", "suppress1"])
@pytest.mark.parametrize("name", list(CASES))
def test_rate_and_rateints_match_stcal(name, suppress):
    case = _simulate(**CASES[name])
    _compare(_ours(case, suppress), _stcal(case, suppress), rtol=1e-5)


@pytest.mark.parametrize("suppress", [False, True], ids=["keep1", "suppress1"])
def test_fitopt_matches_stcal(suppress):
    case = _simulate(seed=12, nints=3, ngroups=8, p_cl=0.2, p_flag=0.1, zeroframe=True,
                     nframes=2)
    ours = _ours(case, suppress, save_opt=True).fitopt
    theirs = _stcal(case, suppress, save_opt=True)[2]
    for name in ("slope", "sigslope", "yint", "sigyint", "weights", "var_poisson",
                 "var_rnoise", "pedestal", "crmag"):
        ours_arr = np.asarray(getattr(ours, name))
        assert ours_arr.shape == theirs[name].shape, name
        np.testing.assert_allclose(ours_arr, theirs[name], rtol=1e-5, atol=1e-6,
                                   equal_nan=True, err_msg=name)


def test_jax_backend_matches_stcal():
    # XLA evaluates exp/log and reassociates float32 sums differently: 1e-4 relative.
    case = _simulate(seed=13, nints=2, ngroups=6, p_cl=0.2, zeroframe=True, dark=True)
    _compare(_ours(case, False, backend="jax"), _stcal(case, False), rtol=1e-4)


def test_mostly_clean_cases_use_the_closed_form():
    # Precondition of the "mostly clean" cases: under half of the pixels carry a flag, so
    # the unflagged ones go through the closed form and the rest through the segment fit.
    for name in ("ngroups 100 mostly clean", "ngroups 10 mostly clean"):
        flagged = (_simulate(**CASES[name])["gdq"] != 0).any(axis=(0, 1))
        assert 0.05 < flagged.mean() < 0.5, (name, flagged.mean())


@pytest.mark.parametrize("suppress", [False, True], ids=["keep1", "suppress1"])
def test_chargeloss_cases_differ_from_the_plain_read_noise(suppress):
    # The CHARGELOSS cases must exercise the recomputed read-noise variance: without it
    # (CHARGELOSS bits cleared, groups still DO_NOT_USE) some VAR_RNOISE changes.
    changed = 0
    for name in ("chargeloss ngroups 2", "chargeloss ngroups 3", "chargeloss ngroups 4"):
        case = _simulate(**CASES[name])
        plain = dict(case, gdq=case["gdq"] & np.uint8(0x7F))
        a = np.asarray(_ours(case, suppress).rateints.var_rnoise)
        b = np.asarray(_ours(plain, suppress).rateints.var_rnoise)
        changed += int(np.sum(~np.isclose(a, b, rtol=1e-5)))
    assert changed > 0
