"""Definitions that bench/sqlite.py shares with the worker and consumer processes it starts:
``durable-jobs worker sqlite_app:jobs`` (store from DURABLE_JOBS_STORAGE) and
``huey_consumer sqlite_app.huey`` (file from HUEY_BENCH_DB; Huey is imported only then).
"""

from __future__ import annotations

import os
import time
from typing import Any

import attrs

from durable_jobs import Task, TaskContext, create_durable_jobs


@attrs.frozen
class Arm:
    due: float = 0.0  # epoch seconds; 0 means now
    track: bool = False  # keep the due time so that execute can record its lateness


@attrs.frozen
class Late:
    due: float
    lateness: float | None = None


async def nothing(*_: object) -> None:
    return None


async def arm(event: Arm, ctx: TaskContext[Late]) -> None:
    if event.track:
        ctx.set_state(Late(event.due))
    ctx.schedule(event.due or ctx.now)


async def record(ctx: TaskContext[Late]) -> None:
    if ctx.state is not None:
        ctx.set_state(attrs.evolve(ctx.state, lateness=time.time() - ctx.state.due))


# The same jobs with plain ``def`` handlers, which the runtime calls in a thread.
def nothing_def(*_: object) -> None:
    return None


def arm_def(event: Arm, ctx: TaskContext[Late]) -> None:
    if event.track:
        ctx.set_state(Late(event.due))
    ctx.schedule(event.due or ctx.now)


def record_def(ctx: TaskContext[Late]) -> None:
    if ctx.state is not None:
        ctx.set_state(attrs.evolve(ctx.state, lateness=time.time() - ctx.state.due))


INGEST = Task(state=Arm, event=Arm, on_event=nothing, execute=nothing)
ALARM = Task(state=Late, event=Arm, on_event=arm, execute=record)
INGEST_DEF = Task(state=Arm, event=Arm, on_event=nothing_def, execute=nothing_def)
ALARM_DEF = Task(state=Late, event=Arm, on_event=arm_def, execute=record_def)
JOBS = {"ingest": INGEST, "alarm": ALARM, "ingest_def": INGEST_DEF, "alarm_def": ALARM_DEF}

jobs = create_durable_jobs(JOBS)  # sqlite:///… from DURABLE_JOBS_STORAGE


def noop(_: int) -> None:
    return None


def late(due: float) -> float:
    return time.time() - due


def make_huey(filename: str, **options: Any) -> tuple[Any, Any, Any]:
    """A ``SqliteHuey`` on ``filename`` (default ``options``) and its tasks ``noop``, ``late``."""
    from huey import SqliteHuey

    huey = SqliteHuey(filename=filename, **options)
    return huey, huey.task(name="noop")(noop), huey.task(name="late")(late)


def __getattr__(name: str) -> Any:
    if name == "huey":
        globals()["huey"] = made = make_huey(os.environ["HUEY_BENCH_DB"])[0]
        return made
    raise AttributeError(name)
