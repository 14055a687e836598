"""Parity of DarkCurrent with stcal 1.17.0 ``dark_sub.do_correction_data``."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from stcal_models.algorithms.dark_current import DarkCurrent
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.models import DarkRef, ExposureMeta, RampModel

pytestmark = pytest.mark.parity

RTOL = 1e-5
NY, NX = 10, 12


def _stcal(data, gdq, pdq, nframes, groupgap, dark, dark_dq):
    """Run stcal's dark subtraction through its model-free data classes."""
    from stcal.dark_current import dark_sub
    from stcal.dark_current.dark_class import DarkData, ScienceData

    science = ScienceData()
    science.data = data.copy()
    science.groupdq = gdq.copy()
    science.pixeldq = pdq.copy()
    science.exp_nframes = nframes
    science.exp_groupgap = groupgap
    science.exp_intstart = 1
    ref = DarkData(dims=dark.shape)
    ref.data = dark.copy()
    # stcal reads a 4-D dark's DQ as groupdq[0, 0]; a 3-D dark's as given
    ref.groupdq = dark_dq.copy() if dark.ndim == 3 else np.broadcast_to(dark_dq, dark.shape).copy()
    ref.exp_nframes = 1
    ref.exp_ngroups = dark.shape[-3]
    ref.exp_groupgap = 0
    logging.getLogger("stcal").setLevel(logging.ERROR)
    out, averaged = dark_sub.do_correction_data(science, ref)
    return out, averaged


def _inputs(seed, nints, ngroups, dark_lead):
    rng = np.random.default_rng(seed)
    data = rng.uniform(-50.0, 5000.0, (nints, ngroups, NY, NX)).astype(np.float32)
    gdq = rng.choice([0, 0, 0, int(DQ.SATURATED), int(DQ.JUMP_DET)], data.shape).astype(np.uint8)
    pdq = rng.choice([0, 0, int(DQ.HOT), int(DQ.DO_NOT_USE)], (NY, NX)).astype(np.uint32)
    steps = rng.uniform(0.0, 3.0, (*dark_lead, NY, NX))
    dark = np.cumsum(steps, axis=-3)
    dark = (dark - dark[..., :1, :, :]).astype(np.float32)
    dark[..., 3, 2, 2] = np.nan
    dark[..., 0, 4, 4] = np.nan
    dark_dq = rng.choice(
        [0, 0, 0, int(DQ.HOT), int(DQ.WARM), int(DQ.UNRELIABLE_DARK) | int(DQ.DO_NOT_USE)], (NY, NX)
    ).astype(np.uint32)
    return data, gdq, pdq, dark, dark_dq


READOUTS = [
    (2, 5, 1, 0),  # direct, dark longer than needed
    (2, 4, 2, 1),  # frame averaging with a group gap
    (3, 3, 4, 0),  # NIRCam-like nframes=4
    (1, 14, 1, 0),  # dark too short: extrapolated
    (2, 4, 3, 2),  # averaging and extrapolation
]


@pytest.mark.parametrize("nints,ngroups,nframes,groupgap", READOUTS)
@pytest.mark.parametrize("dark_ndim", [3, 4], ids=["3d-dark", "4d-dark"])
def test_dark_parity(xp, to_xp, nints, ngroups, nframes, groupgap, dark_ndim):
    lead = (12,) if dark_ndim == 3 else (2, 12)
    data, gdq, pdq, dark, dark_dq = _inputs(nints * 100 + ngroups, nints, ngroups, lead)
    out, _ = _stcal(data, gdq, pdq, nframes, groupgap, dark, dark_dq)
    meta = ExposureMeta(nints=nints, ngroups=ngroups, nframes=nframes, groupgap=groupgap)
    ramp = RampModel(data=to_xp(data), groupdq=to_xp(gdq), pixeldq=to_xp(pdq), meta=meta)
    result = DarkCurrent()(ramp, DarkRef(data=to_xp(dark), dq=to_xp(dark_dq)))
    got = to_numpy(result.ramp.data)
    np.testing.assert_allclose(got, out.data, rtol=RTOL, atol=0)
    np.testing.assert_array_equal(to_numpy(result.ramp.pixeldq), out.pixeldq)
    np.testing.assert_array_equal(to_numpy(result.ramp.groupdq), out.groupdq)
    subtracted = data - got
    assert np.abs(subtracted).max() > 1.0  # the dark really was subtracted
