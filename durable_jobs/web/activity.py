"""Executions and failures per minute, for the overview, counted from the event log.

The store keeps no running totals (a counter row would be one more write, on a row
every worker contends for, in every commit). Instead the app tails the event log
once, from the oldest event kept, and counts ``job.executed`` and ``job.failed`` by
the minute they were committed in. The log keeps a bounded number of events, so at
first the count reaches back only as far as the log does: ``since`` says how far.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import defaultdict

import attrs

from ..errors import DurableJobsError
from ..logs import get_logger, storage_failed
from ..runtime.app import DurableJobs
from ..runtime.events import JobEvent

log = get_logger("durable_jobs.web")

WINDOW = 15
"""Minutes shown, the current one included."""
CATCH_UP = 1.0
"""Seconds a page waits, once, for the count to reach the end of the log."""


@attrs.frozen
class Minute:
    start: float
    executions: int
    failures: int


@attrs.frozen
class Counts:
    minutes: tuple[Minute, ...]
    """Oldest first, the current minute last."""
    by_job: dict[str, tuple[int, int]]
    """Executions and failures per job over the window."""
    since: float | None
    """The time of the oldest event counted when the log reaches back less than the
    window; ``None`` when the window is covered."""
    complete: bool
    """Whether the kept log has been read to its end; until then the counts are short."""


class Activity:
    """Started by the first page that asks; runs on that page's event loop."""

    def __init__(self, jobs: DurableJobs) -> None:
        self.jobs = jobs
        # minute number -> job -> [executions, failures]
        self._minutes: dict[int, dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0, 0])
        )
        self._oldest: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()

    async def counts(self) -> Counts:
        if self._task is None or self._task.done():
            # First use, or the tally stopped on a store that failed: start it (again).
            self._minutes.clear()
            self._oldest = None
            self._caught_up = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._tally())
            self._task.add_done_callback(_log_failure)
        if not self._caught_up.is_set():
            # A page shows what the log holds, not a count that is still starting; a
            # long log may take longer, and then the page says the count is short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caught_up.wait(), CATCH_UP)
        now = self.jobs.clock.now()
        current = math.floor(now / 60)
        first = current - WINDOW + 1
        for minute in [m for m in self._minutes if m < first]:
            del self._minutes[minute]
        minutes = []
        by_job: dict[str, tuple[int, int]] = {}
        for minute in range(first, current + 1):
            jobs = self._minutes.get(minute, {})
            minutes.append(
                Minute(
                    minute * 60.0,
                    sum(n[0] for n in jobs.values()),
                    sum(n[1] for n in jobs.values()),
                )
            )
            for job, (executions, failures) in jobs.items():
                before = by_job.get(job, (0, 0))
                by_job[job] = (before[0] + executions, before[1] + failures)
        since = self._oldest if self._oldest is not None and self._oldest > first * 60 else None
        return Counts(tuple(minutes), by_job, since, self._caught_up.is_set())

    async def _tally(self) -> None:
        counted = ("job.executed", "job.failed")
        await self.jobs.runtimes.open()
        first = await self.jobs.runtimes.storage.read_events(0, 1)
        if first:  # how far back the log reaches, whatever the type of its oldest event
            self._oldest = JobEvent.from_json(first[0].event).at.timestamp()
        # The log as it is now, to its end: closed at once, the subscription reads to
        # where the log ends and stops there. Then on, from where it stopped.
        kept = self.jobs.events.subscribe(after=0, types=counted)
        async with kept:
            kept.close()
            async for event in kept:
                self._count(event)
        self._caught_up.set()
        async with self.jobs.events.subscribe(after=kept.position, types=counted) as events:
            async for event in events:
                self._count(event)

    def _count(self, event: JobEvent) -> None:
        at = event.at.timestamp()
        if event.type == "job.executed":
            self._minutes[math.floor(at / 60)][event.job_name][0] += 1
        elif event.type == "job.failed":
            self._minutes[math.floor(at / 60)][event.job_name][1] += 1

    async def close(self) -> None:
        """Stop following the log (the app's server is stopping)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        if isinstance(exc, DurableJobsError):
            storage_failed(log, "dashboard.activity_failed", exc)
        else:
            log.error("dashboard.activity_failed", exc_info=exc)
