"""The benchmark harness (``python -m benchmarks.run``) on tiny synthetic case modules."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_CASES = '''
import os
import signal
import time


def _sleep(seconds):
    def run(state):
        time.sleep(seconds)
    return run


def _ones_setup():
    import numpy as np
    return np.ones(12_500_000)  # 100 MB kept through the timed calls


def _ones_run(state):
    import numpy as np
    print("a stray print on stdout")
    extra = np.ones(12_500_000)  # 100 MB more, freed when the call returns
    return float(extra[0] + state[0])


def _jax_setup():
    import jax.numpy as jnp
    return jnp.arange(8.0)


def _jax_run(x):
    import jax
    return jax.jit(lambda v: v * 2.0)(x)


def _missing(state):
    import a_module_that_does_not_exist  # noqa: F401


def _boom(state):
    raise RuntimeError("kaboom")


def _crash(state):
    os.kill(os.getpid(), signal.SIGKILL)


CASES = [
    {"name": "add", "impl": "stcal", "setup": lambda: None, "run": _sleep(0.02)},
    {"name": "add", "impl": "numpy", "setup": lambda: None, "run": _sleep(0.01)},
    {"name": "add", "impl": "jax", "setup": _jax_setup, "run": _jax_run},
    {"name": "solo", "impl": "numpy", "setup": _ones_setup, "run": _ones_run},
    {"name": "boom", "impl": "numpy", "setup": lambda: None, "run": _boom},
    {"name": "missing dependency", "impl": "numpy", "setup": lambda: None, "run": _missing},
    {"name": "crash", "impl": "numpy", "setup": lambda: None, "run": _crash},
    {"name": "bad impl", "impl": "fortran", "setup": lambda: None, "run": _boom},
]
'''

SLEEPY_CASES = '''
import time

CASES = [
    {"name": "sleepy", "impl": "numpy", "setup": lambda: None,
     "run": lambda state: time.sleep(120)},
]
'''


def _harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """Result-table rows keyed by (case, impl); cells stripped."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 10 and cells[0] not in ("case", "---"):
            rows[(cells[0], cells[1])] = cells
    return rows


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    case_dir = tmp_path_factory.mktemp("cases")
    (case_dir / "tiny.py").write_text(textwrap.dedent(TINY_CASES))
    (case_dir / "broken.py").write_text("raise ImportError('this module cannot be imported')\n")
    (case_dir / "_private.py").write_text("raise SystemExit('never imported')\n")
    out = case_dir / "out" / "RESULTS.md"
    raw = case_dir / "out" / "results.json"
    proc = _harness("--quick", "--case-dir", str(case_dir), "--out", str(out), "--json", str(raw))
    return proc, out, raw


def test_report_has_machine_header(tiny_run):
    proc, out, _ = tiny_run
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("# Benchmarks")
    assert "## Machine" in text
    for key in ("CPU", "cores", "RAM", "OS", "Python", "OPENBLAS_CORETYPE", "date", "JAX backend"):
        assert re.search(rf"^\| {key} \| \S", text, re.M), key
    versions = re.search(r"^\| versions \| (.*) \|$", text, re.M).group(1)
    for package in ("numpy", "jax", "stcal"):
        assert re.search(rf"\b{package} \S", versions), package
    assert "--quick" in text  # the command line is recorded


def test_rows_ratios_and_timings(tiny_run):
    proc, out, raw = tiny_run
    rows = _rows(out.read_text())
    for impl in ("stcal", "numpy", "jax"):
        assert rows[("add", impl)][-1] == "ok", rows[("add", impl)]
    results = {(r["name"], r["impl"]): r for r in json.loads(raw.read_text())["results"]}
    # --quick: one call per median; jax adds its first (compiling) call.
    assert len(results[("add", "numpy")]["times"]) == 1
    assert len(results[("add", "jax")]["times"]) == 2
    assert results[("add", "jax")]["jax_backend"] == "cpu"
    stcal_time = results[("add", "stcal")]["times"][0]
    for impl in ("numpy", "jax"):
        expected = stcal_time / statistics.median(results[("add", impl)]["times"][-1:])
        ratio = rows[("add", impl)][4]
        assert re.fullmatch(r"\d+\.\d\d×", ratio), ratio
        assert float(ratio[:-1]) == pytest.approx(expected, rel=0.01, abs=0.006)
    assert rows[("add", "stcal")][4] == "1.00×"
    assert rows[("solo", "numpy")][4] == "n/a"
    assert re.fullmatch(r"[\d.]+ (µs|ms|s)", rows[("solo", "numpy")][3])


