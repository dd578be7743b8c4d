"""Cron and ``every`` through the runtime: when a Continuous job actually runs.

Cron follows Vixie cron across daylight-saving changes (SEMANTICS 8): a fixed local
time skipped by a jump forward runs once at the end of the gap, a fixed local time in
a repeated hour runs once at its first occurrence, and schedules whose hour field is a
wildcard or a step follow elapsed time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest

from durable_jobs import Backoff, Continuous, ContinuousContext, Retry, cron, every
from durable_jobs.testing import create_test_runtime
from tests.support import T0


@attrs.frozen
class Nothing:
    pass


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def run_times(
    schedule: object, start: datetime, span: timedelta, *, immediately: bool = False
) -> list[datetime]:
    """The ``ctx.now`` of every run of a Continuous job started at ``start``."""
    runs: list[datetime] = []

    async def record(ctx: ContinuousContext[Nothing]) -> None:
        runs.append(ctx.now)

    job = Continuous(
        state=Nothing, schedule=schedule, execute=record, start_immediately=immediately
    )
    rt = create_test_runtime({"job": job}, now=start)
    await rt.client.continuous(job).start("a", Nothing())
    await rt.advance(span)
    return runs


# -- the brief's named cases: New York ------------------------------------------------


async def test_new_york_fixed_time_in_the_repeated_hour_runs_only_at_its_first_occurrence() -> None:
    # 2026-11-01: 01:30 EDT is 05:30Z, 01:30 EST is 06:30Z.
    runs = await run_times(
        cron("30 1 * * *", tz="America/New_York"), utc("2026-10-31T12:00"), timedelta(days=2)
    )
    assert runs == [utc("2026-11-01T05:30"), utc("2026-11-02T06:30")]
    assert utc("2026-11-01T06:30") not in runs


async def test_new_york_fixed_time_skipped_by_the_jump_runs_once_at_the_end_of_the_gap() -> None:
    # 2026-03-08: clocks jump from 02:00 EST (07:00Z) to 03:00 EDT; 02:30 never happens.
    runs = await run_times(
        cron("30 2 * * *", tz="America/New_York"), utc("2026-03-07T12:00"), timedelta(days=2)
    )
    assert runs == [utc("2026-03-08T07:00"), utc("2026-03-09T06:30")]


async def test_new_york_every_twenty_minutes_runs_in_both_copies_of_the_repeated_hour() -> None:
    runs = await run_times(
        cron("*/20 * * * *", tz="America/New_York"),
        utc("2026-11-01T04:50"),
        timedelta(hours=2, minutes=15),
    )
    assert runs == [
        utc("2026-11-01T05:00"),  # 01:00 EDT
        utc("2026-11-01T05:20"),
        utc("2026-11-01T05:40"),
        utc("2026-11-01T06:00"),  # 01:00 EST, the same wall-clock time again
        utc("2026-11-01T06:20"),
        utc("2026-11-01T06:40"),
        utc("2026-11-01T07:00"),  # 02:00 EST
    ]


async def test_new_york_hourly_skips_the_missing_hour_and_repeats_the_doubled_one() -> None:
    zone = ZoneInfo("America/New_York")
    spring = await run_times(
        cron("0 * * * *", tz="America/New_York"), utc("2026-03-08T04:30"), timedelta(hours=4)
    )
    assert spring == [
        utc("2026-03-08T05:00"),
        utc("2026-03-08T06:00"),
        utc("2026-03-08T07:00"),
        utc("2026-03-08T08:00"),
    ]
    assert [t.astimezone(zone).hour for t in spring] == [0, 1, 3, 4]  # no 02:00

    autumn = await run_times(
        cron("0 * * * *", tz="America/New_York"), utc("2026-11-01T03:30"), timedelta(hours=4)
    )
    assert [t.astimezone(zone).hour for t in autumn] == [0, 1, 1, 2]
    assert autumn == [
        utc("2026-11-01T04:00"),
        utc("2026-11-01T05:00"),
        utc("2026-11-01T06:00"),
        utc("2026-11-01T07:00"),
    ]


# -- the same rules in Europe/Berlin (2026-03-29 and 2026-10-25) -----------------------


async def test_berlin_fixed_time_skipped_on_2026_03_29_runs_at_the_end_of_the_gap() -> None:
    # 02:00 CET (01:00Z) jumps to 03:00 CEST.
    runs = await run_times(
        cron("30 2 * * *", tz="Europe/Berlin"), utc("2026-03-28T12:00"), timedelta(days=2)
    )
    assert runs == [utc("2026-03-29T01:00"), utc("2026-03-30T00:30")]


async def test_berlin_fixed_time_in_the_repeated_hour_on_2026_10_25_runs_once() -> None:
    # 02:30 CEST is 00:30Z; 02:30 CET (01:30Z) is its repetition and must not run.
    runs = await run_times(
        cron("30 2 * * *", tz="Europe/Berlin"), utc("2026-10-24T12:00"), timedelta(days=2)
    )
    assert runs == [utc("2026-10-25T00:30"), utc("2026-10-26T01:30")]
    assert utc("2026-10-25T01:30") not in runs


async def test_berlin_every_twenty_minutes_follows_elapsed_time_across_both_changes() -> None:
    spring = await run_times(
        cron("*/20 * * * *", tz="Europe/Berlin"), utc("2026-03-29T00:30"), timedelta(hours=1)
    )
    # 01:40 CET, then straight to 03:00 CEST: nothing in the skipped 02:xx hour.
    assert spring == [utc("2026-03-29T00:40"), utc("2026-03-29T01:00"), utc("2026-03-29T01:20")]

    autumn = await run_times(
        cron("*/20 * * * *", tz="Europe/Berlin"), utc("2026-10-24T23:50"), timedelta(hours=2)
    )
    assert autumn == [
        utc("2026-10-25T00:00"),  # 02:00 CEST
        utc("2026-10-25T00:20"),
        utc("2026-10-25T00:40"),
        utc("2026-10-25T01:00"),  # 02:00 CET
        utc("2026-10-25T01:20"),
        utc("2026-10-25T01:40"),
    ]


async def test_berlin_hourly_skips_the_missing_hour_and_repeats_the_doubled_one() -> None:
    zone = ZoneInfo("Europe/Berlin")
    spring = await run_times(
        cron("0 * * * *", tz="Europe/Berlin"), utc("2026-03-28T23:30"), timedelta(hours=3)
    )
    assert spring == [utc("2026-03-29T00:00"), utc("2026-03-29T01:00"), utc("2026-03-29T02:00")]
    assert [t.astimezone(zone).hour for t in spring] == [1, 3, 4]

    autumn = await run_times(
        cron("0 * * * *", tz="Europe/Berlin"), utc("2026-10-24T23:30"), timedelta(hours=3)
    )
    assert autumn == [utc("2026-10-25T00:00"), utc("2026-10-25T01:00"), utc("2026-10-25T02:00")]
    assert [t.astimezone(zone).hour for t in autumn] == [2, 2, 3]


# -- other cron rules -------------------------------------------------------------------


async def test_a_fixed_hour_range_is_fixed_time_and_runs_once_in_the_repeated_hour() -> None:
    # "1-3" is neither a wildcard nor a step: each listed hour runs once.
    runs = await run_times(
        cron("0 1-3 * * *", tz="America/New_York"), utc("2026-11-01T04:30"), timedelta(hours=4)
    )
    assert runs == [utc("2026-11-01T05:00"), utc("2026-11-01T07:00"), utc("2026-11-01T08:00")]


async def test_cron_is_evaluated_in_its_zone_summer_and_winter() -> None:
    runs = await run_times(
        cron("0 9 * * 1", tz="America/New_York"), utc("2026-03-01T00:00"), timedelta(days=15)
    )
    # Mondays at 09:00 New York time: EST (UTC-5) before 2026-03-08, EDT (UTC-4) after.
    assert runs == [utc("2026-03-02T14:00"), utc("2026-03-09T13:00")]


async def test_cron_defaults_to_utc() -> None:
    runs = await run_times(cron("15 9 * * *"), T0, timedelta(days=2))
    assert runs == [utc("2026-01-01T09:15"), utc("2026-01-02T09:15")]


async def test_a_cron_job_started_immediately_runs_at_start_then_on_the_cron_times() -> None:
    runs = await run_times(
        cron("0 12 * * *"), utc("2026-01-01T08:20"), timedelta(days=1), immediately=True
    )
    assert runs == [utc("2026-01-01T08:20"), utc("2026-01-01T12:00")]


# -- every: a fixed rate ------------------------------------------------------------------


async def test_every_runs_on_a_grid_from_its_first_run() -> None:
    runs = await run_times(every("45 minutes"), T0, timedelta(hours=2), immediately=True)
    assert runs == [T0 + timedelta(minutes=m) for m in (0, 45, 90)]


async def test_every_delivered_late_runs_once_and_keeps_its_grid() -> None:
    runs: list[datetime] = []

    async def record(ctx: ContinuousContext[Nothing]) -> None:
        runs.append(ctx.now)

    job = Continuous(state=Nothing, schedule=every("10 minutes"), execute=record)
    rt = create_test_runtime({"job": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("a", Nothing())  # due at 00:10, 00:20, 00:30, 00:40, ...
    rt.app.clock.set((T0 + timedelta(minutes=35)).timestamp())  # no worker ran until 00:35

    await rt.advance(0)
    assert runs == [T0 + timedelta(minutes=35)]  # 00:10, 00:20 and 00:30 coalesced
    status = await handle.status("a")
    assert (status.run_count, status.next_run_at) == (1, T0 + timedelta(minutes=40))

    await rt.advance("15 minutes")
    assert runs[1:] == [T0 + timedelta(minutes=40), T0 + timedelta(minutes=50)]


async def test_every_run_that_overruns_is_followed_at_once_then_back_on_the_grid() -> None:
    runs: list[datetime] = []

    async def record(ctx: ContinuousContext[Nothing]) -> None:
        runs.append(ctx.now)
        if len(runs) == 1:  # the first run takes 25 minutes
            rt.app.clock.set((ctx.now + timedelta(minutes=25)).timestamp())

    job = Continuous(
        state=Nothing, schedule=every("10 minutes"), execute=record, start_immediately=True
    )
    rt = create_test_runtime({"job": job}, now=T0)
    await rt.client.continuous(job).start("a", Nothing())
    await rt.advance("40 minutes")
    # 00:10 and 00:20 passed during the first run: one run at once, then 00:30.
    assert runs == [T0 + timedelta(minutes=m) for m in (0, 25, 30, 40)]


async def test_every_retry_does_not_shift_the_grid() -> None:
    runs: list[datetime] = []

    async def flaky(ctx: ContinuousContext[Nothing]) -> None:
        runs.append(ctx.now)
        if len(runs) == 1:
            raise RuntimeError("upstream down")

    job = Continuous(
        state=Nothing,
        schedule=every("10 minutes"),
        execute=flaky,
        start_immediately=True,
        retry=Retry(max_attempts=3, delay=Backoff.fixed("3 minutes")),
    )
    rt = create_test_runtime({"job": job}, now=T0)
    await rt.client.continuous(job).start("a", Nothing())
    await rt.advance("20 minutes")
    assert runs == [T0 + timedelta(minutes=m) for m in (0, 3, 10, 20)]


@pytest.mark.parametrize(
    "schedule", [cron("*/5 * * * *", tz="Asia/Kolkata"), every("10 minutes")], ids=str
)
async def test_times_the_runtime_reports_are_aware_utc(schedule: object) -> None:
    runs = await run_times(schedule, T0, timedelta(hours=1))
    assert runs
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in runs)
