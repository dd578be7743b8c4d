"""The small records adapters store and return. State and counters are opaque JSON text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

# The column order of a stored instance, shared by the SQL back-ends.
INSTANCE_COLUMNS = "instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at"
DEAD_LETTER_COLUMNS = "instance_id, job_name, kind, state, meta, error, traceback, attempts, at"
HISTORY_COLUMNS = (
    "id, instance_id, job_name, trig, outcome, attempt, started_at, finished_at, error"
)
WORKER_COLUMNS = "worker_id, host, pid, started_at, last_seen_at, concurrency, running, jobs"


@attrs.frozen(kw_only=True)
class InstanceRecord:
    """One job instance as stored.

    ``state`` is the JSON of the user's state (``None`` when it has none yet);
    ``meta`` is the JSON object of the kind's counters (run count, attempt, …).
    Times are epoch seconds, UTC.
    """

    instance_id: str
    kind: str
    job_name: str
    key: str
    state: str | None
    meta: str
    alarm_at: float | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> InstanceRecord:
        """A record from the columns of
        [``INSTANCE_COLUMNS``][durable_jobs.adapters.records.INSTANCE_COLUMNS], in that order."""
        # Spelled out: a claim reads a record on every call, and zipping the names
        # into keyword arguments costs more than the rest of this.
        instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at = row
        return cls(
            instance_id=instance_id,
            kind=kind,
            job_name=job_name,
            key=key,
            state=state,
            meta=meta,
            alarm_at=alarm_at,
            created_at=created_at,
            updated_at=updated_at,
        )


@attrs.frozen(kw_only=True)
class Claim:
    """The exclusive right to run handlers of one instance until ``expires_at``.

    ``token`` is the fencing token: a commit is applied only while the stored claim
    of the instance still carries it. ``record`` is the instance as it was when the
    claim was taken (``None`` if it does not exist). ``recoveries`` counts, for a
    claim of a due alarm, the claims of that instance before it in a row that
    expired without being released: activations that died without committing.
    """

    instance_id: str
    owner: str
    token: str
    expires_at: float
    record: InstanceRecord | None = None
    recoveries: int = 0


@attrs.frozen(kw_only=True)
class DeadLetterRecord:
    """What an instance held when it failed for good.

    ``meta`` is the instance's counters JSON (a redrive of a Debounce batch needs
    its count and start); ``error`` is ``"Type: message"`` and ``traceback`` the
    formatted traceback, ``""`` when there was none (a poisoned alarm).
    """

    instance_id: str
    job_name: str
    kind: str
    state: str | None
    meta: str | None
    error: str
    traceback: str
    attempts: int
    at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DeadLetterRecord:
        """A record from the columns of
        [``DEAD_LETTER_COLUMNS``][durable_jobs.adapters.records.DEAD_LETTER_COLUMNS], in that
        order."""
        return cls(**dict(zip(_DEAD_LETTER_FIELDS, row, strict=True)))


_DEAD_LETTER_FIELDS = tuple(DEAD_LETTER_COLUMNS.split(", "))


@attrs.frozen(kw_only=True)
class HistoryRecord:
    """One run of ``execute`` or one failed handler call of an instance.

    ``id`` is given by the store (``0`` in a commit): it increases with every row
    written. ``error`` is the JSON of the failure (type, message, traceback, at,
    attempt) or ``None``. ``trigger`` is stored as ``trig``, a reserved word in SQL.
    """

    instance_id: str
    job_name: str
    trigger: str
    outcome: str
    attempt: int
    started_at: float
    finished_at: float
    error: str | None = None
    id: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> HistoryRecord:
        """A record from the columns of
        [``HISTORY_COLUMNS``][durable_jobs.adapters.records.HISTORY_COLUMNS], in that order."""
        id, instance_id, job_name, trigger, outcome, attempt, started, finished, error = row
        return cls(
            id=id,
            instance_id=instance_id,
            job_name=job_name,
            trigger=trigger,
            outcome=outcome,
            attempt=attempt,
            started_at=started,
            finished_at=finished,
            error=error,
        )


@attrs.frozen(kw_only=True)
class WorkerRecord:
    """A worker process as it registered itself; ``jobs`` are the names it serves."""

    worker_id: str
    host: str
    pid: int
    started_at: float
    last_seen_at: float
    concurrency: int
    running: int
    jobs: tuple[str, ...]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> WorkerRecord:
        """A record from the columns of
        [``WORKER_COLUMNS``][durable_jobs.adapters.records.WORKER_COLUMNS]; ``jobs`` is JSON."""
        worker_id, host, pid, started_at, last_seen_at, concurrency, running, jobs = row
        return cls(
            worker_id=worker_id,
            host=host,
            pid=pid,
            started_at=started_at,
            last_seen_at=last_seen_at,
            concurrency=concurrency,
            running=running,
            jobs=tuple(json.loads(jobs) if isinstance(jobs, str) else jobs),
        )


@attrs.frozen(kw_only=True)
class StoreStats:
    """Counts for metrics and the overview, each row keyed by job name.

    ``instances`` rows are ``(job_name, kind, alarmed, count)`` where ``alarmed``
    says whether the instances have an alarm set (which decides every kind's status
    word); ``due`` rows ``(job_name, count)`` of alarms at or before ``now``;
    ``dead_letters`` rows ``(job_name, count)``.
    """

    instances: tuple[tuple[str, str, bool, int], ...] = ()
    due: tuple[tuple[str, int], ...] = ()
    dead_letters: tuple[tuple[str, int], ...] = ()


@attrs.frozen(kw_only=True)
class Commit:
    """Everything one handler call changes, applied atomically and fenced by ``claim``.

    ``record`` replaces the stored instance when ``delete`` is false; ``None`` leaves
    it as it is. ``delete`` removes the instance together with its idempotency keys.
    ``events`` are JSON telemetry events for the event log, stamped with ``at``.
    ``history`` rows are appended to the instance's history; ``history_reset``
    first removes its older rows (the id starts afresh); with ``history_limit`` only
    the instance's newest ``history_limit`` rows are kept afterwards. ``delete_dead_letter`` removes
    the instance's dead letter (a redrive). ``release`` drops the claim in the same
    transaction; otherwise its expiry is left as it is.
    """

    claim: Claim
    record: InstanceRecord | None = None
    delete: bool = False
    idempotency_key: str | None = None
    dead_letter: DeadLetterRecord | None = None
    delete_dead_letter: bool = False
    events: tuple[str, ...] = ()
    history: tuple[HistoryRecord, ...] = ()
    history_reset: bool = False
    history_limit: int | None = None
    at: float = 0.0
    release: bool = True


@attrs.frozen(kw_only=True)
class OutboxEntry:
    """A committed telemetry event of the event log. ``id`` increases in commit order."""

    id: int
    event: str
