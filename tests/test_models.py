import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stcal_models import (
    Catalog,
    CubeModel,
    DarkRef,
    ExposureMeta,
    GainRef,
    ImageModel,
    LinearityRef,
    RampModel,
    ReadnoiseRef,
    RefMeta,
    SaturationRef,
)
from stcal_models.backends import backend_name, to_numpy

RNG = np.random.default_rng(7)


def make_ramp(nints=2, ngroups=4, ny=5, nx=6, **kwargs):
    data = RNG.normal(100, 5, size=(nints, ngroups, ny, nx)).astype(np.float32)
    groupdq = np.zeros(data.shape, np.uint8)
    groupdq[0, 2, 1, 1] = 4
    pixeldq = np.zeros((ny, nx), np.uint32)
    pixeldq[0, 0] = 2**31
    meta = ExposureMeta(nints=nints, ngroups=ngroups, nframes=1, groupgap=0, frame_time=10.0)
    return RampModel(data=data, groupdq=groupdq, pixeldq=pixeldq, meta=meta, **kwargs)


# ---------------------------------------------------------------- construction
def test_ramp_on_every_backend(xp, to_xp):
    ramp = make_ramp()
    moved = RampModel(
        data=to_xp(ramp.data),
        groupdq=to_xp(ramp.groupdq),
        pixeldq=to_xp(ramp.pixeldq),
        meta=ramp.meta,
    )
    assert moved.shape == (2, 4, 5, 6)
    assert moved.nints == 2 and moved.ngroups == 4
    np.testing.assert_array_equal(to_numpy(moved.groupdq), ramp.groupdq)
    assert moved.xp is not None


def test_default_dq_and_meta(xp, to_xp):
    data = to_xp(np.zeros((1, 3, 4, 4), np.float32))
    ramp = RampModel(data=data)
    assert ramp.meta.ngroups == 3 and ramp.meta.nints == 1
    assert tuple(ramp.groupdq.shape) == (1, 3, 4, 4)
    assert ramp.groupdq.dtype == xp.uint8
    assert ramp.pixeldq.dtype == xp.uint32


def test_models_do_not_mutate_or_copy_inputs():
    ramp = make_ramp()
    before = ramp.data.copy()
    doubled = ramp.replace(data=ramp.data * 2)
    np.testing.assert_array_equal(ramp.data, before)
    assert doubled is not ramp and doubled.groupdq is ramp.groupdq
    with pytest.raises(dataclasses.FrozenInstanceError):
        ramp.data = before


