"""How this process writes to one store: in batches, on the event loop, durable in groups.

SQLite admits one writer at a time anyway, so the writes an event loop queues
while it runs its ready tasks are applied together at its next turn: one
``BEGIN IMMEDIATE … COMMIT`` for the batch, while each write is still applied,
fenced and answered on its own. With ``synchronous=FULL`` the transaction commits
at ``NORMAL`` and the syncer (``syncer.py``) fsyncs the WAL off the loop before
the durable writes are answered, one fsync for every batch committed meanwhile.

Why on the loop rather than on a thread of its own: the ``sqlite3`` module lets go
of the GIL around every statement, and a writer thread has to win it back from a
busy event loop after each one. Measured here, that made the thread's statements
several times slower whenever the loop had work, which is exactly when batches
are large. On the loop a statement runs at once, and only the fsync leaves it.

A write with nothing to group with (``alone``) runs at once, fsync included: handing
it on would cost more than the fsync. The loop never waits for a lock: its
connection has no busy timeout, and when another process (or another loop of this
one) holds the lock, the writes go to the writer thread, which waits it out.
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
from .syncer import Syncer

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


def _settle(batch: list[_Pending], results: list[Any], error: BaseException | None) -> None:
    """Answer every write of a batch: its result, or ``error`` for all of them."""
    answer(
        (i.loop, i.future, r if error is None else error)
        for i, r in zip(batch, results, strict=True)
    )


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


class Writer:
    """Applies this process's writes to one store (see the module's docstring)."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], retry: StorageRetry, *, adaptive: bool
    ) -> None:
        self._connect = connect
        self._retry = retry
        # FULL: the loop's transactions commit at NORMAL and the syncer makes them
        # durable. Any other level the store was given is kept as it is. (Not on
        # Windows, which cannot fsync a file opened for reading.)
        self._adaptive = adaptive and os.name == "posix"
        self._wal_path = ""  # where SQLite puts it: symbolic links resolved
        self._syncer: Syncer | None = None
        self._seen_version = 0  # PRAGMA data_version, as the loop's connection last saw it
        self._thread_version = 0  # and as the writer thread's did
        self._stopped = False
        # Held while either connection is in a transaction, so that a write on an
        # event loop never waits behind the writer thread's.
        self._gate = threading.Lock()
        self._direct: _Connection | None = None
        self._batches: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="durable-jobs-sqlite", daemon=True)
        self._thread.start()

    async def write(self, write: Write, *, durable: bool, alone: bool) -> Any:
        """Apply ``write`` in a write transaction; ``durable`` ones are on disk before
        the answer (claims and releases need not be: losing one loses nothing).
        ``alone``: nothing in this process could share the transaction."""
        if alone:
            with self._direct_connection() as direct:
                if direct is not None:
                    try:
                        return self._apply_alone(direct, write, durable)
                    except Busy:
                        pass
            return await self.submit(write, durable=durable)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batch = self._batches.get(loop)
        if batch is None:
            batch = self._batches[loop] = []
            loop.call_soon(self._flush, loop)
        batch.append(_Pending(write, durable, loop, future))
        return await future

    async def submit(self, write: Write, *, durable: bool) -> Any:
        """Apply ``write`` on the writer thread, which waits for the lock if it must."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._enqueue([_Pending(write, durable, loop, future)])
        return await future

    def stop(self) -> None:
        with self._gate:
            self._stopped = True  # no more writes on a loop: they would not be synced
        self._queue.put(None)
        self._thread.join(timeout=10)
        if self._syncer is not None:
            self._syncer.stop()
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
            _settle(batch, [None] * len(batch), StorageError("the SQLite store was closed"))
            return
        for item in batch:
            self._queue.put(item)

    # -- on the event loop -----------------------------------------------------

    @contextlib.contextmanager
    def _direct_connection(self) -> Iterator[_Connection | None]:
        """The loop's connection under the gate, or None where using it would mean
        waiting (for queued writes, or this process's other transaction)."""
        direct = self._direct  # opened by the writer thread: opening may wait for a lock
        if direct is None or not self._queue.empty() or not self._gate.acquire(blocking=False):
            yield None
            return
        try:
            # Else closed, or closing: stop() holds the gate to say so.
            yield direct if self._direct is direct and not self._stopped else None
        finally:
            self._gate.release()

    def _apply_alone(self, direct: _Connection, write: Write, durable: bool) -> Any:
        try:
            if durable and self._adaptive:
                self._get_syncer().check()
            result = direct.run([write], durable=durable)[0]
        except (Busy, StorageError):
            raise
        except Exception as exc:
            raise StorageError(f"sqlite write failed: {exc}") from exc
        generation = self._barrier(direct, durable)
        if generation:
            self._get_syncer().sync(generation)
        return result

    def _barrier(self, direct: _Connection, durable: bool) -> int:
        """After a transaction on the loop's connection: the generation its answer
        must wait for (0: none)."""
        if not self._adaptive:
            return 0
        return self._generation(direct.conn.execute("PRAGMA data_version").fetchone()[0], durable)

    def _generation(self, version: int, durable: bool) -> int:
        """The generation to wait for, ``version`` being the loop connection's
        ``data_version`` now. A durable transaction waits for its own fsync. Any
        other waits only if what it read may not be on disk yet: this process's
        commits not yet synced, or commits by other connections since the last look
        (they may have committed at NORMAL too, and their writer may not have synced)."""
        syncer = self._get_syncer()
        fresh, self._seen_version = version != self._seen_version, version
        if durable or fresh:
            return syncer.committed()
        return syncer.unsynced()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._batches.pop(loop)
        try:
            with self._direct_connection() as direct:
                if direct is not None and self._apply(direct, batch, direct=True):
                    return
        except Exception as exc:  # a bug, not a write's failure: fail the batch, not the loop
            _settle(batch, [None] * len(batch), exc)
            return
        self._enqueue(batch)  # the lock is taken: the writer thread waits for it

    def _get_syncer(self) -> Syncer:
        if self._syncer is None:
            try:
                self._syncer = Syncer(self._wal_path)
            except OSError as exc:
                raise StorageError(f"cannot open the SQLite WAL to sync it: {exc}") from exc
        return self._syncer

    # -- either way ------------------------------------------------------------

    def _apply(self, conn: _Connection, batch: list[_Pending], *, direct: bool) -> bool:
        """Apply ``batch`` in one transaction on ``conn`` and answer it. On the loop
        (``direct``), a locked database answers nothing and returns False."""
        writes = [i.write for i in batch]
        durable = any(i.durable for i in batch)
        if not direct and not durable and self._adaptive:
            # What it reads may come from another process's unsynced commit: FULL
            # syncs the WAL, theirs included, before this commit is visible.
            durable = self._fresh(conn)
        try:
            try:
                if durable and self._syncer is not None:
                    self._syncer.check()
                results = conn.run(writes, durable=durable)
            except Busy:
                if direct:
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
                _settle(batch, [None] * len(batch), exc)
                return True
            # One write failed for good (say, the disk is full): give every other
            # write of the batch its own transaction so that only that one fails.
            for item in batch:
                if not self._apply(conn, [item], direct=direct):
                    self._enqueue([item])
            return True
        generation = self._barrier(conn, durable) if direct else 0
        if not generation:
            _settle(batch, results, None)
        else:
            self._get_syncer().after_sync(generation, lambda error: _settle(batch, results, error))
        return True

    def _fresh(self, conn: _Connection) -> bool:
        """Whether another connection committed since the writer thread last looked."""
        version = conn.conn.execute("PRAGMA data_version").fetchone()[0]
        fresh, self._thread_version = version != self._thread_version, version
        return bool(fresh)

    # -- on the writer thread --------------------------------------------------

    def _run(self) -> None:
        conn = _Connection(self._connect(), adaptive=self._adaptive)
        direct = self._connect()
        direct.execute("PRAGMA busy_timeout = 0")  # a lock held elsewhere: queue instead
        if self._adaptive:
            direct.execute("PRAGMA synchronous = NORMAL")  # the syncer syncs
            main = [row[2] for row in direct.execute("PRAGMA database_list") if row[1] == "main"]
            self._wal_path = f"{main[0]}-wal" if main and main[0] else ""
            self._adaptive = bool(self._wal_path)  # a database without a file has no WAL
            self._seen_version = direct.execute("PRAGMA data_version").fetchone()[0]
        self._thread_version = conn.conn.execute("PRAGMA data_version").fetchone()[0]
        self._direct = _Connection(direct, adaptive=False)
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
                    self._apply(conn, batch, direct=False)
        finally:
            with self._gate:
                self._direct = None
                direct.close()
            conn.conn.close()


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
