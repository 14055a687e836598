"""``DQViewer``: DQ flags by name, overlaid on the image, with counts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..backends import to_numpy
from ..display import display_plane, flag_color, image_norm
from ..dqflags import DQ, GROUP_FLAGS, dq_flag_counts
from ._common import WidgetBase, html_table, render_png
from ._common import add_classes as _classes

__all__ = ["DQViewer"]

_OWNER = "DQViewer"
_ALWAYS = ("DO_NOT_USE", "SATURATED", "JUMP_DET")
_ANY_GROUP = -1


class DQViewer(WidgetBase):
    """Toggle DQ flags by name and see where they are set, over the science image.

    Parameters
    ----------
    model : RampModel, ImageModel, CubeModel or a reference model
        Any model with a ``dq``, ``pixeldq`` or ``groupdq`` field (NumPy or JAX).
    flags : iterable of str, optional
        Flags selected at the start; default: every flag set in any of its DQ arrays.

    Attributes
    ----------
    widget : ipywidgets.VBox
    field : ipywidgets.Dropdown
        Which DQ array (``groupdq``/``pixeldq`` of a ramp, ``dq`` otherwise).
    integration, group : ipywidgets controls
        Plane of a 3-D/4-D DQ array; ``group = -1`` ORs all groups together.
    checkboxes : dict[str, ipywidgets.Checkbox]
        One per flag, labelled with its count in the current plane.
    image : ipywidgets.Image
    counts_html : ipywidgets.HTML
    """

    def __init__(self, model, flags: Iterable[str] | None = None) -> None:
        import ipywidgets as w

        fields = [n for n in ("groupdq", "pixeldq", "dq") if getattr(model, n, None) is not None]
        if not fields or not hasattr(model, "_array_names"):
            raise TypeError(
                f"{_OWNER}.model: expected a model with a dq, pixeldq or groupdq array, "
                f"got {type(model).__name__}"
            )
        self.model = model
        self.field = w.Dropdown(options=fields, value=fields[0], description="DQ array")
        self.integration = w.IntSlider(value=0, min=0, max=0, description="integration")
        self.group = w.Dropdown(options=[("any group", _ANY_GROUP)], description="group")
        self._configure_plane_controls()

        names = [f.name for f in DQ if f.value]
        self.checkboxes = {
            name: w.Checkbox(
                value=False, description=name, indent=False, layout=w.Layout(width="210px")
            )
            for name in names
        }
        self.flag_box = w.GridBox(
            [],
            layout=w.Layout(
                grid_template_columns="repeat(4, 215px)", max_height="180px", overflow="auto"
            ),
        )
        self.image = w.Image(format="png", layout=w.Layout(width="460px"))
        self.counts_html = w.HTML()
        self._holding = False
        present: set[str] = set()
        for name in fields:
            present |= set(dq_flag_counts(np.asarray(to_numpy(getattr(model, name)))))
        initial = set(present) if flags is None else self._check_names(flags)
        for name, box in self.checkboxes.items():
            box.value = name in initial
            box.observe(self._on_change, names="value")
        for control in (self.integration, self.group):
            control.observe(self._on_change, names="value")
        self.field.observe(self._on_field, names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.field, self.integration, self.group]),
                self.flag_box,
                w.HBox([self.image, self.counts_html]),
            ]
        )
        _classes(
            (self.widget, "stm-dq-viewer"),
            (self.image, "stm-image"),
            (self.counts_html, "stm-counts"),
        )
        self._refresh()

    # ------------------------------------------------------------------ public API
    @property
    def selected_flags(self) -> list[str]:
        """Names of the flags currently overlaid."""
        return [n for n, box in self.checkboxes.items() if box.value]

    def select_flags(self, names: Iterable[str]) -> None:
        """Overlay exactly the flags ``names`` (and redraw once)."""
        wanted = self._check_names(names)
        self._holding = True
        try:
            for name, box in self.checkboxes.items():
                box.value = name in wanted
        finally:
            self._holding = False
        self._refresh()

    def dq_plane(self) -> np.ndarray:
        """The 2-D DQ values currently shown (NumPy uint32; groups ORed for ``group=-1``)."""
        arr = getattr(self.model, self.field.value)
        if arr.ndim == 4:
            cube = np.asarray(to_numpy(arr[int(self.integration.value), ...]))
            g = int(self.group.value)
            plane = np.bitwise_or.reduce(cube, axis=0) if g == _ANY_GROUP else cube[g]
        elif arr.ndim == 3:
            plane = np.asarray(to_numpy(arr[int(self.integration.value), ...]))
        else:
            plane = np.asarray(to_numpy(arr))
        return plane.astype(np.uint32)

    def counts(self) -> dict[str, int]:
        """Pixels of the current plane with each flag set (zero counts omitted)."""
        return dq_flag_counts(self.dq_plane())

    def mask(self) -> np.ndarray:
        """Boolean ``(ny, nx)``: pixels with any selected flag set."""
        bits = 0
        for name in self.selected_flags:
            bits |= int(DQ[name])
        return (self.dq_plane() & np.uint32(bits)) != 0

    # ------------------------------------------------------------------ internals
    def _check_names(self, names: Iterable[str]) -> set[str]:
        if isinstance(names, str):
            names = [names]
        out = set()
        for name in names:
            if name not in DQ.__members__ or not DQ[name].value:
                raise ValueError(
                    f"{_OWNER}.flags: expected DQ flag names, got {name!r}; "
                    f"known: {', '.join(n for n in DQ.__members__ if n != 'GOOD')}"
                )
            out.add(name)
        return out

    def _configure_plane_controls(self) -> None:
        arr = getattr(self.model, self.field.value)
        self.integration.max = max(int(arr.shape[0]) - 1, 0) if arr.ndim >= 3 else 0
        self.integration.disabled = arr.ndim < 3 or int(arr.shape[0]) == 1
        if arr.ndim == 4:
            self.group.options = [("any group", _ANY_GROUP)] + [
                (f"group {g}", g) for g in range(int(arr.shape[1]))
            ]
            self.group.disabled = False
        else:
            self.group.options = [("any group", _ANY_GROUP)]
            self.group.disabled = True
        self.group.value = _ANY_GROUP

    def _on_field(self, change) -> None:
        self._holding = True
        try:
            self._configure_plane_controls()
        finally:
            self._holding = False
        self._refresh()

    def _on_change(self, change) -> None:
        if not self._holding:
            self._refresh()

    def _background(self) -> np.ndarray | None:
        arr = getattr(self.model, self.model._array_names[0])
        if arr is None or arr.ndim < 2:
            return None
        i, g = int(self.integration.value), int(self.group.value)
        if arr.ndim == 4:
            plane = arr[i, g if g >= 0 else int(arr.shape[1]) - 1, ...]
        elif arr.ndim == 3 and self.field.value == "dq":
            plane = arr[min(i, int(arr.shape[0]) - 1), ...]
        else:
            return display_plane(self.model)
        return np.asarray(to_numpy(plane), dtype=np.float64)

    def _refresh(self) -> None:
        plane = self.dq_plane()
        counts = dq_flag_counts(plane)
        is_group = self.field.value == "groupdq"
        visible = [
            name
            for name in self.checkboxes
            if name in counts or name in _ALWAYS or self.checkboxes[name].value
        ]
        if is_group:
            group_names = {f.name for f in GROUP_FLAGS}
            visible = [n for n in visible if n in group_names]
        for name, box in self.checkboxes.items():
            box.description = f"{name} ({counts.get(name, 0):,})"
        self.flag_box.children = [self.checkboxes[n] for n in visible]
        selected = self.selected_flags
        mask = self.mask()
        background = self._background()

        def draw(fig) -> None:
            import matplotlib.colors as mcolors

            ax = fig.add_subplot()
            if background is not None:
                ax.imshow(
                    background,
                    origin="lower",
                    cmap="gray",
                    norm=image_norm(background),
                    interpolation="nearest",
                )
            rgba = np.zeros((*plane.shape, 4))
            for name in reversed(selected):  # the first selected flag is drawn on top
                hit = (plane & np.uint32(int(DQ[name]))) != 0
                rgba[hit] = (*mcolors.to_rgb(flag_color(name)), 0.75)
            ax.imshow(rgba, origin="lower", interpolation="nearest")
            ax.set_title(f"{self.field.value}: {int(mask.sum()):,} pixels flagged", fontsize=9)
            ax.set_xlabel("x [pixel]")
            ax.set_ylabel("y [pixel]")

        self.image.value = render_png(draw, figsize=(5.0, 4.4))
        rows = [
            (name, f"{counts.get(name, 0):,}", "shown" if name in selected else "")
            for name in [*counts, *[s for s in selected if s not in counts]]
        ]
        rows.append(("selected, any", f"{int(mask.sum()):,}", ""))
        self.counts_html.value = html_table(rows, header=("flag", "pixels", ""))
