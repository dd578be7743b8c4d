"""Definitions check themselves when made and report every problem in one error."""

from __future__ import annotations

import logging

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    Debounce,
    DefinitionError,
    DurableJobsError,
    Retry,
    Task,
    ValidationError,
    cron,
    every,
)
from durable_jobs.testing import create_test_runtime


@attrs.frozen
class State:
    count: int = 0


@attrs.frozen
class Needs:
    name: str


@attrs.frozen
class Ping:
    pass


class NotAttrs:
    pass


def noop(*args: object) -> None:
    return None


def test_a_continuous_definition_reports_every_problem_at_once() -> None:
    with pytest.raises(DefinitionError) as caught:
        Continuous(
            state=NotAttrs,
            schedule=cron("61 25 * * *", tz="Mars/Olympus_Mons"),
            execute=None,
            retry="three times",
            logging="loud",
        )
    problems = caught.value.problems
    for expected in (
        "state must be an attrs class",
        "invalid cron expression '61 25 * * *'",
        "unknown time zone 'Mars/Olympus_Mons'",
        "execute must be a function",
        "retry must be a Retry",
        "logging must be True, False or a logging level",
    ):
        assert any(expected in p for p in problems), (expected, problems)
    assert len(problems) == 6, problems
    # The message lists them all, one per line, so the user fixes them in one go.
    assert str(caught.value).count("\n  - ") == 6


def test_a_debounce_definition_reports_every_problem_at_once() -> None:
    with pytest.raises(DefinitionError) as caught:
        Debounce(
            event=NotAttrs,
            state=dict,
            on_event=None,
            execute="send it",
            flush_after="five-ish seconds",
            max_events=0,
        )
    problems = caught.value.problems
    for expected in (
        "event must be an attrs class",
        "state must be an attrs class",
        "on_event must be a function",
        "execute must be a function",
        "flush_after: invalid duration 'five-ish seconds'",
        "max_events must be a positive int",
    ):
        assert any(expected in p for p in problems), (expected, problems)
    assert len(problems) == 6, problems


def test_a_task_definition_reports_every_problem_at_once() -> None:
    with pytest.raises(DefinitionError) as caught:
        Task(
            state=NotAttrs,
            event=Ping | NotAttrs,
            on_event=None,
            execute=None,
            on_idle=42,
        )
    problems = caught.value.problems
    for expected in (
        "state must be an attrs class",
        "event must be an attrs class",
        "on_event must be a function",
        "execute must be a function",
        "on_idle must be a function",
    ):
        assert any(expected in p for p in problems), (expected, problems)
    assert len(problems) == 5, problems


def test_a_definition_error_is_a_validation_error_and_a_durable_jobs_error() -> None:
    with pytest.raises(ValidationError):
        Continuous(state=State, schedule=every("1 minute"), execute=None)
    assert issubclass(DefinitionError, DurableJobsError)


@pytest.mark.parametrize("expr", ["* * * *", "0 0 * * * *", "every day", "60 * * * *"])
def test_a_cron_expression_must_have_five_valid_fields(expr: str) -> None:
    with pytest.raises(DefinitionError, match="invalid cron expression"):
        Continuous(state=State, schedule=cron(expr), execute=noop)


def test_a_schedule_must_be_every_or_cron() -> None:
    with pytest.raises(DefinitionError, match="schedule must be every"):
        Continuous(state=State, schedule="30 minutes", execute=noop)


def test_every_needs_an_interval_longer_than_zero() -> None:
    with pytest.raises(DefinitionError, match="longer than zero"):
        Continuous(state=State, schedule=every(0), execute=noop)


def test_flush_after_must_be_longer_than_zero() -> None:
    with pytest.raises(DefinitionError, match="flush_after must be longer than zero"):
        Debounce(event=Ping, execute=noop, flush_after="0 seconds")


def test_a_debounce_state_with_required_fields_needs_an_initial_state() -> None:
    with pytest.raises(DefinitionError, match="initial_state is required"):
        Debounce(
            event=Ping, state=Needs, on_event=lambda ctx: ctx.state, execute=noop, flush_after=1
        )
    # With a factory it is fine.
    Debounce(
        event=Ping,
        state=Needs,
        initial_state=lambda: Needs("x"),
        on_event=lambda ctx: ctx.state,
        execute=noop,
        flush_after=1,
    )


def test_a_debounce_with_its_own_state_needs_an_on_event_reducer() -> None:
    with pytest.raises(DefinitionError, match="on_event must be a function"):
        Debounce(event=Ping, state=State, execute=noop, flush_after=1)


@pytest.mark.parametrize("setting", [True, False, logging.INFO, logging.WARNING])
def test_logging_takes_a_bool_or_a_level(setting: bool | int) -> None:
    Continuous(state=State, schedule=every(60), execute=noop, logging=setting)


def test_retry_and_backoff_refuse_nonsense_when_made() -> None:
    with pytest.raises(ValueError, match="max_attempts 0"):
        Retry(max_attempts=0)
    with pytest.raises(ValueError, match="max_attempts"):
        Retry(max_attempts=2.5)
    with pytest.raises(ValueError, match=r"factor 0\.5"):
        Backoff.exponential(base="1 second", max="1 minute", factor=0.5)


def test_the_registry_reports_every_bad_name_and_value_at_once() -> None:
    job = Continuous(state=State, schedule=every(60), execute=noop)
    other = Continuous(state=State, schedule=every(60), execute=noop)
    with pytest.raises(DefinitionError) as caught:
        create_test_runtime({"": job, "a:b": other, "fine": "not a job"})
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert any("''" in p for p in problems)
    assert any("'a:b'" in p for p in problems)
    assert any("job 'fine' must be Continuous, Debounce or Task" in p for p in problems)


def test_sync_and_async_handlers_are_both_accepted() -> None:
    async def async_execute(ctx: object) -> None:
        return None

    def sync_execute(ctx: object) -> None:
        return None

    Continuous(state=State, schedule=every(60), execute=async_execute)
    Continuous(state=State, schedule=every(60), execute=sync_execute)


@pytest.mark.parametrize("expr", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_well_formed_cron_that_never_fires_is_a_definition_error(expr: str) -> None:
    with pytest.raises(DefinitionError, match="never fires"):
        Continuous(state=State, schedule=cron(expr), execute=noop)


def test_a_cron_that_fires_only_in_leap_years_is_fine() -> None:
    Continuous(state=State, schedule=cron("0 0 29 2 *"), execute=noop)


def test_one_definition_registered_under_two_names_is_refused() -> None:
    from durable_jobs import DefinitionError, create_durable_jobs

    job = Continuous(state=State, schedule=every("1 minute"), execute=noop)
    with pytest.raises(DefinitionError, match="same definition object"):
        create_durable_jobs({"a": job, "b": job}, storage="memory://")
