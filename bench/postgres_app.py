"""Definitions that bench/postgres.py shares with the worker processes it starts:
``durable-jobs worker postgres_app:jobs`` (DSN from DURABLE_JOBS_STORAGE, schema from
DURABLE_JOBS_BENCH_SCHEMA) and ``procrastinate --app postgres_app.procrastinate_app worker``
(DSN from PROCRASTINATE_BENCH_DSN). The jobs are those of the SQLite suite; Procrastinate's
``late`` task appends each lateness to the file PROCRASTINATE_BENCH_LATE.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sqlite_app import JOBS  # needs this directory on sys.path, as the workers have it

from durable_jobs import create_durable_jobs


async def noop(i: int) -> None:
    return None


async def late(due: float) -> None:
    lateness = time.time() - due
    fd = os.open(os.environ["PROCRASTINATE_BENCH_LATE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{lateness!r}\n".encode())  # one line per write: atomic appends
    finally:
        os.close(fd)


def make_procrastinate(dsn: str) -> tuple[Any, Any, Any]:
    """A Procrastinate ``App`` on ``dsn`` (default options) and its tasks ``noop``, ``late``."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    return app, app.task(name="noop")(noop), app.task(name="late")(late)


def __getattr__(name: str) -> Any:
    """``jobs`` and ``procrastinate_app``, made on first use from the environment."""
    if name == "jobs":  # postgresql://… from DURABLE_JOBS_STORAGE
        made = create_durable_jobs(JOBS, schema=os.environ["DURABLE_JOBS_BENCH_SCHEMA"])
    elif name == "procrastinate_app":
        made = make_procrastinate(os.environ["PROCRASTINATE_BENCH_DSN"])[0]
    else:
        raise AttributeError(name)
    globals()[name] = made
    return made
