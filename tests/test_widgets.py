"""Headless tests of the notebook layer: HTML reprs, plot helpers and the four widgets."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
from html_check import parse_html

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from stcal_models import (  # noqa: E402
    DQ,
    Catalog,
    CubeModel,
    DarkRef,
    ExposureMeta,
    FitOptModel,
    GainRef,
    ImageModel,
    LinearityRef,
    RampFitResult,
    RampModel,
    ReadnoiseRef,
    SaturationRef,
)
from stcal_models.algorithms.base import Step, check_number  # noqa: E402
from stcal_models.display import (  # noqa: E402
    image_norm,
    plot_dq,
    plot_ramp,
    plot_result,
    ramp_segments,
)
from stcal_models.widgets import (  # noqa: E402
    DQViewer,
    ImageViewer,
    RampExplorer,
    StepTuner,
    cutout,
)

NY, NX, NINTS, NGROUPS = 12, 10, 2, 6
JUMP = (1, 3, 4, 5)  # integration, group, y, x
SAT = (0, 4, 7, 2)  # saturated from this group on


def make_ramp(backend: str = "numpy") -> RampModel:
    """A small deterministic ramp with one jump, one saturated pixel and a dead pixel."""
    rng = np.random.default_rng(3)
    meta = ExposureMeta(nints=NINTS, ngroups=NGROUPS, frame_time=10.0)
    flux = np.linspace(1.0, 30.0, NY * NX).reshape(NY, NX)
    t = np.asarray(meta.resultant_times)
    data = 500.0 + flux[None, None] * t[None, :, None, None]
    data = data + rng.normal(0, 2.0, (NINTS, NGROUPS, NY, NX))
    gdq = np.zeros(data.shape, np.uint8)
    i, g, y, x = JUMP
    data[i, g:, y, x] += 800.0
    gdq[i, g, y, x] = DQ.JUMP_DET
    i, g, y, x = SAT
    data[i, g:, y, x] = 60000.0
    gdq[i, g:, y, x] = DQ.SATURATED
    pdq = np.zeros((NY, NX), np.uint32)
    pdq[0, 0] = DQ.DEAD | DQ.DO_NOT_USE
    ramp = RampModel(data=data.astype(np.float32), groupdq=gdq, pixeldq=pdq, meta=meta)
    return ramp.to_backend(backend)


def make_result(ramp: RampModel) -> RampFitResult:
    """A fake ramp-fit result: straight-line slopes of the first two groups."""
    data = np.asarray(ramp.to_backend("numpy").data, dtype=np.float64)
    t = np.asarray(ramp.meta.resultant_times)
    slopes = ((data[:, 1] - data[:, 0]) / (t[1] - t[0])).astype(np.float32)
    dq = np.zeros(slopes.shape, np.uint32)
    dq[JUMP[0], JUMP[2], JUMP[3]] = DQ.JUMP_DET
    dq[SAT[0], SAT[2], SAT[3]] = DQ.SATURATED
    err = np.full(slopes.shape, 0.25, np.float32)
    ints = CubeModel(data=slopes, dq=dq, err=err)
    rate = ImageModel(
        data=slopes.mean(axis=0),
        dq=np.bitwise_or.reduce(dq, axis=0),
        err=np.full((NY, NX), 0.2, np.float32),
    )
    result = RampFitResult(rate=rate, rateints=ints, record=(("jump", {"threshold": 4.0}),))
    return result if ramp.backend == "numpy" else _to_jax(result)


def _to_jax(result: RampFitResult) -> RampFitResult:
    return result.replace(
        rate=result.rate.to_backend("jax"), rateints=result.rateints.to_backend("jax")
    )


# ============================================================================ HTML reprs
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_result_html_has_rate_thumbnail_flag_counts_and_record(backend):
    result = make_result(make_ramp(backend))
    text = result._repr_html_()
    body = parse_html(text)
    assert "RampFitResult" in body and "ImageModel" in body and "CubeModel" in body
    assert "data:image/png;base64," in text
    assert "JUMP_DET" in body and "SATURATED" in body
    assert "Pipeline record (1 steps)" in body and "threshold" in body and "4.0" in body
    assert "<script" not in text


def test_every_model_and_reference_html_parses_with_its_fields():
    ones = np.ones((4, 5), np.float32)
    dq = np.zeros((4, 5), np.uint32)
    dq[1, 1] = DQ.NO_SAT_CHECK
    models = [
        make_ramp(),
        ImageModel(data=ones),
        CubeModel(data=np.ones((2, 4, 5), np.float32)),
        GainRef(data=ones),
        ReadnoiseRef(data=ones),
        SaturationRef(data=ones, dq=dq),
        LinearityRef(coeffs=np.ones((3, 4, 5), np.float32)),
        DarkRef(data=np.ones((3, 4, 5), np.float32)),
        Catalog(x=np.arange(3.0), y=np.arange(3.0)),
        FitOptModel(
            **{
                n: np.zeros((1, 2, 4, 5), np.float32)
                for n in (
                    "slope",
                    "sigslope",
                    "yint",
                    "sigyint",
                    "weights",
                    "var_poisson",
                    "var_rnoise",
                    "crmag",
                )
            },
            pedestal=np.zeros((1, 4, 5), np.float32),
        ),
    ]
    for model in models:
        body = parse_html(model._repr_html_())
        assert type(model).__name__ in body
        for name in model._array_names:
            assert name in body, (type(model).__name__, name)
    assert "NO_SAT_CHECK" in parse_html(models[5]._repr_html_())


def test_step_html_lists_parameters_with_defaults_marked():
    step = Thresholder(threshold=3.0)
    body = parse_html(step._repr_html_())
    assert "Thresholder" in body and "threshold" in body and "3.0" in body
    assert "flag_neighbors" in body and "(default)" in body


# ============================================================================ plot helpers
def test_ramp_segments_split_at_jumps_and_stop_at_saturation():
    gdq = np.array([0, 0, DQ.JUMP_DET, 0, DQ.SATURATED, DQ.SATURATED], np.uint8)
    assert ramp_segments(gdq) == [(0, 2), (2, 4)]
    assert ramp_segments(np.array([DQ.DO_NOT_USE, 0, 0], np.uint8)) == [(1, 3)]
    assert ramp_segments(np.full(3, DQ.SATURATED, np.uint8)) == []


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_plot_ramp_draws_flags_jump_segments_and_slope(backend):
    ramp = make_ramp(backend)
    result = make_result(ramp)
    i, g, y, x = JUMP
    fig = plot_ramp(ramp, y, x, result=result, integration=i)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert {"good", "JUMP_DET", "jump", "segment fit", "fitted slope"} <= set(labels)
    segment_lines = [line for line in ax.lines if line.get_label() in ("segment fit", "_child")]
    assert segment_lines
    assert "±" in ax.get_title()
    plt.close(fig)
    with pytest.raises(IndexError, match="y"):
        plot_ramp(ramp, NY, 0)


def test_plot_result_shows_rate_and_dq_with_counts():
    result = make_result(make_ramp())
    fig = plot_result(result)
    assert len(fig.axes) >= 2
    legend = fig.axes[1].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert any(t.startswith("JUMP_DET (1)") for t in texts)
    assert any(t.startswith("SATURATED (1)") for t in texts)
    plt.close(fig)
    fig = plot_dq(ImageModel(data=np.ones((3, 3), np.float32)))
    assert fig.axes[0].texts[0].get_text() == "no flags set"
    plt.close(fig)


def test_image_norm_names_and_validation():
    plane = np.arange(100.0).reshape(10, 10)
    norm = image_norm(plane, "linear", "minmax")
    assert (norm.vmin, norm.vmax) == (0.0, 99.0)
    assert image_norm(np.full((2, 2), np.nan)) is None
    with pytest.raises(ValueError, match="stretch"):
        image_norm(plane, "cubic")


# ============================================================================ RampExplorer
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_ramp_explorer_pixel_selection_changes_plot_and_readout(backend):
    ramp = make_ramp(backend)
    explorer = RampExplorer(ramp, make_result(ramp))
    assert explorer.view.value == "rate"
    before_png, before_text = explorer.ramp_image.value, explorer.readout.value
    assert bytes(before_png).startswith(b"\x89PNG")
    i, g, y, x = JUMP
    explorer.integration.value = i
    explorer.select_pixel(y, x)
    info = explorer.pixel_info()
    assert (info["y"], info["x"], info["integration"]) == (y, x, i)
    assert info["jumps"] == [g] and info["segments"] == [(0, g), (g, NGROUPS)]
    assert info["err"] == pytest.approx(0.25)
    assert explorer.ramp_image.value != before_png
    assert "jump groups" in explorer.readout.value and f"{g}" in parse_html(explorer.readout.value)
    assert explorer.readout.value != before_text
    # typing into the boxes redraws as well
    png = explorer.ramp_image.value
    explorer.y_input.value = SAT[2]
    explorer.x_input.value = SAT[3]
    explorer.integration.value = SAT[0]
    assert explorer.ramp_image.value != png
    assert explorer.pixel_info()["flags"]["SATURATED"] == [4, 5]
    assert "SATURATED" in explorer.pixel_info()["rate_dq"]
    # switching the image to a group changes the image panel
    image = explorer.image.value
    explorer.view.value = "group"
    assert not explorer.group.disabled and explorer.image.value != image
    image = explorer.image.value
    explorer.group.value = 0
    assert explorer.image.value != image


def test_ramp_explorer_without_result_and_validation():
    ramp = make_ramp()
    explorer = RampExplorer(ramp, pixel=(2, 3))
    assert explorer.view.options == ("group",)
    assert "slope" not in explorer.pixel_info()
    assert explorer.pixel_info()["pixeldq"] == []
    explorer.select_pixel(0, 0)
    assert explorer.pixel_info()["pixeldq"] == ["DO_NOT_USE", "DEAD"]
    assert "DEAD" in parse_html(explorer.readout.value)
    with pytest.raises(ValueError, match="RampExplorer.y"):
        explorer.select_pixel(NY, 0)
    with pytest.raises(TypeError, match="RampExplorer.ramp"):
        RampExplorer(ImageModel(data=np.ones((2, 2), np.float32)))
    small = make_result(make_ramp()).replace(
        rateints=CubeModel(data=np.ones((1, NY, NX), np.float32)),
        rate=ImageModel(data=np.ones((NY, NX), np.float32)),
    )
    with pytest.raises(ValueError, match="rateints"):
        RampExplorer(ramp, small)


def test_widgets_display_protocol():
    explorer = RampExplorer(make_ramp())
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert (
        bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    )


# ============================================================================ DQViewer
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_dq_viewer_toggles_flags_and_counts(backend):
    viewer = DQViewer(make_ramp(backend))
    assert viewer.field.value == "groupdq"
    assert viewer.group.value == -1
    assert set(viewer.selected_flags) == {"JUMP_DET", "SATURATED", "DEAD", "DO_NOT_USE"}
    assert viewer.counts() == {"SATURATED": 1}  # integration 0: only the saturated pixel
    viewer.integration.value = 1
    assert viewer.counts() == {"JUMP_DET": 1}
    assert int(viewer.mask().sum()) == 1
    png = viewer.image.value
    viewer.checkboxes["JUMP_DET"].value = False
    assert int(viewer.mask().sum()) == 0 and viewer.image.value != png
    viewer.select_flags(["JUMP_DET"])
    assert viewer.selected_flags == ["JUMP_DET"] and viewer.mask()[JUMP[2], JUMP[3]]
    viewer.group.value = 0  # the jump is in group 3, not 0
    assert int(viewer.mask().sum()) == 0
    viewer.field.value = "pixeldq"
    assert viewer.group.disabled and viewer.integration.disabled
    assert viewer.counts() == {"DO_NOT_USE": 1, "DEAD": 1}
    viewer.select_flags(["DEAD"])
    assert viewer.mask()[0, 0] and int(viewer.mask().sum()) == 1
    body = parse_html(viewer.counts_html.value)
    assert "DEAD" in body and "selected, any" in body
    assert viewer.checkboxes["DEAD"].description == "DEAD (1)"
    assert viewer.checkboxes["DEAD"] in viewer.flag_box.children
    with pytest.raises(ValueError, match="DQViewer.flags"):
        viewer.select_flags(["NOT_A_FLAG"])


def test_dq_viewer_on_image_cube_and_reference():
    cube = make_result(make_ramp()).rateints
    viewer = DQViewer(cube, flags=["SATURATED"])
    assert viewer.field.options == ("dq",) and not viewer.integration.disabled
    assert int(viewer.mask().sum()) == 1
    viewer.integration.value = 1
    assert int(viewer.mask().sum()) == 0
    dq = np.zeros((3, 3), np.uint32)
    dq[1, :] = DQ.NO_SAT_CHECK
    assert DQViewer(SaturationRef(data=np.ones((3, 3), np.float32), dq=dq)).counts() == {
        "NO_SAT_CHECK": 3
    }
    with pytest.raises(TypeError, match="DQViewer.model"):
        DQViewer(Catalog(x=np.zeros(1), y=np.zeros(1)))


# ============================================================================ ImageViewer
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_image_viewer_controls_change_the_picture(backend):
    ramp = make_ramp(backend)
    viewer = ImageViewer(ramp)
    assert [s.description for s in viewer.index_sliders] == ["integration", "group"]
    assert viewer.index == (0, NGROUPS - 1)
    png = viewer.image.value
    for control, value in (
        (viewer.stretch, "linear"),
        (viewer.interval, "minmax"),
        (viewer.cmap, "viridis"),
    ):
        control.value = value
        assert viewer.image.value != png, control.description
        png = viewer.image.value
    viewer.index_sliders[1].value = 0
    assert viewer.image.value != png
    viewer.zoom(2, 6, 1, 5)
    assert viewer.box == (2, 6, 1, 5)
    assert "box 4×4" in viewer.status.value
    viewer.reset_zoom()
    assert viewer.box == (0, NY, 0, NX)
    viewer.select_pixel(0, 0)
    values = viewer.readout_values()
    expected = float(np.asarray(ramp.to_backend("numpy").data)[0, 0, 0, 0])
    assert values["value"] == pytest.approx(expected)
    assert values["flags"] == ["DO_NOT_USE", "DEAD"]
    assert "DEAD" in parse_html(viewer.readout.value)
    viewer.field.value = "groupdq"
    assert viewer.readout_values()["field"] == "groupdq"
    with pytest.raises(ValueError, match="ImageViewer.zoom"):
        viewer.zoom(5, 2, 0, 3)


def test_image_viewer_wcs_readout_and_other_models():
    from stcal_models.simulate import imaging_wcs

    help_text = imaging_wcs.__doc__ or ""
    assert help_text  # documented helper from simulate
    wcs = _simple_wcs()
    image = ImageModel(data=np.arange(20, dtype=np.float32).reshape(4, 5), wcs=wcs)
    viewer = ImageViewer(image, cmap="magma")
    viewer.select_pixel(1, 2)
    values = viewer.readout_values()
    ra, dec = wcs(2.0, 1.0)
    assert values["value"] == 7.0
    assert values["ra"] == pytest.approx(float(ra)) and values["dec"] == pytest.approx(float(dec))
    assert "RA, Dec" in parse_html(viewer.readout.value)
    lin = ImageViewer(LinearityRef(coeffs=np.ones((3, 4, 5), np.float32)))
    assert [s.description for s in lin.index_sliders] == ["coefficient"]
    with pytest.raises(ValueError, match="ImageViewer.field"):
        ImageViewer(image, field="nope")
    with pytest.raises(ValueError, match="ImageViewer.cmap"):
        ImageViewer(image, cmap="rainbow-ish")


def _simple_wcs():
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gwcs_wcs

    transform = (
        models.Shift(-2) & models.Shift(-2)
        | models.Scale(1e-5) & models.Scale(1e-5)
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(150.0, 2.0, 180.0)
    )
    detector = cf.Frame2D(name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world")
    return gwcs_wcs.WCS([(detector, transform), (sky, None)])


# ============================================================================ StepTuner
@dataclasses.dataclass(frozen=True, repr=False)
class Thresholder(Step):
    """Flag group differences above ``threshold`` read-noise sigmas as JUMP_DET (test step)."""

    threshold: float = 4.0
    flag_neighbors: bool = False
    min_groups: int = 3

    def __post_init__(self):
        check_number(
            "Thresholder", "threshold", self.threshold, minimum=0.0, exclusive_minimum=True
        )

    def __call__(self, ramp: RampModel, readnoise: ReadnoiseRef) -> RampModel:
        xp = ramp.xp
        diff = ramp.data[:, 1:] - ramp.data[:, :-1]
        sigma = readnoise.data[None, None]
        median = xp.mean(diff, axis=1, keepdims=True)
        hit = xp.abs(diff - median) > self.threshold * sigma
        flags = xp.where(
            hit, xp.asarray(int(DQ.JUMP_DET), dtype=xp.uint8), xp.asarray(0, dtype=xp.uint8)
        )
        zero = xp.zeros_like(flags[:, :1])
        return ramp.replace(groupdq=ramp.groupdq | xp.concat([zero, flags], axis=1))


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_step_tuner_slider_reruns_and_reports_changes(backend):
    ramp = make_ramp(backend)
    readnoise = ReadnoiseRef(data=np.full((NY, NX), 2.0, np.float32)).to_backend(backend)
    tuner = StepTuner(Thresholder(threshold=50.0), ramp, readnoise)
    assert set(tuner.controls) == {"threshold", "flag_neighbors", "min_groups"}
    assert tuner.controls["threshold"].max == pytest.approx(200.0)
    assert tuner.changes() == {}
    base_png, base_table = tuner.image.value, tuner.table.value
    tuner.controls["threshold"].value = 3.0  # a slider drag
    assert tuner.current_step.threshold == 3.0
    changes = tuner.changes()
    before, now = changes["groupdq JUMP_DET"]
    assert now > before
    assert tuner.image.value != base_png and tuner.table.value != base_table
    assert "threshold=3.0" in tuner.status.value
    tuner.reset()
    assert tuner.changes() == {} and tuner.current_step.threshold == 50.0
    tuner.set_params(threshold=1e-3)
    assert tuner.error is None and tuner.changes()
    tuner.set_params(threshold=0.0)  # invalid for the step: reported, previous output kept
    assert "threshold" in tuner.error and "invalid parameters" in tuner.status.value
    with pytest.raises(ValueError, match="set_params"):
        tuner.set_params(nope=1)


def test_step_tuner_params_and_validation():
    ramp = make_ramp()
    readnoise = ReadnoiseRef(data=np.full((NY, NX), 2.0, np.float32))
    tuner = StepTuner(Thresholder(), ramp, readnoise, params={"threshold": (1, 10, 0.5)})
    assert list(tuner.controls) == ["threshold"]
    control = tuner.controls["threshold"]
    assert (control.min, control.max, control.step) == (1.0, 10.0, 0.5)
    with pytest.raises(ValueError, match="StepTuner.params"):
        StepTuner(Thresholder(), ramp, readnoise, params={"nope": None})
    with pytest.raises(TypeError, match="StepTuner.step"):
        StepTuner(object(), ramp, readnoise)
    with pytest.raises(TypeError, match="StepTuner.ramp_cutout"):
        StepTuner(Thresholder(), ImageModel(data=np.ones((2, 2), np.float32)), readnoise)


def test_cutout_keeps_detector_origin_and_matches_references():
    ramp = make_ramp()
    cut = cutout(ramp, 2, 8, 3, 7)
    assert cut.shape == (NINTS, NGROUPS, 6, 4)
    assert (cut.meta.ystart, cut.meta.xstart) == (3, 4)
    np.testing.assert_array_equal(np.asarray(cut.data), np.asarray(ramp.data)[..., 2:8, 3:7])
    gain = GainRef(data=np.arange(NY * NX, dtype=np.float32).reshape(NY, NX))
    matched = gain.for_science(cut.meta, cut.shape[-2:])
    np.testing.assert_array_equal(np.asarray(matched.data), np.asarray(gain.data)[2:8, 3:7])
    np.testing.assert_array_equal(
        np.asarray(cutout(gain, 2, 8, 3, 7).data), np.asarray(matched.data)
    )
    with pytest.raises(ValueError, match="cutout.x"):
        cutout(ramp, 0, 2, 5, 5)


def test_widgets_on_every_array_backend(xp, to_xp):
    base = make_ramp()
    ramp = RampModel(
        data=to_xp(np.asarray(base.data)),
        groupdq=to_xp(np.asarray(base.groupdq)),
        pixeldq=to_xp(np.asarray(base.pixeldq)),
        meta=base.meta,
    )
    explorer = RampExplorer(ramp)
    explorer.integration.value = JUMP[0]
    explorer.select_pixel(JUMP[2], JUMP[3])
    assert explorer.pixel_info()["jumps"] == [JUMP[1]]
    explorer.group.value = 0
    viewer = DQViewer(ramp)
    viewer.integration.value = JUMP[0]
    assert viewer.counts() == {"JUMP_DET": 1}
    image = ImageViewer(ramp)
    image.index_sliders[0].value = 1
    image.select_pixel(0, 0)
    expected = float(np.asarray(base.data)[1, NGROUPS - 1, 0, 0])
    assert image.readout_values()["value"] == pytest.approx(expected)


def _click(panel, y: float, x: float) -> None:
    from matplotlib.backend_bases import MouseEvent

    canvas = panel.figure.canvas
    canvas.draw()
    px, py = panel.axes.transData.transform((x, y))
    MouseEvent("button_press_event", canvas, px, py, button=1)._process()


@pytest.mark.filterwarnings("ignore:Passing unrecognized arguments:DeprecationWarning")
def test_click_selects_a_pixel_on_the_ipympl_canvas():
    import importlib.util

    if importlib.util.find_spec("ipympl") is None:  # importing it would switch the backend
        pytest.skip("clicking needs the optional ipympl package")
    ramp = make_ramp()
    explorer = RampExplorer(ramp, make_result(ramp), click=True)
    assert type(explorer.image).__name__ == "Canvas"
    text = explorer.readout.value
    _click(explorer._panel, JUMP[2], JUMP[3])
    assert explorer.pixel == (JUMP[2], JUMP[3]) and explorer.readout.value != text
    assert matplotlib.get_backend().lower() == "agg"  # the widget restored pyplot's backend
    viewer = ImageViewer(ramp, click=True)
    viewer.zoom(2, 8, 1, 7)
    _click(viewer._panel, 6.2, 2.9)
    assert viewer.readout_values()["y"] == 6 and viewer.readout_values()["x"] == 3


def test_click_without_ipympl_names_the_missing_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ipympl.backend_nbagg", None)
    with pytest.raises(ImportError, match="ipympl"):
        RampExplorer(make_ramp(), click=True)
