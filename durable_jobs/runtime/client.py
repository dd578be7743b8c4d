"""The asyncio client. Handles take the definition (typed) or its name (``Any``)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import (
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    TypeVar,
    cast,
    overload,
)

import attrs

from ..adapters.records import DeadLetterRecord, InstanceRecord
from ..errors import ValidationError
from ..jobs.definitions import Continuous, Debounce, Task
from . import listing
from .draft import Draft
from .handlers import ContinuousHandler, DebounceHandler, KindHandler, TaskHandler
from .ids import check_id, split_instance_id
from .listing import is_overdue
from .results import (
    AddResult,
    ClearResult,
    ContinuousStatus,
    DeadLetter,
    DebounceStatus,
    Execution,
    FlushResult,
    InstanceInfo,
    Page,
    PauseResult,
    RedriveResult,
    ResumeResult,
    SendResult,
    StartResult,
    TaskState,
    TaskStatus,
    TerminateResult,
    TriggerResult,
    WorkerInfo,
)
from .runtime import JobsRuntime
from .runtimes import Runtimes

S = TypeVar("S")
E = TypeVar("E")


H = TypeVar("H", bound=KindHandler)
P = ParamSpec("P")
T = TypeVar("T")


class _Handle(Generic[H]):
    _kind: ClassVar[str]

    def __init__(self, runtimes: Runtimes, job: object) -> None:
        self._runtimes = runtimes
        self._name = runtimes.job_name(job, self._kind)  # fail fast on an unknown job

    async def _runtime(self) -> tuple[JobsRuntime, H]:
        runtime = await self._runtimes.current()
        return runtime, cast(H, runtime.handlers[self._name])

    async def _run(
        self,
        id: str,
        operation: Callable[Concatenate[H, Draft[Any], P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``operation`` of this job's handler, on instance ``id`` under its claim."""
        runtime, handler = await self._runtime()
        target = handler.target(check_id(id), trigger=operation.__name__)
        return await runtime.run(target, lambda draft: operation(handler, draft, *args, **kwargs))

    async def _send(
        self,
        id: str,
        idempotency_key: str | None,
        operation: Callable[[H, Draft[Any], Any], Awaitable[T]],
        event: object,
    ) -> T:
        """Apply ``event`` to instance ``id``, once per idempotency key."""
        runtime, handler = await self._runtime()
        canonical = handler.check_event(event)
        if idempotency_key is not None:
            check_id(idempotency_key, "idempotency key")
        target = handler.target(check_id(id), idempotency_key, trigger=operation.__name__)
        return await runtime.run(target, lambda draft: operation(handler, draft, canonical))

    async def _read(self, id: str) -> tuple[H, InstanceRecord | None]:
        runtime, handler = await self._runtime()
        return handler, await runtime.read(handler, check_id(id))

    async def _overdue(self, record: InstanceRecord | None) -> bool:
        """Whether the instance's alarm is past due while no live worker serves its job."""
        now = self._runtimes.clock.now()
        if record is None or record.alarm_at is None or record.alarm_at >= now:
            return False  # the common case: nothing to look up
        served = await self._runtimes.served_jobs()
        return is_overdue(record.alarm_at, record.job_name, now, served)


class ContinuousHandle(_Handle[ContinuousHandler], Generic[S]):
    """Start, trigger, inspect and terminate instances of one Continuous job."""

    _kind = "continuous"

    async def start(self, id: str, input: S) -> StartResult:
        _, handler = await self._runtime()
        _, state_json = handler.check_state(input)
        return await self._run(id, ContinuousHandler.start, state_json)

    async def trigger(self, id: str) -> TriggerResult:
        """Run ``execute`` now, bypassing the schedule; ``triggered`` is False if not found."""
        return await self._run(id, ContinuousHandler.trigger)

    async def status(self, id: str) -> ContinuousStatus:
        handler, record = await self._read(id)
        status = handler.status(record)
        return attrs.evolve(status, overdue=True) if await self._overdue(record) else status

    async def get_state(self, id: str) -> S | None:
        handler, record = await self._read(id)
        return cast("S | None", handler.decode_state(record.state if record else None))

    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Delete the instance's state and alarm; the id can be started again fresh."""
        return await self._run(id, ContinuousHandler.terminate, _reason(reason))

    async def pause(self, id: str) -> PauseResult:
        """Drop the instance's alarm, keeping its state and counters (status ``stopped``)."""
        return await self._run(id, ContinuousHandler.pause)

    async def resume(self, id: str) -> ResumeResult:
        """Schedule a paused instance's next run from now."""
        return await self._run(id, ContinuousHandler.resume)


class DebounceHandle(_Handle[DebounceHandler], Generic[E, S]):
    """Add events to, flush, clear and inspect instances of one Debounce job."""

    _kind = "debounce"

    async def add(self, id: str, event: E, idempotency_key: str | None = None) -> AddResult:
        return await self._send(id, idempotency_key, DebounceHandler.add, event)

    async def flush(self, id: str) -> FlushResult:
        return await self._run(id, DebounceHandler.flush)

    async def clear(self, id: str) -> ClearResult:
        return await self._run(id, DebounceHandler.clear)

    async def status(self, id: str) -> DebounceStatus:
        handler, record = await self._read(id)
        status = handler.status(record)
        return attrs.evolve(status, overdue=True) if await self._overdue(record) else status

    async def get_state(self, id: str) -> S | None:
        handler, record = await self._read(id)
        return cast("S | None", handler.decode_state(record.state if record else None))


