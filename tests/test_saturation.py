"""Unit tests of the Saturation step on every backend (numpy, array_api_strict, jax)."""

from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stcal_models.algorithms.saturation import (
    Saturation,
    _saturation_kernel,
    read_pattern_constants,
)
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.models import ExposureMeta, RampModel, RefMeta, SaturationRef, SuperbiasRef

SAT = int(DQ.SATURATED)
DNU = int(DQ.DO_NOT_USE)
AD = int(DQ.AD_FLOOR)
NSC = int(DQ.NO_SAT_CHECK)
THR = 1000.0


def _ramp(to_xp, data, *, gdq=None, pdq=None, zeroframe=None, **meta):
    data = np.asarray(data, dtype=np.float32)
    nints, ngroups = data.shape[:2]
    return RampModel(
        data=to_xp(data),
        groupdq=None if gdq is None else to_xp(np.asarray(gdq, np.uint8)),
        pixeldq=None if pdq is None else to_xp(np.asarray(pdq, np.uint32)),
        zeroframe=None if zeroframe is None else to_xp(np.asarray(zeroframe, np.float32)),
        meta=ExposureMeta(nints=nints, ngroups=ngroups, **meta),
    )


def _ref(to_xp, shape, value=THR, dq=None, **meta):
    thr = np.full(shape, value, np.float32) if np.isscalar(value) else np.asarray(value, np.float32)
    dq = None if dq is None else to_xp(np.asarray(dq, np.uint32))
    return SaturationRef(data=to_xp(thr), dq=dq, meta=RefMeta(**meta))


def _flat(ngroups=5, ny=7, nx=7, value=100.0, nints=1):
    return np.full((nints, ngroups, ny, nx), value, np.float32)


# ---------------------------------------------------------------- thresholds
def test_saturated_from_first_crossing_to_end(xp, to_xp):
    data = _flat()
    data[0, 2, 3, 3] = THR  # equal to the threshold counts as saturated
    data[0, 3, 3, 3] = 50.0  # later groups stay flagged even if the value drops
    data[0, 3, 1, 1] = np.nextafter(np.float32(THR), np.float32(0))  # just below: not flagged
    out = Saturation(n_pix_grow_sat=0)(_ramp(to_xp, data), _ref(to_xp, (7, 7)))
    gdq = to_numpy(out.groupdq)
    assert gdq[0, :, 3, 3].tolist() == [0, 0, SAT, SAT, SAT]
    assert gdq[0, :, 1, 1].tolist() == [0] * 5
    assert np.count_nonzero(gdq) == 3
    assert out.backend == _ramp(to_xp, data).backend


def test_integrations_are_independent(xp, to_xp):
    data = _flat(nints=2)
    data[0, 1, 2, 2] = 2 * THR
    out = Saturation(n_pix_grow_sat=0)(_ramp(to_xp, data), _ref(to_xp, (7, 7)))
    gdq = to_numpy(out.groupdq)
    assert gdq[0, 1:, 2, 2].tolist() == [SAT] * 4
    assert not gdq[1].any()


def test_ad_floor_flags_only_that_group(xp, to_xp):
    data = _flat()
    data[0, 1, 0, 0] = 0.0
    data[0, 3, 6, 6] = -5.0
    out = Saturation()(_ramp(to_xp, data), _ref(to_xp, (7, 7)))
    gdq = to_numpy(out.groupdq)
    assert gdq[0, 1, 0, 0] == AD | DNU
    assert gdq[0, 3, 6, 6] == AD | DNU
    assert np.count_nonzero(gdq) == 2  # never grown, never carried forward


def test_all_zero_frames_are_all_ad_floor(xp, to_xp):
    data = np.zeros((2, 3, 4, 5), np.float32)
    zf = np.zeros((2, 4, 5), np.float32)
    out = Saturation()(_ramp(to_xp, data, zeroframe=zf), _ref(to_xp, (4, 5)))
    assert (to_numpy(out.groupdq) == AD | DNU).all()
    assert (to_numpy(out.zeroframe) == 0).all()
    assert (to_numpy(out.pixeldq) == 0).all()


