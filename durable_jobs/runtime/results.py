"""What client calls return. Times are aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import attrs

S = TypeVar("S")
T = TypeVar("T")


@attrs.frozen
class ErrorInfo:
    """A failed handler call: the exception's class name, message and formatted
    traceback (the handler's frames included), when it failed and at which attempt."""

    type: str
    message: str
    traceback: str
    at: datetime
    attempt: int


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
    last_error: ErrorInfo | None = None
    overdue: bool = False


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
    last_error: ErrorInfo | None = None
    overdue: bool = False


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
    last_error: ErrorInfo | None = None
    overdue: bool = False


@attrs.frozen
class TaskState(Generic[S]):
    state: S | None
    scheduled_at: datetime | None


@attrs.frozen
class DeadLetter:
    """What an instance held when it failed for good. ``error`` is ``"Type: message"``;
    ``traceback`` is empty when no exception was raised (a poisoned alarm)."""

    instance_id: str
    state: Any
    error: str
    attempts: int
    at: datetime
    job_name: str = ""
    kind: str = ""
    traceback: str = ""


@attrs.frozen
class PauseResult:
    paused: bool


@attrs.frozen
class ResumeResult:
    resumed: bool
    next_run_at: datetime | None = None


@attrs.frozen
class RedriveResult:
    """``redriven`` is ``False`` when the instance had no dead letter."""

    redriven: bool
    instance_id: str


@attrs.frozen
class Execution:
    """One run of ``execute`` or one failed handler call, as kept in the history."""

    instance_id: str
    trigger: Literal["alarm", "trigger", "flush", "redrive", "start", "add", "send"]
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    outcome: Literal["ok", "failed", "retrying", "dead_lettered", "terminated", "timed_out"]
    attempt: int
    error: ErrorInfo | None = None


@attrs.frozen
class InstanceInfo:
    """One instance as listed. ``overdue``: its alarm is past due while no live
    worker serves its job."""

    instance_id: str
    kind: str
    job_name: str
    id: str
    status: str
    next_alarm_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_error: ErrorInfo | None = None
    overdue: bool = False


@attrs.frozen
class Page(Generic[T]):
    """A page of a listing; pass ``next_cursor`` back as ``cursor=`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


@attrs.frozen
class WorkerInfo:
    """A live worker process and the jobs it serves."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    concurrency: int
    running: int
    jobs: tuple[str, ...]
