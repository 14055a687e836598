"""Base class of algorithm steps: validated dataclass parameters, HTML display."""

from __future__ import annotations

import dataclasses
import html
from typing import Any

__all__ = ["Step", "check_choice", "check_int", "check_number"]


class Step:
    """A calibration step: a frozen dataclass of parameters whose ``__call__`` is pure.

    Subclasses are ``@dataclasses.dataclass(frozen=True)`` and validate their fields
    in ``__post_init__`` with the ``check_*`` helpers below.
    """

    def parameters(self) -> dict[str, Any]:
        """Parameter values by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def non_default_parameters(self) -> dict[str, Any]:
        """Parameters that differ from their documented defaults."""
        out = {}
        for f in dataclasses.fields(self):
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            if getattr(self, f.name) != default:
                out[f.name] = getattr(self, f.name)
        return out

    def __repr__(self) -> str:
        changed = ", ".join(f"{k}={v!r}" for k, v in self.non_default_parameters().items())
        return f"{type(self).__name__}({changed})"

    def _repr_html_(self) -> str:
        changed = self.non_default_parameters()
        rows = []
        for name, value in self.parameters().items():
            marker = "<b>" if name in changed else ""
            end = "</b>" if name in changed else ""
            note = "" if name in changed else " <span style='opacity:.6'>(default)</span>"
            rows.append(
                f"<tr><td>{marker}{html.escape(name)}{end}</td>"
                f"<td>{marker}{html.escape(repr(value))}{end}{note}</td></tr>"
            )
        doc = html.escape(
            (type(self).__doc__ or "").strip().splitlines()[0] if type(self).__doc__ else ""
        )
        return (
            "<div class='stm-wrap' style='font-family:monospace;font-size:12px'>"
            f"<details open><summary><b>{html.escape(type(self).__name__)}</b> — {doc}</summary>"
            f"<table>{''.join(rows)}</table></details></div>"
        )


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool = False,
) -> None:
    """Raise TypeError/ValueError naming ``owner.name`` unless ``value`` is a finite number in range."""
    import math

    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name}: expected a finite number, got {value}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        op = ">" if exclusive_minimum else ">="
        raise ValueError(f"{owner}.{name}: expected {op} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}.{name}: expected <= {maximum}, got {value}")


def check_int(owner: str, name: str, value: Any, *, minimum: int | None = None) -> None:
    """Raise TypeError/ValueError naming ``owner.name`` unless ``value`` is an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name}: expected int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}.{name}: expected >= {minimum}, got {value}")


def check_choice(owner: str, name: str, value: Any, choices: tuple) -> None:
    """Raise ValueError naming ``owner.name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{owner}.{name}: expected one of {choices}, got {value!r}")
