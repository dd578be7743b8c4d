"""Prometheus metrics of one app (the ``metrics`` extra: ``prometheus_client``).

``metrics = instrument(jobs)`` registers them in a registry of their own (or the one
given, such as ``prometheus_client.REGISTRY``); ``metrics.render()`` is the text
exposition format for a ``/metrics`` route.

Two sources feed them:

- **What this process runs.** Executions, handler durations and alarm lateness are
  counted by the process that ran the handler, as its commit lands: a worker for the
  alarms it delivers, the calling process for a Task's ``on_event`` or a client's
  ``trigger``. Each process exposes its own counters; Prometheus sums them across
  processes (``sum by (job, outcome) (rate(durable_jobs_executions_total[5m]))``).
- **What the store holds.** Instances, due and overdue alarms, dead letters and live
  workers are the same for every process, read from the store by
  [``Metrics.refresh``][durable_jobs.metrics.Metrics.refresh] into a snapshot that a
  scrape renders. Prometheus collects synchronously while the store is asynchronous;
  rather than block a scrape (and the event loop it may run on) on a store read, the
  reader decides when to read: a web route awaits ``refresh()`` before ``render()``,
  a worker process runs
  ``refresh_every(interval)`` beside it. Until the first refresh these gauges are
  absent, not zero; ``durable_jobs_store_read_timestamp_seconds`` says how old they are.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Iterator

import attrs

from .logs import get_logger, storage_failed

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "durable_jobs.metrics needs prometheus_client: "
        "install the metrics extra, pip install 'durable-jobs[metrics]'"
    ) from exc

from .adapters.records import StoreStats
from .errors import DurableJobsError
from .runtime.app import DurableJobs
from .runtime.events import JobEvent
from .runtime.listing import STATUSES

log = get_logger("durable_jobs.metrics")

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

_instrumented: weakref.WeakKeyDictionary[DurableJobs, Metrics] = weakref.WeakKeyDictionary()


def instrument(jobs: DurableJobs, registry: CollectorRegistry | None = None) -> Metrics:
    """The metrics of ``jobs``, made and registered on the first call for this app.

    ``registry`` defaults to a new ``CollectorRegistry`` (not the global one, so that
    several apps in one process do not clash). A later call returns the same
    [``Metrics``][durable_jobs.metrics.Metrics]; asking for it in another registry is a
    ``ValueError``.
    """
    metrics = _instrumented.get(jobs)
    if metrics is None:
        metrics = _instrumented[jobs] = Metrics(jobs, registry or CollectorRegistry())
    elif registry is not None and registry is not metrics.registry:
        raise ValueError(
            "this app is already instrumented in another registry: "
            "call instrument(jobs) without registry= to get its metrics"
        )
    return metrics


@attrs.frozen(kw_only=True)
class Snapshot:
    """What the store held at ``at`` (seconds of the app's clock)."""

    at: float
    stats: StoreStats
    live_workers: int
    served: frozenset[str]


class Metrics:
    """The Prometheus metrics of one app; make it with
    [``instrument``][durable_jobs.metrics.instrument]."""

    def __init__(self, jobs: DurableJobs, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._jobs = jobs
        self.snapshot: Snapshot | None = None
        self.executions = Counter(
            "durable_jobs_executions",
            "Handler calls committed by this process, by job, kind and outcome "
            "(terminated: every termination it committed, by a handler or a client).",
            ["job", "kind", "outcome"],
            registry=registry,
        )
        self.handler_duration = Histogram(
            "durable_jobs_handler_duration_seconds",
            "How long handler calls run by this process took.",
            ["job", "kind"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.alarm_lateness = Histogram(
            "durable_jobs_alarm_lateness_seconds",
            "How long after its due time this process delivered an alarm.",
            ["job"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        registry.register(_StoreCollector(self))
        jobs.events.add_listener(self._on_event)
        jobs.runtimes.on_delivery.append(self._on_delivery)

    async def refresh(self) -> None:
        """Read the store's counts into the snapshot that scrapes render."""
        runtimes = self._jobs.runtimes
        now = runtimes.clock.now()
        stats = await runtimes.storage.stats(now)
        workers = await runtimes.live_workers()
        self.snapshot = Snapshot(
            at=now,
            stats=stats,
            live_workers=len(workers),
            served=frozenset(job for worker in workers for job in worker.jobs),
        )

    async def refresh_every(self, interval: float = 15.0) -> None:
        """Refresh now and then every ``interval`` seconds, until cancelled. A failed
        read is logged and the previous snapshot kept."""
        while True:
            try:
                await self.refresh()
            except DurableJobsError as exc:
                storage_failed(log, "metrics.refresh_failed", exc)
            await asyncio.sleep(interval)

    def render(self) -> bytes:
        """The registry in the Prometheus text format, gauges as of the last refresh."""
        return generate_latest(self.registry)

    def _on_event(self, event: JobEvent) -> None:
        if event.type == "job.executed":
            outcome = "ok"
        elif event.type == "job.failed":
            outcome = str(event.data.get("outcome", "failed"))
        elif event.type == "job.terminated":
            outcome = "terminated"
        else:
            return
        self.executions.labels(event.job_name, event.job_type, outcome).inc()
        duration_ms = event.data.get("duration_ms")
        if isinstance(duration_ms, int | float):
            self.handler_duration.labels(event.job_name, event.job_type).observe(duration_ms / 1000)

    def _on_delivery(self, job_name: str, late: float) -> None:
        self.alarm_lateness.labels(job_name).observe(max(0.0, late))

    def kinds(self) -> dict[str, str]:
        """Registered job names and their kinds."""
        return {name: job.kind for name, job in self._jobs.jobs.items()}


class _StoreCollector(Collector):
    """The gauges of the last snapshot; nothing before the first refresh."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(_families())

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snapshot = self._metrics.snapshot
        if snapshot is None:
            return []
        instances, due, overdue, dead, workers, read_at = _families()
        kinds = self._metrics.kinds()
        for labels, count in _instances(snapshot.stats, kinds).items():
            instances.add_metric(list(labels), count)
        for job, count in _per_job(snapshot.stats.due, kinds):
            due.add_metric([job], count)
            overdue.add_metric([job], 0 if job in snapshot.served else count)
        for job, count in _per_job(snapshot.stats.dead_letters, kinds):
            dead.add_metric([job], count)
        workers.add_metric([], snapshot.live_workers)
        read_at.add_metric([], snapshot.at)
        return [instances, due, overdue, dead, workers, read_at]


def _families() -> Iterator[GaugeMetricFamily]:
    yield GaugeMetricFamily(
        "durable_jobs_instances",
        "Instances by job, kind and status word.",
        labels=["job", "kind", "status"],
    )
    yield GaugeMetricFamily("durable_jobs_alarms_due", "Alarms at or past due.", labels=["job"])
    yield GaugeMetricFamily(
        "durable_jobs_alarms_overdue",
        "Alarms past due of jobs no live worker serves.",
        labels=["job"],
    )
    yield GaugeMetricFamily("durable_jobs_dead_letters", "Dead letters kept.", labels=["job"])
    yield GaugeMetricFamily("durable_jobs_workers_live", "Workers seen within three leases.")
    yield GaugeMetricFamily(
        "durable_jobs_store_read_timestamp_seconds",
        "When the gauges above were read from the store (Unix time of the app's clock).",
    )


def _per_job(rows: Iterable[tuple[str, int]], kinds: dict[str, str]) -> list[tuple[str, int]]:
    """``rows`` by job, with a zero for each registered job without one."""
    return sorted((dict.fromkeys(kinds, 0) | dict(rows)).items())


def _instances(stats: StoreStats, kinds: dict[str, str]) -> dict[tuple[str, str, str], int]:
    """Counts by (job, kind, status word): every status of each registered job, zero
    when it has none, and the rows of jobs no longer registered."""
    counts = {(job, kind, status): 0 for job, kind in kinds.items() for status in STATUSES[kind]}
    for job, kind, alarmed, count in stats.instances:
        alarmed_word, idle_word = STATUSES.get(kind, ("alarmed", "idle"))
        key = (job, kind, alarmed_word if alarmed else idle_word)
        counts[key] = counts.get(key, 0) + count
    return dict(sorted(counts.items()))


__all__ = ["Metrics", "Snapshot", "instrument"]
