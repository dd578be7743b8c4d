"""Waking alarm dispatchers of this process, whatever event loop they wait on."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref


class Wakeup:
    """A broadcast signal that any thread may fire and any event loop may wait for.

    Fires are counted, and each loop remembers the count it last saw: a fire that
    lands while a dispatcher is busy between two waits (say, claiming) is not lost;
    its next wait returns at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired = 0
        self._seen: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = (
            weakref.WeakKeyDictionary()
        )
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def fire(self) -> None:
        with self._lock:
            self._fired += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> bool:
        """Whether it fired since this loop's last wait, or within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        waiter = (loop, asyncio.Event())
        with self._lock:
            if self._seen.get(loop, 0) != self._fired:
                self._seen[loop] = self._fired
                return True
            self._waiters.add(waiter)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await waiter[1].wait()
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(waiter)
                self._seen[loop] = self._fired
