"""How long the dashboard's pages take to answer over a store of 100,000 instances.

    python bench/dashboard.py [--instances 100000] [--requests 30] [--profile]

For each back-end (SQLite in a temporary file; PostgreSQL at BENCH_PG_DSN, default
postgresql://postgres@127.0.0.1:5432/test, in a fresh schema dropped afterwards, when
it answers) the store is filled in two steps:

1. Through the client and an in-process worker, with the real code paths: five jobs of
   the three kinds (a Continuous, one of them paused; a Debounce; three Tasks, one of
   which always fails and is dead-lettered), SEED_EXECUTIONS executions and
   DEAD_LETTERS dead letters, so that history, dead letters and the event log (which
   the overview's per-minute tally reads from its start) are real rows.
2. The instances of step 1 copied by SQL, in one statement per template row, to
   ``--instances`` in all: most with an alarm an hour or more ahead, DUE copies of each
   alarmed template with an alarm already due (no worker runs while the pages are read,
   so those show as overdue), the rest without an alarm.

Then ``create_app(jobs, token=…)`` is served by uvicorn in a thread, as
tests/test_web.py does, and ``--requests`` sequential GETs of each page are timed from
httpx in this process. "first" is the first request to the page; for ``GET /`` it
includes the one-time start of the activity tally, which reads the whole event log.
Goal: the overview's median under 200 ms. ``--profile`` (or a median over the goal)
prints where the overview's time goes: cProfile over requests made in-process through
``httpx.ASGITransport``, on the SQLite store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import structlog
import uvicorn

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceExecuteContext,
    DurableJobs,
    Retry,
    Task,
    TaskContext,
    create_durable_jobs,
    every,
)
from durable_jobs.cli import listening_socket
from durable_jobs.web import create_app

DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOAL_MS = 200.0
SEED_EXECUTIONS = 3_000  # executions of the "email" task through the worker
DEAD_LETTERS = 300  # "flaky" instances, each dead-lettered on its first failure
SEED_OTHERS = 200  # instances of each other job made through the client
DUE = 1_000  # copies of each alarmed template whose alarm is already due
# Share of the copied instances per template: (job, alarmed) -> weight.
MIX = {
    ("sync", True): 25,
    ("sync", False): 5,
    ("digest", True): 20,
    ("email", True): 15,
    ("email", False): 20,
    ("report", False): 15,
}
PAGES = [
    ("GET /", "/"),
    ("GET /instances", "/instances"),
    ("GET /api/instances?limit=50", "/api/instances?limit=50"),
]


# -- the jobs ---------------------------------------------------------------------------


@attrs.frozen
class Sync:
    runs: int = 0
    source: str = "crm"


@attrs.frozen
class Click:
    page: str = "/"


@attrs.frozen
class Mail:
    to: str = "someone@example.com"
    due: float = 0.0  # epoch seconds; 0 means now


def sync(ctx: ContinuousContext[Sync]) -> None:
    ctx.set_state(attrs.evolve(ctx.state, runs=ctx.state.runs + 1))


async def digest(ctx: DebounceExecuteContext[Click]) -> None:
    return None


async def mail(event: Mail, ctx: TaskContext[Mail]) -> None:
    ctx.set_state(event)
    ctx.schedule(event.due or ctx.now)


async def nothing(*_: object) -> None:
    return None


async def fail(ctx: TaskContext[Mail]) -> None:
    raise RuntimeError("the mail server refused the message")


SYNC = Continuous(state=Sync, schedule=every("1 hour"), execute=sync)
DIGEST = Debounce(event=Click, execute=digest, flush_after="10 minutes")
EMAIL = Task(state=Mail, event=Mail, on_event=mail, execute=nothing)
REPORT = Task(state=Mail, event=Mail, on_event=nothing, execute=nothing)
FLAKY = Task(state=Mail, event=Mail, on_event=mail, execute=fail, retry=Retry(max_attempts=1))
JOBS = {"sync": SYNC, "digest": DIGEST, "email": EMAIL, "report": REPORT, "flaky": FLAKY}


# -- filling the store ------------------------------------------------------------------


async def seed(jobs: DurableJobs) -> None:
    """Step 1: instances, executions, failures and dead letters through the real paths."""
    client = jobs.client
    email, flaky = client.task(EMAIL), client.task(FLAKY)
    await client.continuous(SYNC).start("warm-up", Sync())  # opens the store

    async def each(count: int, call: Callable[[int], Awaitable[object]]) -> None:
        async def producer(first: int) -> None:
            for n in range(first, count, 16):
                await call(n)

        await asyncio.gather(*(producer(k) for k in range(16)))

    async with jobs.worker(concurrency=64, poll_interval=0.05):
        await each(SEED_EXECUTIONS, lambda n: email.send(f"seed-{n}", Mail(f"u{n}@example.com")))
        await each(DEAD_LETTERS, lambda n: flaky.send(f"seed-{n}", Mail(f"u{n}@example.com")))
        await each(SEED_OTHERS, lambda n: client.continuous(SYNC).start(f"seed-{n}", Sync()))
        await each(SEED_OTHERS, lambda n: client.debounce(DIGEST).add(f"seed-{n}", Click()))
        await each(SEED_OTHERS, lambda n: client.task(REPORT).send(f"seed-{n}", Mail()))
        later = time.time() + 86_400
        await each(SEED_OTHERS, lambda n: email.send(f"later-{n}", Mail(due=later)))
        await each(SEED_OTHERS // 4, lambda n: client.continuous(SYNC).pause(f"seed-{n}"))
        await wait_quiet(jobs)
    await jobs.aclose()


async def wait_quiet(jobs: DurableJobs, timeout: float = 60.0) -> None:
    """Until no alarm is due and every failing instance is dead-lettered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = await jobs.storage.stats(time.time())
        if not stats.due and sum(n for _, n in stats.dead_letters) >= DEAD_LETTERS:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the seed run did not finish in {timeout:.0f}s")


