"""SQLite-specific guarantees: durability across reopen, storage faults, schema drift."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import tenacity

from durable_jobs import StorageError, Task, TaskContext, ValidationError, create_durable_jobs
from durable_jobs.adapters.retry import StorageRetry
from durable_jobs.adapters.sqlite import SQLiteStore
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.testing import create_test_runtime
from tests.support import captured_logs


@attrs.frozen
class Note:
    text: str


@attrs.frozen
class Notes:
    texts: tuple[str, ...] = ()


async def remember(event: Note, ctx: TaskContext[Notes]) -> None:
    notes = ctx.state or Notes()
    ctx.set_state(Notes((*notes.texts, event.text)))
    ctx.schedule("1 hour")


async def nothing(ctx: TaskContext[Notes]) -> None:
    return None


notes = Task(state=Notes, event=Note, on_event=remember, execute=nothing)


def app_on(path: Path, **options: object) -> DurableJobs:
    store = SQLiteStore(str(path), **options)  # type: ignore[arg-type]
    return DurableJobs({"notes": notes}, storage=(store, store))


async def test_state_and_alarm_survive_closing_and_reopening(tmp_path: Path) -> None:
    rt = create_test_runtime({"notes": notes}, storage=f"sqlite:///{tmp_path / 'j.db'}")
    sent = await rt.client.task(notes).send("a", Note("hello"))
    await rt.aclose()

    reopened = create_durable_jobs({"notes": notes}, storage=f"sqlite:///{tmp_path / 'j.db'}")
    state = await reopened.client.task(notes).get_state("a")
    await reopened.aclose()
    assert state.state == Notes(("hello",))
    assert state.scheduled_at == sent.scheduled_at is not None


async def test_disk_full_raises_storage_error_and_keeps_the_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    app = app_on(path)
    await app.client.task(notes).send("a", Note("small"))
    await app.aclose()
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]

    full = app_on(path, pragmas={"max_page_count": pages + 2})
    with pytest.raises(StorageError, match="full"):
        await full.client.task(notes).send("a", Note("x" * 200_000))
    state = await full.client.task(notes).get_state("a")
    await full.aclose()
    assert state.state == Notes(("small",))
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_lock_kept_past_the_busy_timeout_is_a_retryable_storage_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    quick = StorageRetry(stop=tenacity.stop_after_attempt(3))
    app = app_on(path, busy_timeout=0.05, retry=quick)
    await app.client.task(notes).send("a", Note("before"))

    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageError) as raised:
        await app.client.task(notes).send("a", Note("during"))
    assert raised.value.retryable
    blocker.execute("ROLLBACK")

    await app.client.task(notes).send("a", Note("after"))
    state = await app.client.task(notes).get_state("a")
    await app.aclose()
    assert state.state == Notes(("before", "after"))


@attrs.frozen
class NotesV2:
    texts: tuple[str, ...]
    owner: str  # a new required field: old states no longer fit


async def test_stored_state_that_no_longer_fits_is_reported_and_left_on_disk(
    tmp_path: Path,
) -> None:
    path = tmp_path / "drift.db"
    app = app_on(path)
    await app.client.task(notes).send("a", Note("kept"))
    await app.aclose()
    before = sqlite3.connect(path).execute("SELECT state FROM instances").fetchone()

    changed = Task(state=NotesV2, event=Note, on_event=remember, execute=nothing)
    store = SQLiteStore(str(path))
    drifted = DurableJobs({"notes": changed}, storage=(store, store))
    with pytest.raises(ValidationError, match="owner"):
        await drifted.client.task(changed).get_state("a")
    with pytest.raises(ValidationError, match="owner"):
        await drifted.client.task(changed).send("a", Note("more"))
    await drifted.aclose()
    assert sqlite3.connect(path).execute("SELECT state FROM instances").fetchone() == before


async def test_default_storage_is_sqlite_overridable_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    default = create_durable_jobs({"notes": notes})
    assert default.storage_url == "sqlite:///durable_jobs.db"
    monkeypatch.setenv("DURABLE_JOBS_STORAGE", "memory://")
    assert create_durable_jobs({"notes": notes}).storage_url == "memory://"


async def test_an_sqlite_library_without_upserts_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 22, 0))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.22.0")
    store = SQLiteStore(str(tmp_path / "old.db"))
    with pytest.raises(StorageError, match=r"SQLite 3\.22\.0 is too old.*3\.24\.0 or newer"):
        await store.open()
    assert not (tmp_path / "old.db").exists()


def test_synchronous_level_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(str(tmp_path / "x.db"), synchronous="SOMETIMES")


async def test_alarm_times_are_stored_in_utc_epoch_seconds(tmp_path: Path) -> None:
    rt = create_test_runtime(
        {"notes": notes},
        now=datetime(2026, 6, 1, 12, tzinfo=UTC),
        storage=f"sqlite:///{tmp_path / 't.db'}",
    )
    await rt.client.task(notes).send("a", Note("x"))
    await rt.aclose()
    (alarm,) = (
        sqlite3.connect(tmp_path / "t.db").execute("SELECT alarm_at FROM instances").fetchone()
    )
    assert alarm == datetime(2026, 6, 1, 13, tzinfo=UTC).timestamp()


async def test_a_commit_by_another_process_between_waits_wakes_the_next_wait(
    tmp_path: Path,
) -> None:
    from durable_jobs.adapters.records import Commit
    from durable_jobs.testing.conformance import LEASE, T0, record

    waiter, writer = SQLiteStore(str(tmp_path / "w.db")), SQLiteStore(str(tmp_path / "w.db"))
    await waiter.open()
    await writer.open()
    claim = await writer.claim("task:job:a", "other", T0, T0 + LEASE)
    assert claim is not None
    # The other store commits while nobody waits, as while a worker is claiming.
    assert await writer.commit(Commit(claim=claim, record=record(alarm_at=T0)))
    await asyncio.wait_for(waiter.wait_for_alarm(60), 5)  # not the 60 s
    await waiter.close()
    await writer.close()


def _send_in_child(app: DurableJobs) -> None:
    asyncio.run(app.client.task(notes).send("a", Note("from the child")))


# Python 3.12+ warns that forking a threaded process may deadlock; this test forks
# a process with a writer thread on purpose.
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
async def test_a_forked_child_uses_connections_of_its_own(tmp_path: Path) -> None:
    import multiprocessing

    app = app_on(tmp_path / "fork.db")
    await app.client.task(notes).send("a", Note("from the parent"))  # connections exist
    child = multiprocessing.get_context("fork").Process(target=_send_in_child, args=(app,))
    child.start()
    await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 0
    await app.client.task(notes).send("a", Note("parent again"))
    state = await app.client.task(notes).get_state("a")
    await app.aclose()
    assert state.state == Notes(("from the parent", "from the child", "parent again"))


def damage_alarm(path: Path, key: str, value: object) -> None:
    """Overwrite an instance's alarm with plain sqlite3, as a tool or a bad disk could."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE instances SET alarm_at = ? WHERE key = ?", (value, key))
    conn.close()


