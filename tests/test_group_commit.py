"""SQLite group commit: writes queued together share a transaction on their event loop,
each still fenced, and durable ones share an fsync that comes before their answer."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from durable_jobs import StorageError
from durable_jobs.adapters.records import Claim, Commit
from durable_jobs.adapters.sqlite import SQLiteStore, syncer
from durable_jobs.adapters.sqlite.inflight import InFlight
from durable_jobs.testing.conformance import LEASE, T0, record


async def test_a_stale_commit_in_a_batch_is_refused_and_the_rest_applied(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "g.db"))
    await store.open()
    claims = [await store.claim(f"task:job:{n}", "w", T0, T0 + LEASE) for n in range(20)]
    stale = claims[7]
    assert stale is not None
    assert await store.claim(stale.instance_id, "rival", T0 + LEASE + 1, T0 + 3 * LEASE)
    commits = [
        Commit(claim=c, record=record(c.instance_id, alarm_at=T0)) for c in claims if c is not None
    ]
    applied = await asyncio.gather(*(store.commit(c) for c in commits))
    stored = [await store.read(c.claim.instance_id) for c in commits]
    await store.close()
    assert applied == [n != 7 for n in range(20)]
    assert [s is not None for s in stored] == [n != 7 for n in range(20)]


class TracedStore(SQLiteStore):
    """Records, per transaction committed, the thread that committed it."""

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(path, **options)
        self.commits: list[int] = []

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()

        def trace(statement: str) -> None:
            if statement == "COMMIT":
                self.commits.append(threading.get_ident())

        conn.set_trace_callback(trace)
        return conn


async def running(tmp_path: Path, **options: Any) -> TracedStore:
    """An open store whose writer thread has started, its transactions not counted."""
    store = TracedStore(str(tmp_path / "g.db"), **options)
    await store.open()
    await store.release(Claim(instance_id="task:job:x", owner="w", token="t", expires_at=T0))
    # The writer thread answers a write before it lets go of its gate: a lone write
    # made in between would go to that thread instead of the loop's connection.
    with store._get_writer()._gate:
        pass
    store.commits.clear()
    return store


async def test_concurrent_claims_and_commits_share_transactions(tmp_path: Path) -> None:
    store = await running(tmp_path)
    claims = await asyncio.gather(
        *(store.claim(f"task:job:{n}", "w", T0, T0 + LEASE) for n in range(50))
    )
    claim_transactions, store.commits = len(store.commits), []
    commits = [Commit(claim=c, record=record(c.instance_id)) for c in claims if c is not None]
    applied = await asyncio.gather(*(store.commit(c) for c in commits))
    await store.close()
    assert applied == [True] * 50
    assert 1 <= claim_transactions < 10
    assert 1 <= len(store.commits) < 10
    assert set(store.commits) == {threading.get_ident()}  # on the loop: no thread hop


async def test_producers_calling_one_after_another_share_transactions(tmp_path: Path) -> None:
    """Sixteen tasks, each making calls in turn (claim, then commit), as a service's
    request handlers do: their writes must keep meeting in the loop's batches."""
    store = await running(tmp_path)

    async def producer(k: int) -> None:
        for n in range(5):
            taken = await store.claim(f"task:job:{k}-{n}", "w", T0, T0 + LEASE)
            assert taken is not None
            assert await store.commit(Commit(claim=taken, record=record(taken.instance_id)))

    await asyncio.gather(*(producer(k) for k in range(16)))
    await store.close()
    assert len(store.commits) < 40  # of 160 writes


async def test_a_lone_write_is_applied_on_the_callers_thread(tmp_path: Path) -> None:
    store = await running(tmp_path)
    for n in range(3):  # one call at a time, as a sequential producer makes them
        taken = await store.claim(f"task:job:{n}", "w", T0, T0 + LEASE)
        assert taken is not None
        assert await store.commit(Commit(claim=taken, record=record(taken.instance_id)))
    await store.close()
    assert store.commits == [threading.get_ident()] * 6


async def test_a_lone_write_waits_for_another_process_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """Another connection holds the write lock: the write must queue for the writer
    thread (which waits out the lock) rather than block this event loop."""
    path = tmp_path / "g.db"
    store = SQLiteStore(str(path), busy_timeout=600)  # a blocked loop would hang the test
    await store.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    claiming = asyncio.ensure_future(store.claim("task:job:a", "w", T0, T0 + LEASE))
    await asyncio.sleep(0)  # the claim is under way; a blocked loop would not get here
    assert not claiming.done()
    other.execute("COMMIT")  # only this loop running lets the claim finish
    assert await asyncio.wait_for(claiming, 10) is not None
    other.close()
    await store.close()


