"""The worker: claims due alarms and runs them, up to ``concurrency`` at a time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from ..adapters.records import Claim
from ..errors import DurableJobsError, StorageError
from ..logs import get_logger
from .presence import Presence
from .runtime import JobsRuntime
from .runtimes import Runtimes
from .tracker import HttpTracker

log = get_logger("durable_jobs.worker")

ABANDON_AFTER = 2.0
"""Seconds a stopping worker waits, after its grace, for handlers it cancelled."""


class Worker:
    """An in-process alarm dispatcher. Use as ``async with jobs.worker(): ...``.

    Alarms set in this process wake it at once; alarms set by other processes are
    seen within ``poll_interval`` (or sooner, where the back-end notifies). On
    ``stop`` it stops claiming, lets running handlers finish within ``grace``
    seconds, cancels the rest and releases their claims.
    """

    def __init__(
        self,
        runtimes: Runtimes,
        *,
        tracker: HttpTracker | None = None,
        concurrency: int,
        poll_interval: float,
        grace: float,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"invalid concurrency {concurrency!r}: must be at least 1")
        self.runtimes = runtimes
        self.tracker = tracker
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.grace = grace
        self.delivered = 0
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._tracker: asyncio.Task[None] | None = None
        self._presence: Presence | None = None
        self._upkeep: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        runtime = await self.runtimes.current()
        loop = asyncio.get_running_loop()
        self._presence = Presence(self.runtimes, runtime.job_names, self.concurrency, self._running)
        await self._presence.register()
        self._upkeep = loop.create_task(self._presence.run())
        self._main = loop.create_task(self._run(runtime))
        if self.tracker is not None:
            self._tracker = loop.create_task(self.tracker.run(self.runtimes.storage))

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT; a SIGINT while stopping exits the
        process at once with status 130, leaving the claims of running handlers to
        expire."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self._interrupted)

    def _interrupted(self) -> None:
        if not self._stopping.is_set():
            self.request_stop()
            return
        # A second Ctrl-C means "now": the graceful drain may wait up to ``grace`` for
        # handlers, and a plain handler's thread can block interpreter exit for ever.
        log.warning("worker.forced_exit", running=len(self._running))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)

    def request_stop(self) -> None:
        log.info("worker.stopping", running=len(self._running))
        self._stopping.set()
        self._wake.set()

    async def wait(self) -> None:
        """Until the worker has stopped."""
        if self._main is not None:
            await self._main

    async def stop(self) -> None:
        self.request_stop()
        await self.wait()

    async def _run(self, runtime: JobsRuntime) -> None:
        log.info("worker.started", concurrency=self.concurrency, owner=runtime.shell.owner)
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self._running)
                if free > 0 and await self._claim(runtime, free) == free:
                    continue  # more may be due right now
                await self._sleep(runtime, busy=free <= 0)
        finally:
            await self._drain(runtime)
            log.info("worker.stopped", delivered=self.delivered)

    async def _claim(self, runtime: JobsRuntime, free: int) -> int:
        try:
            claims = await runtime.claim_due(free)
        except DurableJobsError as exc:
            _failed("worker.claim_failed", exc)
            return 0
        for claim in claims:
            task = asyncio.get_running_loop().create_task(self._deliver(runtime, claim))
            self._running.add(task)
            task.add_done_callback(self._finished)
        return len(claims)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self.delivered += 1
        self._wake.set()

    async def _deliver(self, runtime: JobsRuntime, claim: Claim) -> None:
        try:
            await runtime.deliver(claim)
        except DurableJobsError as exc:
            log.error("alarm.delivery_failed", instance_id=claim.instance_id, error=str(exc))
        except Exception as exc:  # a bug: told, and the worker goes on
            log.exception("alarm.delivery_crashed", instance_id=claim.instance_id, error=repr(exc))

    async def _sleep(self, runtime: JobsRuntime, *, busy: bool) -> None:
        self._wake.clear()
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if not busy:
            timeout = await self._until_next_alarm(runtime)
            if timeout <= 0:
                # Due since we claimed: claim again now, not after a poll interval.
                waiters[0].cancel()
                await asyncio.gather(waiters[0], return_exceptions=True)
                return
            waiters.append(asyncio.ensure_future(self.runtimes.scheduler.wait_for_alarm(timeout)))
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _until_next_alarm(self, runtime: JobsRuntime) -> float:
        """Seconds until the earliest unclaimed alarm, at most the poll interval."""
        try:
            next_at = await runtime.next_alarm_at()
        except DurableJobsError as exc:
            _failed("worker.next_alarm_failed", exc)
            return self.poll_interval
        if next_at is None:
            return self.poll_interval
        return min(self.poll_interval, next_at - self.runtimes.clock.now())

    async def _drain(self, runtime: JobsRuntime) -> None:
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=self.grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("worker.cancelled_after_grace", cancelled=len(late))
                # A plain handler's thread cannot be cancelled: its call waits for it,
                # keeping the claim. Past this, a second cancellation abandons it with
                # its claim, which then expires (SEMANTICS 10).
                _, stuck = await asyncio.wait(late, timeout=ABANDON_AFTER)
                for task in stuck:
                    task.cancel()
                if stuck:
                    log.warning("worker.abandoned_threads", abandoned=len(stuck))
                await asyncio.gather(*late, return_exceptions=True)
        await runtime.shell.close()
        if self._upkeep is not None and self._presence is not None:
            self._upkeep.cancel()
            await asyncio.gather(self._upkeep, return_exceptions=True)
            await self._presence.deregister()
        if self._tracker is not None and self.tracker is not None:
            self._tracker.cancel()
            await asyncio.gather(self._tracker, return_exceptions=True)
            with contextlib.suppress(DurableJobsError):
                await self.tracker.ship(self.runtimes.storage)


def _failed(event: str, exc: DurableJobsError) -> None:
    # A store that gave up retrying has logged the outage once, when it began
    # (storage.unavailable): a line per poll while it lasts would bury that one.
    if isinstance(exc, StorageError) and exc.retryable:
        log.debug(event, error=str(exc))
    else:
        log.error(event, error=str(exc))
