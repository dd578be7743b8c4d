"""Request bodies: bounded, JSON objects, with only the fields a route reads.

Events and states stay plain JSON here: the client validates them against the job's
attrs schema. The one thing it cannot do from a mapping is pick the member of an
event union (``check_event`` refuses a mapping when the job's event is a union, as
no field says which class it is), so a union event names its class in ``"type"``
and is built as that class here, then checked field by field by the client.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from starlette.requests import Request

from ..errors import ValidationError
from ..jobs.definitions import JobDefinition, Task
from ..runtime.codec import MAX_PAYLOAD_BYTES

MAX_BODY_BYTES = MAX_PAYLOAD_BYTES + 64 * 1024
"""A body may hold one payload at its limit, plus room for the other fields."""


class BodyTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``; it was not read further."""


async def read_object(request: Request, allowed: Collection[str]) -> dict[str, Any]:
    """The body as a JSON object of ``allowed`` keys; an empty body is ``{}``."""
    raw = await _read_bounded(request)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"invalid request body: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValidationError(f"invalid request body: expected an object, got {_kind(value)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        expected = ", ".join(sorted(allowed)) or "no fields"
        raise ValidationError(f"invalid request body: unknown fields {unknown} ({expected})")
    return value


async def _read_bounded(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(_too_large(int(declared)))
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > MAX_BODY_BYTES:  # a body sent without its length
            raise BodyTooLarge(_too_large(len(chunks)))
    return bytes(chunks)


def _too_large(size: int) -> str:
    return f"request body of {size} bytes or more is over the limit of {MAX_BODY_BYTES}"


def event_of(definition: JobDefinition, value: Any) -> Any:
    """``value`` as the client takes it: the mapping itself, or for a union event
    ``{"type": "<ClassName>", ...fields}`` an instance of the class it names."""
    members = definition.event_types if isinstance(definition, Task) else ()
    if len(members) < 2 or not isinstance(value, Mapping):
        return value
    fields = dict(value)
    name = fields.pop("type", None)
    names = ", ".join(m.__name__ for m in members)
    chosen = next((m for m in members if m.__name__ == name), None)
    if chosen is None:
        raise ValidationError(
            f"invalid event: a union event names its class in 'type', one of {names}; got {name!r}"
        )
    try:
        return chosen(**fields)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"invalid event ({chosen.__name__}): {exc}") from None


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", type(None): "null"}.get(type(value), "a value")
