"""Benchmark cases for OLS ramp fitting: stcal-models (NumPy, JAX) beside stcal 1.17.0 ``OLS_C``.

Inputs (same seed for every implementation): a float32 ramp with a log-normal flux
distribution on a 1 kDN bias, read noise, cosmic-ray jumps flagged in GROUPDQ on 0.1 % of
the groups and saturation flagged above 60 kDN; gain 2 e-/DN, CDS read noise 10 DN.
Shapes: 1x10x2048x2048 (a full NIRCam frame) and 4x20x512x512 (several integrations).
"""

from __future__ import annotations

import numpy as np

SHAPES = {"1x10x2048x2048": (1, 10, 2048, 2048), "4x20x512x512": (4, 20, 512, 512)}
FRAME_TIME = 10.73677


def _inputs(shape):
    rng = np.random.default_rng(20241105)
    nints, ngroups, ny, nx = shape
    flux = rng.lognormal(3.0, 1.5, (ny, nx)).astype(np.float32)  # DN/s
    times = (np.arange(ngroups, dtype=np.float32) + 1) * FRAME_TIME
    data = np.empty(shape, dtype=np.float32)
    gdq = np.zeros(shape, dtype=np.uint8)
    for i in range(nints):
        ramp = 1000.0 + flux[None] * times[:, None, None]
        ramp += rng.normal(0.0, 7.0, (ngroups, ny, nx)).astype(np.float32)
        jumps = rng.random((ngroups, ny, nx)) < 1e-3
        ramp += np.cumsum(jumps * np.float32(500.0), axis=0)
        gdq[i][jumps] |= 4
        gdq[i][ramp > 60000.0] |= 2
        data[i] = np.minimum(ramp, 65535.0)
    gain = np.full((ny, nx), 2.0, dtype=np.float32)
    readnoise = np.full((ny, nx), 10.0, dtype=np.float32)
    return data, gdq, gain, readnoise


def _setup_ours(shape, backend: str):
    def setup():
        from stcal_models.algorithms.ramp_fitting.ols import OLSRampFit
        from stcal_models.models import ExposureMeta, GainRef, RampModel, ReadnoiseRef

        data, gdq, gain, readnoise = _inputs(shape)
        meta = ExposureMeta(nints=shape[0], ngroups=shape[1], frame_time=FRAME_TIME)
        ramp = RampModel(data=data, groupdq=gdq, meta=meta)
        gain_ref, rn_ref = GainRef(data=gain), ReadnoiseRef(data=readnoise)
        if backend == "jax":
            ramp = ramp.to_backend("jax")
            gain_ref, rn_ref = gain_ref.to_backend("jax"), rn_ref.to_backend("jax")
        return OLSRampFit(suppress_one_group=False, progress=False), ramp, gain_ref, rn_ref

    return setup


def _run_ours(state):
    step, ramp, gain_ref, rn_ref = state
    result = step(ramp, gain_ref, rn_ref)
    return result.rate, result.rateints


def _setup_stcal(shape):
    def setup():
        from types import SimpleNamespace

        from stcal_models.dqflags import as_dict

        data, gdq, gain, readnoise = _inputs(shape)
        nints, ngroups, ny, nx = shape

        class _Model(SimpleNamespace):
            def hasattr(self, name):  # the RampModel API stcal probes for optional arrays
                return hasattr(self, name)

        exposure = SimpleNamespace(
            frame_time=FRAME_TIME, group_time=FRAME_TIME, groupgap=0, nframes=1,
            drop_frames1=0, ngroups=ngroups, nints=nints, zero_frame=False,
        )
        meta = SimpleNamespace(instrument=SimpleNamespace(name="NIRCAM"), exposure=exposure)

        def model():
            return _Model(data=data, groupdq=gdq.copy(), pixeldq=np.zeros((ny, nx), np.uint32),
                          meta=meta, average_dark_current=np.zeros((ny, nx), np.float32))

        return model, gain, readnoise, as_dict()

    return setup


def _run_stcal(state):
    from stcal.ramp_fitting.ramp_fit import ramp_fit

    model, gain, readnoise, flags = state
    ramp_fit(model(), False, readnoise, gain, "OLS_C", "optimal", "none", flags,
             suppress_one_group=False)


CASES = []
for _label, _shape in SHAPES.items():
    _name = f"ramp_fit OLS {_label}"
    CASES.append({"name": _name, "impl": "stcal", "setup": _setup_stcal(_shape), "run": _run_stcal})
    CASES.append({"name": _name, "impl": "numpy", "setup": _setup_ours(_shape, "numpy"),
                  "run": _run_ours})
    CASES.append({"name": _name, "impl": "jax", "setup": _setup_ours(_shape, "jax"),
                  "run": _run_ours})
