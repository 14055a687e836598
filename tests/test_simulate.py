"""Truth tests of the simulator: reproducibility, layout, noise statistics, injected events."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stcal_models.models import (
    Catalog,
    DarkRef,
    ExposureMeta,
    GainRef,
    ImageModel,
    LinearityRef,
    RampModel,
    ReadnoiseRef,
    SaturationRef,
)
from stcal_models.simulate import (
    SimulatedExposure,
    SimulatedScene,
    simulate_ramp,
    simulate_scene,
)

FT = 10.73677


def _quiet(**kw):
    """A small constant-flux ramp without stars."""
    args = dict(shape=(32, 32), ngroups=5, flux=10.0, seed=1)
    args.update(kw)
    return simulate_ramp(**args)


# ----------------------------------------------------------------------- reproducibility
def test_same_seed_identical_and_different_seed_differs():
    kw = dict(shape=(40, 24), ngroups=4, cr_rate=1e-3, snowballs=1, zeroframe=True)
    a = simulate_ramp(seed=3, **kw)
    b = simulate_ramp(seed=3, **kw)
    c = simulate_ramp(seed=4, **kw)
    np.testing.assert_array_equal(a.ramp.data, b.ramp.data)
    np.testing.assert_array_equal(a.ramp.zeroframe, b.ramp.zeroframe)
    np.testing.assert_array_equal(a.truth.jumps, b.truth.jumps)
    np.testing.assert_array_equal(a.truth.flux, b.truth.flux)
    assert a.truth.snowballs == b.truth.snowballs
    assert not np.array_equal(a.ramp.data, c.ramp.data)
    assert not np.array_equal(a.truth.flux, c.truth.flux)


def test_result_independent_of_thread_count(monkeypatch):
    """Row blocks draw from their own streams: one thread or several give the same ramp."""
    import stcal_models.simulate as sim_module

    kw = dict(shape=(300, 8), ngroups=2, nints=2, cr_rate=1e-3)
    threaded = _quiet(**kw)
    monkeypatch.setattr(sim_module.os, "cpu_count", lambda: 1)
    serial = _quiet(**kw)
    np.testing.assert_array_equal(threaded.ramp.data, serial.ramp.data)
    d = serial.ramp.data[0, 1]
    assert not np.array_equal(d[:128], d[128:256])


# ----------------------------------------------------------------------- layout
def test_shapes_dtypes_and_meta():
    sim = simulate_ramp(shape=(16, 24), nints=2, ngroups=5, seed=0, dark_current=0.05)
    assert isinstance(sim, SimulatedExposure)
    ramp = sim.ramp
    assert isinstance(ramp, RampModel) and ramp.backend == "numpy"
    assert ramp.data.shape == (2, 5, 16, 24) and ramp.data.dtype == np.float32
    assert ramp.groupdq.dtype == np.uint8 and not ramp.groupdq.any()
    assert ramp.pixeldq.shape == (16, 24) and ramp.pixeldq.dtype == np.uint32
    assert ramp.zeroframe is None
    assert ramp.meta.nints == 2 and ramp.meta.ngroups == 5 and ramp.meta.nframes == 1
    assert ramp.meta.frame_time == pytest.approx(FT)
    assert ramp.meta.group_time == pytest.approx(FT)
    t = sim.truth
    assert t.flux.shape == (16, 24) and t.flux.dtype == np.float64
    assert t.jump_mask.shape == t.saturated.shape == (2, 5, 16, 24)
    assert t.jump_mask.dtype == t.saturated.dtype == np.dtype(bool)
    assert set(t.jumps.dtype.names) >= {"integration", "group", "y", "x", "amplitude"}
    assert t.linearity_coeffs is None and t.nonlinearity is None
    r = sim.refs
    assert isinstance(r.gain, GainRef) and isinstance(r.readnoise, ReadnoiseRef)
    assert isinstance(r.saturation, SaturationRef) and r.linearity is None
    for ref, value in ((r.gain, 2.0), (r.readnoise, 10.0), (r.saturation, 60000.0)):
        assert ref.data.shape == (16, 24) and ref.data.dtype == np.float32
        assert np.all(ref.data == np.float32(value))
    assert isinstance(r.dark, DarkRef)
    # Default scene: sky plus stars, some bright enough to saturate.
    assert t.flux.min() >= 1.0 - 1e-12 and t.flux.max() > 100.0


def test_default_scene_saturates_a_few_pixels():
    sim = simulate_ramp(shape=(64, 64), ngroups=6, seed=2)
    sat = sim.truth.saturated[0, -1]
    assert 0 < sat.sum() < 0.2 * sat.size
    assert np.all(sim.ramp.data[0, -1][sat] == np.float32(60000.0))


def test_arrays_for_gain_readnoise_bias():
    rng = np.random.default_rng(0)
    gain = rng.uniform(1.5, 2.5, (8, 8))
    bias = rng.uniform(500, 1500, (8, 8))
    sim = simulate_ramp(shape=(8, 8), ngroups=3, flux=0.0, gain=gain, bias=bias, readnoise=0.0)
    np.testing.assert_allclose(sim.ramp.data[0, 0], bias.astype(np.float32))
    np.testing.assert_array_equal(sim.refs.gain.data, gain.astype(np.float32))


# ----------------------------------------------------------------------- statistics
def test_slope_and_difference_variance_match_expectations():
    flux, gain, rn = 20.0, 2.0, 10.0
    sim = simulate_ramp(shape=(128, 128), ngroups=10, flux=flux, gain=gain, readnoise=rn, seed=11)
    diffs = np.diff(sim.ramp.data[0].astype(np.float64), axis=0)
    tg = sim.ramp.meta.group_time
    assert diffs.mean() / tg == pytest.approx(flux, abs=0.05)
    expected = (flux * gain * tg + (rn * gain) ** 2) / gain**2
    assert diffs.var() == pytest.approx(expected, rel=0.03)
    # Group 0 carries bias + flux * frame_time.
    assert sim.ramp.data[0, 0].mean() == pytest.approx(1000.0 + flux * FT, abs=0.5)
    assert not sim.truth.saturated.any() and not sim.truth.jump_mask.any()


def test_nframes_groupgap_timing():
    flux = 5.0
    sim = simulate_ramp(
        shape=(64, 64), ngroups=4, nframes=4, groupgap=2, flux=flux, readnoise=4.0, seed=5
    )
    meta = sim.ramp.meta
    assert meta.nframes == 4 and meta.groupgap == 2
    assert meta.group_time == pytest.approx(6 * FT)
    means = sim.ramp.data[0].astype(np.float64).mean(axis=(1, 2)) - 1000.0
    # Group g averages reads 6g+1..6g+4: mean time (6g + 2.5) * frame_time.
    expected = flux * FT * (6 * np.arange(4) + 2.5)
    np.testing.assert_allclose(means, expected, atol=2.0)
    # Difference of two 4-read means 6 frames apart: Poisson weight sum 4.75 frame times
    # (ramps up 1/4, 2/4, 3/4, 1 x 3, 3/4, 2/4, 1/4); read noise 2 * (rn^2 / 2) / 4.
    diffs = np.diff(sim.ramp.data[0].astype(np.float64), axis=0)
    expected_var = flux * FT * 4.75 / 2.0 + 16.0 / 4.0
    assert diffs.var() == pytest.approx(expected_var, rel=0.06)


def test_meta_with_nskip_overrides_arguments():
    meta = ExposureMeta(nints=2, ngroups=3, nframes=2, groupgap=1, nskip=2, frame_time=2.0)
    sim = simulate_ramp(shape=(32, 32), meta=meta, nints=5, ngroups=9, flux=10.0, readnoise=0.0)
    assert sim.ramp.meta is meta and sim.ramp.data.shape == (2, 3, 32, 32)
    means = sim.ramp.data.astype(np.float64).mean(axis=(2, 3)) - 1000.0
    times = np.array(meta.resultant_times)  # reads 3,4 / 6,7 / 9,10
    np.testing.assert_allclose(times, [7.0, 13.0, 19.0])
    np.testing.assert_allclose(means, np.broadcast_to(10.0 * times, (2, 3)), rtol=0.01)


def test_uneven_roman_read_pattern():
    pattern = [[1], [2, 3], [4, 5, 6, 7], [8], [9, 10]]
    flux, rn, ft = 3.0, 12.0, 3.04
    sim = simulate_ramp(
        shape=(128, 128), read_pattern=pattern, frame_time=ft, flux=flux, readnoise=rn, seed=8
    )
    meta = sim.ramp.meta
    assert meta.ngroups == 5 and meta.read_pattern == tuple(tuple(r) for r in pattern)
    assert meta.is_uneven and sim.ramp.data.shape == (1, 5, 128, 128)
    data = sim.ramp.data[0].astype(np.float64) - 1000.0
    expected = flux * np.array(meta.resultant_times)
    np.testing.assert_allclose(data.mean(axis=(1, 2)), expected, atol=0.4)
    # Read noise of a resultant averaging n reads: rn^2 / (2 n) on top of the Poisson part.
    zero = simulate_ramp(
        shape=(128, 128), read_pattern=pattern, frame_time=ft, flux=0.0, readnoise=rn, seed=8
    )
    var = zero.ramp.data[0].astype(np.float64).var(axis=(1, 2))
    n = np.array([len(r) for r in pattern])
    np.testing.assert_allclose(var, rn**2 / (2 * n), rtol=0.05)
    with pytest.raises(ValueError, match="ngroups"):
        simulate_ramp(shape=(8, 8), read_pattern=pattern, ngroups=4)


# ----------------------------------------------------------------------- events
def test_cosmic_ray_truth():
    sim = simulate_ramp(shape=(48, 48), ngroups=6, flux=0.0, readnoise=1.0, cr_rate=2e-4, seed=4)
    jumps = sim.truth.jumps
    assert len(jumps) > 10
    mask = np.zeros_like(sim.truth.jump_mask)
    mask[jumps["integration"], jumps["group"], jumps["y"], jumps["x"]] = True
    np.testing.assert_array_equal(sim.truth.jump_mask, mask)
    hits_per_pixel = np.zeros((48, 48), int)
    np.add.at(hits_per_pixel, (jumps["y"], jumps["x"]), 1)
    assert np.all((jumps["amplitude"] >= 200.0) & (jumps["amplitude"] <= 5000.0))
    # The group after the hit jumps by the amplitude (single-read groups: all of it).
    data = sim.ramp.data[0].astype(np.float64)
    n_checked = 0
    for hit in jumps:
        g, y, x = int(hit["group"]), int(hit["y"]), int(hit["x"])
        if g == 0 or hits_per_pixel[y, x] > 1:
            continue
        step = data[g, y, x] - data[g - 1, y, x]
        assert step == pytest.approx(float(hit["amplitude"]), abs=7.0)
        n_checked += 1
    assert n_checked > 5
    # Elsewhere the ramp is flat (no flux): only read noise.
    flat = ~sim.truth.jump_mask[0, 1:]
    assert np.abs(np.diff(data, axis=0)[flat]).max() < 8.0


def test_cosmic_ray_within_multiframe_group_is_partial():
    sim = simulate_ramp(
        shape=(64, 64), ngroups=4, nframes=4, flux=0.0, readnoise=0.0, cr_rate=1e-4, seed=6
    )
    data = sim.ramp.data[0].astype(np.float64) - 1000.0
    jumps = sim.truth.jumps
    hits_per_pixel = np.zeros((64, 64), int)
    np.add.at(hits_per_pixel, (jumps["y"], jumps["x"]), 1)
    fractions = set()
    for hit in jumps:
        g, y, x = int(hit["group"]), int(hit["y"]), int(hit["x"])
        if hits_per_pixel[y, x] > 1:
            continue
        read = int(hit["time"] // FT) + 1  # first affected read, 1-based
        frac = sum(r >= read for r in sim.ramp.meta.resultant_reads[g]) / 4
        fractions.add(frac)
        amplitude = float(hit["amplitude"])
        assert data[g, y, x] == pytest.approx(frac * amplitude, rel=1e-5)
        if g > 0:
            assert data[g - 1, y, x] == 0.0
        if g < 3:
            assert data[g + 1, y, x] == pytest.approx(amplitude, rel=1e-5)
    assert len(fractions) > 2


def test_saturation_clipping_and_truth_mask():
    flux = np.full((16, 16), 1.0)
    flux[4:8, 4:8] = 2000.0  # saturates within a few groups
    sim = simulate_ramp(shape=(16, 16), ngroups=8, flux=flux, saturation=30000.0, seed=2)
    data, sat = sim.ramp.data[0], sim.truth.saturated[0]
    np.testing.assert_array_equal(sat, data >= np.float32(30000.0))
    assert data.max() == np.float32(30000.0)
    assert sat[:, 4:8, 4:8].any() and not sat[:, :4, :].any()
    assert np.all(np.diff(sat.astype(int), axis=0) >= 0)  # stays saturated
    assert np.all(sim.refs.saturation.data == np.float32(30000.0))
    # The A/D converter limits at 65535 whatever the full well.
    hi = simulate_ramp(shape=(8, 8), ngroups=3, flux=1e4, saturation=1e6, seed=2)
    assert hi.ramp.data.max() == np.float32(65535.0) and hi.truth.saturated[0, -1].all()
    assert np.all(hi.refs.saturation.data == np.float32(65535.0))


def test_snowballs():
    sim = simulate_ramp(shape=(64, 64), ngroups=6, flux=1.0, snowballs=2, seed=9)
    assert len(sim.truth.snowballs) == 2 and len(sim.truth.jumps) == 0
    for integ, g, y, x, radius in sim.truth.snowballs:
        assert 1 <= g < 6 and 3.0 <= radius <= 6.0
        assert sim.truth.saturated[integ, g, y, x] and not sim.truth.saturated[integ, g - 1, y, x]
        assert sim.truth.jump_mask[integ, g, y, x]
        # Halo: raised but not saturated just outside the core.
        yh = y + int(radius) + 1 if y + int(radius) + 1 < 64 else y - int(radius) - 1
        step = sim.ramp.data[integ, g, yh, x] - sim.ramp.data[integ, g - 1, yh, x]
        assert 100.0 < step < 10000.0 and not sim.truth.saturated[integ, g, yh, x]
    footprint = sim.truth.jump_mask.sum()
    r = [s[4] for s in sim.truth.snowballs]
    assert footprint <= sum(math.pi * (2 * ri + 1) ** 2 for ri in r)


def test_zeroframe():
    sim = _quiet(nints=2, zeroframe=True)
    assert sim.ramp.zeroframe.shape == (2, 32, 32) and sim.ramp.zeroframe.dtype == np.float32
    np.testing.assert_array_equal(sim.ramp.zeroframe, sim.ramp.data[:, 0])
    multi = _quiet(nframes=4, shape=(64, 64), zeroframe=True, readnoise=2.0)
    zf = multi.ramp.zeroframe[0].astype(np.float64) - 1000.0
    assert zf.mean() == pytest.approx(10.0 * FT, abs=0.5)
    g0 = multi.ramp.data[0, 0].astype(np.float64) - 1000.0
    assert g0.mean() == pytest.approx(10.0 * FT * 2.5, abs=0.8)


def test_dark_current_and_reference():
    meta = ExposureMeta(nints=1, ngroups=3, nframes=2, groupgap=1, frame_time=5.0)
    sim = simulate_ramp(shape=(64, 64), meta=meta, flux=0.0, dark_current=0.5, readnoise=1.0)
    dark = sim.refs.dark
    assert dark.data.shape == (3 * 3, 64, 64) and dark.meta.nframes == 1
    np.testing.assert_allclose(dark.data[:, 0, 0], 0.5 * 5.0 * np.arange(1, 10), rtol=1e-6)
    assert float(dark.average_dark_current) == pytest.approx(0.5 * 2.0)
    means = sim.ramp.data[0].astype(np.float64).mean(axis=(1, 2)) - 1000.0
    np.testing.assert_allclose(means, 0.5 * np.array(meta.resultant_times), atol=0.2)
    assert _quiet().refs.dark is None


def test_nonlinearity_coefficients_invert():
    alpha, bias, sat = 2.5e-6, 1000.0, 60000.0
    sim = simulate_ramp(
        shape=(64, 64), ngroups=8, flux=400.0, nonlinearity=alpha, readnoise=0.0, seed=3
    )
    coeffs = sim.truth.linearity_coeffs
    lin = sim.refs.linearity
    assert isinstance(lin, LinearityRef) and lin.coeffs.dtype == np.float32
    assert lin.coeffs.shape == (coeffs.size, 64, 64)
    c32 = lin.coeffs[:, 0, 0].astype(np.float64)
    s = np.linspace(1.0, 1.0 / (2 * alpha), 20000)
    m = s * (1 - alpha * s)
    unsat = m <= sat - bias
    corrected = np.polynomial.polynomial.polyval(m[unsat], c32)
    assert np.max(np.abs(corrected / s[unsat] - 1.0)) < 1e-3
    # The data themselves: corrected group means follow flux * t.
    data = sim.ramp.data[0].astype(np.float64) - bias
    ok = ~sim.truth.saturated[0]
    corrected = np.polynomial.polynomial.polyval(data, c32)
    for g in range(8):
        if ok[g].all():
            assert corrected[g].mean() == pytest.approx(400.0 * FT * (g + 1), rel=2e-3)
    # Without correction the ramp is visibly below linear.
    assert data[5].mean() < 0.97 * 400.0 * FT * 6
    with pytest.raises(ValueError, match="nonlinearity"):
        simulate_ramp(shape=(4, 4), nonlinearity=1e-5)


def test_asdf_round_trip_bit_exact(tmp_path):
    sim = simulate_ramp(shape=(24, 16), nints=2, ngroups=4, cr_rate=1e-3, zeroframe=True)
    path = tmp_path / "ramp.asdf"
    sim.ramp.to_asdf(path)
    back = RampModel.from_asdf(path)
    for name in ("data", "groupdq", "pixeldq", "zeroframe"):
        a, b = getattr(sim.ramp, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert back.meta == sim.ramp.meta


@pytest.mark.parametrize(
    ("kwargs", "exc", "field"),
    [
        (dict(shape=(0, 4)), ValueError, "shape"),
        (dict(shape=4), TypeError, "shape"),
        (dict(gain=0.0), ValueError, "gain"),
        (dict(gain=np.ones((3, 3))), ValueError, "gain"),
        (dict(gain="2"), TypeError, "gain"),
        (dict(readnoise=-1.0), ValueError, "readnoise"),
        (dict(cr_rate=-1.0), ValueError, "cr_rate"),
        (dict(cr_amplitude=(10.0, 1.0)), ValueError, "cr_amplitude"),
        (dict(saturation=500.0), ValueError, "saturation"),
        (dict(flux=-1.0), ValueError, "flux"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(snowballs=1.5), TypeError, "snowballs"),
        (dict(meta="x"), TypeError, "meta"),
        (dict(zeroframe=1), TypeError, "zeroframe"),
    ],
)
def test_bad_arguments(kwargs, exc, field):
    args = dict(shape=(8, 8), ngroups=2)
    args.update(kwargs)
    with pytest.raises(exc, match=field):
        simulate_ramp(**args)


# ----------------------------------------------------------------------- scenes
def test_scene_wcs_catalogs_and_dither():
    scene = simulate_scene(n_exposures=3, shape=(96, 128), n_stars=15, seed=2)
    assert isinstance(scene, SimulatedScene) and len(scene.exposures) == 3
    t = scene.truth
    assert isinstance(t.catalog, Catalog) and len(t.catalog) == 15
    assert t.sky_levels.shape == (3,) and np.all((t.sky_levels >= 0.5) & (t.sky_levels <= 2.0))
    for j, (model, cat) in enumerate(zip(scene.exposures, t.catalogs, strict=True)):
        assert isinstance(model, ImageModel) and model.shape == (96, 128)
        assert model.data.dtype == np.float32 and model.dq.dtype == np.uint32
        assert not model.dq.any()
        for name in ("err", "var_poisson", "var_rnoise"):
            assert getattr(model, name).dtype == np.float32
        np.testing.assert_allclose(model.err**2, model.var_poisson + model.var_rnoise, rtol=1e-5)
        x, y = model.wcs.invert(t.catalog.ra, t.catalog.dec)
        assert np.max(np.abs(x - cat.x)) < 0.01 and np.max(np.abs(y - cat.y)) < 0.01
        ra, dec = model.wcs(cat.x, cat.y)
        np.testing.assert_allclose(ra, t.catalog.ra, atol=1e-9)
        np.testing.assert_allclose(dec, t.catalog.dec, atol=1e-9)
        np.testing.assert_allclose(cat.x - t.catalog.x, t.dither[j, 0])
        np.testing.assert_allclose(cat.y - t.catalog.y, t.dither[j, 1])
        assert np.all((cat.x > 0) & (cat.x < 127) & (cat.y > 0) & (cat.y < 95))
        bb = model.wcs.bounding_box
        assert tuple(bb[0]) == (-0.5, 127.5) and tuple(bb[1]) == (-0.5, 95.5)
        # Stars are in the image: the pixel at each star is well above the sky.
        xi, yi = np.round(cat.x).astype(int), np.round(cat.y).astype(int)
        assert np.median(model.data[yi, xi]) > t.sky_levels[j] + 1.0
        mask = t.outlier_masks[j]
        assert mask.shape == (96, 128) and mask.dtype == bool
        background = model.data[~mask]
        assert np.all(model.data[mask] > np.median(background) + 20 * model.err[mask] * 0.9)
    assert len({tuple(d) for d in t.dither}) == 3
    assert np.abs(t.catalogs[1].x - t.catalogs[0].x).max() > 1.0
    # Pixel scale: one pixel step is pixel_scale arcsec.
    w = scene.exposures[0].wcs
    ra0, dec0 = w(50.0, 40.0)
    ra1, dec1 = w(50.0, 41.0)
    assert (dec1 - dec0) * 3600 == pytest.approx(0.031, rel=1e-4)


def test_scene_options_and_reproducibility():
    kw = dict(
        n_exposures=2,
        shape=(64, 64),
        n_stars=5,
        dither=[(0, 0), (2.5, -1.5)],
        sky_levels=[1.0, 3.0],
        outlier_fraction=0.01,
        seed=7,
    )
    a, b = simulate_scene(**kw), simulate_scene(**kw)
    for ea, eb in zip(a.exposures, b.exposures, strict=True):
        np.testing.assert_array_equal(ea.data, eb.data)
    np.testing.assert_array_equal(a.truth.dither, [[0, 0], [2.5, -1.5]])
    np.testing.assert_array_equal(a.truth.sky_levels, [1.0, 3.0])
    assert 10 < a.truth.outlier_masks[0].sum() < 80
    c = simulate_scene(**{**kw, "seed": 8})
    assert not np.array_equal(a.exposures[0].data, c.exposures[0].data)
    with pytest.raises(ValueError, match="dither"):
        simulate_scene(n_exposures=2, dither=[(0, 0)])
    with pytest.raises(ValueError, match="sky_levels"):
        simulate_scene(n_exposures=2, sky_levels=[1.0])


@pytest.mark.slow
def test_full_frame_simulation_completes():
    sim = simulate_ramp(shape=(2048, 2048), ngroups=10, cr_rate=5e-5, snowballs=2, seed=1)
    assert sim.ramp.data.shape == (1, 10, 2048, 2048)
    assert len(sim.truth.jumps) > 1000 and sim.truth.saturated.any()
