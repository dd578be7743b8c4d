"""The one place user types meet JSON: strict cattrs (de)serialisation and validation.

cattrs' default hooks coerce (``int("5")``); ours check types instead, so that a
state written with the wrong field type is refused before anything is stored and
stored data that no longer fits its schema is reported, not silently converted.
A mapping for an attrs class must be a JSON object holding only that class's fields:
unknown keys are refused, never dropped.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs
import cattrs
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception

from ..errors import ValidationError
from .jsonfast import dumps, loads

MAX_PAYLOAD_BYTES = 1024 * 1024
# Far deeper than any state needs, and shallow enough that no hook of cattrs or the
# JSON parser can hit Python's recursion limit on the way in or out.
MAX_DEPTH = 64


class _Unfit(ValueError):
    """A value refused by one of our hooks; its message is shown as it is."""


def _strict(kind: type, *accepted: type) -> Any:
    def structure(value: object, _: object) -> object:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return float(value) if kind is float else value  # type: ignore[arg-type]

    return structure


def _finite_float(value: object, _: object) -> float:
    number: float = _strict(float, int, float)(value, float)
    if not math.isfinite(number):
        raise _Unfit(f"{number} is not a number JSON can hold")
    return number


def _aware_datetime(value: object, _: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _Unfit(f"{value!r} is not an ISO 8601 date and time") from None
    if not isinstance(value, datetime):
        raise TypeError(f"expected datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise _Unfit(f"naive datetime {value.isoformat()}: give it a time zone (tzinfo=UTC)")
    return value


def _object_of(converter: cattrs.Converter, cls: type[Any]) -> Callable[[Any, Any], Any]:
    """The structure hook of attrs class ``cls``: only a mapping of its fields is one
    (cattrs alone would read a list or a string as the default instance)."""
    fields = converter.gen_structure_attrs_fromdict(cls)

    def structure(value: Any, kind: Any) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _Unfit(f"expected an object of {cls.__name__}, got {type(value).__name__}")
        return fields(value, kind)

    return structure


def make_strict_converter() -> cattrs.Converter:
    converter = make_converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict(str, str))
    converter.register_structure_hook(int, _strict(int, int))
    converter.register_structure_hook(float, _finite_float)
    converter.register_structure_hook(bool, _strict(bool, bool))
    converter.register_structure_hook(datetime, _aware_datetime)
    converter.register_structure_hook_factory(attrs.has, functools.partial(_object_of, converter))
    return converter


def _format(exc: BaseException, kind: type | None) -> str:
    return str(exc) if isinstance(exc, _Unfit) else format_exception(exc, kind)


def _describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format))
    if isinstance(exc, _Unfit | _Refused):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


_SHOWN = 8  # path steps a message shows: a too-deep path is mostly repetition


class _Refused(Exception):
    """A value no JSON document of ours may hold, and the path to it."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []  # innermost first

    def __str__(self) -> str:
        path = self.path[::-1]
        shown = "".join(path[:_SHOWN]) + ("…" if len(path) > _SHOWN else "")
        return f"{self.problem} @ ${shown}"


_SCALARS = frozenset({str, int, bool, type(None)})
_INIT_FIELDS: dict[type[Any], tuple[str, ...] | None] = {}


def _init_fields(cls: type[Any]) -> tuple[str, ...] | None:
    """The keys cattrs reads for an attrs class (fields set by ``__init__``, by
    attribute name); ``None`` for any other class."""
    try:
        return _INIT_FIELDS[cls]
    except KeyError:
        names = tuple(a.name for a in attrs.fields(cls) if a.init) if attrs.has(cls) else None
        _INIT_FIELDS[cls] = names
        return names


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` with attrs instances as mappings of their fields and sequences as
    lists, for cattrs to check; refuses non-finite floats and deep nesting."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused(f"{value} is not a number JSON can hold")
        return value
    if depth >= MAX_DEPTH:
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
    if kind is dict:
        return _plain_items(value.items(), depth)
    names = _init_fields(kind)
    if names is not None:
        return _plain_items([(n, getattr(value, n)) for n in names], depth)
    if isinstance(value, Mapping):
        return _plain_items(value.items(), depth)
    if isinstance(value, list | tuple | set | frozenset):
        return _plain_list(value, depth)
    return value


def _plain_items(items: Any, depth: int) -> dict[Any, Any]:
    plain = {}
    for key, item in items:
        try:
            plain[key] = _plain(item, depth + 1)
        except _Refused as refused:
            refused.path.append(f".{key}" if isinstance(key, str) else f"[{key!r}]")
            raise
    return plain


def _plain_list(values: Any, depth: int) -> list[Any]:
    plain = []
    for index, item in enumerate(values):
        try:
            plain.append(_plain(item, depth + 1))
        except _Refused as refused:
            refused.path.append(f"[{index}]")
            raise
    return plain


def _may_be_deep(text: str) -> bool:
    # A document cannot nest deeper than it has brackets: counting them is far
    # cheaper than walking the parsed value.
    return text.count("[") + text.count("{") > MAX_DEPTH


class Codec:
    """Validates values against attrs classes and turns them into JSON text and back."""

    def __init__(self, converter: cattrs.Converter | None = None) -> None:
        self.converter = converter or make_strict_converter()

    def coerce(self, value: object, cls: type[Any], what: str) -> tuple[Any, str]:
        """``value`` checked against ``cls``; returns the canonical object and its JSON.

        ``value`` may be an instance of ``cls`` or a mapping of its fields, at every
        level. ``PayloadTooLarge`` if its JSON is over ``MAX_PAYLOAD_BYTES``.
        """
        if not isinstance(value, cls) and not isinstance(value, Mapping):
            raise ValidationError(
                f"invalid {what}: expected {cls.__name__}, got {type(value).__name__}"
            )
        try:
            canonical = self.converter.structure(_plain(value), cls)
            text = dumps(self.converter.unstructure(canonical, cls))
        except Exception as exc:
            raise ValidationError(f"invalid {what} ({cls.__name__}): {_describe(exc)}") from exc
        if len(text) * 4 > MAX_PAYLOAD_BYTES and len(text.encode()) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(what, len(text.encode()))
        return canonical, text

    def decode(self, text: str, cls: type[Any], what: str) -> Any:
        """A stored JSON document as ``cls``; ``ValidationError`` if it no longer fits."""
        try:
            raw = loads(text)
            if _may_be_deep(text):
                _plain(raw)
            return self.converter.structure(raw, cls)
        except Exception as exc:
            raise ValidationError(
                f"stored {what} no longer fits {cls.__name__}: {_describe(exc)} "
                "(left unchanged in storage)"
            ) from exc

    def event_type(self, event: object, members: tuple[type[Any], ...], what: str) -> type[Any]:
        """Which member of an event union ``event`` is an instance of."""
        for member in members:
            if isinstance(event, member):
                return member
        if len(members) == 1 and isinstance(event, Mapping):
            return members[0]
        names = " | ".join(m.__name__ for m in members)
        raise ValidationError(f"invalid {what}: expected {names}, got {type(event).__name__}")


class PayloadTooLarge(ValidationError):
    """A value whose JSON is over ``MAX_PAYLOAD_BYTES``; nothing was written."""

    def __init__(self, what: str, size: int) -> None:
        super().__init__(
            f"invalid {what}: {size} bytes once serialised, over the limit of {MAX_PAYLOAD_BYTES}"
        )
        self.size = size
