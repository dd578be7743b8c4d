"""SQLite group commit: writes queued together share a transaction on their event loop,
each still fenced, and durable ones share an fsync that comes before their answer.

Seen from outside only: the store through its protocols, SQLite's trace of the
statements run on each connection, and the fsyncs of the WAL."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

from durable_jobs import StorageError
from durable_jobs.adapters.records import Claim, Commit
from durable_jobs.adapters.sqlite import SQLiteStore, _syncer
from durable_jobs.testing.conformance import LEASE, T0, record

plain_connect = sqlite3.connect  # untraced, whatever a test patches


def other_connection(path: Path) -> sqlite3.Connection:
    """A connection of "another process" to the store's file."""
    return plain_connect(path, isolation_level=None, check_same_thread=False)


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


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of each transaction committed on a connection opened from now on
    (but by ``plain_connect``), in commit order, as SQLite's trace reports it."""
    committed: list[int] = []

    def trace(statement: str) -> None:
        if statement == "COMMIT":
            committed.append(threading.get_ident())

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = plain_connect(*args, **kwargs)
        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return committed


async def running(tmp_path: Path, commits: list[int], **options: Any) -> SQLiteStore:
    """An open store that has written once, the transactions so far not counted."""
    store = SQLiteStore(str(tmp_path / "g.db"), **options)
    await store.open()
    await store.release(Claim(instance_id="task:job:x", owner="w", token="t", expires_at=T0))
    commits.clear()
    return store


async def test_concurrent_claims_and_commits_share_transactions(
    tmp_path: Path, commits: list[int]
) -> None:
    store = await running(tmp_path, commits)
    claims = await asyncio.gather(
        *(store.claim(f"task:job:{n}", "w", T0, T0 + LEASE) for n in range(50))
    )
    claim_transactions = len(commits)
    commits.clear()
    writes = [Commit(claim=c, record=record(c.instance_id)) for c in claims if c is not None]
    applied = await asyncio.gather(*(store.commit(c) for c in writes))
    await store.close()
    assert applied == [True] * 50
    assert 1 <= claim_transactions < 10
    assert 1 <= len(commits) < 10
    assert set(commits) == {threading.get_ident()}  # on the loop: no thread hop


async def test_producers_calling_one_after_another_share_transactions(
    tmp_path: Path, commits: list[int]
) -> None:
    """Sixteen tasks, each making calls in turn (claim, then commit), as a service's
    request handlers do: their writes must keep meeting in the loop's batches."""
    store = await running(tmp_path, commits)

    async def producer(k: int) -> None:
        for n in range(5):
            taken = await store.claim(f"task:job:{k}-{n}", "w", T0, T0 + LEASE)
            assert taken is not None
            assert await store.commit(Commit(claim=taken, record=record(taken.instance_id)))

    await asyncio.gather(*(producer(k) for k in range(16)))
    await store.close()
    assert len(commits) < 40  # of 160 writes


async def test_a_lone_write_is_applied_on_the_callers_thread(
    tmp_path: Path, commits: list[int]
) -> None:
    store = await running(tmp_path, commits)
    for n in range(3):  # one call at a time, as a sequential producer makes them
        taken = await store.claim(f"task:job:{n}", "w", T0, T0 + LEASE)
        assert taken is not None
        assert await store.commit(Commit(claim=taken, record=record(taken.instance_id)))
    await store.close()
    assert commits == [threading.get_ident()] * 6


async def test_a_lone_write_waits_for_another_process_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """Another connection has the write lock: the write must queue for the writer
    thread (which waits out the lock) rather than block this event loop."""
    path = tmp_path / "g.db"
    store = SQLiteStore(str(path), busy_timeout=600)  # a blocked loop would hang the test
    await store.open()
    other = other_connection(path)
    other.execute("BEGIN IMMEDIATE")
    claiming = asyncio.ensure_future(store.claim("task:job:a", "w", T0, T0 + LEASE))
    await asyncio.sleep(0)  # the claim is under way; a blocked loop would not get here
    assert not claiming.done()
    other.execute("COMMIT")  # only this loop running lets the claim finish
    assert await asyncio.wait_for(claiming, 10) is not None
    other.close()
    await store.close()


async def test_writes_queued_together_wait_for_a_lock_taken_elsewhere_off_the_loop(
    tmp_path: Path, commits: list[int]
) -> None:
    store = await running(tmp_path, commits, busy_timeout=600)  # a blocked loop would hang the test
    other = other_connection(tmp_path / "g.db")
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
    assert commits
    assert threading.get_ident() not in commits  # applied by the writer thread


async def test_a_write_failing_in_a_batch_fails_alone(tmp_path: Path, commits: list[int]) -> None:
    store = await running(tmp_path, commits)
    claims = await held(store, 4)
    # A record SQLite refuses (a NOT NULL column left empty) fails its commit for good.
    records = [record(c.instance_id) for c in claims]
    records[1] = attrs.evolve(records[1], meta=None)
    outcomes = await asyncio.gather(
        *(
            store.commit(Commit(claim=c, record=r, events=(c.instance_id,)))
            for c, r in zip(claims, records, strict=True)
        ),
        return_exceptions=True,
    )
    events = [e.event for e in await store.read_events(0, 10)]
    stored = [await store.read(c.instance_id) is not None for c in claims]
    await store.close()
    assert isinstance(outcomes[1], StorageError)
    assert "NOT NULL" in str(outcomes[1])
    assert outcomes[:1] + outcomes[2:] == [True, True, True]
    assert stored == [True, False, True, True]
    assert events == [c.instance_id for n, c in enumerate(claims) if n != 1]


