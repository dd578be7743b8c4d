"""What each kind counts beside an instance's state: one schema per kind.

Stored as a JSON object next to the state. The handlers change them, the status
results and the CLI read them; all through these classes. Stored counters that do
not fit their kind's schema raise ``ValidationError`` naming the instance, and are
left as they are (SEMANTICS 6).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import attrs

from ..errors import ValidationError
from .jsonfast import dumps, loads

_COUNT = (int,)
_TIME = (int, float, type(None))
_TEXT = (str, type(None))


@attrs.define(kw_only=True)
class ContinuousCounters:
    run_count: int
    attempt: int
    due_at: float | None = None  # the run in hand's place on the schedule
    last_error: str | None = None

    def status(self, alarm_at: float | None) -> Literal["running", "stopped"]:
        return "running" if alarm_at is not None else "stopped"


@attrs.define(kw_only=True)
class DebounceCounters:
    event_count: int
    attempt: int
    started_at: float | None
    flush_reason: str | None
    last_error: str | None = None

    def status(self, alarm_at: float | None) -> Literal["debouncing", "idle"]:
        return "debouncing" if self.event_count else "idle"


@attrs.define(kw_only=True)
class TaskCounters:
    event_count: int
    execute_count: int
    attempt: int
    last_error: str | None = None

    def status(self, alarm_at: float | None) -> Literal["active", "idle"]:
        return "active" if alarm_at is not None else "idle"


Counters = ContinuousCounters | DebounceCounters | TaskCounters

COUNTERS: dict[str, type[Counters]] = {
    "continuous": ContinuousCounters,
    "debounce": DebounceCounters,
    "task": TaskCounters,
}

# What JSON may hold for each counter.
_ACCEPTED: dict[str, tuple[type, ...]] = {
    "run_count": _COUNT,
    "attempt": _COUNT,
    "event_count": _COUNT,
    "execute_count": _COUNT,
    "due_at": _TIME,
    "started_at": _TIME,
    "flush_reason": _TEXT,
    "last_error": _TEXT,
}


def load_counters(text: str, instance_id: str, kind: str) -> Counters:
    """The counters stored as ``text`` for an instance of ``kind``: a fresh object."""
    try:
        return COUNTERS[kind](**_parse(text, kind))
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ValidationError(
            f"stored counters of {instance_id} are corrupt: {exc} (left unchanged in storage)"
        ) from exc


def dump_counters(counters: Counters) -> str:
    return dumps(attrs.asdict(counters, recurse=False))


@functools.lru_cache(maxsize=4096)
def _parse(text: str, kind: str) -> dict[str, Any]:
    """``text`` checked against ``kind``'s schema. Cached: a burst of calls to one
    instance reads the same counters over and over; callers must not change it."""
    cls = COUNTERS.get(kind)
    if cls is None:
        raise ValueError(f"unknown kind {kind!r}")
    parsed = loads(text)
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    fields = attrs.fields_dict(cls)
    unknown = sorted(set(parsed) - set(fields))
    if unknown:
        raise ValueError(f"unknown {', '.join(unknown)}")
    missing = [n for n, f in fields.items() if f.default is attrs.NOTHING and n not in parsed]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for name, value in parsed.items():
        accepted = _ACCEPTED[name]
        if isinstance(value, bool) or not isinstance(value, accepted):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
            raise ValueError(f"{name} must be {expected}, got {type(value).__name__}")
    return parsed
