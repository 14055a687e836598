"""The ``stcal-models`` command, run as a subprocess like a user would."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from stcal_models.models import GainRef


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "stcal_models.cli", *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=cwd,
    )


@pytest.fixture(scope="module")
def exposure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    uncal = folder / "demo_uncal.fits"
    done = run("simulate", uncal, "--shape", "48", "40", "--ngroups", "6", "--seed", "4",
               "--refs-out", folder / "refs")
    assert done.returncode == 0, done.stderr
    return folder, uncal


def test_help_everywhere():
    for args in ([], ["detector1"], ["simulate"], ["info"]):
        done = run(*args, "--help")
        assert done.returncode == 0 and "usage: stcal-models" in done.stdout


def test_entry_point_installed():
    script = Path(sys.executable).with_name("stcal-models")
    assert script.exists(), "pip install -e . should create the stcal-models script"


def test_success_path(exposure):
    folder, uncal = exposure
    out = folder / "demo_rate.fits"
    done = run("detector1", uncal, "--refs", folder / "refs", "-o", out, "--rateints", "--quiet")
    assert done.returncode == 0, done.stderr
    with fits.open(out) as hdul:
        assert [h.name for h in hdul][:4] == ["PRIMARY", "SCI", "ERR", "DQ"]
        assert hdul["SCI"].data.shape == (48, 40)
        assert np.isfinite(hdul["SCI"].data).mean() > 0.9
    assert (folder / "demo_rateints.fits").exists()
    info = run("info", out)
    assert info.returncode == 0 and "ImageModel(48×40" in info.stdout
    info = run("info", uncal)
    assert info.returncode == 0 and "RampModel(1×6×48×40" in info.stdout


def _assert_clean_failure(done, out: Path, needle: str):
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and needle in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temporary left behind


def test_bad_inputs_one_line_errors(exposure, tmp_path):
    folder, uncal = exposure
    refs = folder / "refs"
    out = tmp_path / "x_rate.fits"
    _assert_clean_failure(run("detector1", tmp_path / "missing_uncal.fits", "--refs", refs, "-o", out),
                          out, "no such file")
    (tmp_path / "notes.txt").write_text("hello")
    _assert_clean_failure(run("detector1", tmp_path / "notes.txt", "--refs", refs, "-o", out),
                          out, "expected a .fits or .asdf")
    _assert_clean_failure(run("detector1", uncal, "--refs", tmp_path / "norefs", "-o", out),
                          out, "does not exist")
    blob = uncal.read_bytes()
    broken = tmp_path / "broken_uncal.fits"
    broken.write_bytes(blob[: len(blob) // 3])
    _assert_clean_failure(run("detector1", broken, "--refs", refs, "-o", out), out, "broken_uncal.fits")
    no_sci = tmp_path / "nosci_uncal.fits"
    fits.HDUList([fits.PrimaryHDU()]).writeto(no_sci)
    _assert_clean_failure(run("detector1", no_sci, "--refs", refs, "-o", out), out, "SCI")
    wrong = tmp_path / "wrongrefs"
    wrong.mkdir()
    for name in ("readnoise",):
        (wrong / f"{name}.asdf").write_bytes((refs / f"{name}.asdf").read_bytes())
    GainRef(data=np.ones((7, 7), np.float32)).to_asdf(wrong / "gain.asdf")
    _assert_clean_failure(run("detector1", uncal, "--refs", wrong, "-o", out), out, "GainRef")
    missing_dir_out = tmp_path / "nope" / "y_rate.fits"
    done = run("detector1", uncal, "--refs", refs, "-o", missing_dir_out)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    _assert_clean_failure(run("simulate", tmp_path / "sim.txt"), tmp_path / "sim.txt", "expected a .fits or .asdf")
    _assert_clean_failure(run("info", tmp_path / "absent.asdf"), tmp_path / "absent.asdf", "no such file")


def test_jax_backend_keeps_compiled_kernels(exposure, tmp_path):
    folder, uncal = exposure
    cache = tmp_path / "jax-cache"
    out = tmp_path / "jax_rate.fits"
    done = run("detector1", uncal, "--refs", folder / "refs", "-o", out, "--backend", "jax",
               "--jax-cache", cache, "--quiet")
    assert done.returncode == 0, done.stderr
    assert any(cache.iterdir())
    reference = tmp_path / "numpy_rate.fits"
    assert run("detector1", uncal, "--refs", folder / "refs", "-o", reference, "--quiet").returncode == 0
    with fits.open(out) as hdul, fits.open(reference) as numpy_run:
        np.testing.assert_allclose(hdul["SCI"].data, numpy_run["SCI"].data, rtol=1e-4,
                                   atol=1e-5, equal_nan=True)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    _assert_clean_failure(run("detector1", uncal, "--refs", folder / "refs", "-o", out.with_name(
        "x_rate.fits"), "--backend", "jax", "--jax-cache", blocked / "sub"), out.with_name(
        "x_rate.fits"), "--jax-cache")
