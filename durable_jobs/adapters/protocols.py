"""The extension points of durable-jobs, written as contracts.

A back-end implements
[``StorageAdapter``][durable_jobs.adapters.protocols.StorageAdapter] and
[``SchedulerAdapter``][durable_jobs.adapters.protocols.SchedulerAdapter] (one object may
implement both). They see JSON text and the [records][durable_jobs.adapters.records],
never user types, and they never read the wall clock: every time they need comes
in as an argument, from the injected [``Clock``][durable_jobs.adapters.protocols.Clock].

Every back-end must pass the conformance suite in ``durable_jobs.testing.conformance``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from .records import (
    Claim,
    Commit,
    DeadLetterRecord,
    HistoryRecord,
    InstanceRecord,
    OutboxEntry,
    StoreStats,
    WorkerRecord,
)


@runtime_checkable
class Clock(Protocol):
    """Where all time comes from. ``now()`` is epoch seconds (UTC)."""

    def now(self) -> float: ...


@runtime_checkable
class StorageAdapter(Protocol):
    """Durable instances, claims, idempotency keys, history, dead letters, the event
    log and the registry of workers.

    Transient faults (a locked database, a dropped connection) must be retried
    within a bound; what still fails must raise
    [``StorageError``][durable_jobs.errors.StorageError] and leave nothing half-written.
    Implementations must be safe to call from several event loops and threads of one
    process, and — for shared back-ends — from several processes.
    """

    async def open(self) -> None:
        """Connect and bring the schema up to date. Safe to call more than once."""

    async def close(self) -> None:
        """Release connections. Claims held are left to expire."""

    async def read(self, instance_id: str) -> InstanceRecord | None:
        """The last committed record, without waiting for any claim."""

    async def claim(self, instance_id: str, owner: str, now: float, until: float) -> Claim | None:
        """Take the claim of ``instance_id`` (which need not exist yet) until ``until``.

        Must succeed only when no other claim of the instance is held with an expiry
        after ``now``; a claim that has expired may be taken over. Each success gets a
        new, never reused token. Returns the claim with the instance's current record,
        or ``None`` when another live claim holds it.
        """

    async def renew(self, claims: Sequence[Claim], until: float) -> list[Claim]:
        """Extend the claims still held (same token) to ``until``; return those extended."""

    async def release(self, claim: Claim) -> None:
        """Drop the claim if it still carries ``claim.token``; otherwise do nothing."""

    async def commit(self, commit: Commit) -> bool:
        """Apply ``commit`` in one transaction if its claim's token is still current.

        Returns ``False`` (and writes nothing) when the claim was taken over: a stale
        owner can never commit. Writes, in one transaction: the record or its deletion
        (deleting also drops its idempotency keys, not its history), the idempotency
        key, the dead letter or its deletion, the history rows and their trimming, the
        events of the event log, and the release of the claim when asked.
        Implementations may group concurrent commits into one transaction; each is
        still fenced on its own.
        """

    async def has_idempotency_key(self, instance_id: str, key: str) -> bool:
        """Whether a commit already recorded ``key`` for the instance."""

    async def list_instances(
        self,
        *,
        job_name: str | None = None,
        kind: str | None = None,
        alarmed: bool | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[InstanceRecord]:
        """Instances ordered by id, after ``after`` (exclusive), filtered before the
        limit: by job, by kind, and by whether an alarm is set (``alarmed``). Served
        by an index, never a scan of every instance per page."""

    # -- history -------------------------------------------------------------

    async def read_history(
        self, instance_id: str, *, limit: int, before: int | None = None
    ) -> list[HistoryRecord]:
        """The instance's history rows, newest first, with ids below ``before``."""

    # -- dead letters ----------------------------------------------------------

    async def read_dead_letter(self, instance_id: str) -> DeadLetterRecord | None:
        """The dead letter of the instance, if any."""

    async def list_dead_letters(
        self, *, job_name: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        """Dead letters ordered by instance id, after ``after`` (exclusive)."""

    async def delete_dead_letter(self, instance_id: str) -> bool:
        """Remove the instance's dead letter; whether there was one."""

    # -- the event log ---------------------------------------------------------

    async def read_events(self, after: int, limit: int) -> list[OutboxEntry]:
        """Events with an id above ``after``, in id order. Ids increase in the order
        events become visible to readers: an event with a lower id than one returned
        is never read later. The events of one instance are in commit order."""

    async def last_event_id(self) -> int:
        """The id of the newest event committed, or 0."""

    async def wait_for_events(self, after: int, timeout: float) -> None:
        """Return when events above ``after`` may have been committed, by any process,
        or after ``timeout`` seconds."""

    async def trim_events(self, *, keep: int, before: float) -> int:
        """Delete events beyond the newest ``keep`` and those stamped before
        ``before``; return how many went. Bounded work per call is allowed."""

    async def read_cursor(self, name: str) -> int:
        """A named reader's position in the event log (0 if it has none)."""

    async def move_cursor(self, name: str, expected: int, to: int) -> bool:
        """Set the cursor ``name`` to ``to`` if it is still at ``expected``."""

    # -- workers ---------------------------------------------------------------

    async def register_worker(self, worker: WorkerRecord) -> None:
        """Insert or replace the worker's row."""

    async def heartbeat_worker(self, worker_id: str, last_seen_at: float, running: int) -> bool:
        """Refresh the worker's row; ``False`` when it is gone (it was pruned)."""

    async def deregister_worker(self, worker_id: str) -> None:
        """Remove the worker's row."""

    async def list_workers(self, seen_since: float) -> list[WorkerRecord]:
        """Workers seen at or after ``seen_since``, by id; older rows may be pruned."""

    async def stats(self, now: float) -> StoreStats:
        """Counts of instances, due alarms and dead letters, per job."""


@runtime_checkable
class SchedulerAdapter(Protocol):
    """Finds and claims due alarms. An instance's alarm is
    [``InstanceRecord.alarm_at``][durable_jobs.adapters.records.InstanceRecord.alarm_at].

    An alarm is cleared only by the commit of the execution it started, so a claim
    that expires without a commit leaves the alarm to be delivered again.
    """

    async def claim_due(
        self,
        now: float,
        limit: int,
        owner: str,
        until: float,
        *,
        jobs: Collection[str] | None = None,
    ) -> list[Claim]:
        """Claim up to ``limit`` instances whose alarm is at or before ``now``, of the
        jobs named in ``jobs`` (every job when ``None``).

        Earliest alarm first, skipping instances with a live claim. The cost must grow
        with the number of due alarms, not with the number of instances (an index on
        the alarm time). Each claim's ``recoveries`` is one more than that of the
        instance's previous claim when that one expired without being released, and
        0 otherwise.
        """

    async def next_alarm_at(
        self, now: float, *, jobs: Collection[str] | None = None
    ) -> float | None:
        """The earliest alarm of an instance of ``jobs`` (every job when ``None``)
        without a claim live at ``now``, or ``None``."""

    async def wait_for_alarm(self, timeout: float) -> None:
        """Return when an alarm may have become due sooner than expected, or after
        ``timeout`` seconds. Alarms set or released in this process must wake it at
        once; others within a poll interval (or by a notification)."""
