"""Checked by ``mypy --strict`` in ``test_typing.py``; never run.

Handles are typed by the definition they are given; a job name gives ``Any``.
"""

from __future__ import annotations

from typing import Any, assert_type

import attrs

from durable_jobs import (
    AddResult,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceEventContext,
    DebounceExecuteContext,
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


token_refresher = Continuous(state=Tokens, schedule=every("30 minutes"), execute=refresh)
pinger = Task(state=Tokens, event=Ping, on_event=on_ping, execute=lambda ctx: None)
orders = Task(state=Order, event=Placed | Paid, on_event=on_order, execute=lambda ctx: None)
# An annotation names the union the runtime cannot infer.
typed_orders: Task[Order, Placed | Paid] = Task(
    state=Order, event=Placed | Paid, on_event=on_order, execute=lambda ctx: None
)
batcher = Debounce(event=Ping, state=Batch, on_event=fold, execute=flush, flush_after="5 seconds")
latest = Debounce(event=Ping, execute=lambda ctx: None, flush_after="5 seconds")

jobs = create_durable_jobs(
    {
        "token_refresher": token_refresher,
        "pinger": pinger,
        "orders": orders,
        "typed_orders": typed_orders,
        "batcher": batcher,
        "latest": latest,
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
