"""One writer thread per store and process, grouping concurrent writes into one transaction.

SQLite admits one writer at a time anyway; funnelling this process's writes
through one connection means that commits finishing together share one
``BEGIN IMMEDIATE … COMMIT`` and one fsync (group commit), while each write is
still applied, fenced and answered on its own.

A write with nothing to group with gains nothing from the thread, and the hand-over
costs more than the transaction (two thread wake-ups, often on another CPU). The
store runs such a lone write on its caller's thread instead, on a second connection
that never waits for a lock: when anything else is writing, the write joins the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import attrs

from ...errors import StorageError
from ..retry import StorageRetry

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
        with contextlib.suppress(RuntimeError):  # the caller's loop has closed
            loop.call_soon_threadsafe(deliver, answers)


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
    """Runs writes on a dedicated connection, batching whatever is queued."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], retry: StorageRetry, *, adaptive: bool
    ) -> None:
        self._connect = connect
        self._retry = retry
        self._adaptive = adaptive
        # Held while either connection of this writer is in a transaction, so that a
        # write on the caller's thread never waits behind the writer thread's.
        self._gate = threading.Lock()
        self._direct: _Connection | None = None
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="durable-jobs-sqlite", daemon=True)
        self._thread.start()

    def try_direct(self, write: Write, *, durable: bool) -> tuple[bool, Any]:
        """Apply ``write`` on the caller's thread unless that would mean waiting (for
        queued writes, this process's other transaction, or another process's lock).

        Returns ``(True, result)`` when applied, ``(False, None)`` when the caller
        should ``submit`` it instead. Raises ``StorageError`` when it failed for good.
        """
        direct = self._direct  # opened by the writer thread: opening may wait for a lock
        if direct is None or not self._queue.empty() or not self._gate.acquire(blocking=False):
            return False, None
        try:
            if self._direct is not direct:  # closed by stop()
                return False, None
            try:
                return True, direct.run([write], durable=durable)[0]
            except Busy:
                return False, None
            except Exception as exc:
                raise StorageError(f"sqlite write failed: {exc}") from exc
        finally:
            self._gate.release()

    async def submit(self, write: Write, *, durable: bool) -> Any:
        """Apply ``write`` in a write transaction; ``durable`` ones are fsynced before
        the answer (claims and releases need not be: losing one loses nothing)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Pending(write, durable, loop, future))
        return await future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = _Connection(self._connect(), adaptive=self._adaptive)
        direct = self._connect()
        direct.execute("PRAGMA busy_timeout = 0")  # a lock held elsewhere: queue instead
        self._direct = _Connection(direct, adaptive=self._adaptive)
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
                    self._apply(conn, batch)
        finally:
            with self._gate:
                self._direct = None
                direct.close()
            conn.conn.close()

    def _apply(self, conn: _Connection, batch: list[_Pending]) -> None:
        writes = [i.write for i in batch]
        durable = any(i.durable for i in batch)
        try:
            try:
                results = conn.run(writes, durable=durable)  # the common case: no retries
            except Busy:
                results = self._retry.call(
                    "sqlite write", lambda: conn.run(writes, durable=durable), (Busy,)
                )
            except Exception as exc:  # never let the writer thread die
                raise StorageError(f"sqlite write failed: {exc}") from exc
        except StorageError as exc:
            if len(batch) == 1 or exc.retryable:
                _settle(batch, [None] * len(batch), exc)
                return
            # One write failed for good (say, the disk is full): give every other
            # write of the batch its own transaction so that only that one fails.
            for item in batch:
                self._apply(conn, [item])
            return
        _settle(batch, results, None)


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
