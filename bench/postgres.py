"""durable-jobs on PostgreSQL against Procrastinate, both with default settings.

    python bench/postgres.py                   # the tables (about 6 minutes)
    python bench/postgres.py --profile NAME    # cProfile the event loop of one of PROFILES
    python bench/postgres.py --run NAME        # one run of PROFILES[NAME], for py-spy:
        py-spy record --gil -f raw -o out.txt -- python bench/postgres.py --run ingest_c16

Both sides use the server at BENCH_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test).
Ours: a fresh schema per run (``create_durable_jobs(..., storage=dsn, schema=...)``), dropped
afterwards; its workers are ``durable-jobs worker postgres_app:jobs`` in their own processes.
Procrastinate: a fresh database per run (``CREATE DATABASE bench_procrastinate``, its schema
applied), dropped afterwards; its worker is ``procrastinate worker`` with default options
(concurrency 1, INFO logging to a file). Runs of the two sides alternate, so that a busy
neighbour on the machine slows both alike. The workloads are those of bench/sqlite.py.

Executions of ours: the workers start on an empty schema and, once all are running, the
alarms appear due in one transaction (copies of an instance made through the client), so
that start-up is not counted and several workers start together. Procrastinate's jobs
are deferred before its worker starts. Both are timed from the first execution seen to
the last, and the CPU of the workers, of their server backends and of the machine is
read from /proc over the same span.

The full sizes (20,000 calls per ingest run, 100,000 pending instances) take about 11
minutes on 2 cores, so by default ingest runs make 4,000 calls and the scale workload
25,000 instances (rates and per-instance sizes do not depend on it); BENCH_FULL=1 restores
the full sizes. BENCH_INGEST and BENCH_SCALE set them directly, BENCH_RUNS (default 3)
the runs per median (ingest, our executions, several workers), BENCH_SLOW_RUNS (default 1)
those of Procrastinate's executions (about a minute each) and of lateness, whose samples
are pooled.
"""

from __future__ import annotations

import asyncio
import cProfile
import datetime
import itertools
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqlite  # the SQLite suite: its process and producer helpers, and its table
import sqlite_app
from ceilings import describe, postgres_ceilings
from postgres_app import make_procrastinate
from sqlite import DAY, IDLE, Child, late_events, load, percentiles, produce, produce_with
from sqlite_app import Arm

from durable_jobs import DurableJobs, create_durable_jobs
from durable_jobs.adapters.postgres._listener import channel_name

BENCH = Path(__file__).resolve().parent
DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PROCRASTINATE_DB = "bench_procrastinate"
FULL = os.environ.get("BENCH_FULL") == "1"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SLOW_RUNS = int(os.environ.get("BENCH_SLOW_RUNS", "1"))
INGEST_N = int(os.environ.get("BENCH_INGEST", "20000" if FULL else "4000"))
SCALE = int(os.environ.get("BENCH_SCALE", "100000" if FULL else "25000"))
INGEST_IDS, PRODUCERS, SCALE_PRODUCERS = 1_000, 16, 64
EXEC_N, EXEC_CONCURRENCY, DEFAULT_CONCURRENCY = 10_000, (16, 64), 16
WORKER_COUNTS = (1, 2, 3)
LATE_N = 1_000
POLL = 0.02  # seconds between progress polls from this process (a count on the server)
CLK = os.sysconf("SC_CLK_TCK")
WORKER_APP = "djbench-worker"  # application_name of the workers' connections
SCHEMAS = (f"djbench_{os.getpid()}_{n}" for n in itertools.count())

# -- plumbing -------------------------------------------------------------------------


def with_url(url: str, *, dbname: str | None = None, **params: str) -> str:
    """``url`` on another database and/or with more query parameters."""
    parts = urlsplit(url)
    path = f"/{dbname}" if dbname is not None else parts.path
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(path=path, query=query))