def test_nan_and_no_sat_check_thresholds_never_saturate(xp, to_xp):
    ny, nx = 3, 4
    data = _flat(ngroups=2, ny=ny, nx=nx)
    data[0, 1, :, 0] = 65535.0  # at the A/D limit: not saturated
    data[0, 1, :, 1] = 65536.0  # above it: atod_limit + 1 is the replaced threshold
    thr = np.full((ny, nx), THR, np.float32)
    thr[0, :] = np.nan
    dq = np.zeros((ny, nx), np.uint32)
    dq[1, :] = NSC | int(DQ.DEAD)
    pdq = np.full((ny, nx), int(DQ.HOT), np.uint32)
    step = Saturation(n_pix_grow_sat=0)
    out = step(_ramp(to_xp, data, pdq=pdq), _ref(to_xp, (ny, nx), thr, dq=dq))
    gdq, pixeldq = to_numpy(out.groupdq), to_numpy(out.pixeldq)
    for row in (0, 1):
        assert gdq[0, 1, row].tolist() == [0, SAT, 0, 0]
    assert gdq[0, 1, 2].tolist() == [SAT, SAT, 0, 0]  # a normal threshold
    assert (pixeldq[0] == int(DQ.HOT) | NSC).all()  # NaN threshold -> NO_SAT_CHECK
    assert (pixeldq[1] == int(DQ.HOT) | NSC | int(DQ.DEAD)).all()  # reference DQ propagated
    assert (pixeldq[2] == int(DQ.HOT)).all()
    # a different A/D limit moves the replaced threshold
    out = Saturation(n_pix_grow_sat=0, atod_limit=70000)(
        _ramp(to_xp, data), _ref(to_xp, (ny, nx), thr, dq=dq)
    )
    assert not to_numpy(out.groupdq)[0, 1, :2].any()


def test_nan_science_values_are_do_not_use(xp, to_xp):
    data = _flat(ngroups=3)
    data[0, 1, 4, 4] = np.nan
    out = Saturation()(_ramp(to_xp, data), _ref(to_xp, (7, 7)))
    gdq = to_numpy(out.groupdq)
    assert gdq[0, :, 4, 4].tolist() == [0, DNU, 0]
    assert np.count_nonzero(gdq) == 1


# ---------------------------------------------------------------- charge migration
@pytest.mark.parametrize("n", [0, 1, 2])
def test_charge_migration_box(xp, to_xp, n):
    data = _flat(ngroups=4, ny=9, nx=9)
    data[0, 2:, 4, 4] = 2 * THR
    data[0, 1, 0, 8] = 2 * THR  # a corner: the box is clipped at the edges
    out = Saturation(n_pix_grow_sat=n)(_ramp(to_xp, data), _ref(to_xp, (9, 9)))
    gdq = to_numpy(out.groupdq)[0]
    centre = np.zeros((9, 9), bool)
    centre[4 - n : 5 + n, 4 - n : 5 + n] = True
    corner = np.zeros((9, 9), bool)
    corner[: 1 + n, 8 - n :] = True
    assert not gdq[0].any()
    assert ((gdq[1] == SAT) == corner).all()
    for g in (2, 3):
        assert ((gdq[g] == SAT) == (centre | corner)).all()


def test_existing_saturated_flags_grow_in_their_group_only(xp, to_xp):
    data = _flat(ngroups=3)
    gdq_in = np.zeros(data.shape, np.uint8)
    gdq_in[0, 1, 3, 3] = SAT
    gdq_in[0, 1, 0, 0] = int(DQ.JUMP_DET) | DNU  # other flags are kept, not grown
    out = Saturation()(_ramp(to_xp, data, gdq=gdq_in), _ref(to_xp, (7, 7)))
    gdq = to_numpy(out.groupdq)
    assert (gdq[0, 1, 2:5, 2:5] == SAT).all()
    assert gdq[0, 1, 0, 0] == int(DQ.JUMP_DET) | DNU
    assert np.count_nonzero(gdq[0, 1]) == 10
    assert not gdq[0, 0].any() and not gdq[0, 2].any()


def test_one_row_frame(xp, to_xp):
    data = _flat(ngroups=3, ny=1, nx=6)
    data[0, 1:, 0, 2] = 2 * THR
    out = Saturation(n_pix_grow_sat=2)(_ramp(to_xp, data), _ref(to_xp, (1, 6)))
    assert to_numpy(out.groupdq)[0, 2, 0].tolist() == [SAT] * 5 + [0]


