"""``StepTuner``: sliders for a step's parameters, re-run on a cutout, show what changes."""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..algorithms.base import Step
from ..backends import to_numpy
from ..display import image_norm
from ..dqflags import dq_flag_counts
from ..models import CubeModel, ImageModel, RampFitResult, RampModel
from ._common import WidgetBase, html_table, render_png
from ._common import add_classes as _classes

__all__ = ["StepTuner"]

_OWNER = "StepTuner"


class StepTuner(WidgetBase):
    """Tune a step's parameters interactively on a small cutout.

    The step runs once with its given parameters (the *baseline*); every change of a
    control re-runs it with the new parameters and shows the output next to what changed
    against the baseline: flag counts per DQ flag and an image of the difference (flagged
    groups per pixel for steps returning a ramp, rate difference for ramp fits).

    Parameters
    ----------
    step : Step
        A step instance (a frozen dataclass); its values are the baseline.
    ramp_cutout : RampModel
        Input of the step; keep it small (e.g. 32×32 pixels, see
        :func:`stcal_models.widgets.cutout`) so that each run is quick.
    *refs : reference models
        Passed on to the step after the ramp.
    params : mapping, optional
        ``{name: (min, max)}`` or ``{name: (min, max, step)}`` for the sliders to show;
        ``None`` values pick a range from the default.  Without ``params`` every numeric
        or boolean field of the step gets a control.

    Attributes
    ----------
    widget : ipywidgets.VBox
    controls : dict[str, ipywidgets widget]
        One slider/checkbox per tuned parameter.
    baseline, output : model
        Step outputs with the original and with the current parameters.
    current_step : Step
        The step with the current parameters.
    error : str or None
        Why the last run failed (invalid parameter value), shown in the status line.
    """

    def __init__(
        self,
        step: Step,
        ramp_cutout: RampModel,
        *refs: Any,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        import ipywidgets as w

        if not isinstance(step, Step) or not dataclasses.is_dataclass(step):
            raise TypeError(f"{_OWNER}.step: expected a Step instance, got {type(step).__name__}")
        if not isinstance(ramp_cutout, RampModel):
            raise TypeError(
                f"{_OWNER}.ramp_cutout: expected RampModel, got {type(ramp_cutout).__name__}"
            )
        self.step = step
        self.ramp = ramp_cutout
        self.refs = refs
        self.controls = self._make_controls(step, params)
        self.status = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(width="760px"))
        self.table = w.HTML()
        self.reset_button = w.Button(description="reset", layout=w.Layout(width="90px"))
        self.reset_button.on_click(lambda _: self.reset())
        self.error: str | None = None
        self._holding = False
        start = time.perf_counter()
        self.baseline = step(ramp_cutout, *refs)
        self._baseline_seconds = time.perf_counter() - start
        self.output = self.baseline
        self.current_step = step
        self.last_seconds = self._baseline_seconds
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.widget = w.VBox(
            [
                w.HTML(
                    f"<b>{html.escape(type(step).__name__)}</b> on a "
                    f"{'×'.join(map(str, ramp_cutout.shape))} cutout"
                ),
                w.HBox([w.VBox(list(self.controls.values())), self.reset_button]),
                self.status,
                self.image,
                self.table,
            ]
        )
        _classes(
            (self.widget, "stm-step-tuner"),
            (self.image, "stm-image"),
            (self.table, "stm-counts"),
            (self.status, "stm-status"),
        )
        self._show()

    # ------------------------------------------------------------------ public API
    def values(self) -> dict[str, Any]:
        """Current parameter values of the controls."""
        out = {}
        for name, control in self.controls.items():
            value = control.value
            default = getattr(self.step, name)
            if isinstance(default, int) and not isinstance(default, bool):
                value = int(value)
            out[name] = value
        return out

    def set_params(self, **values: Any) -> None:
        """Set controls by parameter name and re-run once.

        Values outside a slider's range widen the range first.

        Raises
        ------
        ValueError
            If a name is not one of the tuned parameters.
        """
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(
                f"{_OWNER}.set_params: expected names among {sorted(self.controls)}, "
                f"got {sorted(unknown)}"
            )
        self._holding = True
        try:
            for name, value in values.items():
                control = self.controls[name]
                if hasattr(control, "max") and not isinstance(value, bool):
                    control.max = max(control.max, value)
                    control.min = min(control.min, value)
                control.value = value
        finally:
            self._holding = False
        self.run()

    def reset(self) -> None:
        """Back to the baseline parameters."""
        self.set_params(**{name: getattr(self.step, name) for name in self.controls})

    def run(self) -> None:
        """Re-run the step with the controls' values and refresh the display."""
        try:
            step = dataclasses.replace(self.step, **self.values())
        except (TypeError, ValueError) as exc:
            self.error = str(exc)
            self._show()
            return
        self.error = None
        start = time.perf_counter()
        self.output = step(self.ramp, *self.refs)
        self.last_seconds = time.perf_counter() - start
        self.current_step = step
        self._show()

    def changes(self) -> dict[str, tuple[int, int]]:
        """Flag counts that differ from the baseline: ``{"groupdq JUMP_DET": (before, now)}``."""
        before, now = _flag_summary(self.baseline), _flag_summary(self.output)
        return {
            k: (before.get(k, 0), now.get(k, 0))
            for k in sorted(set(before) | set(now))
            if before.get(k, 0) != now.get(k, 0)
        }

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _make_controls(step: Step, params: Mapping[str, Any] | None) -> dict[str, Any]:
        import ipywidgets as w

        fields = {f.name: getattr(step, f.name) for f in dataclasses.fields(step)}
        if params is None:
            names = [n for n, v in fields.items() if isinstance(v, (bool, int, float))]
            params = dict.fromkeys(names)
        controls = {}
        style = {"description_width": "190px"}
        layout = w.Layout(width="520px")
        for name, spec in params.items():
            if name not in fields:
                raise ValueError(
                    f"{_OWNER}.params: expected parameter names of {type(step).__name__} "
                    f"({', '.join(fields)}), got {name!r}"
                )
            value = fields[name]
            if isinstance(value, bool):
                controls[name] = w.Checkbox(value=value, description=name, style=style)
                continue
            if not isinstance(value, (int, float)):
                raise ValueError(
                    f"{_OWNER}.params: {name!r} is {type(value).__name__} {value!r}; "
                    "expected a numeric or boolean parameter"
                )
            lo, hi, inc = _range(value, spec)
            if isinstance(value, int):
                controls[name] = w.IntSlider(
                    value=value,
                    min=int(lo),
                    max=int(hi),
                    step=max(1, int(inc)),
                    description=name,
                    continuous_update=False,
                    style=style,
                    layout=layout,
                )
            else:
                controls[name] = w.FloatSlider(
                    value=value,
                    min=lo,
                    max=hi,
                    step=inc,
                    description=name,
                    continuous_update=False,
                    style=style,
                    layout=layout,
                    readout_format=".3g",
                )
        return controls

    def _on_change(self, change) -> None:
        if not self._holding:
            self.run()

    def _show(self) -> None:
        if self.error is not None:
            self.status.value = (
                f"<span style='color:#d62728'>invalid parameters: {html.escape(self.error)}</span>"
            )
            return
        changed = {
            k: v for k, v in self.current_step.parameters().items() if v != getattr(self.step, k)
        }
        text = ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "baseline parameters"
        self.status.value = (
            f"<span>{html.escape(text)} — ran in {self.last_seconds * 1e3:.0f} ms</span>"
        )
        now, label = _summary_image(self.output)
        counts_image = isinstance(self.output, RampModel)
        before, _ = _summary_image(self.baseline)
        diff = now - before

        def draw(fig) -> None:
            ax_now, ax_diff = fig.subplots(1, 2)
            norm = image_norm(now, "linear", "minmax") if counts_image else image_norm(now)
            shown = ax_now.imshow(
                now, origin="lower", cmap="gray", norm=norm, interpolation="nearest"
            )
            fig.colorbar(shown, ax=ax_now, fraction=0.046, pad=0.04)
            ax_now.set_title(label, fontsize=9)
            finite = np.abs(diff[np.isfinite(diff)])
            limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
            shown = ax_diff.imshow(
                diff,
                origin="lower",
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
                interpolation="nearest",
            )
            fig.colorbar(shown, ax=ax_diff, fraction=0.046, pad=0.04)
            n_changed = int(np.count_nonzero(np.nan_to_num(diff)))
            ax_diff.set_title(f"now − baseline ({n_changed} pixels differ)", fontsize=9)
            for ax in (ax_now, ax_diff):
                ax.set_xlabel("x [pixel]")
                ax.set_ylabel("y [pixel]")

        self.image.value = render_png(
            draw, figsize=(8.4, 3.6), margins={"left": 0.07, "right": 0.92, "wspace": 0.4}
        )
        before_counts, now_counts = _flag_summary(self.baseline), _flag_summary(self.output)
        rows = [
            (
                k,
                f"{before_counts.get(k, 0):,}",
                f"{now_counts.get(k, 0):,}",
                f"{now_counts.get(k, 0) - before_counts.get(k, 0):+,}",
            )
            for k in sorted(set(before_counts) | set(now_counts))
        ]
        self.table.value = html_table(rows, header=("flag", "baseline", "now", "Δ"))


