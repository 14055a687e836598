"""Shared pieces of the widgets: Agg rendering to PNG, the display protocol, cutouts."""

from __future__ import annotations

import dataclasses
import html
import io
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends import to_numpy

__all__ = ["WidgetBase", "cutout", "html_table", "render_png"]


def render_png(
    draw: Callable[[Any], None],
    figsize=(5.0, 4.0),
    dpi: int = 90,
    margins: dict[str, float] | None = None,
) -> bytes:
    """Draw into a fresh Agg figure with ``draw(fig)`` and return the PNG bytes.

    The figure is never registered with pyplot, so this works under any matplotlib
    backend and leaves no open figures behind.  Fixed ``margins`` (``subplots_adjust``
    arguments) are used instead of a layout engine: redraws stay fast.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        **{"left": 0.14, "right": 0.97, "bottom": 0.13, "top": 0.88, **(margins or {})}
    )
    draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def html_table(rows: list[tuple[Any, ...]], header: tuple[str, ...] | None = None) -> str:
    """A small escaped HTML table in the style of the model reprs."""
    head = ""
    if header:
        head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        "<table style='border-collapse:collapse;font-family:monospace;font-size:12px'>"
        f"{head}{body}</table>"
    )


class WidgetBase:
    """Display protocol shared by the widgets: ``.widget`` is the ipywidgets box."""

    widget: Any

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def add_classes(*pairs) -> None:
    """Give widgets stable CSS classes (``stm-...``) for styling and browser tests."""
    for widget, name in pairs:
        widget.add_class(name)


def pixel_inputs(ny: int, nx: int, y: int, x: int):
    """``(y, x)`` BoundedIntText inputs for a ``(ny, nx)`` frame."""
    import ipywidgets as w

    layout = w.Layout(width="130px")
    y_input = w.BoundedIntText(value=y, min=0, max=ny - 1, description="y", layout=layout)
    x_input = w.BoundedIntText(value=x, min=0, max=nx - 1, description="x", layout=layout)
    return y_input, x_input


def check_pixel(owner: str, y: Any, x: Any, shape: tuple[int, int]) -> tuple[int, int]:
    """Validate a 0-based pixel against a frame shape; returns Python ints."""
    for name, value, size in (("y", y, shape[0]), ("x", x, shape[1])):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{owner}.{name}: expected int, got {type(value).__name__} {value!r}")
        if not 0 <= int(value) < size:
            raise ValueError(f"{owner}.{name}: expected 0 <= {name} < {size}, got {value}")
    return int(y), int(x)


def plane_of(array, index: tuple[int, ...]) -> np.ndarray:
    """The 2-D plane ``array[index]`` as a NumPy float array (any backend)."""
    return np.asarray(to_numpy(array[(*index, ...)] if index else array), dtype=np.float64)


def cutout(model, y0: int, y1: int, x0: int, x1: int):
    """Cut rows ``y0:y1`` and columns ``x0:x1`` from a model, keeping its detector origin.

    Works on :class:`RampModel`, image/cube models and reference models; the 1-based
    ``xstart``/``ystart`` of the metadata move with the cut, so a full-frame reference
    can still be matched to the cutout with ``ref.for_science(cut.meta, cut.shape[-2:])``.
    A handy way to feed :class:`StepTuner` a small piece of a large exposure.

    Raises
    ------
    ValueError
        If the box is empty or outside the frame.
    """
    arrays = model.arrays()
    frame = tuple(int(s) for s in getattr(model, model._array_names[0]).shape[-2:])
    for name, lo, hi, size in (("y", y0, y1, frame[0]), ("x", x0, x1, frame[1])):
        if not (isinstance(lo, (int, np.integer)) and isinstance(hi, (int, np.integer))):
            raise TypeError(f"cutout.{name}: expected int bounds, got {lo!r}, {hi!r}")
        if not 0 <= lo < hi <= size:
            raise ValueError(
                f"cutout.{name}: expected 0 <= {name}0 < {name}1 <= {size}, got {lo}, {hi}"
            )
    cut = {}
    for name, arr in arrays.items():
        if arr.ndim >= 2 and tuple(int(s) for s in arr.shape[-2:]) == frame:
            cut[name] = arr[..., y0:y1, x0:x1]
        else:
            cut[name] = arr
    changes: dict[str, Any] = dict(cut)
    meta = getattr(model, "meta", None)
    if meta is not None and hasattr(meta, "xstart"):
        changes["meta"] = dataclasses.replace(
            meta, xstart=meta.xstart + int(x0), ystart=meta.ystart + int(y0)
        )
    if getattr(model, "wcs", None) is not None:
        changes["wcs"] = None
    return model.replace(**changes)


class FigurePanel:
    """A figure area of a widget: a PNG ``ipywidgets.Image`` or, with ``click=True``, an
    interactive ipympl canvas whose mouse clicks are reported to ``on_click(y, x)``.

    ``draw(fn)`` redraws with ``fn(fig)`` in either mode.  The ipympl canvas needs the
    optional ``ipympl`` package (and its front-end, shipped prebuilt with it).
    """

    def __init__(
        self,
        figsize: tuple[float, float],
        margins: dict[str, float] | None = None,
        width: str = "480px",
        click: bool = False,
        on_click: Callable[[int, int], None] | None = None,
        dpi: int = 90,
    ) -> None:
        import ipywidgets as w

        self.figsize, self.margins, self.dpi = figsize, margins, dpi
        self.click = bool(click)
        self.axes = None
        self._on_click = on_click
        if not self.click:
            self.figure = None
            self.widget = w.Image(format="png", layout=w.Layout(width=width))
            return
        import matplotlib

        previous = matplotlib.get_backend()
        try:
            from ipympl.backend_nbagg import Canvas, FigureManager
        except ImportError as exc:
            raise ImportError(
                "click=True: expected the optional package 'ipympl' (pip install ipympl); "
                "without it, type the pixel in the y/x boxes or call select_pixel(y, x)"
            ) from exc
        finally:
            # importing ipympl makes it pyplot's backend: give the user theirs back
            if matplotlib.get_backend() != previous:
                matplotlib.use(previous)
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=figsize, dpi=dpi)
        canvas = Canvas(self.figure)
        FigureManager(canvas, 0)
        canvas.header_visible = False
        canvas.footer_visible = False
        canvas.toolbar_visible = False
        canvas.mpl_connect("button_press_event", self.handle_click)
        self.widget = canvas

    def draw(self, fn: Callable[[Any], None]) -> None:
        """Redraw the panel with ``fn(fig)``; ``fn`` may set ``panel.axes`` for clicks."""
        if not self.click:
            self.widget.value = render_png(fn, self.figsize, self.dpi, self.margins)
            return
        self.figure.clear()
        self.figure.subplots_adjust(
            **{"left": 0.14, "right": 0.97, "bottom": 0.13, "top": 0.88, **(self.margins or {})}
        )
        fn(self.figure)
        self.widget.draw_idle()

    def handle_click(self, event) -> None:
        """Matplotlib ``button_press_event`` handler: report the clicked pixel."""
        if self._on_click is None or event.xdata is None or event.ydata is None:
            return
        if self.axes is not None and event.inaxes is not self.axes:
            return
        self._on_click(int(round(float(event.ydata))), int(round(float(event.xdata))))