# ---------------------------------------------------------------- zero frame
def test_zeroframe_saturated_and_floor_values_are_zeroed(xp, to_xp):
    data = _flat(ngroups=2, nints=2)
    zf = np.full((2, 7, 7), 50.0, np.float32)
    zf[0, 1, 1] = 3 * THR  # saturated: zeroed with its 3x3 box
    zf[0, 5, 5] = -2.0  # A/D floor: zeroed alone
    zf[1, 6, 0] = np.nan  # NaN stays NaN
    ramp = _ramp(to_xp, data, zeroframe=zf)
    zf_before = zf.copy()
    out = Saturation()(ramp, _ref(to_xp, (7, 7)))
    got = to_numpy(out.zeroframe)
    expected = zf_before.copy()
    expected[0, 0:3, 0:3] = 0.0
    expected[0, 5, 5] = 0.0
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(to_numpy(ramp.zeroframe), zf_before)  # input untouched
    assert not to_numpy(out.groupdq).any()  # ZEROFRAME does not flag groups


def test_no_zeroframe_stays_none(xp, to_xp):
    out = Saturation()(_ramp(to_xp, _flat()), _ref(to_xp, (7, 7)))
    assert out.zeroframe is None


# ---------------------------------------------------------------- read pattern
# Groups of two frames: [[1, 2], [3, 4], [5, 6], [7, 8]] (nframes=2).
# Group-2 rule: (g1 - b) / 1.5 * 6 + b < thr ; g2 - g1 > (thr - g1) / 2 ; group 3 saturated.
def _group2_ramp(g1, g2, g3=1200.0, g4=1300.0):
    data = _flat(ngroups=4, ny=3, nx=3)
    data[0, :, 1, 1] = [g1, g2, g3, g4]
    return data


@pytest.mark.parametrize(
    ("values", "flagged"),
    [
        ((100.0, 600.0), True),  # all three criteria hold
        ((260.0, 700.0), False),  # 1. the first-group rate predicts saturation by group 3
        ((100.0, 540.0), False),  # 2. the jump is too small
        ((100.0, 600.0, 999.0, 999.0), False),  # 3. group 3 is not saturated
    ],
)
def test_group2_rule_criteria(xp, to_xp, values, flagged):
    ramp = _ramp(to_xp, _group2_ramp(*values), nframes=2)
    out = Saturation(n_pix_grow_sat=0)(ramp, _ref(to_xp, (3, 3)))
    gdq = to_numpy(out.groupdq)[0, :, 1, 1]
    assert gdq[1] == (DNU if flagged else 0)
    assert gdq[0] == 0
    # without the read pattern nothing but threshold saturation is flagged
    plain = Saturation(n_pix_grow_sat=0, use_read_pattern=False)(ramp, _ref(to_xp, (3, 3)))
    assert to_numpy(plain.groupdq)[0, 1, 1, 1] == 0


def test_group2_rule_uses_the_superbias(xp, to_xp):
    ramp = _ramp(to_xp, _group2_ramp(300.0, 860.0), nframes=2)
    ref = _ref(to_xp, (3, 3))
    # 300 * 4 >= 1000: not flagged without a bias; (300 - 200) * 4 + 200 < 1000 with one
    no_bias = to_numpy(Saturation(n_pix_grow_sat=0)(ramp, ref).groupdq)[0, 1, 1, 1]
    bias = to_xp(np.full((3, 3), 200.0, np.float32))
    with_bias = to_numpy(Saturation(n_pix_grow_sat=0)(ramp, ref, bias=bias).groupdq)[0, 1, 1, 1]
    assert (no_bias, with_bias) == (0, DNU)


def test_saturated_within_group_rule(xp, to_xp):
    # a frame-averaged group above thr * mean(reads) / last(read) = 1000 * 3.5 / 4 = 875,
    # followed by a saturated group, is DO_NOT_USE; its neighbours are flagged too.
    data = _flat(ngroups=4)
    data[0, :, 3, 3] = [800.0, 880.0, 1200.0, 1300.0]  # group 2 flagged (and grown)
    data[0, :, 0, 6] = [800.0, 870.0, 1200.0, 1300.0]  # 870 < 875: not flagged
    data[0, :, 6, 0] = [800.0, 880.0, 900.0, 950.0]  # next group not saturated
    ramp = _ramp(to_xp, data, nframes=2)
    gdq = to_numpy(Saturation()(ramp, _ref(to_xp, (7, 7))).groupdq)[0]
    assert gdq[1, 3, 3] == DNU
    assert (gdq[1, 2:5, 2:5] == DNU).all()
    assert gdq[1, 0, 6] == 0 and gdq[1, 1, 5] == 0
    assert not gdq[:, 5:, :2].any()
    assert (gdq[2:, 2:5, 2:5] == SAT).all()


