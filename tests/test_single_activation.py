"""Single activation at the seams: cancelled calls, stopping workers, calls of a handler
to its own instance, workers with different jobs, and alarms whose activations die."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Backoff,
    ExecutionError,
    InvalidStateError,
    Retry,
    Task,
    TaskContext,
    create_durable_jobs,
)
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.clock import FakeClock
from durable_jobs.testing import TestRuntime
from tests.support import T0, captured_logs

pytestmark = pytest.mark.timeout(60)


@attrs.frozen
class Ping:
    other: str = ""


@attrs.frozen
class Seen:
    events: int = 0
    executed: int = 0


async def count(event: Ping, ctx: TaskContext[Seen]) -> None:
    ctx.set_state(Seen(events=(ctx.state or Seen()).events + 1))
    ctx.schedule("1 second")


async def executed(ctx: TaskContext[Seen]) -> None:
    ctx.set_state(attrs.evolve(ctx.state or Seen(), executed=(ctx.state or Seen()).executed + 1))


def counting() -> Task[Seen, Ping]:
    return Task(state=Seen, event=Ping, on_event=count, execute=executed)


def app_for(backend_url: Any, jobs: dict[str, Any], **options: Any) -> DurableJobs:
    url, storage_options = backend_url
    return DurableJobs(jobs, storage=url, storage_options=storage_options, **options)


# -- a call cancelled while a plain handler's thread runs -------------------------


async def test_a_cancelled_call_keeps_the_claim_until_its_handler_thread_ends(
    backend_url: Any,
) -> None:
    entered, go = threading.Event(), threading.Event()

    def blocking(event: Ping, ctx: TaskContext[Seen]) -> None:
        entered.set()
        go.wait(30)
        ctx.set_state(Seen(events=1))

    job = Task(state=Seen, event=Ping, on_event=blocking, execute=executed)
    app = app_for(backend_url, {"job": job})
    call = asyncio.ensure_future(app.client.task(job).send("a", Ping()))
    await asyncio.to_thread(entered.wait, 30)
    call.cancel()
    for _ in range(20):  # let the cancellation reach the call
        await asyncio.sleep(0)
    now = app.clock.now()
    assert not call.done()
    assert await app.storage.claim("task:job:a", "rival", now, now + 30) is None
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    rival = await app.storage.claim("task:job:a", "rival", now, now + 30)
    assert rival is not None  # let go once the thread ended, with nothing committed
    assert rival.record is None
    await app.storage.release(rival)
    await app.aclose()


async def test_a_worker_past_its_grace_abandons_a_stuck_thread_and_leaves_its_claim(
    backend_url: Any,
) -> None:
    entered, go = threading.Event(), threading.Event()

    def stuck(ctx: TaskContext[Seen]) -> None:
        entered.set()
        go.wait(30)

    async def now(event: Ping, ctx: TaskContext[Seen]) -> None:
        ctx.schedule(ctx.now)

    job = Task(state=Seen, event=Ping, on_event=now, execute=stuck)
    app = app_for(backend_url, {"job": job})
    await app.client.task(job).send("a", Ping())
    worker = app.worker(poll_interval=0.01, grace=0.05)
    await worker.start()
    await asyncio.to_thread(entered.wait, 30)
    await worker.stop()  # returns though the thread still runs
    assert not go.is_set()
    clock_now = app.clock.now()
    assert await app.storage.claim("task:job:a", "rival", clock_now, clock_now + 30) is None
    go.set()
    await app.aclose()


# -- a handler calling its own instance ------------------------------------------


async def test_a_handler_calling_its_own_instance_fails_at_once(backend_url: Any) -> None:
    jobs: dict[str, Any] = {}

    async def on_event(event: Ping, ctx: TaskContext[Seen]) -> None:
        client = app.client.task(jobs["job"])
        if event.other:
            await client.send(event.other, Ping())  # another instance: allowed
        await client.send(ctx.id, Ping())

    jobs["job"] = Task(state=Seen, event=Ping, on_event=on_event, execute=executed)
    app = app_for(backend_url, jobs)
    with pytest.raises(ExecutionError) as raised:
        await asyncio.wait_for(app.client.task(jobs["job"]).send("a", Ping()), 10)
    assert isinstance(raised.value.__cause__, InvalidStateError)
    assert "called its own instance" in str(raised.value.__cause__)
    await app.aclose()


def test_a_plain_handler_calling_its_own_instance_with_the_blocking_client_fails_at_once(
    tmp_path: Any,
) -> None:
    jobs: dict[str, Any] = {}
    answers: list[str] = []

    def on_event(event: Ping, ctx: TaskContext[Seen]) -> None:
        client = app.sync_client.task(jobs["job"])
        if event.other:
            client.send(event.other, Ping())
            answers.append("other sent")
        try:
            client.send(ctx.id, Ping())
        except InvalidStateError as exc:
            answers.append(str(exc))
        ctx.set_state(Seen(events=1))

    jobs["job"] = Task(state=Seen, event=Ping, on_event=on_event, execute=executed)
    app = create_durable_jobs(jobs, storage=f"sqlite:///{tmp_path / 'jobs.db'}")
    sync = app.sync_client.task(jobs["job"])
    sync.send("a", Ping(other="b"))
    # b's handler, called from a's, tries its own instance too.
    assert len(answers) == 3
    assert "task:job:b called its own instance" in answers[0]
    assert answers[1] == "other sent"
    assert "task:job:a called its own instance" in answers[2]
    assert sync.get_state("a").state == Seen(events=1)
    app.sync_client.close()


async def test_a_task_started_by_a_handler_may_call_the_instance_once_the_handler_ended() -> None:
    jobs: dict[str, Any] = {}
    later: list[asyncio.Task[Any]] = []

    async def on_event(event: Ping, ctx: TaskContext[Seen]) -> None:
        if not event.other:
            later.append(
                asyncio.ensure_future(app.client.task(jobs["job"]).send(ctx.id, Ping("x")))
            )
        ctx.set_state(Seen(events=(ctx.state or Seen()).events + 1))

    jobs["job"] = Task(state=Seen, event=Ping, on_event=on_event, execute=executed)
    app = create_durable_jobs(jobs, storage="memory://")
    await app.client.task(jobs["job"]).send("a", Ping())
    await asyncio.wait_for(later[0], 10)
    assert (await app.client.task(jobs["job"]).get_state("a")).state == Seen(events=2)
    await app.aclose()


# -- workers serve their own jobs -------------------------------------------------


async def test_a_worker_claims_only_alarms_of_its_own_jobs(backend_url: Any) -> None:
    """Two deployments with different jobs share a store: neither takes (and so delays)
    the other's alarms."""
    mine, theirs = counting(), counting()
    clock = FakeClock(T0)
    app = app_for(backend_url, {"mine": mine}, clock=clock)
    other = app_for(backend_url, {"theirs": theirs}, clock=clock)
    await other.client.task(theirs).send("t", Ping())  # due first
    await app.client.task(mine).send("m", Ping())
    clock.set(clock.now() + 2)
    runtime, other_runtime = await app.runtime(), await other.runtime()
    claims = await runtime.claim_due(10)
    assert [c.instance_id for c in claims] == ["task:mine:m"]
    for claim in claims:
        await runtime.deliver(claim)
    assert await runtime.next_alarm_at() is None
    assert await other_runtime.next_alarm_at() == T0.timestamp() + 1
    assert [c.instance_id for c in await other_runtime.claim_due(10)] == ["task:theirs:t"]
    await app.aclose()
    await other.aclose()


