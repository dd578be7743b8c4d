"""When a Continuous job runs next: ``every(duration)`` at a fixed rate, or
``cron(expr, tz)``.

Cron is evaluated on local wall-clock times of the schedule's zone and mapped to
instants the way Vixie cron treats daylight-saving changes:

* a fixed local time skipped by a jump forward runs once, at the end of the gap;
* a fixed local time inside a repeated hour runs once, at its first occurrence;
* a schedule whose hour field is a wildcard or a step follows elapsed time: it
  runs in both copies of a repeated hour and not at all in a skipped one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterBadDateError, croniter

from .durations import Duration, parse_duration

# Offsets of one zone differ by at most a few hours across a transition; a
# candidate this far past the best instant found cannot beat it.
_MAX_OFFSET_SWING = timedelta(hours=3)


class Schedule(Protocol):
    """When runs are due; every time given and returned is aware UTC."""

    def next_after(self, after: datetime) -> datetime:
        """The first run due after ``after``, for an instance that has not run yet."""
        ...

    def next_due(self, due: datetime, now: datetime) -> datetime:
        """The run due after one that was due at ``due`` and started at ``now``."""
        ...


@attrs.frozen
class Every:
    """Run at a fixed rate: each run is due one ``interval`` after the previous one
    was due, however long that run took or however late it started.

    Runs are due on a grid of ``interval`` steps from the first due time. A run that
    starts late — its worker was down, or the run before it overran — is the one run
    for every tick it missed; the next is due at the first tick after it started, so
    an overrun is followed at once by the next run and missed ticks coalesce.
    """

    interval: timedelta

    def next_after(self, after: datetime) -> datetime:
        return after + self.interval

    def next_due(self, due: datetime, now: datetime) -> datetime:
        # timedelta floor division is exact, so the grid never drifts.
        return due + ((now - due) // self.interval + 1) * self.interval


@attrs.frozen
class Cron:
    """A 5-field cron expression evaluated in the zone ``tz``."""

    expr: str
    tz: str = "UTC"

    def problems(self) -> list[str]:
        found = []
        if not croniter.is_valid(self.expr) or len(self.expr.split()) != 5:
            found.append(f"invalid cron expression {self.expr!r}: expected 5 fields")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            found.append(f"unknown time zone {self.tz!r}")
        if not found:
            try:  # "0 0 31 2 *" is well-formed but would fail at the first start
                self.next_after(datetime(2000, 1, 1, tzinfo=UTC))
            except CroniterBadDateError:
                found.append(f"cron expression {self.expr!r} never fires")
        return found

    def next_due(self, due: datetime, now: datetime) -> datetime:
        """Cron times are fixed by the expression: the next one after ``now``."""
        return self.next_after(now)

    @property
    def follows_elapsed_time(self) -> bool:
        hour = self.expr.split()[1]
        return "*" in hour or "/" in hour

    def next_after(self, after: datetime) -> datetime:
        zone = ZoneInfo(self.tz)
        start = after.astimezone(zone).replace(tzinfo=None) - _MAX_OFFSET_SWING
        candidates = croniter(self.expr, start)
        best: datetime | None = None
        while True:
            local: datetime = candidates.get_next(datetime)
            if best is not None and _instant(local, zone, fold=0) > best + _MAX_OFFSET_SWING:
                return best
            for instant in self._instants(local, zone):
                if instant > after and (best is None or instant < best):
                    best = instant

    def _instants(self, local: datetime, zone: ZoneInfo) -> list[datetime]:
        first = _instant(local, zone, fold=0)
        second = _instant(local, zone, fold=1)
        if first.astimezone(zone).replace(tzinfo=None) != local:  # in a gap
            return [] if self.follows_elapsed_time else [_gap_end(first, second, zone)]
        if first != second and self.follows_elapsed_time:  # in a repeated hour
            return [first, second]
        return [first]


def _instant(local: datetime, zone: ZoneInfo, *, fold: int) -> datetime:
    return local.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _gap_end(a: datetime, b: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clock jumped forward: the first valid one after the gap."""
    lo, hi = min(a, b), max(a, b)  # lo is before the jump, hi after it
    offset_after = hi.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == offset_after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def every(duration: Duration) -> Every:
    """Run every ``duration`` (``"30 minutes"``, a ``timedelta`` or seconds)."""
    return Every(parse_duration(duration))


def cron(expr: str, tz: str = "UTC") -> Cron:
    """Run at the times of the 5-field cron ``expr``, evaluated in the zone ``tz``."""
    return Cron(expr, tz)