class TaskHandle(_Handle[TaskHandler], Generic[S, E]):
    """Send events to, trigger, inspect and terminate instances of one Task job."""

    _kind = "task"

    async def send(self, id: str, event: E, idempotency_key: str | None = None) -> SendResult:
        return await self._send(id, idempotency_key, TaskHandler.send, event)

    async def trigger(self, id: str) -> TriggerResult:
        """Run ``execute`` now, bypassing the schedule; ``triggered`` is False if not found."""
        return await self._run(id, TaskHandler.trigger)

    async def status(self, id: str) -> TaskStatus:
        handler, record = await self._read(id)
        status = handler.status(record)
        return attrs.evolve(status, overdue=True) if await self._overdue(record) else status

    async def get_state(self, id: str) -> TaskState[S]:
        handler, record = await self._read(id)
        return cast("TaskState[S]", handler.get_state(record))

    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Delete the instance's state and alarm; the id can be started again fresh."""
        return await self._run(id, TaskHandler.terminate, _reason(reason))


class JobsClient:
    """Talks to job instances. Safe to use from any event loop of the process."""

    def __init__(self, runtimes: Runtimes) -> None:
        self._runtimes = runtimes

    @overload
    def continuous(self, job: Continuous[S]) -> ContinuousHandle[S]: ...
    @overload
    def continuous(self, job: str) -> ContinuousHandle[Any]: ...
    def continuous(self, job: Continuous[Any] | str) -> ContinuousHandle[Any]:
        return ContinuousHandle(self._runtimes, job)

    @overload
    def debounce(self, job: Debounce[E, S]) -> DebounceHandle[E, S]: ...
    @overload
    def debounce(self, job: str) -> DebounceHandle[Any, Any]: ...
    def debounce(self, job: Debounce[Any, Any] | str) -> DebounceHandle[Any, Any]:
        return DebounceHandle(self._runtimes, job)

    @overload
    def task(self, job: Task[S, E]) -> TaskHandle[S, E]: ...
    @overload
    def task(self, job: str) -> TaskHandle[Any, Any]: ...
    def task(self, job: Task[Any, Any] | str) -> TaskHandle[Any, Any]:
        return TaskHandle(self._runtimes, job)

    async def dead_letter(self, instance_id: str) -> DeadLetter | None:
        """What an instance held when it failed for good, or ``None``."""
        runtime = await self._runtimes.current()
        record = await runtime.storage.read_dead_letter(check_id(instance_id, "instance id"))
        return None if record is None else self._dead_letter(runtime, record)

    def _dead_letter(self, runtime: JobsRuntime, record: DeadLetterRecord) -> DeadLetter:
        """The dead letter with its state decoded by its job's schema, where the job is
        registered and the state still fits; else the state's JSON text."""
        handler = runtime.handlers.get(record.job_name)
        state: Any = record.state
        if handler is not None and handler.kind == record.kind and record.state is not None:
            with contextlib.suppress(ValidationError):
                state = handler.decode_state(record.state)
        return listing.dead_letter(record, state)

    async def dead_letters(
        self, job: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[DeadLetter]:
        """Dead letters by instance id, of one job if given."""
        runtime = await self._runtimes.current()
        records = await runtime.storage.list_dead_letters(
            job_name=job, after=cursor, limit=_limit(limit) + 1
        )
        items = [self._dead_letter(runtime, r) for r in records[:limit]]
        return Page(items, items[-1].instance_id if len(records) > limit else None)

    async def redrive(self, instance_id: str, state: Any = None) -> RedriveResult:
        """Re-create a dead-lettered instance from its saved state (or ``state``,
        validated) and run it now; its dead letter goes in the same commit."""
        kind, job, key = split_instance_id(instance_id)
        runtime = await self._runtimes.current()
        handler = runtime.handlers[self._runtimes.job_name(job, kind)]
        state_json = None if state is None else handler.check_state(state)[1]
        target = handler.target(key, trigger="redrive", dead_letter=True)
        return await runtime.run(target, lambda draft: handler.redrive(draft, state_json))

    async def discard_dead_letter(self, instance_id: str) -> bool:
        """Delete an instance's dead letter; whether there was one."""
        runtime = await self._runtimes.current()
        return await runtime.storage.delete_dead_letter(check_id(instance_id, "instance id"))

    async def history(self, instance_id: str, limit: int = 50) -> list[Execution]:
        """The instance's latest runs and failed calls, newest first."""
        runtime = await self._runtimes.current()
        rows = await runtime.storage.read_history(
            check_id(instance_id, "instance id"), limit=_limit(limit)
        )
        return [listing.execution(row) for row in rows]

    async def instances(
        self,
        job: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[InstanceInfo]:
        """Instances by id, filtered before the limit; jobs no longer registered too."""
        wanted = listing.queries(kind, status)
        limit = _limit(limit)
        runtime = await self._runtimes.current()
        records: list[InstanceRecord] = []
        for each_kind, alarmed in wanted:
            if len(records) > limit:
                break
            records += await runtime.storage.list_instances(
                job_name=job,
                kind=each_kind,
                alarmed=alarmed,
                after=cursor,
                limit=limit + 1 - len(records),
            )
        now = self._runtimes.clock.now()
        served = await self._runtimes.served_jobs() if records else frozenset()
        items = [listing.instance_info(r, now, served) for r in records[:limit]]
        return Page(items, items[-1].instance_id if len(records) > limit else None)

    async def workers(self) -> list[WorkerInfo]:
        """The workers that refreshed their registration within the last three leases."""
        return [listing.worker_info(w) for w in await self._runtimes.live_workers()]


def _reason(reason: object) -> str | None:
    if reason is not None and not isinstance(reason, str):
        raise ValidationError(f"invalid reason {reason!r}: expected a string or None")
    return reason


def _limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise ValueError(f"invalid limit {limit!r}: expected an int from 1 to 10000")
    return limit
