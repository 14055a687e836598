"""Steps composed into pipelines: ``Detector1Pipeline`` (uncal ramps -> rate images)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .algorithms.base import Step, check_choice
from .algorithms.dark_current import DarkCurrent
from .algorithms.jump import JumpDetection
from .algorithms.linearity import Linearity
from .algorithms.ramp_fitting.ols import OLSRampFit
from .algorithms.saturation import Saturation
from .algorithms.superbias import Superbias
from .backends import to_numpy
from .dqflags import dq_flag_counts
from .models import (
    DarkRef,
    GainRef,
    LinearityRef,
    RampFitResult,
    RampModel,
    ReadnoiseRef,
    SaturationRef,
    SuperbiasRef,
)

__all__ = ["Detector1Pipeline", "References", "StepRecord"]

STEP_ORDER = ("saturation", "superbias", "linearity", "dark_current", "jump", "ramp_fit")
_REF_TYPES: dict[str, type] = {
    "gain": GainRef,
    "readnoise": ReadnoiseRef,
    "saturation": SaturationRef,
    "superbias": SuperbiasRef,
    "linearity": LinearityRef,
    "dark": DarkRef,
}


@dataclasses.dataclass(frozen=True, eq=False)
class References:
    """The reference models a Detector1 run needs; ``gain`` and ``readnoise`` are required.

    A folder of references holds ``gain.asdf``, ``readnoise.asdf`` and optionally
    ``saturation.asdf``, ``superbias.asdf``, ``linearity.asdf``, ``dark.asdf``
    (see :meth:`from_dir` / :meth:`to_dir`).
    """

    gain: GainRef
    readnoise: ReadnoiseRef
    saturation: SaturationRef | None = None
    superbias: SuperbiasRef | None = None
    linearity: LinearityRef | None = None
    dark: DarkRef | None = None

    def __post_init__(self) -> None:
        for name, cls in _REF_TYPES.items():
            value = getattr(self, name)
            if value is None and name in ("gain", "readnoise"):
                raise ValueError(f"References.{name}: required, got None")
            if value is not None and not isinstance(value, cls):
                raise TypeError(
                    f"References.{name}: expected {cls.__name__}, got {type(value).__name__}"
                )

    def check(self, ramp: RampModel) -> None:
        """Raise a clear error unless every reference covers ``ramp``'s (sub)array."""
        frame = tuple(ramp.shape[-2:])
        for name in _REF_TYPES:
            value = getattr(self, name)
            if value is not None:
                value.for_science(ramp.meta, frame)

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> References:
        """Read ``<name>.asdf`` files from ``folder`` (missing optional ones are None)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: reference folder does not exist")
        found = {}
        for name, ref_cls in _REF_TYPES.items():
            path = folder / f"{name}.asdf"
            if path.is_file():
                found[name] = ref_cls.from_asdf(path)
        missing = [n for n in ("gain", "readnoise") if n not in found]
        if missing:
            raise FileNotFoundError(
                f"{folder}: missing required reference file(s) {', '.join(m + '.asdf' for m in missing)}"
            )
        return cls(**found)

    def to_dir(self, folder: str | os.PathLike) -> None:
        """Write every present reference as ``<name>.asdf`` into ``folder`` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in _REF_TYPES:
            value = getattr(self, name)
            if value is not None:
                value.to_asdf(folder / f"{name}.asdf")

    @classmethod
    def from_simulation(cls, sim) -> References:
        """References matching a :class:`~stcal_models.simulate.SimulatedExposure`."""
        refs = sim.refs
        ny, nx = sim.ramp.shape[-2:]
        bias = np.broadcast_to(np.asarray(sim.truth.bias, dtype=np.float32), (ny, nx)).copy()
        return cls(
            gain=refs.gain,
            readnoise=refs.readnoise,
            saturation=refs.saturation,
            superbias=SuperbiasRef(data=bias),
            linearity=refs.linearity,
            dark=refs.dark,
        )


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """What one pipeline step did: its parameters, wall time and the DQ flags set after it."""

    step: str
    parameters: Mapping[str, Any]
    seconds: float
    flag_counts: Mapping[str, int]
    skipped: str = ""

    def __str__(self) -> str:
        if self.skipped:
            return f"skipped ({self.skipped})"
        flags = ", ".join(f"{k}={v:,}" for k, v in self.flag_counts.items()) or "no flags"
        return f"{self.seconds:.2f} s; {flags}"


