"""The asyncio client. Handles take the definition (typed) or its name (``Any``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ..jobs.definitions import Continuous, Debounce, Task
from .clock import to_datetime
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

if TYPE_CHECKING:
    from .app import DurableJobs

S = TypeVar("S")
E = TypeVar("E")


class _Handle:
    _kind: str

    def __init__(self, app: DurableJobs, job: object) -> None:
        self._app = app
        self._name = app.job_name(job, self._kind)  # fail fast on an unknown job

    async def _runtime(self) -> tuple[JobsRuntime, Any]:
        runtime = await self._app.runtime()
        return runtime, runtime.handlers[self._name]


class _Lifecycle(_Handle):
    """What Continuous and Task handles share: run now, and terminate."""

    async def trigger(self, id: str) -> TriggerResult:
        """Run ``execute`` now, bypassing the schedule; ``triggered`` is False if not found."""
        runtime, handler = await self._runtime()
        return await runtime.run(handler, check_id(id), handler.trigger)

    async def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        """Delete the instance's state and alarm; the id can be started again fresh."""
        runtime, handler = await self._runtime()
        return await runtime.run(handler, check_id(id), lambda d: handler.terminate(d, reason))


class ContinuousHandle(_Lifecycle, Generic[S]):
    """Start, trigger, inspect and terminate instances of one Continuous job."""

    _kind = "continuous"

    async def start(self, id: str, input: S) -> StartResult:
        runtime, handler = await self._runtime()
        _, state_json = handler.check_state(input)
        return await runtime.run(handler, check_id(id), lambda d: handler.start(d, state_json))

    async def status(self, id: str) -> ContinuousStatus:
        runtime, handler = await self._runtime()
        record, meta = await runtime.read(handler, id)
        return handler.status(record, meta)  # type: ignore[no-any-return]

    async def get_state(self, id: str) -> S | None:
        runtime, handler = await self._runtime()
        record, _ = await runtime.read(handler, id)
        return handler.decode_state(record.state if record else None)  # type: ignore[no-any-return]


class DebounceHandle(_Handle, Generic[E, S]):
    """Add events to, flush, clear and inspect instances of one Debounce job."""

    _kind = "debounce"

    async def add(self, id: str, event: E, idempotency_key: str | None = None) -> AddResult:
        runtime, handler = await self._runtime()
        canonical = handler.check_event(event)
        if idempotency_key is not None:
            check_id(idempotency_key, "idempotency key")
        return await runtime.run(
            handler, check_id(id), lambda d: handler.add(d, canonical, idempotency_key)
        )

    async def flush(self, id: str) -> FlushResult:
        runtime, handler = await self._runtime()
        return await runtime.run(handler, check_id(id), handler.flush)

    async def clear(self, id: str) -> ClearResult:
        runtime, handler = await self._runtime()
        return await runtime.run(handler, check_id(id), handler.clear)

    async def status(self, id: str) -> DebounceStatus:
        runtime, handler = await self._runtime()
        record, meta = await runtime.read(handler, id)
        return handler.status(record, meta)  # type: ignore[no-any-return]

    async def get_state(self, id: str) -> S | None:
        runtime, handler = await self._runtime()
        record, _ = await runtime.read(handler, id)
        return handler.decode_state(record.state if record else None)  # type: ignore[no-any-return]


class TaskHandle(_Lifecycle, Generic[S, E]):
    """Send events to, trigger, inspect and terminate instances of one Task job."""

    _kind = "task"

    async def send(self, id: str, event: E, idempotency_key: str | None = None) -> SendResult:
        runtime, handler = await self._runtime()
        canonical = handler.check_event(event)
        if idempotency_key is not None:
            check_id(idempotency_key, "idempotency key")
        return await runtime.run(
            handler, check_id(id), lambda d: handler.send(d, canonical, idempotency_key)
        )

    async def status(self, id: str) -> TaskStatus:
        runtime, handler = await self._runtime()
        record, meta = await runtime.read(handler, id)
        return handler.status(record, meta)  # type: ignore[no-any-return]

    async def get_state(self, id: str) -> TaskState[S]:
        runtime, handler = await self._runtime()
        record, _ = await runtime.read(handler, id)
        return handler.get_state(record)  # type: ignore[no-any-return]


class JobsClient:
    """Talks to job instances. Safe to use from any event loop of the process."""

    def __init__(self, app: DurableJobs) -> None:
        self._app = app

    @overload
    def continuous(self, job: Continuous[S]) -> ContinuousHandle[S]: ...
    @overload
    def continuous(self, job: str) -> ContinuousHandle[Any]: ...
    def continuous(self, job: Continuous[Any] | str) -> ContinuousHandle[Any]:
        return ContinuousHandle(self._app, job)

    @overload
    def debounce(self, job: Debounce[E, S]) -> DebounceHandle[E, S]: ...
    @overload
    def debounce(self, job: str) -> DebounceHandle[Any, Any]: ...
    def debounce(self, job: Debounce[Any, Any] | str) -> DebounceHandle[Any, Any]:
        return DebounceHandle(self._app, job)

    @overload
    def task(self, job: Task[S, E]) -> TaskHandle[S, E]: ...
    @overload
    def task(self, job: str) -> TaskHandle[Any, Any]: ...
    def task(self, job: Task[Any, Any] | str) -> TaskHandle[Any, Any]:
        return TaskHandle(self._app, job)

    async def dead_letter(self, instance_id: str) -> DeadLetter | None:
        """What an instance held when it failed for good, or ``None``."""
        runtime = await self._app.runtime()
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
