"""Checked by ``mypy --strict`` in ``test_typing.py``; never run.

Handles are typed by the definition they are given; a job name gives ``Any``. A
definition's types come from ``state=`` and ``event=``, annotated handlers or not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, assert_type

import attrs

from durable_jobs import (
    AddResult,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceEventContext,
    DebounceExecuteContext,
    JobDefinition,
    SendResult,
    StartResult,
    Task,
    TaskContext,
    TaskState,
    create_durable_jobs,
    every,
)
from durable_jobs.runtime import ContinuousHandle, DebounceHandle, TaskHandle
from durable_jobs.runtime.sync_client import SyncContinuousHandle


@attrs.frozen
class Tokens:
    access_token: str
    refresh_token: str


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Batch:
    count: int = 0


@attrs.frozen
class Order:
    order_id: str


@attrs.frozen
class Placed:
    order_id: str


@attrs.frozen
class Paid:
    pass


@attrs.frozen
class Shipped:
    tracking_number: str


async def refresh(ctx: ContinuousContext[Tokens]) -> None:
    ctx.set_state(attrs.evolve(ctx.state, access_token="new"))


def on_ping(event: Ping, ctx: TaskContext[Tokens]) -> None:
    ctx.schedule("1 minute")


def on_order(event: Placed | Paid, ctx: TaskContext[Order]) -> None:
    return None


def fold(ctx: DebounceEventContext[Ping, Batch]) -> Batch:
    return Batch(ctx.state.count + 1)


def flush(ctx: DebounceExecuteContext[Batch]) -> None:
    return None


def flush_latest(ctx: DebounceExecuteContext[Ping]) -> None:
    return None


token_refresher = Continuous(state=Tokens, schedule=every("30 minutes"), execute=refresh)
pinger = Task(state=Tokens, event=Ping, on_event=on_ping, execute=lambda ctx: None)
orders = Task(state=Order, event=Placed | Paid, on_event=on_order, execute=lambda ctx: None)
# An annotation names the union the runtime cannot infer.
typed_orders: Task[Order, Placed | Paid] = Task(
    state=Order, event=Placed | Paid, on_event=on_order, execute=lambda ctx: None
)
batcher = Debounce(event=Ping, state=Batch, on_event=fold, execute=flush, flush_after="5 seconds")
latest = Debounce(event=Ping, execute=lambda ctx: None, flush_after="5 seconds")
# A tuple of event classes keeps their union.
tuple_orders = Task(state=Order, event=(Placed, Paid), on_event=on_order, execute=lambda ctx: None)

jobs = create_durable_jobs(
    {
        "token_refresher": token_refresher,
        "pinger": pinger,
        "orders": orders,
        "typed_orders": typed_orders,
        "batcher": batcher,
        "latest": latest,
        "tuple_orders": tuple_orders,
    },
    storage="memory://",
)


async def typed_by_definition() -> None:
    client = jobs.client
    assert_type(client.continuous(token_refresher), ContinuousHandle[Tokens])
    assert_type(await client.continuous(token_refresher).get_state("x"), Tokens | None)
    assert_type(await client.continuous(token_refresher).start("x", Tokens("", "r")), StartResult)

    # A Task with one event class: send takes exactly that class.
    assert_type(client.task(pinger), TaskHandle[Tokens, Ping])
    assert_type(await client.task(pinger).send("x", Ping(1)), SendResult)
    assert_type(await client.task(pinger).get_state("x"), TaskState[Tokens])
    assert_type((await client.task(pinger).get_state("x")).state, Tokens | None)

    # A union of event classes cannot be spelled as type[E]: the event is Any,
    # unless the definition is annotated.
    assert_type(client.task(orders), TaskHandle[Order, Any])
    assert_type(client.task(typed_orders), TaskHandle[Order, Placed | Paid])
    await client.task(typed_orders).send("x", Paid())

    # A tuple of event classes needs no annotation.
    assert_type(tuple_orders, Task[Order, Placed | Paid])
    assert_type(client.task(tuple_orders), TaskHandle[Order, Placed | Paid])
    await client.task(tuple_orders).send("x", Placed("o"))
    await client.task(tuple_orders).send("x", Paid())

    assert_type(client.debounce(batcher), DebounceHandle[Ping, Batch])
    assert_type(await client.debounce(batcher).get_state("x"), Batch | None)
    assert_type(await client.debounce(batcher).add("x", Ping(1)), AddResult)
    # Without a state class the batch is the latest event.
    assert_type(await client.debounce(latest).get_state("x"), Ping | None)

    assert_type(jobs.sync_client.continuous(token_refresher), SyncContinuousHandle[Tokens])
    assert_type(jobs.sync_client.continuous(token_refresher).get_state("x"), Tokens | None)


async def typed_any_by_name() -> None:
    client = jobs.client
    assert_type(client.continuous("token_refresher"), ContinuousHandle[Any])
    assert_type(client.task("pinger"), TaskHandle[Any, Any])
    assert_type(client.debounce("batcher"), DebounceHandle[Any, Any])
    # Any input goes; the check happens at run time.
    await client.continuous("token_refresher").start("x", {"access_token": "", "refresh_token": ""})
    await client.task("pinger").send("x", "anything")


# A mapping of definitions of every kind, made before the call, without an annotation.
REGISTRY = {
    "refresher": Continuous(state=Tokens, schedule=every("1 hour"), execute=refresh),
    "other_refresher": Continuous(state=Order, schedule=every("1 hour"), execute=lambda ctx: None),
    "batcher": Debounce(event=Ping, execute=lambda ctx: None, flush_after="1 second"),
    "orders": Task(state=Order, event=(Placed, Paid), on_event=on_order, execute=lambda ctx: None),
}
assert_type(REGISTRY, dict[str, JobDefinition])
registered = create_durable_jobs(REGISTRY, storage="memory://")


async def still_typed_by_definition_after_a_registry() -> None:
    client = registered.client
    assert_type(client.continuous(token_refresher), ContinuousHandle[Tokens])
    assert_type(client.task(tuple_orders), TaskHandle[Order, Placed | Paid])


# Handlers without annotations, as the README writes them: the types come from
# ``state=`` and ``event=``.
async def refresh_unannotated(ctx):  # type: ignore[no-untyped-def]
    ctx.set_state(ctx.state)


def on_event_unannotated(event, ctx):  # type: ignore[no-untyped-def]
    ctx.schedule("1 minute")


def fold_unannotated(ctx):  # type: ignore[no-untyped-def]
    return Batch(ctx.state.count + 1)


hourly = every("1 hour")
assert_type(
    Continuous(state=Tokens, schedule=hourly, execute=refresh_unannotated), Continuous[Tokens]
)
assert_type(Continuous(state=Tokens, schedule=hourly, execute=lambda ctx: None), Continuous[Tokens])
assert_type(
    Task(state=Tokens, event=Ping, on_event=on_event_unannotated, execute=refresh_unannotated),
    Task[Tokens, Ping],
)
assert_type(
    Task(state=Tokens, event=Ping, on_event=lambda event, ctx: None, execute=lambda ctx: None),
    Task[Tokens, Ping],
)
assert_type(
    Task(state=Order, event=(Placed, Paid), on_event=on_event_unannotated, execute=lambda c: None),
    Task[Order, Placed | Paid],
)
assert_type(
    Task(state=Order, event=Placed | Paid, on_event=on_event_unannotated, execute=lambda c: None),
    Task[Order, Any],
)
assert_type(
    Debounce(
        event=Ping,
        state=Batch,
        on_event=fold_unannotated,
        execute=refresh_unannotated,
        flush_after="1 second",
    ),
    Debounce[Ping, Batch],
)
assert_type(
    Debounce(
        event=Ping,
        state=Batch,
        on_event=lambda ctx: Batch(ctx.state.count + 1),
        execute=lambda ctx: None,
        flush_after="1 second",
    ),
    Debounce[Ping, Batch],
)
assert_type(
    Debounce(event=Ping, execute=refresh_unannotated, flush_after="1 second"), Debounce[Ping, Ping]
)


# One to six event classes in a tuple.
def any_event(event: object, ctx: TaskContext[Order]) -> None:
    return None


assert_type(
    Task(state=Order, event=(Placed,), on_event=any_event, execute=lambda c: None),
    Task[Order, Placed],
)
assert_type(
    Task(state=Order, event=(Placed, Paid, Shipped), on_event=any_event, execute=lambda c: None),
    Task[Order, Placed | Paid | Shipped],
)
assert_type(
    Task(
        state=Order,
        event=(Placed, Paid, Shipped, Ping),
        on_event=any_event,
        execute=lambda c: None,
    ),
    Task[Order, Placed | Paid | Shipped | Ping],
)
assert_type(
    Task(
        state=Order,
        event=(Placed, Paid, Shipped, Ping, Batch),
        on_event=any_event,
        execute=lambda c: None,
    ),
    Task[Order, Placed | Paid | Shipped | Ping | Batch],
)
assert_type(
    Task(
        state=Order,
        event=(Placed, Paid, Shipped, Ping, Batch, Tokens),
        on_event=any_event,
        execute=lambda c: None,
    ),
    Task[Order, Placed | Paid | Shipped | Ping | Batch | Tokens],
)

# Every definition takes a timeout.
assert_type(
    Continuous(state=Tokens, schedule=hourly, execute=refresh, timeout="30 seconds").timeout,
    timedelta | None,
)
Debounce(event=Ping, execute=flush_latest, flush_after="1 second", timeout=timedelta(seconds=5))
Task(state=Tokens, event=Ping, on_event=on_ping, execute=lambda ctx: None, timeout=2.5)
