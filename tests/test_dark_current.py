"""DarkCurrent step: frame averaging, extrapolation, DQ, average dark current, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from stcal_models.algorithms.dark_current import (
    DarkCurrent,
    DarkResult,
    dark_frame_weights,
    dark_kernel,
)
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.models import DarkRef, ExposureMeta, RampModel, RefMeta


def _dark_frames(rng, nframes, shape=(3, 4), nints=None):
    lead = (nframes,) if nints is None else (nints, nframes)
    steps = rng.uniform(0.0, 4.0, (*lead, *shape)).astype(np.float32)
    frames = np.cumsum(steps, axis=-3)
    return (frames - frames[..., :1, :, :]).astype(np.float32)


def _science(rng, nints, ngroups, shape=(3, 4)):
    return rng.uniform(100.0, 2000.0, (nints, ngroups, *shape)).astype(np.float32)


def _ramp(to_xp, data, meta=None, groupdq=None, pixeldq=None):
    return RampModel(
        data=to_xp(data),
        groupdq=None if groupdq is None else to_xp(np.asarray(groupdq, np.uint8)),
        pixeldq=None if pixeldq is None else to_xp(np.asarray(pixeldq, np.uint32)),
        meta=meta,
    )


def test_frame_level_dark_subtracted_group_by_group(xp, to_xp):
    rng = np.random.default_rng(0)
    dark = _dark_frames(rng, 8)
    sci = _science(rng, 2, 5)
    result = DarkCurrent()(_ramp(to_xp, sci), DarkRef(data=to_xp(dark)))
    assert isinstance(result, DarkResult)
    np.testing.assert_allclose(to_numpy(result.ramp.data), sci - dark[None, :5], rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(result.averaged_dark), dark[:5])
    assert result.ramp.data.dtype == xp.float32


def test_frame_averaging_nframes_groupgap_nskip(xp, to_xp):
    rng = np.random.default_rng(1)
    dark = _dark_frames(rng, 30)
    sci = _science(rng, 1, 4)
    for nframes, groupgap, nskip in ((2, 1, 0), (4, 0, 0), (3, 2, 2)):
        meta = ExposureMeta(nints=1, ngroups=4, nframes=nframes, groupgap=groupgap, nskip=nskip)
        result = DarkCurrent()(_ramp(to_xp, sci, meta), DarkRef(data=to_xp(dark)))
        step = nframes + groupgap
        expected = np.stack(
            [dark[nskip + g * step : nskip + g * step + nframes].mean(axis=0) for g in range(4)]
        )
        np.testing.assert_allclose(to_numpy(result.averaged_dark), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(to_numpy(result.ramp.data), sci - expected, rtol=1e-6)


def test_uneven_read_pattern(xp, to_xp):
    rng = np.random.default_rng(2)
    dark = _dark_frames(rng, 12)
    pattern = ((1,), (2, 3), (5, 6, 7, 8), (11,))
    meta = ExposureMeta(nints=1, ngroups=4, read_pattern=pattern)
    sci = _science(rng, 1, 4)
    result = DarkCurrent()(_ramp(to_xp, sci, meta), DarkRef(data=to_xp(dark)))
    expected = np.stack([dark[np.asarray(p) - 1].mean(axis=0) for p in pattern])
    np.testing.assert_allclose(to_numpy(result.averaged_dark), expected, rtol=1e-6, atol=1e-6)


def test_short_dark_is_extrapolated_linearly(xp, to_xp):
    rng = np.random.default_rng(3)
    rate = rng.uniform(0.1, 2.0, (3, 4)).astype(np.float32)
    dark = (np.arange(6, dtype=np.float32)[:, None, None] * rate).astype(np.float32)
    dark[4] += 1.0  # the extrapolation uses the last two frames only
    meta = ExposureMeta(nints=1, ngroups=4, nframes=2, groupgap=1)  # needs 11 frames
    sci = _science(rng, 1, 4)
    result = DarkCurrent()(_ramp(to_xp, sci, meta), DarkRef(data=to_xp(dark)))
    slope = dark[5] - dark[4]
    frames = [dark[j] if j < 6 else dark[5] + (j - 5) * slope for j in range(11)]
    expected = np.stack([(frames[3 * g] + frames[3 * g + 1]) / 2 for g in range(4)])
    np.testing.assert_allclose(to_numpy(result.averaged_dark), expected, rtol=1e-5, atol=1e-5)


def test_dark_frame_weights():
    w = dark_frame_weights(((1, 2), (4, 5)), 4)
    np.testing.assert_allclose(w, [[0.5, 0.5, 0, 0], [0, 0, -0.5, 1.5]])
    with pytest.raises(ValueError, match="at least 2 frames"):
        dark_frame_weights(((1,), (2,)), 1)


def test_nan_dark_counts_as_zero_and_dq_propagates(xp, to_xp):
    rng = np.random.default_rng(4)
    dark = _dark_frames(rng, 6)
    dark[2, 1, 1] = np.nan
    dark_dq = np.zeros((3, 4), np.uint32)
    dark_dq[0, 0] = int(DQ.HOT)
    dark_dq[2, 3] = int(DQ.UNRELIABLE_DARK) | int(DQ.DO_NOT_USE)
    pdq = np.zeros((3, 4), np.uint32)
    pdq[0, 0] = int(DQ.DEAD)
    gdq = np.zeros((1, 4, 3, 4), np.uint8)
    gdq[0, 3, 2, 2] = int(DQ.SATURATED)
    sci = _science(rng, 1, 4)
    meta = ExposureMeta(nints=1, ngroups=4)
    result = DarkCurrent()(
        _ramp(to_xp, sci, meta, groupdq=gdq, pixeldq=pdq),
        DarkRef(data=to_xp(dark), dq=to_xp(dark_dq)),
    )
    got = to_numpy(result.ramp.data)
    assert np.all(np.isfinite(got))
    assert got[0, 2, 1, 1] == sci[0, 2, 1, 1]
    np.testing.assert_array_equal(to_numpy(result.ramp.pixeldq), pdq | dark_dq)
    np.testing.assert_array_equal(to_numpy(result.ramp.groupdq), gdq)
    # saturated groups are dark-subtracted too (as stcal)
    np.testing.assert_allclose(got[0, 3, 2, 2], sci[0, 3, 2, 2] - dark[3, 2, 2], rtol=1e-6)


def test_integration_dependent_dark(xp, to_xp):
    rng = np.random.default_rng(5)
    dark = _dark_frames(rng, 5, nints=2)
    sci = _science(rng, 4, 3)
    meta = ExposureMeta(nints=4, ngroups=3)
    ref = DarkRef(data=to_xp(dark))
    result = DarkCurrent()(_ramp(to_xp, sci, meta), ref)
    index = [0, 1, 1, 1]
    np.testing.assert_allclose(to_numpy(result.ramp.data), sci - dark[index, :3], rtol=1e-6)
    later = DarkCurrent()(_ramp(to_xp, sci, meta), ref, integration_start=2)
    np.testing.assert_allclose(to_numpy(later.ramp.data), sci - dark[[1, 1, 1, 1], :3], rtol=1e-6)
    assert tuple(result.averaged_dark.shape) == (2, 3, 3, 4)


def test_average_dark_current(xp, to_xp):
    rng = np.random.default_rng(6)
    dark = _dark_frames(rng, 4, shape=(6, 6))
    meta = ExposureMeta(nints=1, ngroups=3, xstart=2, ystart=3)
    ramp = _ramp(to_xp, _science(rng, 1, 3, shape=(3, 4)), meta)
    plane = np.arange(36, dtype=np.float32).reshape(6, 6) / 100
    cases = [
        (DarkCurrent(), DarkRef(data=to_xp(dark)), np.zeros((3, 4))),
        (
            DarkCurrent(),
            DarkRef(data=to_xp(dark), average_dark_current=to_xp(np.asarray(0.25, np.float32))),
            np.full((3, 4), 0.25),
        ),
        (
            DarkCurrent(),
            DarkRef(data=to_xp(dark), average_dark_current=to_xp(plane)),
            plane[2:5, 1:5],
        ),
        (
            DarkCurrent(average_dark_current=0.5),
            DarkRef(data=to_xp(dark), average_dark_current=to_xp(plane)),
            np.full((3, 4), 0.5),
        ),
    ]
    for step, ref, expected in cases:
        result = step(ramp, ref)
        assert result.average_dark_current.dtype == xp.float32
        np.testing.assert_allclose(to_numpy(result.average_dark_current), expected, rtol=1e-6)
        np.testing.assert_allclose(
            to_numpy(result.ramp.data), to_numpy(ramp.data) - dark[:3, 2:5, 1:5], rtol=1e-6
        )


def test_nan_science_flagged(xp, to_xp):
    rng = np.random.default_rng(7)
    sci = _science(rng, 1, 3)
    sci[0, 1, 2, 2] = np.nan
    ramp = _ramp(to_xp, sci)
    ref = DarkRef(data=to_xp(_dark_frames(rng, 3)))
    flagged = DarkCurrent()(ramp, ref).ramp
    expected = np.zeros(sci.shape, np.uint8)
    expected[0, 1, 2, 2] = int(DQ.DO_NOT_USE)
    np.testing.assert_array_equal(to_numpy(flagged.groupdq), expected)
    assert np.isnan(to_numpy(flagged.data)[0, 1, 2, 2])
    quiet = DarkCurrent(flag_nan=False)(ramp, ref).ramp
    assert not np.any(to_numpy(quiet.groupdq))


def test_all_zero_frames(xp, to_xp):
    sci = np.zeros((1, 3, 2, 2), np.float32)
    result = DarkCurrent()(_ramp(to_xp, sci), DarkRef(data=to_xp(np.zeros((3, 2, 2), np.float32))))
    np.testing.assert_array_equal(to_numpy(result.ramp.data), sci)


def test_bad_input_errors(xp, to_xp):
    rng = np.random.default_rng(8)
    ramp = _ramp(to_xp, _science(rng, 1, 3))
    good = DarkRef(data=to_xp(_dark_frames(rng, 4)))
    with pytest.raises(TypeError, match="ramp: expected RampModel"):
        DarkCurrent()(to_numpy(ramp.data), good)
    with pytest.raises(TypeError, match="dark: expected DarkRef"):
        DarkCurrent()(ramp, to_numpy(good.data))
    with pytest.raises(ValueError, match="DarkRef"):
        DarkCurrent()(ramp, DarkRef(data=to_xp(_dark_frames(rng, 4, shape=(2, 4)))))
    with pytest.raises(ValueError, match="at least 2 frames"):
        DarkCurrent()(ramp, DarkRef(data=to_xp(_dark_frames(rng, 1))))
    odd = DarkRef(data=to_xp(_dark_frames(rng, 6)), meta=RefMeta(nframes=2))
    with pytest.raises(ValueError, match="dark.meta: expected a frame-level dark"):
        DarkCurrent()(ramp, odd)
    with pytest.raises(ValueError, match="integration_start"):
        DarkCurrent()(ramp, good, integration_start=0)
    with pytest.raises(ValueError, match="average_dark_current"):
        DarkCurrent(average_dark_current=-1.0)
    with pytest.raises(TypeError, match="average_dark_current"):
        DarkCurrent(average_dark_current="0.1")
    with pytest.raises(TypeError, match="flag_nan"):
        DarkCurrent(flag_nan=None)


def test_dark_read_like_science_used_directly(xp, to_xp):
    rng = np.random.default_rng(9)
    groups = _dark_frames(rng, 5)
    meta = ExposureMeta(nints=1, ngroups=4, nframes=4, groupgap=1)
    sci = _science(rng, 1, 4)
    ref = DarkRef(data=to_xp(groups), meta=RefMeta(nframes=4, groupgap=1))
    result = DarkCurrent()(_ramp(to_xp, sci, meta), ref)
    np.testing.assert_allclose(to_numpy(result.ramp.data), sci - groups[None, :4], rtol=1e-6)


def test_inputs_not_mutated():
    rng = np.random.default_rng(10)
    sci = _science(rng, 2, 3)
    sci[0, 0, 0, 0] = np.nan
    gdq = np.zeros(sci.shape, np.uint8)
    pdq = np.zeros((3, 4), np.uint32)
    dark = _dark_frames(rng, 8)
    dark[1, 1, 1] = np.nan
    ddq = np.full((3, 4), int(DQ.HOT), np.uint32)
    copies = [a.copy() for a in (sci, gdq, pdq, dark, ddq)]
    meta = ExposureMeta(nints=2, ngroups=3, nframes=2)
    DarkCurrent()(
        RampModel(data=sci, groupdq=gdq, pixeldq=pdq, meta=meta), DarkRef(data=dark, dq=ddq)
    )
    for before, after in zip(copies, (sci, gdq, pdq, dark, ddq), strict=True):
        np.testing.assert_array_equal(before, after)


def test_jax_compiles_once_per_configuration():
    rng = np.random.default_rng(11)
    meta = ExposureMeta(nints=1, ngroups=3, nframes=2, groupgap=1)
    ref = DarkRef(data=_dark_frames(rng, 12)).to_backend("jax")
    step = DarkCurrent()

    def call():
        return step(RampModel(data=_science(rng, 1, 3), meta=meta).to_backend("jax"), ref)

    call()
    before = dark_kernel.trace_count()
    out = call()
    call()
    assert dark_kernel.trace_count() == before
    assert out.ramp.backend == "jax"


def test_dark_result_is_a_pytree():
    import jax

    rng = np.random.default_rng(12)
    result = DarkCurrent()(RampModel(data=_science(rng, 1, 2)), DarkRef(data=_dark_frames(rng, 3)))
    leaves, treedef = jax.tree_util.tree_flatten(result)
    assert len(leaves) == 3 + 2  # ramp data, groupdq, pixeldq + the two arrays
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(back, DarkResult)
    np.testing.assert_array_equal(back.ramp.data, result.ramp.data)
    with pytest.raises(ValueError, match="average_dark_current"):
        result.replace(average_dark_current=np.zeros((2, 2), np.float32))
