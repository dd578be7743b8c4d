"""durable-jobs on SQLite against Huey's SqliteHuey, both with default settings.

    python bench/sqlite.py                   # the table (about 5 minutes)
    python bench/sqlite.py --profile NAME    # cProfile our side of ingest_seq or ingest_c16

Every run gets a fresh database file in its own temporary directory. Ours: WAL,
synchronous=FULL, group commit; its worker is ``durable-jobs worker sqlite_app:jobs``
in its own process. Huey: ``SqliteHuey(filename=…)`` (WAL, SQLite's default
synchronous=FULL); its consumer is ``huey_consumer sqlite_app.huey`` with default
options (one worker thread) in its own process. Runs of the two sides alternate, so
that a busy neighbour on the machine slows both alike.

Rows 1 to 3 use the asyncio client and ``async def`` handlers. The rows marked
"async client"/"sync client" and "async def"/"def" repeat the sequential ingest for each
pair of client (``jobs.client`` or ``jobs.sync_client``) and handler kind (a plain
``def`` runs in a thread), on PATHS_N calls; the row marked "def" under executions runs
``def`` handlers in the worker, whose process has no client. Huey's side is the same
plain ``def`` task, enqueued from sync code, in each case.

BENCH_RUNS (default 3) sets the runs per ingest and executions measurement,
BENCH_PATHS_N (default 5000) the calls per run of the client/handler ingest rows,
BENCH_LATE_RUNS (default 2) the lateness runs, whose samples are pooled, and
BENCH_SCALE (default 100000) the pending instances of the scale workload.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import os
import platform
import pstats
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sqlite_app  # needs this directory on sys.path, as the workers do
from ceilings import describe, sqlite_ceilings
from sqlite_app import Arm, make_huey

from durable_jobs import DurableJobs, create_durable_jobs

BENCH = Path(__file__).resolve().parent
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SCALE = int(os.environ.get("BENCH_SCALE", "100000"))
PATHS_N = int(os.environ.get("BENCH_PATHS_N", "5000"))
INGEST_N, INGEST_IDS, PRODUCERS = 20_000, 1_000, 16
EXEC_N, EXEC_CONCURRENCY, DEFAULT_CONCURRENCY = 10_000, (16, 64, 256), 16
LATE_N, LATE_SPREAD, LATE_LEAD = 1_000, 10.0, 2.0
LATE_RUNS = int(os.environ.get("BENCH_LATE_RUNS", "2"))  # samples of all runs are pooled
SETUP_PRODUCERS, SCALE_PRODUCERS = 64, 256
POLL = 0.01  # seconds between progress polls from this process
IDLE = 2.0  # seconds a worker idles before its RSS is read
DAY = 86_400.0


# -- plumbing -------------------------------------------------------------------------


@contextmanager
def fresh_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="djbench-") as directory:
        yield Path(directory)


def make_jobs(db: Path, **options: Any) -> DurableJobs:
    return create_durable_jobs(sqlite_app.JOBS, storage=f"sqlite:///{db}", **options)


def child_env(db: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DURABLE_JOBS_STORAGE": f"sqlite:///{db}",
        "HUEY_BENCH_DB": str(db),
        "PYTHONPATH": str(BENCH),
    }


class Child:
    """A worker or consumer process on ``db``; its output goes to a log file next to it."""

    def __init__(self, db: Path, argv: list[str], ready_text: str) -> None:
        self.log, self.ready_text = db.with_suffix(".log"), ready_text
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *argv],
                cwd=BENCH,
                env=child_env(db),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.proc.pid

    def ready(self, timeout: float = 30.0) -> None:
        """Wait until it has logged that it is running."""
        deadline = time.monotonic() + timeout
        while self.ready_text.encode() not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.proc.args} did not start:\n{self.log.read_text()}")
            time.sleep(0.01)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def our_worker(db: Path, concurrency: int = DEFAULT_CONCURRENCY) -> Iterator[Child]:
    argv = ["durable_jobs.cli", "worker", "sqlite_app:jobs", "--concurrency", str(concurrency)]
    child = Child(db, argv, "durable-jobs worker:")
    try:
        yield child
    finally:
        child.stop()


@contextmanager
def huey_consumer(db: Path) -> Iterator[Child]:
    child = Child(db, ["huey.bin.huey_consumer", "sqlite_app.huey"], "consumer started")
    try:
        yield child
    finally:
        child.stop()


def size_mib(db: Path) -> float:
    files = (db, Path(f"{db}-wal"))
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


@contextmanager
def remaining_alarms(db: Path) -> Iterator[Callable[[], int]]:
    """Counts our instances whose alarm has not run yet, through a read-only connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
    sql = "SELECT count(*) FROM instances WHERE alarm_at IS NOT NULL"
    try:
        yield lambda: int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def watch(
    remaining: Callable[[], int],
    total: int,
    timeout: float,
    *,
    poll: float = POLL,
    started: Callable[[], object] = lambda: None,
) -> float:
    """Executions per second from the first execution seen (when ``started`` is
    called) to the last one."""
    deadline = time.perf_counter() + timeout
    first: tuple[float, int] | None = None
    while True:
        left, now = remaining(), time.perf_counter()
        if first is None and left < total:
            first = (now, left)
            started()
        if left == 0:
            break
        if now > deadline:
            raise RuntimeError(f"{left} of {total} still pending after {timeout}s")
        time.sleep(poll)
    assert first is not None
    return first[1] / (now - first[0]) if now > first[0] else float("nan")