async def test_writes_queued_together_wait_for_a_lock_held_elsewhere_off_the_loop(
    tmp_path: Path,
) -> None:
    store = await running(tmp_path, busy_timeout=600)  # a blocked loop would hang the test
    other = sqlite3.connect(tmp_path / "g.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    claiming = asyncio.gather(
        *(store.claim(f"task:job:{n}", "w", T0, T0 + LEASE) for n in range(10))
    )
    await asyncio.sleep(0)  # the claims are under way; a blocked loop would not get here
    await asyncio.sleep(0)
    assert not claiming.done()
    other.execute("COMMIT")
    claims = await asyncio.wait_for(claiming, 10)
    other.close()
    await store.close()
    assert all(c is not None for c in claims)
    assert store.commits
    assert threading.get_ident() not in store.commits  # applied by the writer thread


async def test_a_write_failing_in_a_batch_fails_alone(tmp_path: Path) -> None:
    store = await running(tmp_path)
    writer = store._get_writer()

    def add(n: int) -> Any:
        return lambda conn: conn.execute("INSERT INTO outbox (event) VALUES (?)", (str(n),))

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    writes = [add(0), broken, add(1), add(2)]
    outcomes = await asyncio.gather(
        *(writer.write(w, durable=True, alone=False) for w in writes), return_exceptions=True
    )
    events = [e.event for e in await store.take_outbox(10)]
    await store.close()
    assert isinstance(outcomes[1], StorageError)
    assert "no_such_table" in str(outcomes[1])
    assert [isinstance(o, BaseException) for o in outcomes] == [False, True, False, False]
    assert events == ["0", "1", "2"]


