"""What client calls return. Times are aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import attrs

S = TypeVar("S")


@attrs.frozen
class StartResult:
    created: bool
    instance_id: str
    status: Literal["running", "stopped", "not_found"]


@attrs.frozen
class TriggerResult:
    triggered: bool


@attrs.frozen
class TerminateResult:
    terminated: bool
    reason: str | None = None


@attrs.frozen
class ContinuousStatus:
    status: Literal["running", "stopped", "not_found"]
    run_count: int | None = None
    next_run_at: datetime | None = None


@attrs.frozen
class AddResult:
    created: bool
    event_count: int
    will_flush_at: datetime | None


@attrs.frozen
class FlushResult:
    flushed: bool


@attrs.frozen
class ClearResult:
    cleared: bool
    discarded: int


@attrs.frozen
class DebounceStatus:
    status: Literal["debouncing", "idle", "not_found"]
    event_count: int | None = None
    will_flush_at: datetime | None = None


@attrs.frozen
class SendResult:
    created: bool
    instance_id: str
    scheduled_at: datetime | None


@attrs.frozen
class TaskStatus:
    status: Literal["active", "idle", "not_found"]
    scheduled_at: datetime | None = None
    event_count: int | None = None


@attrs.frozen
class TaskState(Generic[S]):
    state: S | None
    scheduled_at: datetime | None


@attrs.frozen
class DeadLetter:
    instance_id: str
    state: Any
    error: str
    attempts: int
    at: datetime
