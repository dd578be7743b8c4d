"""The blocking client: every call is forwarded to the asyncio client on a private loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar, overload

from ..jobs.definitions import Continuous, Debounce, Task
from .client import ContinuousHandle, DebounceHandle, JobsClient, TaskHandle
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
from .runtimes import Runtimes

S = TypeVar("S")
E = TypeVar("E")
T = TypeVar("T")


class _Bridge:
    """An event loop on a daemon thread that runs the async client's coroutines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="durable-jobs-sync", daemon=True
                )
                self._thread.start()
            loop = self._loop
        return _call(loop, coro)

    def close(self, last: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Run ``last()`` on the private loop, cancel what still runs there (a claim
        heartbeat), then close it: a loop that is only stopped leaks its selector and
        warns when collected."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():  # closed from a handler on the loop itself
            loop.call_soon(loop.stop)
            return
        if last is not None:
            asyncio.run_coroutine_threadsafe(last(), loop).result()
        asyncio.run_coroutine_threadsafe(_cancel_pending(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _call(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """``coro``'s result, run as a task on ``loop`` (in this thread's context, as
    ``call_soon_threadsafe`` copies it), waited for on a bare lock: lighter than
    ``run_coroutine_threadsafe``, whose condition variable costs the caller a second
    wake-up."""
    finished = threading.Lock()
    finished.acquire()
    done: list[asyncio.Task[T]] = []

    def ended(task: asyncio.Task[T]) -> None:
        done.append(task)
        finished.release()

    def start() -> None:
        loop.create_task(coro).add_done_callback(ended)

    loop.call_soon_threadsafe(start)
    finished.acquire()
    return done[0].result()


async def _cancel_pending() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class SyncContinuousHandle(Generic[S]):
    def __init__(self, handle: ContinuousHandle[S], bridge: _Bridge) -> None:
        self._h, self._run = handle, bridge.run

    def start(self, id: str, input: S) -> StartResult:
        return self._run(self._h.start(id, input))

    def trigger(self, id: str) -> TriggerResult:
        return self._run(self._h.trigger(id))

    def status(self, id: str) -> ContinuousStatus:
        return self._run(self._h.status(id))

    def get_state(self, id: str) -> S | None:
        return self._run(self._h.get_state(id))

    def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        return self._run(self._h.terminate(id, reason))

    def pause(self, id: str) -> PauseResult:
        return self._run(self._h.pause(id))

    def resume(self, id: str) -> ResumeResult:
        return self._run(self._h.resume(id))


class SyncDebounceHandle(Generic[E, S]):
    def __init__(self, handle: DebounceHandle[E, S], bridge: _Bridge) -> None:
        self._h, self._run = handle, bridge.run

    def add(self, id: str, event: E, idempotency_key: str | None = None) -> AddResult:
        return self._run(self._h.add(id, event, idempotency_key))

    def flush(self, id: str) -> FlushResult:
        return self._run(self._h.flush(id))

    def clear(self, id: str) -> ClearResult:
        return self._run(self._h.clear(id))

    def status(self, id: str) -> DebounceStatus:
        return self._run(self._h.status(id))

    def get_state(self, id: str) -> S | None:
        return self._run(self._h.get_state(id))


class SyncTaskHandle(Generic[S, E]):
    def __init__(self, handle: TaskHandle[S, E], bridge: _Bridge) -> None:
        self._h, self._run = handle, bridge.run

    def send(self, id: str, event: E, idempotency_key: str | None = None) -> SendResult:
        return self._run(self._h.send(id, event, idempotency_key))

    def trigger(self, id: str) -> TriggerResult:
        return self._run(self._h.trigger(id))

    def status(self, id: str) -> TaskStatus:
        return self._run(self._h.status(id))

    def get_state(self, id: str) -> TaskState[S]:
        return self._run(self._h.get_state(id))

    def terminate(self, id: str, reason: str | None = None) -> TerminateResult:
        return self._run(self._h.terminate(id, reason))


class SyncJobsClient:
    """The methods of [``JobsClient``][durable_jobs.runtime.client.JobsClient], blocking."""

    def __init__(self, client: JobsClient, runtimes: Runtimes) -> None:
        self._client = client
        self._runtimes = runtimes
        self._bridge = _Bridge()

    @overload
    def continuous(self, job: Continuous[S]) -> SyncContinuousHandle[S]: ...
    @overload
    def continuous(self, job: str) -> SyncContinuousHandle[Any]: ...
    def continuous(self, job: Continuous[Any] | str) -> SyncContinuousHandle[Any]:
        return SyncContinuousHandle(self._client.continuous(job), self._bridge)

    @overload
    def debounce(self, job: Debounce[E, S]) -> SyncDebounceHandle[E, S]: ...
    @overload
    def debounce(self, job: str) -> SyncDebounceHandle[Any, Any]: ...
    def debounce(self, job: Debounce[Any, Any] | str) -> SyncDebounceHandle[Any, Any]:
        return SyncDebounceHandle(self._client.debounce(job), self._bridge)

    @overload
    def task(self, job: Task[S, E]) -> SyncTaskHandle[S, E]: ...
    @overload
    def task(self, job: str) -> SyncTaskHandle[Any, Any]: ...
    def task(self, job: Task[Any, Any] | str) -> SyncTaskHandle[Any, Any]:
        return SyncTaskHandle(self._client.task(job), self._bridge)

    def dead_letter(self, instance_id: str) -> DeadLetter | None:
        return self._bridge.run(self._client.dead_letter(instance_id))

    def dead_letters(
        self, job: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[DeadLetter]:
        return self._bridge.run(self._client.dead_letters(job, limit, cursor))

    def redrive(self, instance_id: str, state: Any = None) -> RedriveResult:
        return self._bridge.run(self._client.redrive(instance_id, state))

    def discard_dead_letter(self, instance_id: str) -> bool:
        return self._bridge.run(self._client.discard_dead_letter(instance_id))

    def history(self, instance_id: str, limit: int = 50) -> list[Execution]:
        return self._bridge.run(self._client.history(instance_id, limit))

    def instances(
        self,
        job: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[InstanceInfo]:
        return self._bridge.run(self._client.instances(job, kind, status, limit, cursor))

    def workers(self) -> list[WorkerInfo]:
        return self._bridge.run(self._client.workers())

    def close(self) -> None:
        """Release the claims of the private loop's runtime, then stop that loop."""
        self._bridge.close(self._runtimes.close_current)
