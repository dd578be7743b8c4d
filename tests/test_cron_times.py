"""``Cron.next_after`` against a brute-force model of Vixie cron (SEMANTICS 8).

The model walks UTC minute by minute and asks of each one whether cron fires there,
using only croniter's local times and the zone's own offsets. It shares no code with
the schedule, so a shortcut in ``next_after`` that is wrong anywhere — on a quiet day
or next to a daylight-saving change — gives a different answer somewhere here.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from durable_jobs import cron

MINUTE = timedelta(minutes=1)

ZONES = [
    "UTC",
    "Asia/Kolkata",  # +05:30, no daylight saving
    "America/New_York",
    "Europe/Berlin",
    "America/Santiago",  # southern hemisphere, changes at midnight
    "Australia/Lord_Howe",  # moves by half an hour
    "Pacific/Chatham",  # +12:45 / +13:45
]

EXPRESSIONS = [
    "*/5 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "0,30 0-3 * * *",
    "0 1-3 * * *",
    "45 23 * * 1-5",
    "0 12 1,15 * 1",  # day of month and weekday both set: either matches
    "15 3 * * 0",  # weekly: beyond the fast path's horizon
    "0 0 L * 1",  # croniter syntax the plain fields do not cover: Mondays or month ends
]


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants (UTC, to the minute) at which ``zone`` changes its offset."""
    found = []
    day = datetime(year, 1, 1, tzinfo=UTC)
    while day.year == year:
        lo, hi = day, day + timedelta(days=1)
        if lo.astimezone(zone).utcoffset() != hi.astimezone(zone).utcoffset():
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(second=0, microsecond=0))
        day += timedelta(days=1)
    return found


def fire_times(expr: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Every instant from ``start`` at which cron fires, up to the first one after ``end``."""
    elapsed = any(c in expr.split()[1] for c in "*/")
    candidates = croniter(expr, start.astimezone(zone).replace(tzinfo=None) - timedelta(days=1))
    matches: list[datetime] = [candidates.get_next(datetime)]
    matched = set(matches)
    fires: list[datetime] = []
    at = start
    while not fires or fires[-1] <= end:
        here, before = at.astimezone(zone), (at - MINUTE).astimezone(zone)
        local = here.replace(tzinfo=None)
        while matches[-1] <= local:
            matches.append(candidates.get_next(datetime))
            matched.add(matches[-1])
        if local in matched and (elapsed or here.fold == 0):
            fires.append(at)
        elif not elapsed and here.utcoffset() != before.utcoffset():
            skipped = before.replace(tzinfo=None) + MINUTE  # empty unless a jump forward
            if any(skipped <= m < local for m in matches):
                fires.append(at)  # a fixed time the jump skipped runs at the gap's end
        at += MINUTE
    return fires


def windows(zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    quiet = datetime(2026, 6, 10, 7, 0, tzinfo=UTC)
    around = [(t - timedelta(hours=30), t + timedelta(hours=30)) for t in transitions(zone, 2026)]
    return [(quiet, quiet + timedelta(hours=30)), *around]


def probes(start: datetime, end: datetime, fires: list[datetime]) -> list[datetime]:
    """Instants spread over the window, plus each fire time near its middle (the
    change), just before it and at it."""
    step = timedelta(minutes=9, seconds=17, microseconds=300_000)
    spread = [start + step * i for i in range(int((end - start) / step))]
    middle = start + (end - start) / 2
    near = [f for f in fires if abs(f - middle) <= timedelta(hours=7)]
    return spread + [f - d for f in near for d in (timedelta(microseconds=1), timedelta(0))]


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_next_after_matches_the_minute_by_minute_model(expr: str, tz: str) -> None:
    schedule, zone = cron(expr, tz=tz), ZoneInfo(tz)
    for start, end in windows(zone):
        fires = fire_times(expr, zone, start, end)
        for after in probes(start, end, fires):
            expected = fires[bisect_right(fires, after)]
            assert schedule.next_after(after) == expected, (expr, tz, after)


def test_a_yearly_time_seen_across_both_changes_keeps_its_first_occurrence() -> None:
    # From 01:30 EST just before the spring jump, the next 1 November 01:30 is in the
    # repeated hour: its first occurrence is 01:30 EDT (05:30Z), though the offset on
    # that morning after the change (EST) is the one of the starting instant.
    schedule = cron("30 1 1 11 *", tz="America/New_York")
    after = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
    assert schedule.next_after(after) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_the_model_sees_daylight_saving_changes() -> None:
    # Guards the model itself: each zone with daylight saving has its two changes.
    assert [len(transitions(ZoneInfo(tz), 2026)) for tz in ZONES] == [0, 0, 2, 2, 2, 2, 2]
