"""Prometheus metrics (API.md §5): counters and histograms of what this process runs,
gauges of what the store holds after a refresh, and the text format they render to."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceExecuteContext,
    ExecutionError,
    JobEvent,
    Retry,
    Task,
    TaskContext,
    every,
)
from durable_jobs.metrics import Metrics, instrument
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.clock import FakeClock
from durable_jobs.testing import TestRuntime
from tests.support import T0


@attrs.define
class Count:
    n: int = 0


@attrs.define
class Pay:
    amount: int


class Upstream(Exception):
    pass


def count_run(ctx: ContinuousContext[Count]) -> None:
    ctx.set_state(Count(ctx.state.n + 1))


def fail_always(ctx: ContinuousContext[Count]) -> None:
    raise Upstream("upstream down")


def on_pay(event: Pay, ctx: TaskContext[Count]) -> None:
    if event.amount < 0:
        raise ValueError("refunds are not payments")
    ctx.set_state(Count(event.amount))
    ctx.schedule("5 minutes")


def settle(ctx: TaskContext[Count]) -> None:
    pass


def flush_batch(ctx: DebounceExecuteContext[Pay]) -> None:
    pass


class Gate:
    """Holds the ``held`` job's runs until opened, and says when one has begun."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()

    async def run(self, ctx: ContinuousContext[Count]) -> None:
        self.entered.set()
        await self.opened.wait()


def definitions(gate: Gate) -> dict[str, Any]:
    return {
        "ticker": Continuous(state=Count, schedule=every("1 minute"), execute=count_run),
        "flaky": Continuous(state=Count, schedule=every("1 minute"), execute=fail_always),
        "doomed": Continuous(
            state=Count,
            schedule=every("1 minute"),
            execute=fail_always,
            retry=Retry(max_attempts=2, delay=Backoff.fixed("10 seconds")),
        ),
        "held": Continuous(state=Count, schedule=every("1 hour"), execute=gate.run),
        "orders": Task(state=Count, event=Pay, on_event=on_pay, execute=settle),
        "hooks": Debounce(event=Pay, execute=flush_batch, flush_after="10 seconds"),
    }


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def rt(gate: Gate, clock: FakeClock) -> AsyncIterator[TestRuntime]:
    app = DurableJobs(definitions(gate), storage="memory://", clock=clock, heartbeat=False)
    runtime = TestRuntime(app, clock)
    yield runtime
    await runtime.aclose()


@pytest.fixture
def metrics(rt: TestRuntime) -> Metrics:
    return instrument(rt.app)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def executions(metrics: Metrics, job: str, kind: str, outcome: str) -> float | None:
    return value(metrics, "durable_jobs_executions_total", job=job, kind=kind, outcome=outcome)


# -- what this process runs --------------------------------------------------------------


async def test_executions_are_counted_by_job_kind_and_outcome(
    rt: TestRuntime, metrics: Metrics
) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    await rt.client.continuous("flaky").start("f", Count())
    await rt.client.continuous("doomed").start("d", Count())
    await rt.advance("2 minutes")  # ticker and flaky run at 0, 1 and 2 minutes
    assert executions(metrics, "ticker", "continuous", "ok") == 3
    assert executions(metrics, "ticker", "continuous", "failed") is None
    assert executions(metrics, "flaky", "continuous", "failed") == 3
    assert executions(metrics, "doomed", "continuous", "retrying") == 1
    assert executions(metrics, "doomed", "continuous", "dead_lettered") == 1


async def test_a_failed_on_event_and_a_terminate_are_counted(
    rt: TestRuntime, metrics: Metrics
) -> None:
    orders = rt.client.task("orders")
    await orders.send("o1", Pay(10))
    with pytest.raises(ExecutionError, match="refunds"):
        await orders.send("o1", Pay(-1))
    await orders.terminate("o1")
    assert executions(metrics, "orders", "task", "failed") == 1
    assert executions(metrics, "orders", "task", "terminated") == 1


