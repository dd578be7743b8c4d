"""Testing jobs: the in-memory runtime with a fake clock, and the adapter conformance suite."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from ..jobs.definitions import JobDefinition
from ..jobs.durations import Duration, to_seconds
from ..runtime.app import DurableJobs
from ..runtime.client import JobsClient
from ..runtime.clock import FakeClock, to_datetime
from ..runtime.events import JobEvent
from ..runtime.sync_client import SyncJobsClient

MAX_DELIVERIES_PER_ADVANCE = 100_000


class TestRuntime:
    """Jobs on a fake clock: nothing runs until :meth:`advance` moves time."""

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
        while True:
            due = await runtime.next_alarm_at()
            if due is None or due > target:
                break
            self._clock.set(due)
            for claim in await runtime.claim_due(1):
                await runtime.deliver(claim)
                delivered += 1
            if delivered > MAX_DELIVERIES_PER_ADVANCE:
                raise RuntimeError(
                    f"more than {MAX_DELIVERIES_PER_ADVANCE} alarms in one advance: "
                    "a handler probably reschedules itself with no delay"
                )
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
