"""Detector1Pipeline: truth on simulated exposures, equality with the steps run by hand."""

import numpy as np
import pytest

from stcal_models import DQ
from stcal_models.algorithms.jump import JumpDetection
from stcal_models.algorithms.ramp_fitting.ols import OLSRampFit
from stcal_models.models import GainRef, RampModel
from stcal_models.pipeline import Detector1Pipeline, References, summarise_records
from stcal_models.simulate import simulate_ramp


@pytest.fixture(scope="module")
def sim():
    return simulate_ramp(shape=(96, 96), ngroups=10, cr_rate=5e-5, n_stars=25, seed=11, nonlinearity=2e-6)


@pytest.fixture(scope="module")
def results(sim):
    refs = References.from_simulation(sim)
    return {b: Detector1Pipeline(backend=b)(sim.ramp, refs) for b in ("numpy", "jax")}


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_truth_flux_jumps_saturation(sim, results, backend):
    result = results[backend]
    rate, dq = result.rate.data, result.rate.dq
    assert rate.dtype == np.float32 and result.rate.backend == "numpy"
    truth = sim.truth
    # Flux recovered within noise where the fit is clean.
    good = np.isfinite(rate) & ((dq & (DQ.DO_NOT_USE | DQ.SATURATED)) == 0)
    pull = (rate - truth.flux)[good] / result.rate.err[good]
    assert good.sum() > 0.9 * rate.size
    assert abs(np.median(pull)) < 0.1
    assert 0.85 < np.std(pull) < 1.2
    # Injected cosmic rays (well above the noise, after group 0, before saturation) are flagged.
    jumps = truth.jumps
    readnoise = float(np.mean(truth.readnoise))
    strong = np.asarray(jumps["amplitude"]) > 20 * readnoise
    late = np.asarray(jumps["group"]) > 0
    ys, xs = np.asarray(jumps["y"])[strong & late], np.asarray(jumps["x"])[strong & late]
    unsaturated = ~truth.saturated.any(axis=(0, 1))[ys, xs]
    flagged = (dq[ys, xs] & DQ.JUMP_DET) != 0
    assert unsaturated.sum() > 10
    assert flagged[unsaturated].mean() >= 0.95
    # Saturated stars are flagged in the rate DQ.
    saturated_truth = truth.saturated.any(axis=(0, 1))
    assert saturated_truth.sum() > 0
    assert np.all((dq[saturated_truth] & DQ.SATURATED) != 0)


def test_backends_agree(results):
    np.testing.assert_array_equal(results["numpy"].rate.dq, results["jax"].rate.dq)
    np.testing.assert_allclose(results["numpy"].rate.data, results["jax"].rate.data, rtol=1e-4, atol=1e-5)


def test_pipeline_equals_steps_by_hand(sim, results):
    from stcal_models import DarkCurrent, Linearity, Saturation, Superbias

    refs = References.from_simulation(sim)
    ramp = Saturation()(sim.ramp, refs.saturation, bias=refs.superbias)
    ramp = Superbias()(ramp, refs.superbias)
    ramp = Linearity()(ramp, refs.linearity)
    dark = None
    if refs.dark is not None:
        out = DarkCurrent()(ramp, refs.dark)
        ramp, dark = out.ramp, out.average_dark_current
    ramp = JumpDetection()(ramp, refs.gain, refs.readnoise)
    by_hand = OLSRampFit()(ramp, refs.gain, refs.readnoise, dark_current=dark)
    np.testing.assert_array_equal(by_hand.rate.data, results["numpy"].rate.data)
    np.testing.assert_array_equal(by_hand.rate.dq, results["numpy"].rate.dq)
    np.testing.assert_array_equal(by_hand.rateints.data, results["numpy"].rateints.data)


