"""How this process writes to one store: in batches, on the event loop, durable in groups.

SQLite admits one writer at a time anyway, so the writes an event loop queues
while it runs its ready tasks are applied together at its next turn: one
``BEGIN IMMEDIATE … COMMIT`` for the batch, while each write is still applied,
fenced and answered on its own. With ``synchronous=FULL`` the transaction commits
at ``NORMAL`` and the syncer (``_syncer.py``) fsyncs the WAL off the loop before
the durable writes are answered, one fsync for every batch committed meanwhile.

Why on the loop rather than on a thread of its own: the ``sqlite3`` module lets go
of the GIL around every statement, and a writer thread has to win it back from a
busy event loop after each one. Measured here, that made the thread's statements
several times slower whenever the loop had work, which is exactly when batches
are large. On the loop a statement runs at once, and only the fsync leaves it.

A batch of one write that nothing else could join is fsynced on the loop itself:
the syncer's thread would add two thread hops to its wait, and nothing else would
run meanwhile. Whether anything could join is read from what the writer sees:
nothing for the writer thread, no fsync under way, and no other task ready on the
loop. (Running such a write at once, without waiting for the loop's turn, measured
no faster.) The loop never waits for a lock: its connection has no busy timeout, and when another
process (or another loop of this one) has the lock, the writes go to the writer
thread, which waits it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ...errors import StorageError
from ..answers import answer
from ..retry import StorageRetry
from ._syncer import Syncer

Write = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 256
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class Busy(Exception):
    """The database stayed locked by another connection past the busy timeout."""


@attrs.define
class _Pending:
    write: Write
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _answer(batch: list[_Pending], results: list[Any], error: BaseException | None) -> None:
    """Answer every write of a batch: its result, or ``error`` for all of them."""
    answer(
        (i.loop, i.future, r if error is None else error)
        for i, r in zip(batch, results, strict=True)
    )


def _fail(batch: list[_Pending], error: BaseException) -> None:
    _answer(batch, [None] * len(batch), error)


class _Connection:
    """A write connection and the synchronous level it is set to."""

    def __init__(self, conn: sqlite3.Connection, *, adaptive: bool) -> None:
        self.conn = conn
        self._adaptive = adaptive
        self._level = "FULL"

    def run(self, writes: list[Write], *, durable: bool) -> list[Any]:
        """With ``adaptive``, non-durable writes skip the fsync (NORMAL); otherwise the
        connection keeps the synchronous level the store set."""
        wanted = "FULL" if durable else "NORMAL"
        if self._adaptive and wanted != self._level:
            self.conn.execute(f"PRAGMA synchronous = {wanted}")
            self._level = wanted
        return transaction(self.conn, writes)

    def data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])


class Writer:
    """Applies this process's writes to one store (see the module's docstring)."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], retry: StorageRetry, *, adaptive: bool
    ) -> None:
        self._connect = connect
        self._retry = retry
        self._stopped = False
        self._syncer: Syncer | None = None
        # Opened here, not by the writer thread: the loop can use it from the first
        # write on, whenever that thread gets to run.
        loop_conn = connect()
        loop_conn.execute("PRAGMA busy_timeout = 0")  # the lock taken elsewhere: queue instead
        # FULL: the loop's transactions commit at NORMAL and the syncer makes them
        # durable. Any other level the store was given is kept as it is. (Not on
        # Windows, which cannot fsync a file opened for reading; nor without a file.)
        self._wal_path = _wal_path(loop_conn) if adaptive and os.name == "posix" else ""
        self._adaptive = bool(self._wal_path)
        if self._adaptive:
            loop_conn.execute("PRAGMA synchronous = NORMAL")  # the syncer syncs
        self._on_loop: _Connection | None = _Connection(loop_conn, adaptive=False)
        self._loop_version = self._on_loop.data_version()  # as the loop last saw it
        self._thread_version = 0  # and the writer thread
        # Taken while either connection is in a transaction, so that a write on an
        # event loop never waits behind the writer thread's.
        self._gate = threading.Lock()
        self._batches: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="durable-jobs-sqlite", daemon=True)
        self._thread.start()

    async def write(self, write: Write, *, durable: bool) -> Any:
        """Apply ``write`` in a write transaction; ``durable`` ones are on disk before
        the answer (claims and releases need not be: losing one loses nothing)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(write, durable, loop, loop.create_future())
        batch = self._batches.get(loop)
        if batch is None:
            batch = self._batches[loop] = []
            loop.call_soon(self._flush, loop)
        batch.append(pending)
        return await pending.future

    def stop(self) -> None:
        with self._gate:
            self._stopped = True  # no more writes on a loop: they would not be synced
        self._queue.put(None)
        self._thread.join(timeout=10)
        if self._syncer is not None:
            self._syncer.stop()
        with self._gate:
            if self._on_loop is not None:
                self._on_loop.conn.close()
                self._on_loop = None
        late = []  # queued while stopping, after the thread's last batch
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                late.append(item)
        self._enqueue(late)

    def _enqueue(self, batch: list[_Pending]) -> None:
        if self._stopped:
            _fail(batch, StorageError("the SQLite store was closed"))
            return
        for item in batch:
            self._queue.put(item)

    # -- on the event loop -----------------------------------------------------

    def _quiet(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether nothing else in this process is about to write, as far as the
        writer can tell; a wrong guess costs only speed. asyncio has no public way to
        ask what is ready, so a loop without ``_ready`` (not asyncio's own) never is."""
        if not self._queue.empty() or (self._syncer is not None and not self._syncer.idle()):
            return False  # callers waiting on those will write again soon
        return not getattr(loop, "_ready", True)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Apply the loop's batch on its connection; the writer thread gets it if the
        lock is taken."""
        batch = self._batches.pop(loop)
        lone = len(batch) == 1 and self._quiet(loop)
        try:
            with self._loop_connection() as conn:
                if conn is not None and self._apply(conn, batch, on_loop=True, lone=lone):
                    return
        except Exception as exc:  # a bug, not a write's failure: fail the batch, not the loop
            _fail(batch, exc)
            return
        self._enqueue(batch)

    @contextlib.contextmanager
    def _loop_connection(self) -> Iterator[_Connection | None]:
        """The loop's connection under the gate, or None where using it would mean
        waiting (for queued writes, or this process's other transaction)."""
        if not self._queue.empty() or not self._gate.acquire(blocking=False):
            yield None
            return
        try:
            yield None if self._stopped else self._on_loop
        finally:
            self._gate.release()

    def _barrier(self, conn: _Connection, durable: bool) -> int:
        """After a transaction on the loop's connection: the generation its answer
        must wait for (0: none). A durable transaction waits for its own fsync. Any
        other waits only if what it read may not be on disk yet: this process's
        commits not yet synced, or commits by other connections since the last look
        (they may have committed at NORMAL too, and their writer may not have synced)."""
        if not self._adaptive:
            return 0
        version = conn.data_version()
        fresh, self._loop_version = version != self._loop_version, version
        syncer = self._get_syncer()
        return syncer.committed() if durable or fresh else syncer.unsynced()

    def _get_syncer(self) -> Syncer:
        if self._syncer is None:
            try:
                self._syncer = Syncer(self._wal_path)
            except OSError as exc:
                raise StorageError(f"cannot open the SQLite WAL to sync it: {exc}") from exc
        return self._syncer

    # -- either way ------------------------------------------------------------

    def _apply(
        self, conn: _Connection, batch: list[_Pending], *, on_loop: bool, lone: bool = False
    ) -> bool:
        """Apply ``batch`` in one transaction on ``conn`` and answer it. On the loop,
        a locked database answers nothing and returns False."""
        writes = [i.write for i in batch]
        durable = any(i.durable for i in batch)
        if not on_loop and not durable and self._adaptive:
            # What it reads may come from another process's unsynced commit: FULL
            # syncs the WAL, theirs included, before this commit is visible.
            durable = self._fresh(conn)
        try:
            try:
                if durable and self._syncer is not None:
                    self._syncer.check()
                results = conn.run(writes, durable=durable)
                self._retry.outage.succeeded("sqlite write")  # past the retry helper: tell it
            except Busy:
                if on_loop:
                    return False
                results = self._retry.call(
                    "sqlite write", lambda: conn.run(writes, durable=durable), (Busy,)
                )
            except StorageError:
                raise
            except Exception as exc:  # never let the writer thread die
                raise StorageError(f"sqlite write failed: {exc}") from exc
        except StorageError as exc:
            if len(batch) == 1 or exc.retryable:
                _fail(batch, exc)
                return True
            # One write failed for good (say, the disk is full): give every other
            # write of the batch its own transaction so that only that one fails.
            for item in batch:
                if not self._apply(conn, [item], on_loop=on_loop):
                    self._enqueue([item])
            return True
        generation = self._barrier(conn, durable) if on_loop else 0
        if not generation:
            _answer(batch, results, None)
        elif lone:
            self._sync_here(batch, results, generation)
        else:
            self._get_syncer().after_sync(generation, lambda error: _answer(batch, results, error))
        return True

    def _sync_here(self, batch: list[_Pending], results: list[Any], generation: int) -> None:
        try:
            self._get_syncer().sync(generation)
        except StorageError as exc:
            _fail(batch, exc)
            return
        _answer(batch, results, None)

    def _fresh(self, conn: _Connection) -> bool:
        """Whether another connection committed since the writer thread last looked."""
        version = conn.data_version()
        fresh, self._thread_version = version != self._thread_version, version
        return fresh

    # -- on the writer thread --------------------------------------------------

    def _run(self) -> None:
        conn = _Connection(self._connect(), adaptive=self._adaptive)
        self._thread_version = conn.data_version()
        try:
            while (first := self._queue.get()) is not None:
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    batch.append(item)
                with self._gate:
                    self._apply(conn, batch, on_loop=False)
        finally:
            conn.conn.close()


def _wal_path(conn: sqlite3.Connection) -> str:
    """Where SQLite puts the WAL of ``conn``'s database (symbolic links resolved), or
    "" for a database without a file."""
    main = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
    return f"{main[0]}-wal" if main and main[0] else ""


def transaction(conn: sqlite3.Connection, writes: list[Write]) -> list[Any]:
    """Run ``writes`` in one ``BEGIN IMMEDIATE`` transaction; all or nothing."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [write(conn) for write in writes]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # some errors (a full disk) roll back by themselves
                conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES or "locked" in str(exc):
            raise Busy(str(exc)) from exc
        raise
    return results
