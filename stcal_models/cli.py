"""The ``stcal-models`` command: ``detector1``, ``simulate`` and ``info``.

Every failure is one line on stderr and a non-zero exit status; outputs are written to
a temporary name and renamed at the end, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CLIError(Exception):
    """A user-facing error: printed as one line, never as a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stcal-models",
        description="JWST/Roman detector calibration on NumPy or JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d1 = sub.add_parser(
        "detector1",
        help="calibrate an _uncal exposure into a _rate image",
        description="Run saturation, superbias, linearity, dark, jump and ramp fitting.",
    )
    d1.add_argument("input", type=Path, help="_uncal file (.fits JWST layout or .asdf)")
    d1.add_argument("--refs", type=Path, required=True, help="folder with gain.asdf, readnoise.asdf, ...")
    d1.add_argument("--backend", choices=("numpy", "jax"), default="numpy")
    d1.add_argument("--algorithm", choices=("OLS_C", "LIKELY"), default="OLS_C")
    d1.add_argument(
        "--jax-cache", metavar="DIR", default=None,
        help="with --backend jax: keep compiled kernels in DIR so that later runs skip "
             "compilation (default: $STCAL_MODELS_CACHE or ~/.cache/stcal-models/jax; "
             "'none' turns the cache off)",
    )
    d1.add_argument("-o", "--output", type=Path, help="output _rate.fits (default: beside the input)")
    d1.add_argument("--rateints", action="store_true", help="also write the _rateints file")
    d1.add_argument("--fitopt", action="store_true", help="also write the _fitopt ASDF product")
    d1.add_argument("--rejection-threshold", type=float, default=None, help="jump threshold (sigma)")
    d1.add_argument("--skip", action="append", default=[], help="skip a step (repeatable)")
    d1.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    sim = sub.add_parser(
        "simulate",
        help="write a simulated exposure and its references",
        description="Simulate a seeded NIRCam-like exposure with stars, cosmic rays and saturation.",
    )
    sim.add_argument("output", type=Path, help="output _uncal file (.fits or .asdf)")
    sim.add_argument("--refs-out", type=Path, help="folder for the reference files (default: OUTPUT_refs)")
    sim.add_argument("--shape", type=int, nargs=2, default=(256, 256), metavar=("NY", "NX"))
    sim.add_argument("--ngroups", type=int, default=10)
    sim.add_argument("--nints", type=int, default=1)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--cr-rate", type=float, default=5e-5, help="cosmic rays per pixel per second")
    sim.add_argument("--snowballs", type=int, default=0)

    info = sub.add_parser("info", help="summarise a model file", description="Summarise a model file.")
    info.add_argument("path", type=Path, help=".asdf written by stcal-models, or a JWST-layout .fits")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "detector1":
            return _detector1(args)
        if args.command == "simulate":
            return _simulate(args)
        return _info(args)
    except CLIError as exc:
        print(f"stcal-models {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError, TypeError, OSError, ImportError) as exc:
        message = " ".join(str(exc).split())
        print(f"stcal-models {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"stcal-models {args.command}: interrupted", file=sys.stderr)
        return 130


def _detector1(args) -> int:
    from .algorithms.jump import JumpDetection
    from .pipeline import Detector1Pipeline, References, read_ramp, summarise_records

    if not args.input.is_file():
        raise CLIError(f"{args.input}: no such file")
    output = args.output or _rate_name(args.input)
    if not output.parent.exists():
        raise CLIError(f"{output.parent}: output folder does not exist")
    ramp = read_ramp(args.input)
    refs = References.from_dir(args.refs)
    if args.backend == "jax" and args.jax_cache != "none":
        from .backends import enable_compilation_cache

        try:
            enable_compilation_cache(args.jax_cache)
        except OSError as exc:
            raise CLIError(f"--jax-cache: cannot use {args.jax_cache or 'the default cache'}: "
                           f"{exc}") from exc
    ramp_fit = _ramp_fit(args.algorithm, args.fitopt)
    jump = JumpDetection() if args.rejection_threshold is None else JumpDetection(
        rejection_threshold=args.rejection_threshold
    )
    pipeline = Detector1Pipeline(
        jump=jump,
        ramp_fit=ramp_fit,
        backend=args.backend,
        skip=tuple(args.skip),
        progress=not args.quiet,
    )
    result = pipeline(ramp, refs)
    written = [output]
    result.rate.to_fits(output)
    if args.rateints:
        name = output.name
        name = name.replace("_rate", "_rateints") if "_rate" in name else output.stem + "_rateints.fits"
        path = output.with_name(name)
        result.rateints.to_fits(path)
        written.append(path)
    if args.fitopt and result.fitopt is not None:
        path = output.with_name(output.stem.replace("_rate", "") + "_fitopt.asdf")
        result.fitopt.to_asdf(path)
        written.append(path)
    if not args.quiet:
        print(summarise_records(result.record))
        for path in written:
            print(f"wrote {path}")
    return 0


def _ramp_fit(algorithm: str, fitopt: bool):
    if algorithm == "LIKELY":
        from .algorithms.ramp_fitting.likely import LikelyRampFit

        return LikelyRampFit()
    from .algorithms.ramp_fitting.ols import OLSRampFit

    return OLSRampFit(save_opt=fitopt)


def _rate_name(path: Path) -> Path:
    stem = path.name
    for suffix in (".fits", ".asdf"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = stem[: -len("_uncal")] if stem.endswith("_uncal") else stem
    return path.with_name(f"{stem}_rate.fits")


def _simulate(args) -> int:
    from .pipeline import References
    from .simulate import simulate_ramp

    if args.output.suffix.lower() not in (".fits", ".asdf"):
        raise CLIError(f"{args.output}: expected a .fits or .asdf output name")
    if not args.output.parent.exists():
        raise CLIError(f"{args.output.parent}: output folder does not exist")
    if min(args.shape) < 1 or args.ngroups < 1 or args.nints < 1:
        raise CLIError("--shape, --ngroups and --nints must be positive")
    sim = simulate_ramp(
        shape=tuple(args.shape),
        ngroups=args.ngroups,
        nints=args.nints,
        seed=args.seed,
        cr_rate=args.cr_rate,
        snowballs=args.snowballs,
    )
    refs_dir = args.refs_out or args.output.with_name(args.output.stem + "_refs")
    References.from_simulation(sim).to_dir(refs_dir)
    if args.output.suffix.lower() == ".fits":
        sim.ramp.to_fits(args.output)
    else:
        sim.ramp.to_asdf(args.output)
    print(f"wrote {args.output} ({sim.ramp!r}) and references in {refs_dir}")
    return 0


def _info(args) -> int:
    from .dqflags import dq_flag_counts
    from .io.asdf_io import read_model
    from .models import CubeModel, ImageModel, RampModel

    path = args.path
    if not path.is_file():
        raise CLIError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".asdf":
        model = read_model(path)
    elif suffix in (".fits", ".fit", ".fts"):
        model = _read_any_fits(path, (RampModel, ImageModel, CubeModel))
    else:
        raise CLIError(f"{path}: expected a .asdf or .fits file")
    print(repr(model))
    meta = getattr(model, "meta", None)
    if meta is not None:
        for key, value in (meta.to_dict() if hasattr(meta, "to_dict") else {}).items():
            print(f"  {key:<14} {value}")
    for name, array in model.arrays().items():
        print(f"  {name:<14} {tuple(array.shape)} {array.dtype}")
        if name in ("groupdq", "pixeldq", "dq"):
            counts = dq_flag_counts(array)
            if counts:
                print("    " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    return 0


def _read_any_fits(path: Path, classes):
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            ndim = hdul["SCI"].data.ndim if "SCI" in hdul and hdul["SCI"].data is not None else None
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as FITS ({type(exc).__name__}: {exc})") from exc
    for cls, dims in zip(classes, (4, 2, 3), strict=True):
        if ndim == dims:
            return cls.from_fits(path)
    raise ValueError(f"{path}: expected a SCI extension with 2, 3 or 4 dimensions, got {ndim}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
