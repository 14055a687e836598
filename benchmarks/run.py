"""Run the benchmark cases, each in its own process, and write a markdown report.

``python -m benchmarks.run --out benchmarks/RESULTS.md`` (what ``make bench`` runs) finds
every ``benchmarks/cases/*.py`` module, runs each of its ``CASES`` in a fresh child process
(``python -m benchmarks.run --child MODULE INDEX``) and writes one markdown table of times,
speed-ups against the stcal row of the same case name and peak memory, headed by a
description of the machine.  See ``benchmarks/README.md`` for the case format.

The parent process imports nothing but the standard library, so that it stays small:
a child's ``ru_maxrss`` then measures the case and not the harness.  A case that fails,
times out or kills its process is recorded as such; the run always goes on.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
DEFAULT_CASE_DIR = PACKAGE_DIR / "cases"

#: Implementations a case may name, in table order (the baseline first).
IMPLS = ("stcal", "numpy", "jax")
DEFAULT_REPEAT = 3
DEFAULT_TIMEOUT_S = 900.0
LIST_TIMEOUT_S = 300.0
_PROGRESS = "BENCH-PROGRESS "
_VERSION_PACKAGES = ("numpy", "jax", "jaxlib", "stcal", "stcal-models", "asdf")
_ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
    "JAX_ENABLE_X64",
)

__all__ = ["collect_machine_info", "main", "render_markdown"]


# ====================================================================== child side
def _maxrss_mib() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _current_rss_mib() -> float | None:
    """Resident set size now, MiB (Linux ``/proc/self/status``); ``None`` elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux); True on success.

    After the reset ``ru_maxrss`` reports the peak since this call, so the timed calls
    get a peak of their own that setup's temporaries cannot hide.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _release_free_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; no-op elsewhere).

    glibc keeps freed blocks of large arrays in its heap, so without this a call's RSS
    high-water mark includes memory the previous call already released.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _load_case_module(case_dir: Path, stem: str):
    """Import ``<case_dir>/<stem>.py`` (as ``benchmarks.cases.<stem>`` for the default dir)."""
    if case_dir.resolve() == DEFAULT_CASE_DIR:
        return importlib.import_module(f"benchmarks.cases.{stem}")
    path = case_dir / f"{stem}.py"
    name = f"_benchmark_cases_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _case_problem(case: Any) -> str | None:
    """Why ``case`` is not a valid case dict, or ``None``."""
    if not isinstance(case, dict):
        return f"expected a dict, got {type(case).__name__}"
    missing = [k for k in ("name", "impl", "setup", "run") if k not in case]
    if missing:
        return f"missing keys {missing}"
    if not isinstance(case["name"], str) or not case["name"]:
        return f"'name': expected a non-empty str, got {case['name']!r}"
    if case["impl"] not in IMPLS:
        return f"'impl': expected one of {IMPLS}, got {case['impl']!r}"
    for key in ("setup", "run"):
        if not callable(case[key]):
            return f"{key!r}: expected a callable, got {type(case[key]).__name__}"
    return None


def _case_modules(case_dir: Path) -> list[str]:
    return sorted(p.stem for p in case_dir.glob("*.py") if not p.name.startswith("_"))


def _child_list(case_dir: Path) -> dict[str, Any]:
    """Import every case module and describe its cases (run in a child process)."""
    cases: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for stem in _case_modules(case_dir):
        try:
            module = _load_case_module(case_dir, stem)
            entries = module.CASES
            if not isinstance(entries, list | tuple):
                raise TypeError(f"CASES: expected a list, got {type(entries).__name__}")
        except Exception as exc:  # a broken module is reported, the others still run
            errors.append({"module": stem, "error": _describe(exc)})
            continue
        for index, case in enumerate(entries):
            problem = _case_problem(case)
            if problem is None:
                cases.append(
                    {"module": stem, "index": index, "name": case["name"], "impl": case["impl"]}
                )
            else:
                name = case.get("name") if isinstance(case, dict) else None
                errors.append(
                    {"module": stem, "index": index, "name": name, "error": f"invalid case: {problem}"}
                )
    return {"cases": cases, "errors": errors}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, ModuleNotFoundError) or any(
        k.__name__ == "Unavailable" for k in type(exc).__mro__
    )


def _progress(**fields: Any) -> None:
    print(_PROGRESS + json.dumps(fields), file=sys.stderr, flush=True)


