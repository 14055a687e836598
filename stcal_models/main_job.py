"""Example job: simulate an exposure, write and re-read it, and draw a summary figure.

Run ``python -m stcal_models.main_job --out DIR`` (``make run`` uses ``--out out``).  It
simulates a ramp with stars, cosmic rays and a snowball, writes ``DIR/example_ramp.asdf``,
reads it back and checks it is identical, saves ``DIR/example_summary.png`` and prints a
short summary table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .models import RampModel
from .simulate import SimulatedExposure, simulate_ramp

__all__ = ["main"]

CR_RATE = 5e-5  # hits per pixel per second


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stcal_models.main_job",
        description=(
            "Simulate a JWST-like ramp (stars, cosmic rays, a snowball), write it to "
            "OUT/example_ramp.asdf, read it back, and save OUT/example_summary.png."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        metavar=("NY", "NX"),
        default=(512, 512),
        help="frame size in pixels (default 512 512)",
    )
    parser.add_argument(
        "--ngroups", type=int, default=10, help="groups per integration (default 10)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example job; returns the process exit status (0 on success).

    Raises
    ------
    RuntimeError
        If the ramp read back from ASDF differs from the one written.
    """
    parser = _parser()
    args = parser.parse_args(None if argv is None else list(argv))
    ny, nx = args.shape
    if ny < 16 or nx < 16:
        parser.error(f"--shape: expected at least 16 16, got {ny} {nx}")
    if args.ngroups < 2:
        parser.error(f"--ngroups: expected >= 2, got {args.ngroups}")
    if args.seed < 0:
        parser.error(f"--seed: expected >= 0, got {args.seed}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    sim = simulate_ramp(
        shape=(ny, nx),
        ngroups=args.ngroups,
        seed=args.seed,
        n_stars=max(5, (ny * nx) // 8000),
        cr_rate=CR_RATE,
        snowballs=1,
    )
    timings["simulate"] = time.perf_counter() - t0

    ramp_path = out / "example_ramp.asdf"
    t0 = time.perf_counter()
    sim.ramp.to_asdf(ramp_path)
    timings["write ASDF"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = RampModel.from_asdf(ramp_path)
    timings["read ASDF"] = time.perf_counter() - t0
    _check_identical(sim.ramp, back)

    png_path = out / "example_summary.png"
    t0 = time.perf_counter()
    save_summary_figure(sim, png_path)
    timings["plot PNG"] = time.perf_counter() - t0

    print(_summary_table(sim, timings, ramp_path, png_path))
    return 0


def _check_identical(written: RampModel, read: RampModel) -> None:
    for name in written._array_names:
        a, b = getattr(written, name), getattr(read, name)
        if (a is None) != (b is None):
            raise RuntimeError(f"ASDF round trip: field {name!r} present on one side only")
        if a is not None and (a.dtype != b.dtype or not np.array_equal(a, b)):
            raise RuntimeError(f"ASDF round trip: field {name!r} differs after reading back")
    if written.meta != read.meta:
        raise RuntimeError(f"ASDF round trip: meta differs ({written.meta} vs {read.meta})")


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


def save_summary_figure(sim: SimulatedExposure, path: str | Path) -> None:
    """Three panels: last group (ZScale + asinh), injected events, ramps of a few pixels."""
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    ramp, truth = sim.ramp, sim.truth
    last = np.asarray(ramp.data[0, -1])
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_img, ax_map, ax_ramp = fig.subplots(1, 3)

    norm = ImageNormalize(last, interval=ZScaleInterval(), stretch=AsinhStretch())
    im = ax_img.imshow(last, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    fig.colorbar(im, ax=ax_img, fraction=0.046, pad=0.02, label="DN")
    ax_img.set_title(f"last group (integration 1, group {ramp.ngroups})", fontsize=10)

    events = np.zeros(last.shape, dtype=np.int8)
    events[truth.jump_mask[0].any(axis=0)] = 1
    events[truth.saturated[0].any(axis=0)] += 2
    colours = ["#202020", "#ff8c00", "#3a7bd5", "#c03fd0"]
    ax_map.imshow(
        events,
        origin="lower",
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=3.5,
        interpolation="nearest",
    )
    ax_map.legend(
        handles=[
            Patch(color=colours[1], label="jump (CR / snowball)"),
            Patch(color=colours[2], label="saturated"),
            Patch(color=colours[3], label="both"),
        ],
        loc="upper right",
        fontsize=8,
        framealpha=0.8,
    )
    ax_map.set_title(
        f"injected: {len(truth.jumps)} cosmic rays, {len(truth.snowballs)} snowball(s)", fontsize=10
    )

    times = np.asarray(ramp.meta.resultant_times)
    for label, (y, x) in interesting_pixels(sim).items():
        values = np.asarray(ramp.data[0, :, y, x])
        line = ax_ramp.plot(times, values, marker="o", ms=3, label=f"{label} ({x}, {y})")[0]
        sat = truth.saturated[0, :, y, x]
        if sat.any():
            ax_ramp.plot(times[sat], values[sat], "x", color=line.get_color(), ms=7)
        for ax in (ax_img, ax_map):
            ax.plot(x, y, "o", mfc="none", mec=line.get_color(), ms=10)
    ax_ramp.set_yscale("log")
    ax_ramp.set_xlabel("time since reset [s]")
    ax_ramp.set_ylabel("DN")
    ax_ramp.set_title("ramps (x = saturated group)", fontsize=10)
    ax_ramp.legend(fontsize=8)
    for ax in (ax_img, ax_map):
        ax.set_xlabel("x [pixel]")
        ax.set_ylabel("y [pixel]")
    fig.savefig(Path(path), dpi=90, format="png")


def _summary_table(sim: SimulatedExposure, timings: dict[str, float], *paths: Path) -> str:
    ramp, truth = sim.ramp, sim.truth
    rows = [
        ("shape (nints, ngroups, ny, nx)", "x".join(str(s) for s in ramp.shape)),
        ("group time [s]", f"{ramp.meta.group_time:.3f}"),
        ("cosmic rays injected", f"{len(truth.jumps)}"),
        ("snowballs injected", f"{len(truth.snowballs)}"),
        ("pixels with a jump", f"{int(truth.jump_mask.any(axis=(0, 1)).sum())}"),
        ("saturated pixels (any group)", f"{int(truth.saturated.any(axis=(0, 1)).sum())}"),
    ]
    rows += [(f"time: {name} [s]", f"{seconds:.2f}") for name, seconds in timings.items()]
    rows += [(f"wrote {p.name}", f"{p.stat().st_size / 1e6:.1f} MB") for p in paths]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 16)
    body = "\n".join(f"{k:<{width}}  {v:>12}" for k, v in rows)
    return f"{line}\nstcal-models example job\n{line}\n{body}\n{line}"


if __name__ == "__main__":
    raise SystemExit(main())
