"""Task jobs: event-driven state machines whose handlers decide when ``execute`` runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import attrs

from ...adapters.records import InstanceRecord
from ...errors import ExecutionError, ValidationError
from ...jobs.contexts import TaskContext, Terminate
from ...jobs.durations import parse_duration
from ..clock import to_datetime
from ..counters import TaskCounters
from ..draft import Draft
from ..failures import error_info
from ..results import SendResult, TaskState, TaskStatus
from .base import KindHandler, count_of, datetime_or_none

# Epoch seconds before this (2001-09-09) are almost surely a duration passed by mistake.
_EARLIEST_EPOCH = 1_000_000_000


def to_instant(when: object, now: datetime) -> datetime:
    """``schedule(when)``: a duration from now, an aware datetime, or epoch seconds."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValidationError(f"schedule({when!r}): the datetime must be timezone-aware")
        return when.astimezone(UTC)
    if isinstance(when, int | float) and not isinstance(when, bool):
        if when < _EARLIEST_EPOCH:
            raise ValidationError(
                f"schedule({when!r}): numbers are epoch seconds; for a delay pass "
                f"'{when} seconds' or a timedelta"
            )
        return datetime.fromtimestamp(when, UTC)
    try:
        return now + parse_duration(when)
    except ValueError as exc:
        raise ValidationError(f"schedule({when!r}): {exc}") from exc


def _snapshot(draft: Draft[TaskCounters]) -> tuple[Any, ...]:
    """What a handler call may change in the draft, to undo it if the call fails."""
    return (
        draft.state,
        draft.alarm_at,
        attrs.evolve(draft.counters),
        len(draft.events),
        len(draft.history),
    )


def _restore(draft: Draft[TaskCounters], saved: tuple[Any, ...]) -> None:
    draft.state, draft.alarm_at, counters, emitted, ran = saved
    draft.counters = attrs.evolve(counters)
    del draft.events[emitted:]
    del draft.history[ran:]


