"""Machinery shared by every model: array fields, validation, pytree registration, I/O hooks."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax

from ..backends import array_namespace, backend_name, to_backend

__all__ = ["DataModel", "array_field", "register_model"]

_DTYPE_NAMES = ("bool", "uint8", "uint16", "uint32", "int32", "float32", "float64")


def array_field(
    *,
    dtype: str | tuple[str, ...],
    ndim: int | tuple[int, ...],
    optional: bool = False,
    doc: str = "",
) -> Any:
    """Declare an array field of a model: its dtype(s), dimensionality and whether it may be None."""
    dtypes = (dtype,) if isinstance(dtype, str) else tuple(dtype)
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    for d in dtypes:
        if d not in _DTYPE_NAMES:
            raise ValueError(f"array_field: unsupported dtype {d!r}")
    metadata = {"array": True, "dtype": dtypes, "ndim": ndims, "optional": optional, "doc": doc}
    return dataclasses.field(default=None, metadata=metadata)


def register_model(cls: type) -> type:
    """Register a frozen model dataclass as a JAX pytree.

    Array fields are leaves; every other field is static (aux data, must be hashable).
    Unflattening bypasses ``__init__`` so that JAX can rebuild a model from placeholder
    leaves during tracing; ``replace`` and construction always validate.
    """
    fields = dataclasses.fields(cls)
    array_names = tuple(f.name for f in fields if f.metadata.get("array"))
    static_names = tuple(f.name for f in fields if not f.metadata.get("array"))
    cls._array_names = array_names
    cls._static_names = static_names

    def flatten_with_keys(model):
        children = tuple((jax.tree_util.GetAttrKey(n), getattr(model, n)) for n in array_names)
        aux = tuple(getattr(model, n) for n in static_names)
        return children, aux

    def flatten(model):
        return tuple(getattr(model, n) for n in array_names), tuple(
            getattr(model, n) for n in static_names
        )

    def unflatten(aux, children):
        model = object.__new__(cls)
        for name, value in zip(array_names, children, strict=True):
            object.__setattr__(model, name, value)
        for name, value in zip(static_names, aux, strict=True):
            object.__setattr__(model, name, value)
        return model

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


class DataModel:
    """Base of all models; subclasses are ``@register_model @dataclass(frozen=True)``."""

    _array_names: ClassVar[tuple[str, ...]] = ()
    _static_names: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        self._fill_defaults()
        self._check_arrays()
        self._validate()

    def _fill_defaults(self) -> None:
        """Create default arrays (e.g. zero DQ) for fields the caller left as None."""

    def _validate(self) -> None:
        """Model-specific consistency checks (shapes against each other and against meta)."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check_arrays(self) -> None:
        cls = type(self).__name__
        backends = {}
        for f in dataclasses.fields(self):
            if not f.metadata.get("array"):
                continue
            value = getattr(self, f.name)
            if value is None:
                if not f.metadata["optional"]:
                    raise ValueError(f"{cls}.{f.name}: required, got None")
                continue
            if not (hasattr(value, "shape") and hasattr(value, "dtype")):
                raise TypeError(f"{cls}.{f.name}: expected an array, got {type(value).__name__}")
            try:
                xp = array_namespace(value)
            except TypeError as exc:
                raise TypeError(
                    f"{cls}.{f.name}: expected an array-API array, got {type(value).__name__}"
                ) from exc
            if value.ndim not in f.metadata["ndim"]:
                expected = " or ".join(f"{n}-D" for n in f.metadata["ndim"])
                raise ValueError(
                    f"{cls}.{f.name}: expected {expected}, got shape {tuple(value.shape)}"
                )
            if not any(value.dtype == getattr(xp, d) for d in f.metadata["dtype"]):
                expected = " or ".join(f.metadata["dtype"])
                raise TypeError(f"{cls}.{f.name}: expected dtype {expected}, got {value.dtype}")
            backends[f.name] = backend_name(value)
        if len(set(backends.values())) > 1:
            raise TypeError(f"{cls}: all arrays must share one backend, got {backends}")

    def _check_shape(self, name: str, expected: tuple[int, ...]) -> None:
        value = getattr(self, name)
        if value is not None and tuple(value.shape) != tuple(expected):
            raise ValueError(
                f"{type(self).__name__}.{name}: expected shape {tuple(expected)}, "
                f"got {tuple(value.shape)}"
            )

    # ------------------------------------------------------------ conveniences
    @property
    def xp(self):
        """Array-API namespace of the model's arrays."""
        return array_namespace(*(getattr(self, n) for n in self._array_names))

    @property
    def backend(self) -> str:
        """``"numpy"``, ``"jax"`` or another array-API library's name."""
        return backend_name(getattr(self, self._array_names[0]))

    def arrays(self) -> dict[str, Any]:
        """The model's non-None array fields by name."""
        return {n: getattr(self, n) for n in self._array_names if getattr(self, n) is not None}

    def replace(self, **changes: Any):
        """A new model with ``changes`` applied; validated like a fresh construction."""
        return dataclasses.replace(self, **changes)

    def to_backend(self, backend: str):
        """The same model with every array converted to ``backend`` (``"numpy"``/``"jax"``)."""
        return self.replace(**{n: to_backend(a, backend) for n, a in self.arrays().items()})

    # ------------------------------------------------------------ display
    def __repr__(self) -> str:
        from ..display import one_line_repr

        return one_line_repr(self)

    def _repr_html_(self) -> str:
        from ..display import model_html

        return model_html(self)

    # ------------------------------------------------------------ I/O
    def to_asdf(self, path) -> None:
        """Write the model to an ASDF file (atomic: a temporary file is renamed at the end)."""
        from ..io.asdf_io import write_model

        write_model(self, path)

    @classmethod
    def from_asdf(cls, path):
        """Read a model written by :meth:`to_asdf`; the stored type must be ``cls``."""
        from ..io.asdf_io import read_model

        return read_model(path, expected=cls)

    def _static_to_tree(self) -> dict[str, Any]:
        """Static fields as an ASDF-serialisable dict (override for custom meta)."""
        out = {}
        for name in self._static_names:
            value = getattr(self, name)
            out[name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    @classmethod
    def _static_from_tree(cls, tree: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`_static_to_tree` (``meta`` dicts become :class:`ExposureMeta`)."""
        from .meta import ExposureMeta

        out = dict(tree)
        if isinstance(out.get("meta"), dict):
            out["meta"] = ExposureMeta.from_dict(out["meta"])
        return out
