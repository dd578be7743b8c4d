"""An app for tests that run real worker and producer processes.

Configured by environment: DURABLE_JOBS_STORAGE, DJ_DIR (a scratch directory for
the activation guard and markers) and DJ_LEASE (claim lease in seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from durable_jobs import Task, TaskContext, create_durable_jobs

DIR = Path(os.environ.get("DJ_DIR", "."))


@attrs.frozen
class Count:
    events: int = 0
    executed: int = 0


@attrs.frozen
class Bump:
    schedule: bool = False
    hang: bool = False  # block on_event before its first await, until the process is killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def single_activation(instance_id: str) -> Iterator[None]:
    """Records a violation if two handlers of one instance ever overlap, in any process.

    The lock file holds its owner's pid: one left by a process that was killed is
    stale, not an overlap.
    """
    lock = DIR / f"{instance_id.replace(':', '_')}.active"
    # The lock appears with its owner's pid already in it (a hard link to a file
    # written first): a process killed while taking it leaves no empty lock behind.
    mine = DIR / f"{lock.name}.{os.getpid()}"
    mine.write_text(str(os.getpid()))
    try:
        for _ in range(3):
            try:
                os.link(mine, lock)
                break
            except FileExistsError:
                owner = lock.read_text() if lock.exists() else ""
                if owner.isdigit() and not _alive(int(owner)):
                    lock.unlink(missing_ok=True)
                    continue
        else:
            (DIR / "violation").write_text(f"{instance_id} overlapped in pid {os.getpid()}\n")
            yield
            return
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


async def on_event(event: Bump, ctx: TaskContext[Count]) -> None:
    if event.hang:  # a test kills this process here: on SQLite, inside the call's transaction
        (DIR / f"hanging.{os.getpid()}").touch()
        time.sleep(600)
    with single_activation(ctx.instance_id):
        state = ctx.state or Count()
        await asyncio.sleep(0)  # yield mid-update: other calls must still wait
        ctx.set_state(attrs.evolve(state, events=state.events + 1))
        if event.schedule:
            ctx.schedule(ctx.now)


async def execute(ctx: TaskContext[Count]) -> None:
    with single_activation(ctx.instance_id):
        (DIR / f"entered.{os.getpid()}").touch()
        # A test holds this process's handlers here (to kill or stop it) until it
        # deletes the file named by DJ_HOLD.
        hold = os.environ.get("DJ_HOLD")
        while hold and Path(hold).exists():
            await asyncio.sleep(0.01)
        state = ctx.state or Count()
        ctx.set_state(attrs.evolve(state, executed=state.executed + 1))


counter = Task(state=Count, event=Bump, on_event=on_event, execute=execute)


def block_forever(ctx: TaskContext[Count]) -> None:
    """A plain handler whose thread never ends (until its process does)."""
    (DIR / f"blocking.{os.getpid()}").touch()
    time.sleep(600)


blocking = Task(state=Count, event=Bump, on_event=on_event, execute=block_forever)

_schema = {"schema": os.environ["DJ_SCHEMA"]} if "DJ_SCHEMA" in os.environ else {}
jobs = create_durable_jobs(
    {"counter": counter, "blocking": blocking},
    lease=float(os.environ.get("DJ_LEASE", "30")),
    **_schema,
)
