"""Continuous jobs: run ``execute`` on a schedule until terminated."""

from __future__ import annotations

import time
from typing import Any

from ...adapters.records import InstanceRecord
from ...jobs.contexts import ContinuousContext, Terminate
from ..clock import to_datetime
from ..counters import ContinuousCounters
from ..draft import Draft
from ..failures import error_info
from ..results import ContinuousStatus, PauseResult, ResumeResult, StartResult
from .base import KindHandler, count_of, datetime_or_none


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
        started = time.perf_counter()
        try:
            await self.invoke(self.definition.execute, ctx)
        except Terminate as stop:
            self.ran(draft, "terminated", attempt, started)
            self.terminated(draft, stop.reason)
            return
        except Exception as error:
            if self.will_retry(attempt):
                self.failed(draft, error, attempt, started, "retrying")
            elif self.retry is not None:
                info = self.failed(draft, error, attempt, started, "dead_lettered")
                self.give_up(draft, error, attempt, info)
            else:
                # Without a retry policy a failed run is recorded and the schedule goes
                # on, the way cron and Celery beat treat a failing periodic task.
                self.failed(draft, error, attempt, started, "failed")
                self.reschedule(draft, run_count)
            return
        state = ctx.state_json if ctx.state_json is not None else draft.state
        self.reschedule(draft, run_count, state=state)
        self.executed(draft, attempt, started, run_count=run_count)

    def reschedule(self, draft: Draft[ContinuousCounters], run_count: int, **changes: Any) -> None:
        """Arm the next run on the schedule; a paused instance stays without an alarm."""
        next_run = None if draft.counters.paused else self.next_run(draft)
        draft.update(alarm_at=next_run, due_at=next_run, run_count=run_count, attempt=1, **changes)

    async def pause(self, draft: Draft[ContinuousCounters]) -> PauseResult:
        if not draft.exists or draft.counters.paused:
            return PauseResult(False)
        draft.update(alarm_at=None, due_at=None, attempt=1, paused=True)
        draft.emit("job.paused")
        return PauseResult(True)

    async def resume(self, draft: Draft[ContinuousCounters]) -> ResumeResult:
        if not draft.exists or not draft.counters.paused:
            return ResumeResult(False, datetime_or_none(draft.alarm_at))
        next_run = self.first_run(draft.now)
        draft.update(alarm_at=next_run, due_at=next_run, paused=False)
        draft.emit("job.resumed", next_run_at=to_datetime(next_run).isoformat())
        return ResumeResult(True, to_datetime(next_run))

    def revive(self, saved: dict[str, Any], now: float) -> ContinuousCounters:
        return ContinuousCounters(run_count=count_of(saved, "run_count"), attempt=1, due_at=now)

    def status(self, record: InstanceRecord | None) -> ContinuousStatus:
        if record is None:
            return ContinuousStatus("not_found")
        counters = self.counters(record)
        assert isinstance(counters, ContinuousCounters)
        return ContinuousStatus(
            counters.status(record.alarm_at),
            counters.run_count,
            datetime_or_none(record.alarm_at),
            error_info(counters.last_error),
        )
