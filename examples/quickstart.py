"""The three job kinds against a real worker on SQLite, for about five seconds.

Run it with ``make demo`` or ``python examples/quickstart.py``. It keeps its state
in ``quickstart.db`` (set DURABLE_JOBS_STORAGE to use another store), starting
afresh each time.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import attrs

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceExecuteContext,
    Retry,
    Task,
    TaskContext,
    create_durable_jobs,
    every,
)

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:4.1f}s] {message}", flush=True)


# -- 1. Continuous: refresh a token every 2 seconds ---------------------------


@attrs.frozen
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float = 0.0


async def refresh(ctx: ContinuousContext[Tokens]) -> None:
    token = f"access-{ctx.run_count}"
    ctx.set_state(attrs.evolve(ctx.state, access_token=token, expires_at=ctx.now.timestamp() + 2))
    say(f"token_refresher {ctx.id}: run {ctx.run_count}, new token {token}")


token_refresher = Continuous(
    state=Tokens,
    schedule=every("2 seconds"),
    retry=Retry(max_attempts=3, delay=Backoff.exponential(base="100 millis", max="1 second")),
    execute=refresh,
)

# -- 2. Debounce: coalesce a burst of webhooks into one call -------------------


@attrs.frozen
class WebhookEvent:
    type: str
    contact_id: str


@attrs.frozen
class Batch:
    events: tuple[WebhookEvent, ...] = ()
    count: int = 0


async def send_batch(ctx: DebounceExecuteContext[Batch]) -> None:
    kinds = ", ".join(e.type for e in ctx.state.events)
    say(f"webhook_batcher {ctx.id}: flushed {ctx.event_count} events ({ctx.flush_reason}): {kinds}")


webhook_batcher = Debounce(
    event=WebhookEvent,
    state=Batch,
    flush_after="1 second",
    max_events=100,
    on_event=lambda ctx: Batch(events=(*ctx.state.events, ctx.event), count=ctx.state.count + 1),
    execute=send_batch,
)

# -- 3. Task: remind about an unpaid order, stop once it ships -----------------


@attrs.frozen
class Order:
    order_id: str
    status: str = "pending"
    reminders: int = 0


@attrs.frozen
class OrderPlaced:
    order_id: str


@attrs.frozen
class PaymentReceived:
    pass


@attrs.frozen
class Shipped:
    tracking_number: str


async def handle_order_event(
    event: OrderPlaced | PaymentReceived | Shipped, ctx: TaskContext[Order]
) -> None:
    if isinstance(event, OrderPlaced):
        ctx.set_state(Order(event.order_id))
        ctx.schedule("1 second")  # remind if still unpaid by then
        say(f"order_processor {ctx.id}: placed, reminder in 1s")
    elif isinstance(event, PaymentReceived) and ctx.state is not None:
        ctx.set_state(attrs.evolve(ctx.state, status="paid"))
        ctx.cancel_schedule()
        say(f"order_processor {ctx.id}: paid after {ctx.state.reminders} reminder(s)")
    elif isinstance(event, Shipped):
        say(f"order_processor {ctx.id}: shipped ({event.tracking_number}), done")
        ctx.terminate("shipped")


async def check_order(ctx: TaskContext[Order]) -> None:
    if ctx.state is not None and ctx.state.status == "pending":
        ctx.set_state(attrs.evolve(ctx.state, reminders=ctx.state.reminders + 1))
        ctx.schedule("1 second")
        say(f"order_processor {ctx.id}: still unpaid, reminder {ctx.state.reminders}")


order_processor = Task(
    state=Order,
    event=OrderPlaced | PaymentReceived | Shipped,
    on_event=handle_order_event,
    execute=check_order,
)


def fresh_storage() -> str:
    storage = os.environ.get("DURABLE_JOBS_STORAGE")
    if storage is None:
        for leftover in Path().glob("quickstart.db*"):
            leftover.unlink()  # start afresh: the demo's own file
        storage = "sqlite:///quickstart.db"
    return storage


async def main(storage: str) -> None:
    jobs = create_durable_jobs(
        {
            "token_refresher": token_refresher,
            "webhook_batcher": webhook_batcher,
            "order_processor": order_processor,
        },
        storage=storage,
    )
    client = jobs.client
    async with jobs.worker(concurrency=16):
        started = await client.continuous(token_refresher).start("user-1", Tokens("", "rt-1"))
        say(f"started {started.instance_id} (created={started.created})")

        for kind in ("contact.created", "contact.updated", "contact.updated"):
            added = await client.debounce(webhook_batcher).add("contact-7", WebhookEvent(kind, "7"))
        say(f"webhook_batcher contact-7: {added.event_count} events waiting")

        orders = client.task(order_processor)
        await orders.send("order-42", OrderPlaced("order-42"))
        await asyncio.sleep(2.5)
        await orders.send("order-42", PaymentReceived())
        await orders.send("order-42", Shipped("TRACK-1"))

        await asyncio.sleep(2.0)
        status = await client.continuous(token_refresher).status("user-1")
        say(f"token_refresher user-1: {status.status}, {status.run_count} runs so far")
        terminated = await client.continuous(token_refresher).terminate("user-1", "demo over")
        say(f"token_refresher user-1: terminated={terminated.terminated}")
    await jobs.aclose()


if __name__ == "__main__":
    asyncio.run(main(fresh_storage()))