class Fsyncs:
    """Stands in for the fsync of the WAL: counts calls, holds them while ``hold`` is
    clear, fails them with ``error``."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0
        self.hold, self.entered = threading.Event(), threading.Event()
        self.hold.set()
        self.error: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.entered.set()
        self.hold.wait(10)
        self.calls += 1
        if self.error is not None:
            raise self.error
        self.real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Fsyncs:
    stand_in = Fsyncs(syncer._sync)
    monkeypatch.setattr(syncer, "_sync", stand_in)
    return stand_in


async def held(store: SQLiteStore, count: int) -> list[Claim]:
    claims = await asyncio.gather(
        *(store.claim(f"task:job:{n}", "w", T0, T0 + LEASE) for n in range(count))
    )
    assert all(c is not None for c in claims)
    return [c for c in claims if c is not None]


async def failing_fsync(store: SQLiteStore, fsyncs: Fsyncs, claims: list[Claim]) -> list[Any]:
    """The outcomes of committing ``claims`` together while the fsync fails."""
    fsyncs.error = OSError(5, "Input/output error")
    return await asyncio.gather(
        *(store.commit(Commit(claim=c, record=record(c.instance_id))) for c in claims),
        return_exceptions=True,
    )


async def test_durable_writes_are_answered_only_after_an_fsync_covers_them(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    store = await running(tmp_path)
    claims = await held(store, 10)
    fsyncs.hold.clear()
    fsyncs.entered.clear()
    before = fsyncs.calls
    committing = asyncio.gather(
        *(store.commit(Commit(claim=c, record=record(c.instance_id))) for c in claims)
    )
    assert await asyncio.to_thread(fsyncs.entered.wait, 10)
    # Committed (another connection sees the rows), not yet answered: the fsync holds.
    other = sqlite3.connect(tmp_path / "g.db")
    visible = other.execute("SELECT count(*) FROM instances").fetchone()[0]
    other.close()
    assert visible == 10
    assert not committing.done()
    fsyncs.hold.set()
    applied = await asyncio.wait_for(committing, 10)
    await store.close()
    assert applied == [True] * 10
    assert 1 <= fsyncs.calls - before <= 2  # one fsync for the batch (two at most)


async def test_a_lone_durable_write_is_fsynced_on_the_callers_thread(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    store = await running(tmp_path)
    threads: list[int] = []
    real = fsyncs.real
    fsyncs.real = lambda fd: (threads.append(threading.get_ident()), real(fd))
    [taken] = await held(store, 1)
    assert threads == []  # a claim needs no fsync
    assert await store.commit(Commit(claim=taken, record=record(taken.instance_id)))
    await store.close()
    assert threads == [threading.get_ident()]


async def test_after_a_failed_fsync_no_durable_write_is_made(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    store = await running(tmp_path)
    claims = await held(store, 4)
    failed = await failing_fsync(store, fsyncs, claims[:3])
    assert all(isinstance(f, StorageError) and "fsync" in str(f) for f in failed)
    with pytest.raises(StorageError, match="fsync"):
        await store.commit(Commit(claim=claims[3], record=record(claims[3].instance_id)))
    assert await store.read(claims[3].instance_id) is None
    await store.close()


def test_claims_forgotten_by_their_holder_stop_counting_once_expired() -> None:
    flight = InFlight()
    flight.hold(
        [
            Claim(instance_id=f"task:job:{n}", owner="w", token=f"t{n}", expires_at=T0 + 1)
            for n in range(10)
        ]
    )
    flight.hold([Claim(instance_id="task:job:late", owner="w", token="late", expires_at=T0 + 5)])
    assert not flight.alone(T0)
    assert not flight.alone(T0 + 2)  # the one expiring later still counts
    assert flight.alone(T0 + 2, token="late")
    flight.let_go("late")
    assert flight.alone()
    with flight.asking():
        assert not flight.alone()
    assert flight.alone()


async def test_a_claim_waits_for_the_fsync_of_commits_it_may_have_read(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    """A claim reads what commits left; acting on a commit that a power cut could
    still take back must wait until that commit is on disk."""
    store = await running(tmp_path)
    claims = await held(store, 3)
    fsyncs.hold.clear()
    fsyncs.entered.clear()
    committing = asyncio.gather(
        *(store.commit(Commit(claim=c, record=record(c.instance_id))) for c in claims[:2])
    )
    assert await asyncio.to_thread(fsyncs.entered.wait, 10)
    claiming = asyncio.ensure_future(store.claim("task:job:next", "w", T0, T0 + LEASE))
    for _ in range(5):  # turns enough to apply the claim, which the loop does at once
        await asyncio.sleep(0)
    assert store.commits[-1] == threading.get_ident()  # the claim is committed …
    assert not claiming.done()  # … and not answered while the commits are not on disk
    fsyncs.hold.set()
    assert await asyncio.wait_for(claiming, 10) is not None
    assert await asyncio.wait_for(committing, 10) == [True, True]
    await store.close()


async def test_a_claim_after_another_processs_commit_waits_for_an_fsync(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    """Another process may have committed without syncing (its loop's batch, waiting
    for its fsync): a claim that may read it syncs the WAL first."""
    store = await running(tmp_path)
    await held(store, 1)  # the store has looked at the database
    other = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    other.execute("PRAGMA synchronous = NORMAL")
    other.execute("INSERT INTO outbox (event) VALUES ('x')")
    other.close()
    before = fsyncs.calls
    assert await store.claim("task:job:b", "w", T0, T0 + LEASE) is not None
    after_other = fsyncs.calls - before
    assert await store.claim("task:job:c", "w", T0, T0 + LEASE) is not None
    await store.close()
    assert after_other == 1
    assert fsyncs.calls - before == 1  # nothing new committed elsewhere: no fsync


async def test_the_wal_synced_is_the_one_sqlite_writes_through_a_symbolic_link(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    store = SQLiteStore(str(tmp_path / "link" / "g.db"))
    await store.open()
    claims = await held(store, 2)
    applied = await asyncio.gather(
        *(store.commit(Commit(claim=c, record=record(c.instance_id))) for c in claims)
    )
    syncer_ = store._get_writer()._syncer
    assert syncer_ is not None
    synced = os.path.realpath(f"/proc/self/fd/{syncer_._fd}")
    await store.close()
    assert applied == [True, True]
    assert synced == str((tmp_path / "real" / "g.db-wal").resolve())


async def test_after_a_failed_fsync_the_writer_thread_makes_no_durable_write(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    store = await running(tmp_path)
    await failing_fsync(store, fsyncs, await held(store, 2))

    def add(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO outbox (event) VALUES ('late')")

    with pytest.raises(StorageError, match="fsync"):
        await store._get_writer().submit(add, durable=True)
    assert await store.take_outbox(10) == []
    await store.close()


async def test_a_caller_alone_on_its_loop_does_not_yield_but_others_ready_make_it() -> None:
    flight = InFlight()
    await flight.let_others_ask()  # the first call on a loop yields: nothing is known of it
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "other")
    await flight.let_others_ask()
    assert ran == ["other"]  # something ready: it went first
    ran.clear()
    await flight.let_others_ask()
    # Nothing ready and a yield just made: the caller goes on (a callback queued now
    # would run only at the loop's next turn).
    asyncio.get_running_loop().call_soon(ran.append, "later")
    assert ran == []
    await asyncio.sleep(0)
    assert ran == ["later"]


async def test_lone_calls_that_never_wait_still_let_the_loop_run(tmp_path: Path) -> None:
    """A lone caller skips its yield only for a short while: I/O that is waiting (here
    a readable socket, seen only when the loop turns) gets the loop."""
    store = SQLiteStore(str(tmp_path / "b.db"), synchronous="NORMAL")
    await store.open()
    warm = await store.claim("task:job:warm", "w", T0, T0 + LEASE)  # opens the writer
    assert warm is not None
    await store.release(warm)
    loop = asyncio.get_running_loop()
    reader, writer = socket.socketpair()
    seen: list[int] = []
    calls = 0
    loop.add_reader(reader.fileno(), lambda: seen.append(calls))
    writer.send(b"x")
    try:
        while not seen and calls < 20_000:
            claim = await store.claim(f"task:job:{calls % 10}", "w", T0, T0 + LEASE)
            assert claim is not None
            await store.commit(Commit(claim=claim, record=record(claim.instance_id), release=True))
            calls += 1
    finally:
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()
        await store.close()
    assert seen
    assert seen[0] < 20_000
