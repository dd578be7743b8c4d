"""Clocks: the system clock for real runs, a settable one for tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def to_datetime_or_none(seconds: float | None) -> datetime | None:
    return None if seconds is None else to_datetime(seconds)


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"the fake clock needs an aware datetime, got {start!r}")
        self._now = start.timestamp()

    def now(self) -> float:
        return self._now

    def set(self, seconds: float) -> None:
        self._now = max(self._now, seconds)  # time never runs backwards
