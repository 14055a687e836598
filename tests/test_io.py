import numpy as np
import pytest
from astropy.io import fits

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

RNG = np.random.default_rng(3)


def imaging_wcs(shape=(32, 40)):
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    scale = 0.031 / 3600
    transform = (
        (models.Shift(-20) & models.Shift(-16))
        | (models.Scale(scale) & models.Scale(scale))
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(10.0, -20.0, 180.0)
    )
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    w = wcs.WCS([(detector, transform), (sky, None)])
    w.bounding_box = ((-0.5, shape[1] - 0.5), (-0.5, shape[0] - 0.5))
    return w


def f32(*shape):
    return RNG.normal(100, 10, size=shape).astype(np.float32)


def all_models():
    meta = ExposureMeta(
        nints=2, ngroups=3, nframes=4, groupgap=1, frame_time=10.0, readpatt="MEDIUM8"
    )
    roman = ExposureMeta(nints=1, ngroups=3, frame_time=3.04, read_pattern=[[1], [2, 3], [4, 5, 6]])
    dq8 = RNG.integers(0, 255, size=(2, 3, 5, 6)).astype(np.uint8)
    return [
        RampModel(
            data=f32(2, 3, 5, 6),
            groupdq=dq8,
            pixeldq=RNG.integers(0, 2**32, size=(5, 6), dtype=np.uint32),
            zeroframe=f32(2, 5, 6),
            err=f32(2, 3, 5, 6),
            meta=meta,
        ),
        RampModel(data=f32(1, 3, 4, 4), meta=roman),
        ImageModel(
            data=f32(32, 40),
            dq=RNG.integers(0, 2**32, size=(32, 40), dtype=np.uint32),
            err=f32(32, 40),
            var_poisson=f32(32, 40),
            var_rnoise=f32(32, 40),
            var_flat=f32(32, 40),
            meta=meta,
            wcs=imaging_wcs(),
        ),
        CubeModel(data=f32(2, 5, 6), var_rnoise=f32(2, 5, 6), meta=meta),
        Catalog(x=RNG.random(7), y=RNG.random(7), ra=RNG.random(7), dec=RNG.random(7), name="c"),
        GainRef(data=f32(5, 6), meta=RefMeta(units="electron/DN", xstart=5)),
        ReadnoiseRef(data=f32(5, 6)),
        SaturationRef(data=f32(5, 6), dq=np.full((5, 6), 2**21, np.uint32)),
        LinearityRef(coeffs=f32(3, 5, 6)),
        DarkRef(data=f32(4, 5, 6), average_dark_current=np.asarray(0.5, np.float32)),
    ]


def assert_models_equal(a, b):
    assert type(a) is type(b)
    assert a.arrays().keys() == b.arrays().keys()
    for name, arr in a.arrays().items():
        other = getattr(b, name)
        assert other.dtype == arr.dtype, name
        np.testing.assert_array_equal(other, arr, err_msg=name)
    for name in a._static_names:
        if name == "wcs":
            continue
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("model", all_models(), ids=lambda m: type(m).__name__)
def test_asdf_round_trip_bit_exact(tmp_path, model):
    path = tmp_path / "model.asdf"
    model.to_asdf(path)
    again = type(model).from_asdf(path)
    assert_models_equal(model, again)
    if getattr(model, "wcs", None) is not None:
        assert again.wcs(3.0, 7.0) == pytest.approx(model.wcs(3.0, 7.0), abs=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == ["model.asdf"]  # no temporaries left


def test_asdf_round_trip_from_jax(tmp_path):
    model = all_models()[0].to_backend("jax")
    model.to_asdf(tmp_path / "j.asdf")
    again = RampModel.from_asdf(tmp_path / "j.asdf")
    assert again.backend == "numpy"
    np.testing.assert_array_equal(again.data, np.asarray(model.data))


def test_asdf_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        RampModel.from_asdf(tmp_path / "missing.asdf")
    image = all_models()[3]
    image.to_asdf(tmp_path / "cube.asdf")
    with pytest.raises(ValueError, match="expected a RampModel, file holds a CubeModel"):
        RampModel.from_asdf(tmp_path / "cube.asdf")
    blob = (tmp_path / "cube.asdf").read_bytes()
    (tmp_path / "trunc.asdf").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="trunc.asdf"):
        CubeModel.from_asdf(tmp_path / "trunc.asdf")
    (tmp_path / "junk.asdf").write_text("not asdf at all")
    with pytest.raises(ValueError, match="junk.asdf"):
        CubeModel.from_asdf(tmp_path / "junk.asdf")