def _blocker(impl: str) -> Callable[[Any], None]:
    """A function waiting until a case's returned outputs are computed (JAX dispatch is async)."""
    if impl != "jax":
        return lambda result: None
    import jax

    def block(result: Any) -> None:
        if result is not None:
            jax.block_until_ready(result)

    return block


def _jax_device_info(out: dict[str, Any]) -> None:
    import jax

    out["jax_backend"] = jax.default_backend()
    devices = jax.devices()
    out["jax_devices"] = sorted({getattr(d, "device_kind", str(d)) for d in devices})
    out["jax_device_count"] = len(devices)


def _jax_device_peak_mib() -> float | None:
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def _run_child(case_dir: Path, stem: str, index: int, repeat: int) -> dict[str, Any]:
    """Import, set up and time one case in this process; the result as a JSON-able dict."""
    out: dict[str, Any] = {"module": stem, "index": index, "status": "failed", "times": []}
    reset = False
    rss_after_setup: float | None = None
    t0 = time.perf_counter()
    try:
        _progress(stage="import")
        module = _load_case_module(case_dir, stem)
        case = module.CASES[index]
        problem = _case_problem(case)
        if problem is not None:
            raise ValueError(f"invalid case: {problem}")
        impl = case["impl"]
        out.update(name=case["name"], impl=impl)
        block = _blocker(impl)
        if impl == "jax":
            _jax_device_info(out)
        out["import_s"] = time.perf_counter() - t0
        out["rss_import_mib"] = _maxrss_mib()

        _progress(stage="setup")
        t = time.perf_counter()
        state = case["setup"]()
        out["setup_s"] = time.perf_counter() - t
        gc.collect()
        out["rss_setup_mib"] = _maxrss_mib()
        rss_after_setup = _current_rss_mib()
        reset = rss_after_setup is not None and _reset_peak_rss()

        ncalls = repeat + 1 if impl == "jax" else repeat
        for call in range(ncalls):
            _progress(stage="run", times=out["times"])
            gc.collect()
            _release_free_heap()
            if call == 1 and reset:
                # From the second call on: the steady-state peak, without the first call's
                # compilation (JAX) and warm-up.
                out["first_peak_mib"] = _maxrss_mib()
                steady_base = _current_rss_mib()
                _reset_peak_rss()
            t = time.perf_counter()
            result = case["run"](state)
            block(result)
            out["times"].append(time.perf_counter() - t)
            del result
        if ncalls > 1 and reset:
            out["steady_delta_mib"] = max(0.0, _maxrss_mib() - steady_base)
        if impl == "jax":
            out["device_peak_mib"] = _jax_device_peak_mib()
        out["status"] = "ok"
    except (Exception, SystemExit) as exc:
        unavailable = _is_unavailable(exc)
        out["status"] = "unavailable" if unavailable else "failed"
        plain = unavailable and not isinstance(exc, ModuleNotFoundError) and str(exc).strip()
        out["error"] = str(exc).strip() if plain else _describe(exc)
        out["traceback"] = traceback.format_exc(limit=-8)
    finally:
        end = _maxrss_mib()
        setup_peak = out.get("rss_setup_mib")
        if reset and setup_peak is not None:
            # ru_maxrss now holds the peak since the reset, i.e. of the timed calls.
            end = max(end, out.get("first_peak_mib", end))
            out["peak_mib"] = max(setup_peak, end)
            out["run_delta_mib"] = max(0.0, end - rss_after_setup)
            out["rss_method"] = "ru_maxrss with the high-water mark reset after setup"
        else:
            out["peak_mib"] = end
            if setup_peak is not None:
                out["run_delta_mib"] = max(0.0, end - setup_peak)
            out["rss_method"] = "ru_maxrss"
        out["total_s"] = time.perf_counter() - t0
    return out


