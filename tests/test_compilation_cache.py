"""The on-disk compilation cache: a second process loads the ramp-fit kernel compiled by the first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stcal_models.backends import default_cache_dir, enable_compilation_cache

_SCRIPT = """
import sys, jax, numpy as np
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
from stcal_models.backends import enable_compilation_cache
from stcal_models.algorithms.ramp_fitting import LikelyRampFit
from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef
enable_compilation_cache(sys.argv[1], min_compile_time=0)
rng = np.random.default_rng(3)
data = (1000 + np.cumsum(rng.poisson(40.0, (1, 6, 4, 5)), axis=1)).astype(np.float32)
ramp = RampModel(data=data, meta=ExposureMeta(nints=1, ngroups=6, frame_time=10.0))
gain = GainRef(data=np.full((4, 5), 2.0, np.float32))
rn = ReadnoiseRef(data=np.full((4, 5), 10.0, np.float32))
rate = LikelyRampFit()(ramp.to_backend("jax"), gain.to_backend("jax"), rn.to_backend("jax"))
print(repr(np.asarray(rate.rate.data).tolist()))
print(events.count("/jax/compilation_cache/cache_hits"),
      events.count("/jax/compilation_cache/cache_misses"))
"""


def _run(folder: Path) -> tuple[str, int, int]:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(folder)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rates, counts = done.stdout.strip().splitlines()[-2:]
    hits, misses = (int(v) for v in counts.split())
    return rates, hits, misses


def test_second_process_loads_the_compiled_kernels(tmp_path):
    folder = tmp_path / "nested" / "cache"
    first, hits1, misses1 = _run(folder)
    assert misses1 > 0 and any(folder.iterdir())
    second, hits2, misses2 = _run(folder)
    assert second == first
    assert hits2 >= misses1 and misses2 == 0


def test_default_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STCAL_MODELS_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("STCAL_MODELS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "stcal-models" / "jax"


@pytest.mark.parametrize(("value", "error"), [(-1.0, ValueError), (float("nan"), ValueError),
                                              ("1", TypeError), (True, TypeError)])
def test_min_compile_time_is_validated(value, error, tmp_path):
    with pytest.raises(error, match="min_compile_time"):
        enable_compilation_cache(tmp_path, min_compile_time=value)
    assert not any(tmp_path.iterdir())
