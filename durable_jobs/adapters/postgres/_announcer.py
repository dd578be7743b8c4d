"""Telling other processes that events were committed, after the commits.

A transaction that notifies holds the server's notification lock from its notification
to the end of its commit, WAL flush included: commits that each notified would commit
one at a time. So commits with events notify nobody themselves; the store announces
them from a transaction of its own, one at a time, and the announcements asked for
while one is out make one more, after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ...logs import Outage


class Announcer:
    """Runs ``send`` (which notifies) on ``submit``'s threads, one at a time, at least
    once after each ``announce()``; failures go to ``outage``, and a reader that missed
    the notification finds the events at its next poll."""

    def __init__(
        self,
        send: Callable[[], None],
        submit: Callable[[Callable[[], None]], object],
        outage: Outage,
    ) -> None:
        self._send = send
        self._submit = submit
        self._outage = outage
        self._lock = threading.Lock()
        self._busy = False  # an announcement is out
        self._again = False  # and another was asked for since it went

    def announce(self) -> None:
        with self._lock:
            if self._busy:
                self._again = True
                return
            self._busy = True
        try:
            self._submit(self._run)
        except RuntimeError:  # the store is closing: its executor takes no more work
            with self._lock:
                self._busy = False

    def _run(self) -> None:
        while True:
            try:
                self._send()
            except Exception as exc:  # whatever it was, later announcements must go
                self._outage.failed("announce_events", error=str(exc))
            else:
                self._outage.succeeded("announce_events")
            with self._lock:
                if not self._again:
                    self._busy = False
                    return
                self._again = False
