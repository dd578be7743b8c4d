"""What the core tests share: the fake clock's start and ways to look at telemetry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from durable_jobs import JobEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def later(**delta: float) -> datetime:
    """``T0`` plus a ``timedelta(**delta)``."""
    return T0 + timedelta(**delta)


def types(events: Iterable[JobEvent], instance_id: str | None = None) -> list[str]:
    """The types of ``events`` in order, optionally only those of one instance."""
    return [e.type for e in events if instance_id is None or e.instance_id == instance_id]


def of_type(events: Iterable[JobEvent], type: str) -> list[JobEvent]:
    return [e for e in events if e.type == type]


class ManualClock:
    """A clock (the ``Clock`` protocol) that tests move by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.seconds = start.timestamp()

    def now(self) -> float:
        return self.seconds
