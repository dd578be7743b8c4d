"""Awaiting a coroutine with a hook that runs just before it first suspends.

A call held by an open storage transaction (``HoldingStorage``) may run only while
it does not give the event loop a turn: the shell steps the handler's coroutine
itself and, if it is about to suspend, first turns the transaction into a stored
claim. What the coroutine then awaits is passed through unchanged, as ``await``
would. Code that is about to block the thread instead (the blocking client, called
from a handler) calls ``before_blocking`` to the same end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_stepping = threading.local()  # .hook: that of the coroutine this thread is stepping


def before_blocking() -> None:
    """Run the hook of the coroutine being stepped on this thread, if any: it is about
    to block the thread, which it must not do while its hold lasts."""
    hook = getattr(_stepping, "hook", None)
    if hook is not None:
        hook()


class BeforeSuspending(Generic[T]):
    """``await BeforeSuspending(coro, hook)`` is ``await coro``, with ``hook()`` called
    once, just before ``coro`` first suspends (never, if it finishes without)."""

    __slots__ = ("_coro", "_hook")

    def __init__(self, coro: Coroutine[Any, Any, T], hook: Callable[[], object]) -> None:
        self._coro = coro
        self._hook: Callable[[], object] | None = hook

    def _run_hook(self) -> None:
        hook, self._hook = self._hook, None  # once, whoever asks first
        if hook is not None:
            hook()

    def __await__(self) -> Generator[Any, Any, T]:
        coro = self._coro
        outer = getattr(_stepping, "hook", None)
        _stepping.hook = self._run_hook
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            _stepping.hook = outer
        try:
            self._run_hook()
        except BaseException:
            coro.close()
            raise
        while True:  # what ``yield from coro`` does, from its first suspension on
            try:
                sent = yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, thrown into the coroutine
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    result = done.value
                    return result
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration as done:
                    result = done.value
                    return result
