"""End-to-end parity: the same uncal through stcal's functions in the same order and
through ``Detector1Pipeline`` — rate DQ identical, SCI within tolerance."""

import importlib.util
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stcal_models.algorithms.jump import JumpDetection
from stcal_models.algorithms.ramp_fitting.ols import OLSRampFit
from stcal_models.dqflags import as_dict
from stcal_models.pipeline import Detector1Pipeline, References
from stcal_models.simulate import simulate_ramp

pytestmark = pytest.mark.parity


class _Model(SimpleNamespace):
    def hasattr(self, name):
        return hasattr(self, name)


def _jump_oracle():
    """stcal's ``detect_jumps_data`` driven with a JumpDetection's parameters (shared with
    the jump parity tests, so both compare against the same oracle call)."""
    path = Path(__file__).with_name("test_jump_parity.py")
    spec = importlib.util.spec_from_file_location("_jump_parity_oracle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.stcal_jump


def _stcal_detector1(ramp, refs, step: JumpDetection, suppress_one_group: bool):
    from stcal.linearity.linearity import linearity_correction
    from stcal.ramp_fitting.ramp_fit import ramp_fit
    from stcal.saturation.saturation import flag_saturated_pixels

    flags = as_dict()
    meta = ramp.meta
    data, gdq, pdq = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    sat_dq = np.zeros_like(pdq) if refs.saturation.dq is None else refs.saturation.dq.copy()
    pattern = [list(r) for r in meta.resultant_reads]
    gdq, pdq, _ = flag_saturated_pixels(
        data, gdq, pdq, refs.saturation.data.copy(), sat_dq, 65535, flags,
        n_pix_grow_sat=1, zframe=None, read_pattern=pattern, bias=refs.superbias.data.copy(),
    )
    data = data - refs.superbias.data  # JWST's superbias step: a plain subtraction
    lin_dq = np.zeros_like(pdq)
    data, pdq, _ = linearity_correction(data, gdq, pdq, refs.linearity.coeffs.copy(), lin_dq, flags)
    jump_input = ramp.replace(data=data.astype(np.float32), groupdq=gdq, pixeldq=pdq)
    gdq, pdq = _jump_oracle()(step, jump_input, refs.gain.data, refs.readnoise.data)
    exposure = SimpleNamespace(
        frame_time=meta.frame_time, group_time=meta.group_time, groupgap=meta.groupgap,
        nframes=meta.nframes, drop_frames1=meta.nskip, ngroups=meta.ngroups, nints=meta.nints,
        zero_frame=False,
    )
    fit_model = _Model(
        data=jump_input.data.copy(), groupdq=gdq, pixeldq=pdq,
        meta=SimpleNamespace(instrument=SimpleNamespace(name="NIRCAM"), exposure=exposure),
        average_dark_current=np.zeros(pdq.shape, np.float32),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image, integ, _ = ramp_fit(fit_model, False, refs.readnoise.data.copy(), refs.gain.data.copy(),
                                      "OLS_C", "optimal", "none", flags,
                                   suppress_one_group=suppress_one_group)
    return image, integ


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_detector1_matches_stcal_sequence(backend):
    sim = simulate_ramp(shape=(48, 48), nints=2, ngroups=8, cr_rate=8e-5, n_stars=12, seed=21,
                        nonlinearity=2e-6)
    refs = References.from_simulation(sim)
    step = JumpDetection()
    ours = Detector1Pipeline(jump=step, dark_current=None, backend=backend)(sim.ramp, refs)
    # The step default (True, as in the JWST step) is passed explicitly: stcal's function defaults to False.
    suppress = OLSRampFit().suppress_one_group
    image, integ = _stcal_detector1(sim.ramp, refs, step, suppress)
    for model, ref in ((ours.rate, image), (ours.rateints, integ)):
        np.testing.assert_array_equal(model.dq, ref["dq"])
        for name, key in (("data", "slope"), ("err", "err"), ("var_poisson", "var_poisson")):
            np.testing.assert_allclose(getattr(model, name), ref[key], rtol=1e-4, atol=1e-6,
                                       equal_nan=True, err_msg=name)
