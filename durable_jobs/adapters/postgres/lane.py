"""Group commit on the event loop: batches of one kind on a connection of the loop's own.

The claims and commits an event loop queues while it runs its ready tasks go out as
one statement at its next turn, on an ``AsyncConnection`` that loop owns; while that
statement is out, the next batch gathers. No thread is involved: a pool thread would
cost two wake-ups per batch, and (worse) it must win the GIL back from the busy event
loop to read each answer. A loop psycopg cannot drive (the Windows proactor loop)
keeps the pool threads (``group.py``).
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
Apply = Callable[[list[T], AsyncConnection], Awaitable[Sequence[R | Exception]]]


SPLIT_FROM = 16  # callers queued together that go out as two statements


class Lane(Generic[T, R]):
    """Applies items of one kind, submitted on one event loop, in batches.

    ``apply`` gets a batch and returns one outcome per item, in order: a result or an
    exception for that item alone. If it raises a ``transient`` error, every item of
    the batch fails with it (their callers retry); any other database error sends each
    item on its own, so that one bad item does not sink the others.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connect: Callable[[], Awaitable[AsyncConnection]],
        apply: Apply[T, R],
        transient: tuple[type[BaseException], ...],
        *,
        max_batch: int = 64,
    ) -> None:
        self._loop = weakref.ref(loop)  # not a strong one: the loop's death closes the lane
        self._connect = connect
        self._apply = apply
        self._transient = transient
        self._max_batch = max_batch
        self._conn: AsyncConnection | None = None
        self._pid = 0  # the process that opened the connection
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._live: list[tuple[T, asyncio.Future[R]]] = []  # the batch in flight
        self._drain_task: asyncio.Task[None] | None = None
        self._split = False  # the batch in flight is the first half of a crowd
        self._closed = False

    async def submit(self, item: T) -> R:
        """The outcome of ``item``, once the batch it joined has run."""
        if self._closed:
            raise StorageError("the PostgreSQL store was closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._drain_task is None:
            self._drain_task = loop.create_task(self._drain())
            self._drain_task.add_done_callback(self._drained)
        return await future

    def close(self) -> None:
        """Close the lane, from any thread: on its own loop while that runs (after
        the batch in flight), at once if the loop is gone or stopped."""
        self._closed = True
        loop = self._loop()
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing runs there
                loop.call_soon_threadsafe(self._close_here)
                return
        self._finish()

    def _close_here(self) -> None:
        if self._drain_task is None or self._drain_task.done():
            self._finish()
        # else the drain sees the lane closed after its batch and finishes it

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        # A forked child must not close its parent's connection under it.
        if conn is not None and not conn.closed and self._pid == pid():
            conn.pgconn.finish()

    async def _drain(self) -> None:
        try:
            while self._pending and not self._closed:
                size = len(self._pending)
                # A crowd goes out in two halves: the second is on the wire while the
                # loop hands out the first's answers and their callers run on. Once
                # split, the two halves keep apart as two groups, each a batch.
                split = size >= SPLIT_FROM and not self._split
                self._split = split
                size = min((size + 1) // 2 if split else size, self._max_batch)
                batch = self._pending[:size]
                del self._pending[:size]
                self._live = [(item, future) for item, future in batch if not future.done()]
                if self._live:
                    outcomes = await self._outcomes([item for item, _ in self._live])
                    settle([(f, o) for (_, f), o in zip(self._live, outcomes, strict=True)])
                self._live = []
        except BaseException:
            # Cancelled (its loop shutting down) mid-query: the connection's state is
            # unknown, so the next batch gets a new one.
            self._finish()
            raise

    def _drained(self, task: asyncio.Task[None]) -> None:
        """When the drain ends, even cancelled before it began."""
        self._drain_task = None
        ended = not task.cancelled() and task.exception() is None
        if ended and not self._closed:
            if self._pending:  # queued after the drain's last look: drain again
                self._drain_task = task.get_loop().create_task(self._drain())
                self._drain_task.add_done_callback(self._drained)
            return
        # Nobody will run what is left: let its callers go, and the loop too (a
        # task and its futures hold it).
        left, self._live, self._pending = self._live + self._pending, [], []
        for _, future in left:
            if future.done():
                continue
            if self._closed:
                future.set_exception(StorageError("the PostgreSQL store was closed"))
            else:
                future.cancel()
        if self._closed:
            self._finish()

    async def _outcomes(self, items: list[T]) -> Sequence[Any]:
        try:
            return await self._run(items)
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
                outcomes += await self._run([item])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _run(self, items: list[T]) -> Sequence[Any]:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await self._connect()
            self._pid = pid()
        try:
            return await self._apply(items, conn)
        except psycopg.OperationalError:
            if conn.broken and self._conn is conn:
                self._finish()  # the next batch connects again
            raise
