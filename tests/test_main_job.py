"""The main job runs end to end on a small frame and writes valid outputs."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from stcal_models.main_job import main


def test_main_job_writes_rate_rateints_and_png(tmp_path, capsys):
    out = tmp_path / "job"
    assert main(["--out", str(out), "--shape", "64", "48", "--ngroups", "6", "--seed", "3"]) == 0
    rate, rateints, png = (
        out / n for n in ("example_rate.fits", "example_rateints.fits", "example_summary.png")
    )
    with fits.open(rate) as hdul:
        assert hdul["SCI"].data.shape == (64, 48) and "DQ" in hdul
        assert np.isfinite(hdul["SCI"].data).mean() > 0.9
    with fits.open(rateints) as hdul:
        assert hdul["SCI"].data.shape == (1, 64, 48)
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas
    text = capsys.readouterr().out
    assert "1x6x64x48" in text and "cosmic rays injected" in text and "time: jump" in text
    assert not list(out.glob(".*.tmp"))


def test_main_job_help_and_bad_shape(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--ngroups" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path), "--shape", "4", "4"])
    assert info.value.code == 2
    assert "--shape" in capsys.readouterr().err