def test_record_skip_and_configuration(sim, results):
    record = dict(results["numpy"].record)
    assert list(record) == ["saturation", "superbias", "linearity", "dark_current", "jump", "ramp_fit"]
    assert record["jump"].parameters["rejection_threshold"] == JumpDetection().rejection_threshold
    assert record["jump"].flag_counts["JUMP_DET"] > 0
    assert record["dark_current"].skipped == "no dark reference"
    text = summarise_records(results["numpy"].record)
    assert "jump" in text and "skipped" in text
    refs = References.from_simulation(sim)
    pipe = Detector1Pipeline(jump=JumpDetection(rejection_threshold=50.0), skip=("linearity",))
    strict = pipe(sim.ramp, refs)
    rec = dict(strict.record)
    assert rec["linearity"].skipped == "disabled"
    assert rec["jump"].parameters["rejection_threshold"] == 50.0
    assert rec["jump"].flag_counts.get("JUMP_DET", 0) < record["jump"].flag_counts["JUMP_DET"]
    no_jump = Detector1Pipeline(jump=None)(sim.ramp, refs)
    assert dict(no_jump.record)["jump"].skipped == "disabled"
    assert not np.any(no_jump.rate.dq & DQ.JUMP_DET)
    assert "Detector1Pipeline" in pipe._repr_html_()


def test_bad_configuration_and_inputs(sim):
    with pytest.raises(ValueError, match="Detector1Pipeline.backend"):
        Detector1Pipeline(backend="torch")
    with pytest.raises(ValueError, match="Detector1Pipeline.skip"):
        Detector1Pipeline(skip=("nonsense",))
    with pytest.raises(ValueError, match="ramp_fit"):
        Detector1Pipeline(ramp_fit=None)
    with pytest.raises(TypeError, match="Detector1Pipeline.jump"):
        Detector1Pipeline(jump=3)
    refs = References.from_simulation(sim)
    with pytest.raises(TypeError, match="Detector1Pipeline.ramp"):
        Detector1Pipeline()(sim.ramp.data, refs)
    with pytest.raises(TypeError, match="References.gain"):
        References(gain=refs.readnoise, readnoise=refs.readnoise)
    bad_gain = GainRef(data=np.ones((5, 5), np.float32))
    with pytest.raises(ValueError, match="GainRef"):
        Detector1Pipeline()(sim.ramp, References(gain=bad_gain, readnoise=refs.readnoise))


def test_references_folder_round_trip(sim, tmp_path):
    refs = References.from_simulation(sim)
    refs.to_dir(tmp_path / "refs")
    again = References.from_dir(tmp_path / "refs")
    np.testing.assert_array_equal(again.gain.data, refs.gain.data)
    np.testing.assert_array_equal(again.superbias.data, refs.superbias.data)
    (tmp_path / "refs" / "gain.asdf").unlink()
    with pytest.raises(FileNotFoundError, match=r"gain\.asdf"):
        References.from_dir(tmp_path / "refs")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        References.from_dir(tmp_path / "nowhere")


def test_map_serial_and_dask_match(tmp_path):
    sims = [simulate_ramp(shape=(32, 32), ngroups=6, cr_rate=1e-4, seed=s) for s in (1, 2, 3)]
    refs = References.from_simulation(sims[0])
    paths = []
    for k, s in enumerate(sims):
        path = tmp_path / f"exp{k}_uncal.fits"
        s.ramp.to_fits(path)
        paths.append(path)
    pipe = Detector1Pipeline()
    serial = pipe.map(paths, refs)
    direct = [pipe(RampModel.from_fits(p), refs) for p in paths]
    for a, b in zip(serial, direct, strict=True):
        np.testing.assert_array_equal(a.rate.data, b.rate.data)
    pytest.importorskip("dask.distributed", reason="the 'dask' extra is not installed")
    distributed = pipe.map(paths, refs, engine="dask", n_workers=2)
    assert len(distributed) == 3
    for a, b in zip(serial, distributed, strict=True):
        np.testing.assert_array_equal(a.rate.data, b.rate.data)
        np.testing.assert_array_equal(a.rate.dq, b.rate.dq)
        np.testing.assert_array_equal(a.rateints.err, b.rateints.err)
    with pytest.raises(ValueError, match="engine"):
        pipe.map(paths, refs, engine="spark")
