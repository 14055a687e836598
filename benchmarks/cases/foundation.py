"""Foundation cases: model construction with an ASDF round trip, and the ramp simulator.

Neither has a stcal equivalent, so their speed-up column reads "n/a".
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from . import Unavailable

NINTS, NGROUPS, NY, NX = 1, 10, 2048, 2048
_SHAPE_NAME = f"{NINTS}x{NGROUPS}x{NY}x{NX}"


def _ramp_data():
    import numpy as np

    rng = np.random.default_rng(0)
    data = rng.standard_normal((NINTS, NGROUPS, NY, NX), dtype=np.float32)
    data *= 10.0
    data += np.arange(NGROUPS, dtype=np.float32)[None, :, None, None] * 100.0
    return data


def _asdf_setup(backend: str) -> dict[str, Any]:
    from stcal_models.backends import to_backend

    data = _ramp_data()
    if backend == "jax":
        data = to_backend(data, "jax")
    tmp = tempfile.TemporaryDirectory(prefix="bench-asdf-")
    return {"data": data, "tmp": tmp, "path": Path(tmp.name) / "ramp.asdf", "backend": backend}


def _asdf_run(state: dict[str, Any]):
    from stcal_models.models import RampModel

    model = RampModel(data=state["data"])
    model.to_asdf(state["path"])
    back = RampModel.from_asdf(state["path"])
    return back.to_backend("jax") if state["backend"] == "jax" else back


def _simulate():
    try:
        from stcal_models.simulate import simulate_ramp
    except ImportError as exc:
        raise Unavailable(f"stcal_models.simulate.simulate_ramp: {exc}") from exc
    return simulate_ramp


def _simulate_run(simulate_ramp):
    return simulate_ramp(shape=(NY, NX), ngroups=NGROUPS, seed=0)


_ASDF_NAME = f"RampModel construction + ASDF round trip {_SHAPE_NAME}"

CASES = [
    {
        "name": _ASDF_NAME,
        "impl": "numpy",
        "setup": lambda: _asdf_setup("numpy"),
        "run": _asdf_run,
    },
    {
        "name": _ASDF_NAME,
        "impl": "jax",
        "setup": lambda: _asdf_setup("jax"),
        "run": _asdf_run,
    },
    {
        "name": f"simulate {_SHAPE_NAME}",
        "impl": "numpy",
        "setup": _simulate,
        "run": _simulate_run,
    },
]
