"""Definition options: a Task's event given as a tuple of classes, and every kind's timeout."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Continuous,
    Debounce,
    DefinitionError,
    JobDefinition,
    Task,
    ValidationError,
    every,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0


@attrs.frozen
class Order:
    order_id: str = ""


@attrs.frozen
class Placed:
    order_id: str


@attrs.frozen
class Paid:
    pass


@attrs.frozen
class Shipped:
    tracking_number: str


class NotAttrs:
    pass


def noop(*args: object) -> None:
    return None


def continuous(**options: Any) -> Continuous[Any]:
    return Continuous(state=Order, schedule=every("1 hour"), execute=noop, **options)


def debounce(**options: Any) -> Debounce[Any, Any]:
    return Debounce(event=Placed, execute=noop, flush_after="1 second", **options)


def task(**options: Any) -> Task[Any, Any]:
    return Task(state=Order, event=Placed, on_event=noop, execute=noop, **options)


KINDS: list[Callable[..., JobDefinition]] = [continuous, debounce, task]
KIND_IDS = ["continuous", "debounce", "task"]


async def test_each_class_of_an_event_tuple_reaches_on_event_as_itself() -> None:
    received: list[object] = []
    job = Task(
        state=Order,
        event=(Placed, Paid, Shipped),
        on_event=lambda event, ctx: received.append(event),
        execute=lambda ctx: None,
    )
    rt = create_test_runtime({"orders": job}, now=T0)
    for event in (Placed("o1"), Paid(), Shipped("T-1")):
        await rt.client.task(job).send("o1", event)
    assert received == [Placed("o1"), Paid(), Shipped("T-1")]


async def test_an_event_of_no_class_of_the_tuple_is_refused_naming_them() -> None:
    job = Task(state=Order, event=(Placed, Paid), on_event=noop, execute=noop)
    rt = create_test_runtime({"orders": job}, now=T0)
    with pytest.raises(ValidationError, match=r"expected Placed \| Paid, got Shipped"):
        await rt.client.task(job).send("o1", Shipped("T-1"))  # type: ignore[arg-type]


def test_an_event_tuple_means_the_union_of_its_classes() -> None:
    as_tuple = Task(state=Order, event=(Placed, Paid), on_event=noop, execute=noop)
    as_union = Task(state=Order, event=Placed | Paid, on_event=noop, execute=noop)
    assert as_tuple.event == as_union.event == Placed | Paid
    assert as_tuple.event_types == as_union.event_types == (Placed, Paid)
    single = Task(state=Order, event=(Placed,), on_event=noop, execute=noop)
    assert single.event is Placed
    assert single.event_types == (Placed,)


@pytest.mark.parametrize(
    "event",
    [(), (Placed, NotAttrs), (Placed, "Paid"), (Placed | Paid, Shipped), [Placed, Paid]],
    ids=["empty", "not-attrs", "not-a-class", "nested-union", "list"],
)
def test_an_event_tuple_must_hold_attrs_classes_only(event: Any) -> None:
    with pytest.raises(DefinitionError) as caught:
        Task(state=Order, event=event, on_event=noop, execute=noop)
    assert caught.value.problems == (
        "event must be an attrs class, a tuple of them such as (A, B) "
        f"or a union such as A | B, got {event!r}",
    )


@pytest.mark.parametrize("make", KINDS, ids=KIND_IDS)
def test_no_timeout_by_default(make: Callable[..., JobDefinition]) -> None:
    assert make().timeout is None


@pytest.mark.parametrize("make", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        ("30 seconds", timedelta(seconds=30)),
        (timedelta(minutes=2), timedelta(minutes=2)),
        (1.5, timedelta(seconds=1.5)),
    ],
    ids=["text", "timedelta", "seconds"],
)
def test_a_timeout_is_a_duration(
    make: Callable[..., JobDefinition], timeout: object, expected: timedelta
) -> None:
    assert make(timeout=timeout).timeout == expected


@pytest.mark.parametrize("make", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize(
    ("timeout", "problem"),
    [
        (0, "timeout must be longer than zero, got 0"),
        ("0 seconds", "timeout must be longer than zero, got '0 seconds'"),
        (-1, "timeout: invalid duration -1: must be finite and not negative"),
        (float("inf"), "timeout: invalid duration inf: must be finite and not negative"),
        ("soon", "timeout: invalid duration 'soon'"),
        (True, "timeout: invalid duration True"),
    ],
    ids=["zero", "zero-text", "negative", "infinite", "nonsense", "bool"],
)
def test_a_timeout_must_be_a_duration_longer_than_zero(
    make: Callable[..., JobDefinition], timeout: object, problem: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        make(timeout=timeout)
    [reported] = caught.value.problems
    assert reported.startswith(problem), reported


def test_a_bad_timeout_is_listed_with_the_other_problems() -> None:
    with pytest.raises(DefinitionError) as caught:
        Continuous(state=NotAttrs, schedule=every("1 hour"), execute=noop, timeout=-5)
    assert caught.value.problems == (
        f"state must be an attrs class, got {NotAttrs!r}",
        "timeout: invalid duration -5: must be finite and not negative",
    )
