"""Hearing alarms set and events committed by other processes: LISTEN on a
dedicated connection.

The connection lives on its own daemon thread, not in the pool and not on any event
loop, so every loop of the process is woken through the same ``Wakeup`` (one
per channel). Notifications carry the sending store's origin; a store ignores its
own, since its commits already fired the wakeup locally. The store starts listening
at its first wait for an alarm or for events: a process that only makes calls (a web
server) holds no connection for it, and its thread is not woken by every alarm the
whole schema sets.
"""

from __future__ import annotations

import hashlib
import threading

import psycopg
from psycopg import sql

from ...logs import Outage
from ..wakeup import Wakeup

NAMEDATALEN = 63
"""The longest identifier PostgreSQL keeps, in bytes; ``pg_notify`` refuses longer."""


ALARMS = "alarms"
EVENTS = "events"


def channel_name(schema: str, topic: str = ALARMS) -> str:
    """The notification channel of ``topic`` in ``schema``: readable when it fits,
    hashed otherwise (the alarms' hash is the schema's alone, as it always was)."""
    readable = f"{schema}.{topic}"
    if len(readable.encode()) <= NAMEDATALEN:
        return readable
    seed = schema if topic == ALARMS else readable
    return "durable_jobs." + hashlib.blake2b(seed.encode(), digest_size=16).hexdigest()


class Listener:
    """Fires the wakeup of a channel on every notification on it not sent by ``origin``.

    While the connection is down notifications are lost, so a reconnect fires the
    wakeup too; meanwhile waiters still poll (``wait_for_alarm`` is bounded).
    """

    TICK = 0.1
    """How often the thread checks whether it should stop, in seconds."""

    def __init__(self, dsn: str, wakeups: dict[str, Wakeup], origin: str, outage: Outage) -> None:
        self._dsn = dsn
        self._wakeups = wakeups
        self._outage = outage  # the store's: one outage, however many connections see it
        self._origin = origin
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening, if not yet started (from any thread)."""
        if self._thread is not None:  # every wait for an alarm asks: no lock once started
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="durable-jobs-listen", daemon=True
                )
                self._thread.start()

    @property
    def listening(self) -> bool:
        """Whether the LISTEN is in place (the wake-up it fires then follows at once)."""
        return self._listening.is_set()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5 * self.TICK)

    def _run(self) -> None:
        delay = self.TICK
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # whatever it was, keep listening: waiters rely on it
                self._outage.failed("listen", channels=list(self._wakeups), error=str(exc))
            if self._listening.is_set():
                delay = self.TICK  # it worked for a while: reconnect promptly
            self._listening.clear()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _listen(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            for channel in self._wakeups:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            # What was sent before we listened (or while we were away) is lost: let
            # waiters look for themselves. Listening is told first, so that a waiter
            # this wakes finds it so.
            self._listening.set()
            self._outage.succeeded("listen")
            for wakeup in self._wakeups.values():
                wakeup.fire()
            while not self._stop.is_set():
                for notify in conn.notifies(timeout=self.TICK):
                    heard = self._wakeups.get(notify.channel)
                    if heard is not None and notify.payload != self._origin:
                        heard.fire()
