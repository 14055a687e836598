"""Plain and rich (HTML) displays and matplotlib plots for models.

The HTML follows xarray's approach: ``<details>`` sections, inline CSS that inherits
the notebook's colours (works in dark themes), no JavaScript.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import warnings
from typing import Any

import numpy as np

from .backends import to_numpy
from .dqflags import dq_flag_counts

__all__ = [
    "FLAG_COLORS",
    "dq_category_image",
    "flag_color",
    "image_cmap",
    "image_norm",
    "model_html",
    "one_line_repr",
    "pixel_ramp",
    "plot_dq",
    "plot_model",
    "plot_ramp",
    "plot_result",
    "ramp_segments",
    "result_html",
    "thumbnail_png",
]

_DQ_FIELDS = ("groupdq", "pixeldq", "dq")
_STYLE = (
    "<style>.stm-wrap{font-family:var(--jp-code-font-family,monospace);font-size:12px;"
    "color:inherit;background:transparent}"
    ".stm-wrap table{border-collapse:collapse;margin:2px 0}"
    ".stm-wrap td,.stm-wrap th{padding:1px 8px;text-align:left;border-bottom:1px solid "
    "rgba(128,128,128,.3)}.stm-wrap summary{cursor:pointer;font-weight:bold}"
    ".stm-wrap img{image-rendering:pixelated;border:1px solid rgba(128,128,128,.5)}</style>"
)


def one_line_repr(model) -> str:
    """``ClassName(shape, dtype, backend, key metadata)`` on one line."""
    name = type(model).__name__
    primary = getattr(model, model._array_names[0])
    parts = ["×".join(str(int(s)) for s in primary.shape) or "scalar", str(_dtype_name(primary))]
    parts.append(model.backend)
    meta = getattr(model, "meta", None)
    if meta is not None and hasattr(meta, "ngroups"):
        parts.append(f"nints={meta.nints} ngroups={meta.ngroups}")
    if meta is not None and hasattr(meta, "instrument"):
        parts.append(f"{meta.instrument}/{meta.detector}")
    if getattr(model, "wcs", None) is not None:
        parts.append("wcs")
    return f"{name}({', '.join(parts)})"


def model_html(model) -> str:
    """Collapsible HTML summary: arrays, metadata, DQ flag counts and a thumbnail."""
    name = html.escape(type(model).__name__)
    rows = []
    for field_name in model._array_names:
        value = getattr(model, field_name)
        if value is None:
            rows.append(f"<tr><td>{field_name}</td><td colspan='3'><i>None</i></td></tr>")
            continue
        shape = html.escape(str(tuple(int(s) for s in value.shape)))
        rows.append(
            f"<tr><td>{field_name}</td><td>{shape}</td>"
            f"<td>{html.escape(_dtype_name(value))}</td><td>{html.escape(model.backend)}</td></tr>"
        )
    arrays = (
        "<details open><summary>Arrays</summary><table><tr><th>field</th><th>shape</th>"
        f"<th>dtype</th><th>backend</th></tr>{''.join(rows)}</table></details>"
    )
    sections = [arrays, _meta_section(model), _dq_section(model)]
    thumb = thumbnail_png(model)
    if thumb is not None:
        sections.append(
            "<details open><summary>Preview</summary>"
            f"<img alt='{name} preview' style='min-width:128px;max-width:256px' "
            f"src='data:image/png;base64,{thumb}'/></details>"
        )
    return (
        f"{_STYLE}<div class='stm-wrap'><details open><summary>{name}</summary>"
        f"<div>{html.escape(one_line_repr(model))}</div>{''.join(sections)}</details></div>"
    )


def _meta_section(model) -> str:
    rows = []
    for static in model._static_names:
        value = getattr(model, static)
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                rows.append(_row(f"{static}.{f.name}", getattr(value, f.name)))
        elif value is not None and static == "wcs":
            rows.append(
                _row("wcs", f"{type(value).__name__}: {value.input_frame} → {value.output_frame}")
            )
        elif value is not None:
            rows.append(_row(static, value))
    if not rows:
        return ""
    return f"<details><summary>Metadata</summary><table>{''.join(rows)}</table></details>"


def _dq_section(model) -> str:
    blocks = []
    for field_name in _DQ_FIELDS:
        value = getattr(model, field_name, None)
        if value is None:
            continue
        counts = dq_flag_counts(to_numpy(value))
        body = "".join(_row(k, f"{v:,}") for k, v in counts.items()) or _row("(none set)", "")
        blocks.append(f"<tr><th colspan='2'>{field_name}</th></tr>{body}")
    if not blocks:
        return ""
    return f"<details open><summary>DQ flags</summary><table>{''.join(blocks)}</table></details>"


def _row(key: str, value: Any) -> str:
    text = html.escape(str(value))
    if len(text) > 200:
        text = text[:200] + "…"
    return f"<tr><td>{html.escape(key)}</td><td>{text}</td></tr>"


def _dtype_name(x) -> str:
    dtype = x.dtype
    return str(getattr(dtype, "name", dtype)).replace("array_api_strict.", "")


def display_plane(model) -> np.ndarray | None:
    """The 2-D plane a model is best previewed by (last group of integration 1, ...)."""
    primary = getattr(model, model._array_names[0])
    if primary is None or primary.ndim < 2:
        return None
    arr = to_numpy(primary)
    while arr.ndim > 2:
        arr = arr[-1] if arr.ndim == 3 else arr[0]
    return np.asarray(arr, dtype=np.float32)


def _stretched(plane: np.ndarray) -> np.ndarray:
    finite = np.isfinite(plane)
    if not finite.any():
        return np.zeros_like(plane)
    filled = np.where(finite, plane, np.nanmedian(plane[finite]))
    norm = image_norm(filled)  # robust to constant planes (ZScale may return vmin > vmax)
    return np.clip(np.asarray(norm(filled)), 0, 1)


def thumbnail_png(model, max_size: int = 128) -> str | None:
    """Base64 PNG thumbnail (ZScale + asinh, block-averaged to ``max_size``) or None."""
    plane = display_plane(model)
    if plane is None:
        return None
    step = max(1, int(np.ceil(max(plane.shape) / max_size)))
    ny, nx = (plane.shape[0] // step) * step, (plane.shape[1] // step) * step
    if ny == 0 or nx == 0:
        small = plane
    else:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            small = np.nanmean(
                plane[:ny, :nx].reshape(ny // step, step, nx // step, step), axis=(1, 3)
            )
    import matplotlib.image

    buf = io.BytesIO()
    matplotlib.image.imsave(buf, _stretched(small), cmap="gray", origin="lower", format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_model(model, ax=None, cmap: str = "gray", title: str | None = None):
    """Show a model's display plane with a ZScale + asinh stretch; returns the Figure."""
    import matplotlib.pyplot as plt

    plane = display_plane(model)
    if plane is None:
        raise ValueError(f"{type(model).__name__}: nothing 2-D to plot")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
    else:
        fig = ax.figure
    norm = image_norm(plane)
    image = ax.imshow(plane, origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title or one_line_repr(model), fontsize=8)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    return fig


