"""What operators list and read: instances, history, dead letters, workers.

Records of the store become the result types of ``results.py`` here. Nothing here
runs user code or needs a job to be registered: instances of jobs since removed
are listed like the others.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

import attrs

from ..adapters.records import DeadLetterRecord, HistoryRecord, InstanceRecord, WorkerRecord
from ..errors import ValidationError
from .clock import to_datetime, to_datetime_or_none
from .counters import load_counters
from .failures import error_info
from .ids import KINDS
from .jsonfast import loads
from .results import DeadLetter, ErrorInfo, Execution, InstanceInfo, WorkerInfo

# Per kind, its status word with an alarm set and without one.
STATUSES: dict[str, tuple[str, str]] = {
    "continuous": ("running", "stopped"),
    "debounce": ("debouncing", "idle"),
    "task": ("active", "idle"),
}

LIVE_LEASES = 3
"""A worker that has not refreshed its row for this many leases is not listed."""


def queries(kind: str | None, status: str | None) -> list[tuple[str | None, bool | None]]:
    """The (kind, alarm set) filters a listing by ``kind`` and ``status`` takes, in
    instance id order; ``ValueError`` naming the allowed words for an unknown one."""
    if kind is not None and kind not in STATUSES:
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    if status is None:
        return [(kind, None)]
    kinds = [kind] if kind is not None else list(KINDS)
    allowed = sorted({word for k in kinds for word in STATUSES[k]})
    if status not in allowed:
        raise ValueError(
            f"unknown status {status!r}"
            + (f" for {kind} jobs" if kind is not None else "")
            + f": expected one of {', '.join(allowed)}"
        )
    # Ids start with their kind, so listing kind after kind keeps id order.
    return [(k, STATUSES[k][0] == status) for k in kinds if status in STATUSES[k]]


def status_of(record: InstanceRecord) -> str:
    alarmed, idle = STATUSES.get(record.kind, ("alarmed", "idle"))
    return alarmed if record.alarm_at is not None else idle


def last_error_of(record: InstanceRecord) -> ErrorInfo | None:
    """The instance's latest failure; ``None`` too when its counters are damaged
    (a listing shows what it can)."""
    try:
        counters = load_counters(record.meta, record.instance_id, record.kind)
    except ValidationError:
        return None
    return error_info(counters.last_error)


def shown_counters(record: InstanceRecord) -> dict[str, Any] | None:
    """The kind's counters as operators read them: times as ISO 8601, without the
    latest failure (an instance's ``last_error``) or the trace context; ``None`` when
    they are damaged (a page shows what it can)."""
    try:
        counters = load_counters(record.meta, record.instance_id, record.kind)
    except ValidationError:
        return None
    shown = attrs.asdict(counters, filter=lambda a, _: a.name not in ("last_error", "trace"))
    for name, value in shown.items():
        if name.endswith("_at") and isinstance(value, int | float):
            shown[name] = to_datetime(value).isoformat()
    return shown


def is_overdue(alarm_at: float | None, job_name: str, now: float, served: Collection[str]) -> bool:
    """An alarm past due while no live worker serves its job."""
    return alarm_at is not None and alarm_at < now and job_name not in served


def instance_info(record: InstanceRecord, now: float, served: Collection[str]) -> InstanceInfo:
    return InstanceInfo(
        instance_id=record.instance_id,
        kind=record.kind,
        job_name=record.job_name,
        id=record.key,
        status=status_of(record),
        next_alarm_at=to_datetime_or_none(record.alarm_at),
        created_at=to_datetime(record.created_at),
        updated_at=to_datetime(record.updated_at),
        last_error=last_error_of(record),
        overdue=is_overdue(record.alarm_at, record.job_name, now, served),
    )


def execution(row: HistoryRecord) -> Execution:
    error = None
    if row.error is not None:
        try:
            error = error_info(loads(row.error))
        except (ValueError, TypeError):
            error = error_info(row.error)
    return Execution(
        instance_id=row.instance_id,
        trigger=cast(Any, row.trigger),  # one of the words the handlers write
        started_at=to_datetime(row.started_at),
        finished_at=to_datetime(row.finished_at),
        duration_ms=round((row.finished_at - row.started_at) * 1000, 3),
        outcome=cast(Any, row.outcome),
        attempt=row.attempt,
        error=error,
    )


def dead_letter(record: DeadLetterRecord, state: Any) -> DeadLetter:
    return DeadLetter(
        record.instance_id,
        state,
        record.error,
        record.attempts,
        to_datetime(record.at),
        record.job_name,
        record.kind,
        record.traceback,
    )


def worker_info(record: WorkerRecord) -> WorkerInfo:
    return WorkerInfo(
        worker_id=record.worker_id,
        host=record.host,
        pid=record.pid,
        started_at=to_datetime(record.started_at),
        last_seen_at=to_datetime(record.last_seen_at),
        concurrency=record.concurrency,
        running=record.running,
        jobs=record.jobs,
    )
