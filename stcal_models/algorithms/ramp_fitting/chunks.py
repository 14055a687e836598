"""Row-chunked execution of the ramp fits: serial or dask engines, progress, assembly.

:func:`run_row_chunks` calls a fit on row chunks one after another or as tasks of
dask's threaded scheduler, with a tqdm progress bar.  :class:`RowAssembler` writes
each chunk's outputs into full-frame arrays allocated once, so a chunk's outputs are
freed as soon as they are copied: the outputs are never held twice, and the
allocator's heap is not left fragmented by many small long-lived pieces (with glibc,
holding every chunk's outputs until a final concatenation kept about twice the
outputs resident).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ...backends import is_jax_array
from ..base import check_choice, check_number

__all__ = [
    "ENGINES",
    "RowAssembler",
    "check_chunk_options",
    "map_row_chunks",
    "on_accelerator",
    "row_chunks",
    "run_row_chunks",
]

#: Accepted values of the fits' ``engine`` parameter.
ENGINES = ("serial", "dask")


def run_row_chunks(
    fn: Callable[[int, int], Any],
    chunks: Sequence[tuple[int, int]],
    *,
    engine: str = "serial",
    progress: bool | None = None,
    owner: str = "RampFit",
    collect: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Call ``fn(r0, r1)`` on each row chunk.

    Parameters
    ----------
    fn : callable
        The work of one chunk.
    chunks : sequence of (int, int)
        Row ranges.
    engine : {"serial", "dask"}
        One chunk after another, or the chunks as tasks of dask's threaded scheduler.
    progress : bool or None
        Progress bar: ``None`` shows one only when the work outlasts two seconds and has
        several chunks, ``True`` always, ``False`` never.
    owner : str
        Label of the bar and of error messages.
    collect : callable, optional
        Receives each chunk's result as it finishes (one at a time, also under dask); the
        results are then not kept.

    Returns
    -------
    list
        The chunk results in chunk order, or an empty list with ``collect``.

    Raises
    ------
    ImportError
        For ``engine="dask"`` when dask is not installed.
    """
    from tqdm.auto import tqdm

    disable = progress is False or (len(chunks) < 2 and progress is not True)
    bar = tqdm(total=len(chunks), desc=owner, unit="chunk", disable=disable,
               delay=0.0 if progress else 2.0, leave=False)
    lock = threading.Lock()

    def one(r0: int, r1: int) -> Any:
        result = fn(r0, r1)
        with lock:
            bar.update(1)
            if collect is not None:
                collect(result)
                return None
        return result

    try:
        if engine == "dask":
            dask = _import_dask(owner)
            tasks = [dask.delayed(one)(r0, r1) for r0, r1 in chunks]
            results = list(dask.compute(*tasks, scheduler="threads"))
        elif engine == "serial":
            results = [one(r0, r1) for r0, r1 in chunks]
        else:
            raise ValueError(f"{owner}.engine: expected one of {ENGINES}, got {engine!r}")
    finally:
        bar.close()
    return [] if collect is not None else results


def check_chunk_options(owner: str, max_memory: Any, engine: Any, progress: Any) -> None:
    """Validate the fits' ``max_memory``, ``engine`` and ``progress`` parameters.

    Raises
    ------
    TypeError, ValueError
        Naming ``owner.<parameter>`` and what was expected.
    ImportError
        For ``engine="dask"`` when dask is not installed.
    """
    check_number(owner, "max_memory", max_memory, minimum=0.0, exclusive_minimum=True,
                 allow_none=True)
    check_choice(owner, "engine", engine, ENGINES)
    if engine == "dask":
        _import_dask(owner)
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"{owner}.progress: expected bool or None, got {type(progress).__name__}")


def on_accelerator(array) -> bool:
    """True for a JAX array that lives on a GPU/TPU."""
    if not is_jax_array(array):
        return False
    try:
        return any(d.platform != "cpu" for d in array.devices())
    except (AttributeError, TypeError):  # pragma: no cover - tracers
        return False


