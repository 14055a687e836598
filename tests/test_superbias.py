import numpy as np
import pytest

from stcal_models import DQ, RampModel
from stcal_models.algorithms.superbias import Superbias
from stcal_models.backends import to_numpy
from stcal_models.models import GainRef, SuperbiasRef


def test_superbias_subtracts_and_flags(xp, to_xp):
    data = np.full((1, 3, 4, 5), 1000.0, np.float32)
    zeroframe = np.full((1, 4, 5), 990.0, np.float32)
    bias = np.full((4, 5), 400.0, np.float32)
    bias[1, 2] = np.nan
    ref_dq = np.zeros((4, 5), np.uint32)
    ref_dq[3, 4] = DQ.HOT
    ramp = RampModel(data=to_xp(data), zeroframe=to_xp(zeroframe))
    out = Superbias()(ramp, SuperbiasRef(data=bias, dq=ref_dq))
    got = to_numpy(out.data)
    assert got[0, 0, 0, 0] == 600.0 and got[0, 2, 1, 2] == 1000.0
    assert to_numpy(out.zeroframe)[0, 0, 0] == 590.0
    pdq = to_numpy(out.pixeldq)
    assert pdq[1, 2] == DQ.UNRELIABLE_BIAS and pdq[3, 4] == DQ.HOT and pdq[0, 0] == 0
    np.testing.assert_array_equal(to_numpy(ramp.data), data)  # input untouched


def test_superbias_subarray_and_errors():
    ramp = RampModel(data=np.zeros((1, 2, 3, 3), np.float32))
    full = SuperbiasRef(data=np.arange(36, dtype=np.float32).reshape(6, 6))
    sub = ramp.replace(meta=ramp.meta.replace(xstart=2, ystart=3))
    out = Superbias()(sub, full)
    np.testing.assert_array_equal(out.data[0, 0], -full.data[2:5, 1:4])
    with pytest.raises(TypeError, match="Superbias.superbias: expected SuperbiasRef"):
        Superbias()(ramp, GainRef(data=np.ones((3, 3), np.float32)))
    with pytest.raises(ValueError, match="SuperbiasRef: expected a reference covering"):
        Superbias()(ramp, SuperbiasRef(data=np.ones((2, 2), np.float32)))
