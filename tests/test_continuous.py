"""Continuous jobs: start, run on the schedule, trigger, status, state and terminate."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from durable_jobs import (
    Continuous,
    ContinuousContext,
    ContinuousStatus,
    StartResult,
    TerminateResult,
    TriggerResult,
    every,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0, later, of_type, types


@attrs.frozen
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float = 0.0


@attrs.frozen(kw_only=True)
class Seen:
    instance_id: str
    job_name: str
    id: str
    now: Any
    state: Tokens
    run_count: int
    attempt: int
    is_retry: bool


def refresher(*, start_immediately: bool = True) -> tuple[Continuous[Tokens], list[Seen]]:
    """A token refresher that records what each run saw."""
    seen: list[Seen] = []

    async def refresh(ctx: ContinuousContext[Tokens]) -> None:
        seen.append(
            Seen(
                instance_id=ctx.instance_id,
                job_name=ctx.job_name,
                id=ctx.id,
                now=ctx.now,
                state=ctx.state,
                run_count=ctx.run_count,
                attempt=ctx.attempt,
                is_retry=ctx.is_retry,
            )
        )
        ctx.set_state(
            attrs.evolve(
                ctx.state,
                access_token=f"token-{ctx.run_count}",
                expires_at=ctx.now.timestamp() + 1800,
            )
        )

    job = Continuous(
        state=Tokens,
        schedule=every("30 minutes"),
        start_immediately=start_immediately,
        execute=refresh,
    )
    return job, seen


async def test_start_creates_the_instance_and_runs_it_right_away() -> None:
    job, seen = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)

    result = await handle.start("u1", Tokens("", "rt"))
    assert result == StartResult(True, "continuous:token_refresher:u1", "running")
    assert seen == []  # nothing runs until the clock is moved
    assert await handle.status("u1") == ContinuousStatus("running", 0, T0)

    await rt.advance(0)
    assert seen == [
        Seen(
            instance_id="continuous:token_refresher:u1",
            job_name="token_refresher",
            id="u1",
            now=T0,
            state=Tokens("", "rt"),
            run_count=1,
            attempt=1,
            is_retry=False,
        )
    ]
    assert await handle.get_state("u1") == Tokens("token-1", "rt", T0.timestamp() + 1800)
    assert await handle.status("u1") == ContinuousStatus("running", 1, later(minutes=30))


async def test_without_start_immediately_the_first_run_waits_for_the_schedule() -> None:
    job, seen = refresher(start_immediately=False)
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    await rt.client.continuous(job).start("u1", Tokens("", "rt"))
    assert (await rt.client.continuous(job).status("u1")).next_run_at == later(minutes=30)

    await rt.advance("29 minutes")
    assert seen == []
    await rt.advance("1 minute")
    assert [s.now for s in seen] == [later(minutes=30)]


async def test_runs_repeat_on_the_schedule_carrying_state_and_counting_runs() -> None:
    job, seen = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    await rt.client.continuous(job).start("u1", Tokens("", "rt"))
    await rt.advance("90 minutes")

    assert [s.now for s in seen] == [T0, later(minutes=30), later(minutes=60), later(minutes=90)]
    assert [s.run_count for s in seen] == [1, 2, 3, 4]
    # Each run sees what the previous one stored.
    assert [s.state.access_token for s in seen] == ["", "token-1", "token-2", "token-3"]
    status = await rt.client.continuous(job).status("u1")
    assert status == ContinuousStatus("running", 4, later(minutes=120))


async def test_starting_an_existing_instance_leaves_it_as_it_is() -> None:
    job, seen = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("u1", Tokens("", "first"))
    await rt.advance("10 minutes")

    again = await handle.start("u1", Tokens("", "second"))
    assert again == StartResult(False, "continuous:token_refresher:u1", "running")
    assert (await handle.get_state("u1")).refresh_token == "first"
    assert await handle.status("u1") == ContinuousStatus("running", 1, later(minutes=30))
    assert types(rt.events).count("job.started") == 1
    assert len(seen) == 1  # starting again did not run it again


async def test_an_execute_that_sets_no_state_keeps_the_state() -> None:
    def look(ctx: ContinuousContext[Tokens]) -> None:
        assert ctx.state == Tokens("a", "r")

    job = Continuous(state=Tokens, schedule=every("1 minute"), execute=look)
    rt = create_test_runtime({"job": job}, now=T0)
    await rt.client.continuous(job).start("x", Tokens("a", "r"))
    await rt.advance("3 minutes")
    assert await rt.client.continuous(job).get_state("x") == Tokens("a", "r")
    assert (await rt.client.continuous(job).status("x")).run_count == 4


async def test_update_state_applies_a_function_to_the_current_state() -> None:
    job = Continuous(
        state=Tokens,
        schedule=every("1 minute"),
        execute=lambda ctx: ctx.update_state(
            lambda s: attrs.evolve(s, access_token=s.access_token + "+")
        ),
    )
    rt = create_test_runtime({"job": job}, now=T0)
    await rt.client.continuous(job).start("x", Tokens("", "r"))
    await rt.advance("2 minutes")
    assert await rt.client.continuous(job).get_state("x") == Tokens("+++", "r")


async def test_trigger_runs_now_and_leaves_the_schedule_where_it_was() -> None:
    job, seen = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("u1", Tokens("", "rt"))
    await rt.advance("10 minutes")  # one run at T0, the next due at 00:30

    assert await handle.trigger("u1") == TriggerResult(True)
    assert [(s.now, s.run_count) for s in seen] == [(T0, 1), (later(minutes=10), 2)]
    assert await handle.status("u1") == ContinuousStatus("running", 2, later(minutes=30))

    await rt.advance("50 minutes")
    assert [s.now for s in seen] == [T0, later(minutes=10), later(minutes=30), later(minutes=60)]


async def test_trigger_of_an_unknown_instance_does_nothing() -> None:
    job, seen = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    assert await rt.client.continuous(job).trigger("nobody") == TriggerResult(False)
    assert seen == []
    assert await rt.client.continuous(job).status("nobody") == ContinuousStatus("not_found")
    assert rt.events == []


async def test_status_and_state_of_an_unknown_instance() -> None:
    job, _ = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    assert await rt.client.continuous(job).status("nobody") == ContinuousStatus(
        "not_found", None, None
    )
    assert await rt.client.continuous(job).get_state("nobody") is None


async def test_terminate_deletes_state_and_alarm_and_the_id_can_start_fresh() -> None:
    job, seen = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("u1", Tokens("", "old"))
    await rt.advance("30 minutes")
    assert len(seen) == 2

    assert await handle.terminate("u1", reason="user left") == TerminateResult(True, "user left")
    assert await handle.status("u1") == ContinuousStatus("not_found")
    assert await handle.get_state("u1") is None
    await rt.advance("2 hours")
    assert len(seen) == 2  # the alarm went with it
    [terminated] = of_type(rt.events, "job.terminated")
    assert terminated.reason == "user left"

    assert (await handle.start("u1", Tokens("", "new"))).created is True
    await rt.advance(0)
    assert (seen[-1].run_count, seen[-1].state) == (1, Tokens("", "new"))


async def test_terminate_of_an_unknown_instance_reports_nothing_terminated() -> None:
    job, _ = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    assert await rt.client.continuous(job).terminate("nobody", "why") == TerminateResult(
        False, "why"
    )
    assert rt.events == []


async def test_ctx_terminate_ends_the_handler_and_deletes_the_instance() -> None:
    after_terminate: list[bool] = []

    def execute(ctx: ContinuousContext[Tokens]) -> None:
        if ctx.run_count == 2:
            ctx.set_state(Tokens("never", "stored"))
            try:
                ctx.terminate("done")
            except Exception:  # a handler's broad except cannot swallow terminate
                after_terminate.append(True)
            after_terminate.append(True)

    job = Continuous(state=Tokens, schedule=every("1 minute"), execute=execute)
    rt = create_test_runtime({"job": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("x", Tokens("", "r"))
    await rt.advance("5 minutes")

    assert after_terminate == []
    assert await handle.status("x") == ContinuousStatus("not_found")
    assert await handle.get_state("x") is None
    assert types(rt.events) == ["job.started", "job.executed", "job.terminated"]
    assert rt.events[-1].reason == "done"
    assert rt.events[-1].at == later(minutes=1)
    assert (await handle.start("x", Tokens("", "again"))).created is True


async def test_a_failed_run_without_retry_policy_keeps_the_schedule_and_the_state() -> None:
    # Decision of the code: like cron or Celery beat, the next run still happens.
    def execute(ctx: ContinuousContext[Tokens]) -> None:
        if ctx.run_count == 1:
            ctx.set_state(Tokens("lost", "lost"))
            raise RuntimeError("upstream down")
        ctx.set_state(attrs.evolve(ctx.state, access_token=f"run-{ctx.run_count}"))

    job = Continuous(state=Tokens, schedule=every("10 minutes"), execute=execute)
    rt = create_test_runtime({"job": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("x", Tokens("", "r"))

    await rt.advance(0)
    assert await handle.get_state("x") == Tokens("", "r")
    status = await handle.status("x")
    assert attrs.evolve(status, last_error=None) == ContinuousStatus(
        "running", 1, later(minutes=10)
    )
    error = status.last_error
    assert error is not None
    assert (error.type, error.message, error.at, error.attempt) == (
        "RuntimeError",
        "upstream down",
        T0,
        1,
    )
    [failed] = of_type(rt.events, "job.failed")
    assert (failed.error, failed.attempt, failed.will_retry, failed.outcome) == (
        "RuntimeError: upstream down",
        1,
        False,
        "failed",
    )

    await rt.advance("10 minutes")
    assert await handle.get_state("x") == Tokens("run-2", "r")
    assert await rt.client.dead_letter("continuous:job:x") is None
    # A later success keeps the latest failure on the instance.
    assert (await handle.status("x")).last_error == error


@pytest.mark.parametrize("style", ["async", "sync"])
async def test_async_and_plain_handlers_run_alike(style: str) -> None:
    async def async_execute(ctx: ContinuousContext[Tokens]) -> None:
        ctx.set_state(Tokens(style, ctx.state.refresh_token))

    def sync_execute(ctx: ContinuousContext[Tokens]) -> None:
        ctx.set_state(Tokens(style, ctx.state.refresh_token))

    execute = async_execute if style == "async" else sync_execute
    job = Continuous(state=Tokens, schedule=every(60), execute=execute)
    rt = create_test_runtime({"job": job}, now=T0)
    await rt.client.continuous(job).start("x", Tokens("", "r"))
    await rt.advance(0)
    assert await rt.client.continuous(job).get_state("x") == Tokens(style, "r")


async def test_instances_of_one_job_are_independent() -> None:
    job, seen = refresher()
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("a", Tokens("", "ra"))
    await rt.advance("15 minutes")
    await handle.start("b", Tokens("", "rb"))
    await rt.advance("15 minutes")

    assert [(s.id, s.now) for s in seen] == [
        ("a", T0),
        ("b", later(minutes=15)),
        ("a", later(minutes=30)),
    ]
    await handle.terminate("a")
    assert (await handle.status("b")).status == "running"