class Fsyncs:
    """Stands in for the fsync of the WAL: counts calls and notes the file of each,
    pauses them while ``go`` is clear, fails them with ``error``."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0
        self.go, self.entered = threading.Event(), threading.Event()
        self.go.set()
        self.error: OSError | None = None
        self.files: list[str] = []

    def __call__(self, fd: int) -> None:
        self.entered.set()
        self.go.wait(10)
        self.calls += 1
        self.files.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        if self.error is not None:
            raise self.error
        self.real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Fsyncs:
    stand_in = Fsyncs(_syncer._sync)
    monkeypatch.setattr(_syncer, "_sync", stand_in)
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
    tmp_path: Path, commits: list[int], fsyncs: Fsyncs
) -> None:
    store = await running(tmp_path, commits)
    claims = await held(store, 10)
    fsyncs.go.clear()
    fsyncs.entered.clear()
    before = fsyncs.calls
    committing = asyncio.gather(
        *(store.commit(Commit(claim=c, record=record(c.instance_id))) for c in claims)
    )
    assert await asyncio.to_thread(fsyncs.entered.wait, 10)
    # Committed (another connection sees the rows), not yet answered: the fsync is paused.
    other = other_connection(tmp_path / "g.db")
    visible = other.execute("SELECT count(*) FROM instances").fetchone()[0]
    other.close()
    assert visible == 10
    assert not committing.done()
    fsyncs.go.set()
    applied = await asyncio.wait_for(committing, 10)
    await store.close()
    assert applied == [True] * 10
    assert 1 <= fsyncs.calls - before <= 2  # one fsync for the batch (two at most)


async def test_a_lone_durable_write_is_fsynced_on_the_callers_thread(
    tmp_path: Path, commits: list[int], fsyncs: Fsyncs
) -> None:
    store = await running(tmp_path, commits)
    threads: list[int] = []
    real = fsyncs.real
    fsyncs.real = lambda fd: (threads.append(threading.get_ident()), real(fd))
    [taken] = await held(store, 1)
    assert threads == []  # a claim needs no fsync
    assert await store.commit(Commit(claim=taken, record=record(taken.instance_id)))
    await store.close()
    assert threads == [threading.get_ident()]


async def test_after_a_failed_fsync_no_durable_write_is_made(
    tmp_path: Path, commits: list[int], fsyncs: Fsyncs
) -> None:
    store = await running(tmp_path, commits)
    claims = await held(store, 4)
    failed = await failing_fsync(store, fsyncs, claims[:3])
    assert all(isinstance(f, StorageError) and "fsync" in str(f) for f in failed)
    with pytest.raises(StorageError, match="fsync"):
        await store.commit(Commit(claim=claims[3], record=record(claims[3].instance_id)))
    assert await store.read(claims[3].instance_id) is None
    await store.close()


async def test_a_claim_waits_for_the_fsync_of_commits_it_may_have_read(
    tmp_path: Path, commits: list[int], fsyncs: Fsyncs
) -> None:
    """A claim reads what commits left; acting on a commit that a power cut could
    still take back must wait until that commit is on disk."""
    store = await running(tmp_path, commits)
    claims = await held(store, 3)
    fsyncs.go.clear()
    fsyncs.entered.clear()
    committing = asyncio.gather(
        *(store.commit(Commit(claim=c, record=record(c.instance_id))) for c in claims[:2])
    )
    assert await asyncio.to_thread(fsyncs.entered.wait, 10)
    claiming = asyncio.ensure_future(store.claim("task:job:next", "w", T0, T0 + LEASE))
    for _ in range(5):  # turns enough to apply the claim, which the loop does at once
        await asyncio.sleep(0)
    assert commits[-1] == threading.get_ident()  # the claim is committed …
    assert not claiming.done()  # … and not answered while the commits are not on disk
    fsyncs.go.set()
    assert await asyncio.wait_for(claiming, 10) is not None
    assert await asyncio.wait_for(committing, 10) == [True, True]
    await store.close()


async def test_a_claim_after_another_processs_commit_waits_for_an_fsync(
    tmp_path: Path, commits: list[int], fsyncs: Fsyncs
) -> None:
    """Another process may have committed without syncing (its loop's batch, waiting
    for its fsync): a claim that may read it syncs the WAL first."""
    store = await running(tmp_path, commits)
    await held(store, 1)  # the store has looked at the database
    other = other_connection(tmp_path / "g.db")
    other.execute("PRAGMA synchronous = NORMAL")
    other.execute("INSERT INTO events (at, event) VALUES (0, 'x')")
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
    await store.close()
    assert applied == [True, True]
    assert fsyncs.files
    assert set(fsyncs.files) == {str((tmp_path / "real" / "g.db-wal").resolve())}


async def test_after_a_failed_fsync_a_durable_write_fails_without_waiting_for_the_lock(
    tmp_path: Path, commits: list[int], fsyncs: Fsyncs
) -> None:
    """Whichever way it would go (the loop's connection, or the writer thread that
    waits out a lock taken elsewhere), a durable write after a failed fsync fails."""
    store = await running(tmp_path, commits, busy_timeout=600)  # a wait would hang the test
    claims = await held(store, 3)
    await failing_fsync(store, fsyncs, claims[:2])
    other = other_connection(tmp_path / "g.db")
    other.execute("BEGIN IMMEDIATE")
    late = Commit(claim=claims[2], record=record(claims[2].instance_id), events=("late",))
    with pytest.raises(StorageError, match="fsync"):
        await asyncio.wait_for(store.commit(late), 10)
    other.execute("COMMIT")
    other.close()
    assert await store.read_events(0, 10) == []
    await store.close()


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
