"""End-to-end benchmark: ``Detector1Pipeline`` (NumPy, JAX) beside the same stcal sequence.

Inputs: seeded simulated 1x10x2048x2048 and 1x100x2048x2048 NIRCam-like exposures (stars, cosmic rays, a
snowball, mild non-linearity).  The stcal row runs ``flag_saturated_pixels``, a superbias
subtraction, ``linearity_correction``, ``detect_jumps_data`` and ``ramp_fit`` (OLS_C) in
that order — the sequence the end-to-end parity test checks against this pipeline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SHAPE = (2048, 2048)


def _simulate(ngroups):
    from stcal_models.pipeline import References
    from stcal_models.simulate import simulate_ramp

    sim = simulate_ramp(shape=SHAPE, ngroups=ngroups, cr_rate=5e-5, seed=0, snowballs=1, nonlinearity=2e-6)
    return sim.ramp, References.from_simulation(sim)


def _setup_ours(backend, ngroups):
    def setup():
        from stcal_models.pipeline import Detector1Pipeline

        ramp, refs = _simulate(ngroups)
        return Detector1Pipeline(backend=backend, dark_current=None), ramp, refs

    return setup


def _run_ours(state):
    pipeline, ramp, refs = state
    result = pipeline(ramp, refs)
    return result.rate.data


def _stcal_sequence():
    path = Path(__file__).resolve().parents[2] / "tests" / "parity" / "test_pipeline_parity.py"
    spec = importlib.util.spec_from_file_location("_pipeline_parity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._stcal_detector1


def _setup_stcal(ngroups):
    def setup():
        from stcal_models.algorithms.jump import JumpDetection
        from stcal_models.algorithms.ramp_fitting.ols import OLSRampFit

        ramp, refs = _simulate(ngroups)
        return _stcal_sequence(), ramp, refs, JumpDetection(), OLSRampFit().suppress_one_group

    return setup


def _run_stcal(state):
    run, ramp, refs, jump, suppress = state
    run(ramp, refs, jump, suppress)


CASES = []
for _ngroups in (10, 100):
    _name = f"detector1 end to end 1x{_ngroups}x{SHAPE[0]}x{SHAPE[1]}"
    CASES += [
        {"name": _name, "impl": "stcal", "setup": _setup_stcal(_ngroups), "run": _run_stcal},
        {"name": _name, "impl": "numpy", "setup": _setup_ours("numpy", _ngroups), "run": _run_ours},
        {"name": _name, "impl": "jax", "setup": _setup_ours("jax", _ngroups), "run": _run_ours},
    ]