class TaskHandler(KindHandler):
    kind = "task"

    def check_event(self, event: object) -> Any:
        members = self.definition.event_types
        cls = self.codec.event_type(event, members, f"event of {self.name}")
        canonical, _ = self.codec.coerce(event, cls, f"event of {self.name}")
        return canonical

    def _context(
        self, draft: Draft[TaskCounters], *, first_event: bool = False
    ) -> TaskContext[Any]:
        counters = draft.counters
        return TaskContext(
            state=self.decode_state(draft.state),
            check=self.check_state,
            scheduled_at=datetime_or_none(draft.alarm_at),
            event_count=counters.event_count,
            execute_count=counters.execute_count,
            created_at=to_datetime(draft.created_at),
            is_first_event=first_event,
            to_instant=lambda when: to_instant(when, to_datetime(draft.now)),
            **self.base(draft),
        )

    async def send(self, draft: Draft[TaskCounters], event: Any) -> SendResult:
        created = not draft.exists
        if created:
            draft.create(TaskCounters(event_count=0, execute_count=0, attempt=1))
            draft.emit("job.started")
        ctx = self._context(draft, first_event=draft.state is None)
        before = _snapshot(draft)
        started = time.perf_counter()
        try:
            await self.invoke(self.definition.on_event, event, ctx)
            draft.update(event_count=draft.counters.event_count + 1)
            await self._then_idle(draft, ctx)
        except Terminate as stop:
            self.terminated(draft, stop.reason)
            return SendResult(created, draft.instance_id, None)
        except Exception as error:
            _restore(draft, before)
            if self.definition.on_error is None:
                cause = error.__cause__ if isinstance(error, ExecutionError) else error
                if not created:  # an instance that exists keeps the failure
                    self.failed(draft, cause or error, draft.counters.attempt, started, "failed")
                    draft.commit_on_error = True
                if isinstance(error, ExecutionError):  # on_idle's, already named
                    raise
                raise ExecutionError(f"on_event of {self.name} raised {error!r}") from error
            self.failed(draft, error, draft.counters.attempt, started, "failed")
            await self._on_error(draft, error)
        return SendResult(created, draft.instance_id, datetime_or_none(draft.alarm_at))

    async def alarm(self, draft: Draft[TaskCounters]) -> None:
        await self.execute(draft)

    async def execute(self, draft: Draft[TaskCounters]) -> None:
        attempt = draft.counters.attempt
        draft.update(alarm_at=None)  # the alarm has fired; handlers may set a new one
        ctx = self._context(draft)
        before = _snapshot(draft)
        started = time.perf_counter()
        try:
            await self.invoke(self.definition.execute, ctx)
            count = draft.counters.execute_count + 1
            draft.update(execute_count=count, attempt=1)
            self.executed(draft, attempt, started, execute_count=count)
            await self._then_idle(draft, ctx)
        except Terminate as stop:
            if len(draft.history) == before[4]:  # execute itself stopped, not on_idle
                self.ran(draft, "terminated", attempt, started)
            self.terminated(draft, stop.reason)
            return
        except Exception as error:
            _restore(draft, before)
            if self.will_retry(attempt):
                self.failed(draft, error, attempt, started, "retrying")
            elif self.definition.on_error is None:
                info = self.failed(draft, error, attempt, started, "dead_lettered")
                self.give_up(draft, error, attempt, info)
            else:
                self.failed(draft, error, attempt, started, "failed")
                draft.update(attempt=1)
                await self._on_error(draft, error)

    def revive(self, saved: dict[str, Any], now: float) -> TaskCounters:
        return TaskCounters(
            event_count=count_of(saved, "event_count"),
            execute_count=count_of(saved, "execute_count"),
            attempt=1,
        )

    async def _on_error(self, draft: Draft[TaskCounters], error: Exception) -> None:
        ctx = self._context(draft)
        before = _snapshot(draft)
        try:
            await self.invoke(self.definition.on_error, error, ctx)
            await self._then_idle(draft, ctx)
        except Terminate as stop:
            self.terminated(draft, stop.reason)
        except Exception as second:
            _restore(draft, before)
            attempt = draft.counters.attempt
            info = self.failed(draft, second, attempt, time.perf_counter(), "dead_lettered")
            self.give_up(draft, second, attempt, info)

    async def _then_idle(self, draft: Draft[TaskCounters], ctx: TaskContext[Any]) -> None:
        """Apply a handler's buffered writes, then give ``on_idle`` its turn.

        ``on_idle`` is part of the call it follows: if it raises, that call failed,
        and the caller undoes the writes made so far (see ``_snapshot``).
        """
        self._apply(draft, ctx)
        if draft.alarm_at is None and self.definition.on_idle is not None:
            idle = self._context(draft)
            try:
                await self.invoke(self.definition.on_idle, idle)
            except Terminate as stop:
                self.terminated(draft, stop.reason)
                return
            except Exception as error:
                raise ExecutionError(f"on_idle of {self.name} raised {error!r}") from error
            self._apply(draft, idle)

    def _apply(self, draft: Draft[TaskCounters], ctx: TaskContext[Any]) -> None:
        if ctx.state_json is not None:
            draft.update(state=ctx.state_json)
        if ctx.schedule_changed:
            at = None if ctx.scheduled_at is None else ctx.scheduled_at.timestamp()
            draft.update(alarm_at=at)
            if at is not None:
                draft.emit("task.scheduled", scheduled_at=to_datetime(at).isoformat())

    def status(self, record: InstanceRecord | None) -> TaskStatus:
        if record is None:
            return TaskStatus("not_found")
        counters = self.counters(record)
        assert isinstance(counters, TaskCounters)
        return TaskStatus(
            counters.status(record.alarm_at),
            datetime_or_none(record.alarm_at),
            counters.event_count,
            error_info(counters.last_error),
        )

    def get_state(self, record: InstanceRecord | None) -> TaskState[Any]:
        if record is None:
            return TaskState(None, None)
        return TaskState(self.decode_state(record.state), datetime_or_none(record.alarm_at))
