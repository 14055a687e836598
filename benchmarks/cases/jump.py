"""Benchmark cases for jump detection: stcal-models (NumPy, JAX) beside stcal 1.17.0.

Inputs (same seed for every implementation): ramps of Poisson-like signal (1-60 DN per
group) with 6 DN read noise, gain 2 e-/DN, and cosmic rays of 300 DN hitting 0.2 % of the
pixel-groups; no saturation.  ``1x10x2048x2048`` runs the iterative two-point rejection
(nine differences), ``4x20x512x512`` the single-pass mode (19 differences per
integration, 76 pooled).  stcal runs single-core (``max_cores="1"``).
"""

from __future__ import annotations

import numpy as np

SHAPES = {"jump 1x10x2048x2048": (1, 10, 2048, 2048), "jump 4x20x512x512": (4, 20, 512, 512)}


def _inputs(shape):
    rng = np.random.default_rng(20240918)
    nints, ngroups, ny, nx = shape
    flux = rng.uniform(1.0, 60.0, (ny, nx)).astype(np.float32)
    data = np.empty(shape, dtype=np.float32)
    for i in range(nints):
        steps = rng.normal(flux, 6.0, (ngroups, ny, nx)).astype(np.float32)
        hits = rng.random((ngroups, ny, nx)) < 0.002
        steps += hits * np.float32(300.0)
        np.cumsum(steps, axis=0, dtype=np.float32, out=data[i])
    gain = np.full((ny, nx), 2.0, dtype=np.float32)
    readnoise = np.full((ny, nx), 6.0, dtype=np.float32)
    return data, gain, readnoise


def _setup_ours(shape, backend):
    def setup():
        from stcal_models.algorithms.jump import JumpDetection
        from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef

        data, gain, readnoise = _inputs(shape)
        meta = ExposureMeta(nints=shape[0], ngroups=shape[1], frame_time=10.737)
        ramp = RampModel(data=data, meta=meta)
        if backend == "jax":
            ramp = ramp.to_backend("jax")
        return JumpDetection(), ramp, GainRef(data=gain), ReadnoiseRef(data=readnoise)

    return setup


def _run_ours(state):
    step, ramp, gain, readnoise = state
    out = step(ramp, gain, readnoise)
    return (out.groupdq, out.pixeldq)


def _setup_stcal(shape):
    def setup():
        data, gain, readnoise = _inputs(shape)
        return data, gain, readnoise

    return setup


def _run_stcal(state) -> None:
    from types import SimpleNamespace

    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    from stcal_models.dqflags import as_dict

    data, gain, readnoise = state
    flags = as_dict()
    flags["GOOD"] = 0
    model = SimpleNamespace(
        data=data.copy(),
        groupdq=np.zeros(data.shape, dtype=np.uint8),
        pixeldq=np.zeros(data.shape[-2:], dtype=np.uint32),
        meta=SimpleNamespace(exposure=SimpleNamespace(nframes=1, read_pattern=None)),
    )
    jd = JumpData(jump_model=model, gain2d=gain, rnoise2d=readnoise, dqflags=flags)
    jd.max_cores = "1"
    detect_jumps_data(jd)


CASES = []
for _name, _shape in SHAPES.items():
    CASES.append({"name": _name, "impl": "stcal", "setup": _setup_stcal(_shape), "run": _run_stcal})
    CASES.append(
        {"name": _name, "impl": "numpy", "setup": _setup_ours(_shape, "numpy"), "run": _run_ours}
    )
    CASES.append(
        {"name": _name, "impl": "jax", "setup": _setup_ours(_shape, "jax"), "run": _run_ours}
    )
