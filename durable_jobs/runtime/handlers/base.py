"""What every kind's handler shares: calling user code, contexts, failure bookkeeping."""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ...adapters.protocols import Clock
from ...adapters.records import DeadLetterRecord, HistoryRecord, InstanceRecord
from ...errors import InvalidStateError
from ...jobs.definitions import log_level
from ...jobs.retry import Retry
from ...logs import get_logger
from ..clock import to_datetime
from ..codec import Codec
from ..counters import Counters, load_counters
from ..draft import Draft
from ..failures import describe, failure
from ..jsonfast import dumps, loads
from ..results import RedriveResult, TerminateResult, TriggerResult
from ..shell import Target
from ..threads import HandlerThreads, outlive

THREADS = HandlerThreads()
"""The threads of every plain ``def`` handler of the process."""


class KindHandler:
    """Base of the per-kind handlers: one instance per registered job."""

    kind: str = ""

    def __init__(
        self,
        name: str,
        definition: Any,
        *,
        codec: Codec,
        rng: random.Random,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.definition = definition
        self.codec = codec
        self.rng = rng
        self.retry: Retry | None = definition.retry
        timeout = definition.timeout
        self.timeout: float | None = None if timeout is None else timeout.total_seconds()
        self.log = get_logger(
            f"durable_jobs.job.{name}", floor=log_level(definition.logging), clock=clock
        ).bind(job_name=name, job_type=self.kind)
        self._awaitable: dict[Callable[..., Any], bool] = {}

    async def alarm(self, draft: Draft[Any]) -> None:
        """Run the instance's due alarm."""
        raise NotImplementedError

    async def execute(self, draft: Draft[Any]) -> Any:
        """Run the job's ``execute`` on the instance now, with the failure bookkeeping."""
        raise NotImplementedError

    async def trigger(self, draft: Draft[Any]) -> TriggerResult:
        if not draft.exists:
            return TriggerResult(False)
        await self.execute(draft)
        return TriggerResult(True)

    async def terminate(self, draft: Draft[Any], reason: str | None) -> TerminateResult:
        if not draft.exists:
            return TerminateResult(False, reason)
        self.terminated(draft, reason)
        return TerminateResult(True, reason)

    def instance_id(self, key: str) -> str:
        return f"{self.kind}:{self.name}:{key}"

    def target(
        self,
        key: str,
        idempotency_key: str | None = None,
        *,
        trigger: str = "alarm",
        dead_letter: bool = False,
    ) -> Target:
        """Instance ``key`` of this job, as the shell addresses it."""
        return Target(
            self.instance_id(key), self.kind, self.name, key, idempotency_key, trigger, dead_letter
        )

    def check_event(self, event: object) -> Any:
        """``event`` validated against the job's event schema, canonical."""
        raise NotImplementedError(f"{self.kind} jobs take no events")

    def counters(self, record: InstanceRecord) -> Counters:
        """The kind's counters stored with ``record``."""
        return load_counters(record.meta, record.instance_id, self.kind)

    def check_state(self, value: object) -> tuple[Any, str]:
        return self.codec.coerce(value, self.definition.state, f"state of {self.name}")

    def decode_state(self, text: str | None) -> Any:
        if text is None:
            return None
        return self.codec.decode(text, self.definition.state, f"state of {self.name}")

    def base(self, draft: Draft[Any]) -> dict[str, Any]:
        return {
            "instance_id": draft.instance_id,
            "job_name": self.name,
            "id": draft.key,
            "now": to_datetime(draft.now),
            "logger": self.log,
        }

    async def invoke(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call user code within the job's timeout. Plain functions run on a thread so
        that a blocking one cannot stall other instances (see ``threads.py``)."""
        is_async = self._awaitable.get(fn)
        if is_async is None:
            is_async = self._awaitable[fn] = inspect.iscoroutinefunction(fn)
        if is_async:
            if self.timeout is None:
                return await fn(*args)
            async with asyncio.timeout(self.timeout):
                return await fn(*args)
        result = await outlive(THREADS.submit(fn, *args), self.timeout)
        if inspect.isawaitable(result):
            result = await result
        return result

    # -- history and failures ---------------------------------------------------

    def ran(
        self,
        draft: Draft[Any],
        outcome: str,
        attempt: int,
        started: float,
        failure: dict[str, Any] | None = None,
    ) -> float:
        """Add a history row for a call of user code that began at ``started``
        (``time.perf_counter()``); return its duration in milliseconds."""
        elapsed = time.perf_counter() - started
        if isinstance(failure, dict) and failure["type"] == "TimeoutError" and self.timeout:
            outcome = "timed_out"
        draft.history.append(
            HistoryRecord(
                instance_id=draft.instance_id,
                job_name=self.name,
                trigger=draft.trigger,
                outcome=outcome,
                attempt=attempt,
                started_at=draft.now,
                finished_at=draft.now + elapsed,
                error=None if failure is None else dumps(failure),
            )
        )
        return round(elapsed * 1000, 3)

    def will_retry(self, attempt: int) -> bool:
        return self.retry is not None and attempt < self.retry.max_attempts

    def failed(
        self,
        draft: Draft[Any],
        error: BaseException,
        attempt: int,
        started: float,
        outcome: str,
    ) -> dict[str, Any]:
        """Record a failed call of user code on the instance: ``last_error``, a history
        row and ``job.failed``; re-arm the alarm when ``outcome`` is ``"retrying"``.
        Returns the failure's record."""
        info = failure(error, draft.now, attempt)
        duration_ms = self.ran(draft, outcome, attempt, started, info)
        retry_at = None
        if outcome == "retrying":
            assert self.retry is not None
            retry_at = draft.now + self.retry.wait_before(attempt + 1, self.rng).total_seconds()
            draft.update(alarm_at=retry_at, attempt=attempt + 1)
        if draft.exists:
            draft.update(last_error=info)
        draft.emit(
            "job.failed",
            error=describe(error),
            attempt=attempt,
            will_retry=retry_at is not None,
            retry_at=None if retry_at is None else to_datetime(retry_at).isoformat(),
            duration_ms=duration_ms,
            outcome=draft.history[-1].outcome,
        )
        self.log.error(
            "job.failed",
            instance_id=draft.instance_id,
            error=describe(error),
            attempt=attempt,
            will_retry=retry_at is not None,
            exc_info=error,
        )
        return info

    def give_up(
        self,
        draft: Draft[Any],
        error: BaseException,
        attempts: int,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Keep a dead letter of what the instance held, then delete it."""
        draft.dead_letter = DeadLetterRecord(
            instance_id=draft.instance_id,
            job_name=self.name,
            kind=self.kind,
            state=draft.state,
            meta=draft.stored_meta(),
            error=describe(error),
            traceback="" if info is None else info["traceback"],
            attempts=attempts,
            at=draft.now,
        )
        draft.delete()
        draft.emit("job.retry_exhausted", error=describe(error), attempts=attempts)
        self.log.error(
            "job.retry_exhausted",
            instance_id=draft.instance_id,
            error=describe(error),
            attempts=attempts,
            exc_info=error,
        )

    async def redrive(self, draft: Draft[Any], state_json: str | None) -> RedriveResult:
        """Re-create the instance from its dead letter, with ``state_json`` if given, and
        run ``execute`` now (a Debounce flushes the saved batch); the commit deletes the
        dead letter. ``redriven`` is False when there is none."""
        dead = draft.found_dead_letter
        if dead is None:
            return RedriveResult(False, draft.instance_id)
        if draft.exists:
            raise InvalidStateError(
                f"{draft.instance_id} was started again since it was dead-lettered; "
                "terminate it before redriving its dead letter"
            )
        draft.redriven = True
        draft.create(self.revive(_saved_counters(dead), draft.now))
        draft.update(state=state_json if state_json is not None else dead.state)
        await self.execute(draft)
        return RedriveResult(True, draft.instance_id)

    def revive(self, saved: dict[str, Any], now: float) -> Counters:
        """Fresh counters of a redriven instance, keeping what ``saved`` counted."""
        raise NotImplementedError

    async def poisoned(self, draft: Draft[Any], error: BaseException, recoveries: int) -> None:
        """Dead-letter an alarm whose activations keep dying (SEMANTICS 14). Reads
        nothing but the stored state's text, which may be what kills them."""
        self.give_up(draft, error, recoveries)

    def terminated(self, draft: Draft[Any], reason: str | None) -> None:
        draft.delete()
        draft.emit("job.terminated", reason=reason)
        self.log.info("job.terminated", instance_id=draft.instance_id, reason=reason)

    def executed(self, draft: Draft[Any], attempt: int, started: float, **fields: Any) -> None:
        duration_ms = self.ran(draft, "ok", attempt, started)
        draft.emit("job.executed", attempt=attempt, duration_ms=duration_ms, **fields)
        self.log.debug("job.executed", instance_id=draft.instance_id, attempt=attempt, **fields)


def _saved_counters(dead: DeadLetterRecord) -> dict[str, Any]:
    """What a dead letter's counters said, as far as they can be read."""
    try:
        saved = loads(dead.meta) if dead.meta else {}
    except ValueError:
        return {}
    return saved if isinstance(saved, dict) else {}


def count_of(saved: dict[str, Any], name: str) -> int:
    value = saved.get(name)
    return value if type(value) is int else 0


def datetime_or_none(seconds: float | None) -> datetime | None:
    return None if seconds is None else to_datetime(seconds)