def _child_main(args: argparse.Namespace) -> int:
    """``--child`` / ``--child-list``: print one JSON line on stdout (the last line)."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # stray prints of a case go to stderr, not into the JSON line
    try:
        if args.child_list:
            payload = _child_list(args.case_dir)
        else:
            stem, index = args.child
            payload = _run_child(args.case_dir, stem, int(index), args.repeat)
    finally:
        sys.stdout = real_stdout
    sys.stderr.flush()
    print(json.dumps(payload, default=str), flush=True)
    return 0


# ====================================================================== parent side
def _spawn(child_args: Sequence[str], timeout: float | None) -> tuple[int | None, str, str, bool]:
    """Run ``python -m benchmarks.run <child_args>`` in a new session; kill its group on timeout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.run", *child_args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stdout, stderr, False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the child and whatever it started
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
        return proc.returncode, stdout, stderr, True


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.strip():
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _last_progress(stderr: str) -> dict[str, Any]:
    for line in reversed(stderr.splitlines()):
        if line.startswith(_PROGRESS):
            try:
                return json.loads(line[len(_PROGRESS) :])
            except ValueError:
                return {}
    return {}


def _stderr_tail(stderr: str, n: int = 1) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(_PROGRESS)]
    return " / ".join(lines[-n:])


def _signal_name(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            pass
    return f"exit code {rc}"


def list_cases(case_dir: Path) -> dict[str, Any]:
    """The cases of ``case_dir`` as ``{"cases": [...], "errors": [...]}`` (imported in a child)."""
    rc, stdout, stderr, timed_out = _spawn(
        ["--child-list", "--case-dir", str(case_dir)], LIST_TIMEOUT_S
    )
    payload = None if timed_out else _last_json(stdout)
    if payload is None:
        why = "timed out" if timed_out else _signal_name(rc)
        raise RuntimeError(f"listing the cases of {case_dir} failed ({why}): {_stderr_tail(stderr, 5)}")
    return payload


def run_case(
    case: dict[str, Any], case_dir: Path, repeat: int, timeout: float | None
) -> dict[str, Any]:
    """Run one listed case in its own process; always returns a result dict."""
    args = ["--child", case["module"], str(case["index"]), "--case-dir", str(case_dir)]
    args += ["--repeat", str(repeat)]
    t0 = time.perf_counter()
    rc, stdout, stderr, timed_out = _spawn(args, timeout)
    wall = time.perf_counter() - t0
    base = {"module": case["module"], "index": case["index"], "name": case["name"],
            "impl": case["impl"], "wall_s": wall}
    if timed_out:
        progress = _last_progress(stderr)
        return {**base, "status": "timeout", "times": progress.get("times", []),
                "error": f"timed out after {timeout:g} s (during {progress.get('stage', 'start')})"}
    payload = _last_json(stdout)
    if payload is None:
        tail = _stderr_tail(stderr)
        return {**base, "status": "crashed", "times": [],
                "error": f"process ended without a result ({_signal_name(rc)})"
                + (f": {tail}" if tail else "")}
    return {**base, **{k: v for k, v in payload.items() if k not in ("name", "impl")}, "wall_s": wall}


def _timings(result: dict[str, Any]) -> tuple[float | None, float | None, int]:
    """``(first call, steady-state median, number of calls in the median)`` of a result."""
    times = list(result.get("times") or [])
    if not times:
        return None, None, 0
    steady = times[1:] if result.get("impl") == "jax" else times
    if not steady or result.get("status") != "ok":
        return times[0], None, 0
    return times[0], statistics.median(steady), len(steady)


# ------------------------------------------------------------------ machine description
def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
    text = _read("/proc/cpuinfo")
    if not text:
        return None
    cores, phys = set(), None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            cores.add((phys, value.strip()))
    return len(cores) or None


def _cgroup_cpus() -> str | None:
    text = _read("/sys/fs/cgroup/cpu.max")
    if not text:
        return None
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return f"{int(quota) / int(period):g}"


def _mem_total_gib() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return None


def _os_name() -> str:
    pretty = None
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty}, {kernel}" if pretty else kernel


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_machine_info() -> dict[str, str]:
    """Describe this machine and software stack without importing numpy, jax or stcal."""
    logical = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = logical
    cores = f"{logical} logical"
    physical = _physical_cores()
    if physical:
        cores += f", {physical} physical"
    if usable != logical:
        cores += f", {usable} usable by this process"
    quota = _cgroup_cpus()
    if quota:
        cores += f", cgroup quota {quota} CPUs"
    mem = _mem_total_gib()
    env = {k: os.environ[k] for k in _ENV_VARS if k in os.environ}
    info = {
        "CPU": f"{_cpu_model()} ({platform.machine()})",
        "cores": cores,
        "RAM": f"{mem:.1f} GiB" if mem else "unknown",
        "OS": _os_name(),
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "versions": ", ".join(f"{p} {_version(p)}" for p in _VERSION_PACKAGES),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "not set"),
    }
    others = {k: v for k, v in env.items() if k != "OPENBLAS_CORETYPE"}
    if others:
        info["environment"] = ", ".join(f"{k}={v}" for k, v in others.items())
    info["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return info


# ------------------------------------------------------------------ markdown
def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def _fmt_mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _status_cell(result: dict[str, Any], limit: int = 90) -> str:
    status = result.get("status", "failed")
    if status == "ok":
        return "ok"
    error = result.get("error") or ""
    text = f"{status}: {error}" if error else status
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ordered_groups(results: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["name"], []).append(r)
    order = {impl: i for i, impl in enumerate(IMPLS)}
    return [(n, sorted(rs, key=lambda r: order.get(r["impl"], 99))) for n, rs in groups.items()]


def render_markdown(
    results: Sequence[dict[str, Any]],
    machine: dict[str, str],
    *,
    repeat: int,
    command: str,
    problems: Sequence[dict[str, Any]] = (),
    pending: int = 0,
) -> str:
    """The report: machine description, results table and the problems met.

    Parameters
    ----------
    results : sequence of dict
        Results of :func:`run_case`.
    machine : dict
        :func:`collect_machine_info`.
    repeat : int
        Calls per median.
    command : str
        The command line that produced the report.
    problems : sequence of dict
        Case modules or entries that could not be listed (``{"module", "error"}``).
    pending : int
        Cases still to run (the report is rewritten after each case).
    """
    jax_rows = [r for r in results if r.get("jax_backend")]
    if jax_rows:
        r = jax_rows[0]
        devices = ", ".join(r.get("jax_devices") or [])
        machine = {**machine, "JAX backend": f"{r['jax_backend']} ({r.get('jax_device_count', '?')} × {devices})"}
    lines = ["# Benchmarks: stcal-models against stcal", ""]
    lines += [f"Generated by `{command}`.", ""]
    if pending:
        lines += [f"**Incomplete: {pending} case(s) still running or not run.**", ""]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in machine.items()]
    lines += [
        "",
        "## Results",
        "",
        f"Each row ran in its own process.  *median*: median of {repeat} call(s) of the case's "
        "`run`; for jax rows these follow the *first call* (tracing + compilation + run), which "
        "is reported on its own; for numpy and stcal rows the first call is the first of the "
        f"{repeat}.  *speed-up*: stcal median / row median (> 1: faster than stcal; jax: "
        "steady state); n/a where the case has no stcal row or it did not run.  Memory (MiB): "
        "*peak*: the process's peak RSS (`ru_maxrss`) including imports and setup; *setup*: "
        "peak RSS after imports and setup; *run +*: how far RSS rose during the timed calls "
        "above the RSS they started from; *steady +*: the same for the calls after the first "
        "(no compilation), from the RSS before the second call.  Freed heap memory is handed "
        "back to the OS (glibc `malloc_trim`) before every call.",
        "",
        "| case | impl | first call | median | speed-up vs stcal | peak MiB | setup MiB "
        "| run + MiB | steady + MiB | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    show_device = any(r.get("device_peak_mib") for r in results)
    for name, rows in _ordered_groups(results):
        base = next((r for r in rows if r["impl"] == "stcal"), None)
        base_median = _timings(base)[1] if base is not None else None
        for r in rows:
            first, median, _ = _timings(r)
            if base_median and median:
                ratio = f"{base_median / median:.2f}×"
            else:
                ratio = "n/a"
            status = _status_cell(r)
            if show_device and r.get("device_peak_mib"):
                status += f" (device peak {r['device_peak_mib']:,.0f} MiB)"
            cells = [
                name,
                r["impl"],
                _fmt_time(first),
                _fmt_time(median),
                ratio,
                _fmt_mib(r.get("peak_mib")),
                _fmt_mib(r.get("rss_setup_mib")),
                _fmt_mib(r.get("run_delta_mib")),
                _fmt_mib(r.get("steady_delta_mib")),
                status,
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    bad = [r for r in results if r.get("status") != "ok"]
    if bad or problems:
        lines += ["", "## Problems", ""]
        for p in problems:
            where = p["module"] + (f"[{p['index']}]" if "index" in p else "")
            lines.append(f"- `{where}`: not run: {_cell(p['error'])}")
        for r in bad:
            lines.append(
                f"- `{r['module']}[{r['index']}]` {_cell(r['name'])} ({r['impl']}): "
                f"{r.get('status')}: {_cell(r.get('error', ''))}"
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ command line
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Run the benchmark cases (each in its own process) and write a markdown "
        "table of times, speed-ups against stcal and peak memory.",
    )
    p.add_argument("--out", type=Path, help="markdown file to write (default: print it)")
    p.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    p.add_argument("--cases", metavar="PATTERN",
                   help="run the cases whose name or module contains PATTERN (case-insensitive)")
    p.add_argument("--skip", metavar="PATTERN",
                   help="leave out the cases whose name contains PATTERN (case-insensitive)")
    p.add_argument("--impl", metavar="IMPL[,IMPL]",
                   help=f"only these implementations, comma-separated, of {', '.join(IMPLS)}")
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help=f"calls per median (default {DEFAULT_REPEAT}; jax adds a first call)")
    p.add_argument("--quick", action="store_true", help="one call per median (--repeat 1)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"limit per case process, imports and setup included "
                   f"(default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--case-dir", type=Path, default=DEFAULT_CASE_DIR,
                   help="directory of case modules (default benchmarks/cases)")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("--child", nargs=2, metavar=("MODULE", "INDEX"), help=argparse.SUPPRESS)
    p.add_argument("--child-list", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        p.error(f"--repeat: expected an integer >= 1, got {args.repeat}")
    args.repeat = 1 if args.quick else (args.repeat or DEFAULT_REPEAT)
    if args.timeout <= 0:
        p.error(f"--timeout: expected a positive number of seconds, got {args.timeout:g}")
    impls = IMPLS
    if args.impl:
        impls = tuple(s.strip() for s in args.impl.split(",") if s.strip())
        unknown = [s for s in impls if s not in IMPLS]
        if unknown or not impls:
            p.error(f"--impl: expected names from {', '.join(IMPLS)}, got {args.impl!r}")
    args.impls = impls
    args.case_dir = args.case_dir.resolve()
    if not args.case_dir.is_dir():
        p.error(f"--case-dir: expected a directory, got {args.case_dir}")
    return args


def _selected(case: dict[str, Any], args: argparse.Namespace) -> bool:
    if case["impl"] not in args.impls:
        return False
    if args.skip and args.skip.lower() in case["name"].lower():
        return False
    if args.cases:
        pattern = args.cases.lower()
        return pattern in case["name"].lower() or pattern in case["module"].lower()
    return True


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.run``; returns the exit status."""
    args = _parse_args(argv)
    if args.child or args.child_list:
        return _child_main(args)

    listing = list_cases(args.case_dir)
    cases = [c for c in listing["cases"] if _selected(c, args)]
    problems = [
        e for e in listing["errors"]
        if not args.cases
        or args.cases.lower() in e["module"].lower()
        or args.cases.lower() in str(e.get("name") or "").lower()
    ]
    if args.list:
        for c in cases:
            print(f"{c['module']}[{c['index']}]\t{c['impl']}\t{c['name']}")
        for e in problems:
            print(f"{e['module']}\tERROR\t{e['error']}")
        return 0

    shown = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.run", *(shlex.quote(s) for s in shown)])
    machine = collect_machine_info()
    results: list[dict[str, Any]] = []

    def write(pending: int) -> str:
        text = render_markdown(results, machine, repeat=args.repeat, command=command,
                               problems=problems, pending=pending)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_name(args.out.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, args.out)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {"machine": machine, "repeat": args.repeat, "command": command,
                       "results": results, "problems": problems}
            args.json.write_text(json.dumps(payload, indent=1, default=str))
        return text

    if not cases:
        _log("no cases selected")
    for i, case in enumerate(cases, 1):
        _log(f"[{i}/{len(cases)}] {case['name']} ({case['impl']}) ...")
        result = run_case(case, args.case_dir, args.repeat, args.timeout)
        results.append(result)
        first, median, _ = _timings(result)
        _log(f"    {result['status']}: first {_fmt_time(first)}, median {_fmt_time(median)}, "
             f"peak {_fmt_mib(result.get('peak_mib'))} MiB"
             + (f" — {result['error']}" if result.get("error") else ""))
        write(pending=len(cases) - i)
    text = write(pending=0)
    if args.out is None:
        print(text, end="")
    else:
        _log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
