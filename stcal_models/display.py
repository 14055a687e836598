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

__all__ = ["model_html", "one_line_repr", "plot_model", "thumbnail_png"]

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
            f"<img alt='{name} preview' src='data:image/png;base64,{thumb}'/></details>"
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
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

    finite = np.isfinite(plane)
    if not finite.any():
        return np.zeros_like(plane)
    filled = np.where(finite, plane, np.nanmedian(plane[finite]))
    norm = ImageNormalize(filled, interval=ZScaleInterval(), stretch=AsinhStretch())
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
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

    plane = display_plane(model)
    if plane is None:
        raise ValueError(f"{type(model).__name__}: nothing 2-D to plot")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
    else:
        fig = ax.figure
    finite = plane[np.isfinite(plane)]
    norm = None
    if finite.size:
        norm = ImageNormalize(finite, interval=ZScaleInterval(), stretch=AsinhStretch())
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
        rows = "".join(_row(str(step), info) for step, info in result.record)
        parts.append(f"<details><summary>Pipeline record</summary><table>{rows}</table></details>")
    return (
        f"{_STYLE}<div class='stm-wrap'><details open><summary>RampFitResult</summary>"
        f"{''.join(parts)}</details></div>"
    )