def test_single_read_groups_match_no_read_pattern(xp, to_xp):
    rng = np.random.default_rng(5)
    data = np.cumsum(rng.uniform(0, 500, (2, 5, 8, 8)), axis=1).astype(np.float32)
    ramp = _ramp(to_xp, data, nframes=1, groupgap=2)
    ref = _ref(to_xp, (8, 8), rng.uniform(800, 1500, (8, 8)))
    a = Saturation()(ramp, ref)
    b = Saturation(use_read_pattern=False)(ramp, ref)
    np.testing.assert_array_equal(to_numpy(a.groupdq), to_numpy(b.groupdq))
    assert to_numpy(a.groupdq).any()


# ---------------------------------------------------------------- purity
def test_inputs_are_not_modified(xp, to_xp):
    rng = np.random.default_rng(3)
    data = np.cumsum(rng.uniform(-50, 600, (1, 4, 6, 6)), axis=1).astype(np.float32)
    gdq = rng.choice([0, SAT, DNU], data.shape).astype(np.uint8)
    pdq = rng.choice([0, int(DQ.HOT)], (6, 6)).astype(np.uint32)
    zf = rng.uniform(-10, 2000, (1, 6, 6)).astype(np.float32)
    ramp = _ramp(to_xp, data, gdq=gdq, pdq=pdq, zeroframe=zf, nframes=3)
    copies = {k: to_numpy(v).copy() for k, v in ramp.arrays().items()}
    ref = _ref(to_xp, (6, 6), dq=np.full((6, 6), NSC, np.uint32) * (rng.random((6, 6)) < 0.3))
    out = Saturation()(ramp, ref)
    for k, v in ramp.arrays().items():
        np.testing.assert_array_equal(to_numpy(v), copies[k], err_msg=k)
    assert not np.array_equal(to_numpy(out.groupdq), copies["groupdq"])


# ---------------------------------------------------------------- references and errors
def test_subarray_reference_is_cut(xp, to_xp):
    full = np.full((10, 12), THR, np.float32)
    full[5, 7] = 10.0  # the science pixel (1, 2) of a subarray at xstart=6, ystart=5
    ref = SaturationRef(data=to_xp(full))
    data = _flat(ngroups=2, ny=3, nx=4)
    ramp = _ramp(to_xp, data, xstart=6, ystart=5)
    gdq = to_numpy(Saturation(n_pix_grow_sat=0)(ramp, ref).groupdq)
    assert np.argwhere(gdq[0, 0]).tolist() == [[1, 2]]


def test_reference_not_covering_the_frame_is_an_error(xp, to_xp):
    ramp = _ramp(to_xp, _flat())
    with pytest.raises(ValueError, match="saturation_ref"):
        Saturation()(ramp, _ref(to_xp, (5, 7)))
    with pytest.raises(ValueError, match="saturation_ref"):
        Saturation()(_ramp(to_xp, _flat(), xstart=4), _ref(to_xp, (7, 9)))


@pytest.mark.parametrize(
    ("bias", "error", "match"),
    [
        (np.zeros((6, 7), np.float32), ValueError, r"bias: expected shape \(7, 7\)"),
        (np.zeros((7, 7), bool), TypeError, "bias: expected a real-valued array"),
        ([[0.0] * 7] * 7, TypeError, "bias: expected a 2-D array"),
    ],
)
def test_bad_bias(xp, to_xp, bias, error, match):
    if isinstance(bias, np.ndarray):
        bias = to_xp(bias)
    with pytest.raises(error, match=match):
        Saturation()(_ramp(to_xp, _flat()), _ref(to_xp, (7, 7)), bias=bias)


def test_bias_from_another_backend_and_dtype(xp, to_xp):
    ramp = _ramp(to_xp, _group2_ramp(300.0, 860.0), nframes=2)
    bias = np.full((3, 3), 200, np.int32)  # NumPy integer bias, converted on the way in
    out = Saturation(n_pix_grow_sat=0)(ramp, _ref(to_xp, (3, 3)), bias=bias)
    assert to_numpy(out.groupdq)[0, 1, 1, 1] == DNU


