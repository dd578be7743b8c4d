"""The in-memory back-end: one process, nothing durable; for tests and the test runtime."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Collection, Sequence

import attrs

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
from .wakeup import Wakeup

MAX_EVENTS = 10_000
"""Events the memory store keeps at most, whether or not a worker trims them."""


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
        self._history: dict[str, deque[tuple[int, HistoryRecord]]] = {}
        self._history_ids = itertools.count(1)
        self._events: deque[tuple[int, float, str]] = deque()
        self._event_ids = itertools.count(1)
        self._last_event = 0
        self._cursors: dict[str, int] = {}
        self._workers: dict[str, WorkerRecord] = {}
        self._tokens = itertools.count(1)
        self._wakeup = Wakeup()
        self._new_events = Wakeup()

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
            if commit.delete_dead_letter:
                self._dead.pop(instance_id, None)
            if commit.dead_letter is not None:
                self._dead[instance_id] = commit.dead_letter
            self._add_history(commit)
            for event in commit.events:
                self._last_event = next(self._event_ids)
                self._events.append((self._last_event, commit.at, event))
            while len(self._events) > MAX_EVENTS:  # nothing durable to trim it for us
                self._events.popleft()
            if commit.release:
                self._release(commit.claim)
        if commit.release or (commit.record is not None and commit.record.alarm_at is not None):
            self._wakeup.fire()
        if commit.events:
            self._new_events.fire()
        return True

    def _add_history(self, commit: Commit) -> None:
        instance_id = commit.claim.instance_id
        if commit.history_reset:
            self._history.pop(instance_id, None)
        if commit.history:
            rows = self._history.setdefault(instance_id, deque())
            rows.extend((next(self._history_ids), row) for row in commit.history)
            while commit.history_limit is not None and len(rows) > commit.history_limit:
                rows.popleft()

    async def has_idempotency_key(self, instance_id: str, key: str) -> bool:
        return key in self._keys.get(instance_id, ())

    async def list_instances(
        self,
        *,
        job_name: str | None = None,
        kind: str | None = None,
        alarmed: bool | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[InstanceRecord]:
        with self._lock:
            found = [
                r
                for r in self._instances.values()
                if (job_name is None or r.job_name == job_name)
                and (kind is None or r.kind == kind)
                and (alarmed is None or (r.alarm_at is not None) == alarmed)
                and (after is None or r.instance_id > after)
            ]
        return sorted(found, key=lambda r: r.instance_id)[:limit]

    async def read_history(
        self, instance_id: str, *, limit: int, before: int | None = None
    ) -> list[HistoryRecord]:
        with self._lock:
            rows = list(self._history.get(instance_id, ()))
        rows.reverse()
        return [attrs.evolve(row, id=i) for i, row in rows if before is None or i < before][:limit]

    async def read_dead_letter(self, instance_id: str) -> DeadLetterRecord | None:
        return self._dead.get(instance_id)

    async def list_dead_letters(
        self, *, job_name: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        with self._lock:
            found = [
                d
                for d in self._dead.values()
                if (job_name is None or d.job_name == job_name)
                and (after is None or d.instance_id > after)
            ]
        return sorted(found, key=lambda d: d.instance_id)[:limit]

    async def delete_dead_letter(self, instance_id: str) -> bool:
        with self._lock:
            return self._dead.pop(instance_id, None) is not None

    async def read_events(self, after: int, limit: int) -> list[OutboxEntry]:
        with self._lock:
            # Ids are consecutive: the position of the first event after ``after``
            # follows from the id of the oldest one kept.
            first = self._events[0][0] if self._events else self._last_event + 1
            start = max(after + 1 - first, 0)
            chosen = list(itertools.islice(self._events, start, start + limit))
        return [OutboxEntry(id=i, event=event) for i, _, event in chosen]

    async def last_event_id(self) -> int:
        return self._last_event

    async def wait_for_events(self, after: int, timeout: float) -> None:
        if self._last_event <= after:
            await self._new_events.wait(timeout)

    async def trim_events(self, *, keep: int, before: float) -> int:
        with self._lock:
            gone = 0
            while self._events and (len(self._events) > keep or self._events[0][1] < before):
                self._events.popleft()
                gone += 1
            return gone

    async def read_cursor(self, name: str) -> int:
        return self._cursors.get(name, 0)

    async def move_cursor(self, name: str, expected: int, to: int) -> bool:
        with self._lock:
            if self._cursors.get(name, 0) != expected:
                return False
            self._cursors[name] = to
            return True

    async def register_worker(self, worker: WorkerRecord) -> None:
        with self._lock:
            self._workers[worker.worker_id] = worker

    async def heartbeat_worker(self, worker_id: str, last_seen_at: float, running: int) -> bool:
        with self._lock:
            worker = self._workers.get(worker_id)
            if worker is None:
                return False
            self._workers[worker_id] = attrs.evolve(
                worker, last_seen_at=last_seen_at, running=running
            )
            return True

    async def deregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    async def list_workers(self, seen_since: float) -> list[WorkerRecord]:
        with self._lock:
            for worker_id in [w.worker_id for w in self._workers.values()]:
                if self._workers[worker_id].last_seen_at < seen_since:
                    del self._workers[worker_id]
            return sorted(self._workers.values(), key=lambda w: w.worker_id)

    async def stats(self, now: float) -> StoreStats:
        instances: dict[tuple[str, str, bool], int] = {}
        due: dict[str, int] = {}
        dead: dict[str, int] = {}
        with self._lock:
            for r in self._instances.values():
                group = (r.job_name, r.kind, r.alarm_at is not None)
                instances[group] = instances.get(group, 0) + 1
                if r.alarm_at is not None and r.alarm_at <= now:
                    due[r.job_name] = due.get(r.job_name, 0) + 1
            for d in self._dead.values():
                dead[d.job_name] = dead.get(d.job_name, 0) + 1
        return StoreStats(
            instances=tuple(sorted((*k, n) for k, n in instances.items())),
            due=tuple(sorted(due.items())),
            dead_letters=tuple(sorted(dead.items())),
        )

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