# -- alarms whose activations keep dying ------------------------------------------


def fake_runtime(jobs: dict[str, Any], **options: Any) -> tuple[TestRuntime, FakeClock]:
    clock = FakeClock(T0)
    app = DurableJobs(jobs, storage="memory://", clock=clock, heartbeat=False, **options)
    return TestRuntime(app, clock), clock


async def die(rt: TestRuntime, clock: FakeClock, times: int) -> None:
    """Claim the due alarm ``times`` over, as processes that die before committing."""
    for _ in range(times):
        now = clock.now()
        taken = await rt.app.scheduler.claim_due(now, 1, "doomed", now + rt.app.lease)
        assert len(taken) == 1
        clock.set(now + rt.app.lease + 1)


async def test_an_alarm_whose_activation_died_too_often_is_dead_lettered() -> None:
    job = counting()
    rt, clock = fake_runtime({"job": job}, max_recoveries=2)
    await rt.client.task(job).send("a", Ping())
    clock.set(clock.now() + 1)
    await die(rt, clock, 3)
    await rt.advance("1 second")
    status = await rt.client.task(job).status("a")
    letter = await rt.client.dead_letter("task:job:a")
    assert status.status == "not_found"
    assert letter is not None
    assert letter.state == Seen(events=1, executed=0)  # execute never ran
    assert "died 3 times in a row" in letter.error
    assert "max_recoveries=2" in letter.error
    assert [e.type for e in rt.events][-1] == "job.retry_exhausted"


