"""The asyncio client. Handles take the definition (typed) or its name (``Any``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from ..adapters.records import InstanceRecord
from ..jobs.definitions import Continuous, Debounce, Task
from .clock import to_datetime
from .draft import Draft
from .handlers import ContinuousHandler, DebounceHandler, KindHandler, TaskHandler
from .ids import check_id
from .results import (
    AddResult,
    ClearResult,
    ContinuousStatus,
    DeadLetter,
    DebounceStatus,
    FlushResult,
    SendResult,
    StartResult,
    TaskState,
    TaskStatus,
    TerminateResult,
    TriggerResult,
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
        target = handler.target(check_id(id))
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
        target = handler.target(check_id(id), idempotency_key)
        return await runtime.run(target, lambda draft: operation(handler, draft, canonical))

    async def _read(self, id: str) -> tuple[H, InstanceRecord | None]:
        runtime, handler = await self._runtime()
        return handler, await runtime.read(handler, check_id(id))


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
        return handler.status(record)

    async def get_state(self, id: str) -> S | None:
        handler, record = await self._read(id)
        return cast("S | None", handler.decode_state(record.state if record else None))

    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Delete the instance's state and alarm; the id can be started again fresh."""
        return await self._run(id, ContinuousHandler.terminate, reason)


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
        return handler.status(record)

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
        return handler.status(record)

    async def get_state(self, id: str) -> TaskState[S]:
        handler, record = await self._read(id)
        return cast("TaskState[S]", handler.get_state(record))

    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Delete the instance's state and alarm; the id can be started again fresh."""
        return await self._run(id, TaskHandler.terminate, reason)


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
        record = await runtime.storage.read_dead_letter(instance_id)
        if record is None:
            return None
        handler = runtime.handlers.get(record.job_name)
        state: Any = record.state
        if handler is not None and record.state is not None:
            state = handler.decode_state(record.state)
        return DeadLetter(
            record.instance_id, state, record.error, record.attempts, to_datetime(record.at)
        )