PROCRASTINATE_DSN = with_url(DSN, dbname=PROCRASTINATE_DB)


def admin(*statements: sql.Composable | str, dsn: str = DSN) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@contextmanager
def our_schema() -> Iterator[str]:
    """A schema name nobody uses; the schema is dropped afterwards."""
    schema = next(SCHEMAS)
    try:
        yield schema
    finally:
        admin(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def make_jobs(schema: str) -> DurableJobs:
    return create_durable_jobs(sqlite_app.JOBS, storage=DSN, schema=schema)


@contextmanager
def procrastinate_db() -> Iterator[tuple[Any, Any, Any]]:
    """A fresh database with Procrastinate's schema; its app and tasks ``noop``, ``late``."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(PROCRASTINATE_DB)
    )
    admin(drop, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PROCRASTINATE_DB)))
    try:
        made = make_procrastinate(PROCRASTINATE_DSN)
        admin(made[0].schema_manager.get_schema(), dsn=PROCRASTINATE_DSN)
        yield made
    finally:
        admin(drop)


class Process(Child):
    """A worker process (see ``sqlite.Child``), its output in a temporary log file."""

    def __init__(self, argv: list[str], ready_text: str, env: dict[str, str]) -> None:
        fd, log = tempfile.mkstemp(prefix="djbench-pg-", suffix=".log")
        os.close(fd)
        self.log, self.ready_text = Path(log), ready_text
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *argv],
                cwd=BENCH,
                env={**os.environ, "PYTHONPATH": str(BENCH), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.proc.pid

    def stop(self) -> None:
        super().stop()
        self.log.unlink(missing_ok=True)


@contextmanager
def our_workers(
    schema: str, count: int = 1, concurrency: int = DEFAULT_CONCURRENCY
) -> Iterator[list[Process]]:
    argv = ["durable_jobs.cli", "worker", "postgres_app:jobs", "--concurrency", str(concurrency)]
    env = {
        "DURABLE_JOBS_STORAGE": with_url(DSN, application_name=WORKER_APP),
        "DURABLE_JOBS_BENCH_SCHEMA": schema,
    }
    with ExitStack() as stack:
        children = []
        for _ in range(count):
            child = Process(argv, "durable-jobs worker:", env)
            stack.callback(child.stop)
            children.append(child)
        yield children


@contextmanager
def procrastinate_worker(late_file: Path | None = None) -> Iterator[list[Process]]:
    argv = ["procrastinate", "--app", "postgres_app.procrastinate_app", "worker"]
    env = {
        "PROCRASTINATE_BENCH_DSN": with_url(PROCRASTINATE_DSN, application_name=WORKER_APP),
        "PROCRASTINATE_BENCH_LATE": str(late_file or os.devnull),
    }
    child = Process(argv, "Starting worker", env)
    try:
        yield [child]
    finally:
        child.stop()


def procrastinate_defer(app: Any, call: Callable[[int], Any], n: int, producers: int) -> float:
    """``await call(i)`` for ``i`` in ``range(n)`` from ``producers`` asyncio tasks, with
    ``app`` open; returns the seconds it took."""

    async def producer(first: int) -> None:
        for i in range(first, n, producers):
            await call(i)

    async def run() -> float:
        async with app.open_async():
            await call(-1)  # warm-up: opens the pool's connections
            started = time.perf_counter()
            await asyncio.gather(*(producer(k) for k in range(producers)))
            return time.perf_counter() - started

    return asyncio.run(run())


# -- CPU use, from /proc ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime, all threads


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def machine_seconds() -> tuple[float, float]:
    """Busy and total CPU seconds of the machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK, sum(values) / CLK


class Usage:
    """Cores used from ``start()`` to ``stop()`` by the workers, by their backends (their
    connections' application_name), by the rest of PostgreSQL, and by the whole machine."""

    def __init__(self, workers: list[Process], conn: psycopg.Connection[Any]) -> None:
        self.workers, self.conn = [w.pid for w in workers], conn

    def start(self) -> None:
        self.began = time.perf_counter()
        self.before = {pid: cpu_seconds(pid) for pid in self.workers + postgres_pids()}
        self.machine = machine_seconds()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.began
        query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        backends = {pid for (pid,) in self.conn.execute(query, (WORKER_APP,))}

        def used(pids: Any) -> float:
            return sum(cpu_seconds(p) - self.before.get(p, 0.0) for p in pids) / wall

        busy, total = (b - a for a, b in zip(self.machine, machine_seconds(), strict=True))
        return {
            "workers": used(self.workers),
            "backends": used(backends),
            "postgres_other": used(set(postgres_pids()) - backends),
            "machine": busy / total * (os.cpu_count() or 1),
        }


def watch(
    conn: psycopg.Connection[Any], count: str, total: int, workers: list[Process]
) -> tuple[float, dict[str, float]]:
    """Executions per second from the first execution seen to the last, and the cores
    used meanwhile. ``count`` is the query of what is left to run."""
    usage = Usage(workers, conn)

    def remaining() -> int:
        return int(conn.execute(count).fetchone()[0])  # type: ignore[index]

    rate = sqlite.watch(remaining, total, 300, poll=POLL, started=usage.start)
    return rate, usage.stop()


def our_count(schema: str) -> str:
    return f'SELECT count(*) FROM "{schema}".instances WHERE alarm_at IS NOT NULL'


PROCRASTINATE_COUNT = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"


def size_mib(dsn: str, schema: str) -> float:
    """Tables of ``schema`` with their indexes and TOAST, MiB."""
    query = (
        "SELECT coalesce(sum(pg_total_relation_size(format('%%I.%%I', schemaname, tablename))), 0)"
        " FROM pg_tables WHERE schemaname = %s"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(conn.execute(query, (schema,)).fetchone()[0]) / 2**20  # type: ignore[index]


# -- 1, 2. ingest -----------------------------------------------------------------------


def ingest_ours(producers: int) -> float:
    events = [(f"id-{i % INGEST_IDS}", Arm()) for i in range(INGEST_N)]
    with our_schema() as schema:
        return INGEST_N / produce_with(make_jobs(schema), sqlite_app.INGEST, events, producers)


def ingest_procrastinate(producers: int) -> float:
    with procrastinate_db() as (app, noop, _):
        return INGEST_N / procrastinate_defer(app, lambda i: noop.defer_async(i=i), INGEST_N,
                                              producers)  # fmt: skip


# -- 3. executions ----------------------------------------------------------------------


def make_template(schema: str) -> str:
    """An alarm instance made through the client (a day ahead); its id."""
    jobs = make_jobs(schema)

    async def run() -> None:
        try:
            await jobs.client.task(sqlite_app.ALARM).send("x-template", Arm(due=time.time() + DAY))
        finally:
            await jobs.aclose()

    asyncio.run(run())
    return "task:alarm:x-template"


def make_due(conn: psycopg.Connection[Any], schema: str, template: str, n: int) -> None:
    """``n`` copies of ``template`` due now, in one transaction that wakes the workers."""
    instances = sql.Identifier(schema, "instances")
    copy = sql.SQL("""
        INSERT INTO {instances} (instance_id, kind, job_name, key, state, meta, alarm_at,
                                 created_at, updated_at)
        SELECT 'task:alarm:x-' || g, kind, job_name, 'x-' || g, state, meta, %(now)s,
               created_at, updated_at
        FROM {instances}, generate_series(1, %(n)s) AS g WHERE instance_id = %(template)s
    """).format(instances=instances)
    delete = sql.SQL("DELETE FROM {} WHERE instance_id = %s").format(instances)
    with conn.transaction():
        conn.execute(copy, {"now": time.time(), "n": n, "template": template})
        conn.execute(delete, (template,))
        conn.execute("SELECT pg_notify(%s, 'bench')", (channel_name(schema),))


def executions_ours(concurrency: int, count: int = 1) -> tuple[float, dict[str, float]]:
    with our_schema() as schema:
        template = make_template(schema)
        with (
            psycopg.connect(DSN, autocommit=True) as conn,
            our_workers(schema, count, concurrency) as workers,
        ):
            for worker in workers:
                worker.ready()
            make_due(conn, schema, template, EXEC_N)
            return watch(conn, our_count(schema), EXEC_N, workers)


def executions_procrastinate() -> tuple[float, dict[str, float]]:
    with procrastinate_db() as (app, noop, _):

        async def fill() -> None:
            async with app.open_async():
                await noop.batch_defer_async(*({"i": i} for i in range(EXEC_N)))

        asyncio.run(fill())
        with (
            psycopg.connect(PROCRASTINATE_DSN, autocommit=True) as conn,
            procrastinate_worker() as workers,
        ):
            return watch(conn, PROCRASTINATE_COUNT, EXEC_N, workers)


# -- 4. lateness ------------------------------------------------------------------------


def lateness_ours() -> list[float]:
    with our_schema() as schema, our_workers(schema) as workers:
        workers[0].ready()
        jobs = make_jobs(schema)

        async def run() -> None:
            try:
                start = time.time() + sqlite.LATE_LEAD
                await produce(jobs, sqlite_app.ALARM, late_events(start), PRODUCERS)
                await asyncio.sleep(max(0.0, start + sqlite.LATE_SPREAD - time.time()))
            finally:
                await jobs.aclose()

        asyncio.run(run())
        query = f"""SELECT state, alarm_at FROM "{schema}".instances WHERE key LIKE 'late-%'"""
        with psycopg.connect(DSN, autocommit=True) as conn:
            for _ in range(300):  # at most 30 s more
                rows = conn.execute(query).fetchall()
                if all(alarm is None for _, alarm in rows):
                    break
                time.sleep(0.1)
    values = [json.loads(state)["lateness"] for state, _ in rows]
    missing = LATE_N - sum(v is not None for v in values)
    if missing:
        raise RuntimeError(f"{missing} of {LATE_N} alarms did not run")
    return values


def lateness_procrastinate() -> list[float]:
    with tempfile.TemporaryDirectory(prefix="djbench-pg-") as directory:
        late_file = Path(directory) / "late.txt"
        with procrastinate_db() as (app, _, late), procrastinate_worker(late_file) as workers:
            workers[0].ready()
            start = time.time() + sqlite.LATE_LEAD
            dues = [event.due for _, event in late_events(start)]

            def defer(i: int) -> Any:
                due = dues[max(i, 0)]
                at = datetime.datetime.fromtimestamp(due, datetime.UTC)
                return late.configure(schedule_at=at).defer_async(due=due if i >= 0 else 0.0)

            procrastinate_defer(app, defer, LATE_N, PRODUCERS)
            time.sleep(max(0.0, start + sqlite.LATE_SPREAD - time.time()))
            for _ in range(300):  # at most 30 s more
                lines = late_file.read_text().split() if late_file.exists() else []
                if len(lines) >= LATE_N + 1:
                    break
                time.sleep(0.1)
        values = [float(v) for v in lines]
    values = [v for v in values if v < 1e6]  # the warm-up job, due at the epoch
    if len(values) < LATE_N:
        raise RuntimeError(f"{LATE_N - len(values)} of {LATE_N} Procrastinate jobs did not run")
    return values


# -- 5. scale ---------------------------------------------------------------------------


def idle_rss(start: Any) -> float:
    with start as workers:
        workers[0].ready()
        time.sleep(IDLE)
        rss: float = workers[0].rss_mib()
        return rss


def scale_ours() -> dict[str, float]:
    with our_schema() as schema:
        found = {"rss_empty": idle_rss(our_workers(schema))}
        due = time.time() + DAY
        events = [(f"s-{i}", Arm(due=due)) for i in range(SCALE)]
        found["seconds"] = produce_with(make_jobs(schema), sqlite_app.ALARM, events,
                                        SCALE_PRODUCERS)  # fmt: skip
        found["size"] = size_mib(DSN, schema)
        found["rss_full"] = idle_rss(our_workers(schema))
        return found


def scale_procrastinate() -> dict[str, float]:
    with procrastinate_db() as (app, noop, _):
        found = {"rss_empty": idle_rss(procrastinate_worker())}
        later = noop.configure(schedule_in={"days": 1})
        found["seconds"] = procrastinate_defer(app, lambda i: later.defer_async(i=i), SCALE,
                                               SCALE_PRODUCERS)  # fmt: skip
        found["size"] = size_mib(PROCRASTINATE_DSN, "public")
        found["rss_full"] = idle_rss(procrastinate_worker())
        return found


# -- the tables -------------------------------------------------------------------------


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    with psycopg.connect(DSN, autocommit=True) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections')"
        ).fetchall())  # fmt: skip
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.machine()
    )  # fmt: skip
    shown = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    return (
        f"# postgres suite — {cores} cores ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}\n# PostgreSQL {server} on this machine ({shown}, "
        f"shared_buffers in 8 KiB pages); psycopg {version('psycopg')}, psycopg-pool "
        f"{version('psycopg-pool')}, procrastinate {version('procrastinate')}\n# {load()}"
    )