def test_memory_columns(tiny_run):
    _, out, raw = tiny_run
    solo = {r["name"]: r for r in json.loads(raw.read_text())["results"]}["solo"]
    # setup keeps 100 MB; each timed call allocates 100 MB more and frees it.
    assert solo["rss_setup_mib"] >= solo["rss_import_mib"] + 90
    assert solo["run_delta_mib"] >= 90
    assert solo["peak_mib"] >= solo["rss_setup_mib"] + 90
    cells = _rows(out.read_text())[("solo", "numpy")]
    assert [int(c.replace(",", "")) for c in cells[5:8]] == [
        round(solo[k]) for k in ("peak_mib", "rss_setup_mib", "run_delta_mib")
    ]
    # One call (--quick numpy): no steady state after a first call.
    assert "steady_delta_mib" not in solo and cells[8] == "—"
    # jax rows make a first call and then the timed one: its rise is the steady column.
    add = {(r["name"], r["impl"]): r for r in json.loads(raw.read_text())["results"]}
    steady = add[("add", "jax")]["steady_delta_mib"]
    assert steady >= 0
    assert int(_rows(out.read_text())[("add", "jax")][8].replace(",", "")) == round(steady)


def test_failures_are_recorded_not_fatal(tiny_run):
    proc, out, _ = tiny_run
    assert proc.returncode == 0
    text = out.read_text()
    rows = _rows(text)
    assert rows[("boom", "numpy")][-1].startswith("failed: RuntimeError: kaboom")
    assert rows[("boom", "numpy")][3] == "—"
    assert rows[("missing dependency", "numpy")][-1].startswith("unavailable")
    assert rows[("crash", "numpy")][-1].startswith("crashed")
    assert "SIGKILL" in rows[("crash", "numpy")][-1]
    problems = text.split("## Problems", 1)[1]
    assert "`broken`: not run: ImportError: this module cannot be imported" in problems
    assert "invalid case" in problems and "fortran" in problems
    assert "_private" not in text
    assert "a stray print" not in text


def test_timeout_is_recorded(tmp_path):
    (tmp_path / "sleepy.py").write_text(SLEEPY_CASES)
    out = tmp_path / "RESULTS.md"
    proc = _harness("--quick", "--case-dir", str(tmp_path), "--timeout", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    status = _rows(out.read_text())[("sleepy", "numpy")][-1]
    assert status.startswith("timeout: timed out after 4 s (during run)"), status


def test_list_and_filters(tmp_path):
    (tmp_path / "tiny.py").write_text(textwrap.dedent(TINY_CASES))
    proc = _harness("--list", "--case-dir", str(tmp_path), "--impl", "numpy,stcal", "--cases", "ADD")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ["tiny[0]\tstcal\tadd", "tiny[1]\tnumpy\tadd"]
    bad = _harness("--list", "--case-dir", str(tmp_path), "--impl", "cuda")
    assert bad.returncode == 2 and "--impl" in bad.stderr
    skipped = _harness("--list", "--case-dir", str(tmp_path), "--impl", "numpy", "--skip", "ad")
    assert skipped.returncode == 0, skipped.stderr
    names = {line.split("\t")[2] for line in skipped.stdout.splitlines()}
    assert names and "add" not in names


def test_foundation_cases_are_listed():
    proc = _harness("--list", "--cases", "foundation")
    assert proc.returncode == 0, proc.stderr
    listed = {tuple(line.split("\t")[1:]) for line in proc.stdout.splitlines()}
    assert ("numpy", "RampModel construction + ASDF round trip 1x10x2048x2048") in listed
    assert ("jax", "RampModel construction + ASDF round trip 1x10x2048x2048") in listed
    assert ("numpy", "simulate 1x10x2048x2048") in listed