def test_superbias_reference_is_cut_to_the_subarray(xp, to_xp):
    ramp = _ramp(to_xp, _group2_ramp(300.0, 860.0), nframes=2, xstart=3, ystart=2)
    full = np.zeros((6, 8), np.float32)
    full[1:4, 2:5] = 200.0  # the 3x3 science frame at xstart=3, ystart=2
    ref = _ref(to_xp, (3, 3), xstart=3, ystart=2)
    out = Saturation(n_pix_grow_sat=0)(ramp, ref, bias=SuperbiasRef(data=to_xp(full)))
    assert to_numpy(out.groupdq)[0, 1, 1, 1] == DNU
    with pytest.raises(ValueError, match="bias: SuperbiasRef"):
        Saturation()(ramp, ref, bias=SuperbiasRef(data=to_xp(full[:3, :4])))


def test_wrong_argument_types(xp, to_xp):
    ramp = _ramp(to_xp, _flat())
    ref = _ref(to_xp, (7, 7))
    with pytest.raises(TypeError, match="ramp: expected RampModel"):
        Saturation()(to_numpy(ramp.data), ref)
    with pytest.raises(TypeError, match="saturation_ref: expected SaturationRef"):
        Saturation()(ramp, to_numpy(ref.data))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_pix_grow_sat": -1}, ValueError, "n_pix_grow_sat: expected >= 0"),
        ({"n_pix_grow_sat": 1.0}, TypeError, "n_pix_grow_sat: expected int"),
        ({"n_pix_grow_sat": True}, TypeError, "n_pix_grow_sat: expected int"),
        ({"atod_limit": float("nan")}, ValueError, "atod_limit: expected a finite number"),
        ({"atod_limit": -1}, ValueError, "atod_limit: expected >= 0"),
        ({"atod_limit": "65535"}, TypeError, "atod_limit: expected a number"),
        ({"use_read_pattern": 1}, TypeError, "use_read_pattern: expected bool"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        Saturation(**kwargs)


def test_defaults_and_repr():
    step = Saturation()
    assert (step.n_pix_grow_sat, step.atod_limit, step.use_read_pattern) == (1, 65535, True)
    assert repr(Saturation(n_pix_grow_sat=2)) == "Saturation(n_pix_grow_sat=2)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.n_pix_grow_sat = 3


def test_read_pattern_constants():
    dilution, group2 = read_pattern_constants([[1, 2], [3, 4], [5, 6]], 3)
    assert dilution == (0.75, 0.875)
    assert group2 == (1.5, 6.0, 2)
    assert read_pattern_constants([[1], [3], [5]], 3) == (None, None)
    assert read_pattern_constants([[1, 2], [3, 4]], 2)[1] is None
    with pytest.raises(ValueError, match="read_pattern: expected 4 groups"):
        read_pattern_constants([[1], [2], [3]], 4)
    with pytest.raises(ValueError, match="group 1 has no reads"):
        read_pattern_constants([[1], []], 2)


def test_read_pattern_length_is_checked_on_the_model(to_xp):
    with pytest.raises(ValueError, match="read_pattern"):
        ExposureMeta(nints=1, ngroups=3, read_pattern=[[1], [2]])
    # a meta object that escaped validation is still caught by the step's helper
    fake = types.SimpleNamespace(resultant_reads=((1,), (2,)))
    with pytest.raises(ValueError, match="expected 3 groups"):
        read_pattern_constants(fake.resultant_reads, 3)


# ---------------------------------------------------------------- jit
def test_jax_compiles_once_per_shape():
    rng = np.random.default_rng(11)
    step = Saturation()
    ref = SaturationRef(data=jnp.full((5, 11), THR, jnp.float32))
    before = _saturation_kernel.trace_count()
    for _ in range(3):
        data = rng.uniform(0, 2 * THR, (1, 3, 5, 11)).astype(np.float32)
        out = step(RampModel(data=jnp.asarray(data)), ref)
        jax.block_until_ready(out.groupdq)
    assert _saturation_kernel.trace_count() - before == 1
    data = rng.uniform(0, 2 * THR, (2, 3, 5, 11)).astype(np.float32)
    step(RampModel(data=jnp.asarray(data)), ref)
    assert _saturation_kernel.trace_count() - before == 2
    assert isinstance(out.groupdq, jax.Array)
