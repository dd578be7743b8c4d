"""Continuous jobs: run ``execute`` on a schedule until terminated."""

from __future__ import annotations

from typing import Any

from ...adapters.records import InstanceRecord
from ...jobs.contexts import ContinuousContext, Terminate
from ..clock import to_datetime
from ..counters import ContinuousCounters
from ..draft import Draft
from ..results import ContinuousStatus, StartResult
from .base import KindHandler, datetime_or_none


class ContinuousHandler(KindHandler):
    kind = "continuous"

    def first_run(self, now: float) -> float:
        return float(self.definition.schedule.next_after(to_datetime(now)).timestamp())

    def next_run(self, draft: Draft[ContinuousCounters]) -> float:
        """The run due after the one starting now: missed runs are never caught up."""
        # A retry re-arms the alarm off the schedule, so the due time of the run in
        # hand is kept in the counters rather than read from the alarm.
        due = draft.counters.due_at
        due = draft.alarm_at if due is None else due
        now = to_datetime(draft.now)
        due_at = now if due is None else to_datetime(due)
        return float(self.definition.schedule.next_due(due_at, now).timestamp())

    async def start(self, draft: Draft[ContinuousCounters], state_json: str) -> StartResult:
        if draft.exists:
            return StartResult(False, draft.instance_id, draft.counters.status(draft.alarm_at))
        first = draft.now if self.definition.start_immediately else self.first_run(draft.now)
        draft.create(ContinuousCounters(run_count=0, attempt=1, due_at=first))
        draft.update(state=state_json, alarm_at=first)
        draft.emit("job.started", next_run_at=to_datetime(first).isoformat())
        return StartResult(True, draft.instance_id, "running")

    async def alarm(self, draft: Draft[ContinuousCounters]) -> None:
        await self.execute(draft)

    async def execute(self, draft: Draft[ContinuousCounters]) -> None:
        attempt, run_count = draft.counters.attempt, draft.counters.run_count + 1
        ctx: ContinuousContext[Any] = ContinuousContext(
            state=self.decode_state(draft.state),
            check=self.check_state,
            run_count=run_count,
            attempt=attempt,
            **self.base(draft),
        )
        try:
            await self.invoke(self.definition.execute, ctx)
        except Terminate as stop:
            self.terminated(draft, stop.reason)
            return
        except Exception as error:
            if self.schedule_retry(draft, error, attempt):
                return
            if self.retry is not None:
                self.give_up(draft, error, attempt)
                return
            # Without a retry policy a failed run is recorded and the schedule goes on,
            # the way cron and Celery beat treat a failing periodic task.
            self.reschedule(draft, run_count)
            return
        state = ctx.state_json if ctx.state_json is not None else draft.state
        self.reschedule(draft, run_count, state=state, last_error=None)
        self.executed(draft, run_count=run_count, attempt=attempt)

    def reschedule(self, draft: Draft[ContinuousCounters], run_count: int, **changes: Any) -> None:
        next_run = self.next_run(draft)
        draft.update(alarm_at=next_run, due_at=next_run, run_count=run_count, attempt=1, **changes)

    def status(self, record: InstanceRecord | None) -> ContinuousStatus:
        if record is None:
            return ContinuousStatus("not_found")
        counters = self.counters(record)
        assert isinstance(counters, ContinuousCounters)
        return ContinuousStatus(
            counters.status(record.alarm_at),
            counters.run_count,
            datetime_or_none(record.alarm_at),
        )