async def produce(
    jobs: DurableJobs, job: Any, events: list[tuple[str, Arm]], producers: int
) -> float:
    """Send ``events`` from ``producers`` concurrent tasks; returns the seconds it took."""
    send = jobs.client.task(job).send
    await send("warm-up", Arm())  # opens the store, makes the runtime and writer thread

    async def producer(first: int) -> None:
        for key, event in events[first::producers]:
            await send(key, event)

    started = time.perf_counter()
    await asyncio.gather(*(producer(k) for k in range(producers)))
    return time.perf_counter() - started


def produce_with(jobs: DurableJobs, job: Any, events: list[tuple[str, Arm]], n: int) -> float:
    """``produce`` in a fresh event loop, closing ``jobs`` afterwards."""

    async def run() -> float:
        try:
            return await produce(jobs, job, events, n)
        finally:
            await jobs.aclose()

    return asyncio.run(run())


def produce_sync(jobs: DurableJobs, job: Any, events: list[tuple[str, Arm]]) -> float:
    """``produce`` of one producer through ``jobs.sync_client``, from code without a
    loop; closes ``jobs`` afterwards."""
    send = jobs.sync_client.task(job).send
    send("warm-up", Arm())
    started = time.perf_counter()
    for key, event in events:
        send(key, event)
    seconds = time.perf_counter() - started
    close_sync(jobs)
    return seconds


def close_sync(jobs: DurableJobs) -> None:
    """Close ``jobs`` after calls through its sync client only."""
    asyncio.run(jobs.aclose())


