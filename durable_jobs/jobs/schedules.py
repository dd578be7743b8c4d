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

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterBadDateError, croniter

from .durations import Duration, parse_duration

# Offsets of one zone differ by at most a few hours across a transition; a
# candidate this far past the best instant found cannot beat it.
_MAX_OFFSET_SWING = timedelta(hours=3)
# Longer than the longest wait between two dates of any day/month pattern
# (February 29th skips 2100), so a pattern not met by then is never met.
_MAX_SEARCH = timedelta(days=366 * 12)


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
        local = after.astimezone(zone)
        offset = local.utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        # The next local cron time, at the offset of ``after``, is the answer unless
        # the offset changes near it: a change further away only skips or repeats
        # local times before ``after`` or between it and the answer, where no cron
        # time lies.
        instant = (next(_local_times(self.expr, local.replace(tzinfo=None))) - offset).replace(
            tzinfo=UTC
        )
        return instant if _steady(zone, instant, offset) else self._scan(after, zone)

    def _scan(self, after: datetime, zone: ZoneInfo) -> datetime:
        """Near an offset change: map every local cron time around ``after`` to its
        instants and take the earliest one after it."""
        start = after.astimezone(zone).replace(tzinfo=None) - _MAX_OFFSET_SWING
        best: datetime | None = None
        for local in _local_times(self.expr, start):
            if best is not None and _instant(local, zone, fold=0) > best + _MAX_OFFSET_SWING:
                return best
            for instant in self._instants(local, zone):
                if instant > after and (best is None or instant < best):
                    best = instant
        raise AssertionError("unreachable: cron times never run out")  # pragma: no cover

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


def _steady(zone: ZoneInfo, at: datetime, offset: timedelta) -> bool:
    """Whether ``zone`` keeps ``offset`` from ``_MAX_OFFSET_SWING`` before ``at`` to as
    long after it. Ends 6 h apart are closer than two changes of one zone's offset ever
    are (95 h at the least in tzdata), so equal offsets at both rule out a change."""
    return (
        (at - _MAX_OFFSET_SWING).astimezone(zone).utcoffset()
        == offset
        == (at + _MAX_OFFSET_SWING).astimezone(zone).utcoffset()
    )


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


@attrs.frozen
class _Fields:
    """A cron expression as sets of plain values: each next time costs microseconds,
    where ``croniter`` re-derives it field by field in tens of them."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int] | None  # None: any
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # 0 is Sunday, as in cron

    def day_matches(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        by_date = self.days is None or day.day in self.days
        by_weekday = self.weekdays is None or (day.weekday() + 1) % 7 in self.weekdays
        if self.days is not None and self.weekdays is not None:
            return by_date or by_weekday  # both restricted: either will do, as in cron
        return by_date and by_weekday

    def next_after(self, local: datetime) -> datetime:
        """The first matching minute after ``local`` (naive), at second 0."""
        start = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        if self.day_matches(day):
            at = self._time_from(start.hour, start.minute)
            if at is not None:
                return datetime.combine(day, at)
        last = day + _MAX_SEARCH
        while day < last:
            day += timedelta(days=1)
            if self.day_matches(day):
                return datetime.combine(day, time(self.hours[0], self.minutes[0]))
        raise CroniterBadDateError(f"no date matches the cron fields {self}")

    def _time_from(self, hour: int, minute: int) -> time | None:
        """The first listed time of day at or after ``hour:minute``."""
        if hour in self.hours:
            i = bisect_left(self.minutes, minute)
            if i < len(self.minutes):
                return time(hour, self.minutes[i])
        i = bisect_right(self.hours, hour)
        return time(self.hours[i], self.minutes[0]) if i < len(self.hours) else None


@lru_cache(maxsize=256)
def _fields(expr: str) -> _Fields | None:
    """The plain fields of ``expr``, or None when it uses croniter's extensions
    (``L``, ``#``, ...) and only croniter can evaluate it."""
    expanded, nth_weekday = croniter.expand(expr)
    plain = all(f == ["*"] or all(isinstance(v, int) for v in f) for f in expanded)
    if nth_weekday or len(expanded) != 5 or not plain:
        return None

    def values(field: list[Any]) -> list[int]:
        return [] if field == ["*"] else sorted(set(field))

    minutes, hours, days, months, weekdays = (values(f) for f in expanded)
    return _Fields(
        minutes=tuple(minutes or range(60)),
        hours=tuple(hours or range(24)),
        days=frozenset(days) if days else None,
        months=frozenset(months) if months else None,
        weekdays=frozenset(weekdays) if weekdays else None,
    )


def _local_times(expr: str, after: datetime) -> Iterator[datetime]:
    """The local (naive) times of ``expr`` after ``after``, in order."""
    fields = _fields(expr)
    if fields is None:
        candidates = croniter(expr, after)
        while True:
            yield candidates.get_next(datetime)
    local = after
    while True:
        local = fields.next_after(local)
        yield local


def every(duration: Duration) -> Every:
    """Run every ``duration`` (``"30 minutes"``, a ``timedelta`` or seconds)."""
    return Every(parse_duration(duration))


def cron(expr: str, tz: str = "UTC") -> Cron:
    """Run at the times of the 5-field cron ``expr``, evaluated in the zone ``tz``."""
    return Cron(expr, tz)
