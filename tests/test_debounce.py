"""Debounce jobs: events fold into a batch that is flushed once — after a delay from
the first event, at a count, or on demand — or cleared unprocessed."""

from __future__ import annotations

from datetime import datetime

import attrs

from durable_jobs import (
    AddResult,
    ClearResult,
    Debounce,
    DebounceEventContext,
    DebounceExecuteContext,
    DebounceStatus,
    FlushResult,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0, later, of_type, types


@attrs.frozen
class WebhookEvent:
    type: str
    contact_id: str


@attrs.frozen
class Batch:
    events: tuple[WebhookEvent, ...] = ()
    count: int = 0


@attrs.frozen(kw_only=True)
class Flush:
    now: datetime
    state: object
    event_count: int
    flush_reason: str
    debounce_started_at: datetime
    attempt: int
    is_retry: bool
    instance_id: str
    job_name: str
    id: str


@attrs.frozen(kw_only=True)
class Fold:
    event: WebhookEvent
    state: Batch
    event_count: int
    instance_id: str
    id: str
    now: datetime


def ev(n: int) -> WebhookEvent:
    return WebhookEvent("contact.updated", f"c{n}")


def batcher(
    *, max_events: int | None = 100
) -> tuple[Debounce[WebhookEvent, Batch], list[Flush], list[Fold]]:
    flushes: list[Flush] = []
    folds: list[Fold] = []

    def on_event(ctx: DebounceEventContext[WebhookEvent, Batch]) -> Batch:
        folds.append(
            Fold(
                event=ctx.event,
                state=ctx.state,
                event_count=ctx.event_count,
                instance_id=ctx.instance_id,
                id=ctx.id,
                now=ctx.now,
            )
        )
        return Batch(events=(*ctx.state.events, ctx.event), count=ctx.state.count + 1)

    async def send_batch(ctx: DebounceExecuteContext[Batch]) -> None:
        flushes.append(
            Flush(
                now=ctx.now,
                state=ctx.state,
                event_count=ctx.event_count,
                flush_reason=ctx.flush_reason,
                debounce_started_at=ctx.debounce_started_at,
                attempt=ctx.attempt,
                is_retry=ctx.is_retry,
                instance_id=ctx.instance_id,
                job_name=ctx.job_name,
                id=ctx.id,
            )
        )

    job = Debounce(
        event=WebhookEvent,
        state=Batch,
        initial_state=Batch,
        flush_after="5 seconds",
        max_events=max_events,
        on_event=on_event,
        execute=send_batch,
    )
    return job, flushes, folds


async def test_the_first_event_starts_a_batch_that_flushes_after_the_delay() -> None:
    job, flushes, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)

    assert await handle.add("c", ev(1)) == AddResult(True, 1, later(seconds=5))
    assert await handle.status("c") == DebounceStatus("debouncing", 1, later(seconds=5))
    assert await handle.get_state("c") == Batch((ev(1),), 1)
    await rt.advance("4.999 seconds")
    assert flushes == []

    await rt.advance("1 millis")
    assert flushes == [
        Flush(
            now=later(seconds=5),
            state=Batch((ev(1),), 1),
            event_count=1,
            flush_reason="flush_after",
            debounce_started_at=T0,
            attempt=1,
            is_retry=False,
            instance_id="debounce:webhook_batcher:c",
            job_name="webhook_batcher",
            id="c",
        )
    ]


async def test_the_delay_is_measured_from_the_first_event_not_extended_by_later_ones() -> None:
    job, flushes, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", ev(1))
    await rt.advance("2 seconds")
    assert await handle.add("c", ev(2)) == AddResult(False, 2, later(seconds=5))
    await rt.advance("2 seconds")
    assert await handle.add("c", ev(3)) == AddResult(False, 3, later(seconds=5))
    await rt.advance("1 second")

    assert [(f.now, f.event_count) for f in flushes] == [(later(seconds=5), 3)]
    assert flushes[0].state == Batch((ev(1), ev(2), ev(3)), 3)


async def test_on_event_folds_each_event_into_the_state_starting_from_initial_state() -> None:
    job, _, folds = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", ev(1))
    await rt.advance("1 second")
    await handle.add("c", ev(2))

    assert folds == [
        Fold(
            event=ev(1),
            state=Batch(),
            event_count=0,
            instance_id="debounce:webhook_batcher:c",
            id="c",
            now=T0,
        ),
        Fold(
            event=ev(2),
            state=Batch((ev(1),), 1),
            event_count=1,
            instance_id="debounce:webhook_batcher:c",
            id="c",
            now=later(seconds=1),
        ),
    ]


