"""The example job runs end to end on a small frame and writes valid outputs."""

from __future__ import annotations

import numpy as np
import pytest

from stcal_models.main_job import main
from stcal_models.models import RampModel


def test_main_job_writes_asdf_and_png(tmp_path, capsys):
    out = tmp_path / "job"
    assert main(["--out", str(out), "--shape", "64", "48", "--ngroups", "5", "--seed", "3"]) == 0
    ramp_path, png_path = out / "example_ramp.asdf", out / "example_summary.png"
    assert ramp_path.is_file() and png_path.is_file()
    ramp = RampModel.from_asdf(ramp_path)
    assert ramp.shape == (1, 5, 64, 48) and ramp.data.dtype == np.float32
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png_path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas
    text = capsys.readouterr().out
    assert "1x5x64x48" in text and "cosmic rays injected" in text
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_main_job_help_and_bad_shape(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--ngroups" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path), "--shape", "4", "4"])
    assert info.value.code == 2
    assert "--shape" in capsys.readouterr().err
