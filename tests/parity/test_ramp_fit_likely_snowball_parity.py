"""Parity of LIKELY snowball flagging (stcal #491) with stcal 1.17.0.

stcal applies it only through ``likely_ramp_fit(ramp_data, readnoise, gain, jump_data=...)``
with ``jump_data.expand_large_events`` set; the oracle calls that function with a
``JumpData`` holding the same snowball parameters.  Scenes: 96x96 exposures from
:func:`stcal_models.simulate.simulate_ramp` with five snowballs, cosmic rays and bright
stars, flagged by our ``Saturation`` step; with and without a zero frame.

The seeds are ones where the plain LIKELY fit (no snowballs) already agrees with stcal
pixel for pixel: each case first asserts that.  Where the plain fits differ (the tie
cases README lists for LIKELY) a jump region's shape differs, and so does the ellipse
fitted to it; that cascade is not a difference of the snowball step itself.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from stcal_models.algorithms.jump import SnowballParams
from stcal_models.algorithms.ramp_fitting.likely import LikelyRampFit
from stcal_models.algorithms.saturation import Saturation
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ, as_dict
from stcal_models.simulate import simulate_ramp

pytestmark = pytest.mark.parity


class _StcalModel(SimpleNamespace):
    def hasattr(self, name):
        return hasattr(self, name)


def _scene(seed, *, nints=2, zeroframe=False, nframes=1):
    sim = simulate_ramp(shape=(96, 96), nints=nints, ngroups=8, seed=seed, snowballs=5,
                        cr_rate=2e-4, zeroframe=zeroframe, nframes=nframes, n_stars=5)
    return sim, Saturation()(sim.ramp, sim.refs.saturation)


def _stcal(ramp, gain, readnoise, params: SnowballParams | None):
    from stcal.jump.jump_class import JumpData
    from stcal.ramp_fitting import likely_fit
    from stcal.ramp_fitting.ramp_fit import create_ramp_fit_class

    meta = ramp.meta
    exposure = SimpleNamespace(frame_time=meta.frame_time, group_time=meta.group_time,
                               groupgap=meta.groupgap, nframes=meta.nframes)
    model = _StcalModel(
        data=np.array(ramp.data), groupdq=np.array(ramp.groupdq),
        pixeldq=np.array(ramp.pixeldq),
        meta=SimpleNamespace(exposure=exposure, instrument=SimpleNamespace(name="NIRCAM")),
    )
    if ramp.zeroframe is not None:
        model.zeroframe = np.array(ramp.zeroframe)
    ramp_data = create_ramp_fit_class(model, "LIKELY", as_dict(), False)
    jump_data = None
    if params is not None:
        flags = as_dict()
        flags["GOOD"] = 0
        jump_data = JumpData(dqflags=flags)
        jump_data.set_snowball_info(
            True, params.min_jump_area, params.min_sat_area, params.expand_factor,
            params.sat_required_snowball, params.min_sat_radius_extend, params.sat_expand * 2,
            params.edge_size,
        )
        jump_data.max_extended_width = params.max_extended_width
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, integ, _ = likely_fit.likely_ramp_fit(ramp_data, np.array(readnoise),
                                                     np.array(gain), jump_data=jump_data)
    return image, integ


def _compare(expected, got, *, what):
    np.testing.assert_array_equal(np.asarray(to_numpy(got.dq)), expected["dq"],
                                  err_msg=f"{what} dq")
    err = np.nan_to_num(np.asarray(expected["err"]))
    for key, name in (("slope", "data"), ("var_poisson", "var_poisson"),
                      ("var_rnoise", "var_rnoise"), ("err", "err")):
        atol = 1e-4 * err if key == "slope" else 0.0
        ours = np.asarray(to_numpy(getattr(got, name)))
        close = np.isclose(ours, expected[key], rtol=1e-4, atol=atol, equal_nan=True)
        assert np.all(close), (
            f"{what} {key}: {np.count_nonzero(~close)} differ, e.g. ours {ours[~close][:4]} "
            f"stcal {expected[key][~close][:4]}"
        )


CASES = {
    "nframes1 seed5": dict(seed=5),
    "nframes1 seed9 3 ints": dict(seed=9, nints=3),
    "zeroframe nframes2 seed6": dict(seed=6, zeroframe=True, nframes=2),
    "zeroframe nframes2 seed14": dict(seed=14, zeroframe=True, nframes=2),
}


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("name", list(CASES))
def test_snowball_flagging_matches_stcal(name, backend):
    sim, ramp = _scene(**CASES[name])
    gain, readnoise = np.asarray(sim.refs.gain.data), np.asarray(sim.refs.readnoise.data)
    refs = (sim.refs.gain, sim.refs.readnoise)
    ours_ramp = ramp
    if backend == "jax":
        ours_ramp, refs = ramp.to_backend("jax"), tuple(r.to_backend("jax") for r in refs)
    params = SnowballParams()

    # precondition: the plain fits agree exactly in DQ
    _, plain_integ = _stcal(ramp, gain, readnoise, None)
    plain = LikelyRampFit(stcal_quirks=True).fit(ours_ramp, *refs)
    np.testing.assert_array_equal(np.asarray(to_numpy(plain.result.rateints.dq)),
                                  plain_integ["dq"])

    image, integ = _stcal(ramp, gain, readnoise, params)
    ours = LikelyRampFit(stcal_quirks=True, expand_large_events=True, snowball=params).fit(
        ours_ramp, *refs)
    _compare(integ, ours.result.rateints, what="rateints")
    _compare(image, ours.result.rate, what="rate")
    # snowballs were found and changed the products in both
    assert ours.snowballs > 0
    grew = np.count_nonzero(integ["dq"] & DQ.JUMP_DET) - np.count_nonzero(
        plain_integ["dq"] & DQ.JUMP_DET)
    assert grew > 100