def result_html(result) -> str:
    """HTML for a :class:`RampFitResult`: the rate model, rateints summary, step record."""
    parts = [model_html(result.rate)]
    parts.append(f"<div>{html.escape(one_line_repr(result.rateints))}</div>")
    if result.fitopt is not None:
        parts.append(f"<div>{html.escape(one_line_repr(result.fitopt))}</div>")
    if result.record:
        parts.append(_record_section(result.record))
    return (
        f"{_STYLE}<div class='stm-wrap'><details open><summary>RampFitResult</summary>"
        f"{''.join(parts)}</details></div>"
    )


def _record_section(record) -> str:
    """The pipeline record: one collapsible block per step with its entries as a table."""
    blocks = []
    for entry in record:
        try:
            step, info = entry
        except (TypeError, ValueError):
            step, info = entry, {}
        if isinstance(info, dict):
            rows = "".join(_row(str(k), v) for k, v in info.items()) or _row("(empty)", "")
        else:
            rows = _row("", info)
        blocks.append(
            f"<details><summary>{html.escape(str(step))}</summary><table>{rows}</table></details>"
        )
    return (
        f"<details open><summary>Pipeline record ({len(blocks)} steps)</summary>"
        f"{''.join(blocks)}</details>"
    )


# ============================================================================ plot helpers
#: Colours of the flags the ramp and DQ plots draw (others cycle through ``tab20``).
FLAG_COLORS: dict[str, str] = {
    "DO_NOT_USE": "#7f7f7f",
    "SATURATED": "#d62728",
    "JUMP_DET": "#ff7f0e",
    "DROPOUT": "#9467bd",
    "OUTLIER": "#e377c2",
    "PERSISTENCE": "#8c564b",
    "AD_FLOOR": "#17becf",
    "CHARGELOSS": "#bcbd22",
}

