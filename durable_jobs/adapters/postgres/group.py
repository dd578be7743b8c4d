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
from concurrent.futures import Executor, Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


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
        self._pending: list[tuple[T, Future[R]]] = []
        self._idle_lanes = lanes

    async def submit(self, item: T) -> R:
        """The outcome of ``item``, once the batch it joined has run."""
        future: Future[R] = Future()
        with self._lock:
            self._pending.append((item, future))
            start = self._idle_lanes > 0
            if start:
                self._idle_lanes -= 1
        if start:
            self._start_lane()
        return await asyncio.wrap_future(future)

    def _start_lane(self) -> None:
        try:
            self._executor.submit(self._drain)
        except RuntimeError as exc:  # the executor was shut down: fail what waits
            with self._lock:
                failed, self._pending = self._pending, []
                self._idle_lanes += 1
            for _, future in failed:
                if future.set_running_or_notify_cancel():
                    future.set_exception(exc)

    def _drain(self) -> None:
        while batch := self._take():
            self._run(batch)

    def _take(self) -> list[tuple[T, Future[R]]]:
        with self._lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            if not batch:
                self._idle_lanes += 1
        return batch

    def _run(self, batch: list[tuple[T, Future[R]]]) -> None:
        # A caller that gave up before its batch started is left out of it.
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            outcomes = self._apply([item for item, _ in live])
        except Exception as exc:
            for _, future in live:
                future.set_exception(exc)
            return
        for (_, future), outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
