"""Throughput of the in-memory runtime on one core: client calls and alarm delivery.

    python bench/memory.py                    # the table (median of RUNS runs each)
    python bench/memory.py --profile NAME     # cProfile one run of workload NAME

BENCH_N (default 20000) sets the operations per run, BENCH_RUNS (default 5) the runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import attrs
import structlog

from durable_jobs import Continuous, Debounce, Task, create_durable_jobs, every
from durable_jobs.testing import create_test_runtime

N = int(os.environ.get("BENCH_N", "20000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
GOAL = 20_000  # operations per second on one core
CONCURRENCY = 64


@attrs.frozen
class Event:
    value: int = 0


@attrs.frozen
class State:
    count: int = 0


async def nothing(*_: object) -> None:
    return None


class Watch:
    """Wall-clock and CPU seconds from creation to ``stop()``."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Watch:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return self


BATCHER = Debounce(event=Event, flush_after="1 hour", execute=nothing)
ORDERS = Task(state=State, event=Event, on_event=nothing, execute=nothing)
JOBS = {"batcher": BATCHER, "orders": ORDERS}


def keys(single: bool) -> list[str]:
    return ["one"] * N if single else [f"id-{i}" for i in range(N)]


async def calls(kind: str, single: bool) -> Watch:
    """N sequential ``add`` (Debounce) or ``send`` (Task) calls, one key or N keys."""
    jobs = create_durable_jobs(JOBS, storage="memory://")
    call = jobs.client.debounce(BATCHER).add if kind == "add" else jobs.client.task(ORDERS).send
    watch = Watch()
    for key in keys(single):
        await call(key, Event(1))
    watch.stop()
    await jobs.aclose()
    return watch


def ticker() -> tuple[Continuous[State], asyncio.Event]:
    """A Continuous job whose Nth run sets the returned event."""
    done, runs = asyncio.Event(), 0

    async def tick(_: object) -> None:
        nonlocal runs
        runs += 1
        if runs == N:
            done.set()

    return Continuous(state=State, schedule=every("1 hour"), execute=tick), done


async def alarms_worker() -> Watch:
    job, done = ticker()
    jobs = create_durable_jobs({"tick": job}, storage="memory://")
    start = jobs.client.continuous(job).start
    for i in range(N):
        await start(f"id-{i}", State())
    watch = Watch()
    async with jobs.worker(concurrency=CONCURRENCY):
        await done.wait()
        watch.stop()
    await jobs.aclose()
    return watch


async def alarms_advance() -> Watch:
    job, done = ticker()
    rt = create_test_runtime({"tick": job})
    start = rt.client.continuous(job).start
    for i in range(N):
        await start(f"id-{i}", State())
    watch = Watch()
    await rt.advance("1 minute")
    watch.stop()
    assert done.is_set(), "not every instance ran"
    await rt.aclose()
    return watch


WORKLOADS: dict[str, Callable[[], Awaitable[Watch]]] = {
    "debounce_add_spread": lambda: calls("add", single=False),
    "debounce_add_single": lambda: calls("add", single=True),
    "task_send_spread": lambda: calls("send", single=False),
    "task_send_single": lambda: calls("send", single=True),
    f"alarms_worker_c{CONCURRENCY}": alarms_worker,
    "alarms_advance": alarms_advance,
}


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Pin this process to one CPU while inside (suites run after this one get all
    of them back); keep the worker's info logs out of the table."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


def measure(name: str) -> tuple[list[float], list[float]]:
    """Operations per wall-clock second and per CPU second, one pair per run."""
    watches = [asyncio.run(WORKLOADS[name]()) for _ in range(RUNS)]
    return [N / w.wall for w in watches], [N / w.cpu for w in watches]


def main() -> list[tuple[str, float]]:
    with one_core():
        return table()


def table() -> list[tuple[str, float]]:
    print(f"# memory suite, one core — Python {sys.version}")
    print(f"# N={N} operations per run, {RUNS} runs; ops/s over wall-clock time unless noted")
    print(
        f"{'workload':<24} {'median/s':>10} {'min/s':>10} {'max/s':>10} "
        f"{'per CPU-s':>10} {'goal/s':>8}  met"
    )
    rows = []
    for name in WORKLOADS:
        rates, cpu_rates = measure(name)
        median = statistics.median(rates)
        print(
            f"{name:<24} {median:>10,.0f} {min(rates):>10,.0f} {max(rates):>10,.0f} "
            f"{statistics.median(cpu_rates):>10,.0f} {GOAL:>8,}  "
            f"{'yes' if median >= GOAL else 'NO'}",
            flush=True,
        )
        rows.append((name, median))
    return rows


def profile(name: str, top: int = 30) -> None:
    with one_core():
        asyncio.run(WORKLOADS[name]())  # warm up caches (cattrs hooks, imports)
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, WORKLOADS[name]())
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--profile":
        profile(sys.argv[2])
    else:
        main()
