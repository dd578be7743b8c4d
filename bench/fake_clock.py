"""Schedules under the test runtime's fake clock: what a user's test of a periodic job
pays. Prints a table of medians.

    python bench/fake_clock.py [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import attrs

from durable_jobs import Continuous, ContinuousContext, cron, every
from durable_jobs.jobs.schedules import Schedule
from durable_jobs.testing import create_test_runtime

START = datetime(2026, 1, 1, tzinfo=UTC)
CRONS = [
    ("*/20 * * * *", "UTC"),
    ("*/20 * * * *", "America/New_York"),
    ("*/5 * * * *", "America/New_York"),
    ("30 2 * * *", "Europe/Berlin"),
]


@attrs.frozen
class Nothing:
    pass


def next_after_micros(expr: str, tz: str, calls: int = 300) -> float:
    schedule = cron(expr, tz)
    at = START
    began = time.perf_counter()
    for _ in range(calls):
        at = schedule.next_after(at)
    return (time.perf_counter() - began) / calls * 1e6


async def one_year(schedule: Schedule) -> tuple[float, int]:
    """Seconds to advance a year in one call, and the runs delivered."""

    async def run(ctx: ContinuousContext[Nothing]) -> None:
        return None

    job = Continuous(state=Nothing, schedule=schedule, execute=run, start_immediately=False)
    rt = create_test_runtime({"job": job}, now=START)
    await rt.client.continuous(job).start("a", Nothing())
    began = time.perf_counter()
    runs = await rt.advance(timedelta(days=365))
    took = time.perf_counter() - began
    await rt.aclose()
    return took, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    print(f"{'what':<52} {'median':>12}")
    for expr, tz in CRONS:
        micros = statistics.median(next_after_micros(expr, tz) for _ in range(7))
        print(f"{f'Cron.next_after {expr!r} {tz}':<52} {micros:>9.1f} µs")
    for name, schedule in [
        ("*/5 cron, America/New_York", cron("*/5 * * * *", "America/New_York")),
        ("every 5 minutes", every("5 minutes")),
    ]:
        results = [asyncio.run(one_year(schedule)) for _ in range(reps)]
        took = statistics.median(t for t, _ in results)
        runs = results[0][1]
        print(f"{f'one year of {name} ({runs:,} runs)':<52} {took:>10.2f} s")
        print(f"{'  per delivered alarm':<52} {took / runs * 1e6:>9.1f} µs")


if __name__ == "__main__":
    main()
