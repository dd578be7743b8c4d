"""The ``otel`` extra: a span per handler call, and an alarm's run in the trace of
the client call that armed it."""

from __future__ import annotations

import attrs
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from durable_jobs import ExecutionError, Task, TaskContext
from durable_jobs.otel import instrument
from durable_jobs.testing import create_test_runtime


@attrs.define
class Ping:
    n: int


@attrs.define
class Seen:
    count: int = 0


def on_ping(event: Ping, ctx: TaskContext[Seen]) -> None:
    if event.n < 0:
        raise ValueError("negative ping")
    ctx.schedule("1 minute")


def execute(ctx: TaskContext[Seen]) -> None:
    pass


def pings() -> Task[Seen, Ping]:
    return Task(state=Seen, event=Ping, on_event=on_ping, execute=execute)


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_an_alarm_run_continues_the_trace_of_the_call_that_armed_it(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    rt = create_test_runtime({"pings": pings()})
    instrument(rt.app, provider)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        await rt.client.task("pings").send("p", Ping(1))
    await rt.advance("1 minute")
    finished = {s.name: s for s in exporter.get_finished_spans()}
    send, run = finished["task pings send"], finished["task pings alarm"]
    assert send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id
    assert run.parent is not None
    assert run.parent.span_id == send.context.span_id
    assert run.context.trace_id == request.get_span_context().trace_id
    assert run.attributes is not None
    assert run.attributes["durable_jobs.instance_id"] == "task:pings:p"
    assert run.attributes["durable_jobs.trigger"] == "alarm"
    await rt.aclose()


async def test_a_failing_handler_call_is_an_error_span_with_its_exception(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    rt = create_test_runtime({"pings": pings()})
    instrument(rt.app, provider)
    with pytest.raises(ExecutionError):
        await rt.client.task("pings").send("p", Ping(-1))
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in span.events)
    await rt.aclose()


async def test_without_instrument_no_trace_is_stored(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    rt = create_test_runtime({"pings": pings()})
    with provider.get_tracer("test").start_as_current_span("request"):
        await rt.client.task("pings").send("p", Ping(1))
    record = await rt.app.storage.read("task:pings:p")
    assert record is not None
    assert "trace" not in record.meta
    await rt.aclose()