async def test_a_recovered_alarm_runs_and_is_logged_with_its_count() -> None:
    job = counting()
    rt, clock = fake_runtime({"job": job}, max_recoveries=2)
    await rt.client.task(job).send("a", Ping())
    clock.set(clock.now() + 1)
    await die(rt, clock, 2)
    with captured_logs() as logs:
        await rt.advance("1 second")
    state = await rt.client.task(job).get_state("a")
    assert state.state == Seen(events=1, executed=1)
    recovered = [r for r in logs if r["event"] == "alarm.recovered"]
    assert [(r["instance_id"], r["recoveries"]) for r in recovered] == [("task:job:a", 2)]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lease", "0 seconds", "invalid lease"),
        ("lease", "soon", "invalid duration 'soon'"),
        ("claim_wait", -1, "invalid duration -1"),
        ("max_recoveries", -1, "invalid max_recoveries -1"),
        ("max_recoveries", 2.5, "invalid max_recoveries 2.5"),
    ],
)
def test_bad_settings_are_refused_naming_them(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_durable_jobs({"job": counting()}, storage="memory://", **{option: value})


def test_durations_are_accepted_for_lease_and_claim_wait() -> None:
    app = create_durable_jobs(
        {"job": counting()}, storage="memory://", lease="1 minute", claim_wait=2.5
    )
    assert (app.lease, app.claim_wait) == (60.0, 2.5)


# -- timeouts ----------------------------------------------------------------------


async def test_an_async_handler_past_its_timeout_is_cancelled_and_retried(
    backend_url: Any,
) -> None:
    cancelled = asyncio.Event()
    attempts: list[int] = []

    async def slow(ctx: TaskContext[Seen]) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            try:
                await asyncio.Event().wait()  # never set: only the timeout ends it
            except asyncio.CancelledError:
                cancelled.set()
                raise
        ctx.set_state(Seen(executed=1))

    async def now(event: Ping, ctx: TaskContext[Seen]) -> None:
        ctx.schedule(ctx.now)

    job = Task(
        state=Seen,
        event=Ping,
        on_event=now,
        execute=slow,
        timeout="50 millis",
        retry=Retry(max_attempts=2, delay=Backoff.fixed("10 millis")),
    )
    app = app_for(backend_url, {"job": job})
    failures = []
    app.events.add_listener(lambda e: failures.append(e) if e.type == "job.failed" else None)
    await app.client.task(job).send("a", Ping())
    async with app.worker(poll_interval=0.01):
        while (await app.client.task(job).get_state("a")).state != Seen(executed=1):
            await asyncio.sleep(0.01)
    assert cancelled.is_set()
    assert len(attempts) == 2
    assert "TimeoutError" in failures[0].data["error"]
    await app.aclose()


async def test_a_plain_handler_past_its_timeout_fails_only_once_its_thread_ended() -> None:
    entered, go = threading.Event(), threading.Event()

    def slow(event: Ping, ctx: TaskContext[Seen]) -> None:
        entered.set()
        go.wait(30)
        ctx.set_state(Seen(events=1))  # thrown away: the call timed out

    job = Task(state=Seen, event=Ping, on_event=slow, execute=executed, timeout="10 millis")
    app = create_durable_jobs({"job": job}, storage="memory://")
    call = asyncio.ensure_future(app.client.task(job).send("a", Ping()))
    await asyncio.to_thread(entered.wait, 30)
    done, _ = await asyncio.wait({call}, timeout=0.2)  # well past the timeout
    now = app.clock.now()
    assert not done
    assert await app.storage.claim("task:job:a", "rival", now, now + 30) is None
    go.set()
    with pytest.raises(ExecutionError) as raised:
        await call
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert (await app.client.task(job).get_state("a")).state is None
    await app.aclose()
