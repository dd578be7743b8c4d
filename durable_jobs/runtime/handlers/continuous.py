"""Continuous jobs: run ``execute`` on a schedule until terminated."""

from __future__ import annotations

from typing import Any

from ...adapters.records import InstanceRecord
from ...jobs.contexts import ContinuousContext, Terminate
from ..clock import to_datetime
from ..draft import Draft
from ..results import ContinuousStatus, StartResult
from .base import KindHandler, datetime_or_none


class ContinuousHandler(KindHandler):
    kind = "continuous"

    def next_run(self, now: float) -> float:
        """The next scheduled run after ``now``: missed runs are never caught up."""
        return float(self.definition.schedule.next_after(to_datetime(now)).timestamp())

    async def start(self, draft: Draft, state_json: str) -> StartResult:
        if draft.exists:
            return StartResult(False, draft.instance_id, self._status(draft.alarm_at))
        first = draft.now if self.definition.start_immediately else self.next_run(draft.now)
        draft.create({"run_count": 0, "attempt": 1})
        draft.update(state=state_json, alarm_at=first)
        draft.emit("job.started", next_run_at=to_datetime(first).isoformat())
        return StartResult(True, draft.instance_id, "running")

    async def alarm(self, draft: Draft) -> None:
        await self.execute(draft)

    async def execute(self, draft: Draft) -> None:
        meta = draft.meta
        attempt, run_count = meta["attempt"], meta["run_count"] + 1
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
            draft.update(alarm_at=self.next_run(draft.now), run_count=run_count, attempt=1)
            return
        state = ctx.state_json if ctx.state_json is not None else draft.state
        next_run = self.next_run(draft.now)
        draft.update(state=state, alarm_at=next_run, run_count=run_count, attempt=1)
        draft.meta.pop("last_error", None)
        self.executed(draft, run_count=run_count, attempt=attempt)

    @staticmethod
    def _status(alarm_at: float | None) -> Any:
        return "running" if alarm_at is not None else "stopped"

    def status(self, record: InstanceRecord | None) -> ContinuousStatus:
        if record is None:
            return ContinuousStatus("not_found")
        meta = self.counters(record)
        return ContinuousStatus(
            self._status(record.alarm_at), meta["run_count"], datetime_or_none(record.alarm_at)
        )
