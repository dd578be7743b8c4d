"""Executions and failures per minute, as the overview counts them from the event log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from durable_jobs.errors import ExecutionError
from durable_jobs.web.activity import WINDOW, Activity, Counts
from tests.apps.operating import Pay
from tests.test_web import make_jobs


async def test_runs_and_failures_are_counted_in_the_minute_they_were_committed() -> None:
    jobs = make_jobs()
    orders = jobs.client.task("orders")
    await orders.send("o1", Pay(10))
    await orders.trigger("o1")  # settles: executed
    jobs.clock.set(jobs.clock.now() + 120)
    await orders.send("o2", Pay(10))
    with pytest.raises(ExecutionError):
        await orders.send("o2", Pay(-1))  # on_event refuses it: failed
    await orders.trigger("o2")
    activity = Activity(jobs)
    try:
        counts = await activity.counts()
        assert len(counts.minutes) == WINDOW
        assert [(m.executions, m.failures) for m in counts.minutes[-3:]] == [
            (1, 0),
            (0, 0),
            (1, 1),
        ]
        assert counts.minutes[-1].start == jobs.clock.now() // 60 * 60
        assert counts.by_job == {"orders": (2, 1)}
        # Later events are counted as they are committed, without another read.
        await orders.send("o3", Pay(1))
        await orders.trigger("o3")
        await wait_until(activity, lambda c: c.by_job == {"orders": (3, 1)})
        # Minutes leave the window as the clock moves on.
        jobs.clock.set(jobs.clock.now() + 60 * WINDOW)
        later = await activity.counts()
        assert later.by_job == {}
        assert {(m.executions, m.failures) for m in later.minutes} == {(0, 0)}
    finally:
        await activity.close()
        await jobs.runtimes.close_current()


async def test_the_count_says_how_far_back_the_log_reaches() -> None:
    jobs = make_jobs()
    await jobs.client.task("orders").send("o1", Pay(1))
    jobs.clock.set(jobs.clock.now() + 5 * 60)
    activity = Activity(jobs)
    try:
        # The oldest event kept is inside the window: the minutes before it are unknown.
        first = (await activity.counts()).since
        assert first is not None
        assert first == jobs.clock.now() - 5 * 60
        jobs.clock.set(jobs.clock.now() + 60 * WINDOW)
        assert (await activity.counts()).since is None  # the window is covered
    finally:
        await activity.close()
        await jobs.runtimes.close_current()


async def wait_until(activity: Activity, done: Callable[[Counts], bool]) -> None:
    """Until the tally, which follows the log on its own task, has counted; a poll
    with a deadline, as the tally offers nothing to wait on."""
    for _ in range(500):
        counts = await activity.counts()
        if done(counts):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not counted: {counts}")


async def test_pages_loading_together_at_first_all_wait_for_the_count() -> None:
    jobs = make_jobs()
    orders = jobs.client.task("orders")
    for n in range(20):
        await orders.send(f"o{n}", Pay(1))
        await orders.trigger(f"o{n}")
    activity = Activity(jobs)
    try:
        first, second = await asyncio.gather(activity.counts(), activity.counts())
        assert first.by_job == second.by_job == {"orders": (20, 0)}
        assert first.complete
        assert second.complete
    finally:
        await activity.close()
        await jobs.runtimes.close_current()


async def test_a_tally_stopped_by_a_failed_store_starts_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from durable_jobs import StorageError
    from durable_jobs.adapters.memory import MemoryStore
    from durable_jobs.web import activity as activity_module

    class Flaky(MemoryStore):
        failures = 1

        async def read_events(self, after: int, limit: int) -> Any:
            if Flaky.failures:
                Flaky.failures -= 1
                raise StorageError("store down")
            return await super().read_events(after, limit)

    monkeypatch.setattr(activity_module, "CATCH_UP", 0.2)
    store = Flaky()
    jobs = make_jobs(storage=(store, store))
    await jobs.client.task("orders").send("o1", Pay(1))
    await jobs.client.task("orders").trigger("o1")
    activity = Activity(jobs)
    try:
        first = await activity.counts()
        assert not first.complete  # the tally stopped on the failed read
        assert first.by_job == {}
        assert "dashboard.activity_failed" in caplog.text
        again = await activity.counts()
        assert again.complete
        assert again.by_job == {"orders": (1, 0)}
    finally:
        await activity.close()
        await jobs.runtimes.close_current()
