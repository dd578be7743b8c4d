"""Durations: the documented strings, ``timedelta`` or seconds — anything else is a
``ValueError`` that names the input."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import attrs
import pytest

from durable_jobs import Backoff, Continuous, ContinuousContext, every, parse_duration
from durable_jobs.testing import create_test_runtime
from tests.support import T0, later


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500 millis", timedelta(milliseconds=500)),
        ("30 seconds", timedelta(seconds=30)),
        ("1 second", timedelta(seconds=1)),
        ("5 minutes", timedelta(minutes=5)),
        ("1 hour", timedelta(hours=1)),
        ("24 hours", timedelta(hours=24)),
        ("2 days", timedelta(days=2)),
        ("1.5 hours", timedelta(minutes=90)),
        ("  10 SECONDS ", timedelta(seconds=10)),
    ],
)
def test_documented_strings_parse_to_their_length(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=3), timedelta(minutes=3)),
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
        (0, timedelta(0)),
    ],
)
def test_timedeltas_pass_through_and_numbers_are_seconds(
    value: object, expected: timedelta
) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "soon",
        "30",
        "seconds",
        "5 fortnights",
        "-5 seconds",
        "5 seconds ago",
        -1,
        -0.5,
        float("nan"),
        float("inf"),
        timedelta(seconds=-1),
        True,
        None,
        [30],
    ],
)
def test_anything_else_is_a_value_error_naming_the_input(bad: object) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_duration(bad)


def test_every_and_backoff_refuse_a_bad_duration_at_once() -> None:
    with pytest.raises(ValueError, match="'half an hour'"):
        every("half an hour")
    with pytest.raises(ValueError, match="'a while'"):
        Backoff.fixed("a while")


@attrs.frozen
class Ticks:
    count: int = 0


@pytest.mark.parametrize("interval", ["30 minutes", timedelta(minutes=30), 1800, 1800.0])
async def test_every_spelling_of_one_interval_schedules_the_same_runs(interval: Any) -> None:
    async def tick(ctx: ContinuousContext[Ticks]) -> None:
        ctx.set_state(Ticks(ctx.state.count + 1))
        runs.append(ctx.now)

    runs: list[object] = []
    job = Continuous(state=Ticks, schedule=every(interval), execute=tick)
    rt = create_test_runtime({"tick": job}, now=T0)
    await rt.client.continuous(job).start("a", Ticks())
    await rt.advance("1 hour")
    assert runs == [T0, later(minutes=30), later(minutes=60)]
