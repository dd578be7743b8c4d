"""How a SQLite database grows with executions under the default retention: each
instance keeps its latest ``history_limit`` (100) history rows, and the event log its
newest 10,000 events (trimmed by the workers every third of a lease, here after each
step). Prints a table: executions so far, file size, history rows, events kept.

    python bench/growth.py [--executions 100000] [--instances 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import attrs

from durable_jobs import Continuous, ContinuousContext, every
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.clock import FakeClock
from durable_jobs.runtime.presence import trim_events
from durable_jobs.testing import TestRuntime

START = datetime(2026, 1, 1, tzinfo=UTC)


@attrs.frozen
class Tick:
    n: int = 0


def tick(ctx: ContinuousContext[Tick]) -> None:
    ctx.set_state(Tick(ctx.state.n + 1))


def counts(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as db:
        history = db.execute("SELECT count(*) FROM history").fetchone()[0]
        events = db.execute("SELECT count(*) FROM events").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return history, events, pages * size


async def grow(path: Path, executions: int, instances: int, steps: int) -> None:
    clock = FakeClock(START)
    job = Continuous(state=Tick, schedule=every("1 minute"), execute=tick)
    rt = TestRuntime(DurableJobs({"tick": job}, storage=f"sqlite:///{path}", clock=clock), clock)
    handle = rt.client.continuous(job)
    for n in range(instances):
        await handle.start(f"i{n}", Tick())
    minutes_per_step = executions // instances // steps
    print(f"{'executions':>10}  {'file MiB':>8}  {'history rows':>12}  {'events':>7}  {'s':>5}")
    done = 0
    for _ in range(steps):
        began = time.perf_counter()
        done += await rt.advance(f"{minutes_per_step} minutes")
        await trim_events(rt.app.storage, clock.now())  # what a worker does while it runs
        history, events, size = counts(path)
        took = time.perf_counter() - began
        print(f"{done:>10,}  {size / 2**20:>8.1f}  {history:>12,}  {events:>7,}  {took:>5.1f}")
    await rt.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv or [])
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "growth.db"
        asyncio.run(grow(path, args.executions, args.instances, args.steps))


if __name__ == "__main__":
    main(sys.argv[1:])
