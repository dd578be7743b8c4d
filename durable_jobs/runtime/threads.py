"""Plain ``def`` handlers: run on threads, and outlived by their instance's claim.

A thread cannot be stopped. So when the call running a plain handler is cancelled or
times out, the call still waits for the thread to end before it lets go of the
instance: no second activation may overlap the first (SEMANTICS 1). Only a second
cancellation (a worker whose grace ran out) abandons the thread, leaving the claim to
expire. The threads are daemons, so that one that will not end never keeps a
stopping process alive (SEMANTICS 10).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..adapters.answers import answer

IDLE_SECONDS = 60.0
"""How long an idle thread waits for work before it ends."""


class HandlerAbandoned(asyncio.CancelledError):
    """Cancelled twice while a handler's thread still ran: the call gave up waiting for
    it, so the instance's claim must be left to expire, not released."""


_Work = tuple[
    asyncio.AbstractEventLoop,
    asyncio.Future[Any],
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
]


class HandlerThreads:
    """A pool of daemon threads that grows with demand and shrinks when idle."""

    def __init__(self, name: str = "durable-jobs-handler") -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work that no submission has counted on yet

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on a thread, in a copy of the caller's context; the
        future of the running loop it returns is answered with one wake-up."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((loop, future, contextvars.copy_context(), fn, args))
        with self._lock:
            if self._idle:
                self._idle -= 1
                return future
        threading.Thread(target=self._work, name=self._name, daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            try:
                loop, future, context, fn, args = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nobody counts on this thread: let it end
                        self._idle -= 1
                        return
                continue  # a submission counted on it just now: its work is queued
            try:
                outcome = context.run(fn, *args)
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome = exc
            answer([(loop, future, outcome)])
            del loop, future, context, fn, args, outcome  # hold nothing while idle
            with self._lock:
                self._idle += 1


async def outlive(thread: asyncio.Future[Any], timeout: float | None) -> Any:
    """The result of a handler's ``thread``, once it has ended. If it runs past
    ``timeout`` seconds, or the caller is cancelled, that is raised — but only once
    the thread has ended all the same; a second cancellation abandons it."""
    cancelled: asyncio.CancelledError | None = None
    timed_out = False
    while not thread.done():
        try:
            await asyncio.wait({thread}, timeout=None if cancelled or timed_out else timeout)
        except asyncio.CancelledError as exc:
            if cancelled is not None:
                raise HandlerAbandoned("the handler's thread still ran; abandoned") from None
            cancelled = exc
            continue
        timed_out = timed_out or not thread.done()
    if cancelled is not None:
        raise cancelled
    if timed_out:
        raise TimeoutError(f"the handler ran longer than its timeout of {timeout:g}s")
    return thread.result()
