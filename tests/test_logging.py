"""Logging goes through the standard ``logging`` module: the application's setup decides."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import tenacity

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Retry,
    StorageError,
    Task,
    TaskContext,
    every,
)
from durable_jobs.adapters.retry import StorageRetry
from durable_jobs.adapters.sqlite import SQLiteStore
from durable_jobs.logs import Outage, configure_cli, get_logger
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.testing import create_test_runtime
from tests.support import T0, types

ROOT = "durable_jobs"


@attrs.frozen
class Ping:
    n: int = 0


def fails(ctx: ContinuousContext[Ping]) -> None:
    raise RuntimeError("boom")


def logs_everything(ctx: ContinuousContext[Ping]) -> None:
    ctx.log.debug("user.debug")
    ctx.log.critical("user.critical")


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The library's logger, its level put back afterwards."""
    logger = logging.getLogger(ROOT)
    level = logger.level
    yield logger
    logger.setLevel(level)


@contextlib.contextmanager
def kept(logger: logging.Logger) -> Iterator[list[logging.LogRecord]]:
    handler = Keep()
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def events(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    return [(r.levelname, getattr(r, "event", "")) for r in records]


async def run_once(job: Continuous[Any], name: str = "job") -> list[str]:
    rt = create_test_runtime({name: job})
    await rt.client.continuous(job).start("a", Ping())
    await rt.advance(0)
    await rt.aclose()
    return types(rt.events)


async def test_a_level_set_on_the_library_logger_silences_a_failing_job(
    root: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    root.setLevel(logging.CRITICAL)
    telemetry = await run_once(Continuous(state=Ping, schedule=every(60), execute=fails))
    assert "job.failed" in telemetry
    assert [r for r in caplog.records if r.name.startswith(ROOT)] == []


async def test_a_failure_reaches_a_handler_of_the_library_logger_with_its_exception(
    root: logging.Logger,
) -> None:
    job = Continuous(state=Ping, schedule=every(60), execute=fails)
    with kept(root) as records:
        await run_once(job, "flaky")
    [failed] = records
    assert (failed.name, failed.levelno, failed.event) == (  # type: ignore[attr-defined]
        "durable_jobs.job.flaky",
        logging.ERROR,
        "job.failed",
    )
    assert failed.exc_info is not None
    assert isinstance(failed.exc_info[1], RuntimeError)
    assert str(failed.exc_info[1]) == "boom"
    assert failed.instance_id == "continuous:flaky:a"  # type: ignore[attr-defined]
    assert failed.msg == "job.failed %s"  # one template per event, to group records by
    message = failed.getMessage()
    assert message.startswith("job.failed job_name=flaky job_type=continuous ")
    assert "error='RuntimeError: boom'" in message


async def test_a_dead_letter_is_logged_with_its_exception(root: logging.Logger) -> None:
    job = Continuous(state=Ping, schedule=every(60), execute=fails, retry=Retry(max_attempts=1))
    with kept(root) as records:
        await run_once(job)
    assert events(records) == [("ERROR", "job.failed"), ("ERROR", "job.retry_exhausted")]
    exhausted = records[1].exc_info
    assert exhausted is not None
    assert isinstance(exhausted[1], RuntimeError)


async def test_a_job_with_logging_none_is_silent(root: logging.Logger) -> None:
    root.setLevel(logging.DEBUG)
    with kept(root) as records:
        await run_once(Continuous(state=Ping, schedule=every(60), execute=fails, logging=None))
    assert [r for r in records if r.name == "durable_jobs.job.job"] == []


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, ["user.debug", "user.critical", "job.executed"]),
        (logging.INFO, ["user.critical"]),  # the application's level comes first
    ],
)
async def test_logging_true_lets_debug_through_where_the_library_logger_allows(
    root: logging.Logger, level: int, expected: list[str]
) -> None:
    root.setLevel(level)
    job = Continuous(state=Ping, schedule=every(60), execute=logs_everything, logging=True)
    with kept(root) as records:
        await run_once(job)
    assert [r.event for r in records if r.name == "durable_jobs.job.job"] == expected  # type: ignore[attr-defined]


async def test_a_job_logs_the_time_of_the_fake_clock(root: logging.Logger) -> None:
    job = Continuous(state=Ping, schedule=every("1 hour"), execute=fails)
    rt = create_test_runtime({"hourly": job}, now=T0)
    with kept(root) as records:
        await rt.client.continuous(job).start("a", Ping())
        await rt.advance("1 hour")
    await rt.aclose()
    later = (T0 + timedelta(hours=1)).isoformat()
    assert [r.timestamp for r in records] == [T0.isoformat(), later]  # type: ignore[attr-defined]
    assert records[-1].getMessage().endswith(f" timestamp={later}")


def test_fields_named_like_record_attributes_are_kept_apart(root: logging.Logger) -> None:
    with kept(root) as records:
        get_logger("durable_jobs.test").error("user.error", name="bob", msg="hi")
        get_logger("durable_jobs.test").error("user.100%")
    named, bare = records
    assert (named.name, named.name_, named.msg_) == ("durable_jobs.test", "bob", "hi")  # type: ignore[attr-defined]
    assert named.getMessage() == "user.error name=bob msg=hi"
    assert bare.getMessage() == "user.100%"


