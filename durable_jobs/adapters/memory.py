"""The in-memory back-end: one process, nothing durable; for tests and the test runtime."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Collection, Sequence

import attrs

from .records import Claim, Commit, DeadLetterRecord, InstanceRecord, OutboxEntry
from .wakeup import Wakeup


@attrs.define
class _Claimed:
    owner: str
    token: str
    expires_at: float
    recoveries: int = 0


class MemoryStore:
    """Implements ``StorageAdapter`` and ``SchedulerAdapter`` with dictionaries.

    Due alarms come from a heap ordered by time; entries made stale by a later
    commit are dropped when they surface, so finding due alarms never scans idle
    instances.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, InstanceRecord] = {}
        self._claims: dict[str, _Claimed] = {}
        self._alarms: list[tuple[float, str]] = []
        self._keys: dict[str, set[str]] = {}
        self._dead: dict[str, DeadLetterRecord] = {}
        self._outbox: dict[int, str] = {}
        self._outbox_ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._wakeup = Wakeup()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read(self, instance_id: str) -> InstanceRecord | None:
        return self._instances.get(instance_id)

    async def claim(self, instance_id: str, owner: str, now: float, until: float) -> Claim | None:
        with self._lock:
            return self._claim(instance_id, owner, now, until)

    def _claim(self, instance_id: str, owner: str, now: float, until: float) -> Claim | None:
        held = self._claims.get(instance_id)
        if held is not None and held.expires_at > now:
            return None
        token = f"{next(self._tokens)}"
        self._claims[instance_id] = _Claimed(owner, token, until)
        return Claim(
            instance_id=instance_id,
            owner=owner,
            token=token,
            expires_at=until,
            record=self._instances.get(instance_id),
        )

    async def renew(self, claims: Sequence[Claim], until: float) -> list[Claim]:
        renewed = []
        with self._lock:
            for claim in claims:
                held = self._claims.get(claim.instance_id)
                if held is not None and held.token == claim.token:
                    held.expires_at = until
                    renewed.append(attrs.evolve(claim, expires_at=until))
        return renewed

    async def release(self, claim: Claim) -> None:
        with self._lock:
            self._release(claim)
        self._wakeup.fire()

    def _release(self, claim: Claim) -> None:
        held = self._claims.get(claim.instance_id)
        if held is not None and held.token == claim.token:
            del self._claims[claim.instance_id]

    async def commit(self, commit: Commit) -> bool:
        instance_id = commit.claim.instance_id
        with self._lock:
            held = self._claims.get(instance_id)
            if held is None or held.token != commit.claim.token:
                return False
            if commit.delete:
                self._instances.pop(instance_id, None)
                self._keys.pop(instance_id, None)
            elif commit.record is not None:
                previous = self._instances.get(instance_id)
                self._instances[instance_id] = commit.record
                alarm = commit.record.alarm_at
                if alarm is not None and (previous is None or previous.alarm_at != alarm):
                    heapq.heappush(self._alarms, (alarm, instance_id))
            if commit.idempotency_key is not None and not commit.delete:
                self._keys.setdefault(instance_id, set()).add(commit.idempotency_key)
            if commit.dead_letter is not None:
                self._dead[instance_id] = commit.dead_letter
            for event in commit.events:
                self._outbox[next(self._outbox_ids)] = event
            if commit.release:
                self._release(commit.claim)
        if commit.release or (commit.record is not None and commit.record.alarm_at is not None):
            self._wakeup.fire()
        return True

    async def has_idempotency_key(self, instance_id: str, key: str) -> bool:
        return key in self._keys.get(instance_id, ())

    async def read_dead_letter(self, instance_id: str) -> DeadLetterRecord | None:
        return self._dead.get(instance_id)

    async def list_instances(
        self, *, job_name: str | None = None, kind: str | None = None, limit: int = 1000
    ) -> list[InstanceRecord]:
        with self._lock:
            found = [
                r
                for r in self._instances.values()
                if (job_name is None or r.job_name == job_name) and (kind is None or r.kind == kind)
            ]
        return sorted(found, key=lambda r: r.instance_id)[:limit]

    async def take_outbox(self, limit: int) -> list[OutboxEntry]:
        with self._lock:
            ids = sorted(self._outbox)[:limit]
            return [OutboxEntry(id=i, event=self._outbox[i]) for i in ids]

    async def ack_outbox(self, ids: Sequence[int]) -> None:
        with self._lock:
            for i in ids:
                self._outbox.pop(i, None)

    # -- scheduler -------------------------------------------------------------

    def _due(
        self, cutoff: float, now: float, limit: int, jobs: Collection[str] | None
    ) -> list[tuple[float, str]]:
        """Up to ``limit`` valid entries at or before ``cutoff`` without a claim live at
        ``now``, of the jobs named (all if ``None``).

        Pops past claimed entries, so the work is bounded by the number of live
        claims and due alarms of other jobs plus ``limit``, never by the number of
        instances.
        """
        found: list[tuple[float, str]] = []
        skipped: list[tuple[float, str]] = []
        while self._alarms and len(found) < limit and self._alarms[0][0] <= cutoff:
            alarm_at, instance_id = heapq.heappop(self._alarms)
            record = self._instances.get(instance_id)
            if record is None or record.alarm_at != alarm_at:
                continue  # stale: the alarm moved or the instance is gone
            held = self._claims.get(instance_id)
            if (held is not None and held.expires_at > now) or (
                jobs is not None and record.job_name not in jobs
            ):
                skipped.append((alarm_at, instance_id))
            else:
                found.append((alarm_at, instance_id))
        # Entries stay in the heap until a commit moves the alarm: a claim that
        # expires without committing must see its alarm delivered again.
        for entry in itertools.chain(found, skipped):
            heapq.heappush(self._alarms, entry)
        return found

    async def claim_due(
        self,
        now: float,
        limit: int,
        owner: str,
        until: float,
        *,
        jobs: Collection[str] | None = None,
    ) -> list[Claim]:
        with self._lock:
            claims = []
            for _, instance_id in self._due(now, now, limit, jobs):
                expired = self._claims.get(instance_id)  # never released: its holder died
                claim = self._claim(instance_id, owner, now, until)
                if claim is not None and expired is not None:
                    recoveries = self._claims[instance_id].recoveries = expired.recoveries + 1
                    claim = attrs.evolve(claim, recoveries=recoveries)
                if claim is not None:
                    claims.append(claim)
            return claims

    async def next_alarm_at(
        self, now: float, *, jobs: Collection[str] | None = None
    ) -> float | None:
        with self._lock:
            first = self._due(float("inf"), now, 1, jobs)
            return first[0][0] if first else None

    async def wait_for_alarm(self, timeout: float) -> None:
        await self._wakeup.wait(timeout)
