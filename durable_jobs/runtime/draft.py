"""The write buffer of one handler call: what the shell commits if the call succeeds."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from ..adapters.records import DeadLetterRecord, HistoryRecord, InstanceRecord
from .clock import to_datetime
from .counters import Counters, dump_counters, load_counters
from .events import JobEvent

C = TypeVar("C", bound=Counters)


class Draft(Generic[C]):
    """An instance as a handler call sees and changes it.

    Nothing here reaches storage until the shell commits; a call that raises
    leaves no trace.
    """

    __slots__ = (
        "_counters",
        "_stored_counters",
        "alarm_at",
        "changed",
        "commit_on_error",
        "created",
        "created_at",
        "dead_letter",
        "deleted",
        "events",
        "exists",
        "found_dead_letter",
        "history",
        "idempotency_key",
        "instance_id",
        "job_name",
        "key",
        "kind",
        "now",
        "redriven",
        "state",
        "trigger",
    )

    def __init__(
        self,
        *,
        instance_id: str,
        kind: str,
        job_name: str,
        key: str,
        record: InstanceRecord | None,
        now: float,
        trigger: str = "alarm",
    ) -> None:
        self.instance_id = instance_id
        self.kind = kind
        self.job_name = job_name
        self.key = key
        self.now = now
        self.exists = record is not None
        self.state: str | None = record.state if record else None
        # Parsed when first read: a call that needs only the state (dead-lettering a
        # poisoned alarm) must not fail on damaged counters.
        self._stored_counters = record.meta if record else None
        self._counters: C | None = None
        self.alarm_at: float | None = record.alarm_at if record else None
        self.created_at = record.created_at if record else now
        self.events: list[JobEvent] = []
        self.changed = False
        self.deleted = False
        self.idempotency_key: str | None = None
        self.dead_letter: DeadLetterRecord | None = None
        # What started this call: the client method's name, or "alarm".
        self.trigger = trigger
        self.history: list[HistoryRecord] = []
        self.created = False  # made by this call: its id's old history goes
        # Set by a handler about to raise to its caller: commit the failure's
        # bookkeeping (last_error, history) before the error is raised.
        self.commit_on_error = False
        self.found_dead_letter: DeadLetterRecord | None = None  # read for a redrive
        self.redriven = False  # the commit deletes the dead letter

    @property
    def counters(self) -> C:
        """The kind's counters (see ``counters.py``); only of an instance that exists."""
        if self._counters is None:
            if self._stored_counters is None:
                raise RuntimeError(f"{self.instance_id} has no counters: it does not exist")
            loaded = load_counters(self._stored_counters, self.instance_id, self.kind)
            self._counters = cast(C, loaded)
        return self._counters

    @counters.setter
    def counters(self, value: C) -> None:
        self._counters = value

    def stored_meta(self) -> str | None:
        """The counters as JSON: as changed if they were read, else as stored."""
        if self._counters is not None:
            return dump_counters(self._counters)
        return self._stored_counters

    def create(self, counters: C) -> None:
        self.exists = True
        self.created = True
        self.created_at = self.now
        self.counters = counters
        self.changed = True

    def update(self, **changes: Any) -> None:
        """Set ``state`` / ``alarm_at`` and counters in one go."""
        for name in ("state", "alarm_at"):
            if name in changes:
                setattr(self, name, changes.pop(name))
        counters = self.counters if changes else None
        for name, value in changes.items():
            setattr(counters, name, value)  # a name the kind lacks: AttributeError
        self.changed = True

    def delete(self) -> None:
        self.deleted = True
        self.exists = False
        self.changed = True
        self.alarm_at = None

    def emit(self, type: str, **data: Any) -> None:
        self.events.append(
            JobEvent(
                type=type,
                instance_id=self.instance_id,
                job_name=self.job_name,
                job_type=self.kind,
                at=to_datetime(self.now),
                data=data,
            )
        )

    def to_record(self) -> InstanceRecord:
        return InstanceRecord(
            instance_id=self.instance_id,
            kind=self.kind,
            job_name=self.job_name,
            key=self.key,
            state=self.state,
            meta=dump_counters(self.counters),
            alarm_at=self.alarm_at,
            created_at=self.created_at,
            updated_at=self.now,
        )
