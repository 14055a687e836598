"""``ImageViewer``: stretch, scale, colormap, zoom and a pixel readout for any model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import to_numpy
from ..display import _INTERVALS, _STRETCHES, image_cmap, image_norm
from ..dqflags import flag_names
from ._common import (
    FigurePanel,
    WidgetBase,
    check_pixel,
    html_table,
    pixel_inputs,
    plane_of,
)
from ._common import add_classes as _classes

__all__ = ["ImageViewer"]

_OWNER = "ImageViewer"
_CMAPS = ("gray", "gray_r", "viridis", "magma", "inferno", "cividis", "RdBu_r")


class ImageViewer(WidgetBase):
    """Look at any model's arrays with astronomical stretches and read pixel values.

    Parameters
    ----------
    model : RampModel, ImageModel, CubeModel or a reference model
        NumPy or JAX.  Leading axes (integration, group, coefficient) get sliders.
    field : str, optional
        Array to show first (default: the model's primary array, e.g. ``data``).
    stretch, interval, cmap : str
        Initial display settings.
    click : bool
        Draw on an interactive ipympl canvas and move the cursor by clicking (needs the
        optional ``ipympl`` package).  Default: a PNG image.

    Attributes
    ----------
    widget : ipywidgets.VBox
    field, stretch, interval, cmap : ipywidgets.Dropdown
    index_sliders : list of ipywidgets.IntSlider
        One per leading axis of the shown array.
    zoom_inputs : dict[str, ipywidgets.IntText]
        ``y0``, ``y1``, ``x0``, ``x1`` of the shown box (end exclusive).
    y_input, x_input : ipywidgets.BoundedIntText
        The pixel read out ("cursor").
    image : ipywidgets.Image
    readout : ipywidgets.HTML
        Value, DQ flags and, when the model has a WCS, RA/Dec of the pixel.
    """

    def __init__(
        self,
        model,
        field: str | None = None,
        *,
        stretch: str = "asinh",
        interval: str = "zscale",
        cmap: str = "gray",
        click: bool = False,
    ) -> None:
        import ipywidgets as w

        if not hasattr(model, "_array_names"):
            raise TypeError(
                f"{_OWNER}.model: expected a stcal_models model, got {type(model).__name__}"
            )
        primary = model._array_names[0]
        frame = tuple(int(s) for s in getattr(model, primary).shape[-2:])
        if getattr(model, primary).ndim < 2:
            raise ValueError(
                f"{_OWNER}.model: expected 2-D or larger arrays, got {type(model).__name__}"
            )
        fields = [
            n
            for n, a in model.arrays().items()
            if a.ndim >= 2 and tuple(int(s) for s in a.shape[-2:]) == frame
        ]
        field = primary if field is None else field
        if field not in fields:
            raise ValueError(f"{_OWNER}.field: expected one of {fields}, got {field!r}")
        for name, value, options in (
            ("stretch", stretch, _STRETCHES),
            ("interval", interval, _INTERVALS),
            ("cmap", cmap, _CMAPS),
        ):
            if value not in options:
                raise ValueError(f"{_OWNER}.{name}: expected one of {options}, got {value!r}")
        self.model = model
        self._frame = frame
        self.field = w.Dropdown(options=fields, value=field, description="array")
        self.stretch = w.Dropdown(options=_STRETCHES, value=stretch, description="stretch")
        self.interval = w.Dropdown(options=_INTERVALS, value=interval, description="scale")
        self.cmap = w.Dropdown(options=_CMAPS, value=cmap, description="colormap")
        self.slider_box = w.HBox()
        self.index_sliders: list[Any] = []
        ny, nx = frame
        text = w.Layout(width="120px")
        self.zoom_inputs = {
            "y0": w.IntText(value=0, description="y0", layout=text),
            "y1": w.IntText(value=ny, description="y1", layout=text),
            "x0": w.IntText(value=0, description="x0", layout=text),
            "x1": w.IntText(value=nx, description="x1", layout=text),
        }
        self.reset_button = w.Button(description="reset zoom", layout=w.Layout(width="100px"))
        self.y_input, self.x_input = pixel_inputs(ny, nx, ny // 2, nx // 2)
        self._panel = FigurePanel(
            (5.2, 4.4),
            {"left": 0.15, "right": 0.87},
            width="480px",
            click=click,
            on_click=self._clicked,
        )
        self.image = self._panel.widget
        self.readout = w.HTML()
        self.status = w.HTML()
        self._holding = False
        self._build_sliders()

        for control in (self.stretch, self.interval, self.cmap, *self.zoom_inputs.values()):
            control.observe(self._on_change, names="value")
        for control in (self.y_input, self.x_input):
            control.observe(self._on_change, names="value")
        self.field.observe(self._on_field, names="value")
        self.reset_button.on_click(lambda _: self.reset_zoom())
        self.widget = w.VBox(
            [
                w.HBox([self.field, self.stretch, self.interval, self.cmap]),
                self.slider_box,
                w.HBox([*self.zoom_inputs.values(), self.reset_button]),
                w.HBox([w.HTML("<b>cursor</b>"), self.y_input, self.x_input]),
                w.HBox([self.image, w.VBox([self.readout, self.status])]),
            ]
        )
        _classes(
            (self.widget, "stm-image-viewer"),
            (self.image, "stm-image"),
            (self.readout, "stm-readout"),
            (self.y_input, "stm-pixel-y"),
            (self.x_input, "stm-pixel-x"),
        )
        self._refresh()

    # ------------------------------------------------------------------ public API
    @property
    def index(self) -> tuple[int, ...]:
        """Indices of the leading axes of the shown array."""
        return tuple(int(s.value) for s in self.index_sliders)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Shown ``(y0, y1, x0, x1)`` (end exclusive), clipped to the frame."""
        z = {k: int(v.value) for k, v in self.zoom_inputs.items()}
        ny, nx = self._frame
        y0, y1 = max(0, min(z["y0"], ny - 1)), max(1, min(z["y1"], ny))
        x0, x1 = max(0, min(z["x0"], nx - 1)), max(1, min(z["x1"], nx))
        return y0, max(y1, y0 + 1), x0, max(x1, x0 + 1)

    def zoom(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Show rows ``y0:y1`` and columns ``x0:x1`` only (redraw once)."""
        ny, nx = self._frame
        for name, lo, hi, size in (("y", y0, y1, ny), ("x", x0, x1, nx)):
            if not 0 <= lo < hi <= size:
                raise ValueError(
                    f"{_OWNER}.zoom: expected 0 <= {name}0 < {name}1 <= {size}, got {lo}, {hi}"
                )
        self._set({"y0": y0, "y1": y1, "x0": x0, "x1": x1})

    def reset_zoom(self) -> None:
        """Show the whole frame again."""
        ny, nx = self._frame
        self._set({"y0": 0, "y1": ny, "x0": 0, "x1": nx})

    def select_pixel(self, y: int, x: int) -> None:
        """Move the cursor to ``(y, x)`` and update the readout."""
        y, x = check_pixel(_OWNER, y, x, self._frame)
        self._holding = True
        try:
            self.y_input.value = y
            self.x_input.value = x
        finally:
            self._holding = False
        self._refresh()

    def readout_values(self) -> dict[str, Any]:
        """The cursor readout as Python values: ``y``, ``x``, ``value``, ``dq``, ``flags``
        and, with a WCS, ``ra``/``dec`` in degrees."""
        y, x = int(self.y_input.value), int(self.x_input.value)
        plane = self._plane()
        out: dict[str, Any] = {
            "y": y,
            "x": x,
            "field": self.field.value,
            "value": float(plane[y, x]),
        }
        dq = self._dq_value(y, x)
        if dq is not None:
            out["dq"] = dq
            out["flags"] = flag_names(dq)
        wcs = getattr(self.model, "wcs", None)
        if wcs is not None:
            ra, dec = wcs(float(x), float(y))
            out["ra"], out["dec"] = float(ra), float(dec)
        return out

    # ------------------------------------------------------------------ internals
    def _clicked(self, y: int, x: int) -> None:
        ny, nx = self._frame
        if 0 <= y < ny and 0 <= x < nx:
            self.select_pixel(y, x)

    def _set(self, values: dict[str, int]) -> None:
        self._holding = True
        try:
            for k, v in values.items():
                self.zoom_inputs[k].value = int(v)
        finally:
            self._holding = False
        self._refresh()

    def _build_sliders(self) -> None:
        import ipywidgets as w

        arr = getattr(self.model, self.field.value)
        kind = type(self.model).__name__
        if arr.ndim == 4:
            names: tuple[str, ...] = ("integration", "group")
        elif kind == "LinearityRef":
            names = ("coefficient",)
        elif kind == "DarkRef":
            names = ("group",)
        elif arr.ndim == 3:
            names = ("integration",)
        else:
            names = ()
        sliders = []
        for axis in range(arr.ndim - 2):
            size = int(arr.shape[axis])
            label = names[axis] if axis < len(names) else f"axis {axis}"
            value = size - 1 if label == "group" else 0
            slider = w.IntSlider(
                value=value,
                min=0,
                max=size - 1,
                description=label,
                continuous_update=False,
                disabled=size == 1,
            )
            slider.observe(self._on_change, names="value")
            sliders.append(slider)
        self.index_sliders = sliders
        self.slider_box.children = sliders

    def _plane(self) -> np.ndarray:
        return plane_of(getattr(self.model, self.field.value), self.index)

    def _dq_value(self, y: int, x: int) -> int | None:
        for name in ("dq", "pixeldq"):
            arr = getattr(self.model, name, None)
            if arr is None:
                continue
            if arr.ndim == 2:
                return int(to_numpy(arr[y, x]))
            if arr.ndim == 3 and self.index:
                return int(to_numpy(arr[min(self.index[0], int(arr.shape[0]) - 1), y, x]))
        return None

    def _on_field(self, change) -> None:
        self._build_sliders()
        self._refresh()

    def _on_change(self, change) -> None:
        if not self._holding:
            self._refresh()

    def _refresh(self) -> None:
        plane = self._plane()
        y0, y1, x0, x1 = self.box
        view = plane[y0:y1, x0:x1]
        norm = image_norm(view, self.stretch.value, self.interval.value)
        cy, cx = int(self.y_input.value), int(self.x_input.value)
        label = self.field.value + (f" {list(self.index)}" if self.index else "")

        def draw(fig) -> None:
            ax = fig.add_subplot()
            self._panel.axes = ax
            shown = ax.imshow(
                view,
                origin="lower",
                cmap=image_cmap(self.cmap.value),
                norm=norm,
                interpolation="nearest",
                extent=(x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5),
            )
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            if y0 <= cy < y1 and x0 <= cx < x1:
                ax.plot([cx], [cy], marker="+", color="#ff7f0e", ms=14, mew=2)
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("x [pixel]")
            ax.set_ylabel("y [pixel]")

        self._panel.draw(draw)
        values = self.readout_values()
        rows: list[tuple[Any, ...]] = [
            ("pixel (y, x)", f"({values['y']}, {values['x']})"),
            (values["field"], f"{values['value']:.6g}"),
        ]
        if "dq" in values:
            rows.append(("DQ", f"{values['dq']} {', '.join(values['flags']) or 'GOOD'}"))
        if "ra" in values:
            rows.append(("RA, Dec [deg]", f"{values['ra']:.6f}, {values['dec']:.6f}"))
        self.readout.value = html_table(rows)
        finite = view[np.isfinite(view)]
        stats = (
            f"box {y1 - y0}×{x1 - x0}: min {finite.min():.4g}, median {np.median(finite):.4g}, "
            f"max {finite.max():.4g}"
            if finite.size
            else "box: no finite values"
        )
        self.status.value = f"<div style='font-size:11px;opacity:.8'>{stats}</div>"
