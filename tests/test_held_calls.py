"""SQLite: a client call alone in its process runs inside one write transaction, which
holds the instance instead of a stored claim, and stores a claim only if it suspends."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest

from durable_jobs import ExecutionError, Task, TaskContext, ValidationError
from durable_jobs.adapters.records import Claim, Commit, InstanceRecord
from durable_jobs.adapters.sqlite import SQLiteStore
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.suspension import BeforeSuspending

from .test_group_commit import Fsyncs, fsyncs  # noqa: F401 - a fixture

ID = "task:counter:a"


@attrs.frozen
class Count:
    n: int = 0


@attrs.frozen
class Add:
    by: int = 1


class Handler:
    """``on_event`` of the test job; a test may swap in what it does first."""

    before: Callable[[], Coroutine[Any, Any, None]] | None = None
    fail = False


async def add(event: Add, ctx: TaskContext[Count]) -> None:
    if Handler.before is not None:
        await Handler.before()
    if Handler.fail:
        raise ValueError("refused")
    ctx.set_state(Count((ctx.state or Count()).n + event.by))


async def nothing(ctx: TaskContext[Count]) -> None:
    return None


counter = Task(state=Count, event=Add, on_event=add, execute=nothing)


@pytest.fixture(autouse=True)
def plain_handler() -> None:
    Handler.before, Handler.fail = None, False


class Spy(SQLiteStore):
    """Counts committed transactions and the claims another activation refused."""

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(path, **options)
        self.commits = 0
        self.refused = asyncio.Event()

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()

        def trace(statement: str) -> None:
            if statement == "COMMIT":
                self.commits += 1

        conn.set_trace_callback(trace)
        return conn

    async def claim(self, instance_id: str, owner: str, now: float, until: float) -> Claim | None:
        taken = await super().claim(instance_id, owner, now, until)
        if taken is None:
            self.refused.set()
        return taken


async def opened(tmp_path: Path, **options: Any) -> tuple[Spy, DurableJobs]:
    store = Spy(str(tmp_path / "h.db"), **options)
    app = DurableJobs({"counter": counter}, storage=(store, store))
    await app.client.task(counter).send("warm-up", Add())  # opens the store
    store.commits = 0
    return store, app


def claim_row(path: Path) -> tuple[str, float] | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT token, expires_at FROM claims WHERE instance_id = ?", (ID,))
        return row.fetchone()  # type: ignore[no-any-return]
    finally:
        conn.close()


async def count(app: DurableJobs) -> int | None:
    state = await app.client.task(counter).get_state("a")
    return None if state.state is None else state.state.n


def assert_unlocked(path: Path) -> None:
    """Another connection takes the write lock at once: no hold was left behind."""
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if one was
        other.execute("ROLLBACK")
    finally:
        other.close()


async def one_more_goes_through(app: DurableJobs) -> int | None:
    """Send to "a" once more, then close ``app``; the count "a" ends at."""
    await asyncio.wait_for(app.client.task(counter).send("a", Add()), 10)
    n = await count(app)
    await app.aclose()
    return n


async def test_a_lone_call_is_one_transaction_and_stores_no_claim(tmp_path: Path) -> None:
    store, app = await opened(tmp_path)
    for _ in range(3):
        await app.client.task(counter).send("a", Add())
    commits = store.commits
    n = await count(app)
    await app.aclose()
    assert n == 3
    assert commits == 3  # a claim, a commit and a release would be three each
    assert claim_row(tmp_path / "h.db") is None


async def test_held_calls_can_be_turned_off(tmp_path: Path) -> None:
    store, app = await opened(tmp_path, held_calls=False)
    await app.client.task(counter).send("a", Add())
    commits = store.commits
    await app.aclose()
    assert commits == 2  # the claim, then the commit with its release
    assert claim_row(tmp_path / "h.db") == ("", 0)


async def test_a_held_call_is_fsynced_before_its_answer_on_the_callers_thread(
    tmp_path: Path,
    fsyncs: Fsyncs,  # noqa: F811 - the fixture
) -> None:
    _, app = await opened(tmp_path)
    threads: list[int] = []
    real = fsyncs.real
    fsyncs.real = lambda fd: (threads.append(threading.get_ident()), real(fd))
    await app.client.task(counter).send("a", Add())
    await app.aclose()
    assert threads == [threading.get_ident()]


async def test_a_held_call_syncs_another_processs_commit_before_its_handler_runs(
    tmp_path: Path,
    fsyncs: Fsyncs,  # noqa: F811 - the fixture
) -> None:
    """Another process may have committed without syncing yet: a handler must not act
    on what a power cut could still take back."""
    _, app = await opened(tmp_path)
    other = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    other.execute("PRAGMA synchronous = NORMAL")
    other.execute("INSERT INTO outbox (event) VALUES ('x')")
    other.close()
    seen: list[int] = []

    async def look() -> None:  # does not suspend: the call stays held
        seen.append(fsyncs.calls)

    Handler.before = look
    before = fsyncs.calls
    await app.client.task(counter).send("a", Add())
    await app.client.task(counter).send("a", Add())  # nothing new elsewhere: no extra fsync
    await app.aclose()
    assert seen == [before + 1, before + 2]  # synced before the first; the second
    # saw only the first call's own commit, which its fsync had covered


async def test_a_call_that_suspends_stores_its_claim_and_lets_go_of_the_lock(
    tmp_path: Path,
) -> None:
    _, app = await opened(tmp_path)
    suspended, go_on = asyncio.Event(), asyncio.Event()

    async def wait() -> None:
        suspended.set()
        await go_on.wait()

    Handler.before = wait
    sending = asyncio.ensure_future(app.client.task(counter).send("a", Add()))
    await asyncio.wait_for(suspended.wait(), 10)
    row = claim_row(tmp_path / "h.db")
    assert_unlocked(tmp_path / "h.db")
    go_on.set()
    await asyncio.wait_for(sending, 10)
    n = await count(app)
    await app.aclose()
    assert row is not None
    assert row[0]  # a live claim while the handler waited
    assert row[1] > time.time()
    assert n == 1
    assert claim_row(tmp_path / "h.db") == ("", 0)  # released by the commit


async def test_a_call_cancelled_while_suspended_releases_its_claim(tmp_path: Path) -> None:
    _, app = await opened(tmp_path)
    suspended = asyncio.Event()

    async def wait_forever() -> None:
        suspended.set()
        await asyncio.Event().wait()

    Handler.before = wait_forever
    sending = asyncio.ensure_future(app.client.task(counter).send("a", Add()))
    await asyncio.wait_for(suspended.wait(), 10)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    Handler.before = None
    await asyncio.wait_for(app.client.task(counter).send("a", Add()), 10)
    n = await count(app)
    await app.aclose()
    assert n == 1
    assert claim_row(tmp_path / "h.db") == ("", 0)


async def test_a_call_that_fails_before_suspending_writes_nothing_and_lets_go(
    tmp_path: Path,
) -> None:
    _, app = await opened(tmp_path)
    Handler.fail = True
    with pytest.raises(ExecutionError, match="refused"):
        await app.client.task(counter).send("a", Add())
    Handler.fail = False
    await asyncio.wait_for(app.client.task(counter).send("a", Add(by=5)), 10)
    n = await count(app)
    await app.aclose()
    assert n == 5
    assert claim_row(tmp_path / "h.db") is None


async def test_a_record_that_cannot_be_read_leaves_the_database_unlocked(
    tmp_path: Path,
) -> None:
    _, app = await opened(tmp_path)
    await app.client.task(counter).send("a", Add())
    corrupt = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    corrupt.execute("UPDATE instances SET meta = 'not json' WHERE instance_id = ?", (ID,))
    corrupt.close()
    with pytest.raises(ValidationError, match="counters of task:counter:a are corrupt"):
        await app.client.task(counter).send("a", Add())
    assert_unlocked(tmp_path / "h.db")
    await asyncio.wait_for(app.client.task(counter).send("b", Add()), 10)
    await app.aclose()


async def test_a_failure_while_taking_a_hold_leaves_the_database_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, app = await opened(tmp_path)
    await app.client.task(counter).send("a", Add())

    def unreadable(cls: type, row: Any) -> InstanceRecord:
        raise RuntimeError("unreadable")

    monkeypatch.setattr(InstanceRecord, "from_row", classmethod(unreadable))
    with pytest.raises(RuntimeError, match="unreadable"):
        await app.client.task(counter).send("a", Add())
    monkeypatch.undo()
    assert_unlocked(tmp_path / "h.db")
    assert await one_more_goes_through(app) == 2


class RollbackFails:
    """A connection whose ROLLBACK works but reports an error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, sql: str, *params: Any) -> sqlite3.Cursor:
        if sql == "ROLLBACK":
            self.conn.execute(sql)
            raise sqlite3.OperationalError("rollback refused")
        return self.conn.execute(sql, *params)


