import matplotlib
import numpy as np
import pytest
from html_check import parse_html as parse

from stcal_models import DQ, CubeModel, ExposureMeta, GainRef, ImageModel, RampModel
from stcal_models.algorithms.base import Step

matplotlib.use("Agg")


def ramp_with_flags(backend="numpy"):
    gdq = np.zeros((1, 4, 8, 8), np.uint8)
    gdq[0, 2:, 3, 3] = DQ.SATURATED
    gdq[0, 1, 5, 5] = DQ.JUMP_DET
    data = np.arange(256, dtype=np.float32).reshape(1, 4, 8, 8)
    return RampModel(data=data, groupdq=gdq, meta=ExposureMeta(nints=1, ngroups=4)).to_backend(
        backend
    )


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_ramp_html_content_and_validity(backend):
    html = ramp_with_flags(backend)._repr_html_()
    text = parse(html)
    for field in ("data", "groupdq", "pixeldq", "zeroframe", "err"):
        assert field in text
    assert "SATURATED" in text and "2" in text and "JUMP_DET" in text
    assert "meta.ngroups" in text
    assert "data:image/png;base64," in html
    assert "<script" not in html


def test_one_line_repr():
    text = repr(ramp_with_flags())
    assert "\n" not in text and text.startswith("RampModel(1×4×8×8, float32, numpy")


def test_image_cube_ref_html_and_plot():
    image = ImageModel(data=np.random.default_rng(0).normal(size=(20, 30)).astype(np.float32))
    assert "ImageModel" in parse(image._repr_html_())
    cube = CubeModel(data=np.ones((2, 4, 4), np.float32))
    assert "CubeModel" in parse(cube._repr_html_())
    gain = GainRef(data=np.ones((4, 4), np.float32))
    assert "meta.units" in parse(gain._repr_html_())
    fig = image.plot()
    assert fig.axes
    nan_image = ImageModel(data=np.full((4, 4), np.nan, np.float32))
    assert "ImageModel" in parse(nan_image._repr_html_())


def test_step_html_marks_defaults():
    import dataclasses

    @dataclasses.dataclass(frozen=True, repr=False)
    class Demo(Step):
        """A demo step."""

        threshold: float = 4.0
        grow: int = 1

    html = Demo(threshold=5.0)._repr_html_()
    text = parse(html)
    assert "threshold" in text and "5.0" in text and "(default)" in text
    assert repr(Demo(threshold=5.0)) == "Demo(threshold=5.0)"
