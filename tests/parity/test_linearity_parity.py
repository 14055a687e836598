"""Parity of Linearity with stcal 1.17.0 ``linearity_correction`` (classic and read-level)."""

from __future__ import annotations

import numpy as np
import pytest

from stcal_models.algorithms.linearity import Linearity
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ, as_dict
from stcal_models.models import ExposureMeta, LinearityRef, RampModel, SaturationRef

pytestmark = pytest.mark.parity

RTOL = 1e-5
SHAPE = (12, 14)


def _inputs(seed: int, nints: int, ngroups: int):
    """Rising ramps with saturation flags, and references with every kind of bad pixel."""
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    data = np.cumsum(rng.uniform(100.0, 3000.0, (nints, ngroups, ny, nx)), axis=1)
    data = data.astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    first_sat = rng.integers(0, ngroups + 3, (nints, ny, nx))
    group = np.arange(ngroups)[None, :, None, None]
    gdq[group >= first_sat[:, None]] = int(DQ.SATURATED)
    gdq |= rng.choice([0, 0, 0, int(DQ.JUMP_DET), int(DQ.DO_NOT_USE)], data.shape).astype(np.uint8)
    pdq = rng.choice([0, 0, int(DQ.HOT), int(DQ.NO_LIN_CORR)], (ny, nx)).astype(np.uint32)
    lin = np.stack(
        [
            rng.normal(0.0, 2.0, (ny, nx)),
            rng.normal(1.0, 0.01, (ny, nx)),
            rng.uniform(1e-6, 3e-6, (ny, nx)),
            rng.uniform(0.0, 2e-11, (ny, nx)),
        ]
    ).astype(np.float32)
    lin[2, 0, :3] = np.nan
    lin[1, 1, :3] = 0.0
    ilin = np.stack(
        [
            rng.normal(0.0, 2.0, (ny, nx)),
            rng.normal(1.0, 0.01, (ny, nx)),
            -rng.uniform(1e-6, 3e-6, (ny, nx)),
        ]
    ).astype(np.float32)
    ilin[0, 2, :2] = np.nan
    ilin[1, 3, 2:4] = 0.0
    lin_dq = rng.choice(
        [0, 0, 0, 0, int(DQ.NO_LIN_CORR), int(DQ.HOT), int(DQ.DO_NOT_USE)], (ny, nx)
    ).astype(np.uint32)
    zframe = (data[:, 0] * 0.5).astype(np.float32)
    zframe[:, 4, :5] = 0.0
    sat = np.quantile(data, 0.6, axis=(0, 1)).astype(np.float32)
    return data, gdq, pdq, lin, ilin, lin_dq, zframe, sat


def _stcal(data, gdq, pdq, lin, lin_dq, zframe, **kwargs):
    from stcal.linearity.linearity import linearity_correction

    copy = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    return linearity_correction(
        data.copy(),
        gdq.copy(),
        pdq.copy(),
        lin.copy(),
        lin_dq.copy(),
        as_dict(),
        zframe=zframe.copy(),
        **copy,
    )


def _ours(to_xp, meta, data, gdq, pdq, lin, ilin, lin_dq, zframe, sat, step=None, pattern=None):
    ramp = RampModel(
        data=to_xp(data), groupdq=to_xp(gdq), pixeldq=to_xp(pdq), zeroframe=to_xp(zframe), meta=meta
    )
    ref = LinearityRef(coeffs=to_xp(lin), dq=to_xp(lin_dq))
    inverse = None if ilin is None else LinearityRef(coeffs=to_xp(ilin))
    saturation = None if sat is None else SaturationRef(data=to_xp(sat))
    return (step or Linearity())(
        ramp, ref, inverse=inverse, saturation=saturation, read_pattern=pattern
    )


