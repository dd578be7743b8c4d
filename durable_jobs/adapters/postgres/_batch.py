"""Batches: the calls of one kind an event loop queues go out together.

The claims (or commits) a loop queues while it runs its ready tasks go out as one
statement at its next turn; while that statement is out, the next batch gathers. A
``Batcher`` belongs to one loop and to one kind of call, and how a batch reaches
the server is its ``send``: on a connection of the loop's own (``LoopConnection``,
no thread involved), or on a pooled connection from a thread, for what needs a
blocking connection (pipelined transactions) and for loops psycopg cannot drive (the
Windows proactor loop). The loop's own connection is the fast path: a thread costs two
wake-ups per batch and must win the GIL back from a busy event loop to read each answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import TupleRow

from ...errors import StorageError
from ..answers import settle
from ..forks import pid

T = TypeVar("T")
R = TypeVar("R")
AsyncConnection = psycopg.AsyncConnection[TupleRow]
Send = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]

SPLIT_FROM = 16  # callers queued together that go out as two statements


def _nothing() -> None:
    return None


class Batcher(Generic[T, R]):
    """Sends items of one kind, submitted on one event loop, in batches.

    ``send`` gets a batch and returns one outcome per item, in order: a result or an
    exception for that item alone. If it raises a ``transient`` error, every item of
    the batch fails with it (their callers retry); any other database error sends each
    item on its own, so that one bad item does not sink the others. ``reset`` lets go
    of what ``send`` holds: once the batcher is closed, and when a batch is cancelled
    mid-flight (what it left on its connection is unknown).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Send[T, R],
        transient: tuple[type[BaseException], ...],
        *,
        reset: Callable[[], None] = _nothing,
        max_batch: int = 64,
    ) -> None:
        self._loop = weakref.ref(loop)  # not a strong one: the loop's death closes the batcher
        self._send = send
        self._transient = transient
        self._reset = reset
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._live: list[tuple[T, asyncio.Future[R]]] = []  # the batch in flight
        self._drain_task: asyncio.Task[None] | None = None
        self._split = False  # the batch in flight is the first half of a crowd
        self._closed = False

    async def submit(self, item: T) -> R:
        """The outcome of ``item``, once the batch it joined has been sent."""
        if self._closed:
            raise StorageError("the PostgreSQL store was closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._drain_task is None:
            self._start_drain(loop)
        return await future

    def close(self) -> None:
        """Close, from any thread: on its own loop while that runs (after the batch in
        flight), at once if the loop is gone or stopped."""
        self._closed = True
        loop = self._loop()
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing runs there
                loop.call_soon_threadsafe(self._close_here)
                return
        self._reset()

    def _close_here(self) -> None:
        if self._drain_task is None or self._drain_task.done():
            self._reset()
        # else the drain sees the batcher closed after its batch and resets it

    def _start_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        self._drain_task = loop.create_task(self._drain())
        self._drain_task.add_done_callback(self._drained)

    async def _drain(self) -> None:
        try:
            while self._pending and not self._closed:
                batch = self._next_batch()
                self._live = [(item, future) for item, future in batch if not future.done()]
                if self._live:
                    outcomes = await self._outcomes([item for item, _ in self._live])
                    settle([(f, o) for (_, f), o in zip(self._live, outcomes, strict=True)])
                self._live = []
        except BaseException:
            self._reset()  # cancelled (its loop shutting down) mid-batch
            raise

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        size = len(self._pending)
        # A crowd goes out in two halves: the second is on the wire while the loop
        # hands out the first's answers and their callers run on. Once split, the two
        # halves keep apart as two groups, each a batch.
        split = size >= SPLIT_FROM and not self._split
        self._split = split
        size = min((size + 1) // 2 if split else size, self._max_batch)
        batch = self._pending[:size]
        del self._pending[:size]
        return batch

    def _drained(self, task: asyncio.Task[None]) -> None:
        """When the drain ends, even cancelled before it began."""
        self._drain_task = None
        ended = not task.cancelled() and task.exception() is None
        if ended and not self._closed:
            if self._pending:  # queued after the drain's last look: drain again
                self._start_drain(task.get_loop())
            return
        # Nobody will send what is left: let its callers go, and the loop too (a task
        # and its futures hold it).
        left, self._live, self._pending = self._live + self._pending, [], []
        for _, future in left:
            if future.done():
                continue
            if self._closed:
                future.set_exception(StorageError("the PostgreSQL store was closed"))
            else:
                future.cancel()
        if self._closed:
            self._reset()

    async def _outcomes(self, items: list[T]) -> Sequence[Any]:
        try:
            return await self._send(items)
        except self._transient as exc:
            return [exc] * len(items)
        except psycopg.Error as exc:
            if len(items) == 1:
                return [exc]
        except Exception as exc:  # a bug, not the database: fail the batch, not the loop
            return [exc] * len(items)
        outcomes: list[Any] = []
        for item in items:
            try:
                outcomes += await self._send([item])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


class LoopConnection:
    """A connection of one event loop's own: opened on first use, again once broken."""

    def __init__(self, connect: Callable[[], Awaitable[AsyncConnection]]) -> None:
        self._connect = connect
        self._conn: AsyncConnection | None = None
        self._pid = 0  # the process that opened the connection

    async def run(self, work: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        """``work`` on the connection."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await self._connect()
            self._pid = pid()
        try:
            return await work(conn)
        except psycopg.OperationalError:
            if conn.broken and self._conn is conn:
                self.close()  # the next batch connects again
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        # A forked child must not close its parent's connection under it.
        if conn is not None and not conn.closed and self._pid == pid():
            conn.pgconn.finish()
