"""Telemetry events and the in-process bus that hands them to subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

EVENT_TYPES = (
    "job.started",
    "job.executed",
    "job.failed",
    "job.retry_exhausted",
    "job.terminated",
    "debounce.started",
    "debounce.flushed",
    "task.scheduled",
)


@attrs.frozen(kw_only=True)
class JobEvent:
    """One telemetry event. Fields of its own are in ``data`` and readable as attributes."""

    type: str
    instance_id: str
    job_name: str
    job_type: str
    at: datetime
    data: Mapping[str, Any] = attrs.field(factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "data")[name]
        except (KeyError, AttributeError):
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self.to_dict()[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "instance_id": self.instance_id,
            "job_name": self.job_name,
            "job_type": self.job_type,
            "at": self.at.isoformat(),
            **self.data,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> JobEvent:
        raw = json.loads(text)
        common = {k: raw.pop(k) for k in ("type", "instance_id", "job_name", "job_type")}
        at = datetime.fromisoformat(raw.pop("at")).astimezone(UTC)
        return cls(at=at, data=raw, **common)


_CLOSED: Any = object()


class Subscription:
    """An async iterator over the events committed after it was made.

    Closing it ends the iteration once the events received before are consumed.
    """

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue()

    def _put(self, event: JobEvent) -> None:
        with contextlib.suppress(RuntimeError):  # the subscriber's loop has closed
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        event = await self._queue.get()
        if event is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # stay ended for every later call
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        self._bus.unsubscribe(self)
        self._put(_CLOSED)  # wakes an iterator waiting for the next event

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Delivers committed events to subscribers and listeners, in commit order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._listeners: list[Callable[[JobEvent], None]] = []

    def subscribe(self) -> Subscription:
        """Start receiving events; call from the event loop that will iterate."""
        subscription = Subscription(self)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    @property
    def active(self) -> bool:
        return bool(self._subscriptions or self._listeners)

    def publish(self, events: Iterable[JobEvent]) -> None:
        with self._lock:
            targets = [*self._listeners, *(s._put for s in self._subscriptions)]
        for event in events:
            for target in targets:
                target(event)
