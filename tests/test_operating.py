"""Operating (API.md §5, SEMANTICS 15): failures with tracebacks, history, listings,
dead letters and their redrive, pause and resume, workers, events — on every back-end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    Debounce,
    DebounceExecuteContext,
    InstanceInfo,
    InvalidStateError,
    JobNotFoundError,
    Retry,
    Task,
    ValidationError,
    every,
)
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.clock import FakeClock
from durable_jobs.testing import TestRuntime
from tests.apps.operating import (
    Count,
    Order,
    Pay,
    Upstream,
    count_run,
    fail_always,
    on_pay,
    settle,
)
from tests.support import T0, later


def flush_batch(ctx: DebounceExecuteContext[Pay]) -> None:
    raise Upstream("webhook endpoint down")


ONCE = Retry(max_attempts=1, delay=Backoff.fixed("1 second"))
TWICE = Retry(max_attempts=2, delay=Backoff.fixed("10 seconds"))


def definitions() -> dict[str, Any]:
    return {
        "flaky": Continuous(state=Count, schedule=every("1 minute"), execute=fail_always),
        "ticker": Continuous(state=Count, schedule=every("1 minute"), execute=count_run),
        "doomed": Continuous(
            state=Count, schedule=every("1 minute"), execute=fail_always, retry=TWICE
        ),
        "orders": Task(
            state=Order,
            event=Pay,
            on_event=on_pay,
            execute=settle,
            retry=ONCE,
        ),
        "hooks": Debounce(event=Pay, execute=flush_batch, flush_after="10 seconds", retry=ONCE),
    }


@pytest.fixture
async def rt(backend_url: tuple[str, dict[str, Any]]) -> AsyncIterator[TestRuntime]:
    url, options = backend_url
    clock = FakeClock(T0)
    app = DurableJobs(
        definitions(),
        storage=url,
        clock=clock,
        heartbeat=False,
        history_limit=5,
        storage_options=options,
    )
    runtime = TestRuntime(app, clock)
    yield runtime
    await runtime.aclose()


# -- failures you can see ----------------------------------------------------------------


async def test_a_run_failing_without_retry_policy_shows_its_error_and_traceback(
    rt: TestRuntime,
) -> None:
    handle = rt.client.continuous("flaky")
    await handle.start("a", Count())
    await rt.advance("3 minutes")
    status = await handle.status("a")
    assert status.status == "running"
    assert status.run_count == 4
    error = status.last_error
    assert error is not None
    assert (error.type, error.message, error.attempt) == ("Upstream", "upstream down on run 4", 1)
    assert error.at == later(minutes=3)
    assert "in fail_always" in error.traceback  # the handler's own frame
    assert error.traceback.rstrip().endswith("Upstream: upstream down on run 4")


async def test_a_dead_letter_carries_the_traceback_job_and_kind(rt: TestRuntime) -> None:
    await rt.client.continuous("doomed").start("a", Count(7))
    await rt.advance("1 minute")
    dead = await rt.client.dead_letter("continuous:doomed:a")
    assert dead is not None
    assert (dead.job_name, dead.kind, dead.attempts) == ("doomed", "continuous", 2)
    assert dead.state == Count(7)
    assert dead.error == "Upstream: upstream down on run 1"
    assert "in fail_always" in dead.traceback


async def test_a_failed_on_event_of_an_existing_instance_is_recorded_and_raised(
    rt: TestRuntime,
) -> None:
    orders = rt.client.task("orders")
    await orders.send("o1", Pay(10))
    with pytest.raises(Exception, match="refunds"):
        await orders.send("o1", Pay(-1), idempotency_key="k1")
    status = await orders.status("o1")
    assert status.last_error is not None
    assert status.last_error.type == "ValueError"
    assert (await orders.get_state("o1")).state == Order(10)  # nothing else written
    [row] = await rt.client.history("task:orders:o1")
    assert (row.trigger, row.outcome, row.error and row.error.type) == (
        "send",
        "failed",
        "ValueError",
    )
    await orders.send("o1", Pay(1), idempotency_key="k1")  # the key was not spent
    assert (await orders.get_state("o1")).state == Order(11)


# -- history -----------------------------------------------------------------------------


async def test_history_records_each_run_newest_first_with_its_outcome(rt: TestRuntime) -> None:
    orders = rt.client.task("orders")
    await orders.send("o1", Pay(500))
    await rt.advance("5 minutes")  # execute fails; retry policy allows one attempt
    rows = await rt.client.history("task:orders:o1")
    assert [(r.trigger, r.outcome, r.attempt) for r in rows] == [("alarm", "dead_lettered", 1)]
    assert rows[0].error is not None
    assert rows[0].error.message == "cannot settle 500"
    assert rows[0].started_at == later(minutes=5)
    assert rows[0].duration_ms >= 0
    ticker = rt.client.continuous("ticker")
    await ticker.start("t", Count())
    await rt.advance("0 seconds")  # the first run is due at once
    await ticker.trigger("t")
    rows = await rt.client.history("continuous:ticker:t")
    assert [(r.trigger, r.outcome) for r in rows] == [("trigger", "ok"), ("alarm", "ok")]


async def test_history_is_kept_to_the_limit_and_survives_terminate_until_restart(
    rt: TestRuntime,
) -> None:
    ticker = rt.client.continuous("ticker")
    await ticker.start("t", Count())
    await rt.advance("20 minutes")
    rows = await rt.client.history("continuous:ticker:t", limit=50)
    assert len(rows) == 5  # history_limit
    assert rows[0].started_at == later(minutes=20)
    await ticker.terminate("t")
    assert len(await rt.client.history("continuous:ticker:t")) == 5
    await ticker.start("t", Count())  # a new instance: the old history goes
    assert await rt.client.history("continuous:ticker:t") == []


# -- instances -----------------------------------------------------------------------------


async def test_instances_filter_before_the_limit_and_page_with_a_cursor(rt: TestRuntime) -> None:
    orders, ticker = rt.client.task("orders"), rt.client.continuous("ticker")
    for n in range(5):
        await orders.send(f"o{n}", Pay(1))
    await orders.send("o9", Pay(1))
    await rt.advance("5 minutes")  # all six run and go idle
    await orders.send("o3", Pay(1))  # active again
    await orders.send("o7", Pay(1))
    for n in range(3):
        await ticker.start(f"t{n}", Count())
    first = await rt.client.instances(job="orders", status="active", limit=1)
    assert [i.id for i in first.items] == ["o3"]
    assert first.next_cursor is not None
    second = await rt.client.instances(
        job="orders", status="active", limit=1, cursor=first.next_cursor
    )
    assert [i.id for i in second.items] == ["o7"]
    assert second.next_cursor is None
    idle = await rt.client.instances(status="idle", limit=100)
    assert [i.id for i in idle.items] == ["o0", "o1", "o2", "o4", "o9"]
    info = first.items[0]
    assert isinstance(info, InstanceInfo)
    assert (info.instance_id, info.kind, info.job_name, info.status) == (
        "task:orders:o3",
        "task",
        "orders",
        "active",
    )
    assert info.next_alarm_at == later(minutes=10)
    everything = await rt.client.instances(limit=100)
    assert len(everything.items) == 10


async def test_unknown_kind_or_status_is_refused_naming_the_allowed_words(
    rt: TestRuntime,
) -> None:
    with pytest.raises(ValueError, match="continuous, debounce, task"):
        await rt.client.instances(kind="cron")
    with pytest.raises(ValueError, match="running, stopped"):
        await rt.client.instances(kind="continuous", status="idle")
    with pytest.raises(ValueError, match="active, debouncing, idle, running, stopped"):
        await rt.client.instances(status="dead")


# -- dead letters ----------------------------------------------------------------------------


async def dead_order(rt: TestRuntime, key: str, amount: int = 500) -> None:
    await rt.client.task("orders").send(key, Pay(amount))
    await rt.advance("5 minutes")


async def test_dead_letters_are_listed_in_pages_and_discarded(rt: TestRuntime) -> None:
    for key in ("b", "a", "c"):
        await dead_order(rt, key)
    page = await rt.client.dead_letters(limit=2)
    assert [d.instance_id for d in page.items] == ["task:orders:a", "task:orders:b"]
    rest = await rt.client.dead_letters(limit=2, cursor=page.next_cursor)
    assert [d.instance_id for d in rest.items] == ["task:orders:c"]
    assert rest.next_cursor is None
    assert (await rt.client.dead_letters(job="hooks")).items == []
    assert await rt.client.discard_dead_letter("task:orders:b")
    assert not await rt.client.discard_dead_letter("task:orders:b")
    assert len((await rt.client.dead_letters()).items) == 2


async def test_a_redrive_runs_the_saved_state_once_and_deletes_its_dead_letter(
    rt: TestRuntime,
) -> None:
    await dead_order(rt, "a")
    assert (await rt.client.task("orders").status("a")).status == "not_found"
    result = await rt.client.redrive("task:orders:a", state=Order(50))
    assert (result.redriven, result.instance_id) == (True, "task:orders:a")
    assert await rt.client.dead_letter("task:orders:a") is None
    rows = await rt.client.history("task:orders:a")
    assert next((r.trigger, r.outcome) for r in rows) == ("redrive", "ok")
    state = await rt.client.task("orders").get_state("a")
    assert state.state == Order(50)
    again = await rt.client.redrive("task:orders:a")
    assert not again.redriven


async def test_a_redrive_that_fails_again_leaves_a_new_dead_letter(rt: TestRuntime) -> None:
    await dead_order(rt, "a", 500)
    assert (await rt.client.redrive("task:orders:a")).redriven  # the saved 500 fails again
    dead = await rt.client.dead_letter("task:orders:a")
    assert dead is not None
    assert dead.state == Order(500)
    rows = await rt.client.history("task:orders:a")
    assert [(r.trigger, r.outcome) for r in rows] == [("redrive", "dead_lettered")]


async def test_a_redrive_validates_a_replacement_state_and_writes_nothing_when_bad(
    rt: TestRuntime,
) -> None:
    await dead_order(rt, "a")
    with pytest.raises(ValidationError):
        await rt.client.redrive("task:orders:a", state={"total": "lots"})
    assert await rt.client.dead_letter("task:orders:a") is not None
    with pytest.raises(JobNotFoundError):
        await rt.client.redrive("task:nope:a")
    with pytest.raises(ValidationError, match="KIND:JOB:ID"):
        await rt.client.redrive("orders-a")


async def test_a_new_send_keeps_the_dead_letter_and_a_redrive_then_refuses(
    rt: TestRuntime,
) -> None:
    await dead_order(rt, "a")
    await rt.client.task("orders").send("a", Pay(1))
    assert await rt.client.dead_letter("task:orders:a") is not None
    with pytest.raises(InvalidStateError, match="terminate it"):
        await rt.client.redrive("task:orders:a")


async def test_a_debounce_redrive_flushes_the_saved_batch(rt: TestRuntime) -> None:
    hooks = rt.client.debounce("hooks")
    await hooks.add("h", Pay(1))
    await hooks.add("h", Pay(2))
    await rt.advance("10 seconds")
    dead = await rt.client.dead_letter("debounce:hooks:h")
    assert dead is not None
    assert dead.kind == "debounce"
    assert (await rt.client.redrive("debounce:hooks:h")).redriven
    rows = await rt.client.history("debounce:hooks:h")
    assert [(r.trigger, r.outcome) for r in rows] == [("redrive", "dead_lettered")]
    again = await rt.client.dead_letter("debounce:hooks:h")
    assert again is not None
    assert again.state == dead.state


# -- pause and resume -------------------------------------------------------------------------


async def test_pause_stops_the_schedule_trigger_runs_once_and_resume_starts_from_now(
    rt: TestRuntime,
) -> None:
    ticker = rt.client.continuous("ticker")
    await ticker.start("t", Count())
    await rt.advance("0 seconds")
    assert (await ticker.pause("t")).paused
    assert not (await ticker.pause("t")).paused
    status = await ticker.status("t")
    assert (status.status, status.run_count, status.next_run_at) == ("stopped", 1, None)
    await rt.advance("10 minutes")
    assert (await ticker.status("t")).run_count == 1
    assert (await ticker.trigger("t")).triggered
    status = await ticker.status("t")
    assert (status.status, status.run_count) == ("stopped", 2)
    resumed = await ticker.resume("t")
    assert (resumed.resumed, resumed.next_run_at) == (True, later(minutes=11))
    assert not (await ticker.resume("t")).resumed
    await rt.advance("1 minute")
    assert await ticker.get_state("t") == Count(3)
    assert not (await rt.client.continuous("ticker").pause("nobody")).paused


# -- workers and overdue alarms ------------------------------------------------------------


async def test_a_worker_is_listed_while_it_runs_and_alarms_are_overdue_without_one(
    rt: TestRuntime,
) -> None:
    orders = rt.client.task("orders")
    await orders.send("o1", Pay(1))
    rt._clock.set(rt._clock.now() + 600)  # due, and nobody serves it
    assert (await orders.status("o1")).overdue
    [info] = (await rt.client.instances(job="orders")).items
    assert info.overdue
    async with rt.app.worker(concurrency=3):
        [worker] = await rt.client.workers()
        assert worker.jobs == ("doomed", "flaky", "hooks", "orders", "ticker")
        assert worker.concurrency == 3
        assert worker.started_at == worker.last_seen_at
    assert await rt.client.workers() == []


async def test_a_worker_that_stopped_refreshing_is_dropped_after_three_leases(
    rt: TestRuntime,
) -> None:
    async with rt.app.worker():
        assert len(await rt.client.workers()) == 1
        rt._clock.set(rt._clock.now() + 3 * rt.app.lease + 1)
        assert await rt.client.workers() == []


# -- events --------------------------------------------------------------------------------


async def test_events_carry_increasing_ids_and_filters(rt: TestRuntime) -> None:
    async with rt.app.events.subscribe(job="orders") as orders_only:
        await rt.client.continuous("ticker").start("t", Count())
        await rt.client.task("orders").send("o1", Pay(1))
        await rt.client.task("orders").send("o2", Pay(2))
        got = [await asyncio.wait_for(orders_only.__anext__(), 5) for _ in range(4)]
    assert [(e.type, e.instance_id) for e in got] == [
        ("job.started", "task:orders:o1"),
        ("task.scheduled", "task:orders:o1"),
        ("job.started", "task:orders:o2"),
        ("task.scheduled", "task:orders:o2"),
    ]
    ids = [e.id for e in got]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids)


async def test_a_subscription_sees_what_another_app_on_the_store_commits(shared: Any) -> None:
    url, options = shared.url, ({"schema": shared.schema} if shared.schema else {})
    first = DurableJobs(definitions(), storage=url, storage_options=options)
    second = DurableJobs(definitions(), storage=url, storage_options=options)
    try:
        async with first.events.subscribe(instance_id="task:orders:o1") as events:
            await second.client.task("orders").send("o1", Pay(1))
            event = await asyncio.wait_for(events.__anext__(), 5)
        assert (event.type, event.instance_id) == ("job.started", "task:orders:o1")
    finally:
        await first.aclose()
        await second.aclose()


async def test_executed_and_failed_events_carry_their_duration(rt: TestRuntime) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    await rt.client.continuous("flaky").start("f", Count())
    await rt.advance("0 seconds")
    executed = [e for e in rt.events if e.type == "job.executed"]
    failed = [e for e in rt.events if e.type == "job.failed"]
    assert executed
    assert failed
    assert all(e.duration_ms >= 0 for e in executed + failed)
    assert failed[0].outcome == "failed"


# -- the blocking client ---------------------------------------------------------------------


def test_the_sync_client_offers_every_operating_call(tmp_path: Any) -> None:
    clock = FakeClock(T0)
    app = DurableJobs(
        definitions(), storage=f"sqlite:///{tmp_path / 'j.db'}", clock=clock, heartbeat=False
    )
    client = app.sync_client
    ticker = client.continuous("ticker")
    ticker.start("t", Count())
    assert ticker.trigger("t").triggered
    assert ticker.pause("t").paused
    assert ticker.resume("t").resumed
    assert [r.trigger for r in client.history("continuous:ticker:t")] == ["trigger"]
    assert [i.id for i in client.instances(job="ticker").items] == ["t"]
    assert client.dead_letters().items == []
    assert not client.redrive("continuous:ticker:zz").redriven
    assert not client.discard_dead_letter("continuous:ticker:zz")
    assert client.workers() == []
    client.close()


@pytest.mark.slow  # 10,000 commits: half a minute on PostgreSQL
async def test_history_stays_bounded_after_ten_thousand_runs_of_one_instance(
    rt: TestRuntime,
) -> None:
    ticker = rt.client.continuous("ticker")
    await ticker.start("t", Count())
    assert await rt.advance("10000 minutes") == 10_001
    rows = await rt.client.history("continuous:ticker:t", limit=10_000)
    assert len(rows) == 5  # history_limit
    assert rows[0].started_at == later(minutes=10_000)
    assert await ticker.get_state("t") == Count(10_001)
