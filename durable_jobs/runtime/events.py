"""Telemetry events: the durable event log's subscribers and the in-process listeners."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from ..adapters.protocols import StorageAdapter
from ..errors import StorageError
from ..logs import get_logger, storage_failed

log = get_logger("durable_jobs.events")

# Built once: every commit with events encodes them.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

EVENT_TYPES = (
    "job.started",
    "job.executed",
    "job.failed",
    "job.retry_exhausted",
    "job.terminated",
    "debounce.started",
    "debounce.flushed",
    "task.scheduled",
    "job.paused",
    "job.resumed",
)

POLL = 1.0
"""Seconds between reads of the event log when no wake-up comes."""
BATCH = 500


@attrs.frozen(kw_only=True)
class JobEvent:
    """One telemetry event. Fields of its own are in ``data`` and readable as attributes.

    ``id`` is its place in the event log (increasing in commit order); ``None`` for
    an event handed to in-process listeners as its call committed.
    """

    type: str
    instance_id: str
    job_name: str
    job_type: str
    at: datetime
    data: Mapping[str, Any] = attrs.field(factory=dict)
    id: int | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "data")[name]
        except (KeyError, AttributeError):
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self.to_dict()[name]

    def to_dict(self) -> dict[str, Any]:
        fields: dict[str, Any] = {} if self.id is None else {"id": self.id}
        fields["type"] = self.type
        fields["instance_id"] = self.instance_id
        fields["job_name"] = self.job_name
        fields["job_type"] = self.job_type
        fields["at"] = self.at.isoformat()
        fields.update(self.data)
        return fields

    def to_json(self) -> str:
        """As the event log stores it: without ``id``, which the log gives; ``type``
        first, which subscriptions to some types read before parsing."""
        data = self.data
        fields: dict[str, Any] = {
            "type": self.type,
            "instance_id": self.instance_id,
            "job_name": self.job_name,
            "job_type": self.job_type,
            "at": self.at.isoformat(),
        }
        if data:
            fields.update(data)
        return _dumps(fields)

    @classmethod
    def from_json(cls, text: str, id: int | None = None) -> JobEvent:
        raw = json.loads(text)
        raw.pop("id", None)
        common = {k: raw.pop(k) for k in ("type", "instance_id", "job_name", "job_type")}
        at = datetime.fromisoformat(raw.pop("at")).astimezone(UTC)
        return cls(at=at, data=raw, id=id, **common)


_CLOSED: Any = object()


def _types(types: Collection[str]) -> Collection[str]:
    if isinstance(types, str):
        raise TypeError(f"types must be a collection of event types, not the string {types!r}")
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(
            f"unknown event types {', '.join(map(repr, unknown))}: "
            f"expected some of {', '.join(EVENT_TYPES)}"
        )
    return types


def _start(type: str) -> str:
    return _dumps({"type": type})[:-1] + ","


class Subscription:
    """An async iterator over the events committed after it was made, by any process
    sharing the store, in commit order; optionally of one instance, one job, or some
    event types.

    It tails the store's event log from the position the log had when it was made.
    Closing it ends the iteration once the events received before are consumed.
    """

    def __init__(
        self,
        bus: EventBus,
        storage: StorageAdapter,
        *,
        instance_id: str | None = None,
        job: str | None = None,
        after: int | None = None,
        types: Collection[str] | None = None,
    ) -> None:
        self._bus = bus
        self._storage = storage
        self._instance_id = instance_id
        self._job = job
        # Events of other types are passed over before they are parsed, by how their
        # stored text starts (``JobEvent.to_json`` writes the type first).
        self._starts = None if types is None else tuple(_start(t) for t in _types(types))
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self.positioned: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._position: int | None = None
        self._tail = self._loop.create_task(self._follow(after))
        self._finish: asyncio.Task[None] | None = None
        bus.settling(self)

    @property
    def position(self) -> int | None:
        """The id of the last event of the log read, delivered or passed over: a
        subscription made with ``after=position`` goes on from here."""
        return self._position

    def _wants(self, event: JobEvent) -> bool:
        return (self._instance_id is None or event.instance_id == self._instance_id) and (
            self._job is None or event.job_name == self._job
        )

    async def _follow(self, after: int | None) -> None:
        try:
            self._position = after if after is not None else await self._start()
        finally:
            if not self.positioned.done():
                self.positioned.set_result(None)
            self._bus.settled(self)
        while True:
            try:
                read = await self._read()
            except StorageError as exc:
                storage_failed(log, "events.read_failed", exc)
                await asyncio.sleep(POLL)
                continue
            if read < BATCH:
                with contextlib.suppress(StorageError):
                    await self._storage.wait_for_events(self._position, POLL)

    async def _read(self) -> int:
        """Queue the next events of the log; return how many were read."""
        assert self._position is not None
        entries = await self._storage.read_events(self._position, BATCH)
        starts = self._starts
        for entry in entries:
            self._position = entry.id
            if starts is not None and not entry.event.startswith(starts):
                continue
            event = JobEvent.from_json(entry.event, entry.id)
            if self._wants(event):
                self._queue.put_nowait(event)
        return len(entries)

    async def _catch_up(self) -> None:
        """After a close: queue what was committed before it, then the end."""
        self._tail.cancel()
        await asyncio.gather(self._tail, return_exceptions=True)
        try:
            if self._position is not None:
                last = await self._storage.last_event_id()
                while self._position < last and await self._read():
                    pass
        except StorageError as exc:
            storage_failed(log, "events.read_failed", exc)
        finally:
            self._queue.put_nowait(_CLOSED)
            self._bus.settled(self)

    async def _start(self) -> int:
        while True:
            try:
                await self._bus.opener()
                return await self._storage.last_event_id()
            except StorageError as exc:
                storage_failed(log, "events.read_failed", exc)
                await asyncio.sleep(POLL)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        event = await self._queue.get()
        if event is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # stay ended for every later call
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        if self._finish is not None:
            return
        # Commits from now on wait until the catch-up has read where the log ends.
        self._bus.settling(self)
        with contextlib.suppress(RuntimeError):  # the subscriber's loop has closed
            self._loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        if self._finish is None:
            self._finish = self._loop.create_task(self._catch_up())

    async def __aenter__(self) -> Subscription:
        await asyncio.wrap_future(self.positioned)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        self._tail.cancel()
        await asyncio.gather(self._tail, return_exceptions=True)
        if self._finish is not None:
            self._finish.cancel()
            await asyncio.gather(self._finish, return_exceptions=True)


class EventBus:
    """Subscriptions to the store's event log, and in-process listeners of the events
    each call of this process commits (the test runtime's record, metrics)."""

    def __init__(
        self, storage: StorageAdapter, opener: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._storage = storage
        self.opener = opener or storage.open
        self._lock = threading.Lock()
        self._settling: dict[Subscription, concurrent.futures.Future[None]] = {}
        self._listeners: list[Callable[[JobEvent], None]] = []

    def subscribe(
        self,
        instance_id: str | None = None,
        job: str | None = None,
        *,
        after: int | None = None,
        types: Collection[str] | None = None,
    ) -> Subscription:
        """Events committed from now on (or after event id ``after``), of one instance
        or one job if given, of the given ``types`` if given (a ``ValueError`` names an
        unknown one). Call from the event loop that will iterate."""
        return Subscription(
            self, self._storage, instance_id=instance_id, job=job, after=after, types=types
        )

    def settling(self, subscription: Subscription) -> None:
        """``subscription`` is reading where the log ends (it starts, or it closes)."""
        with self._lock:
            if subscription not in self._settling:
                self._settling[subscription] = concurrent.futures.Future()

    def settled(self, subscription: Subscription) -> None:
        with self._lock:
            done = self._settling.pop(subscription, None)
        if done is not None:
            done.set_result(None)

    def subscribing(self) -> Awaitable[None] | None:
        """While a subscription is reading where the log ends, something to await
        before committing, so that the commit's events fall after that point: seen by
        a subscription that starts, not by one that closes."""
        if not self._settling:
            return None
        with self._lock:
            waiting = list(self._settling.values())
        return _all_settled(waiting)

    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def publish(self, events: Iterable[JobEvent]) -> None:
        if not self._listeners:
            return
        with self._lock:
            targets = list(self._listeners)
        for event in events:
            for target in targets:
                target(event)


async def _all_settled(waiting: list[concurrent.futures.Future[None]]) -> None:
    # Bounded: a subscriber whose loop is blocked must not stop commits for long.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            for future in waiting:
                await asyncio.wrap_future(future)
