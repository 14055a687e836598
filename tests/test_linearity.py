"""Linearity step: classic and read-level corrections, DQ handling and bad input, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from stcal_models.algorithms.linearity import Linearity, apply_polynomial, linearity_kernel
from stcal_models.backends import to_numpy
from stcal_models.dqflags import DQ
from stcal_models.models import ExposureMeta, LinearityRef, RampModel, RefMeta, SaturationRef

SAT = int(DQ.SATURATED)
NLC = int(DQ.NO_LIN_CORR)
A = 2e-6  # strength of the quadratic non-linearity used by the truth tests


def _forward(a):
    """Inverse-linearity polynomial (linear DN -> raw DN): r = l - a l^2."""
    return [0.0, 1.0, -a]


def _backward(a, order=7):
    """Series inverse of ``l - a l^2`` (Catalan numbers): l = sum C_{k-1} a^{k-1} r^k."""
    catalan = [1, 1, 2, 5, 14, 42, 132, 429]
    return [0.0] + [catalan[k - 1] * a ** (k - 1) for k in range(1, order + 1)]


def _coeffs(values, shape):
    return np.stack([np.full(shape, v, np.float32) for v in values])


def _ramp(to_xp, data, groupdq=None, pixeldq=None, meta=None, zeroframe=None):
    return RampModel(
        data=to_xp(np.asarray(data, np.float32)),
        groupdq=None if groupdq is None else to_xp(np.asarray(groupdq, np.uint8)),
        pixeldq=None if pixeldq is None else to_xp(np.asarray(pixeldq, np.uint32)),
        zeroframe=None if zeroframe is None else to_xp(np.asarray(zeroframe, np.float32)),
        meta=meta,
    )


def _linear_reads(rng, nreads, shape, bias=200.0):
    rate = rng.uniform(50.0, 900.0, shape)
    return bias + rate * np.arange(1, nreads + 1)[:, None, None]


def _resultants(reads, pattern):
    return np.stack([reads[np.asarray(p) - 1].mean(axis=0) for p in pattern])


# ----------------------------------------------------------------------------- classic
def test_classic_polynomial_and_saturation(xp, to_xp):
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 30000, (2, 4, 5, 6)).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 2:, 1, 1] = SAT
    gdq[1, 3, 2, 2] = SAT | int(DQ.JUMP_DET)
    c = [3.0, 1.01, 2e-6, 1e-11]
    out = Linearity()(_ramp(to_xp, data, gdq), LinearityRef(coeffs=to_xp(_coeffs(c, (5, 6)))))
    got = to_numpy(out.data)
    d = data.astype(np.float64)
    expected = c[0] + c[1] * d + c[2] * d**2 + c[3] * d**3
    expected = np.where(gdq & SAT, d, expected)
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    assert got[0, 2, 1, 1] == data[0, 2, 1, 1]
    assert got[0, 1, 1, 1] != data[0, 1, 1, 1]
    assert out.data.dtype == xp.float32
    np.testing.assert_array_equal(to_numpy(out.groupdq), gdq)
    assert not np.any(to_numpy(out.pixeldq))


def test_bad_coefficients_are_flagged_and_skipped(xp, to_xp):
    data = np.full((1, 3, 3, 4), 1000.0, np.float32)
    coeffs = _coeffs([0.0, 1.0, 1e-4], (3, 4))
    coeffs[2, 0, 1] = np.nan
    coeffs[1, 0, 2] = 0.0
    ref_dq = np.zeros((3, 4), np.uint32)
    ref_dq[0, 3] = NLC
    ref_dq[1, 0] = int(DQ.HOT)
    ref_dq[1, 1] = int(DQ.DO_NOT_USE)
    pdq = np.zeros((3, 4), np.uint32)
    pdq[2, 3] = NLC  # science NO_LIN_CORR alone does not disable the correction (as stcal)
    ref = LinearityRef(coeffs=to_xp(coeffs), dq=to_xp(ref_dq))
    out = Linearity()(_ramp(to_xp, data, pixeldq=pdq), ref)
    got = to_numpy(out.data)
    for x in (1, 2, 3):
        np.testing.assert_array_equal(got[0, :, 0, x], 1000.0)
    np.testing.assert_allclose(got[0, :, 0, 0], 1100.0, rtol=1e-6)
    np.testing.assert_allclose(got[0, :, 1:, :], 1100.0, rtol=1e-6)
    new_pdq = to_numpy(out.pixeldq)
    expected = ref_dq.copy() | pdq
    expected[0, 1] |= NLC
    expected[0, 2] |= NLC
    np.testing.assert_array_equal(new_pdq, expected)


def test_zeroframe_corrected_where_nonzero(xp, to_xp):
    data = np.full((2, 2, 2, 2), 500.0, np.float32)
    zf = np.full((2, 2, 2), 400.0, np.float32)
    zf[1, 0, 1] = 0.0
    ref = LinearityRef(coeffs=to_xp(_coeffs([1.0, 1.0, 1e-3], (2, 2))))
    out = Linearity()(_ramp(to_xp, data, zeroframe=zf), ref)
    got = to_numpy(out.zeroframe)
    assert got[1, 0, 1] == 0.0
    np.testing.assert_allclose(got[0], 1.0 + 400.0 + 160.0, rtol=1e-6)


# ----------------------------------------------------------------------------- read level
def test_read_level_recovers_linear_truth(xp, to_xp):
    rng = np.random.default_rng(2)
    pattern = ((1,), (2, 3), (4, 5, 6, 7), (8, 9, 10, 11, 12, 13), (14, 15, 16, 17))
    shape = (6, 7)
    linear = _linear_reads(rng, 17, shape)
    raw = linear - A * linear**2
    res = _resultants(raw, pattern)[None]
    truth = _resultants(linear, pattern)[None]
    meta = ExposureMeta(nints=1, ngroups=len(pattern), read_pattern=pattern)
    ramp = _ramp(to_xp, res, meta=meta)
    lin = LinearityRef(coeffs=to_xp(_coeffs(_backward(A), shape)))
    ilin = LinearityRef(coeffs=to_xp(_coeffs(_forward(A), shape)))
    classic = to_numpy(Linearity()(ramp, lin).data)
    read_level = to_numpy(Linearity()(ramp, lin, inverse=ilin).data)
    classic_err = np.abs(classic - truth).max()
    read_err = np.abs(read_level - truth).max()
    assert classic_err > 1.0  # averaging reads biases the classic correction
    assert read_err < 0.05 * classic_err
    assert read_err < 0.1


def test_read_level_of_single_reads_is_classic(xp, to_xp):
    rng = np.random.default_rng(3)
    data = np.cumsum(rng.uniform(100, 3000, (2, 5, 3, 3)), axis=1).astype(np.float32)
    ramp = _ramp(to_xp, data)  # nframes=1: every resultant is one read
    lin = LinearityRef(coeffs=to_xp(_coeffs(_backward(A, 4), (3, 3))))
    ilin = LinearityRef(coeffs=to_xp(_coeffs(_forward(A), (3, 3))))
    classic = to_numpy(Linearity()(ramp, lin).data)
    read_level = to_numpy(Linearity()(ramp, lin, inverse=ilin).data)
    np.testing.assert_allclose(read_level, classic, rtol=2e-6)


def test_read_level_single_resultant_falls_back_to_classic(xp, to_xp):
    data = np.full((1, 1, 2, 2), 5000.0, np.float32)
    meta = ExposureMeta(nints=1, ngroups=1, nframes=4)
    ramp = _ramp(to_xp, data, meta=meta)
    lin = LinearityRef(coeffs=to_xp(_coeffs(_backward(A, 4), (2, 2))))
    ilin = LinearityRef(coeffs=to_xp(_coeffs(_forward(A), (2, 2))))
    got = to_numpy(Linearity()(ramp, lin, inverse=ilin).data)
    np.testing.assert_array_equal(got, to_numpy(Linearity()(ramp, lin).data))
    assert np.all(got > 5000.0)


def test_read_level_uses_meta_pattern_and_explicit_pattern(xp, to_xp):
    rng = np.random.default_rng(4)
    meta = ExposureMeta(nints=1, ngroups=3, nframes=4, groupgap=1)
    linear = _linear_reads(rng, 15, (2, 2))
    raw = linear - A * linear**2
    pattern = meta.resultant_reads
    res = _resultants(raw, pattern)[None]
    lin = LinearityRef(coeffs=to_xp(_coeffs(_backward(A), (2, 2))))
    ilin = LinearityRef(coeffs=to_xp(_coeffs(_forward(A), (2, 2))))
    from_meta = Linearity()(_ramp(to_xp, res, meta=meta), lin, inverse=ilin)
    explicit = Linearity()(
        _ramp(to_xp, res, meta=ExposureMeta(nints=1, ngroups=3)),
        lin,
        inverse=ilin,
        read_pattern=[list(p) for p in pattern],
    )
    np.testing.assert_array_equal(to_numpy(from_meta.data), to_numpy(explicit.data))
    np.testing.assert_allclose(
        to_numpy(from_meta.data), _resultants(linear, pattern)[None], atol=0.05
    )


def test_saturation_cap_and_additional_correction(xp, to_xp):
    # identity polynomials: the rate is 100 DN/read, reads of resultant 1 are 200..500
    pattern = ((1,), (2, 3, 4, 5))
    meta = ExposureMeta(nints=1, ngroups=2, read_pattern=pattern)
    ramp = _ramp(to_xp, np.array([100.0, 350.0], np.float32).reshape(1, 2, 1, 1), meta=meta)
    ident = LinearityRef(coeffs=to_xp(_coeffs([0.0, 1.0], (1, 1))))
    sat = SaturationRef(data=to_xp(np.full((1, 1), 300.0, np.float32)))
    capped = to_numpy(Linearity()(ramp, ident, inverse=ident, saturation=sat).data)
    np.testing.assert_allclose(capped.ravel(), [100.0, (200 + 300 + 360 + 360) / 4], rtol=1e-6)
    factor = to_numpy(
        Linearity(saturation_cap=1.0)(ramp, ident, inverse=ident, saturation=sat).data
    )
    np.testing.assert_allclose(factor.ravel(), [100.0, 275.0], rtol=1e-6)
    no_check = SaturationRef(
        data=to_xp(np.full((1, 1), 300.0, np.float32)),
        dq=to_xp(np.full((1, 1), int(DQ.NO_SAT_CHECK), np.uint32)),
    )
    free = to_numpy(Linearity()(ramp, ident, inverse=ident, saturation=no_check).data)
    np.testing.assert_allclose(free.ravel(), [100.0, 350.0], rtol=1e-6)
    shifted = to_numpy(
        Linearity(additional_correction=lambda n: n * 0.0 + 7.0)(ramp, ident, inverse=ident).data
    )
    np.testing.assert_allclose(shifted.ravel(), [107.0, 357.0], rtol=1e-6)


def test_inverse_bad_coefficients_flagged(xp, to_xp):
    data = np.cumsum(np.full((1, 3, 2, 2), 1000.0, np.float32), axis=1)
    meta = ExposureMeta(nints=1, ngroups=3, nframes=2)
    icoeffs = _coeffs(_forward(A), (2, 2))
    icoeffs[2, 0, 0] = np.nan
    icoeffs[1, 1, 1] = 0.0
    out = Linearity()(
        _ramp(to_xp, data, meta=meta),
        LinearityRef(coeffs=to_xp(_coeffs(_backward(A), (2, 2)))),
        inverse=LinearityRef(coeffs=to_xp(icoeffs)),
    )
    pdq = to_numpy(out.pixeldq)
    np.testing.assert_array_equal(pdq, [[NLC, 0], [0, NLC]])
    assert np.all(np.isfinite(to_numpy(out.data)))


def test_read_level_saturated_groups_untouched(xp, to_xp):
    rng = np.random.default_rng(5)
    meta = ExposureMeta(nints=1, ngroups=4, nframes=3)
    data = np.cumsum(rng.uniform(1000, 5000, (1, 4, 3, 3)), axis=1).astype(np.float32)
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 2:, 0, 0] = SAT
    gdq[0, :, 1, 1] = SAT
    gdq[0, 1:, 2, 2] = SAT
    out = Linearity()(
        _ramp(to_xp, data, gdq, meta=meta),
        LinearityRef(coeffs=to_xp(_coeffs(_backward(A), (3, 3)))),
        inverse=LinearityRef(coeffs=to_xp(_coeffs(_forward(A), (3, 3)))),
    )
    got = to_numpy(out.data)
    sat = (gdq & SAT) != 0
    np.testing.assert_array_equal(got[sat], data[sat])
    assert np.all(got[~sat] > data[~sat])
    assert np.all(np.isfinite(got))


# ----------------------------------------------------------------------------- bad input
def test_nan_science_values_flagged(xp, to_xp):
    data = np.cumsum(np.full((1, 4, 2, 2), 800.0, np.float32), axis=1)
    data[0, 2, 0, 0] = np.nan
    data[0, 0, 1, 1] = np.nan
    meta = ExposureMeta(nints=1, ngroups=4, nframes=2)
    ramp = _ramp(to_xp, data, meta=meta)
    lin = LinearityRef(coeffs=to_xp(_coeffs(_backward(A), (2, 2))))
    ilin = LinearityRef(coeffs=to_xp(_coeffs(_forward(A), (2, 2))))
    for kwargs in ({}, {"inverse": ilin}):
        out = Linearity()(ramp, lin, **kwargs)
        got = to_numpy(out.data)
        nan = np.isnan(data)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(to_numpy(out.groupdq), np.where(nan, 1, 0))
        quiet = Linearity(flag_nan=False)(ramp, lin, **kwargs)
        assert not np.any(to_numpy(quiet.groupdq))


def test_all_zero_frames(xp, to_xp):
    data = np.zeros((1, 3, 2, 2), np.float32)
    meta = ExposureMeta(nints=1, ngroups=3, nframes=2)
    lin = LinearityRef(coeffs=to_xp(_coeffs([4.0, 1.0, 1e-5], (2, 2))))
    ilin = LinearityRef(coeffs=to_xp(_coeffs([-4.0, 1.0, -1e-5], (2, 2))))
    for kwargs in ({}, {"inverse": ilin}):
        got = to_numpy(Linearity()(_ramp(to_xp, data, meta=meta), lin, **kwargs).data)
        np.testing.assert_allclose(got, 4.0, rtol=1e-6)


def test_subarray_reference_is_cut(xp, to_xp):
    full = _coeffs([0.0, 1.0, 0.0], (8, 8))
    full[0] = np.arange(64, dtype=np.float32).reshape(8, 8)
    meta = ExposureMeta(nints=1, ngroups=2, xstart=3, ystart=2)
    out = Linearity()(
        _ramp(to_xp, np.zeros((1, 2, 4, 4)), meta=meta), LinearityRef(coeffs=to_xp(full))
    )
    np.testing.assert_array_equal(to_numpy(out.data)[0, 0], full[0, 1:5, 2:6])


def test_reference_of_wrong_shape_raises(xp, to_xp):
    ramp = _ramp(to_xp, np.zeros((1, 2, 4, 4)))
    small = LinearityRef(coeffs=to_xp(_coeffs([0.0, 1.0], (3, 4))))
    with pytest.raises(ValueError, match="LinearityRef"):
        Linearity()(ramp, small)
    offset = LinearityRef(coeffs=to_xp(_coeffs([0.0, 1.0], (4, 4))), meta=RefMeta(xstart=2))
    with pytest.raises(ValueError, match="xstart"):
        Linearity()(ramp, offset)
    good = LinearityRef(coeffs=to_xp(_coeffs([0.0, 1.0], (4, 4))))
    with pytest.raises(ValueError, match="SaturationRef"):
        Linearity()(
            ramp,
            good,
            inverse=good,
            saturation=SaturationRef(data=to_xp(np.ones((2, 2), np.float32))),
        )


def test_read_pattern_errors(xp, to_xp):
    ramp = _ramp(to_xp, np.zeros((1, 3, 2, 2)))
    ref = LinearityRef(coeffs=to_xp(_coeffs([0.0, 1.0], (2, 2))))
    with pytest.raises(ValueError, match="read_pattern: expected 3 resultants"):
        Linearity()(ramp, ref, inverse=ref, read_pattern=[[1], [2]])
    with pytest.raises(ValueError, match="read_pattern"):
        Linearity()(ramp, ref, inverse=ref, read_pattern=[[1], [3], [2]])
    with pytest.raises(TypeError, match="read_pattern"):
        Linearity()(ramp, ref, inverse=ref, read_pattern=[1, 2, 3])
    with pytest.raises(ValueError, match="read_pattern: expected 3"):
        Linearity()(ramp, ref, read_pattern=[[1, 2]])


def test_argument_errors(to_xp):
    ramp = _ramp(to_xp, np.zeros((1, 2, 2, 2)))
    ref = LinearityRef(coeffs=to_xp(_coeffs([0.0, 1.0], (2, 2))))
    sat = SaturationRef(data=to_xp(np.ones((2, 2), np.float32)))
    with pytest.raises(TypeError, match="ramp: expected RampModel"):
        Linearity()(np.zeros((1, 2, 2, 2)), ref)
    with pytest.raises(TypeError, match="linearity: expected LinearityRef"):
        Linearity()(ramp, sat)
    with pytest.raises(TypeError, match="inverse: expected LinearityRef"):
        Linearity()(ramp, ref, inverse=sat)
    with pytest.raises(ValueError, match="saturation"):
        Linearity()(ramp, ref, saturation=sat)
    with pytest.raises(ValueError, match="saturation_cap"):
        Linearity(saturation_cap=0.0)
    with pytest.raises(TypeError, match="saturation_cap"):
        Linearity(saturation_cap="1.2")
    with pytest.raises(TypeError, match="additional_correction"):
        Linearity(additional_correction=3)
    with pytest.raises(TypeError, match="flag_nan"):
        Linearity(flag_nan=1)


def test_inputs_not_mutated():
    rng = np.random.default_rng(6)
    data = np.cumsum(rng.uniform(100, 900, (1, 3, 3, 3)), axis=1).astype(np.float32)
    data[0, 1, 0, 0] = np.nan
    gdq = np.zeros(data.shape, np.uint8)
    gdq[0, 2, 1, 1] = SAT
    pdq = np.zeros((3, 3), np.uint32)
    coeffs = _coeffs(_backward(A), (3, 3))
    coeffs[2, 2, 2] = np.nan
    icoeffs = _coeffs(_forward(A), (3, 3))
    ref_dq = np.full((3, 3), int(DQ.HOT), np.uint32)
    zf = data[:, 0].copy()
    copies = [a.copy() for a in (data, gdq, pdq, coeffs, icoeffs, ref_dq, zf)]
    meta = ExposureMeta(nints=1, ngroups=3, nframes=2)
    ramp = RampModel(data=data, groupdq=gdq, pixeldq=pdq, zeroframe=zf, meta=meta)
    Linearity()(ramp, LinearityRef(coeffs=coeffs, dq=ref_dq), inverse=LinearityRef(coeffs=icoeffs))
    for before, after in zip(copies, (data, gdq, pdq, coeffs, icoeffs, ref_dq, zf), strict=True):
        np.testing.assert_array_equal(before, after)


def test_jax_compiles_once_per_configuration():
    rng = np.random.default_rng(7)
    meta = ExposureMeta(nints=1, ngroups=3, nframes=2)
    lin = LinearityRef(coeffs=_coeffs(_backward(A), (4, 4))).to_backend("jax")
    ilin = LinearityRef(coeffs=_coeffs(_forward(A), (4, 4))).to_backend("jax")
    step = Linearity()

    def call(seed_offset):
        data = np.cumsum(rng.uniform(10, 90, (1, 3, 4, 4)), axis=1).astype(np.float32)
        return step(
            RampModel(data=data + seed_offset, meta=meta).to_backend("jax"), lin, inverse=ilin
        )

    call(0)
    before = linearity_kernel.trace_count()
    out = call(1)
    call(2)
    assert linearity_kernel.trace_count() == before
    assert out.backend == "jax"


def test_apply_polynomial_horner(xp, to_xp):
    x = to_xp(np.array([[[0.0, 1.0], [2.0, -3.0]]], np.float32))
    c = to_xp(_coeffs([1.0, -2.0, 0.5, 0.25], (2, 2)))
    got = to_numpy(apply_polynomial(c, x))
    v = np.array([[[0.0, 1.0], [2.0, -3.0]]])
    np.testing.assert_allclose(got, 1 - 2 * v + 0.5 * v**2 + 0.25 * v**3, rtol=1e-6)
