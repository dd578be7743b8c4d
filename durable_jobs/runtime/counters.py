"""What each kind counts beside an instance's state: one schema per kind.

Stored as a JSON object next to the state. The handlers change them, the status
results and the CLI read them; all through these classes. Stored counters that do
not fit their kind's schema raise ``ValidationError`` naming the instance, and are
left as they are (SEMANTICS 6).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs

from ..errors import ValidationError
from .jsonfast import dumps, loads

_COUNT = (int,)
_TIME = (int, float, type(None))
_TEXT = (str, type(None))
_ERROR = (dict, str, type(None))  # a failure's record; a bare string before ErrorInfo
_FLAG = (bool,)

Failure = dict[str, Any] | str | None


@attrs.define(kw_only=True)
class ContinuousCounters:
    kind: ClassVar[str] = "continuous"
    run_count: int
    attempt: int
    due_at: float | None = None  # the run in hand's place on the schedule
    last_error: Failure = None
    paused: bool = False
    trace: str | None = None  # the trace context of the call that armed the alarm

    def status(self, alarm_at: float | None) -> Literal["running", "stopped"]:
        return "running" if alarm_at is not None else "stopped"


@attrs.define(kw_only=True)
class DebounceCounters:
    kind: ClassVar[str] = "debounce"
    event_count: int
    attempt: int
    started_at: float | None
    flush_reason: str | None
    last_error: Failure = None
    trace: str | None = None

    def status(self, alarm_at: float | None) -> Literal["debouncing", "idle"]:
        return "debouncing" if self.event_count else "idle"


@attrs.define(kw_only=True)
class TaskCounters:
    kind: ClassVar[str] = "task"
    event_count: int
    execute_count: int
    attempt: int
    last_error: Failure = None
    trace: str | None = None

    def status(self, alarm_at: float | None) -> Literal["active", "idle"]:
        return "active" if alarm_at is not None else "idle"


Counters = ContinuousCounters | DebounceCounters | TaskCounters

COUNTERS: dict[str, type[Counters]] = {
    "continuous": ContinuousCounters,
    "debounce": DebounceCounters,
    "task": TaskCounters,
}

_NAMES: dict[type[Counters], tuple[str, ...]] = {
    cls: tuple(f.name for f in attrs.fields(cls)) for cls in COUNTERS.values()
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
    "last_error": _ERROR,
    "paused": _FLAG,
    "trace": _TEXT,
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
    # Spelled out rather than attrs.asdict: every commit dumps its counters. Optional
    # counters that are unset (None, or a False flag) are left out: shorter to write,
    # and to read back.
    required = _SCHEMAS[counters.kind][1]
    return dumps(
        {
            name: value
            for name in _NAMES[type(counters)]
            if ((value := getattr(counters, name)) is not None and value is not False)
            or name in required
        }
    )


def _parse(text: str, kind: str) -> dict[str, Any]:
    """``text`` checked against ``kind``'s schema."""
    schema = _SCHEMAS.get(kind)
    if schema is None:
        raise ValueError(f"unknown kind {kind!r}")
    parsed = loads(text)
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {type(parsed).__name__}")
    names, required = schema
    if not names.issuperset(parsed):
        raise ValueError(f"unknown {', '.join(sorted(set(parsed) - names))}")
    if not required.issubset(parsed):
        missing = [name for name in _NAMES[COUNTERS[kind]] if name in required - set(parsed)]
        raise ValueError(f"missing {', '.join(missing)}")
    for name, value in parsed.items():
        accepted = _ACCEPTED[name]
        if type(value) not in accepted:  # exact: a bool is no count, a subclass no JSON
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
            raise ValueError(f"{name} must be {expected}, got {type(value).__name__}")
        if type(value) is dict:
            _check_failure(name, value)
    return parsed


_FAILURE_FIELDS: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "message": (str,),
    "traceback": (str,),
    "at": (int, float),
    "attempt": (int,),
}


def _check_failure(name: str, value: dict[str, Any]) -> None:
    if set(value) != set(_FAILURE_FIELDS):
        raise ValueError(f"{name} must have exactly {', '.join(_FAILURE_FIELDS)}")
    for field, accepted in _FAILURE_FIELDS.items():
        if type(value[field]) not in accepted:
            raise ValueError(f"{name}.{field} must be {accepted[0].__name__}")


# Per kind: the names its counters may have, and those they must.
_SCHEMAS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    kind: (
        frozenset(f.name for f in attrs.fields(cls)),
        frozenset(f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING),
    )
    for kind, cls in COUNTERS.items()
}