_STRETCHES = ("linear", "sqrt", "log", "asinh", "sinh", "power")
_INTERVALS = ("zscale", "minmax", "99.5%", "99%", "95%")


def flag_color(name: str) -> str:
    """Matplotlib colour used for a DQ flag ``name`` in every plot and widget."""
    if name in FLAG_COLORS:
        return FLAG_COLORS[name]
    import matplotlib

    from .dqflags import DQ

    index = int(DQ[name]).bit_length() - 1
    return matplotlib.colors.to_hex(matplotlib.colormaps["tab20"](index % 20))


def image_cmap(name: str = "gray", bad: str = "#3b6fd6"):
    """A matplotlib colormap whose NaN ("bad") pixels are drawn in ``bad`` (blue by default),
    so that unfitted pixels stand out from dark sky."""
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=bad)


def image_norm(plane, stretch: str = "asinh", interval: str = "zscale"):
    """Astropy ``ImageNormalize`` for a 2-D plane with a named stretch and interval.

    Parameters
    ----------
    plane : array
        Values to scale (non-finite values are ignored).
    stretch : {"linear", "sqrt", "log", "asinh", "sinh", "power"}
        Astropy stretch applied after the interval.
    interval : {"zscale", "minmax", "99.5%", "99%", "95%"}
        How the display limits are chosen.

    Returns
    -------
    astropy.visualization.ImageNormalize or None
        ``None`` when ``plane`` has no finite value.
    """
    from astropy import visualization as vis

    if stretch not in _STRETCHES:
        raise ValueError(f"stretch: expected one of {_STRETCHES}, got {stretch!r}")
    if interval not in _INTERVALS:
        raise ValueError(f"interval: expected one of {_INTERVALS}, got {interval!r}")
    values = np.asarray(to_numpy(plane), dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    stretches = {
        "linear": vis.LinearStretch(),
        "sqrt": vis.SqrtStretch(),
        "log": vis.LogStretch(),
        "asinh": vis.AsinhStretch(),
        "sinh": vis.SinhStretch(),
        "power": vis.PowerStretch(2.0),
    }
    if interval == "zscale":
        chosen = vis.ZScaleInterval()
    elif interval == "minmax":
        chosen = vis.MinMaxInterval()
    else:
        chosen = vis.PercentileInterval(float(interval[:-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vmin, vmax = chosen.get_limits(finite)
    if not vmax > vmin:
        vmin, vmax = float(vmin) - 0.5, float(vmax) + 0.5
    return vis.ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretches[stretch], clip=True)


def pixel_ramp(ramp, y: int, x: int, integration: int = 0) -> dict[str, np.ndarray]:
    """One pixel's ramp as NumPy arrays: ``times`` (s), ``values`` (DN), ``groupdq``.

    ``times`` are the mean read times of each group (``meta.resultant_times``).

    Raises
    ------
    IndexError
        If ``(integration, y, x)`` lies outside the ramp.
    """
    nints, ngroups, ny, nx = ramp.shape
    _check_index("integration", integration, nints)
    _check_index("y", y, ny)
    _check_index("x", x, nx)
    values = np.asarray(to_numpy(ramp.data[integration, :, y, x]), dtype=np.float64)
    gdq = np.asarray(to_numpy(ramp.groupdq[integration, :, y, x]), dtype=np.uint8)
    times = np.asarray(ramp.meta.resultant_times, dtype=np.float64)
    return {"times": times, "values": values, "groupdq": gdq}


def ramp_segments(groupdq) -> list[tuple[int, int]]:
    """Segments ``[(start, stop), ...]`` (``stop`` exclusive) of one pixel's usable groups.

    A group is unusable when it carries DO_NOT_USE or SATURATED; a group flagged JUMP_DET
    starts a new segment (the difference into it holds the jump), as the ramp-fitting
    documentation describes.
    """
    from .dqflags import DQ

    gdq = np.asarray(groupdq).astype(np.int64)
    bad = (gdq & int(DQ.DO_NOT_USE | DQ.SATURATED)) != 0
    jump = (gdq & int(DQ.JUMP_DET)) != 0
    segments: list[tuple[int, int]] = []
    start = None
    for g in range(gdq.size):
        if bad[g]:
            if start is not None:
                segments.append((start, g))
            start = None
            continue
        if start is None:
            start = g
        elif jump[g]:
            segments.append((start, g))
            start = g
    if start is not None:
        segments.append((start, gdq.size))
    return segments


def _check_index(name: str, value: int, size: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected int, got {type(value).__name__} {value!r}")
    if not 0 <= int(value) < size:
        raise IndexError(f"{name}: expected 0 <= {name} < {size}, got {value}")


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def plot_ramp(ramp, y: int, x: int, result=None, integration: int = 0, ax=None):
    """Plot one pixel's ramp: groups coloured by DQ flag, jumps, segment fits and the slope.

    Parameters
    ----------
    ramp : RampModel
        NumPy or JAX ramp.
    y, x : int
        0-based pixel.
    result : RampFitResult, optional
        When given, its per-integration slope ± err for this pixel is drawn (dashed) and
        written in the title.
    integration : int
        0-based integration to show.
    ax : matplotlib Axes, optional
        Axes to draw into; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .dqflags import DQ, flag_names

    pix = pixel_ramp(ramp, y, x, integration)
    t, v, gdq = pix["times"], pix["values"], pix["groupdq"]
    fig, ax = _new_axes(ax, (6, 4))
    good = gdq == 0
    ax.plot(t, v, color="0.6", lw=0.8, zorder=1)
    ax.scatter(t[good], v[good], s=22, color="#1f77b4", label="good", zorder=3)
    shown: set[str] = set()
    for g in np.flatnonzero(~good):
        names = flag_names(int(gdq[g]))
        main = next((n for n in FLAG_COLORS if n in names), names[0])
        label = None if main in shown else main
        shown.add(main)
        ax.scatter([t[g]], [v[g]], s=34, color=flag_color(main), marker="s", label=label, zorder=4)
    for k, g in enumerate(np.flatnonzero((gdq & int(DQ.JUMP_DET)) != 0)):
        ax.axvline(
            t[g], color=flag_color("JUMP_DET"), ls=":", lw=1.2, label="jump" if k == 0 else None
        )
    for k, (a, b) in enumerate(ramp_segments(gdq)):
        if b - a < 2:
            continue
        slope, intercept = np.polyfit(t[a:b], v[a:b], 1)
        ax.plot(
            t[a:b],
            intercept + slope * t[a:b],
            color="#2ca02c",
            lw=1.6,
            label="segment fit" if k == 0 else None,
            zorder=2,
        )
    title = f"pixel (y={y}, x={x}), integration {integration}"
    if result is not None:
        rate = float(to_numpy(result.rateints.data[integration, y, x]))
        err_arr = result.rateints.err
        err = float(to_numpy(err_arr[integration, y, x])) if err_arr is not None else float("nan")
        title += f"\nslope = {rate:.4g} ± {err:.2g} DN/s"
        if np.isfinite(rate):  # the fitted slope through each segment's centroid
            for k, (a, b) in enumerate(ramp_segments(gdq)):
                t0, v0 = float(np.mean(t[a:b])), float(np.mean(v[a:b]))
                span = t[a:b] if b - a > 1 else t[max(a - 1, 0) : a + 2]
                ax.plot(
                    span,
                    v0 + rate * (span - t0),
                    color="k",
                    ls="--",
                    lw=1,
                    label="fitted slope" if k == 0 else None,
                )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("time since reset [s]")
    ax.set_ylabel("signal [DN]")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def dq_category_image(dq, flags: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Index image of the first flag of ``flags`` set at each pixel (``-1``: none).

    Returns the index image and the flag names it indexes (by default the flags set
    anywhere, most important first: those of :data:`FLAG_COLORS`, then by bit).
    """
    from .dqflags import DQ

    arr = np.asarray(to_numpy(dq)).astype(np.uint64)
    if flags is None:
        present = [f.name for f in DQ if f.value and np.any(arr & np.uint64(f.value))]
        flags = [n for n in FLAG_COLORS if n in present] + [
            n for n in present if n not in FLAG_COLORS
        ]
    index = np.full(arr.shape, -1, dtype=np.int32)
    for k, name in enumerate(flags):
        hit = ((arr & np.uint64(int(DQ[name]))) != 0) & (index < 0)
        index[hit] = k
    return index, list(flags)


def plot_dq(dq, flags: list[str] | None = None, ax=None, title: str = "DQ"):
    """Categorical map of DQ flags (first matching flag per pixel) with counts in the legend.

    ``dq`` is a 2-D DQ array of any backend (or a model with a ``dq`` field).
    """
    import matplotlib.colors as mcolors
    from matplotlib.patches import Patch

    if hasattr(dq, "_array_names"):
        dq = dq.dq
    arr = np.asarray(to_numpy(dq))
    if arr.ndim != 2:
        raise ValueError(f"plot_dq: expected a 2-D DQ array, got shape {arr.shape}")
    index, names = dq_category_image(arr, flags)
    counts = dq_flag_counts(arr)
    fig, ax = _new_axes(ax, (5, 4.5))
    colours = ["#ffffff00"] + [flag_color(n) for n in names]
    cmap = mcolors.ListedColormap(colours)
    norm = mcolors.BoundaryNorm(np.arange(-1.5, len(names) + 0.5), cmap.N)
    ax.imshow(index, origin="lower", cmap=cmap, norm=norm, interpolation="nearest")
    handles = [Patch(color=flag_color(n), label=f"{n} ({counts.get(n, 0):,})") for n in names]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.8)
    else:
        ax.text(0.5, 0.5, "no flags set", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    return fig


def plot_result(result, fig=None, stretch: str = "asinh", cmap: str = "gray"):
    """Rate image (ZScale + ``stretch``) beside its DQ flag map; returns the Figure.

    Parameters
    ----------
    result : RampFitResult or ImageModel
        A ramp-fit result (its ``rate`` is shown) or a 2-D image product.
    fig : matplotlib Figure, optional
        Figure to draw into (cleared); a new pyplot figure otherwise.
    """
    rate = getattr(result, "rate", result)
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(10, 4.2))
    else:
        fig.clear()
    ax_rate, ax_dq = fig.subplots(1, 2, sharex=True, sharey=True)
    plane = np.asarray(to_numpy(rate.data), dtype=np.float32)
    image = ax_rate.imshow(
        plane,
        origin="lower",
        cmap=image_cmap(cmap),
        norm=image_norm(plane, stretch),
        interpolation="nearest",
    )
    fig.colorbar(image, ax=ax_rate, fraction=0.046, pad=0.04, label="DN/s")
    ax_rate.set_title("rate", fontsize=9)
    ax_rate.set_xlabel("x [pixel]")
    ax_rate.set_ylabel("y [pixel]")
    plot_dq(rate.dq, ax=ax_dq, title="rate DQ")
    return fig
