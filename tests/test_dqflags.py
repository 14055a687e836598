import numpy as np
import pytest

from stcal_models.dqflags import (
    DQ,
    GROUP_FLAGS,
    as_dict,
    build_mask,
    dq_flag_counts,
    flag_names,
    flags_from_names,
)


def test_jwst_bit_values():
    assert DQ.DO_NOT_USE == 1
    assert DQ.SATURATED == 2
    assert DQ.JUMP_DET == 4
    assert DQ.DROPOUT == 8
    assert DQ.AD_FLOOR == 64
    assert DQ.CHARGELOSS == 128
    assert DQ.NO_GAIN_VALUE == 2**19
    assert DQ.NO_LIN_CORR == 2**20
    assert DQ.NO_SAT_CHECK == 2**21
    assert DQ.REFERENCE_PIXEL == 2**31
    assert all(int(f) < 256 for f in GROUP_FLAGS)
    assert as_dict()["JUMP_DET"] == 4


def test_names_round_trip():
    value = DQ.JUMP_DET | DQ.SATURATED | DQ.REFERENCE_PIXEL
    names = flag_names(value)
    assert names == ["SATURATED", "JUMP_DET", "REFERENCE_PIXEL"]
    assert flags_from_names(names) == value
    assert flags_from_names("jump_det + saturated") == 6
    assert flag_names(0) == []


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_flag_names_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="dq value"):
        flag_names(bad)


def test_unknown_name_is_clear():
    with pytest.raises(ValueError, match="NOT_A_FLAG"):
        flags_from_names("NOT_A_FLAG")


DQ_VALUES = np.array([0, 1, 4, 5, 8, 12, 2**31], dtype=np.uint32)


@pytest.mark.parametrize(
    ("good_bits", "expected"),
    [
        (None, [1, 0, 0, 0, 0, 0, 0]),
        (4, [1, 0, 1, 0, 0, 0, 0]),
        ("4,8", [1, 0, 1, 0, 1, 1, 0]),
        ("4+8", [1, 0, 1, 0, 1, 1, 0]),
        ("JUMP_DET,DROPOUT", [1, 0, 1, 0, 1, 1, 0]),
        ("~4", [1, 1, 0, 0, 1, 0, 1]),
        ("~JUMP_DET", [1, 1, 0, 0, 1, 0, 1]),
        ("DO_NOT_USE+JUMP_DET", [1, 1, 1, 1, 0, 0, 0]),
    ],
)
def test_build_mask(good_bits, expected):
    mask = build_mask(DQ_VALUES, good_bits)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, np.array(expected, dtype=bool))


def test_build_mask_rejects_float():
    with pytest.raises(TypeError, match="dq"):
        build_mask(np.zeros(3), 4)


def test_flag_counts():
    counts = dq_flag_counts(DQ_VALUES)
    assert counts == {"DO_NOT_USE": 2, "JUMP_DET": 3, "DROPOUT": 2, "REFERENCE_PIXEL": 1}