async def test_each_handler_call_is_one_duration_observation(
    rt: TestRuntime, metrics: Metrics
) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    await rt.client.continuous("flaky").start("f", Count())
    await rt.advance("4 minutes")
    name = "durable_jobs_handler_duration_seconds_count"
    assert value(metrics, name, job="ticker", kind="continuous") == 5
    assert value(metrics, name, job="flaky", kind="continuous") == 5
    seconds = value(
        metrics, "durable_jobs_handler_duration_seconds_sum", job="ticker", kind="continuous"
    )
    assert seconds is not None
    assert seconds >= 0


async def test_a_worker_observes_how_late_it_delivered_an_alarm(
    rt: TestRuntime, metrics: Metrics, clock: FakeClock
) -> None:
    await rt.client.continuous("ticker").start("t", Count())  # first run due at once
    clock.set(clock.now() + 90)  # no worker ran for a minute and a half
    ran = asyncio.Event()

    def on_event(event: JobEvent) -> None:
        if event.type == "job.executed":
            ran.set()

    rt.app.events.add_listener(on_event)
    async with rt.app.worker():
        await asyncio.wait_for(ran.wait(), 10)
    assert value(metrics, "durable_jobs_alarm_lateness_seconds_count", job="ticker") == 1
    assert value(metrics, "durable_jobs_alarm_lateness_seconds_sum", job="ticker") == 90
    late = value(metrics, "durable_jobs_alarm_lateness_seconds_bucket", job="ticker", le="60.0")
    assert late == 0


async def test_an_alarm_delivered_on_time_is_observed_as_not_late(
    rt: TestRuntime, metrics: Metrics
) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    await rt.advance("1 minute")  # the test runtime delivers each alarm at its due time
    assert value(metrics, "durable_jobs_alarm_lateness_seconds_count", job="ticker") == 2
    assert value(metrics, "durable_jobs_alarm_lateness_seconds_sum", job="ticker") == 0


# -- what the store holds ---------------------------------------------------------------


async def test_gauges_are_absent_until_the_first_refresh(rt: TestRuntime, metrics: Metrics) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    assert value(metrics, "durable_jobs_workers_live") is None
    assert (
        value(metrics, "durable_jobs_instances", job="ticker", kind="continuous", status="running")
        is None
    )
    await metrics.refresh()
    assert value(metrics, "durable_jobs_workers_live") == 0
    assert (
        value(metrics, "durable_jobs_instances", job="ticker", kind="continuous", status="running")
        == 1
    )


async def test_instances_are_counted_by_status_word_after_refresh(
    rt: TestRuntime, metrics: Metrics
) -> None:
    ticker = rt.client.continuous("ticker")
    await ticker.start("a", Count())
    await ticker.start("b", Count())
    await ticker.pause("b")
    await rt.client.task("orders").send("o1", Pay(1))
    await rt.client.debounce("hooks").add("h1", Pay(1))
    await metrics.refresh()

    def instances(job: str, kind: str, status: str) -> float | None:
        return value(metrics, "durable_jobs_instances", job=job, kind=kind, status=status)

    assert instances("ticker", "continuous", "running") == 1
    assert instances("ticker", "continuous", "stopped") == 1
    assert instances("orders", "task", "active") == 1
    assert instances("orders", "task", "idle") == 0
    assert instances("hooks", "debounce", "debouncing") == 1
    assert instances("flaky", "continuous", "running") == 0  # every registered job shows


async def test_due_overdue_and_dead_letters_after_refresh(
    rt: TestRuntime, metrics: Metrics, clock: FakeClock
) -> None:
    await rt.client.continuous("doomed").start("d", Count())
    await rt.advance("1 minute")  # two failed attempts: dead-lettered
    await rt.client.task("orders").send("o1", Pay(1))
    await rt.client.task("orders").send("o2", Pay(2))
    clock.set(clock.now() + 600)  # both alarms due, and no worker runs
    await metrics.refresh()
    assert value(metrics, "durable_jobs_dead_letters", job="doomed") == 1
    assert value(metrics, "durable_jobs_dead_letters", job="orders") == 0
    assert value(metrics, "durable_jobs_alarms_due", job="orders") == 2
    assert value(metrics, "durable_jobs_alarms_overdue", job="orders") == 2
    assert value(metrics, "durable_jobs_alarms_due", job="ticker") == 0