def _compare(ours, ref_data, ref_pdq, ref_zf, gdq):
    got = to_numpy(ours.data)
    np.testing.assert_allclose(got, ref_data, rtol=RTOL, atol=0)
    np.testing.assert_array_equal(to_numpy(ours.pixeldq), ref_pdq)
    np.testing.assert_array_equal(to_numpy(ours.groupdq), gdq)
    np.testing.assert_allclose(to_numpy(ours.zeroframe), ref_zf, rtol=RTOL, atol=0)
    assert ours.data.dtype == ours.xp.float32


def test_classic_parity(xp, to_xp):
    data, gdq, pdq, lin, _ilin, lin_dq, zframe, _sat = _inputs(0, nints=2, ngroups=6)
    ref_data, ref_pdq, ref_zf = _stcal(data, gdq, pdq, lin, lin_dq, zframe)
    ours = _ours(
        to_xp, ExposureMeta(nints=2, ngroups=6), data, gdq, pdq, lin, None, lin_dq, zframe, None
    )
    _compare(ours, ref_data, ref_pdq, ref_zf, gdq)
    # the correction did something: most unsaturated groups changed
    changed = to_numpy(ours.data) != data
    assert changed[(gdq & int(DQ.SATURATED)) == 0].mean() > 0.5


@pytest.mark.parametrize(
    "pattern",
    [
        ((1,), (2, 3), (4, 5, 6, 7), (8, 9), (10,), (11, 12, 13, 14, 15, 16)),
        ((1, 2, 3, 4), (6, 7, 8, 9), (11, 12, 13, 14), (16, 17, 18, 19), (21, 22, 23, 24)),
    ],
    ids=["uneven", "nframes4-groupgap1"],
)
@pytest.mark.parametrize("with_sat", [False, True], ids=["nosat", "sat"])
def test_read_level_parity(xp, to_xp, pattern, with_sat):
    ngroups = len(pattern)
    data, gdq, pdq, lin, ilin, lin_dq, zframe, sat = _inputs(1, nints=2, ngroups=ngroups)
    sat = sat if with_sat else None
    kwargs = {"ilin_coeffs": ilin, "read_pattern": [list(p) for p in pattern], "satval": sat}
    ref_data, ref_pdq, ref_zf = _stcal(data, gdq, pdq, lin, lin_dq, zframe, **kwargs)
    meta = ExposureMeta(nints=2, ngroups=ngroups, read_pattern=pattern)
    ours = _ours(to_xp, meta, data, gdq, pdq, lin, ilin, lin_dq, zframe, sat)
    _compare(ours, ref_data, ref_pdq, ref_zf, gdq)
    classic, _, _ = _stcal(data, gdq, pdq, lin, lin_dq, zframe)
    assert np.abs(ref_data - classic).max() > 1.0  # read-level differs measurably from classic
    if with_sat:
        uncapped, _, _ = _stcal(data, gdq, pdq, lin, lin_dq, zframe, **{**kwargs, "satval": None})
        assert np.abs(ref_data - uncapped).max() > 1.0  # the cap is exercised


def test_read_level_parity_meta_pattern_and_additional_correction(xp, to_xp):
    meta = ExposureMeta(nints=1, ngroups=5, nframes=4, groupgap=1)
    pattern = meta.resultant_reads
    data, gdq, pdq, lin, ilin, lin_dq, zframe, sat = _inputs(2, nints=1, ngroups=5)

    def inl(counts):
        return 1e-3 * counts + 2.0 * (counts / 20000.0) ** 2

    kwargs = {
        "ilin_coeffs": ilin,
        "read_pattern": [list(p) for p in pattern],
        "satval": sat,
        "additional_correction": inl,
    }
    ref_data, ref_pdq, ref_zf = _stcal(data, gdq, pdq, lin, lin_dq, zframe, **kwargs)
    ours = _ours(
        to_xp,
        meta,
        data,
        gdq,
        pdq,
        lin,
        ilin,
        lin_dq,
        zframe,
        sat,
        step=Linearity(additional_correction=inl),
    )
    _compare(ours, ref_data, ref_pdq, ref_zf, gdq)