def counting_runs(ran: list[str]) -> Task[Notes, Note]:
    async def execute(ctx: TaskContext[Notes]) -> None:
        ran.append(ctx.id)

    return Task(state=Notes, event=Note, on_event=remember, execute=execute)


# Text SQLite cannot read as a number, one Python can ("1_000"), and a blob.
DAMAGED = ["x", "1_000", b"\x01"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", DAMAGED, ids=["text", "python-number", "blob"])
async def test_a_damaged_alarm_is_reported_once_and_never_stops_the_others(
    tmp_path: Path, damage: object
) -> None:
    path = tmp_path / "d.db"
    ran: list[str] = []
    job = counting_runs(ran)
    rt = create_test_runtime({"notes": job}, storage=f"sqlite:///{path}")
    for key in ("a", "bad", "c"):
        await rt.client.task(job).send(key, Note(key))
    damage_alarm(path, "bad", damage)
    with captured_logs() as logs:
        delivered = await rt.advance("2 hours")
        await rt.client.task(job).send("d", Note("d"))
        delivered += await rt.advance("2 hours")
    await rt.aclose()
    assert (delivered, ran) == (3, ["a", "c", "d"])
    assert [(e["event"], e["instance_id"]) for e in logs if e["log_level"] == "error"] == [
        ("storage.damaged_row", "task:notes:bad")
    ]


@contextlib.contextmanager
def noticing(event: str) -> Iterator[asyncio.Event]:
    """An event set once ``event`` is logged (on this thread's loop)."""
    seen = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Notice(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "event", None) == event:
                loop.call_soon_threadsafe(seen.set)

    logger = logging.getLogger("durable_jobs")
    handler = Notice()
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


async def due_now(event: Note, ctx: TaskContext[Notes]) -> None:
    ctx.schedule(ctx.now)


@pytest.mark.timeout(60)
async def test_a_worker_goes_on_past_a_damaged_alarm(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    ran = asyncio.Event()

    async def execute(ctx: TaskContext[Notes]) -> None:
        ran.set()

    job = Task(state=Notes, event=Note, on_event=due_now, execute=execute)
    app = DurableJobs({"notes": job}, storage=f"sqlite:///{path}")
    await app.client.task(job).send("bad", Note("bad"))
    damage_alarm(path, "bad", "x")
    with noticing("storage.damaged_row") as reported:
        async with app.worker(poll_interval=60):
            await asyncio.wait_for(reported.wait(), 10)  # idle, past the damaged alarm
            await app.client.task(job).send("good", Note("good"))
            await asyncio.wait_for(ran.wait(), 10)
    await app.aclose()


async def test_due_alarms_of_some_jobs_are_found_through_the_alarm_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SEMANTICS 12 with SEMANTICS 13: filtering on the worker's jobs must not make the
    job index lead, which reads every instance of the job (measured: executions by a
    worker fell to a tenth with 10,000 instances)."""
    statements: list[str] = []
    plain = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = plain(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    path = tmp_path / "plan.db"
    store = SQLiteStore(str(path))
    await store.open()
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    await store.next_alarm_at(now, jobs=["job", "other"])
    await store.claim_due(now, 10, "w", now + 30, jobs=["job"])
    await store.close()
    monkeypatch.setattr(sqlite3, "connect", plain)
    due = [s for s in statements if "FROM instances i" in s]
    assert len(due) == 2  # the next alarm, and the read before a claim
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for statement in due:
            plan = " ".join(str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}"))
            assert "instances_alarm" in plan, plan


def traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the connections opened from now on run, values filled in."""
    statements: list[str] = []
    plain = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = plain(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return statements


def plan_of(path: Path, statement: str) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return " ".join(str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}"))


async def test_listing_instances_and_history_reads_an_index_not_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of instances of a job (or a kind) and an instance's history must cost
    as much as the page, not as much as the store."""
    from durable_jobs.adapters.records import Commit
    from durable_jobs.testing.conformance import LEASE, T0, record, run

    path = tmp_path / "list.db"
    statements = traced(monkeypatch)
    store = SQLiteStore(str(path))
    await store.open()
    claim = await store.claim("task:orders:1", "w", T0, T0 + LEASE)
    assert claim is not None
    history = (run("task:orders:1"),)
    assert await store.commit(
        Commit(claim=claim, record=record("task:orders:1"), history=history, history_limit=3)
    )
    await store.list_instances(job_name="orders", alarmed=True, after="task:orders:0", limit=5)
    await store.list_instances(job_name="orders", kind="task", limit=5)
    await store.list_instances(kind="task", alarmed=False, after="task:a", limit=5)
    await store.read_history("task:orders:1", limit=10, before=99)
    await store.close()
    monkeypatch.undo()
    by_job, both, by_kind = [s for s in statements if "ORDER BY instance_id LIMIT" in s]
    for statement in by_job, both:
        assert "USING INDEX instances_job (job_name=? AND instance_id>?)" in plan_of(
            path, statement
        )
    assert "USING PRIMARY KEY (instance_id>? AND instance_id<?)" in plan_of(path, by_kind)
    trim, read = [s for s in statements if "FROM history WHERE" in s]
    for statement in trim, read:
        plan = plan_of(path, statement)
        assert "history_instance (instance_id=?" in plan, plan
        assert "SCAN" not in plan, plan


async def test_events_committed_by_another_process_wake_a_wait(tmp_path: Path) -> None:
    from durable_jobs.adapters.records import Commit
    from durable_jobs.testing.conformance import LEASE, T0, record

    waiter, writer = SQLiteStore(str(tmp_path / "e.db")), SQLiteStore(str(tmp_path / "e.db"))
    await waiter.open()
    await writer.open()
    last = await waiter.last_event_id()
    waiting = asyncio.ensure_future(waiter.wait_for_events(last, 60))
    await asyncio.sleep(0)
    claim = await writer.claim("task:job:a", "other", T0, T0 + LEASE)
    assert claim is not None
    assert await writer.commit(Commit(claim=claim, record=record(), events=('{"n":1}',)))
    await asyncio.wait_for(waiting, 5)  # not the 60 s: the writer never told the waiter
    assert [e.event for e in await waiter.read_events(last, 10)] == ['{"n":1}']
    await waiter.close()
    await writer.close()


async def test_history_ids_are_never_given_twice(tmp_path: Path) -> None:
    """Even when a reset removes the newest rows of the store."""
    from durable_jobs.adapters.records import Commit
    from durable_jobs.testing.conformance import LEASE, T0, record, run

    store = SQLiteStore(str(tmp_path / "h.db"))
    await store.open()
    ids = []
    for reset in (False, True):
        claim = await store.claim("task:job:a", "w", T0, T0 + LEASE)
        assert claim is not None
        history = (run(n=int(reset)),)
        commit = Commit(claim=claim, record=record(), history=history, history_reset=reset)
        assert await store.commit(commit)
        ids += [r.id for r in await store.read_history("task:job:a", limit=10)]
    await store.close()
    assert len(ids) == 2
    assert ids[1] > ids[0]


async def test_counting_every_instance_leaves_the_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stats`` reads the whole table (tens of ms at 100,000 instances): the loop's
    other calls go on meanwhile. Were it read on the loop, the loop would wait here
    for a release that only the loop gives."""
    store = SQLiteStore(str(tmp_path / "jobs.db"))
    await store.open()
    counting, release = threading.Event(), threading.Event()
    count = SQLiteStore._count

    def held(self: SQLiteStore, conn: sqlite3.Connection, now: float) -> Any:
        counting.set()
        assert release.wait(10), "the count was read on the loop"
        return count(self, conn, now)

    monkeypatch.setattr(SQLiteStore, "_count", held)
    try:
        stats = asyncio.ensure_future(store.stats(0.0))
        assert await asyncio.to_thread(counting.wait, 10)
        assert await store.read("task:orders:o1") is None  # the loop answers meanwhile
        release.set()
        assert (await stats).instances == ()
    finally:
        release.set()
        await store.close()
