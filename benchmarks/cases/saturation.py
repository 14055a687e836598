"""Benchmark cases for the saturation step: stcal-models (NumPy, JAX) beside stcal 1.17.0.

Each case is a dict ``{"name", "impl", "setup", "run"}``; the harness calls ``setup()``
once and times ``run(state)``.  Inputs: one 1x10x2048x2048 float32 ramp from a seeded
rng, a ~12 kDN bias level, thresholds around 58 kDN (0.1 % NaN) and a log-normal flux
distribution that saturates 1.6 % of the pixels by the last group (10 % with nframes=4,
where the read-pattern rules run too).  stcal flags its DQ arguments in place, so its
``run`` allocates fresh GROUPDQ/PIXELDQ arrays each call (as the project's step does).
"""

from __future__ import annotations

import numpy as np

SHAPE = (1, 10, 2048, 2048)


def _inputs(nframes: int):
    rng = np.random.default_rng(20240917)
    nints, ngroups, ny, nx = SHAPE
    threshold = rng.normal(58000.0, 1500.0, (ny, nx)).astype(np.float32)
    threshold[rng.random((ny, nx)) < 1e-3] = np.nan
    rate = rng.lognormal(5.0, 1.6, (ny, nx)).astype(np.float32)  # DN per frame
    frames = np.arange(1, ngroups + 1, dtype=np.float32) * nframes
    data = 12000.0 + rate[None, :, :] * frames[:, None, None]
    data = data + rng.normal(0.0, 8.0, (ngroups, ny, nx)).astype(np.float32)
    data = np.clip(data, 0.0, 65535.0).astype(np.float32)[None]
    return data, threshold


def _setup_ours(backend: str, nframes: int):
    def setup():
        from stcal_models.algorithms.saturation import Saturation
        from stcal_models.models import ExposureMeta, RampModel, SaturationRef

        data, threshold = _inputs(nframes)
        meta = ExposureMeta(nints=SHAPE[0], ngroups=SHAPE[1], nframes=nframes)
        ramp = RampModel(data=data, meta=meta)
        ref = SaturationRef(data=threshold)
        if backend == "jax":
            ramp, ref = ramp.to_backend("jax"), ref.to_backend("jax")
        return Saturation(), ramp, ref

    return setup


def _run_ours(state):
    step, ramp, ref = state
    out = step(ramp, ref)
    if out.backend == "jax":
        import jax

        jax.block_until_ready((out.groupdq, out.pixeldq))
    return out


def _setup_stcal(nframes: int):
    def setup():
        from stcal.saturation.saturation import flag_saturated_pixels

        from stcal_models.dqflags import as_dict
        from stcal_models.models import ExposureMeta

        data, threshold = _inputs(nframes)
        meta = ExposureMeta(nints=SHAPE[0], ngroups=SHAPE[1], nframes=nframes)
        pattern = [list(r) for r in meta.resultant_reads] if nframes > 1 else None
        return flag_saturated_pixels, data, threshold, pattern, as_dict()

    return setup


def _run_stcal(state) -> None:
    flag_saturated_pixels, data, threshold, pattern, flags = state
    nints, ngroups, ny, nx = data.shape
    # stcal updates its DQ arguments in place: give it fresh ones every call.
    gdq = np.zeros(data.shape, dtype=np.uint8)
    pdq = np.zeros((ny, nx), dtype=np.uint32)
    sat_dq = np.zeros((ny, nx), dtype=np.uint32)
    flag_saturated_pixels(
        data, gdq, pdq, threshold, sat_dq, 65535, flags, n_pix_grow_sat=1, read_pattern=pattern
    )


CASES = []
for _nframes, _label in ((1, ""), (4, " nframes=4")):
    _name = f"saturation 1x10x2048x2048{_label}"
    CASES += [
        {"name": _name, "impl": "numpy", "setup": _setup_ours("numpy", _nframes), "run": _run_ours},
        {"name": _name, "impl": "jax", "setup": _setup_ours("jax", _nframes), "run": _run_ours},
        {"name": _name, "impl": "stcal", "setup": _setup_stcal(_nframes), "run": _run_stcal},
    ]