def row_chunks(ny: int, row_bytes: int, budget: int) -> list[tuple[int, int]]:
    """Split ``ny`` rows into near-equal chunks of at most ``budget // row_bytes`` rows."""
    rows = max(1, min(ny, budget // max(row_bytes, 1)))
    n = -(-ny // rows)
    size = -(-ny // n)
    return [(r0, min(ny, r0 + size)) for r0 in range(0, ny, size)]


def map_row_chunks(
    fn: Callable[[int, int], dict],
    xp,
    ny: int,
    chunks: Sequence[tuple[int, int]],
    *,
    same_size: bool = False,
    engine: str = "serial",
    progress: bool | None = None,
    owner: str = "RampFit",
) -> dict:
    """Full-frame outputs of a pixel-independent fit run on row chunks.

    Parameters
    ----------
    fn : callable
        ``fn(r0, r1)`` fits rows ``r0 .. r1`` and returns a (nested) dict of arrays whose
        last two axes are (rows, nx).
    xp : namespace
        Namespace of the outputs.
    ny : int
        Rows of the frame.
    chunks : sequence of (int, int)
        Row ranges covering ``0 .. ny``.
    same_size : bool
        Give every call as many rows as the first chunk (one compiled shape on JAX): a
        shorter last chunk is extended upwards into the chunk before it, whose rows are
        recomputed to the same values and written again.
    engine, progress, owner
        As for :func:`run_row_chunks`.
    """
    size = chunks[0][1] - chunks[0][0]

    def one(r0: int, r1: int):
        start = max(0, min(r0, ny - size)) if same_size else r0
        out = fn(start, r1)
        if engine == "serial":
            # JAX dispatches asynchronously: finish the chunk before queueing the next so
            # that one chunk's temporaries are alive at a time.
            _map(lambda v: v.block_until_ready() if hasattr(v, "block_until_ready") else v,
                 out)
        return start, out

    if len(chunks) == 1:
        return fn(*chunks[0])
    assembler = RowAssembler(xp, ny)
    run_row_chunks(one, chunks, engine=engine, progress=progress, owner=owner,
                   collect=lambda done: assembler.put(done[1], done[0]))
    return assembler.result()


def _import_dask(owner: str):
    try:
        import dask
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{owner}(engine='dask') needs dask: install the 'dask' extra "
            "(pip install 'stcal-models[dask]') or use engine='serial'"
        ) from exc
    return dask


class RowAssembler:
    """Full-frame arrays filled from the outputs of row chunks.

    The outputs are nested dicts of arrays (``None`` allowed) whose last two axes are
    (rows, nx).  The first chunk fixes the structure, dtypes and leading shapes; the
    full arrays are allocated then.  On NumPy-like namespaces a chunk is copied in by
    slice assignment; on JAX by ``dynamic_update_slice`` with the full array donated,
    which XLA performs in place.

    Parameters
    ----------
    xp : namespace
        Array namespace of the outputs.
    ny : int
        Rows of the full frame.
    """

    def __init__(self, xp, ny: int) -> None:
        self._xp = xp
        self._ny = int(ny)
        self._full: dict | None = None

    def put(self, part: dict, start: int) -> None:
        """Copy ``part`` (rows ``start .. start + its rows``) into the full arrays."""
        if self._full is None:
            self._full = _map(self._allocate, part)
        self._full = _map2(lambda full, p: self._insert(full, p, start), self._full, part)

    def result(self) -> dict:
        """The assembled arrays.

        Raises
        ------
        RuntimeError
            If no chunk was put.
        """
        if self._full is None:
            raise RuntimeError("RowAssembler.result: no chunk was put")
        return self._full

    def _allocate(self, part):
        shape = (*part.shape[:-2], self._ny, int(part.shape[-1]))
        return self._xp.empty(shape, dtype=part.dtype)

    def _insert(self, full, part, start: int):
        if is_jax_array(full):
            return _jax_insert(full, part, start)
        rows = int(part.shape[-2])
        full[..., start:start + rows, :] = part
        return full


def _map(fn, tree):
    if isinstance(tree, dict):
        return {k: _map(fn, v) for k, v in tree.items()}
    return None if tree is None or isinstance(tree, int) else fn(tree)


def _map2(fn, tree, other):
    if isinstance(tree, dict):
        return {k: _map2(fn, v, other[k]) for k, v in tree.items()}
    return None if tree is None else fn(tree, other)


_JAX_INSERT = None


def _jax_insert(full, part, start: int):
    """``full`` with ``part`` written at row ``start`` (axis -2), ``full`` donated."""
    global _JAX_INSERT
    if _JAX_INSERT is None:
        import jax
        from jax import lax

        def insert(full, part, start):
            return lax.dynamic_update_slice_in_dim(full, part, start, axis=full.ndim - 2)

        _JAX_INSERT = jax.jit(insert, donate_argnums=0)
    import jax.numpy as jnp

    return _JAX_INSERT(full, part, jnp.int32(start))
