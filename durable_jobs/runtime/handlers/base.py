"""What every kind's handler shares: calling user code, contexts, failure bookkeeping."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ...adapters.protocols import Clock
from ...adapters.records import DeadLetterRecord, InstanceRecord
from ...jobs.definitions import log_level
from ...jobs.retry import Retry
from ...logs import get_logger
from ..clock import to_datetime
from ..codec import Codec
from ..counters import Counters, load_counters
from ..draft import Draft
from ..results import TerminateResult, TriggerResult
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

    def target(self, key: str, idempotency_key: str | None = None) -> Target:
        """Instance ``key`` of this job, as the shell addresses it."""
        return Target(self.instance_id(key), self.kind, self.name, key, idempotency_key)

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

    # -- failures ------------------------------------------------------------

    def schedule_retry(self, draft: Draft[Any], error: BaseException, attempt: int) -> bool:
        """Re-arm the alarm for the next try if the policy allows; record the failure."""
        will_retry = self.retry is not None and attempt < self.retry.max_attempts
        retry_at = None
        if will_retry:
            assert self.retry is not None
            retry_at = draft.now + self.retry.wait_before(attempt + 1, self.rng).total_seconds()
            draft.update(alarm_at=retry_at, attempt=attempt + 1, last_error=describe(error))
        draft.emit(
            "job.failed",
            error=describe(error),
            attempt=attempt,
            will_retry=will_retry,
            retry_at=None if retry_at is None else to_datetime(retry_at).isoformat(),
        )
        self.log.error(
            "job.failed",
            instance_id=draft.instance_id,
            error=describe(error),
            attempt=attempt,
            will_retry=will_retry,
            exc_info=error,
        )
        return will_retry

    def give_up(self, draft: Draft[Any], error: BaseException, attempts: int) -> None:
        """Keep a dead letter of what the instance held, then delete it."""
        draft.dead_letter = DeadLetterRecord(
            instance_id=draft.instance_id,
            job_name=self.name,
            state=draft.state,
            error=describe(error),
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

    async def poisoned(self, draft: Draft[Any], error: BaseException, recoveries: int) -> None:
        """Dead-letter an alarm whose activations keep dying (SEMANTICS 14). Reads
        nothing but the stored state's text, which may be what kills them."""
        self.give_up(draft, error, recoveries)

    def terminated(self, draft: Draft[Any], reason: str | None) -> None:
        draft.delete()
        draft.emit("job.terminated", reason=reason)
        self.log.info("job.terminated", instance_id=draft.instance_id, reason=reason)

    def executed(self, draft: Draft[Any], **fields: Any) -> None:
        draft.emit("job.executed", **fields)
        self.log.debug("job.executed", instance_id=draft.instance_id, **fields)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def datetime_or_none(seconds: float | None) -> datetime | None:
    return None if seconds is None else to_datetime(seconds)
