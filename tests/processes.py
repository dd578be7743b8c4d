"""Running worker and producer processes of ``tests.apps.counter`` against one store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from durable_jobs import create_durable_jobs
from durable_jobs.runtime.app import DurableJobs

ROOT = Path(__file__).resolve().parent.parent

# Every process a test starts, so that teardown can reap what a failing test left.
spawned: list[subprocess.Popen[Any]] = []
# Every observing app a test makes: closed at teardown, so that no connection pool is
# left for the garbage collector (which may run on one of the pool's own threads).
observers: list[DurableJobs] = []


def reap() -> None:
    """Kill and wait for every process still running from the test that just ran."""
    while observers:
        asyncio.run(observers.pop().aclose())
    while spawned:
        process = spawned.pop()
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def app_env(
    url: str, scratch: Path, *, lease: float = 30.0, schema: str | None = None, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        **({"DJ_SCHEMA": schema} if schema else {}),
        "DURABLE_JOBS_STORAGE": url,
        "DJ_DIR": str(scratch),
        "DJ_LEASE": str(lease),
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def start_worker(env: dict[str, str], log: Path, *, concurrency: int = 8) -> subprocess.Popen[Any]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "durable_jobs.cli", "worker", "tests.apps.counter:jobs",
             "--poll-interval", "0.05", "--grace", "5", "--concurrency", str(concurrency)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    spawned.append(process)
    return process


def start_producer(env: dict[str, str], count: int, *ids: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.produce", str(count), *ids],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    spawned.append(process)
    return process


def acknowledged(producer: subprocess.Popen[str]) -> int:
    out, err = producer.communicate(timeout=120)
    assert producer.returncode == 0, err
    return int(out.strip())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def observer(url: str, **options: Any) -> DurableJobs:
    """An app over the same store, for reading what the processes did."""
    from tests.apps.counter import counter

    app = create_durable_jobs({"counter": counter}, storage=url, **options)
    observers.append(app)
    return app


@attrs.frozen
class Shared:
    """A store several processes open: its URL and PostgreSQL schema, if any."""

    url: str
    schema: str | None = None

    def env(self, scratch: Path, **options: Any) -> dict[str, str]:
        return app_env(self.url, scratch, schema=self.schema, **options)

    def client(self) -> Any:
        from tests.apps.counter import counter

        options = {"schema": self.schema} if self.schema else {}
        return observer(self.url, **options).sync_client.task(counter)
