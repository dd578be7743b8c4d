"""What this process has in flight on one store: the claims it holds and asks for.

A write is applied (and fsynced) at once, without waiting for its loop's next batch
(see ``writer.py``), only when nothing could share its transaction: when the process
holds no claim but the caller's own and asks for none. A miscount costs only speed,
never safety; the lock keeps event loops on several threads from making one.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Sequence

from ..forks import pid
from ..records import Claim

MAX_BUSY = 0.005
"""How long, in seconds, calls that find nothing else ready may keep their event loop
without a yield, so that a caller that never waits does not starve the loop."""


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = pid()
        self._held: dict[str, float] = {}  # token -> expiry
        self._asking = 0
        self._earliest = math.inf  # no held claim expires before this
        self._last_yield: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = (
            weakref.WeakKeyDictionary()
        )

    def alone(self, now: float | None = None, token: str = "", asking: int = 0) -> bool:
        """Whether no claim but ``token`` is held, and none asked for but the caller's
        own ``asking``. With ``now``, claims expired by then (forgotten by their holder)
        no longer count."""
        if self._pid != pid():  # a forked child holds nothing of its parent's
            with self._lock:
                self._pid, self._held, self._asking = pid(), {}, 0
                self._earliest = math.inf
        if self._asking > asking:
            return False
        held = self._held
        if now is not None and now >= self._earliest:
            with self._lock:
                for stale in [t for t, until in held.items() if until <= now]:
                    del held[stale]
                self._earliest = min(held.values(), default=math.inf)
        return not held or (len(held) == 1 and token in held)

    async def let_others_ask(self) -> None:
        """Let the tasks ready to run on this loop go first, so that calls starting
        alongside the caller's see it asking and share its transactions.

        A yield costs a turn of the loop, a sizeable part of a lone call's
        work, and where nothing else is ready it changes nothing: what I/O wakes runs
        after the caller either way. asyncio has no public way to ask, so a loop
        without ``_ready`` (not asyncio's own) always yields.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        now = time.monotonic()
        if ready is None or ready or now - self._last_yield.get(loop, 0.0) >= MAX_BUSY:
            self._last_yield[loop] = now
            await asyncio.sleep(0)

    def asking(self) -> InFlight:
        """``with flight.asking():`` the caller counts as asking for a claim."""
        return self

    def __enter__(self) -> None:
        with self._lock:
            self._asking += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._asking -= 1

    def hold(self, claims: Sequence[Claim]) -> None:
        with self._lock:
            for claim in claims:
                self._held[claim.token] = claim.expires_at
                self._earliest = min(self._earliest, claim.expires_at)

    def renewed(self, claims: Sequence[Claim]) -> None:
        """Claims renewed: those still counted expire later now."""
        with self._lock:
            for claim in claims:
                if claim.token in self._held:
                    self._held[claim.token] = claim.expires_at

    def let_go(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)
