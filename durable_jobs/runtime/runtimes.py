"""The jobs bound to one store, and a ``JobsRuntime`` for each event loop using them.

The client and the worker reach the store through this alone, so neither depends
on the application object that makes them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping

import attrs

from ..adapters.protocols import Clock, SchedulerAdapter, StorageAdapter
from ..adapters.records import WorkerRecord
from ..errors import JobNotFoundError
from ..jobs.definitions import JobDefinition
from .events import JobEvent
from .listing import LIVE_LEASES
from .runtime import JobsRuntime
from .tracing import Tracing


@attrs.frozen(kw_only=True)
class Settings:
    """How activations of this store behave (see ``create_durable_jobs``)."""

    lease: float
    claim_wait: float
    max_recoveries: int
    history_limit: int = 100
    heartbeat: bool = True


class Runtimes:
    """Job definitions bound to one store; one runtime per event loop, made on first use.

    The runtimes of several loops share the store, and claims keep their calls to one
    instance apart as they would keep apart two processes.
    """

    def __init__(
        self,
        jobs: Mapping[str, JobDefinition],
        *,
        storage: StorageAdapter,
        scheduler: SchedulerAdapter,
        clock: Clock,
        settings: Settings,
        publish: Callable[[list[JobEvent]], None],
        subscribing: Callable[[], Awaitable[None] | None],
    ) -> None:
        self.jobs = dict(jobs)
        self.storage = storage
        self.scheduler = scheduler
        self.clock = clock
        self.settings = settings
        self._names = {id(job): name for name, job in self.jobs.items()}
        self._publish = publish
        self._subscribing = subscribing
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, JobsRuntime] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._opened = False
        self._opening: concurrent.futures.Future[None] | None = None
        self._served: tuple[float, frozenset[str]] | None = None
        self.tracing: Tracing | None = None
        self.on_delivery: list[Callable[[str, float], None]] = []
        """Called with (job name, seconds late) as a due alarm is delivered."""

    def job_name(self, job: object, kind: str) -> str:
        """The registered name of ``job`` (a definition or a name) of the given kind."""
        name = job if isinstance(job, str) else self._names.get(id(job))
        definition = self.jobs.get(name) if name is not None else None
        if definition is None:
            known = ", ".join(sorted(self.jobs)) or "none"
            shown = job if isinstance(job, str) else f"<unregistered {type(job).__name__}>"
            raise JobNotFoundError(f"no job {shown!r} is registered (registered: {known})")
        if definition.kind != kind:
            raise JobNotFoundError(f"job {name!r} is a {definition.kind} job, not a {kind} job")
        assert name is not None
        return name

    async def current(self) -> JobsRuntime:
        """The runtime of the running event loop, made on first use."""
        loop = asyncio.get_running_loop()
        runtime = self._by_loop.get(loop)
        if runtime is None:
            await self.open()
            with self._lock:
                runtime = self._by_loop.get(loop)
                if runtime is None:
                    runtime = self._by_loop[loop] = self._make()
        return runtime

    async def open(self) -> None:
        """Open the store, once: its schema is then up to date. Calls made while it
        opens, from any loop, wait for that one opening."""
        if self._opened:
            return
        with self._lock:
            opening, mine = self._opening, self._opening is None
            if opening is None:
                opening = self._opening = concurrent.futures.Future()
        if not mine:
            await asyncio.wrap_future(opening)
            return
        try:
            await self.storage.open()
        except BaseException as exc:
            self._opening = None  # the next call tries again
            opening.set_exception(exc)
            raise
        self._opened = True
        opening.set_result(None)

    def _make(self) -> JobsRuntime:
        settings = self.settings
        runtime = JobsRuntime(
            self.jobs,
            storage=self.storage,
            scheduler=self.scheduler,
            clock=self.clock,
            publish=self._publish,
            subscribing=self._subscribing,
            lease=settings.lease,
            claim_wait=settings.claim_wait,
            max_recoveries=settings.max_recoveries,
            history_limit=settings.history_limit,
            heartbeat=settings.heartbeat,
            on_delivery=self.on_delivery,
        )
        runtime.shell.tracing = self.tracing
        return runtime

    def set_tracing(self, tracing: Tracing | None) -> None:
        """Trace the handler calls of every runtime, those made before too."""
        self.tracing = tracing
        with self._lock:
            for runtime in self._by_loop.values():
                runtime.shell.tracing = tracing

    async def live_workers(self) -> list[WorkerRecord]:
        """Workers that refreshed their row within the last three leases."""
        await self.open()
        now = self.clock.now()
        return await self.storage.list_workers(now - LIVE_LEASES * self.settings.lease)

    async def served_jobs(self) -> frozenset[str]:
        """The jobs some live worker serves; read again after a third of a lease."""
        now = time.monotonic()
        if self._served is None or now - self._served[0] > self.settings.lease / 3:
            jobs = frozenset(job for w in await self.live_workers() for job in w.jobs)
            self._served = (now, jobs)
        return self._served[1]

    async def close_current(self) -> None:
        """Release the running loop's claims; close the store once no loop uses it."""
        runtime = self._by_loop.pop(asyncio.get_running_loop(), None)
        if runtime is not None:
            await runtime.close()
        if not self._by_loop and self._opened:
            self._opened, self._opening = False, None
            await self.storage.close()
