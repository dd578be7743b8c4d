"""The small records adapters store and return. State and counters are opaque JSON text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

# The column order of a stored instance, shared by the SQL back-ends.
INSTANCE_COLUMNS = "instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at"
DEAD_LETTER_COLUMNS = "instance_id, job_name, state, error, attempts, at"


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
        """A record from the columns of :data:`INSTANCE_COLUMNS`, in that order."""
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
    """What an instance held when it failed for good."""

    instance_id: str
    job_name: str
    state: str | None
    error: str
    attempts: int
    at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DeadLetterRecord:
        """A record from the columns of :data:`DEAD_LETTER_COLUMNS`, in that order."""
        return cls(**dict(zip(_DEAD_LETTER_FIELDS, row, strict=True)))


_DEAD_LETTER_FIELDS = tuple(DEAD_LETTER_COLUMNS.split(", "))


@attrs.frozen(kw_only=True)
class Commit:
    """Everything one handler call changes, applied atomically and fenced by ``claim``.

    ``record`` replaces the stored instance when ``delete`` is false; ``None`` leaves
    it as it is. ``delete`` removes the instance together with its idempotency keys.
    ``events`` are JSON telemetry events for the outbox. ``release`` drops the claim
    in the same transaction; otherwise its expiry is left as it is.
    """

    claim: Claim
    record: InstanceRecord | None = None
    delete: bool = False
    idempotency_key: str | None = None
    dead_letter: DeadLetterRecord | None = None
    events: tuple[str, ...] = ()
    release: bool = True


@attrs.frozen(kw_only=True)
class OutboxEntry:
    """A committed telemetry event waiting to be shipped."""

    id: int
    event: str