def test_write_to_missing_folder_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        all_models()[3].to_asdf(tmp_path / "nope" / "x.asdf")


# ---------------------------------------------------------------- FITS
def write_uncal(
    path,
    nints=2,
    ngroups=3,
    ny=5,
    nx=6,
    *,
    sci_dtype=np.uint16,
    drop=(),
    header=None,
    zeroframe=True,
):
    sci = RNG.integers(1000, 60000, size=(nints, ngroups, ny, nx)).astype(sci_dtype)
    primary = fits.PrimaryHDU()
    keywords = {
        "NINTS": nints,
        "NGROUPS": ngroups,
        "NFRAMES": 4,
        "GROUPGAP": 1,
        "TFRAME": 10.0,
        "TGROUP": 50.0,
        "READPATT": "MEDIUM8",
        "INSTRUME": "NIRCAM",
        "DETECTOR": "NRCB1",
        "SUBSTRT1": 1,
        "SUBSTRT2": 1,
    }
    keywords.update(header or {})
    for key, value in keywords.items():
        if key not in drop:
            primary.header[key] = value
    hdus = [primary]
    if "SCI" not in drop:
        hdus.append(fits.ImageHDU(sci, name="SCI"))
    gdq = RNG.integers(0, 8, size=sci.shape).astype(np.uint8)
    pdq = RNG.integers(0, 2**32, size=(ny, nx), dtype=np.uint32)
    if "GROUPDQ" not in drop:
        hdus.append(fits.ImageHDU(gdq, name="GROUPDQ"))
    if "PIXELDQ" not in drop:
        hdus.append(fits.ImageHDU(pdq, name="PIXELDQ"))
    zf = RNG.integers(1000, 2000, size=(nints, ny, nx)).astype(np.uint16)
    if zeroframe:
        hdus.append(fits.ImageHDU(zf, name="ZEROFRAME"))
    fits.HDUList(hdus).writeto(path)
    return sci, gdq, pdq, zf


def test_read_uncal_layout(tmp_path):
    path = tmp_path / "jw_uncal.fits"
    sci, gdq, pdq, zf = write_uncal(path)
    ramp = RampModel.from_fits(path)
    assert ramp.data.dtype == np.float32
    np.testing.assert_array_equal(ramp.data, sci.astype(np.float32))
    np.testing.assert_array_equal(ramp.groupdq, gdq)
    np.testing.assert_array_equal(ramp.pixeldq, pdq)
    np.testing.assert_array_equal(ramp.zeroframe, zf.astype(np.float32))
    m = ramp.meta
    assert (m.nints, m.ngroups, m.nframes, m.groupgap) == (2, 3, 4, 1)
    assert (m.frame_time, m.group_time, m.readpatt, m.detector) == (10.0, 50.0, "MEDIUM8", "NRCB1")


def test_read_uncal_without_optional_extensions(tmp_path):
    path = tmp_path / "bare_uncal.fits"
    write_uncal(path, drop=("GROUPDQ", "PIXELDQ"), zeroframe=False)
    ramp = RampModel.from_fits(path)
    assert ramp.zeroframe is None
    assert not ramp.groupdq.any() and not ramp.pixeldq.any()