@dataclasses.dataclass(frozen=True, repr=False)
class Detector1Pipeline(Step):
    """Saturation -> superbias -> linearity -> dark current -> jump -> ramp fit.

    Each step is a configured algorithm object; ``None`` (or its name in ``skip``)
    skips it.  Steps whose reference is absent from :class:`References` are skipped
    and say so in the record.  The data move to ``backend`` once at the start and
    come back to NumPy only in the returned result.

    Examples
    --------
    >>> pipe = Detector1Pipeline(jump=JumpDetection(rejection_threshold=5))  # doctest: +SKIP
    >>> result = pipe(ramp, References.from_dir("refs"))  # doctest: +SKIP
    """

    saturation: Saturation | None = dataclasses.field(default_factory=Saturation)
    superbias: Superbias | None = dataclasses.field(default_factory=Superbias)
    linearity: Linearity | None = dataclasses.field(default_factory=Linearity)
    dark_current: DarkCurrent | None = dataclasses.field(default_factory=DarkCurrent)
    jump: JumpDetection | None = dataclasses.field(default_factory=JumpDetection)
    ramp_fit: Any = dataclasses.field(default_factory=OLSRampFit)
    backend: str = "numpy"
    skip: tuple[str, ...] = ()
    progress: bool = False

    def __post_init__(self) -> None:
        check_choice("Detector1Pipeline", "backend", self.backend, ("numpy", "jax"))
        if isinstance(self.skip, str):
            object.__setattr__(self, "skip", (self.skip,))
        for name in self.skip:
            check_choice("Detector1Pipeline", "skip", name, STEP_ORDER)
        if "ramp_fit" in self.skip or self.ramp_fit is None:
            raise ValueError("Detector1Pipeline.ramp_fit: the ramp fit cannot be skipped")
        for name in STEP_ORDER:
            step = getattr(self, name)
            if step is not None and not callable(step):
                raise TypeError(
                    f"Detector1Pipeline.{name}: expected a callable step or None, "
                    f"got {type(step).__name__}"
                )

    # ------------------------------------------------------------------ running
    def __call__(
        self,
        ramp: RampModel,
        refs: References,
        *,
        callback: Callable[[str, StepRecord], None] | None = None,
    ) -> RampFitResult:
        """Run the enabled steps on ``ramp`` and return the ramp-fit result with a record."""
        return self.run(ramp, refs, callback=callback)[0]

    def run(
        self,
        ramp: RampModel,
        refs: References,
        *,
        callback: Callable[[str, StepRecord], None] | None = None,
    ) -> tuple[RampFitResult, RampModel]:
        """Like calling the pipeline, but also return the calibrated ramp (NumPy) that was fitted."""
        if not isinstance(ramp, RampModel):
            raise TypeError(f"Detector1Pipeline.ramp: expected RampModel, got {type(ramp).__name__}")
        if not isinstance(refs, References):
            raise TypeError(f"Detector1Pipeline.refs: expected References, got {type(refs).__name__}")
        refs.check(ramp)
        current = ramp.to_backend(self.backend)
        records: list[StepRecord] = []
        with _progress(len(STEP_ORDER), self.progress) as bar:
            result, current = self._run_steps(current, refs, records, bar, callback)
        result = _to_numpy_result(result)
        return result.replace(record=tuple((r.step, r) for r in records)), current.to_backend("numpy")

    def _run_steps(self, current, refs, records, bar, callback):
        dark_current = None
        result = None
        for name in STEP_ORDER:
            step = getattr(self, name)
            reason = self._skip_reason(name, step, refs)
            if reason:
                records.append(StepRecord(name, {}, 0.0, {}, skipped=reason))
            else:
                start = time.perf_counter()
                if name == "ramp_fit":
                    result = step(current, refs.gain, refs.readnoise, dark_current=dark_current)
                    _block(result)
                    counts = dq_flag_counts(to_numpy(result.rate.dq))
                else:
                    current, extra = self._run_step(name, step, current, refs)
                    if extra is not None:
                        dark_current = extra
                    _block(current)
                    counts = dq_flag_counts(to_numpy(current.groupdq))
                records.append(
                    StepRecord(name, _parameters(step), time.perf_counter() - start, counts)
                )
            if callback is not None:
                callback(name, records[-1])
            bar.update(1)
        return result, current

    def _skip_reason(self, name: str, step, refs: References) -> str:
        if step is None or name in self.skip:
            return "disabled"
        needs = {
            "saturation": "saturation",
            "superbias": "superbias",
            "linearity": "linearity",
            "dark_current": "dark",
        }.get(name)
        if needs is not None and getattr(refs, needs) is None:
            return f"no {needs} reference"
        return ""

    @staticmethod
    def _run_step(name: str, step, ramp: RampModel, refs: References):
        if name == "saturation":
            bias = refs.superbias
            return step(ramp, refs.saturation, bias=bias), None
        if name == "superbias":
            return step(ramp, refs.superbias), None
        if name == "linearity":
            return step(ramp, refs.linearity), None
        if name == "dark_current":
            out = step(ramp, refs.dark)
            return out.ramp, out.average_dark_current
        if name == "jump":
            return step(ramp, refs.gain, refs.readnoise), None
        raise ValueError(f"Detector1Pipeline: unknown step {name!r}")

    # ------------------------------------------------------------------ many exposures
    def map(
        self,
        inputs: Sequence[str | os.PathLike | RampModel],
        refs: References,
        *,
        engine: str = "serial",
        scheduler: str | None = None,
        n_workers: int = 2,
    ) -> list[RampFitResult]:
        """Run the pipeline on many exposures (paths to ``_uncal`` FITS/ASDF files or models).

        ``engine="dask"`` distributes one exposure per task with ``dask.distributed``:
        a ``LocalCluster`` of ``n_workers`` processes by default, or the scheduler at
        ``scheduler`` (an address such as ``"tcp://host:8786"``).  Results come back in
        input order and equal the serial loop's.
        """
        check_choice("Detector1Pipeline.map", "engine", engine, ("serial", "dask"))
        items = list(inputs)
        if engine == "serial":
            return [_run_one(self, item, refs) for item in items]
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ImportError(
                "Detector1Pipeline.map(engine='dask') needs the 'dask' extra: "
                "pip install 'stcal-models[dask]'"
            ) from exc
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster)
        else:
            client = Client(scheduler)
        try:
            futures = [client.submit(_run_one, self, item, refs, pure=False) for item in items]
            return client.gather(futures)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def read_ramp(path: str | os.PathLike) -> RampModel:
    """Read a ramp from ``.fits`` (JWST ``_uncal`` layout) or ``.asdf``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".fits", ".fit", ".fts"):
        return RampModel.from_fits(path)
    if suffix == ".asdf":
        return RampModel.from_asdf(path)
    raise ValueError(f"{path}: expected a .fits or .asdf file, got {suffix or 'no extension'!r}")


def _run_one(pipeline: Detector1Pipeline, item, refs: References) -> RampFitResult:
    ramp = item if isinstance(item, RampModel) else read_ramp(item)
    return pipeline(ramp, refs)


def _parameters(step) -> dict[str, Any]:
    if isinstance(step, Step):
        return step.parameters()
    return {}


def _block(value) -> None:
    """Wait for asynchronous JAX work so that step timings are honest."""
    import jax

    jax.block_until_ready(jax.tree_util.tree_leaves(value))


def _to_numpy_result(result: RampFitResult) -> RampFitResult:
    fitopt = result.fitopt.to_backend("numpy") if result.fitopt is not None else None
    return result.replace(
        rate=result.rate.to_backend("numpy"),
        rateints=result.rateints.to_backend("numpy"),
        fitopt=fitopt,
        chisq=None if result.chisq is None else to_numpy(result.chisq),
        chisq_ints=None if result.chisq_ints is None else to_numpy(result.chisq_ints),
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Detector1", unit="step", leave=False)


def summarise_records(records: Iterable[tuple[str, StepRecord]]) -> str:
    """A plain-text table of a result's pipeline record."""
    lines = [f"{'step':<14}{'time [s]':>10}  flags after the step"]
    for name, record in records:
        if record.skipped:
            lines.append(f"{name:<14}{'-':>10}  skipped ({record.skipped})")
            continue
        flags = ", ".join(f"{k}={v:,}" for k, v in record.flag_counts.items()) or "none"
        lines.append(f"{name:<14}{record.seconds:>10.2f}  {flags}")
    return "\n".join(lines)