async def test_after_a_flush_the_instance_is_idle_and_the_next_event_starts_a_new_batch() -> None:
    job, flushes, folds = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", ev(1))
    await rt.advance("10 seconds")

    assert await handle.status("c") == DebounceStatus("idle", 0, None)
    assert await handle.get_state("c") is None
    assert await handle.add("c", ev(2)) == AddResult(True, 1, later(seconds=15))
    assert folds[-1].state == Batch()  # initial_state() again, not the flushed batch
    await rt.advance("5 seconds")
    assert [(f.debounce_started_at, f.state) for f in flushes] == [
        (T0, Batch((ev(1),), 1)),
        (later(seconds=10), Batch((ev(2),), 1)),
    ]


async def test_max_events_flushes_in_the_add_that_reaches_it() -> None:
    job, flushes, _ = batcher(max_events=3)
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", ev(1))
    await handle.add("c", ev(2))
    assert flushes == []

    assert await handle.add("c", ev(3)) == AddResult(False, 3, None)
    assert [(f.flush_reason, f.event_count, f.now) for f in flushes] == [("max_events", 3, T0)]
    assert await handle.status("c") == DebounceStatus("idle", 0, None)

    await rt.advance("1 minute")
    assert len(flushes) == 1  # the flush_after alarm of that batch is gone
    assert (await handle.add("c", ev(4))).created is True


async def test_flush_processes_the_batch_now_with_reason_manual() -> None:
    job, flushes, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", ev(1))
    await rt.advance("1 second")

    assert await handle.flush("c") == FlushResult(True)
    assert [(f.flush_reason, f.now, f.state) for f in flushes] == [
        ("manual", later(seconds=1), Batch((ev(1),), 1))
    ]
    await rt.advance("1 minute")
    assert len(flushes) == 1


async def test_flush_of_an_empty_or_unknown_instance_does_nothing() -> None:
    job, flushes, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    assert await handle.flush("nobody") == FlushResult(False)
    await handle.add("c", ev(1))
    await handle.flush("c")
    assert await handle.flush("c") == FlushResult(False)
    assert len(flushes) == 1


async def test_clear_drops_the_batch_unprocessed() -> None:
    job, flushes, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", ev(1))
    await handle.add("c", ev(2))

    assert await handle.clear("c") == ClearResult(True, 2)
    assert await handle.status("c") == DebounceStatus("idle", 0, None)
    assert await handle.get_state("c") is None
    await rt.advance("1 minute")
    assert flushes == []
    assert "debounce.flushed" not in types(rt.events)
    assert await handle.clear("c") == ClearResult(False, 0)
    assert await handle.clear("nobody") == ClearResult(False, 0)


async def test_without_a_state_class_the_batch_keeps_the_latest_event() -> None:
    flushed: list[object] = []
    job = Debounce(
        event=WebhookEvent,
        flush_after="5 seconds",
        execute=lambda ctx: flushed.append((ctx.state, ctx.event_count)),
    )
    rt = create_test_runtime({"latest": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", ev(1))
    await handle.add("c", ev(2))
    assert await handle.get_state("c") == ev(2)
    await rt.advance("5 seconds")
    assert flushed == [(ev(2), 2)]


async def test_status_and_state_of_an_unknown_instance() -> None:
    job, _, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    assert await rt.client.debounce(job).status("nobody") == DebounceStatus("not_found")
    assert await rt.client.debounce(job).get_state("nobody") is None


async def test_batches_of_different_ids_flush_on_their_own_schedules() -> None:
    job, flushes, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("a", ev(1))
    await rt.advance("3 seconds")
    await handle.add("b", ev(2))
    await rt.advance("10 seconds")
    assert [(f.id, f.now) for f in flushes] == [("a", later(seconds=5)), ("b", later(seconds=8))]


async def test_a_flush_emits_started_and_flushed_events_with_their_fields() -> None:
    job, _, _ = batcher()
    rt = create_test_runtime({"webhook_batcher": job}, now=T0)
    await rt.client.debounce(job).add("c", ev(1))
    await rt.client.debounce(job).add("c", ev(2))
    await rt.advance("5 seconds")

    [started] = of_type(rt.events, "debounce.started")
    assert (started.at, started.will_flush_at) == (T0, later(seconds=5).isoformat())
    [flushed] = of_type(rt.events, "debounce.flushed")
    assert (flushed.at, flushed.event_count, flushed.flush_reason) == (
        later(seconds=5),
        2,
        "flush_after",
    )
    assert types(rt.events) == ["debounce.started", "debounce.flushed", "job.executed"]


async def test_an_on_event_that_is_async_works_too() -> None:
    async def fold(ctx: DebounceEventContext[WebhookEvent, Batch]) -> Batch:
        return Batch((*ctx.state.events, ctx.event), ctx.state.count + 1)

    job = Debounce(
        event=WebhookEvent,
        state=Batch,
        on_event=fold,
        execute=lambda ctx: None,
        flush_after="1 minute",
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.debounce(job).add("c", ev(1))
    await rt.client.debounce(job).add("c", ev(2))
    assert await rt.client.debounce(job).get_state("c") == Batch((ev(1), ev(2)), 2)