class Table(sqlite.Table):
    def __init__(self) -> None:
        self.rows = []
        print(f"{'workload':<50} {'unit':<5} {'ours':>10} {'Procrast.':>10} {'ours/P':>9}  goal")


def cores(cpu: dict[str, float]) -> str:
    return (
        f"workers {cpu['workers']:.2f}, their backends {cpu['backends']:.2f}, other postgres "
        f"{cpu['postgres_other']:.2f}, machine {cpu['machine']:.2f}"
    )


def main() -> list[tuple[str, float, float | None]]:
    sqlite.quiet()
    began = time.perf_counter()
    print(machine())
    print(f"# raw psycopg, same server (bench/ceilings.py): {describe(postgres_ceilings(DSN))}")
    print(
        f"# n=: runs per median (ours/Procrastinate where they differ), the two sides "
        f"alternating; CPU in cores (of {os.cpu_count()}) from /proc; P = Procrastinate",
        flush=True,
    )
    table, notes, cpu_notes = Table(), [], []
    med = statistics.median
    runs_of = sqlite.runs_of

    for label, producers in (("1 ingest sequential", 1), (f"2 ingest, {PRODUCERS} producers", 16)):
        ours_runs, theirs_runs = [], []
        for _ in range(RUNS):
            ours_runs.append(ingest_ours(producers))
            theirs_runs.append(ingest_procrastinate(producers))
        ours, theirs = med(ours_runs), med(theirs_runs)
        name = f"{label}, {INGEST_N:,} (n={RUNS})"
        table.row(name, "/s", ours, theirs, "ours >= 5x P", ours >= 5 * theirs)
        notes.append(f"{label[:1]}: ours {runs_of(ours_runs)}; P {runs_of(theirs_runs)}")

    theirs_runs, by_c = [], {c: [] for c in EXEC_CONCURRENCY}
    for run in range(RUNS):
        if run < SLOW_RUNS:
            rate, cpu = executions_procrastinate()
            theirs_runs.append(rate)
            cpu_notes.append(f"P {rate:,.0f}/s: {cores(cpu)}")
        for concurrency, runs in by_c.items():
            rate, cpu = executions_ours(concurrency)
            runs.append((rate, cpu))
            cpu_notes.append(f"ours c={concurrency} {rate:,.0f}/s: {cores(cpu)}")
    theirs = med(theirs_runs)
    best = max(by_c, key=lambda c: med(r for r, _ in by_c[c]))
    for concurrency, label in ((DEFAULT_CONCURRENCY, "default"), (best, "best")):
        ours = med(r for r, _ in by_c[concurrency])
        name = f"3 executions, {EXEC_N:,}, c={concurrency} {label} (n={RUNS}/{SLOW_RUNS})"
        table.row(name, "/s", ours, theirs, "ours >= 5x P", ours >= 5 * theirs)
    notes.append(
        f"3: P {runs_of(theirs_runs)}; ours "
        + "; ".join(f"c={c}: {runs_of([r for r, _ in runs])}" for c, runs in by_c.items())
    )

    ours_late: list[float] = []
    theirs_late: list[float] = []
    for _ in range(SLOW_RUNS):
        theirs_late += lateness_procrastinate()
        ours_late += lateness_ours()
    ours_p, theirs_p = percentiles(ours_late), percentiles(theirs_late)
    for name, ours, theirs in zip(("p50", "p99", "max"), ours_p, theirs_p, strict=True):
        goal, met = ("p99 <= 100 ms", ours <= 100) if name == "p99" else ("", None)
        label = f"4 lateness across processes, {name} ({SLOW_RUNS}x{LATE_N:,})"
        table.row(label, "ms", ours, theirs, goal, met)

    theirs, ours = scale_procrastinate(), scale_ours()
    table.scale(SCALE, "tables + indexes", ours, theirs)
    notes.append(f"5: {SCALE_PRODUCERS} concurrent producers on both sides")
    print("# runs, per second — " + "\n# ".join(notes))
    print("# CPU during executions (first to last), cores — " + "\n#   ".join(cpu_notes))

    print(
        f"\n# ours only: {EXEC_N:,} alarms, worker processes (c={best}) started together, "
        f"n={RUNS}, one, two and three workers in turn (a run lasts about a second, and the "
        "machine's speed drifts over minutes); medians"
    )
    print(f"{'workers':<8} {'/s':>7} {'vs one':>7}  {'goal':<22}  cores: workers, their backends, "
          "other postgres, machine")  # fmt: skip
    by_count: dict[int, list[tuple[float, dict[str, float]]]] = {n: [] for n in WORKER_COUNTS}
    for _ in range(RUNS):
        for count in WORKER_COUNTS:
            by_count[count].append(executions_ours(best, count))
    one = med(r for r, _ in by_count[1])
    for count, runs in by_count.items():
        rate = med(r for r, _ in runs)
        cpu = {k: med(c[k] for _, c in runs) for k in runs[0][1]}
        goal = f"two >= 1.5x one {'met' if rate >= 1.5 * one else 'MISSED'}" if count == 2 else ""
        print(
            f"{count:<8} {rate:>7,.0f} {rate / one:>7.2f}  {goal:<22}  {cpu['workers']:.2f}, "
            f"{cpu['backends']:.2f}, {cpu['postgres_other']:.2f}, {cpu['machine']:.2f}   "
            f"(runs {runs_of([r for r, _ in runs])})",
            flush=True,
        )
    print(f"# suite took {time.perf_counter() - began:.0f} s; {load()}", flush=True)
    return table.rows


# -- profiling --------------------------------------------------------------------------

PROFILES: dict[str, Callable[[], object]] = {
    "ingest_seq": lambda: ingest_ours(1),
    "ingest_c16": lambda: ingest_ours(PRODUCERS),
    "executions": lambda: executions_ours(DEFAULT_CONCURRENCY),
}


def profile(name: str, top: int = 30) -> None:
    sqlite.quiet()
    profiler = cProfile.Profile()
    print(profiler.runcall(PROFILES[name]))
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--profile":
        profile(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--run":
        sqlite.quiet()
        print(PROFILES[sys.argv[2]]())
    else:
        main()
