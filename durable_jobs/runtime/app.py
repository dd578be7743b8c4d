"""``create_durable_jobs``: the registry of jobs, its store, its clients and workers."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..adapters.protocols import Clock, SchedulerAdapter, StorageAdapter
from ..adapters.url import open_store, storage_url
from ..errors import DefinitionError, JobNotFoundError
from ..jobs.definitions import Continuous, Debounce, JobDefinition, Task
from ..jobs.durations import Duration, parse_duration
from .client import JobsClient
from .clock import SystemClock
from .events import EventBus, JobEvent
from .runtime import JobsRuntime

if TYPE_CHECKING:
    from .sync_client import SyncJobsClient
    from .tracker import HttpTracker
    from .worker import Worker

DEFAULT_LEASE = 30.0
DEFAULT_CLAIM_WAIT = 30.0
DEFAULT_MAX_RECOVERIES = 5


def _positive_seconds(name: str, value: Duration) -> float:
    seconds = parse_duration(value).total_seconds()  # ValueError names the input
    if seconds <= 0:
        raise ValueError(f"invalid {name} {value!r}: must be longer than zero")
    return seconds


def _check_recoveries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"invalid max_recoveries {value!r}: expected an int of 0 or more")
    return value


class DurableJobs:
    """The application: job definitions bound to one store.

    One :class:`JobsRuntime` is made per event loop that uses it; they share the
    store, and claims keep their calls to one instance apart as they would keep
    apart two processes.
    """

    def __init__(
        self,
        jobs: Mapping[str, JobDefinition],
        *,
        storage: str | tuple[StorageAdapter, SchedulerAdapter] | None = None,
        clock: Clock | None = None,
        tracker: HttpTracker | None = None,
        lease: Duration = DEFAULT_LEASE,
        claim_wait: Duration = DEFAULT_CLAIM_WAIT,
        max_recoveries: int = DEFAULT_MAX_RECOVERIES,
        heartbeat: bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.jobs = dict(_check_registry(jobs))
        self.lease = _positive_seconds("lease", lease)
        self.claim_wait = _positive_seconds("claim_wait", claim_wait)
        self.max_recoveries = _check_recoveries(max_recoveries)
        self._names = {id(job): name for name, job in self.jobs.items()}
        if isinstance(storage, tuple):
            self.storage_url = "custom"
            self.storage, self.scheduler = storage
        else:
            self.storage_url = storage_url(storage)
            self.storage, self.scheduler = open_store(self.storage_url, **(storage_options or {}))
        self.clock: Clock = clock or SystemClock()
        self.events = EventBus()
        self.tracker = tracker
        self._heartbeat = heartbeat
        self._runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, JobsRuntime] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._opened = False
        self.client = JobsClient(self)
        self._sync_client: SyncJobsClient | None = None

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

    async def runtime(self) -> JobsRuntime:
        """The runtime of the running event loop, made on first use."""
        loop = asyncio.get_running_loop()
        runtime = self._runtimes.get(loop)
        if runtime is None:
            if not self._opened:
                await self.storage.open()
                self._opened = True
            with self._lock:
                runtime = self._runtimes.get(loop)
                if runtime is None:
                    runtime = self._runtimes[loop] = self._make_runtime()
        return runtime

    def _make_runtime(self) -> JobsRuntime:
        return JobsRuntime(
            self.jobs,
            storage=self.storage,
            scheduler=self.scheduler,
            clock=self.clock,
            publish=self._publish,
            persist_events=self.tracker is not None,
            lease=self.lease,
            claim_wait=self.claim_wait,
            max_recoveries=self.max_recoveries,
            heartbeat=self._heartbeat,
        )

    def _publish(self, events: list[JobEvent]) -> None:
        self.events.publish(events)

    @property
    def sync_client(self) -> SyncJobsClient:
        """The same client, blocking, for code without an event loop."""
        if self._sync_client is None:
            from .sync_client import SyncJobsClient

            self._sync_client = SyncJobsClient(self.client)
        return self._sync_client

    def worker(
        self, concurrency: int = 16, *, poll_interval: float = 1.0, grace: float = 30.0
    ) -> Worker:
        """An alarm dispatcher for this process: ``async with jobs.worker(): ...``."""
        from .worker import Worker

        return Worker(self, concurrency=concurrency, poll_interval=poll_interval, grace=grace)

    async def aclose(self) -> None:
        """Release this loop's claims and close the store."""
        runtime = self._runtimes.pop(asyncio.get_running_loop(), None)
        if runtime is not None:
            await runtime.close()
        if self._sync_client is not None:
            self._sync_client.close()
        if not self._runtimes:
            await self.storage.close()
            self._opened = False


def _check_registry(jobs: Mapping[str, JobDefinition]) -> Mapping[str, JobDefinition]:
    problems = []
    if not isinstance(jobs, Mapping):
        raise DefinitionError([f"jobs must be a mapping of name to definition, got {jobs!r}"])
    for name, job in jobs.items():
        if not isinstance(name, str) or not name or ":" in name:
            problems.append(f"job name {name!r} must be a non-empty string without ':'")
        if not isinstance(job, Continuous | Debounce | Task):
            problems.append(f"job {name!r} must be Continuous, Debounce or Task, got {job!r}")
    names: dict[int, str] = {}
    for name, job in jobs.items():
        if id(job) in names:
            problems.append(
                f"jobs {names[id(job)]!r} and {name!r} are the same definition object: "
                "make one definition per name, so that a definition names its job"
            )
        names[id(job)] = name
    if problems:
        raise DefinitionError(problems)
    return jobs


def create_durable_jobs(
    jobs: Mapping[str, JobDefinition],
    *,
    storage: str | None = None,
    tracker: HttpTracker | None = None,
    clock: Clock | None = None,
    lease: Duration = DEFAULT_LEASE,
    claim_wait: Duration = DEFAULT_CLAIM_WAIT,
    max_recoveries: int = DEFAULT_MAX_RECOVERIES,
    **storage_options: Any,
) -> DurableJobs:
    """Bind job definitions (keyed by job name) to a store.

    ``storage`` is ``"sqlite:///path"`` (the default, ``DURABLE_JOBS_STORAGE``
    overrides it), ``"memory://"`` or ``"postgresql://…"``. ``lease`` is how long
    a claim lives without renewal (a dead process's instances resume after it);
    ``claim_wait`` how long a call waits for an instance another process is running
    before it raises a retryable ``StorageError``; ``max_recoveries`` how many times
    in a row an alarm's activation may die without committing before the alarm is
    dead-lettered. Durations are ``"30 seconds"``, a ``timedelta`` or seconds.
    Other keyword arguments are options of the storage back-end.
    """
    return DurableJobs(
        jobs,
        storage=storage,
        tracker=tracker,
        clock=clock,
        lease=lease,
        claim_wait=claim_wait,
        max_recoveries=max_recoveries,
        storage_options=storage_options,
    )