def huey_produce(call: Callable[[int], object], n: int, threads: int) -> float:
    """``call(i)`` for ``i`` in ``range(n)`` from ``threads`` threads; returns the seconds."""
    call(-1)  # warm-up: opens the connection
    if threads == 1:
        started = time.perf_counter()
        for i in range(n):
            call(i)
        return time.perf_counter() - started
    barrier = threading.Barrier(threads + 1)

    def producer(first: int) -> None:
        barrier.wait()
        for i in range(first, n, threads):
            call(i)

    workers = [threading.Thread(target=producer, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max, in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    return statistics.median(ms), statistics.quantiles(ms, n=100)[98], ms[-1]


# -- 1, 2. ingest ---------------------------------------------------------------------


def ingest_ours(producers: int) -> float:
    events = [(f"id-{i % INGEST_IDS}", Arm()) for i in range(INGEST_N)]
    with fresh_dir() as directory:
        jobs = make_jobs(directory / "jobs.db")
        return INGEST_N / produce_with(jobs, sqlite_app.INGEST, events, producers)


def ingest_huey(threads: int, n: int = INGEST_N) -> float:
    with fresh_dir() as directory:
        _, noop, _ = make_huey(str(directory / "huey.db"))
        return n / huey_produce(noop, n, threads)


# Sequential ingest for each pair of client and handler kind: (client, handler) -> job.
PATHS = {
    ("async", "async def"): sqlite_app.INGEST,
    ("async", "def"): sqlite_app.INGEST_DEF,
    ("sync", "async def"): sqlite_app.INGEST,
    ("sync", "def"): sqlite_app.INGEST_DEF,
}


def ingest_path(client: str, handler: str) -> float:
    events = [(f"id-{i % INGEST_IDS}", Arm()) for i in range(PATHS_N)]
    job = PATHS[client, handler]
    with fresh_dir() as directory:
        jobs = make_jobs(directory / "jobs.db")
        if client == "sync":
            return PATHS_N / produce_sync(jobs, job, events)
        return PATHS_N / produce_with(jobs, job, events, 1)


# -- 3. executions --------------------------------------------------------------------


def executions_ours(concurrency: int, job: Any = sqlite_app.ALARM) -> float:
    with fresh_dir() as directory:
        db = directory / "jobs.db"
        # Setting up is not measured: NORMAL spares its fsyncs (the file is the same).
        jobs = make_jobs(db, synchronous="NORMAL")
        events = [(f"x-{i}", Arm()) for i in range(EXEC_N)]
        produce_with(jobs, job, events, SETUP_PRODUCERS)
        with remaining_alarms(db) as remaining, our_worker(db, concurrency):
            return watch(remaining, EXEC_N + 1, timeout=300)  # + the warm-up instance


def executions_huey() -> float:
    with fresh_dir() as directory:
        db = directory / "huey.db"
        huey, noop, _ = make_huey(str(db), fsync=False)  # setting up is not measured
        for i in range(EXEC_N):
            noop(i)
        with huey_consumer(db):
            return watch(huey.pending_count, EXEC_N, timeout=300)


# -- 4. lateness ----------------------------------------------------------------------


def late_events(start: float) -> list[tuple[str, Arm]]:
    step = LATE_SPREAD / LATE_N
    return [(f"late-{i}", Arm(due=start + i * step, track=True)) for i in range(LATE_N)]


def lateness_of(db: Path) -> list[float]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT state FROM instances WHERE key LIKE 'late-%'").fetchall()
    finally:
        conn.close()
    values = [json.loads(state)["lateness"] for (state,) in rows]
    missing = LATE_N - sum(v is not None for v in values)
    if missing:
        raise RuntimeError(f"{missing} of {LATE_N} alarms did not run")
    return values


async def set_alarms_and_wait(jobs: DurableJobs, db: Path) -> None:
    start = time.time() + LATE_LEAD
    await produce(jobs, sqlite_app.ALARM, late_events(start), PRODUCERS)
    await asyncio.sleep(max(0.0, start + LATE_SPREAD - time.time()))
    with remaining_alarms(db) as remaining:
        for _ in range(300):  # at most 30 s more
            if not await asyncio.to_thread(remaining):
                break
            await asyncio.sleep(0.1)


def lateness_ours_in_process() -> list[float]:
    with fresh_dir() as directory:
        db = directory / "jobs.db"
        jobs = make_jobs(db)

        async def run() -> None:
            try:
                async with jobs.worker():
                    await set_alarms_and_wait(jobs, db)
            finally:
                await jobs.aclose()

        asyncio.run(run())
        return lateness_of(db)


def lateness_ours_across_processes() -> list[float]:
    with fresh_dir() as directory:
        db = directory / "jobs.db"
        jobs = make_jobs(db)

        async def run() -> None:
            try:
                await set_alarms_and_wait(jobs, db)
            finally:
                await jobs.aclose()

        with our_worker(db) as worker:
            worker.ready()
            asyncio.run(run())
        return lateness_of(db)


def lateness_huey() -> list[float]:
    with fresh_dir() as directory:
        db = directory / "huey.db"
        huey, _, late = make_huey(str(db))
        with huey_consumer(db) as consumer:
            consumer.ready()
            start = time.time() + LATE_LEAD
            results = [
                late.schedule((event.due,), delay=event.due - time.time())
                for _, event in late_events(start)
            ]
            time.sleep(max(0.0, start + LATE_SPREAD - time.time()))
            deadline = time.monotonic() + 30
            while huey.result_count() < LATE_N and time.monotonic() < deadline:
                time.sleep(0.1)
        values = [result.get() for result in results]
        if None in values:
            raise RuntimeError(f"{values.count(None)} of {LATE_N} Huey tasks did not run")
        return values


LATENESS = (lateness_huey, lateness_ours_in_process, lateness_ours_across_processes)


# -- 5. scale -------------------------------------------------------------------------


def idle_rss(start: Callable[[Path], Any], db: Path) -> float:
    with start(db) as child:
        child.ready()
        time.sleep(IDLE)
        rss: float = child.rss_mib()
        return rss


def scale_ours() -> dict[str, float]:
    with fresh_dir() as directory:
        empty, db = directory / "empty.db", directory / "jobs.db"
        found = {"rss_empty": idle_rss(our_worker, empty)}
        due = time.time() + DAY
        events = [(f"s-{i}", Arm(due=due)) for i in range(SCALE)]
        found["seconds"] = produce_with(make_jobs(db), sqlite_app.ALARM, events, SCALE_PRODUCERS)
        found["size"] = size_mib(db)
        found["rss_full"] = idle_rss(our_worker, db)
        return found


def scale_huey() -> dict[str, float]:
    with fresh_dir() as directory:
        empty, db, ready = directory / "empty.db", directory / "huey.db", directory / "ready.db"
        make_huey(str(empty))
        found = {"rss_empty": idle_rss(huey_consumer, empty)}
        huey, noop, _ = make_huey(str(db))
        schedule = lambda i: noop.schedule((i,), delay=DAY)  # noqa: E731
        found["seconds"] = huey_produce(schedule, SCALE, PRODUCERS)
        huey.storage.close()  # the last connection to close folds the WAL into the file
        found["size"] = size_mib(db)
        # Huey's consumer would now move each task from its queue to its schedule table,
        # two more fsynced transactions per task (minutes). For the idle consumer, fill
        # another file's schedule table directly, without fsyncs: the state it would reach.
        huey, noop, _ = make_huey(str(ready), fsync=False)
        for i in range(SCALE):
            huey.add_schedule(noop.s(i, delay=DAY))
        found["scheduled"] = huey.scheduled_count()
        found["rss_full"] = idle_rss(huey_consumer, ready)
        return found


# -- the table ------------------------------------------------------------------------


def fsync_ms() -> float:
    with fresh_dir() as directory:
        fd = os.open(directory / "probe", os.O_WRONLY | os.O_CREAT)
        try:
            times = []
            for _ in range(200):
                os.write(fd, b"x" * 4096)
                started = time.perf_counter()
                os.fdatasync(fd)
                times.append(time.perf_counter() - started)
        finally:
            os.close(fd)
        return statistics.median(times) * 1000


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"# sqlite suite — {cores} cores, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"huey {version('huey')}\n# files in {tempfile.gettempdir()}: 4 KiB append + "
        f"fdatasync {fsync_ms():.2f} ms (median of 200); {load()}"
    )


def load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float | None]] = []
        print(f"{'workload':<50} {'unit':<5} {'ours':>10} {'Huey':>10} {'ours/Huey':>9}  goal")

    def row(
        self,
        name: str,
        unit: str,
        ours: float,
        huey: float | None,
        goal: str = "",
        met: bool | None = None,
    ) -> None:
        fmt = ",.0f" if unit == "/s" else ",.1f"
        theirs = "-" if huey is None else f"{huey:{fmt}}"
        ratio = f"{ours / huey:.2f}" if huey else "-"
        verdict = "" if met is None else ("  met" if met else "  MISSED")
        print(
            f"{name:<50} {unit:<5} {ours:>10{fmt}} {theirs:>10} {ratio:>9}  {goal}{verdict}",
            flush=True,
        )
        self.rows.append((name, ours, huey))

    def scale(
        self, count: int, size: str, ours: dict[str, float], theirs: dict[str, float]
    ) -> None:
        """The rows of the scale workload: ``count`` pending, ``size`` naming what was measured."""
        self.row(f"5 scale: create {count:,} pending", "s", ours["seconds"], theirs["seconds"])
        self.row(f"5 scale: create {count:,} pending", "/s", count / ours["seconds"],
                 count / theirs["seconds"])  # fmt: skip
        self.row(f"5 scale: {size}", "MiB", ours["size"], theirs["size"])
        self.row("5 scale: idle worker RSS, 0 pending", "MiB", ours["rss_empty"],
                 theirs["rss_empty"])  # fmt: skip
        self.row(f"5 scale: idle worker RSS, {count:,} pending", "MiB", ours["rss_full"],
                 theirs["rss_full"], "flat", ours["rss_full"] - ours["rss_empty"] < 2)  # fmt: skip


