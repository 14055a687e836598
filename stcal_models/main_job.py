"""Main job: simulate a NIRCam-like exposure and calibrate it with ``Detector1Pipeline``.

``python -m stcal_models.main_job --out DIR`` (what ``make run`` does) simulates a seeded
1x20x2048x2048 exposure with saturated stars, cosmic rays and a snowball, runs
saturation -> superbias -> linearity -> dark -> jump -> ramp fit on the chosen backend,
writes ``DIR/example_rate.fits``, ``DIR/example_rateints.fits`` and
``DIR/example_summary.png`` (rate image, DQ map by flag, a few ramps with their fits and
jumps), and prints the time per step, flags found against the injected truth and the
slope error against the true flux.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dqflags import DQ
from .models import RampFitResult
from .simulate import SimulatedExposure, simulate_ramp

__all__ = ["main"]

CR_RATE = 5e-5  # hits per pixel per second


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stcal_models.main_job",
        description=(
            "Simulate a NIRCam-like exposure (stars, cosmic rays, a snowball), calibrate it "
            "with Detector1Pipeline and write OUT/example_rate.fits, "
            "OUT/example_rateints.fits and OUT/example_summary.png."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        metavar=("NY", "NX"),
        default=(2048, 2048),
        help="frame size in pixels (default 2048 2048)",
    )
    parser.add_argument(
        "--ngroups", type=int, default=20, help="groups per integration (default 20)"
    )
    parser.add_argument("--nints", type=int, default=1, help="integrations (default 1)")
    parser.add_argument(
        "--backend", choices=("numpy", "jax"), default="numpy", help="array backend (default numpy)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the main job; returns the process exit status (0 on success)."""
    from .pipeline import Detector1Pipeline, References

    parser = _parser()
    args = parser.parse_args(None if argv is None else list(argv))
    ny, nx = args.shape
    if ny < 16 or nx < 16:
        parser.error(f"--shape: expected at least 16 x 16 pixels, got {ny} x {nx}")
    if args.ngroups < 3 or args.nints < 1:
        parser.error("--ngroups must be >= 3 and --nints >= 1")
    args.out.mkdir(parents=True, exist_ok=True)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    sim = simulate_ramp(
        shape=(ny, nx),
        nints=args.nints,
        ngroups=args.ngroups,
        seed=args.seed,
        cr_rate=CR_RATE,
        snowballs=1,
        n_stars=max(5, ny * nx // 40000),
        nonlinearity=2e-6,
    )
    timings["simulate"] = time.perf_counter() - start
    refs = References.from_simulation(sim)
    pipeline = Detector1Pipeline(backend=args.backend, progress=True)
    start = time.perf_counter()
    result, calibrated = pipeline.run(sim.ramp, refs)
    timings["pipeline (total)"] = time.perf_counter() - start

    rate_path = args.out / "example_rate.fits"
    rateints_path = args.out / "example_rateints.fits"
    png_path = args.out / "example_summary.png"
    result.rate.to_fits(rate_path)
    result.rateints.to_fits(rateints_path)
    start = time.perf_counter()
    save_summary_figure(sim, result, png_path, calibrated)
    timings["plot"] = time.perf_counter() - start
    print(_summary_table(sim, result, timings, args.backend, rate_path, rateints_path, png_path))
    return 0


def interesting_pixels(sim: SimulatedExposure) -> dict[str, tuple[int, int]]:
    """A few pixels worth plotting: a cosmic ray, a saturated star, a snowball, plain sky."""
    truth = sim.truth
    saturated_any = truth.saturated[0].any(axis=0)
    jumped_any = truth.jump_mask[0].any(axis=0)
    pixels: dict[str, tuple[int, int]] = {}
    hits = truth.jumps[(truth.jumps["integration"] == 0) & (truth.jumps["group"] > 0)]
    if len(hits):
        clean = ~saturated_any[hits["y"], hits["x"]]
        pool = hits[clean] if clean.any() else hits
        best = pool[np.argmax(pool["amplitude"])]
        pixels["cosmic ray"] = (int(best["y"]), int(best["x"]))
    if saturated_any.any():
        # The saturated pixel whose ramp saturates closest to mid-integration.
        ngroups = truth.saturated.shape[1]
        first = np.where(saturated_any, np.argmax(truth.saturated[0], axis=0), 10 * ngroups)
        y, x = np.unravel_index(int(np.argmin(np.abs(first - ngroups // 2))), first.shape)
        pixels["saturated star"] = (int(y), int(x))
    for integ, _group, y, x, _radius in truth.snowballs:
        if integ == 0:
            pixels["snowball"] = (int(y), int(x))
            break
    ny, nx = truth.flux.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    quiet = (truth.flux <= np.median(truth.flux)) & ~saturated_any & ~jumped_any
    distance = np.where(quiet, np.hypot(yy - ny / 2, xx - nx / 2), np.inf)
    y, x = np.unravel_index(int(np.argmin(distance)), distance.shape)
    pixels["sky"] = (int(y), int(x))
    return pixels


def save_summary_figure(
    sim: SimulatedExposure, result: RampFitResult, path: str | Path, calibrated=None
) -> None:
    """Rate image, DQ map by flag, and ramps of interesting pixels with their fits.

    ``calibrated`` is the ramp that was fitted (its GROUPDQ colours the ramps); the raw
    simulated ramp is drawn when it is not given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .display import plot_dq, plot_ramp

    pixels = interesting_pixels(sim)
    ncols = max(3, len(pixels))
    fig = plt.figure(figsize=(4.6 * ncols, 9.0))
    grid = fig.add_gridspec(2, ncols)
    ax_rate = fig.add_subplot(grid[0, 0])
    result.rate.plot(ax=ax_rate, title="rate [DN/s] (ZScale + asinh)")
    ax_dq = fig.add_subplot(grid[0, 1])
    plot_dq(result.rate.dq, ax=ax_dq, title="rate DQ (first flag per pixel)")
    ax_err = fig.add_subplot(grid[0, 2])
    good = np.isfinite(result.rate.data) & (
        (result.rate.dq & int(DQ.DO_NOT_USE | DQ.SATURATED)) == 0
    )
    pull = (result.rate.data - sim.truth.flux)[good] / result.rate.err[good]
    ax_err.hist(np.clip(pull, -6, 6), bins=80, color="0.4")
    ax_err.set_title(f"(rate - truth) / err: median {np.median(pull):+.3f}, std {np.std(pull):.3f}")
    ax_err.set_xlabel("pull")
    for k, (label, (y, x)) in enumerate(pixels.items()):
        ax = fig.add_subplot(grid[1, k])
        plot_ramp(calibrated if calibrated is not None else sim.ramp, y, x, result=result, ax=ax)
        ax.set_title(f"{label} ({y}, {x})\n" + ax.get_title(), fontsize=8)
        for py, px in [(y, x)]:
            ax_rate.plot(px, py, "o", mfc="none", ms=10)
    fig.tight_layout()
    from .io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def _summary_table(
    sim: SimulatedExposure,
    result: RampFitResult,
    timings: dict[str, float],
    backend: str,
    *paths: Path,
) -> str:
    truth = sim.truth
    nints, ngroups, ny, nx = sim.ramp.shape
    dq = result.rate.dq
    jumps = truth.jumps
    readnoise = float(np.mean(truth.readnoise))
    hits = (np.asarray(jumps["group"]) > 0) & (np.asarray(jumps["amplitude"]) > 10 * readnoise)
    ys, xs = np.asarray(jumps["y"])[hits], np.asarray(jumps["x"])[hits]
    unsat = ~truth.saturated.any(axis=(0, 1))[ys, xs]
    found = (dq[ys, xs] & int(DQ.JUMP_DET)) != 0
    saturated_truth = truth.saturated.any(axis=(0, 1))
    sat_found = (dq[saturated_truth] & int(DQ.SATURATED)) != 0
    good = np.isfinite(result.rate.data) & ((dq & int(DQ.DO_NOT_USE | DQ.SATURATED)) == 0)
    error = (result.rate.data - truth.flux)[good]
    pull = error / result.rate.err[good]
    rows = [
        ("shape (nints, ngroups, ny, nx)", f"{nints}x{ngroups}x{ny}x{nx}"),
        ("backend", backend),
        ("cosmic rays injected", f"{len(jumps):,}"),
        (
            "  > 10 sigma, unsaturated, flagged",
            f"{found[unsat].sum():,} / {unsat.sum():,}"
            + (f" ({100 * found[unsat].mean():.1f}%)" if unsat.any() else ""),
        ),
        ("pixels flagged JUMP_DET", f"{int(np.count_nonzero(dq & int(DQ.JUMP_DET))):,}"),
        ("saturated pixels (truth)", f"{int(saturated_truth.sum()):,}"),
        ("  flagged SATURATED", f"{int(sat_found.sum()):,}"),
        ("slope error vs truth: median [DN/s]", f"{np.median(error):+.4f}"),
        ("slope pull: median, std", f"{np.median(pull):+.3f}, {np.std(pull):.3f}"),
    ]
    for name, record in result.record:
        text = "skipped: " + record.skipped if record.skipped else f"{record.seconds:.2f}"
        rows.append((f"time: {name} [s]", text))
    rows += [(f"time: {k} [s]", f"{v:.2f}") for k, v in timings.items()]
    rows += [(f"wrote {p.name}", f"{p.stat().st_size / 1e6:.1f} MB") for p in paths]
    width = max(len(k) for k, _ in rows) + 2
    line = "-" * (width + 24)
    body = "\n".join(f"{k:<{width}}{v:>24}" for k, v in rows)
    return f"stcal-models main job: Detector1 on a simulated exposure\n{line}\n{body}\n{line}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