async def test_a_held_commit_that_fails_tells_its_own_failure_and_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, app = await opened(tmp_path)
    await app.client.task(counter).send("a", Add())
    direct = store._get_writer()._direct
    assert direct is not None
    monkeypatch.setattr(direct, "conn", RollbackFails(direct.conn))

    def refused(*_: object, **__: object) -> bool:
        raise RuntimeError("write refused")

    monkeypatch.setattr("durable_jobs.adapters.sqlite.store._commit", refused)
    with pytest.raises(RuntimeError, match="write refused"):  # not the rollback's error
        await app.client.task(counter).send("a", Add())
    monkeypatch.undo()
    assert_unlocked(tmp_path / "h.db")
    assert await one_more_goes_through(app) == 2


async def test_a_blocking_client_call_from_a_handler_lets_go_of_the_hold_first(
    tmp_path: Path,
) -> None:
    """The blocking client waits for another loop, whose write needs the lock that a
    held call keeps: the hold becomes a claim before the wait, instead of a deadlock."""
    _, app = await opened(tmp_path)
    nested: list[int] = []

    async def send_blocking() -> None:
        if not nested:  # only in the outer call
            nested.append(1)
            app.sync_client.task(counter).send("b", Add(by=7))

    Handler.before = send_blocking
    await app.client.task(counter).send("a", Add())
    b = await app.client.task(counter).get_state("b")
    n = await count(app)
    await app.aclose()
    assert n == 1
    assert b.state == Count(7)


