"""The extension points of durable-jobs, written as contracts.

A back-end implements :class:`StorageAdapter` and :class:`SchedulerAdapter` (one
object may implement both). They see JSON text and the records of ``records.py``,
never user types, and they never read the wall clock: every time they need comes
in as an argument, from the injected :class:`Clock`.

Every back-end must pass the conformance suite in ``durable_jobs.testing.conformance``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from .records import Claim, Commit, DeadLetterRecord, InstanceRecord, OutboxEntry


@runtime_checkable
class Clock(Protocol):
    """Where all time comes from. ``now()`` is epoch seconds (UTC)."""

    def now(self) -> float: ...


@runtime_checkable
class StorageAdapter(Protocol):
    """Durable instances, claims, idempotency keys, dead letters and the event outbox.

    Transient faults (a locked database, a dropped connection) must be retried
    within a bound; what still fails must raise ``StorageError`` and leave nothing
    half-written. Implementations must be safe to call from several event loops and
    threads of one process, and — for shared back-ends — from several processes.
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
        (deleting also drops its idempotency keys), the idempotency key, the dead
        letter, the outbox events, and the release of the claim when asked.
        Implementations may group concurrent commits into one transaction; each is
        still fenced on its own.
        """

    async def has_idempotency_key(self, instance_id: str, key: str) -> bool:
        """Whether a commit already recorded ``key`` for the instance."""

    async def read_dead_letter(self, instance_id: str) -> DeadLetterRecord | None:
        """The latest dead-letter record of the instance, if any."""

    async def list_instances(
        self, *, job_name: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[InstanceRecord]:
        """Instances ordered by id, optionally filtered."""

    async def take_outbox(self, limit: int) -> list[OutboxEntry]:
        """The oldest outbox entries, in commit order."""

    async def ack_outbox(self, ids: Sequence[int]) -> None:
        """Delete delivered outbox entries."""


@runtime_checkable
class SchedulerAdapter(Protocol):
    """Finds and claims due alarms. An instance's alarm is ``InstanceRecord.alarm_at``.

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