async def test_a_due_alarm_a_live_worker_serves_is_not_overdue(
    rt: TestRuntime, metrics: Metrics, gate: Gate, clock: FakeClock
) -> None:
    await rt.client.continuous("held").start("h", Count())
    clock.set(clock.now() + 5)
    await metrics.refresh()
    assert value(metrics, "durable_jobs_alarms_overdue", job="held") == 1
    async with rt.app.worker():
        await asyncio.wait_for(gate.entered.wait(), 10)  # the alarm is running, still due
        await metrics.refresh()
        gate.opened.set()
    assert value(metrics, "durable_jobs_workers_live") == 1
    assert value(metrics, "durable_jobs_alarms_due", job="held") == 1
    assert value(metrics, "durable_jobs_alarms_overdue", job="held") == 0
    await metrics.refresh()
    assert value(metrics, "durable_jobs_workers_live") == 0  # it deregistered on stop


async def test_refresh_every_reads_the_store_at_once(rt: TestRuntime, metrics: Metrics) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    refreshing = asyncio.create_task(metrics.refresh_every(3600))
    try:
        async with asyncio.timeout(10):
            while metrics.snapshot is None:
                await asyncio.sleep(0)
    finally:
        refreshing.cancel()
        await asyncio.gather(refreshing, return_exceptions=True)
    assert (
        value(metrics, "durable_jobs_instances", job="ticker", kind="continuous", status="running")
        == 1
    )


# -- rendering and instrumenting ----------------------------------------------------------


async def test_render_is_the_prometheus_text_format(rt: TestRuntime, metrics: Metrics) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    await rt.advance("0 seconds")
    await metrics.refresh()
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert {
        "durable_jobs_executions",
        "durable_jobs_handler_duration_seconds",
        "durable_jobs_alarm_lateness_seconds",
        "durable_jobs_instances",
        "durable_jobs_alarms_due",
        "durable_jobs_alarms_overdue",
        "durable_jobs_dead_letters",
        "durable_jobs_workers_live",
        "durable_jobs_store_read_timestamp_seconds",
    } <= set(families)
    [read_at] = families["durable_jobs_store_read_timestamp_seconds"].samples
    assert read_at.value == T0.timestamp()
    ok = [s for s in families["durable_jobs_executions"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in ok] == [
        ({"job": "ticker", "kind": "continuous", "outcome": "ok"}, 1.0)
    ]


async def test_instrument_is_idempotent_per_app(rt: TestRuntime) -> None:
    registry = CollectorRegistry()
    metrics = instrument(rt.app, registry)
    assert metrics.registry is registry
    assert instrument(rt.app) is metrics
    assert instrument(rt.app, registry) is metrics
    with pytest.raises(ValueError, match="another registry"):
        instrument(rt.app, CollectorRegistry())
    await rt.client.continuous("ticker").start("t", Count())
    await rt.advance("0 seconds")
    assert executions(metrics, "ticker", "continuous", "ok") == 1  # counted once


async def test_two_apps_have_registries_of_their_own(rt: TestRuntime, gate: Gate) -> None:
    other = DurableJobs(definitions(gate), storage="memory://", clock=FakeClock(T0))
    try:
        assert instrument(rt.app).registry is not instrument(other).registry
    finally:
        await other.aclose()


def test_the_module_names_the_extra_when_prometheus_client_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "durable_jobs.metrics")
    with pytest.raises(ImportError, match=r"durable-jobs\[metrics\]"):
        importlib.import_module("durable_jobs.metrics")


def test_importing_durable_jobs_does_not_need_prometheus_client() -> None:
    probe = (
        "import sys; sys.modules['prometheus_client'] = None; "
        "import durable_jobs, durable_jobs.testing; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
