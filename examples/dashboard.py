"""A worker and the dashboard in one process, on SQLite, with jobs that give it
something to show: token refreshes (a few failing), webhook batches, orders.

    pip install 'durable-jobs[web]'
    python examples/dashboard.py            # then open the address it prints

It keeps its state in ``dashboard.db`` (starting afresh each time) and runs until
interrupted. ``durable-jobs dashboard APP`` serves the same pages for any app.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
from pathlib import Path

import attrs
import uvicorn

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
from durable_jobs.web import create_app


class UpstreamError(Exception):
    pass


@attrs.frozen
class Tokens:
    access_token: str = ""


async def refresh(ctx: ContinuousContext[Tokens]) -> None:
    if ctx.id.endswith("7") and ctx.attempt < 3:
        raise UpstreamError(f"token endpoint answered 503 for {ctx.id}")
    ctx.set_state(Tokens(access_token=secrets.token_hex(8)))


@attrs.frozen
class Hook:
    body: str


async def deliver(ctx: DebounceExecuteContext[Hook]) -> None:
    await asyncio.sleep(random.uniform(0.001, 0.01))


@attrs.frozen
class Order:
    total: int = 0


@attrs.frozen
class Paid:
    amount: int


def on_paid(event: Paid, ctx: TaskContext[Order]) -> None:
    total = ctx.state.total if ctx.state is not None else 0
    ctx.set_state(Order(total + event.amount))
    ctx.schedule("3 seconds")


def remind(ctx: TaskContext[Order]) -> None:
    if ctx.state.total > 900:
        raise UpstreamError(f"mail server refused the reminder for a total of {ctx.state.total}")


jobs = create_durable_jobs(
    {
        "token_refresher": Continuous(
            state=Tokens,
            schedule=every("5 seconds"),
            execute=refresh,
            retry=Retry(max_attempts=5, delay=Backoff.fixed("1 second")),
        ),
        "webhooks": Debounce(event=Hook, execute=deliver, flush_after="2 seconds"),
        "orders": Task(
            state=Order,
            event=Paid,
            on_event=on_paid,
            execute=remind,
            retry=Retry(max_attempts=2, delay=Backoff.fixed("1 second")),
        ),
    },
    storage=os.environ.get("DURABLE_JOBS_STORAGE", "sqlite:///dashboard.db"),
)


async def traffic() -> None:
    """Users coming and going: new tokens, webhooks in bursts, orders paid."""
    client = jobs.client
    for n in range(40):
        await client.continuous("token_refresher").start(f"user-{n}", Tokens())
    n = 0
    while True:
        n += 1
        for _ in range(random.randint(1, 8)):
            await client.debounce("webhooks").add(f"shop-{random.randint(1, 12)}", Hook("{}"))
        await client.task("orders").send(f"order-{n % 60}", Paid(random.randint(1, 500)))
        await asyncio.sleep(0.3)


async def main() -> None:
    token = os.environ.get("DURABLE_JOBS_TOKEN") or secrets.token_urlsafe(16)
    port = int(os.environ.get("PORT", "8765"))
    config = uvicorn.Config(create_app(jobs, token), port=port, log_level="warning")
    print(f"dashboard: http://127.0.0.1:{port}/?token={token}", flush=True)
    async with jobs.worker(concurrency=16):
        await asyncio.gather(uvicorn.Server(config).serve(), traffic())


if __name__ == "__main__":
    if not os.environ.get("DURABLE_JOBS_STORAGE"):
        Path("dashboard.db").unlink(missing_ok=True)
    asyncio.run(main())