def test_ramp_fits_round_trip_bit_exact(tmp_path):
    for model in all_models()[:2]:
        path = tmp_path / "ramp.fits"
        model.to_fits(path)
        assert_models_equal(model, RampModel.from_fits(path))
        path.unlink()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop": ("SCI",)}, "missing required extension SCI"),
        ({"drop": ("TGROUP",)}, r"missing primary-header keywords \['TGROUP'\]"),
        ({"header": {"NGROUPS": 7}}, "NGROUPS=7 disagrees with SCI"),
        ({"header": {"TGROUP": 12.0}}, "ExposureMeta.group_time"),
        ({"sci_dtype": np.float64}, "SCI expected uint16/int16/float32"),
    ],
)
def test_bad_uncal_files(tmp_path, kwargs, message):
    path = tmp_path / "bad_uncal.fits"
    write_uncal(path, **kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        RampModel.from_fits(path)


def test_wrong_dimensionality_and_truncated(tmp_path):
    path = tmp_path / "three_d.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 4, 5), np.float32), name="SCI")]
    ).writeto(path)
    with pytest.raises(ValueError, match="SCI expected 4-D"):
        RampModel.from_fits(path)
    full = tmp_path / "full_uncal.fits"
    write_uncal(full, nints=2, ngroups=5, ny=40, nx=40)
    blob = full.read_bytes()
    (tmp_path / "trunc.fits").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="trunc.fits"):
        RampModel.from_fits(tmp_path / "trunc.fits")
    with pytest.raises(FileNotFoundError):
        RampModel.from_fits(tmp_path / "missing.fits")


@pytest.mark.parametrize("index", [2, 3])
def test_rate_layout_round_trip(tmp_path, index):
    model = all_models()[index]
    path = tmp_path / "rate.fits"
    model.to_fits(path)
    with fits.open(path) as hdul:
        names = [h.name for h in hdul]
        assert names[:3] == ["PRIMARY", "SCI", "DQ"] or names[:2] == ["PRIMARY", "SCI"]
        assert "DQ" in names
        assert hdul[0].header["NGROUPS"] == 3
    again = type(model).from_fits(path)
    for name, arr in model.arrays().items():
        np.testing.assert_array_equal(getattr(again, name), arr)
    assert again.meta == model.meta


def test_rate_layout_extension_names(tmp_path):
    model = all_models()[2]
    model.to_fits(tmp_path / "x_rate.fits")
    with fits.open(tmp_path / "x_rate.fits") as hdul:
        assert [h.name for h in hdul] == [
            "PRIMARY",
            "SCI",
            "ERR",
            "DQ",
            "VAR_POISSON",
            "VAR_RNOISE",
            "VAR_FLAT",
        ]


def _roman_file(path, *, pattern=None, data=None, drop=()):
    import asdf

    pattern = pattern or [[1], [2, 3], [4, 5, 6, 7], [8], [9, 10]]
    if data is None:
        data = RNG.integers(1000, 30000, size=(len(pattern), 6, 5)).astype(np.uint16)
    roman = {
        "meta": {"exposure": {"read_pattern": pattern, "frame_time": 3.04, "type": "WFI_IMAGE"},
                 "instrument": {"name": "WFI", "detector": "WFI07"}},
        "data": data,
        "pixeldq": np.zeros(data.shape[1:], np.uint32),
    }
    for key in drop:
        if key == "read_pattern":
            del roman["meta"]["exposure"]["read_pattern"]
        else:
            del roman[key]
    asdf.AsdfFile({"roman": roman}).write_to(path)
    return data, pattern


def test_roman_asdf_layout(tmp_path):
    path = tmp_path / "r0001_uncal.asdf"
    data, pattern = _roman_file(path)
    ramp = RampModel.from_asdf(path)
    assert ramp.shape == (1, 5, 6, 5)
    np.testing.assert_array_equal(ramp.data[0], data.astype(np.float32))
    assert ramp.meta.read_pattern == tuple(tuple(r) for r in pattern)
    assert ramp.meta.is_uneven and ramp.meta.detector == "WFI07"
    assert ramp.meta.resultant_times[2] == pytest.approx(3.04 * 5.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop": ("read_pattern",)}, "missing 'read_pattern'"),
        ({"drop": ("data",)}, "missing 'data'"),
        ({"data": np.zeros((5, 3), np.uint16)}, "expected 3-D"),
        ({"data": np.zeros((5, 3, 3), np.float64)}, "uint16 or float32"),
        ({"pattern": [[1], [2]], "data": np.zeros((3, 2, 2), np.uint16)}, "expected 3 resultants"),
    ],
)
def test_bad_roman_files(tmp_path, kwargs, message):
    path = tmp_path / "bad_roman.asdf"
    _roman_file(path, **kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        RampModel.from_asdf(path)
