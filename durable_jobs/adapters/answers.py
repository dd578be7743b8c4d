"""Answering the callers of a batch: each on its own event loop, one wake-up per loop.

Both SQL back-ends apply the writes of many callers together, often on a thread of
their own; every caller waits on a future of the loop it called from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

Answer = tuple[asyncio.Future[Any], Any]
"""A caller's future and its outcome: a result, or an exception to raise."""


def settle(answers: Iterable[Answer]) -> None:
    """Resolve each future with its outcome; a future whose caller gave up is skipped."""
    for future, outcome in answers:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def answer(answers: Iterable[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any]]) -> None:
    """Settle each caller's future on its loop: at once on the loop running here,
    with one ``call_soon_threadsafe`` for each other loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for loop, future, outcome in answers:
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        on_loop(loop, settle, settled)


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[..., Any], *args: Any) -> None:
    """``call(*args)`` on ``loop``: now if this thread runs it, else at its next turn."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        call(*args)
        return
    with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
        loop.call_soon_threadsafe(call, *args)