def test_to_backend_round_trip():
    ramp = make_ramp(zeroframe=np.ones((2, 5, 6), np.float32))
    on_jax = ramp.to_backend("jax")
    assert on_jax.backend == "jax"
    assert backend_name(on_jax.zeroframe) == "jax"
    back = on_jax.to_backend("numpy")
    for name, arr in ramp.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), arr)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            {"data": np.zeros((2, 4, 5, 6))},
            TypeError,
            r"RampModel.data: expected dtype float32, got float64",
        ),
        ({"data": np.zeros((4, 5, 6), np.float32)}, ValueError, r"RampModel.data: expected 4-D"),
        (
            {"groupdq": np.zeros((2, 4, 5, 6), np.uint32)},
            TypeError,
            r"RampModel.groupdq: expected dtype uint8",
        ),
        (
            {"groupdq": np.zeros((2, 3, 5, 6), np.uint8)},
            ValueError,
            r"RampModel.groupdq: expected shape \(2, 4, 5, 6\)",
        ),
        (
            {"pixeldq": np.zeros((5, 5), np.uint32)},
            ValueError,
            r"RampModel.pixeldq: expected shape \(5, 6\), got \(5, 5\)",
        ),
        ({"zeroframe": np.zeros((1, 5, 6), np.float32)}, ValueError, r"RampModel.zeroframe"),
        (
            {"meta": ExposureMeta(nints=3, ngroups=4)},
            ValueError,
            r"RampModel.meta.nints: expected 2",
        ),
        (
            {"meta": ExposureMeta(nints=2, ngroups=9)},
            ValueError,
            r"RampModel.meta.ngroups: expected 4",
        ),
        ({"meta": {"nints": 2}}, TypeError, r"RampModel.meta: expected ExposureMeta"),
        ({"data": [[1.0]]}, TypeError, r"RampModel.data: expected an array"),
        ({"pixeldq": jnp.zeros((5, 6), jnp.uint32)}, TypeError, r"one backend"),
    ],
)
def test_ramp_rejects_bad_fields(changes, error, message):
    ramp = make_ramp()
    with pytest.raises(error, match=message):
        ramp.replace(**changes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nints": 0, "ngroups": 3}, "ExposureMeta.nints: expected >= 1"),
        ({"nints": 1, "ngroups": 3, "nframes": 2.0}, "ExposureMeta.nframes: expected int"),
        ({"nints": 1, "ngroups": 3, "frame_time": -1.0}, "ExposureMeta.frame_time"),
        (
            {"nints": 1, "ngroups": 3, "frame_time": 10.0, "group_time": 25.0},
            "ExposureMeta.group_time",
        ),
        ({"nints": 1, "ngroups": 3, "read_pattern": [[1], [2, 3]]}, "expected 3 resultants"),
        ({"nints": 1, "ngroups": 2, "read_pattern": [[1, 2], [2, 3]]}, "strictly increasing"),
        ({"nints": 1, "ngroups": 2, "read_pattern": [[1], []]}, "has no reads"),
    ],
)
def test_meta_rejects_inconsistent(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ExposureMeta(**kwargs)


def test_meta_readout_pattern():
    meta = ExposureMeta(nints=1, ngroups=3, nframes=4, groupgap=2, nskip=1, frame_time=10.0)
    assert meta.group_time == pytest.approx(60.0)
    assert meta.resultant_reads == ((2, 3, 4, 5), (8, 9, 10, 11), (14, 15, 16, 17))
    assert not meta.is_uneven
    assert meta.resultant_times[0] == pytest.approx(35.0)
    roman = ExposureMeta(
        nints=1, ngroups=3, frame_time=3.04, read_pattern=[[1], [2, 3], [4, 5, 6, 7]]
    )
    assert roman.is_uneven
    assert roman.resultant_times == pytest.approx((3.04, 2.5 * 3.04, 5.5 * 3.04))
    assert hash(roman) == hash(ExposureMeta.from_dict(roman.to_dict()))
    assert meta.replace(nframes=1).group_time == pytest.approx(30.0)


_DTYPES = st.sampled_from(
    [np.float32, np.float64, np.int16, np.uint8, np.uint16, np.uint32, np.int32]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    data_dtype=_DTYPES,
    dq_dtype=_DTYPES,
)
def test_ramp_construction_property(shape, data_dtype, dq_dtype):
    """Construction succeeds exactly when shapes and dtypes are right; errors name the field."""
    data = np.zeros(shape, dtype=data_dtype)
    groupdq = np.zeros(shape, dtype=dq_dtype)
    valid = len(shape) == 4 and data_dtype is np.float32 and dq_dtype is np.uint8
    if valid:
        ramp = RampModel(data=data, groupdq=groupdq)
        assert ramp.shape == tuple(shape)
    else:
        with pytest.raises((TypeError, ValueError), match=r"RampModel\.(data|groupdq)"):
            RampModel(data=data, groupdq=groupdq)


@settings(max_examples=40, deadline=None)
@given(ny=st.integers(1, 5), nx=st.integers(1, 5), dy=st.integers(-1, 1), dx=st.integers(-1, 1))
def test_image_variance_shapes_property(ny, nx, dy, dx):
    data = np.zeros((ny, nx), np.float32)
    var = np.zeros((max(ny + dy, 1), max(nx + dx, 1)), np.float32)
    if var.shape == data.shape:
        ImageModel(data=data, var_poisson=var)
    else:
        with pytest.raises(ValueError, match="ImageModel.var_poisson: expected shape"):
            ImageModel(data=data, var_poisson=var)


def test_image_and_cube_models():
    image = ImageModel(data=np.ones((3, 4), np.float32), err=np.ones((3, 4), np.float32))
    assert image.dq.dtype == np.uint32 and image.shape == (3, 4)
    cube = CubeModel(data=np.ones((2, 3, 4), np.float32), meta=ExposureMeta(nints=2, ngroups=5))
    assert cube.shape == (2, 3, 4)
    with pytest.raises(ValueError, match="CubeModel.meta.nints"):
        CubeModel(data=np.ones((2, 3, 4), np.float32), meta=ExposureMeta(nints=3, ngroups=5))
    with pytest.raises(TypeError, match="ImageModel.wcs"):
        ImageModel(data=np.ones((3, 4), np.float32), wcs="not a wcs")


def test_catalog_table_round_trip():
    from astropy.table import Table

    cat = Catalog(x=np.arange(3.0), y=np.arange(3.0) + 1, flux=np.ones(3), name="stars")
    table = cat.to_table()
    assert table.colnames == ["x", "y", "flux"]
    again = Catalog.from_table(table)
    np.testing.assert_array_equal(again.y, cat.y)
    assert again.name == "stars" and len(again) == 3
    with pytest.raises(ValueError, match="missing required column 'y'"):
        Catalog.from_table(Table({"x": [1.0]}))
    with pytest.raises(ValueError, match="Catalog.flux: expected shape"):
        Catalog(x=np.arange(3.0), y=np.arange(3.0), flux=np.ones(2))
    with pytest.raises(ValueError, match="ra/dec"):
        Catalog(x=np.arange(3.0), y=np.arange(3.0), ra=np.ones(3))
    empty = Catalog(x=np.zeros(0), y=np.zeros(0))
    assert len(empty) == 0 and len(empty.to_table()) == 0


def test_reference_models_and_subarray():
    full = GainRef(data=np.arange(64, dtype=np.float32).reshape(8, 8))
    meta = ExposureMeta(nints=1, ngroups=2, xstart=3, ystart=2)
    cut = full.for_science(meta, (4, 5))
    assert cut.frame_shape == (4, 5)
    np.testing.assert_array_equal(cut.data, full.data[1:5, 2:7])
    assert full.for_science(ExposureMeta(nints=1, ngroups=2), (8, 8)) is full
    with pytest.raises(ValueError, match="GainRef: expected a reference covering"):
        full.for_science(ExposureMeta(nints=1, ngroups=2, xstart=6), (4, 5))
    with pytest.raises(TypeError, match="ReadnoiseRef.data: expected dtype float32"):
        ReadnoiseRef(data=np.ones((4, 4)))
    with pytest.raises(ValueError, match="SaturationRef.dq: expected shape"):
        SaturationRef(data=np.ones((4, 4), np.float32), dq=np.zeros((3, 4), np.uint32))
    with pytest.raises(ValueError, match="LinearityRef.coeffs: expected at least 2"):
        LinearityRef(coeffs=np.ones((1, 4, 4), np.float32))
    dark = DarkRef(
        data=np.zeros((6, 4, 4), np.float32),
        average_dark_current=np.asarray(0.01, np.float32),
        meta=RefMeta(nframes=1, groupgap=0),
    )
    assert dark.frame_shape == (4, 4)
    with pytest.raises(ValueError, match="RefMeta.nframes"):
        RefMeta(nframes=0)


# ---------------------------------------------------------------- JAX
def test_jit_round_trip_returns_valid_model():
    ramp = make_ramp().to_backend("jax")
    doubled = jax.jit(lambda m: m.replace(data=m.data * 2))(ramp)
    assert isinstance(doubled, RampModel)
    assert doubled.meta == ramp.meta
    np.testing.assert_allclose(np.asarray(doubled.data), np.asarray(ramp.data) * 2)
    assert doubled.groupdq.dtype == jnp.uint8


def test_jit_accepts_numpy_model_and_grad_flows():
    ramp = make_ramp()
    total = jax.grad(lambda m: jnp.sum(m.data**2), allow_int=True)(ramp.to_backend("jax"))
    assert isinstance(total, RampModel)
    np.testing.assert_allclose(np.asarray(total.data), 2 * ramp.data, rtol=1e-6)


def test_pytree_leaves_and_static_meta():
    ramp = make_ramp()
    leaves, treedef = jax.tree_util.tree_flatten(ramp)
    assert len(leaves) == 3  # data, groupdq, pixeldq (None fields are empty subtrees)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert rebuilt.meta is ramp.meta
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(ramp)[0]]
    assert paths == [".data", ".groupdq", ".pixeldq"]


def test_jit_inside_rejects_bad_replace():
    ramp = make_ramp().to_backend("jax")
    with pytest.raises(ValueError, match="RampModel.groupdq"):
        jax.jit(lambda m: m.replace(groupdq=m.groupdq[:, :2]))(ramp)
