"""[``create_durable_jobs``][durable_jobs.runtime.app.create_durable_jobs]: the registry of
jobs, its store, its clients and workers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..adapters.protocols import Clock, SchedulerAdapter, StorageAdapter
from ..adapters.url import open_store, storage_url
from ..errors import DefinitionError
from ..jobs.definitions import Continuous, Debounce, JobDefinition, Task
from ..jobs.durations import Duration, parse_duration
from .client import JobsClient
from .clock import SystemClock
from .events import EventBus
from .runtime import JobsRuntime
from .runtimes import Runtimes, Settings
from .sync_client import SyncJobsClient
from .tracker import HttpTracker
from .worker import Worker

DEFAULT_LEASE = 30.0
DEFAULT_CLAIM_WAIT = 30.0
DEFAULT_MAX_RECOVERIES = 5
DEFAULT_HISTORY_LIMIT = 100


def _positive_seconds(name: str, value: Duration) -> float:
    seconds = parse_duration(value).total_seconds()  # ValueError names the input
    if seconds <= 0:
        raise ValueError(f"invalid {name} {value!r}: must be longer than zero")
    return seconds


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"invalid {name} {value!r}: expected an int of {least} or more")
    return value


class DurableJobs:
    """The application: job definitions bound to one store, with its clients and workers."""

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
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        heartbeat: bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        checked = _check_registry(jobs)
        # What this app was made with, but for its store: ``with_storage`` makes another.
        self._options: dict[str, Any] = {
            "clock": clock,
            "tracker": tracker,
            "lease": lease,
            "claim_wait": claim_wait,
            "max_recoveries": max_recoveries,
            "heartbeat": heartbeat,
        }
        self._storage_options = dict(storage_options or {})
        settings = Settings(
            lease=_positive_seconds("lease", lease),
            claim_wait=_positive_seconds("claim_wait", claim_wait),
            max_recoveries=_count("max_recoveries", max_recoveries, 0),
            history_limit=_count("history_limit", history_limit, 1),
            heartbeat=heartbeat,
        )
        if isinstance(storage, tuple):
            self.storage_url = "custom"
            store, scheduler = storage
        else:
            self.storage_url = storage_url(storage)
            store, scheduler = open_store(self.storage_url, **(storage_options or {}))
        self.events = EventBus(store)
        self.tracker = tracker
        self.runtimes = Runtimes(
            checked,
            storage=store,
            scheduler=scheduler,
            clock=clock or SystemClock(),
            settings=settings,
            publish=self.events.publish,
            subscribing=self.events.subscribing,
        )
        self.events.opener = self.runtimes.open
        self.client = JobsClient(self.runtimes)
        self._sync_client: SyncJobsClient | None = None

    @property
    def jobs(self) -> dict[str, JobDefinition]:
        return self.runtimes.jobs

    @property
    def storage(self) -> StorageAdapter:
        return self.runtimes.storage

    @property
    def scheduler(self) -> SchedulerAdapter:
        return self.runtimes.scheduler

    @property
    def clock(self) -> Clock:
        return self.runtimes.clock

    @property
    def lease(self) -> float:
        return self.runtimes.settings.lease

    @property
    def claim_wait(self) -> float:
        return self.runtimes.settings.claim_wait

    def with_storage(self, storage: str, **storage_options: Any) -> DurableJobs:
        """The same jobs and settings on another store (``storage`` is a URL).

        The back-end options this app was made with are kept when ``storage`` is of the
        same back-end (a PostgreSQL ``schema=`` still applies) and dropped otherwise;
        ``storage_options`` given here replace them.
        """
        url = storage_url(storage)
        kept = self._storage_options if _backend(url) == _backend(self.storage_url) else {}
        options = {**kept, **storage_options}
        return DurableJobs(self.jobs, storage=url, storage_options=options, **self._options)

    async def runtime(self) -> JobsRuntime:
        """The runtime of the running event loop, made on first use."""
        return await self.runtimes.current()

    @property
    def sync_client(self) -> SyncJobsClient:
        """The same client, blocking, for code without an event loop."""
        if self._sync_client is None:
            self._sync_client = SyncJobsClient(self.client, self.runtimes)
        return self._sync_client

    def worker(
        self, concurrency: int = 16, *, poll_interval: float = 1.0, grace: float = 30.0
    ) -> Worker:
        """An alarm dispatcher for this process: ``async with jobs.worker(): ...``."""
        return Worker(
            self.runtimes,
            tracker=self.tracker,
            concurrency=concurrency,
            poll_interval=poll_interval,
            grace=grace,
        )

    async def aclose(self) -> None:
        """Release this loop's claims and close the store."""
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
        await self.runtimes.close_current()


def _backend(url: str) -> str:
    scheme = url.split(":", 1)[0]
    return "postgresql" if scheme == "postgres" else scheme


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
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    **storage_options: Any,
) -> DurableJobs:
    """Bind job definitions (keyed by job name) to a store.

    ``storage`` is ``"sqlite:///path"`` (the default, ``DURABLE_JOBS_STORAGE``
    overrides it), ``"memory://"`` or ``"postgresql://…"``. ``lease`` is how long
    a claim lives without renewal (a dead process's instances resume after it);
    ``claim_wait`` how long a call waits for an instance another process is running
    before it raises a retryable [``StorageError``][durable_jobs.errors.StorageError];
    ``max_recoveries`` how many times in a row an alarm's activation may die without
    committing before the alarm is dead-lettered; ``history_limit`` how many history
    rows each instance keeps.
    Durations are ``"30 seconds"``, a ``timedelta`` or seconds.
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
        history_limit=history_limit,
        storage_options=storage_options,
    )