# -- one outage, one warning -------------------------------------------------------


class Down(Exception):
    pass


class Flaky:
    """A call that fails ``times`` times in a row, then works."""

    def __init__(self, times: int) -> None:
        self.left = times

    def __call__(self) -> str:
        if self.left:
            self.left -= 1
            raise Down("server closed the connection")
        return "ok"


def test_a_storage_failing_many_times_in_a_row_logs_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ROOT)
    retry = StorageRetry(stop=tenacity.stop_after_attempt(5), wait=tenacity.wait_none())
    flaky = Flaky(18)
    for _ in range(3):  # each call tries 6 times: once, then 5 retries
        with pytest.raises(StorageError, match="claim failed after retries"):
            retry.call("claim", flaky, (Down,))
    assert retry.call("claim", flaky, (Down,)) == "ok"
    assert retry.call("claim", flaky, (Down,)) == "ok"
    records = [r for r in caplog.records if r.name == "durable_jobs.storage"]
    assert events(records) == [("WARNING", "storage.unavailable"), ("INFO", "storage.recovered")]
    assert records[0].source == "claim"  # type: ignore[attr-defined]
    assert records[1].faults == 12  # type: ignore[attr-defined]  (the 4 retried a call)


async def test_an_async_storage_call_reports_to_the_same_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ROOT)
    retry = StorageRetry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none())
    flaky = Flaky(6)  # the sync call's 4 tries fail, and the async call's first 2

    async def call() -> str:
        return flaky()

    with pytest.raises(StorageError):
        retry.call("read", flaky, (Down,))
    assert await retry.acall("read", call, (Down,)) == "ok"
    assert events(caplog.records) == [
        ("WARNING", "storage.unavailable"),
        ("INFO", "storage.recovered"),
    ]


def test_an_outage_ends_when_something_that_failed_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ROOT)
    outage = Outage(get_logger("durable_jobs.storage"))
    outage.failed("claim", error="locked")
    outage.failed("listen", error="refused")
    outage.succeeded("read")  # it never failed: reads may work while writes cannot
    outage.failed("claim", error="locked")
    outage.succeeded("listen")
    outage.failed("listen", error="refused")  # a second outage
    assert events(caplog.records) == [
        ("WARNING", "storage.unavailable"),
        ("INFO", "storage.recovered"),
        ("WARNING", "storage.unavailable"),
    ]
    assert caplog.records[1].faults == 3  # type: ignore[attr-defined]


@attrs.frozen
class Note:
    text: str


@attrs.frozen
class Notes:
    seen: int = 0


async def due_now(event: Note, ctx: TaskContext[Notes]) -> None:
    ctx.schedule(ctx.now)


@contextlib.contextmanager
def counting(event: str, at_least: int) -> Iterator[asyncio.Event]:
    """An event set once ``event`` has been logged ``at_least`` times."""
    seen, loop, count = asyncio.Event(), asyncio.get_running_loop(), [0]

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "event", None) == event:
                count[0] += 1
                if count[0] == at_least:
                    loop.call_soon_threadsafe(seen.set)

    handler = Count()
    logging.getLogger(ROOT).addHandler(handler)
    try:
        yield seen
    finally:
        logging.getLogger(ROOT).removeHandler(handler)


@pytest.mark.timeout(60)
async def test_a_worker_locked_out_of_its_database_logs_one_warning(
    tmp_path: Path, root: logging.Logger
) -> None:
    path = tmp_path / "locked.db"
    retry = StorageRetry(stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_none())
    store = SQLiteStore(str(path), busy_timeout=0, retry=retry)
    ran = asyncio.Event()

    async def execute(ctx: TaskContext[Notes]) -> None:
        ran.set()

    job = Task(state=Notes, event=Note, on_event=due_now, execute=execute)
    app = DurableJobs({"notes": job}, storage=(store, store))
    await app.client.task(job).send("a", Note("a"))
    root.setLevel(logging.DEBUG)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with kept(root) as records, counting("worker.claim_failed", 5) as failed_often:
        async with app.worker(poll_interval=60):
            await asyncio.wait_for(failed_often.wait(), 10)
            locker.execute("ROLLBACK")
            await asyncio.wait_for(ran.wait(), 10)
    locker.close()
    await app.aclose()
    loud = [(level, event) for level, event in events(records) if level != "DEBUG"]
    assert ("WARNING", "storage.unavailable") in loud
    assert [e for e in loud if e[0] in ("WARNING", "ERROR")] == [("WARNING", "storage.unavailable")]
    assert ("INFO", "storage.recovered") in loud


def test_the_cli_sets_the_library_level_when_told(root: logging.Logger) -> None:
    configure_cli("debug")
    assert root.level == logging.DEBUG
    with pytest.raises(SystemExit, match="unknown log level 'loud'"):
        configure_cli("loud")
