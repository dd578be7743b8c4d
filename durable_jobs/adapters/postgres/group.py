"""Group commit: commits that queue up while others run share the next transaction.

A commit that finds a lane free starts a batch of its own at once, so an idle store
adds no latency. Commits arriving while every lane is busy wait in a queue, and the
first lane to finish takes all of them in one batch: under load, one round trip and
one WAL flush serve many commits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

from ..answers import answer

T = TypeVar("T")
R = TypeVar("R")


class _Waiting(Generic[T, R]):
    __slots__ = ("future", "item", "loop")

    def __init__(self, item: T, loop: asyncio.AbstractEventLoop, future: asyncio.Future[R]):
        self.item, self.loop, self.future = item, loop, future


def _answer(batch: Sequence[_Waiting[Any, Any]], outcomes: Sequence[Any]) -> None:
    answer((w.loop, w.future, o) for w, o in zip(batch, outcomes, strict=True))


class GroupCommit(Generic[T, R]):
    """Runs submitted items through ``apply`` in batches on ``executor``.

    ``apply`` gets a batch and returns one outcome per item, in order: a result, or
    an exception for that item alone. If it raises, every item of the batch fails
    with that error. At most ``lanes`` batches run at once.
    """

    def __init__(
        self,
        apply: Callable[[list[T]], Sequence[R | Exception]],
        executor: Executor,
        *,
        lanes: int,
        max_batch: int = 64,
    ) -> None:
        self._apply = apply
        self._executor = executor
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Waiting[T, R]] = []
        self._idle_lanes = lanes

    async def submit(self, item: T) -> R:
        """The outcome of ``item``, once the batch it joined has run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._pending.append(_Waiting(item, loop, future))
            start = self._idle_lanes > 0
            if start:
                self._idle_lanes -= 1
        if start:
            self._start_lane()
        return await future

    def _start_lane(self) -> None:
        try:
            self._executor.submit(self._drain)
        except RuntimeError as exc:  # the executor was shut down: fail what waits
            with self._lock:
                failed, self._pending = self._pending, []
                self._idle_lanes += 1
            _answer(failed, [exc] * len(failed))

    def _drain(self) -> None:
        while batch := self._take():
            self._run(batch)

    def _take(self) -> list[_Waiting[T, R]]:
        with self._lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            if not batch:
                self._idle_lanes += 1
        return batch

    def _run(self, batch: list[_Waiting[T, R]]) -> None:
        # A caller that gave up before its batch started is left out of it.
        live = [waiting for waiting in batch if not waiting.future.done()]
        if not live:
            return
        try:
            outcomes: Sequence[Any] = self._apply([waiting.item for waiting in live])
        except Exception as exc:
            outcomes = [exc] * len(live)
        _answer(live, outcomes)