def _range(value: float, spec: Any) -> tuple[float, float, float]:
    if spec is not None:
        try:
            lo, hi, *rest = spec
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{_OWNER}.params: expected (min, max) or (min, max, step), got {spec!r}"
            ) from exc
        inc = rest[0] if rest else (hi - lo) / 100
        if not hi > lo:
            raise ValueError(f"{_OWNER}.params: expected min < max, got {spec!r}")
        return float(min(lo, value)), float(max(hi, value)), float(inc)
    if value > 0:
        lo, hi = 0.0, 4.0 * value
    elif value < 0:
        lo, hi = 4.0 * value, 0.0
    else:
        lo, hi = 0.0, 10.0
    if isinstance(value, int):
        hi = max(hi, 10.0)
        return lo, hi, 1.0
    return lo, hi, (hi - lo) / 100


def _flag_summary(output: Any) -> dict[str, int]:
    """Flag counts of every DQ array of a step output, keyed ``"<array> <FLAG>"``."""
    out: dict[str, int] = {}
    if isinstance(output, RampFitResult):
        models = {"rate": output.rate, "rateints": output.rateints}
    else:
        models = {"": output}
    for prefix, model in models.items():
        for name in ("groupdq", "pixeldq", "dq"):
            arr = getattr(model, name, None)
            if arr is None:
                continue
            key = f"{prefix} {name}".strip() if prefix else name
            for flag, count in dq_flag_counts(np.asarray(to_numpy(arr))).items():
                out[f"{key} {flag}"] = count
    return out


def _summary_image(output: Any) -> tuple[np.ndarray, str]:
    """A 2-D picture of a step output and its label."""
    if isinstance(output, RampFitResult):
        return np.asarray(to_numpy(output.rate.data), dtype=np.float64), "rate [DN/s]"
    if isinstance(output, RampModel):
        gdq = np.asarray(to_numpy(output.groupdq))
        return (gdq != 0).sum(axis=(0, 1)).astype(np.float64), "flagged groups per pixel"
    if isinstance(output, (ImageModel, CubeModel)):
        data = np.asarray(to_numpy(output.data), dtype=np.float64)
        return (data if data.ndim == 2 else data[0]), "data"
    raise TypeError(
        f"{_OWNER}: expected the step to return RampModel, RampFitResult, ImageModel or "
        f"CubeModel, got {type(output).__name__}"
    )
