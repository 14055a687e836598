"""``RampExplorer``: an image of the exposure and the ramp of a chosen pixel."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import to_numpy
from ..display import image_cmap, image_norm, pixel_ramp, plot_ramp, ramp_segments
from ..dqflags import DQ, flag_names
from ..models import RampFitResult, RampModel
from ._common import FigurePanel, WidgetBase, check_pixel, html_table, pixel_inputs, render_png
from ._common import add_classes as _classes

__all__ = ["RampExplorer"]

_OWNER = "RampExplorer"


class RampExplorer(WidgetBase):
    """Explore an exposure pixel by pixel: image on the left, the pixel's ramp on the right.

    The image is the fitted rate (when ``result`` is given) or one group of one
    integration.  Type a pixel in the ``y``/``x`` boxes (or call :meth:`select_pixel`) to
    see its ramp: groups coloured by DQ flag, detected jumps (dotted lines), per-segment
    straight-line fits and, with a result, the fitted slope ± err.

    Parameters
    ----------
    ramp : RampModel
        NumPy or JAX ramp (typically after jump detection, so its GROUPDQ shows jumps).
    result : RampFitResult, optional
        Ramp-fit output for the same pixels.
    pixel : (int, int), optional
        Initial ``(y, x)``; default: the centre of the frame.
    stretch : str
        Image stretch (see :func:`stcal_models.display.image_norm`), default ``"asinh"``.
    click : bool
        Show the image on an interactive ipympl canvas and select pixels by clicking
        (needs the optional ``ipympl`` package).  Default: a PNG image.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The whole widget.
    view, group, integration : ipywidgets controls
        What the image shows: ``"rate"`` or ``"group"``, and which group/integration.
    y_input, x_input : ipywidgets.BoundedIntText
        The selected pixel.
    image, ramp_image : ipywidgets.Image
        PNG renderings of the frame and of the pixel's ramp (``image`` is an ipympl
        canvas with ``click=True``).
    readout : ipywidgets.HTML
        Numbers for the selected pixel.
    """

    def __init__(
        self,
        ramp: RampModel,
        result: RampFitResult | None = None,
        *,
        pixel: tuple[int, int] | None = None,
        stretch: str = "asinh",
        click: bool = False,
    ) -> None:
        import ipywidgets as w

        if not isinstance(ramp, RampModel):
            raise TypeError(f"{_OWNER}.ramp: expected RampModel, got {type(ramp).__name__}")
        if result is not None:
            if not isinstance(result, RampFitResult):
                raise TypeError(
                    f"{_OWNER}.result: expected RampFitResult or None, got {type(result).__name__}"
                )
            if tuple(result.rateints.shape) != (ramp.nints, *ramp.shape[-2:]):
                raise ValueError(
                    f"{_OWNER}.result: expected rateints of shape "
                    f"{(ramp.nints, *ramp.shape[-2:])}, got {result.rateints.shape}"
                )
        image_norm(np.zeros((2, 2)), stretch)  # validates the name
        self.ramp = ramp
        self.result = result
        self.stretch = stretch
        nints, ngroups, ny, nx = ramp.shape
        y, x = check_pixel(_OWNER, *(pixel or (ny // 2, nx // 2)), (ny, nx))

        views = ["rate", "group"] if result is not None else ["group"]
        self.view = w.Dropdown(options=views, value=views[0], description="show")
        self.group = w.IntSlider(
            value=ngroups - 1, min=0, max=ngroups - 1, description="group", continuous_update=False
        )
        self.integration = w.IntSlider(
            value=0,
            min=0,
            max=nints - 1,
            description="integration",
            disabled=nints == 1,
            continuous_update=False,
        )
        self.y_input, self.x_input = pixel_inputs(ny, nx, y, x)
        self._panel = FigurePanel(
            (4.6, 4.0),
            {"left": 0.16, "right": 0.86},
            width="420px",
            click=click,
            on_click=self._clicked,
        )
        self.image = self._panel.widget
        self.ramp_image = w.Image(format="png", layout=w.Layout(width="480px"))
        self.readout = w.HTML()
        self._plane_cache: dict[tuple, np.ndarray] = {}

        for control in (self.view, self.group, self.integration):
            control.observe(self._on_view, names="value")
        for control in (self.y_input, self.x_input):
            control.observe(self._on_pixel, names="value")
        self._holding = False
        controls = w.HBox([self.view, self.group, self.integration])
        pick = w.HBox([w.HTML("<b>pixel</b>"), self.y_input, self.x_input])
        self.widget = w.VBox([controls, pick, w.HBox([self.image, self.ramp_image]), self.readout])
        _classes(
            (self.widget, "stm-ramp-explorer"),
            (self.image, "stm-image"),
            (self.ramp_image, "stm-ramp-plot"),
            (self.readout, "stm-readout"),
            (self.y_input, "stm-pixel-y"),
            (self.x_input, "stm-pixel-x"),
        )
        self._sync_controls()
        self._redraw(image=True)

    # ------------------------------------------------------------------ public API
    @property
    def pixel(self) -> tuple[int, int]:
        """The selected ``(y, x)``."""
        return int(self.y_input.value), int(self.x_input.value)

    def select_pixel(self, y: int, x: int) -> None:
        """Select pixel ``(y, x)`` (0-based) and redraw once."""
        ny, nx = self.ramp.shape[-2:]
        y, x = check_pixel(_OWNER, y, x, (ny, nx))
        self._holding = True
        try:
            self.y_input.value = y
            self.x_input.value = x
        finally:
            self._holding = False
        self._redraw(image=True)

    def pixel_info(self) -> dict[str, Any]:
        """What the readout shows for the selected pixel, as Python values.

        Keys: ``y``, ``x``, ``integration``, ``values`` (DN per group), ``groupdq``,
        ``flags`` (flag name -> groups carrying it), ``jumps`` (groups flagged JUMP_DET),
        ``segments`` (``(start, stop)`` group ranges), ``pixeldq`` (flag names) and, with a
        result, ``slope``/``err`` (this integration) and ``rate``/``rate_err`` (exposure).
        """
        y, x = self.pixel
        i = int(self.integration.value)
        pix = pixel_ramp(self.ramp, y, x, i)
        gdq = pix["groupdq"]
        flags: dict[str, list[int]] = {}
        for g, value in enumerate(gdq):
            for name in flag_names(int(value)):
                flags.setdefault(name, []).append(g)
        info: dict[str, Any] = {
            "y": y,
            "x": x,
            "integration": i,
            "values": pix["values"].tolist(),
            "groupdq": gdq.tolist(),
            "flags": flags,
            "jumps": [int(g) for g in np.flatnonzero((gdq & int(DQ.JUMP_DET)) != 0)],
            "segments": ramp_segments(gdq),
            "pixeldq": flag_names(int(to_numpy(self.ramp.pixeldq[y, x]))),
        }
        if self.result is not None:
            ints, rate = self.result.rateints, self.result.rate
            info["slope"] = float(to_numpy(ints.data[i, y, x]))
            info["err"] = _value(ints.err, (i, y, x))
            info["rate"] = float(to_numpy(rate.data[y, x]))
            info["rate_err"] = _value(rate.err, (y, x))
            info["rate_dq"] = flag_names(int(to_numpy(rate.dq[y, x])))
        return info

    # ------------------------------------------------------------------ callbacks
    def _clicked(self, y: int, x: int) -> None:
        ny, nx = self.ramp.shape[-2:]
        if 0 <= y < ny and 0 <= x < nx:
            self.select_pixel(y, x)

    def _on_view(self, change) -> None:
        self._sync_controls()
        self._redraw(image=True)

    def _on_pixel(self, change) -> None:
        if not self._holding:
            self._redraw(image=True)

    def _sync_controls(self) -> None:
        self.group.disabled = self.view.value != "group"

    # ------------------------------------------------------------------ drawing
    def _plane(self) -> tuple[np.ndarray, str]:
        i = int(self.integration.value)
        if self.view.value == "rate":
            key: tuple = ("rate",)
            label = "rate [DN/s]"
        else:
            key = ("group", i, int(self.group.value))
            label = f"integration {i}, group {key[2]} [DN]"
        if key not in self._plane_cache:
            if key[0] == "rate":
                arr = self.result.rate.data
            else:
                arr = self.ramp.data[key[1], key[2], ...]
            self._plane_cache = {key: np.asarray(to_numpy(arr), dtype=np.float64)}
        return self._plane_cache[key], label

    def _redraw(self, image: bool) -> None:
        y, x = self.pixel
        if image:
            plane, label = self._plane()

            def draw_image(fig) -> None:
                ax = fig.add_subplot()
                self._panel.axes = ax
                shown = ax.imshow(
                    plane,
                    origin="lower",
                    cmap=image_cmap("gray"),
                    norm=image_norm(plane, self.stretch),
                    interpolation="nearest",
                )
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
                ax.plot([x], [y], marker="+", color="#ff7f0e", ms=14, mew=2)
                ax.set_title(label, fontsize=9)
                ax.set_xlabel("x [pixel]")
                ax.set_ylabel("y [pixel]")

            self._panel.draw(draw_image)
        i = int(self.integration.value)
        self.ramp_image.value = render_png(
            lambda fig: plot_ramp(self.ramp, y, x, self.result, i, ax=fig.add_subplot()),
            figsize=(5.2, 4.0),
        )
        self.readout.value = self._readout_html()

    def _readout_html(self) -> str:
        info = self.pixel_info()
        rows: list[tuple[Any, ...]] = [
            ("pixel (y, x)", f"({info['y']}, {info['x']}), integration {info['integration']}"),
            ("pixel DQ", ", ".join(info["pixeldq"]) or "GOOD"),
            ("segments", ", ".join(f"{a}–{b - 1}" for a, b in info["segments"]) or "none"),
            ("jump groups", ", ".join(map(str, info["jumps"])) or "none"),
        ]
        for name, groups in info["flags"].items():
            rows.append((f"groups {name}", ", ".join(map(str, groups))))
        if "slope" in info:
            rows.append(
                ("slope (this integration)", f"{info['slope']:.5g} ± {info['err']:.3g} DN/s")
            )
            rows.append(("rate (exposure)", f"{info['rate']:.5g} ± {info['rate_err']:.3g} DN/s"))
            rows.append(("rate DQ", ", ".join(info["rate_dq"]) or "GOOD"))
        return f"<div class='stm-readout'>{html_table(rows)}</div>"


def _value(array, index) -> float:
    if array is None:
        return float("nan")
    return float(to_numpy(array[index]))