async def test_a_live_claim_elsewhere_makes_a_call_wait_for_it(tmp_path: Path) -> None:
    store, app = await opened(tmp_path)
    elsewhere = SQLiteStore(str(tmp_path / "h.db"))  # as another process would
    now = time.time()
    rival = await elsewhere.claim(ID, "rival", now, now + 60)
    assert rival is not None
    sending = asyncio.ensure_future(app.client.task(counter).send("a", Add()))
    await asyncio.wait_for(store.refused.wait(), 10)
    waited = not sending.done()
    n_while_claimed = await count(app)
    await elsewhere.release(rival)
    await asyncio.wait_for(sending, 10)
    n = await count(app)
    await app.aclose()
    await elsewhere.close()
    assert waited
    assert n_while_claimed is None
    assert n == 1


async def test_calls_queued_behind_a_held_one_take_their_own_claims(tmp_path: Path) -> None:
    _, app = await opened(tmp_path)
    send = app.client.task(counter).send
    await asyncio.gather(*(send("a", Add()) for _ in range(3)))
    n = await count(app)
    await app.aclose()
    assert n == 3


@pytest.mark.parametrize("fails", [False, True], ids=["committed", "failed"])
async def test_an_expired_claim_cannot_commit_after_a_held_call(
    tmp_path: Path, *, fails: bool
) -> None:
    store, app = await opened(tmp_path)
    now = time.time()
    stale = await store.claim(ID, "rival", now - 100, now - 50)  # expired by now
    assert stale is not None
    Handler.fail = fails
    with pytest.raises(ExecutionError) if fails else contextlib.nullcontext():
        await app.client.task(counter).send("a", Add())
    late = await store.commit(Commit(claim=stale, delete=True))
    n = await count(app)
    await app.aclose()
    assert not late
    assert n == (None if fails else 1)


class Pause:
    def __await__(self) -> Any:
        return (yield "paused")


async def pauses() -> str:
    try:
        got = await Pause()
    except KeyError as error:
        return f"caught {error}"
    return f"got {got}"


async def finishes() -> str:
    return "at once"


def test_before_suspending_passes_values_errors_and_results_through() -> None:
    hooks: list[str] = []

    def run(coro: Coroutine[Any, Any, str], *, throw: bool) -> str:
        steps = BeforeSuspending(coro, lambda: hooks.append("hook")).__await__()
        try:
            first = steps.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        assert first == "paused"
        resume = partial(steps.throw, KeyError("k")) if throw else partial(steps.send, 5)
        with pytest.raises(StopIteration) as stopped:
            resume()
        return stopped.value.value  # type: ignore[no-any-return]

    assert run(finishes(), throw=False) == "at once"
    assert hooks == []
    assert run(pauses(), throw=False) == "got 5"
    assert run(pauses(), throw=True) == "caught 'k'"
    assert hooks == ["hook", "hook"]
