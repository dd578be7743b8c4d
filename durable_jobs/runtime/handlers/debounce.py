"""Debounce jobs: fold events into a batch, flush it once after a delay or at a count."""

from __future__ import annotations

import time
from typing import Any

from ...adapters.records import InstanceRecord
from ...errors import ExecutionError, ValidationError
from ...jobs.contexts import DebounceEventContext, DebounceExecuteContext, Terminate
from ..clock import to_datetime
from ..codec import MAX_PAYLOAD_BYTES, PayloadTooLarge
from ..counters import DebounceCounters
from ..draft import Draft
from ..failures import error_info
from ..results import AddResult, ClearResult, DebounceStatus, FlushResult
from .base import KindHandler, count_of, datetime_or_none

_IDLE: dict[str, Any] = {"event_count": 0, "attempt": 1, "started_at": None, "flush_reason": None}


class DebounceHandler(KindHandler):
    kind = "debounce"

    def check_event(self, event: object) -> Any:
        canonical, _ = self.codec.coerce(event, self.definition.event, f"event of {self.name}")
        return canonical

    async def add(self, draft: Draft[DebounceCounters], event: Any) -> AddResult:
        count = draft.counters.event_count if draft.exists else 0
        created = count == 0
        stored = draft.state
        ctx: DebounceEventContext[Any, Any] = DebounceEventContext(
            event=event,
            load_state=self.definition.initial_state
            if created
            else lambda: self.decode_state(stored),
            event_count=count,
            **self.base(draft),
        )
        started = time.perf_counter()
        try:
            new_state = await self.invoke(self.definition.on_event, ctx)
        except ValidationError:
            raise  # the stored batch no longer fits its schema: not the handler's fault
        except Exception as error:
            if draft.exists:  # the batch keeps its events, and the failure
                self.failed(draft, error, draft.counters.attempt, started, "failed")
                draft.commit_on_error = True
            raise ExecutionError(f"on_event of {self.name} raised {error!r}") from error
        state_json = self._batch_state(draft, new_state, count)
        if not draft.exists:
            draft.create(DebounceCounters(**_IDLE))
        if created:
            flush_at = draft.now + self.definition.flush_after.total_seconds()
            draft.update(alarm_at=flush_at, started_at=draft.now, flush_reason="flush_after")
            draft.emit("debounce.started", will_flush_at=to_datetime(flush_at).isoformat())
        count += 1
        draft.update(state=state_json, event_count=count)
        if self.definition.max_events is not None and count >= self.definition.max_events:
            # Flush in this call, so that no batch ever holds more than max_events.
            draft.update(flush_reason="max_events")
            await self.execute(draft)
        return AddResult(created, count, datetime_or_none(draft.alarm_at))

    def _batch_state(self, draft: Draft[DebounceCounters], state: Any, count: int) -> str:
        try:
            return self.check_state(state)[1]
        except PayloadTooLarge as error:
            way_out = "flush it first, lower max_events, or keep less per event in the state"
            if count == 0:
                way_out = "keep less per event in the state"
            raise ValidationError(
                f"invalid event of {self.name}: the state of batch {draft.instance_id} would "
                f"be {error.size} bytes with it, over the limit of {MAX_PAYLOAD_BYTES}; "
                f"the event was not added and the batch keeps its {count} events: {way_out}"
            ) from error

    async def flush(self, draft: Draft[DebounceCounters]) -> FlushResult:
        if not draft.exists or not draft.counters.event_count:
            return FlushResult(False)
        draft.update(flush_reason="manual")
        return FlushResult(await self.execute(draft))

    async def clear(self, draft: Draft[DebounceCounters]) -> ClearResult:
        count = draft.counters.event_count if draft.exists else 0
        if count == 0:
            return ClearResult(False, 0)
        draft.update(state=None, alarm_at=None, **_IDLE)
        return ClearResult(True, count)

    async def alarm(self, draft: Draft[DebounceCounters]) -> None:
        if not draft.counters.event_count:
            draft.update(alarm_at=None)
            return
        await self.execute(draft)

    def revive(self, saved: dict[str, Any], now: float) -> DebounceCounters:
        started = saved.get("started_at")
        return DebounceCounters(
            event_count=count_of(saved, "event_count"),
            attempt=1,
            started_at=started if isinstance(started, int | float) else now,
            flush_reason="manual",  # an operator's flush
        )

    async def execute(self, draft: Draft[DebounceCounters]) -> bool:
        counters = draft.counters
        attempt, count, reason = counters.attempt, counters.event_count, counters.flush_reason
        # Set by the batch's first event (and the flush_reason since).
        assert counters.started_at is not None
        assert reason is not None
        ctx: DebounceExecuteContext[Any] = DebounceExecuteContext(
            state=self.decode_state(draft.state),
            event_count=count,
            flush_reason=reason,
            debounce_started_at=to_datetime(counters.started_at),
            attempt=attempt,
            **self.base(draft),
        )
        started = time.perf_counter()
        try:
            await self.invoke(self.definition.execute, ctx)
        except Terminate as stop:
            self.ran(draft, "terminated", attempt, started)
            self.terminated(draft, stop.reason)
            return False
        except Exception as error:
            if self.will_retry(attempt):
                self.failed(draft, error, attempt, started, "retrying")
            else:
                info = self.failed(draft, error, attempt, started, "dead_lettered")
                self.give_up(draft, error, attempt, info)
            return False
        draft.update(state=None, alarm_at=None, **_IDLE)
        draft.emit("debounce.flushed", event_count=count, flush_reason=reason, attempt=attempt)
        self.executed(draft, attempt, started, event_count=count, flush_reason=reason)
        return True

    def status(self, record: InstanceRecord | None) -> DebounceStatus:
        if record is None:
            return DebounceStatus("not_found")
        counters = self.counters(record)
        assert isinstance(counters, DebounceCounters)
        return DebounceStatus(
            counters.status(record.alarm_at),
            counters.event_count,
            datetime_or_none(record.alarm_at),
            error_info(counters.last_error),
        )