def paths(table: Table) -> str:
    """The sequential ingest rows of each client and handler kind; returns their note."""
    by_path: dict[tuple[str, str], list[float]] = {path: [] for path in PATHS}
    huey_runs = []
    for _ in range(RUNS):
        huey_runs.append(ingest_huey(1, PATHS_N))
        for (client, handler), runs in by_path.items():
            runs.append(ingest_path(client, handler))
    huey = statistics.median(huey_runs)
    for (client, handler), runs in by_path.items():
        ours = statistics.median(runs)
        name = f"1 ingest seq, {client} client, {handler}, {PATHS_N:,} (n={RUNS})"
        table.row(name, "/s", ours, huey, "ours >= Huey", ours >= huey)
    return f"1 by client, handler: Huey {runs_of(huey_runs)}; " + "; ".join(
        f"{client} {handler}: {runs_of(runs)}" for (client, handler), runs in by_path.items()
    )


def runs_of(values: list[float], fmt: str = ",.0f") -> str:
    return ", ".join(f"{v:{fmt}}" for v in values)


def quiet() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main() -> list[tuple[str, float, float | None]]:
    quiet()
    began = time.perf_counter()
    print(machine())
    print(f"# raw sqlite3 on the same disk (bench/ceilings.py): {describe(sqlite_ceilings())}")
    print(f"# n={RUNS}: median of {RUNS} runs, ours and Huey alternating", flush=True)
    table, notes = Table(), []
    med = statistics.median

    for label, ours_producers, goal, factor in (
        (f"1 ingest sequential, {INGEST_N:,} (n={RUNS})", 1, "ours >= Huey", 1),
        (
            f"2 ingest, {PRODUCERS} producers, {INGEST_N:,} (n={RUNS})",
            PRODUCERS,
            "ours >= 5x Huey",
            5,
        ),
    ):
        ours_runs, huey_runs = [], []
        for _ in range(RUNS):
            ours_runs.append(ingest_ours(ours_producers))
            huey_runs.append(ingest_huey(ours_producers))
        ours, huey = med(ours_runs), med(huey_runs)
        table.row(label, "/s", ours, huey, goal, ours >= factor * huey)
        notes.append(f"{label[:1]}: ours {runs_of(ours_runs)}; Huey {runs_of(huey_runs)}")
    notes.append(paths(table))

    huey_runs, by_c, def_runs = [], {c: [] for c in EXEC_CONCURRENCY}, []
    for _ in range(RUNS):
        huey_runs.append(executions_huey())
        for concurrency, runs in by_c.items():
            runs.append(executions_ours(concurrency))
        def_runs.append(executions_ours(DEFAULT_CONCURRENCY, sqlite_app.ALARM_DEF))
    huey = med(huey_runs)
    best = max(by_c, key=lambda c: med(by_c[c]))
    for concurrency, label in ((DEFAULT_CONCURRENCY, "default"), (best, "best")):
        ours = med(by_c[concurrency])
        name = f"3 executions, {EXEC_N:,}, worker c={concurrency} {label} (n={RUNS})"
        table.row(name, "/s", ours, huey, "ours >= 3x Huey", ours >= 3 * huey)
    ours = med(def_runs)
    name = f"3 executions, {EXEC_N:,}, c={DEFAULT_CONCURRENCY}, def (n={RUNS})"
    table.row(name, "/s", ours, huey, "ours >= 3x Huey", ours >= 3 * huey)
    notes.append(
        f"3: Huey {runs_of(huey_runs)}; ours "
        + "; ".join(f"c={c}: {runs_of(runs)}" for c, runs in by_c.items())
        + f"; c={DEFAULT_CONCURRENCY} def: {runs_of(def_runs)}"
    )

    samples: dict[str, list[float]] = {"Huey": [], "in-process": [], "across processes": []}
    p99s: dict[str, list[float]] = {name: [] for name in samples}
    for _ in range(LATE_RUNS):
        for name, measure in zip(samples, LATENESS, strict=True):
            values = measure()
            samples[name] += values
            p99s[name].append(percentiles(values)[1])
    huey_late = percentiles(samples["Huey"])
    for label, limit in (("in-process", 20), ("across processes", 300)):
        ours_late = percentiles(samples[label])
        for name, ours, huey in zip(("p50", "p99", "max"), ours_late, huey_late, strict=True):
            goal, met = (f"p99 <= {limit} ms", ours <= limit) if name == "p99" else ("", None)
            table.row(f"4 lateness {label}, {name} ({LATE_RUNS}x{LATE_N:,})", "ms", ours, huey,
                      goal, met)  # fmt: skip
    notes.append(
        "4: p99 of each run, ms — "
        + "; ".join(f"{name} {runs_of(values, ',.1f')}" for name, values in p99s.items())
    )

    ours, huey = scale_ours(), scale_huey()
    table.scale(SCALE, "database file + WAL", ours, huey)
    notes.append(
        f"5: ours {SCALE_PRODUCERS} concurrent producers; Huey {PRODUCERS} threads calling "
        f"schedule(delay=86400), idle consumer over {huey['scheduled']:,.0f} scheduled tasks"
    )
    print("# runs, per second — " + "\n# ".join(notes))
    print(f"# suite took {time.perf_counter() - began:.0f} s; {load()}", flush=True)
    return table.rows


# -- profiling ------------------------------------------------------------------------

PROFILES: dict[str, Callable[[], float]] = {
    "ingest_seq": lambda: ingest_ours(1),
    "ingest_c16": lambda: ingest_ours(PRODUCERS),
}


def profile(name: str, top: int = 30) -> None:
    quiet()
    profiler = cProfile.Profile()
    profiler.runcall(PROFILES[name])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--profile":
        profile(sys.argv[2])
    else:
        main()
