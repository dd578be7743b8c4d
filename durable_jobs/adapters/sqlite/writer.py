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
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ...errors import StorageError
from ..retry import StorageRetry
from .syncer import Syncer, on_loop

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
    """Answer every write of a batch, with one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Any]]] = {}
    for item, result in zip(batch, results, strict=True):
        by_loop.setdefault(item.loop, []).append((item, result))

    def deliver(answers: list[tuple[_Pending, Any]]) -> None:
        for item, result in answers:
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)

    for loop, answers in by_loop.items():
        on_loop(loop, deliver, answers)


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
        self,
        connect: Callable[[], sqlite3.Connection],
        retry: StorageRetry,
        *,
        adaptive: bool,
        wal_path: str,
    ) -> None:
        self._connect = connect
        self._retry = retry
        # FULL: the loop's transactions commit at NORMAL and the syncer makes them
        # durable. Any other level the store was given is kept as it is.
        self._adaptive = adaptive
        self._wal_path = wal_path
        self._syncer: Syncer | None = None
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
        self._queue.put(_Pending(write, durable, loop, future))
        return await future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        if self._syncer is not None:
            self._syncer.stop()

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
            yield direct if self._direct is direct else None  # else closed by stop()
        finally:
            self._gate.release()

    def _apply_alone(self, direct: _Connection, write: Write, durable: bool) -> Any:
        deferred = durable and self._adaptive
        if deferred:
            self._get_syncer().check()
        try:
            result = direct.run([write], durable=durable and not deferred)[0]
        except Busy:
            raise
        except Exception as exc:
            raise StorageError(f"sqlite write failed: {exc}") from exc
        if deferred:
            syncer = self._get_syncer()
            syncer.sync(syncer.committed())
        return result

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._batches.pop(loop)
        with self._direct_connection() as direct:
            if direct is not None and self._apply(direct, batch, direct=True):
                return
        for item in batch:  # the lock is taken: the writer thread waits for it
            self._queue.put(item)

    def _get_syncer(self) -> Syncer:
        if self._syncer is None:
            self._syncer = Syncer(self._wal_path)
        return self._syncer

    # -- either way ------------------------------------------------------------

    def _apply(self, conn: _Connection, batch: list[_Pending], *, direct: bool) -> bool:
        """Apply ``batch`` in one transaction on ``conn`` and answer it. On the loop
        (``direct``), a locked database answers nothing and returns False."""
        writes = [i.write for i in batch]
        durable = any(i.durable for i in batch)
        deferred = direct and durable and self._adaptive
        try:
            try:
                if deferred:
                    self._get_syncer().check()
                results = conn.run(writes, durable=durable and not deferred)
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
                    self._queue.put(item)
            return True
        if not deferred:
            _settle(batch, results, None)
            return True
        now = [(i, r) for i, r in zip(batch, results, strict=True) if not i.durable]
        later = [(i, r) for i, r in zip(batch, results, strict=True) if i.durable]
        if now:
            _settle([i for i, _ in now], [r for _, r in now], None)
        syncer = self._get_syncer()
        syncer.after_sync(
            syncer.committed(),
            lambda error: _settle([i for i, _ in later], [r for _, r in later], error),
        )
        return True

    # -- on the writer thread --------------------------------------------------

    def _run(self) -> None:
        conn = _Connection(self._connect(), adaptive=self._adaptive)
        direct = self._connect()
        direct.execute("PRAGMA busy_timeout = 0")  # a lock held elsewhere: queue instead
        if self._adaptive:
            direct.execute("PRAGMA synchronous = NORMAL")  # the syncer syncs
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
