"""What the core tests share: the fake clock's start and ways to look at telemetry."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

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


_RECORD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def log_entry(record: logging.LogRecord) -> dict[str, Any]:
    """A durable-jobs log record as a dict: ``event``, ``log_level`` and its fields."""
    fields = {k: v for k, v in vars(record).items() if k not in _RECORD}
    return {"log_level": record.levelname.lower(), **fields}


@contextlib.contextmanager
def captured_logs(level: int = logging.DEBUG) -> Iterator[list[dict[str, Any]]]:
    """Everything durable-jobs logs at ``level`` or above meanwhile, as ``log_entry`` dicts."""
    entries: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            entries.append(log_entry(record))

    logger = logging.getLogger("durable_jobs")
    handler, before = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield entries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
