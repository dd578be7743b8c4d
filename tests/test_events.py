"""Telemetry: the events, their fields and order, subscribers, the HTTP tracker, and
per-job logging levels."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    ExecutionError,
    HttpTracker,
    JobEvent,
    Retry,
    Task,
    TaskContext,
    create_durable_jobs,
    every,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0, ManualClock, captured_logs, later, types


@attrs.frozen
class Counter:
    n: int = 0


@attrs.frozen
class Ping:
    n: int = 0


def common(event: JobEvent) -> tuple[str, str, str, str, Any]:
    return (event.type, event.instance_id, event.job_name, event.job_type, event.at)


TIMED = ("job.executed", "job.failed")


def fields(event: JobEvent) -> dict[str, Any]:
    """The event's own fields, but for the handler's ``duration_ms``, which varies: it
    must be on the events of a handler call, a non-negative number, and only there."""
    data = dict(event.data)
    duration = data.pop("duration_ms", None)
    if event.type in TIMED:
        assert isinstance(duration, int | float)
        assert not isinstance(duration, bool)
        assert duration >= 0
    else:
        assert duration is None, event
    return data


async def test_continuous_events_carry_their_fields_in_order() -> None:
    def execute(ctx: ContinuousContext[Counter]) -> None:
        if ctx.run_count == 2 and ctx.attempt == 1:
            raise RuntimeError("flaky")
        ctx.set_state(Counter(ctx.state.n + 1))
        if ctx.run_count == 3:
            ctx.terminate("enough")

    job = Continuous(
        state=Counter,
        schedule=every("10 minutes"),
        execute=execute,
        retry=Retry(max_attempts=2, delay=Backoff.fixed("1 minute")),
    )
    rt = create_test_runtime({"ticker": job}, now=T0)
    await rt.client.continuous(job).start("a", Counter())
    await rt.advance("1 hour")

    iid = "continuous:ticker:a"
    assert [common(e) for e in rt.events] == [
        ("job.started", iid, "ticker", "continuous", T0),
        ("job.executed", iid, "ticker", "continuous", T0),
        ("job.failed", iid, "ticker", "continuous", later(minutes=10)),
        ("job.executed", iid, "ticker", "continuous", later(minutes=11)),
        ("job.terminated", iid, "ticker", "continuous", later(minutes=20)),  # on the grid
    ]
    assert [fields(e) for e in rt.events] == [
        {"next_run_at": T0.isoformat()},
        {"run_count": 1, "attempt": 1},
        {
            "error": "RuntimeError: flaky",
            "attempt": 1,
            "will_retry": True,
            "retry_at": later(minutes=11).isoformat(),
            "outcome": "retrying",
        },
        {"run_count": 2, "attempt": 2},
        {"reason": "enough"},
    ]


async def test_retry_exhausted_carries_the_error_and_attempts() -> None:
    job = Continuous(
        state=Counter,
        schedule=every("10 minutes"),
        execute=lambda ctx: 1 / 0,
        retry=Retry(max_attempts=2, delay=Backoff.fixed("1 minute")),
    )
    rt = create_test_runtime({"ticker": job}, now=T0)
    await rt.client.continuous(job).start("a", Counter())
    await rt.advance("1 hour")
    last = rt.events[-1]
    assert common(last) == (
        "job.retry_exhausted",
        "continuous:ticker:a",
        "ticker",
        "continuous",
        later(minutes=1),
    )
    assert fields(last) == {"error": "ZeroDivisionError: division by zero", "attempts": 2}


async def test_debounce_and_task_events_carry_their_fields() -> None:
    batch = Debounce(event=Ping, flush_after="5 seconds", execute=lambda ctx: None)
    task = Task(
        state=Counter,
        event=Ping,
        on_event=lambda event, ctx: ctx.schedule("2 minutes"),
        execute=lambda ctx: None,
    )
    rt = create_test_runtime({"batch": batch, "task": task}, now=T0)
    await rt.client.debounce(batch).add("d", Ping(1))
    await rt.client.debounce(batch).add("d", Ping(2))
    await rt.client.task(task).send("t", Ping())
    await rt.advance("5 minutes")

    assert [(common(e), fields(e)) for e in rt.events] == [
        (
            ("debounce.started", "debounce:batch:d", "batch", "debounce", T0),
            {"will_flush_at": later(seconds=5).isoformat()},
        ),
        (("job.started", "task:task:t", "task", "task", T0), {}),
        (
            ("task.scheduled", "task:task:t", "task", "task", T0),
            {"scheduled_at": later(minutes=2).isoformat()},
        ),
        (
            ("debounce.flushed", "debounce:batch:d", "batch", "debounce", later(seconds=5)),
            {"event_count": 2, "flush_reason": "flush_after", "attempt": 1},
        ),
        (
            ("job.executed", "debounce:batch:d", "batch", "debounce", later(seconds=5)),
            {"event_count": 2, "flush_reason": "flush_after", "attempt": 1},
        ),
        (
            ("job.executed", "task:task:t", "task", "task", later(minutes=2)),
            {"execute_count": 1, "attempt": 1},
        ),
    ]


def test_an_event_reads_its_own_fields_as_attributes_and_as_a_dict() -> None:
    event = JobEvent(
        type="job.executed",
        instance_id="task:t:a",
        job_name="t",
        job_type="task",
        at=T0,
        data={"execute_count": 3},
    )
    assert event.execute_count == 3
    assert event["execute_count"] == 3
    assert event.to_dict() == {
        "type": "job.executed",
        "instance_id": "task:t:a",
        "job_name": "t",
        "job_type": "task",
        "at": T0.isoformat(),
        "execute_count": 3,
    }
    assert JobEvent.from_json(event.to_json()) == event
    with pytest.raises(AttributeError):
        _ = event.no_such_field


# -- subscribers -----------------------------------------------------------------------


def ping_task() -> Task[Counter, Ping]:
    def on_event(event: Ping, ctx: TaskContext[Counter]) -> None:
        if event.n < 0:
            raise ValueError("negative")
        ctx.set_state(Counter(event.n))

    return Task(state=Counter, event=Ping, on_event=on_event, execute=lambda ctx: None)


async def next_event(subscription: Any) -> JobEvent:
    return await asyncio.wait_for(anext(subscription), 5)


async def test_subscribers_receive_committed_events_in_order() -> None:
    job = ping_task()
    jobs = create_durable_jobs({"p": job}, storage="memory://", clock=ManualClock())
    async with jobs.events.subscribe() as first, jobs.events.subscribe() as second:
        await jobs.client.task(job).send("a", Ping(1))
        await jobs.client.task(job).terminate("a", "bye")
        for subscription in (first, second):
            received = [await next_event(subscription) for _ in range(2)]
            assert [(e.type, e.instance_id) for e in received] == [
                ("job.started", "task:p:a"),
                ("job.terminated", "task:p:a"),
            ]
            assert received[1].reason == "bye"
    await jobs.aclose()


async def test_a_subscription_gets_only_events_committed_after_it_was_made() -> None:
    job = ping_task()
    jobs = create_durable_jobs({"p": job}, storage="memory://", clock=ManualClock())
    await jobs.client.task(job).send("before", Ping(1))
    async with jobs.events.subscribe() as subscription:
        with pytest.raises(ExecutionError):
            await jobs.client.task(job).send("failed", Ping(-1))  # rolled back: no events
        await jobs.client.task(job).send("after", Ping(1))
        event = await next_event(subscription)
        assert (event.type, event.instance_id) == ("job.started", "task:p:after")
    await jobs.aclose()


async def test_events_of_calls_made_on_another_thread_reach_the_subscriber() -> None:
    job = ping_task()
    jobs = create_durable_jobs({"p": job}, storage="memory://", clock=ManualClock())
    async with jobs.events.subscribe() as subscription:
        await asyncio.to_thread(jobs.sync_client.task(job).send, "a", Ping(5))
        event = await next_event(subscription)
        assert (event.type, event.instance_id) == ("job.started", "task:p:a")
    await jobs.aclose()


async def test_closing_a_subscription_ends_its_iteration_after_the_events_before() -> None:
    job = ping_task()
    jobs = create_durable_jobs({"p": job}, storage="memory://", clock=ManualClock())
    subscription = jobs.events.subscribe()

    async def consume() -> list[str]:
        return [event.instance_id async for event in subscription]

    consumer = asyncio.ensure_future(consume())
    await jobs.client.task(job).send("a", Ping(1))
    await jobs.client.task(job).send("b", Ping(1))
    subscription.close()
    await jobs.client.task(job).send("c", Ping(1))  # after close: not received
    assert await asyncio.wait_for(consumer, 5) == ["task:p:a", "task:p:b"]
    await jobs.aclose()


async def test_a_subscription_to_some_types_gets_only_those() -> None:
    job = ping_task()
    jobs = create_durable_jobs({"p": job}, storage="memory://", clock=ManualClock())
    async with jobs.events.subscribe(types=("job.terminated", "job.failed")) as subscription:
        await jobs.client.task(job).send("a", Ping(1))  # job.started, passed over
        with pytest.raises(ExecutionError):
            await jobs.client.task(job).send("a", Ping(-1))  # job.failed
        await jobs.client.task(job).terminate("a", "bye")
        received = [await next_event(subscription) for _ in range(2)]
        assert [e.type for e in received] == ["job.failed", "job.terminated"]
        assert received[1].reason == "bye"
    await jobs.aclose()


def test_unknown_event_types_are_refused_by_name() -> None:
    jobs = create_durable_jobs({"p": ping_task()}, storage="memory://", clock=ManualClock())

    async def subscribe(types: Any) -> None:
        jobs.events.subscribe(types=types)

    with pytest.raises(ValueError, match=r"unknown event types 'job\.done'") as refused:
        asyncio.run(subscribe(["job.executed", "job.done"]))
    assert "job.executed" in str(refused.value)  # the allowed ones are listed
    with pytest.raises(TypeError, match=r"not the string 'job\.executed'"):
        asyncio.run(subscribe("job.executed"))


async def test_a_subscription_after_another_s_position_goes_on_from_there() -> None:
    job = ping_task()
    jobs = create_durable_jobs({"p": job}, storage="memory://", clock=ManualClock())
    await jobs.client.task(job).send("a", Ping(1))
    first = jobs.events.subscribe(after=0, types=("job.terminated",))
    async with first:
        first.close()  # reads to where the log ends, then stops
        assert [e async for e in first] == []
    assert first.position == await jobs.storage.last_event_id()  # read, passed over
    async with jobs.events.subscribe(after=first.position) as second:
        await jobs.client.task(job).terminate("a")
        event = await next_event(second)
        assert (event.type, event.id) == ("job.terminated", first.position + 1)
    await jobs.aclose()


# -- the HTTP tracker --------------------------------------------------------------------


class Collector(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint and the JSON bodies POSTed to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/ingest", server.bodies
    server.shutdown()
    server.server_close()
    thread.join()


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ingest"  # nothing listens there any more


async def test_the_tracker_posts_committed_events_in_batches_and_in_order(
    collector: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = collector
    job = ping_task()
    tracker = HttpTracker(url, env="staging", service_key="svc-1", batch_size=2)
    jobs = create_durable_jobs(
        {"p": job}, storage="memory://", tracker=tracker, clock=ManualClock()
    )
    for key in ("a", "b", "c"):
        await jobs.client.task(job).send(key, Ping(1))
    with pytest.raises(ExecutionError):
        await jobs.client.task(job).send("rolled-back", Ping(-1))
    await jobs.client.task(job).terminate("a", "done")

    assert await tracker.ship(jobs.storage) == 4
    assert [len(b["events"]) for b in bodies] == [2, 2]
    assert {(b["env"], b["service_key"]) for b in bodies} == {("staging", "svc-1")}
    sent = [e for b in bodies for e in b["events"]]
    assert [(e["type"], e["instance_id"]) for e in sent] == [
        ("job.started", "task:p:a"),
        ("job.started", "task:p:b"),
        ("job.started", "task:p:c"),
        ("job.terminated", "task:p:a"),
    ]
    ids = [e.pop("id") for e in sent]  # places in the event log, in commit order
    assert all(type(i) is int for i in ids)
    assert ids == sorted(set(ids))
    assert sent[3] == {
        "type": "job.terminated",
        "instance_id": "task:p:a",
        "job_name": "p",
        "job_type": "task",
        "at": T0.isoformat(),
        "reason": "done",
    }
    assert await tracker.ship(jobs.storage) == 0  # delivered events are not sent twice
    await jobs.aclose()


async def test_events_wait_in_the_outbox_while_the_endpoint_is_unreachable(
    collector: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = collector
    job = ping_task()
    down = HttpTracker(refused_url(), timeout=5)
    jobs = create_durable_jobs({"p": job}, storage="memory://", tracker=down, clock=ManualClock())
    await jobs.client.task(job).send("a", Ping(1))
    assert await down.ship(jobs.storage) == 0

    assert await HttpTracker(url).ship(jobs.storage) == 1
    assert [e["instance_id"] for e in bodies[0]["events"]] == ["task:p:a"]
    await jobs.aclose()


async def test_a_stopping_worker_ships_what_is_left(
    collector: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = collector
    job = ping_task()
    jobs = create_durable_jobs(
        {"p": job}, storage="memory://", tracker=HttpTracker(url), clock=ManualClock()
    )
    async with jobs.worker():
        await jobs.client.task(job).send("a", Ping(1))
    assert [e["type"] for b in bodies for e in b["events"]] == ["job.started"]
    await jobs.aclose()


# -- logging ---------------------------------------------------------------------------


def logged_job(setting: bool | int) -> Continuous[Counter]:
    def execute(ctx: ContinuousContext[Counter]) -> None:
        ctx.log.debug("user.debug")
        ctx.log.info("user.info", n=ctx.state.n)
        ctx.log.warning("user.warning")
        if ctx.run_count == 2:
            raise RuntimeError("second run fails")
        if ctx.run_count == 3:
            ctx.terminate("done")

    return Continuous(state=Counter, schedule=every("1 minute"), execute=execute, logging=setting)


async def logs_of(setting: bool | int) -> list[dict[str, Any]]:
    job = logged_job(setting)
    rt = create_test_runtime({"logged": job}, now=T0)
    with captured_logs() as logs:
        await rt.client.continuous(job).start("a", Counter())
        await rt.advance("2 minutes")
    return logs


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (False, ["job.failed"]),
        (logging.ERROR, ["job.failed"]),
        (logging.WARNING, ["user.warning", "user.warning", "job.failed", "user.warning"]),
        (
            logging.INFO,
            [
                "user.info",
                "user.warning",
                "user.info",
                "user.warning",
                "job.failed",
                "user.info",
                "user.warning",
                "job.terminated",
            ],
        ),
        (
            True,
            [
                "user.debug",
                "user.info",
                "user.warning",
                "job.executed",
                "user.debug",
                "user.info",
                "user.warning",
                "job.failed",
                "user.debug",
                "user.info",
                "user.warning",
                "job.terminated",
            ],
        ),
    ],
    ids=["False", "ERROR", "WARNING", "INFO", "True"],
)
async def test_per_job_logging_sets_the_level(setting: bool | int, expected: list[str]) -> None:
    logs = await logs_of(setting)
    assert [entry["event"] for entry in logs] == expected


async def test_log_records_are_bound_to_the_job_and_instance() -> None:
    logs = await logs_of(True)
    user_info = next(entry for entry in logs if entry["event"] == "user.info")
    assert user_info["job_name"] == "logged"
    assert user_info["job_type"] == "continuous"
    assert user_info["instance_id"] == "continuous:logged:a"
    assert user_info["n"] == 0
    failed = next(entry for entry in logs if entry["event"] == "job.failed")
    assert failed["log_level"] == "error"
    assert failed["error"] == "RuntimeError: second run fails"
    assert failed["attempt"] == 1


async def test_logging_is_per_job() -> None:
    quiet, loud = logged_job(False), logged_job(True)
    rt = create_test_runtime({"quiet": quiet, "loud": loud}, now=T0)
    with captured_logs() as logs:
        await rt.client.continuous(quiet).start("a", Counter())
        await rt.client.continuous(loud).start("a", Counter())
        await rt.advance(0)
    assert {entry["job_name"] for entry in logs} == {"loud"}
    assert types(rt.events) == ["job.started", "job.started", "job.executed", "job.executed"]
