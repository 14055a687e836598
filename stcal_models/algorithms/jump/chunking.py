"""Row chunking of the jump kernel under a memory budget, serially or with Dask.

The two-point kernel is per pixel except for the four-neighbour flagging, which reaches one
row up and down; every chunk is therefore computed with a one-row halo and only its own
rows are kept, so the chunked result is identical to a whole-frame run.  All chunks but
the last have the same number of rows and the last is padded to it, so a JAX run
compiles the kernel once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BYTES_PER_ELEMENT",
    "BYTES_PER_ELEMENT_JAX",
    "plan_chunks",
    "rows_per_chunk",
    "run_chunks",
]

#: Estimated peak bytes of kernel temporaries per input element (float32 data, uint8 DQ,
#: differences, sorted copies, ratios and masks): about 30 measured on NumPy for a
#: 1x100x2048x2048 ramp, with a margin.
BYTES_PER_ELEMENT = 48

#: The same for XLA (JAX) when a pixel pools more differences than the comparator network
#: sorts (``lax.top_k`` on a transposed copy); about 150 measured for 1x100 groups.
BYTES_PER_ELEMENT_JAX = 160


def rows_per_chunk(
    shape: Sequence[int], memory_budget: float, halo: int = 1, bytes_per_element: float = 0
) -> int:
    """Rows per chunk so that the kernel's temporaries stay within ``memory_budget`` bytes.

    Parameters
    ----------
    shape : (nints, ngroups, ny, nx)
    memory_budget : float
        Bytes the detection may use on top of its input (chunk temporaries plus the
        GROUPDQ result).
    halo : int
        Extra rows computed on each side of a chunk.
    bytes_per_element : float
        Temporaries per input element; 0 means :data:`BYTES_PER_ELEMENT`.

    Returns
    -------
    int
        At least 1 and at most ``ny``.
    """
    nints, ngroups, ny, nx = (int(s) for s in shape)
    per_row = max(1, nints * ngroups * nx * (bytes_per_element or BYTES_PER_ELEMENT))
    # the uint8 GROUPDQ result exists twice at the end (chunk pieces and their concatenation)
    available = memory_budget - 2 * nints * ngroups * ny * nx
    rows = int(max(available, 0) // per_row) - 2 * halo
    return max(1, min(ny, rows))


def plan_chunks(ny: int, rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` row ranges of at most ``rows`` rows covering ``0..ny``."""
    if rows < 1:
        raise ValueError(f"rows: expected >= 1, got {rows}")
    return [(start, min(ny, start + rows)) for start in range(0, ny, rows)]


def run_chunks(
    kernel: Callable[..., Any],
    arrays: dict[str, Any],
    rows: int,
    halo: int,
    *,
    engine: str = "serial",
    pad_value: dict[str, float] | None = None,
    dask_scheduler: str | None = None,
) -> Any:
    """Apply ``kernel(**chunk_arrays)`` over row chunks and stitch the GROUPDQ result.

    ``arrays`` maps keyword names to arrays whose last two axes are (ny, nx); 0-d arrays
    and ``None`` pass through unchanged.  The kernel returns an array shaped like the
    ``"gdq"`` entry's chunk.  ``engine="dask"`` evaluates the chunks with
    ``dask.delayed`` (threads by default, or ``dask_scheduler``).
    """
    from ...backends import array_namespace

    gdq = arrays["gdq"]
    xp = array_namespace(gdq)
    ny = int(gdq.shape[-2])
    pad_value = pad_value or {}
    if rows >= ny:
        return kernel(**arrays)
    chunks = plan_chunks(ny, rows)
    span = rows + 2 * halo

    def cut(start: int, stop: int) -> dict[str, Any]:
        lo = max(0, start - halo)
        hi = min(ny, stop + halo)
        out = {}
        for name, arr in arrays.items():
            if arr is None or getattr(arr, "ndim", 0) < 2:
                out[name] = arr
                continue
            piece = arr[..., lo:hi, :]
            missing = span - (hi - lo)
            if missing > 0:
                pad_shape = tuple(piece.shape[:-2]) + (missing, int(piece.shape[-1]))
                fill = pad_value.get(name, 0)
                pad = xp.full(pad_shape, fill, dtype=piece.dtype)
                piece = xp.concat([piece, pad], axis=-2)
            out[name] = piece
        return out, start - lo, stop - start

    def one(start: int, stop: int):
        inputs, offset, count = cut(start, stop)
        result = kernel(**inputs)[..., offset : offset + count, :]
        if hasattr(result, "block_until_ready"):
            # JAX dispatches asynchronously: finish this chunk before the next one is
            # queued, so that only one chunk's temporaries are alive at a time.
            result.block_until_ready()
        return result

    if engine == "dask":
        delayed, compute = _import_dask()
        tasks = [delayed(one)(start, stop) for start, stop in chunks]
        kwargs = {"scheduler": dask_scheduler or "threads"}
        pieces = list(compute(*tasks, **kwargs))
    elif engine == "serial":
        pieces = [one(start, stop) for start, stop in chunks]
    else:
        raise ValueError(f"engine: expected 'serial' or 'dask', got {engine!r}")
    return xp.concat(pieces, axis=-2)


def _import_dask():
    try:
        import dask
    except ImportError as exc:  # pragma: no cover - exercised with dask hidden
        raise ImportError(
            "JumpDetection(engine='dask') needs the optional dependency 'dask' "
            "(pip install dask); use engine='serial' otherwise"
        ) from exc
    return dask.delayed, dask.compute


def estimate_peak_bytes(shape: Sequence[int], rows: int, halo: int = 1) -> int:
    """Rough peak temporaries (bytes) of one chunk of ``rows`` rows."""
    nints, ngroups, _, nx = (int(s) for s in shape)
    return int(math.ceil(nints * ngroups * (rows + 2 * halo) * nx * BYTES_PER_ELEMENT))
