"""Testing jobs: the in-memory runtime with a fake clock, and the adapter conformance suite."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from datetime import UTC, datetime

from ..jobs.definitions import JobDefinition
from ..jobs.durations import Duration, to_seconds
from ..runtime.app import DurableJobs
from ..runtime.client import JobsClient
from ..runtime.clock import FakeClock, to_datetime
from ..runtime.events import JobEvent
from ..runtime.sync_client import SyncJobsClient

MAX_REPEATS = 10_000
"""Deliveries of one instance at one fake instant that mean a handler reschedules it
with no delay. (An advance may deliver any number of alarms: a year of a 5-minute
schedule is 105,120, each at a time of its own.)"""


class TestRuntime:
    """Jobs on a fake clock: nothing runs until
    [``advance``][durable_jobs.testing.TestRuntime.advance] moves time."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: DurableJobs, clock: FakeClock) -> None:
        self.app = app
        self._clock = clock
        self.events: list[JobEvent] = []
        app.events.add_listener(self.events.append)

    @property
    def client(self) -> JobsClient:
        return self.app.client

    @property
    def sync_client(self) -> SyncJobsClient:
        return self.app.sync_client

    @property
    def now(self) -> datetime:
        return to_datetime(self._clock.now())

    async def advance(self, duration: Duration) -> int:
        """Move the clock by ``duration``, delivering every alarm due by then in time
        order — those set by handlers during the advance too — with the clock reading
        each alarm's due time while it runs. Returns how many alarms were delivered."""
        target = self._clock.now() + to_seconds(duration)
        runtime = await self.app.runtime()
        delivered = 0
        repeats: collections.Counter[str] = collections.Counter()  # at the clock's time
        while True:
            due = await runtime.next_alarm_at()
            if due is None or due > target:
                break
            if due > self._clock.now():
                repeats.clear()
                self._clock.set(due)  # an alarm already past due runs at the current time
            for claim in await runtime.claim_due(1):
                repeats[claim.instance_id] += 1
                if repeats[claim.instance_id] > MAX_REPEATS:
                    raise RuntimeError(
                        f"{claim.instance_id} was delivered {MAX_REPEATS} times at "
                        f"{self.now.isoformat()} without the clock moving: a handler "
                        "probably reschedules it with no delay"
                    )
                await runtime.deliver(claim)
                delivered += 1
        self._clock.set(target)
        return delivered

    async def aclose(self) -> None:
        await self.app.aclose()


def create_test_runtime(
    jobs: Mapping[str, JobDefinition],
    *,
    now: datetime | None = None,
    storage: str = "memory://",
) -> TestRuntime:
    """Memory storage (or ``storage``) driven by a fake clock starting at ``now``."""
    clock = FakeClock(now or datetime(2026, 1, 1, tzinfo=UTC))
    app = DurableJobs(jobs, storage=storage, clock=clock, heartbeat=False)
    return TestRuntime(app, clock)


__all__ = ["TestRuntime", "create_test_runtime"]
