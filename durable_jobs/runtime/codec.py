"""The one place user types meet JSON: strict cattrs (de)serialisation and validation.

cattrs' default hooks coerce (``int("5")``); ours check types instead, so that a
state written with the wrong field type is refused before anything is stored and
stored data that no longer fits its schema is reported, not silently converted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter

from ..errors import ValidationError
from .jsonfast import dumps

MAX_PAYLOAD_BYTES = 1024 * 1024


def _strict(kind: type, *accepted: type) -> Any:
    def structure(value: object, _: object) -> object:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return float(value) if kind is float else value  # type: ignore[arg-type]

    return structure


def make_strict_converter() -> cattrs.Converter:
    converter = make_converter()
    converter.register_structure_hook(str, _strict(str, str))
    converter.register_structure_hook(int, _strict(int, int))
    converter.register_structure_hook(float, _strict(float, int, float))
    converter.register_structure_hook(bool, _strict(bool, bool))
    return converter


def _describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return f"{type(exc).__name__}: {exc}"


class Codec:
    """Validates values against attrs classes and turns them into JSON text and back."""

    def __init__(self, converter: cattrs.Converter | None = None) -> None:
        self.converter = converter or make_strict_converter()

    def coerce(self, value: object, cls: type[Any], what: str) -> tuple[Any, str]:
        """``value`` checked against ``cls``; returns the canonical object and its JSON.

        ``value`` may be an instance of ``cls`` or a mapping of its fields.
        """
        if isinstance(value, cls):
            raw = self.converter.unstructure(value, cls)
        elif isinstance(value, Mapping):
            raw = dict(value)
        else:
            raise ValidationError(
                f"invalid {what}: expected {cls.__name__}, got {type(value).__name__}"
            )
        try:
            canonical = self.converter.structure(raw, cls)
            text = dumps(self.converter.unstructure(canonical, cls))
        except Exception as exc:
            raise ValidationError(f"invalid {what} ({cls.__name__}): {_describe(exc)}") from exc
        if len(text) * 4 > MAX_PAYLOAD_BYTES and len(text.encode()) > MAX_PAYLOAD_BYTES:
            raise ValidationError(
                f"invalid {what}: {len(text.encode())} bytes once serialised, "
                f"over the limit of {MAX_PAYLOAD_BYTES}"
            )
        return canonical, text

    def decode(self, text: str, cls: type[Any], what: str) -> Any:
        """A stored JSON document as ``cls``; ``ValidationError`` if it no longer fits."""
        try:
            return self.converter.structure(json.loads(text), cls)
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
