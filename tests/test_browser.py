"""A real browser: Voila serves a small widget notebook, headless Chromium drives it.

Checks that the HTML repr of a model renders, that the RampExplorer renders and answers a
pixel typed into its ``y`` box, and saves a screenshot to ``tests/artifacts/``.  Needs the
``browser`` extra (voila, playwright) and Debian's ``chromium``; without them the test is
skipped with the reason printed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("STCAL_MODELS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

NOTEBOOK_CELLS = [
    (
        "markdown",
        "# RampExplorer in the browser\nA tiny simulated exposure, fitted, explored.",
    ),
    (
        "code",
        """\
import numpy as np
from stcal_models.algorithms.jump import JumpDetection
from stcal_models.algorithms.ramp_fitting.ols import OLSRampFit
from stcal_models.simulate import simulate_ramp
from stcal_models.widgets import RampExplorer

sim = simulate_ramp(shape=(24, 24), ngroups=6, nints=1, seed=3, n_stars=4, cr_rate=5e-4)
ramp = JumpDetection()(sim.ramp, sim.refs.gain, sim.refs.readnoise)
result = OLSRampFit()(ramp, sim.refs.gain, sim.refs.readnoise)""",
    ),
    ("code", "ramp"),
    ("code", "explorer = RampExplorer(ramp, result, pixel=(12, 12))\nexplorer"),
]


def _skip(reason: str) -> None:
    print(f"SKIPPED browser test: {reason}")
    pytest.skip(reason)


def _requirements() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        _skip(
            f"no Chromium at {CHROMIUM}"
            + (f" (found {found}; set STCAL_MODELS_CHROMIUM)" if found else "")
            + ": install Debian's package 'chromium'"
        )
    for module, extra in (("voila", "browser"), ("playwright", "browser"), ("ipykernel", "test")):
        if importlib.util.find_spec(module) is None:
            _skip(f"python package {module!r} is missing: install the '{extra}' extra")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in NOTEBOOK_CELLS:
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(new(source))
    nbformat.write(nb, path)


@pytest.fixture
def voila_url(tmp_path):
    _requirements()
    notebook = tmp_path / "explorer.ipynb"
    _write_notebook(notebook)
    port = _free_port()
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        MPLBACKEND="Agg",
    )
    log = open(tmp_path / "voila.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            str(notebook),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--show_tracebacks=True",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"voila exited with {proc.returncode}:\n{_tail(tmp_path / 'voila.log')}"
                )
            try:
                with urllib.request.urlopen(url + "voila/static/", timeout=2):
                    break
            except urllib.error.HTTPError:  # any HTTP answer: the server is up
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not start:\n{_tail(tmp_path / 'voila.log')}")
                time.sleep(0.5)
        yield url, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text()[-n:]
    except OSError:
        return "(no log)"


def test_voila_ramp_explorer_in_chromium(voila_url):
    from playwright.sync_api import sync_playwright

    url, tmp_path = voila_url
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser_ramp_explorer.png"
    if shot.exists():
        shot.unlink()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1200, "height": 1100},
        )
        try:
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            explorer = page.locator(".stm-ramp-explorer")
            try:
                explorer.wait_for(state="visible", timeout=120_000)
            except Exception:  # keep what the page shows for the failure report
                page.screenshot(path=str(shot), full_page=True)
                raise AssertionError(
                    f"RampExplorer did not render; voila log:\n{_tail(tmp_path / 'voila.log')}"
                ) from None

            # the model's HTML repr: collapsible sections with field names and DQ counts
            repr_box = page.locator(".stm-wrap").first
            repr_box.wait_for(state="visible", timeout=30_000)
            text = repr_box.inner_text()
            for word in ("RampModel", "Arrays", "groupdq", "pixeldq", "DQ flags"):
                assert word in text, (word, text[:500])
            assert page.locator(".stm-wrap details").count() >= 3

            # the explorer: two PNG panels and a readout for pixel (12, 12)
            ramp_plot = page.locator(".stm-ramp-plot")
            ramp_plot.wait_for(state="visible", timeout=30_000)
            assert page.locator(".stm-image").first.evaluate("e => e.naturalWidth") > 100
            readout = page.locator(".stm-readout").first
            page.wait_for_function(
                "() => document.querySelector('.stm-readout').innerText.includes('(12, 12)')",
                timeout=30_000,
            )
            before_src = ramp_plot.get_attribute("src")

            # type a new pixel, as a user would, and wait for the kernel to answer
            y_box = page.locator(".stm-pixel-y input")
            y_box.fill("5")
            y_box.press("Enter")
            page.wait_for_function(
                "() => document.querySelector('.stm-readout').innerText.includes('(5, 12)')",
                timeout=60_000,
            )
            page.wait_for_function(
                "before => document.querySelector('.stm-ramp-plot').getAttribute('src') !== before",
                arg=before_src,
                timeout=60_000,
            )
            assert "(5, 12)" in readout.inner_text()
            assert "slope" in readout.inner_text()

            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()
    assert shot.exists() and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
