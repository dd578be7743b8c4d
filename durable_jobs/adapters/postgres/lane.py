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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import TupleRow

from .group import settle

T = TypeVar("T")
R = TypeVar("R")
AsyncConnection = psycopg.AsyncConnection[TupleRow]
Apply = Callable[[list[T], AsyncConnection], Awaitable[Sequence[R | Exception]]]


class Lane(Generic[T, R]):
    """Applies items of one kind, submitted on one event loop, in batches.

    ``apply`` gets a batch and returns one outcome per item, in order: a result or an
    exception for that item alone. If it raises a ``transient`` error, every item of
    the batch fails with it (their callers retry); any other database error sends each
    item on its own, so that one bad item does not sink the others.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[AsyncConnection]],
        apply: Apply[T, R],
        transient: tuple[type[BaseException], ...],
        *,
        max_batch: int = 64,
    ) -> None:
        self._connect = connect
        self._apply = apply
        self._transient = transient
        self._max_batch = max_batch
        self._conn: AsyncConnection | None = None
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._draining = False

    async def submit(self, item: T) -> R:
        """The outcome of ``item``, once the batch it joined has run."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def close(self) -> None:
        """Close the connection, from any thread (its loop may be gone)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                live = [(item, future) for item, future in batch if not future.done()]
                if live:
                    outcomes = await self._outcomes([item for item, _ in live])
                    settle([(f, o) for (_, f), o in zip(live, outcomes, strict=True)])
        finally:
            self._draining = False

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
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        try:
            return await self._apply(items, self._conn)
        except psycopg.OperationalError:
            if self._conn.broken:
                self.close()  # the next batch connects again
            raise
