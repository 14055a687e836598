"""Row-chunk execution shared by the ramp fits: engines, progress and output assembly."""

from __future__ import annotations

import numpy as np
import pytest

from stcal_models.algorithms.ramp_fitting.chunks import RowAssembler, run_row_chunks
from stcal_models.backends import to_numpy


def _parts(to_xp, frame, chunks):
    """Chunk outputs shaped like the fits': nested dicts with a leading axis and None."""
    out = []
    for r0, r1 in chunks:
        out.append((r0, {
            "rate": {"data": to_xp(frame[r0:r1]), "missing": None},
            "cube": to_xp(np.stack([frame[r0:r1] * 2, frame[r0:r1] + 1]).astype(np.uint8)),
        }))
    return out


def test_assembler_fills_full_arrays_in_any_order(xp, to_xp):
    frame = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    # overlapping last chunk (rows 4..7 written after 3..6), put out of order
    parts = _parts(to_xp, frame, [(0, 3), (4, 7), (3, 6)])
    assembler = RowAssembler(xp, 7)
    for start, part in parts:
        assembler.put(part, start)
    full = assembler.result()
    np.testing.assert_array_equal(np.asarray(to_numpy(full["rate"]["data"])), frame)
    assert full["rate"]["missing"] is None
    cube = np.asarray(to_numpy(full["cube"]))
    assert cube.dtype == np.uint8 and cube.shape == (2, 7, 3)
    np.testing.assert_array_equal(cube[1], (frame + 1).astype(np.uint8))
    # the chunk outputs themselves are left as they were
    np.testing.assert_array_equal(np.asarray(to_numpy(parts[0][1]["rate"]["data"])), frame[:3])


def test_assembler_without_chunks_raises():
    with pytest.raises(RuntimeError, match="no chunk"):
        RowAssembler(np, 4).result()


@pytest.mark.parametrize("engine", ["serial", "dask"])
def test_run_row_chunks_keeps_order_or_collects(engine):
    if engine == "dask":
        pytest.importorskip("dask")
    chunks = [(0, 2), (2, 4), (4, 5)]
    assert run_row_chunks(lambda a, b: (a, b), chunks, engine=engine) == chunks
    seen = []
    assert run_row_chunks(lambda a, b: b - a, chunks, engine=engine, collect=seen.append) == []
    assert sorted(seen) == [1, 2, 2]


def test_run_row_chunks_rejects_unknown_engine():
    with pytest.raises(ValueError, match="Fit.engine"):
        run_row_chunks(lambda a, b: None, [(0, 1)], engine="ray", owner="Fit")


@pytest.mark.parametrize("fit", ["OLSRampFit", "LikelyRampFit", "Cas22RampFit"])
def test_dask_engine_without_dask_names_the_extra(monkeypatch, fit):
    import sys

    from stcal_models.algorithms import ramp_fitting

    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=rf"{fit}\(engine='dask'\) needs dask"):
        getattr(ramp_fitting, fit)(engine="dask")
