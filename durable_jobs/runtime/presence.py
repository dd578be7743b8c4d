"""A worker's row in the store's registry, and the upkeep it does while it lives."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Sized

from ..adapters.protocols import StorageAdapter
from ..adapters.records import WorkerRecord
from ..errors import StorageError
from ..logs import get_logger, storage_failed
from .runtimes import Runtimes

log = get_logger("durable_jobs.worker")

EVENTS_KEPT = 10_000
"""Events the log keeps at most; older ones are trimmed by the workers."""
EVENTS_MAX_AGE = 24 * 3600.0
"""Seconds an event is kept at most."""


async def trim_events(storage: StorageAdapter, now: float) -> int:
    """Trim the event log to its retention; return how many events went. The store
    deletes a bounded number per call, so this calls it until nothing is left to go."""
    gone = 0
    for _ in range(100):
        trimmed = await storage.trim_events(keep=EVENTS_KEPT, before=now - EVENTS_MAX_AGE)
        gone += trimmed
        if not trimmed:
            break
    return gone


class Presence:
    """Registers a worker, refreshes its row and trims the event log every third of a
    lease, and deregisters on a clean stop (SEMANTICS: workers)."""

    def __init__(
        self, runtimes: Runtimes, jobs: frozenset[str], concurrency: int, running: Sized
    ) -> None:
        self.runtimes = runtimes
        self.worker_id = uuid.uuid4().hex
        self.jobs = tuple(sorted(jobs))
        self.concurrency = concurrency
        self._running = running  # the handlers running now
        self._started_at = runtimes.clock.now()

    def _record(self, now: float) -> WorkerRecord:
        return WorkerRecord(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            last_seen_at=now,
            concurrency=self.concurrency,
            running=len(self._running),
            jobs=self.jobs,
        )

    async def register(self) -> None:
        try:
            await self.runtimes.storage.register_worker(self._record(self.runtimes.clock.now()))
        except StorageError as exc:  # the heartbeat registers it once the store answers
            storage_failed(log, "worker.register_failed", exc)

    async def run(self) -> None:
        """Refresh the row and trim the event log until cancelled. Every worker trims:
        trimming what another just trimmed costs one indexed read."""
        storage = self.runtimes.storage
        interval = self.runtimes.settings.lease / 3
        while True:
            await asyncio.sleep(interval)
            now = self.runtimes.clock.now()
            try:
                running = len(self._running)
                if not await storage.heartbeat_worker(self.worker_id, now, running):
                    await storage.register_worker(self._record(now))  # pruned meanwhile
                await trim_events(storage, now)
            except StorageError as exc:
                storage_failed(log, "worker.heartbeat_failed", exc)

    async def deregister(self) -> None:
        try:
            await self.runtimes.storage.deregister_worker(self.worker_id)
        except StorageError as exc:  # its row then ages out after three leases
            storage_failed(log, "worker.deregister_failed", exc)