def plan(total: int, seeded: int) -> list[tuple[str, bool, int]]:
    """(job, alarmed, copies) for each template to reach ``total`` instances."""
    left = max(0, total - seeded)
    weights = sum(MIX.values())
    copies = [(job, alarmed, left * w // weights) for (job, alarmed), w in MIX.items()]
    job, alarmed, n = copies[0]
    copies[0] = (job, alarmed, n + left - sum(c for _, _, c in copies))
    return copies


def alarm_sql(now: float) -> str:
    """``alarm_at`` of copy ``g``: due for the first DUE of an alarmed template, else
    spread over the next days; none for a template without one."""
    return (
        f"CASE WHEN t.alarm_at IS NULL THEN NULL WHEN g <= {DUE} THEN {now - 30!r} "
        f"ELSE {now + 3600!r} + g END"
    )


COPY_COLUMNS = "instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at"


def copy_select(now: float) -> str:
    return (
        f"SELECT t.kind || ':' || t.job_name || ':' || 'bulk-' || g, t.kind, t.job_name, "
        f"'bulk-' || g, t.state, t.meta, {alarm_sql(now)}, t.created_at, t.updated_at"
    )


def template_sql(param: str) -> str:
    return (
        "SELECT instance_id FROM instances WHERE job_name = {p} AND "
        "(alarm_at IS NOT NULL) = {p} ORDER BY instance_id LIMIT 1"
    ).replace("{p}", param)


def fill_sqlite(path: Path, total: int) -> None:
    now = time.time()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        seeded = db.execute("SELECT count(*) FROM instances").fetchone()[0]
        for job, alarmed, n in plan(total, seeded):
            (template,) = db.execute(template_sql("?"), (job, alarmed)).fetchone()
            db.execute(
                f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?) "
                f"INSERT INTO instances ({COPY_COLUMNS}) "
                f"{copy_select(now).replace('bulk-', f'bulk-{job}-{int(alarmed)}-')} "
                "FROM instances AS t, s WHERE t.instance_id = ?",
                (n, template),
            )


def fill_postgres(schema: str, total: int) -> None:
    import psycopg
    from psycopg import sql

    now = time.time()
    with psycopg.connect(DSN, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        seeded = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
        for job, alarmed, n in plan(total, seeded):
            (template,) = conn.execute(template_sql("%s"), (job, alarmed)).fetchone()
            select = copy_select(now).replace("bulk-", f"bulk-{job}-{int(alarmed)}-")
            conn.execute(
                f"INSERT INTO instances ({COPY_COLUMNS}) {select} "
                "FROM instances AS t, generate_series(1, %s) AS g WHERE t.instance_id = %s",
                (n, template),
            )
        conn.execute("ANALYZE instances")


# -- serving and timing -----------------------------------------------------------------


@contextlib.contextmanager
def serve(app: Any) -> Iterator[httpx.Client]:
    """``app`` on uvicorn in a thread, on a socket bound as ``durable-jobs dashboard``
    binds it."""
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def time_page(http: httpx.Client, path: str, requests: int) -> dict[str, float]:
    took, size = [], 0
    for _ in range(requests):
        began = time.perf_counter()
        response = http.get(path, headers=AUTH)
        took.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
        size = len(response.content)
    rest = sorted(took[1:]) or took
    return {
        "first": took[0],
        "median": statistics.median(rest),
        "p95": rest[min(len(rest) - 1, round(0.95 * (len(rest) - 1)))],
        "size": size,
    }


def count_instances(jobs: DurableJobs) -> int:
    async def run() -> int:
        await jobs.runtimes.open()
        stats = await jobs.storage.stats(time.time())
        await jobs.aclose()
        return sum(n for *_, n in stats.instances)

    return asyncio.run(run())


def measure(name: str, make: Callable[[], DurableJobs], requests: int) -> list[dict[str, Any]]:
    count = count_instances(make())
    jobs = make()
    rows = []
    with serve(create_app(jobs, token=TOKEN)) as http:
        http.get("/healthz").raise_for_status()
        for label, path in PAGES:
            found = time_page(http, path, requests)
            rows.append({"store": name, "page": label, "instances": count, **found})
    return rows


# -- the back-ends ----------------------------------------------------------------------


def sqlite_rows(total: int, requests: int) -> tuple[list[dict[str, Any]], float, Path | None]:
    scratch = tempfile.mkdtemp(prefix="djbench-dash-")
    path = Path(scratch) / "jobs.db"
    began = time.perf_counter()
    asyncio.run(seed(create_durable_jobs(JOBS, storage=f"sqlite:///{path}")))
    fill_sqlite(path, total)
    filled = time.perf_counter() - began
    rows = measure("sqlite", lambda: create_durable_jobs(JOBS, storage=f"sqlite:///{path}"),
                   requests)  # fmt: skip
    return rows, filled, path


def postgres_answers() -> bool:
    import psycopg

    try:
        psycopg.connect(DSN, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def postgres_rows(total: int, requests: int) -> tuple[list[dict[str, Any]], float]:
    import psycopg
    from psycopg import sql

    schema = f"djbench_dash_{os.getpid()}"
    try:
        began = time.perf_counter()
        asyncio.run(seed(create_durable_jobs(JOBS, storage=DSN, schema=schema)))
        fill_postgres(schema, total)
        filled = time.perf_counter() - began
        rows = measure("postgres", lambda: create_durable_jobs(JOBS, storage=DSN, schema=schema),
                       requests)  # fmt: skip
        return rows, filled
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# -- profiling --------------------------------------------------------------------------


def profile_overview(make: Callable[[], DurableJobs], requests: int, top: int = 25) -> str:
    """cProfile of ``requests`` overview loads after the first, made in-process."""

    async def run() -> cProfile.Profile:
        jobs = make()
        transport = httpx.ASGITransport(app=create_app(jobs, token=TOKEN))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            (await http.get("/", headers=AUTH)).raise_for_status()  # starts the tally
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                (await http.get("/", headers=AUTH)).raise_for_status()
            profiler.disable()
        await jobs.runtimes.close_current()
        return profiler

    profiler = asyncio.run(run())
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# -- the table --------------------------------------------------------------------------


def quiet() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="profile the overview page")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv or [])
    quiet()
    began = time.perf_counter()
    print(
        f"# dashboard pages over {args.instances:,} instances: {args.requests} sequential "
        f"GETs each through uvicorn; median and p95 of all but the first; goal GET / median "
        f"< {GOAL_MS:.0f} ms"
    )
    rows, fills = [], []
    rows_sqlite, filled, path = sqlite_rows(args.instances, args.requests)
    rows += rows_sqlite
    fills.append(f"sqlite {filled:.1f} s")
    if not args.no_postgres and postgres_answers():
        rows_pg, filled = postgres_rows(args.instances, args.requests)
        rows += rows_pg
        fills.append(f"postgres {filled:.1f} s")
    else:
        fills.append("postgres: not reachable, skipped")
    header = (
        f"{'store':<9} {'page':<28} {'instances':>9} {'first ms':>9} {'median ms':>9} "
        f"{'p95 ms':>8} {'KiB':>6}  goal"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        goal = ""
        if row["page"] == "GET /":
            goal = f"median < {GOAL_MS:.0f} ms: " + ("yes" if row["median"] < GOAL_MS else "NO")
        print(
            f"{row['store']:<9} {row['page']:<28} {row['instances']:>9,} {row['first']:>9.1f} "
            f"{row['median']:>9.1f} {row['p95']:>8.1f} {row['size'] / 1024:>6.1f}  {goal}"
        )
    print(
        f"# seeded through the client: {SEED_EXECUTIONS:,} executions, {DEAD_LETTERS} dead "
        f"letters; {DUE:,} due alarms per alarmed template; fill took " + "; ".join(fills)
    )
    slow = any(r["page"] == "GET /" and r["median"] >= GOAL_MS for r in rows)
    if (args.profile or slow) and path is not None:
        print("# cProfile of the overview, sqlite, in-process (httpx.ASGITransport):")
        report = profile_overview(lambda: create_durable_jobs(JOBS, storage=f"sqlite:///{path}"),
                                  min(args.requests, 10))  # fmt: skip
        print("\n".join(f"#   {line}" for line in report.strip().splitlines()))
    if path is not None:
        for file in path.parent.iterdir():
            file.unlink()
        path.parent.rmdir()
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(f"# suite took {time.perf_counter() - began:.0f} s; load average {load}", flush=True)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
