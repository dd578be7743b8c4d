"""Job retry: the backoff formulas, jitter, and durable retries through the alarm
(SEMANTICS 5) ending, when attempts run out, in a dead letter."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import TypeVar

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    ContinuousStatus,
    DeadLetter,
    Debounce,
    DebounceExecuteContext,
    DebounceStatus,
    ErrorInfo,
    Retry,
    Task,
    TaskContext,
    TaskStatus,
    every,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0, later, of_type, types


def seconds(values: list[timedelta]) -> list[float]:
    return [v.total_seconds() for v in values]


Status = TypeVar("Status", ContinuousStatus, DebounceStatus, TaskStatus)


def split(status: Status) -> tuple[Status, tuple[str, str, datetime, int] | None]:
    """A status without its ``last_error``, and that error's type, message, time and
    attempt (its traceback is checked where it matters)."""
    error: ErrorInfo | None = status.last_error
    brief = None if error is None else (error.type, error.message, error.at, error.attempt)
    return attrs.evolve(status, last_error=None), brief


# -- formulas ---------------------------------------------------------------------------


def test_exponential_backoff_doubles_from_base_and_is_capped_at_max() -> None:
    backoff = Backoff.exponential(base="1 second", max="30 seconds")
    assert seconds([backoff.delay(n) for n in range(1, 8)]) == [1, 2, 4, 8, 16, 30, 30]


def test_exponential_backoff_uses_its_factor() -> None:
    backoff = Backoff.exponential(base="500 millis", max="1 minute", factor=3)
    assert seconds([backoff.delay(n) for n in range(1, 6)]) == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_exponential_backoff_of_a_huge_retry_number_is_the_cap() -> None:
    backoff = Backoff.exponential(base="1 second", max="1 hour")
    assert backoff.delay(10_000) == timedelta(hours=1)


def test_linear_backoff_adds_the_increment_each_retry() -> None:
    backoff = Backoff.linear(base="1 second", increment="2 seconds")
    assert seconds([backoff.delay(n) for n in range(1, 5)]) == [1, 3, 5, 7]


def test_fixed_backoff_waits_the_same_every_retry() -> None:
    backoff = Backoff.fixed("5 seconds")
    assert seconds([backoff.delay(n) for n in range(1, 4)]) == [5, 5, 5]


def test_the_wait_before_an_attempt_is_the_backoff_of_the_retry_it_is() -> None:
    retry = Retry(max_attempts=4, delay=Backoff.exponential(base="1 second", max="1 minute"))
    # Attempt 2 is retry 1.
    assert seconds([retry.wait_before(a) for a in (2, 3, 4)]) == [1, 2, 4]


def test_jitter_waits_a_random_part_of_the_backoff() -> None:
    retry = Retry(max_attempts=5, delay=Backoff.fixed("10 seconds"), jitter=True)
    waits = [retry.wait_before(2, random.Random(seed)) for seed in range(200)]
    assert all(timedelta(0) <= w <= timedelta(seconds=10) for w in waits)
    assert len(set(waits)) > 150  # spread out, not one value
    assert min(waits) < timedelta(seconds=2)
    assert max(waits) > timedelta(seconds=8)
    # The same random source gives the same wait.
    assert retry.wait_before(3, random.Random(7)) == retry.wait_before(3, random.Random(7))


def test_without_jitter_the_wait_is_exact() -> None:
    retry = Retry(max_attempts=3, delay=Backoff.fixed("10 seconds"))
    assert {retry.wait_before(2, random.Random(s)) for s in range(20)} == {timedelta(seconds=10)}


# -- durable retry of a Continuous job --------------------------------------------------


@attrs.frozen
class Tokens:
    access_token: str
    refresh_token: str


def failing_refresher(
    fail_attempts: set[int], *, max_attempts: int = 3, jitter: bool = False
) -> tuple[Continuous[Tokens], list[tuple[datetime, int, int, bool]]]:
    tries: list[tuple[datetime, int, int, bool]] = []

    def refresh(ctx: ContinuousContext[Tokens]) -> None:
        tries.append((ctx.now, ctx.run_count, ctx.attempt, ctx.is_retry))
        ctx.set_state(Tokens(f"token-{ctx.run_count}-{ctx.attempt}", ctx.state.refresh_token))
        if ctx.attempt in fail_attempts:
            raise ConnectionError(f"attempt {ctx.attempt} failed")

    job = Continuous(
        state=Tokens,
        schedule=every("30 minutes"),
        retry=Retry(
            max_attempts=max_attempts,
            delay=Backoff.exponential(base="1 second", max="30 seconds"),
            jitter=jitter,
        ),
        execute=refresh,
    )
    return job, tries


async def test_a_failed_run_is_retried_by_an_alarm_at_now_plus_backoff() -> None:
    job, tries = failing_refresher({1, 2})
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("u1", Tokens("", "rt"))

    await rt.advance(0)
    assert split(await handle.status("u1")) == (
        ContinuousStatus("running", 0, later(seconds=1)),
        ("ConnectionError", "attempt 1 failed", T0, 1),
    )
    assert await handle.get_state("u1") == Tokens("", "rt")  # the failed try wrote nothing
    await rt.advance("1 second")
    assert split(await handle.status("u1")) == (
        ContinuousStatus("running", 0, later(seconds=3)),
        ("ConnectionError", "attempt 2 failed", later(seconds=1), 2),
    )
    await rt.advance("2 seconds")

    assert tries == [
        (T0, 1, 1, False),
        (later(seconds=1), 1, 2, True),
        (later(seconds=3), 1, 3, True),
    ]
    assert await handle.get_state("u1") == Tokens("token-1-3", "rt")
    # Success resets the attempt; the schedule keeps its grid from the first due time.
    # The latest failure stays on the instance.
    assert split(await handle.status("u1")) == (
        ContinuousStatus("running", 1, later(minutes=30)),
        ("ConnectionError", "attempt 2 failed", later(seconds=1), 2),
    )
    history = await rt.client.history("continuous:token_refresher:u1")
    assert [(run.outcome, run.attempt, run.started_at) for run in history] == [
        ("ok", 3, later(seconds=3)),
        ("retrying", 2, later(seconds=1)),
        ("retrying", 1, T0),
    ]
    await rt.advance("30 minutes")
    assert tries[3] == (later(minutes=30), 2, 1, False)


async def test_each_failure_emits_job_failed_with_attempt_and_retry_time() -> None:
    job, _ = failing_refresher({1})
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    await rt.client.continuous(job).start("u1", Tokens("", "rt"))
    await rt.advance("1 second")

    [failed] = of_type(rt.events, "job.failed")
    assert (failed.instance_id, failed.job_type, failed.at) == (
        "continuous:token_refresher:u1",
        "continuous",
        T0,
    )
    assert (failed.error, failed.attempt, failed.will_retry, failed.retry_at) == (
        "ConnectionError: attempt 1 failed",
        1,
        True,
        later(seconds=1).isoformat(),
    )
    [executed] = of_type(rt.events, "job.executed")
    assert (executed.attempt, executed.run_count) == (2, 1)


async def test_exhausted_retries_terminate_the_instance_and_keep_a_dead_letter() -> None:
    job, tries = failing_refresher({1, 2, 3})
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("u1", Tokens("last-good", "rt"))
    await rt.advance("1 hour")

    assert [t[2] for t in tries] == [1, 2, 3]  # max_attempts counts the first try
    assert await handle.status("u1") == ContinuousStatus("not_found")
    assert await handle.get_state("u1") is None
    assert types(rt.events) == [
        "job.started",
        "job.failed",
        "job.failed",
        "job.failed",
        "job.retry_exhausted",
    ]
    assert [e.will_retry for e in of_type(rt.events, "job.failed")] == [True, True, False]
    [exhausted] = of_type(rt.events, "job.retry_exhausted")
    assert (exhausted.attempts, exhausted.error, exhausted.at) == (
        3,
        "ConnectionError: attempt 3 failed",
        later(seconds=3),
    )
    letter = await rt.client.dead_letter("continuous:token_refresher:u1")
    assert letter is not None
    assert "in refresh" in letter.traceback  # the handler's frame
    assert letter.traceback.endswith("ConnectionError: attempt 3 failed\n")
    assert attrs.evolve(letter, traceback="") == DeadLetter(
        "continuous:token_refresher:u1",
        Tokens("last-good", "rt"),
        "ConnectionError: attempt 3 failed",
        3,
        later(seconds=3),
        job_name="token_refresher",
        kind="continuous",
    )


async def test_a_dead_letter_outlives_a_fresh_start_of_the_same_id() -> None:
    job, _ = failing_refresher({1}, max_attempts=1)
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("u1", Tokens("a", "rt"))
    await rt.advance(0)
    assert (await handle.start("u1", Tokens("b", "rt"))).created is True
    letter = await rt.client.dead_letter("continuous:token_refresher:u1")
    assert letter is not None
    assert letter.state == Tokens("a", "rt")


async def test_there_is_no_dead_letter_for_a_healthy_or_unknown_instance() -> None:
    job, _ = failing_refresher(set())
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    await rt.client.continuous(job).start("u1", Tokens("", "rt"))
    await rt.advance("1 hour")
    assert await rt.client.dead_letter("continuous:token_refresher:u1") is None
    assert await rt.client.dead_letter("continuous:token_refresher:nobody") is None


async def test_jittered_retries_of_instances_failing_together_spread_within_the_backoff() -> None:
    job, _ = failing_refresher({1}, jitter=True)
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    handle = rt.client.continuous(job)
    for n in range(40):
        await handle.start(f"u{n}", Tokens("", "rt"))
    await rt.advance(0)

    retries = [(await handle.status(f"u{n}")).next_run_at for n in range(40)]
    assert all(r is not None and T0 <= r <= later(seconds=1) for r in retries)
    assert len(set(retries)) > 1
    await rt.advance("1 second")
    assert len(of_type(rt.events, "job.executed")) == 40


# -- Debounce and Task ------------------------------------------------------------------


@attrs.frozen
class Hit:
    n: int


async def test_a_failed_flush_is_retried_with_the_same_batch_and_reason() -> None:
    tries: list[tuple[datetime, object, int, str, int, bool]] = []

    def send(ctx: DebounceExecuteContext[Hit]) -> None:
        tries.append(
            (ctx.now, ctx.state, ctx.event_count, ctx.flush_reason, ctx.attempt, ctx.is_retry)
        )
        if ctx.attempt < 3:
            raise ConnectionError("webhook endpoint down")

    job = Debounce(
        event=Hit,
        flush_after="5 seconds",
        execute=send,
        retry=Retry(max_attempts=3, delay=Backoff.linear(base="10 seconds", increment="5 seconds")),
    )
    rt = create_test_runtime({"hits": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("c", Hit(1))
    await rt.advance("5 seconds")
    assert split(await handle.status("c")) == (
        DebounceStatus("debouncing", 1, later(seconds=15)),
        ("ConnectionError", "webhook endpoint down", later(seconds=5), 1),
    )
    await rt.advance("1 minute")

    assert tries == [
        (later(seconds=5), Hit(1), 1, "flush_after", 1, False),
        (later(seconds=15), Hit(1), 1, "flush_after", 2, True),
        (later(seconds=30), Hit(1), 1, "flush_after", 3, True),
    ]
    assert split(await handle.status("c")) == (
        DebounceStatus("idle", 0, None),
        ("ConnectionError", "webhook endpoint down", later(seconds=15), 2),
    )


async def test_a_flush_that_fails_for_good_leaves_a_dead_letter_with_the_batch() -> None:
    def send(ctx: DebounceExecuteContext[Hit]) -> None:
        raise ValueError("rejected")

    job = Debounce(event=Hit, flush_after="5 seconds", execute=send)  # no retry policy
    rt = create_test_runtime({"hits": job}, now=T0)
    await rt.client.debounce(job).add("c", Hit(7))
    await rt.advance("5 seconds")

    assert await rt.client.debounce(job).status("c") == DebounceStatus("not_found")
    letter = await rt.client.dead_letter("debounce:hits:c")
    assert letter is not None
    assert "in send" in letter.traceback
    assert attrs.evolve(letter, traceback="") == DeadLetter(
        "debounce:hits:c",
        Hit(7),
        "ValueError: rejected",
        1,
        later(seconds=5),
        job_name="hits",
        kind="debounce",
    )
    assert types(rt.events)[-2:] == ["job.failed", "job.retry_exhausted"]


@attrs.frozen
class Counter:
    n: int = 0


@attrs.frozen
class Go:
    pass


async def test_a_failed_task_execute_is_retried_then_dead_lettered() -> None:
    tries: list[datetime] = []

    def execute(ctx: TaskContext[Counter]) -> None:
        tries.append(ctx.now)
        raise RuntimeError("still broken")

    job = Task(
        state=Counter,
        event=Go,
        on_event=lambda event, ctx: (ctx.set_state(Counter(1)), ctx.schedule("1 minute")),
        execute=execute,
        retry=Retry(max_attempts=3, delay=Backoff.fixed("20 seconds")),
    )
    rt = create_test_runtime({"t": job}, now=T0)
    await rt.client.task(job).send("a", Go())
    await rt.advance("1 minute")
    assert split(await rt.client.task(job).status("a")) == (
        TaskStatus("active", later(minutes=1, seconds=20), 1),
        ("RuntimeError", "still broken", later(minutes=1), 1),
    )
    await rt.advance("1 hour")

    assert tries == [later(minutes=1), later(minutes=1, seconds=20), later(minutes=1, seconds=40)]
    assert await rt.client.task(job).status("a") == TaskStatus("not_found")
    letter = await rt.client.dead_letter("task:t:a")
    assert letter is not None
    assert (letter.state, letter.attempts, letter.error) == (
        Counter(1),
        3,
        "RuntimeError: still broken",
    )


async def test_a_task_with_on_error_gets_the_error_once_retries_run_out() -> None:
    errors: list[str] = []
    job = Task(
        state=Counter,
        event=Go,
        on_event=lambda event, ctx: ctx.schedule("1 minute"),
        execute=lambda ctx: 1 / 0,
        on_error=lambda error, ctx: errors.append(type(error).__name__),
        retry=Retry(max_attempts=2, delay=Backoff.fixed("1 second")),
    )
    rt = create_test_runtime({"t": job}, now=T0)
    await rt.client.task(job).send("a", Go())
    await rt.advance("1 hour")
    assert errors == ["ZeroDivisionError"]
    # Decision of the code: on_error handled it, so the instance lives and no dead letter.
    # The failure it handled is still the instance's latest.
    assert split(await rt.client.task(job).status("a")) == (
        TaskStatus("idle", None, 1),
        ("ZeroDivisionError", "division by zero", later(minutes=1, seconds=1), 2),
    )
    history = await rt.client.history("task:t:a")
    assert [(run.outcome, run.attempt) for run in history] == [("failed", 2), ("retrying", 1)]
    assert await rt.client.dead_letter("task:t:a") is None
    assert "job.retry_exhausted" not in types(rt.events)


@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_max_attempts_is_the_number_of_tries_in_all(attempts: int) -> None:
    job, tries = failing_refresher(set(range(1, 10)), max_attempts=attempts)
    rt = create_test_runtime({"token_refresher": job}, now=T0)
    await rt.client.continuous(job).start("u1", Tokens("", "rt"))
    await rt.advance("1 hour")
    assert len(tries) == attempts
    assert [e.attempt for e in of_type(rt.events, "job.failed")] == list(range(1, attempts + 1))
