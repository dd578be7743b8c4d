"""One writer thread per store and process, grouping concurrent writes into one transaction.

SQLite admits one writer at a time anyway; funnelling this process's writes
through one connection means that commits finishing together share one
``BEGIN IMMEDIATE … COMMIT`` and one fsync (group commit), while each write is
still applied, fenced and answered on its own.
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


def _settle(item: _Pending, result: Any, error: BaseException | None) -> None:
    def deliver() -> None:
        if item.future.done():
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the caller's loop has closed
        item.loop.call_soon_threadsafe(deliver)


class Writer:
    """Runs writes on a dedicated connection, batching whatever is queued."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], retry: StorageRetry, *, adaptive: bool
    ) -> None:
        """With ``adaptive``, batches of non-durable writes skip the fsync (NORMAL);
        otherwise the connection keeps the synchronous level the store set."""
        self._connect = connect
        self._retry = retry
        self._adaptive = adaptive
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="durable-jobs-sqlite", daemon=True)
        self._thread.start()

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
        conn = self._connect()
        synchronous = "FULL"
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
                wanted = "FULL" if any(i.durable for i in batch) else "NORMAL"
                if self._adaptive and wanted != synchronous:
                    conn.execute(f"PRAGMA synchronous = {wanted}")
                    synchronous = wanted
                self._apply(conn, batch)
        finally:
            conn.close()

    def _apply(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        try:
            results = self._retry.call(
                "sqlite write", lambda: transaction(conn, [i.write for i in batch]), (Busy,)
            )
        except StorageError as exc:
            if len(batch) == 1 or exc.retryable:
                for item in batch:
                    _settle(item, None, exc)
                return
            # One write failed for good (say, the disk is full): give every other
            # write of the batch its own transaction so that only that one fails.
            for item in batch:
                self._apply(conn, [item])
            return
        for item, result in zip(batch, results, strict=True):
            _settle(item, result, None)


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
