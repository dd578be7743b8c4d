"""Compact JSON, with the encoder and decoder built once: ``json.dumps`` with
non-default separators makes a new encoder on every call, a measurable share of a
client call. Also where the counters stored beside a state are read and checked."""

from __future__ import annotations

import functools
import json
from typing import Any, NoReturn

from ..errors import ValidationError

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON can hold")


# Python's parser reads NaN and Infinity, which are not JSON: stored data holding
# them did not come from us and is refused.
loads = json.JSONDecoder(parse_constant=_no_constant).decode

_COUNT = (int,)
_TIME = (int, float, type(None))
_TEXT = (str, type(None))
# The type of every counter the kinds keep, and those each kind cannot do without.
_COUNTER_TYPES: dict[str, tuple[type, ...]] = {
    "attempt": _COUNT,
    "run_count": _COUNT,
    "event_count": _COUNT,
    "execute_count": _COUNT,
    "started_at": _TIME,
    "flush_reason": _TEXT,
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "continuous": ("run_count", "attempt"),
    "debounce": ("event_count", "attempt", "started_at", "flush_reason"),
    "task": ("event_count", "execute_count", "attempt"),
}


@functools.lru_cache(maxsize=4096)
def _parse_object(text: str, kind: str) -> dict[str, Any]:
    parsed = loads(text)
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    missing = [name for name in _REQUIRED.get(kind, ()) if name not in parsed]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for name, value in parsed.items():
        accepted = _COUNTER_TYPES.get(name)
        if accepted is not None and (isinstance(value, bool) or not isinstance(value, accepted)):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
            raise ValueError(f"{name} must be {expected}, got {type(value).__name__}")
    return parsed


def load_object(text: str, instance_id: str = "instance", kind: str = "") -> dict[str, Any]:
    """The counters stored with an instance, as a fresh dict; ``ValidationError``
    naming the instance if they are not a JSON object holding the counters of its
    ``kind``. Counters are re-read on every call, so parsed texts are cached and copied."""
    try:
        return dict(_parse_object(text, kind))
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ValidationError(
            f"stored counters of {instance_id} are corrupt: {exc} (left unchanged in storage)"
        ) from exc
