"""Benchmark cases for the Casertano (2022) uneven-resultant fit beside stcal 1.17.0 ``ols_cas22``.

Inputs (same seed for every implementation): a Roman-like exposure of 6 uneven
resultants (1, 2, 4, 4, 7 and 10 reads of 3.04 s) on a 2048x2048 frame, log-normal rates
on a 1 kDN bias with Gaussian read + shot noise per resultant, cosmic-ray jumps in 0.1 %
of the resultants and saturation flagged above 60 kDN; gain 2 e-/DN, CDS read noise
10 DN.  Two groups: the fit alone (jumps flagged in GROUPDQ, as after a jump step) and the
fit with its own jump detection (``use_jump=True``, jumps not flagged).  stcal gets the
same resultants in electrons with the per-read noise, prepared outside the timed call.
"""

from __future__ import annotations

import math

import numpy as np

NY = NX = 2048
READ_TIME = 3.04
PATTERN = [[1], [2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18],
           [19, 20, 21, 22, 23, 24, 25, 26, 27, 28]]
GAIN, READNOISE = 2.0, 10.0  # e-/DN, CDS DN
_SHAPE = f"1x{len(PATTERN)}x{NY}x{NX}"


def _inputs(flag_jumps: bool):
    rng = np.random.default_rng(20250301)
    n = len(PATTERN)
    nreads = np.array([len(r) for r in PATTERN], np.float32)
    tbar = np.array([np.mean(r) for r in PATTERN], np.float32) * READ_TIME
    flux = rng.lognormal(1.5, 1.5, (NY, NX)).astype(np.float32)  # DN/s
    data = np.empty((1, n, NY, NX), np.float32)
    gdq = np.zeros((1, n, NY, NX), np.uint8)
    jumped = np.zeros((NY, NX), np.float32)
    per_read = READNOISE / math.sqrt(2.0)
    for i in range(n):
        sigma = np.sqrt(per_read**2 / nreads[i] + flux * tbar[i] / GAIN).astype(np.float32)
        hits = rng.random((NY, NX)) < 1e-3
        jumped += hits * np.float32(500.0)
        plane = 1000.0 + flux * tbar[i] + jumped
        plane += rng.standard_normal((NY, NX), dtype=np.float32) * sigma
        if flag_jumps:
            gdq[0, i][hits] |= 4
        gdq[0, i][plane > 60000.0] |= 2
        data[0, i] = np.minimum(plane, 65535.0)
    return data, gdq


def _setup_ours(backend: str, use_jump: bool):
    def setup():
        from stcal_models.algorithms.ramp_fitting.cas22 import Cas22RampFit
        from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef

        data, gdq = _inputs(flag_jumps=not use_jump)
        meta = ExposureMeta(nints=1, ngroups=len(PATTERN), frame_time=READ_TIME,
                            read_pattern=PATTERN, instrument="WFI", detector="WFI01")
        ramp = RampModel(data=data, groupdq=gdq, meta=meta)
        gain = GainRef(data=np.full((NY, NX), GAIN, np.float32))
        readnoise = ReadnoiseRef(data=np.full((NY, NX), READNOISE, np.float32))
        if backend == "jax":
            ramp, gain, readnoise = (m.to_backend("jax") for m in (ramp, gain, readnoise))
        return Cas22RampFit(use_jump=use_jump), ramp, gain, readnoise

    return setup


def _run_ours(state):
    step, ramp, gain, readnoise = state
    result = step(ramp, gain, readnoise)
    return result.rate, result.rateints


def _setup_stcal(use_jump: bool):
    def setup():
        data, gdq = _inputs(flag_jumps=not use_jump)
        n = len(PATTERN)
        resultants = (data[0] * np.float32(GAIN)).reshape(n, -1)
        dq = (gdq[0] != 0).astype(np.int32).reshape(n, -1)
        read_noise = np.full(NY * NX, READNOISE * GAIN / math.sqrt(2.0), np.float32)
        return resultants, dq, read_noise, use_jump

    return setup


def _run_stcal(state):
    from stcal.ramp_fitting.ols_cas22 import fit_ramps

    resultants, dq, read_noise, use_jump = state
    fit_ramps(resultants, dq.copy(), read_noise, READ_TIME, PATTERN, use_jump=use_jump)


CASES = []
for _use_jump, _label in ((False, "ramp_fit Cas22"), (True, "ramp_fit Cas22 + jump detection")):
    _name = f"{_label} {_SHAPE}"
    CASES.append({"name": _name, "impl": "stcal", "setup": _setup_stcal(_use_jump),
                  "run": _run_stcal})
    for _impl in ("numpy", "jax"):
        CASES.append({"name": _name, "impl": _impl, "setup": _setup_ours(_impl, _use_jump),
                      "run": _run_ours})
