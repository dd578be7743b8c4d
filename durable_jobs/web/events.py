"""``GET /api/events``: the store's event log as Server-Sent Events.

Each event is a frame ``event: <type>``, ``id: <event id>``, ``data: <JSON>``; a
browser's ``EventSource`` sends the last id it saw as ``Last-Event-ID`` when it
reconnects, and the stream resumes after it, so nothing committed in between is lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import JobNotFoundError, ValidationError
from ..runtime.app import DurableJobs
from ..runtime.events import JobEvent
from .encode import error_response

MAX_STREAMS = 32
"""Open streams per app: each holds a connection and tails the store's log."""
KEEPALIVE = 15.0
"""Seconds between comment lines on an idle stream, so that proxies keep it open."""

# Sent once the subscription knows where the log ends: from then on every commit is
# on the stream. It also makes the proxies in between pass the headers on at once.
OPENED = b": open\n\n"
# Proxies must neither cache the stream nor buffer it.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStreams:
    """The route, counting its open streams against ``MAX_STREAMS``."""

    def __init__(self, jobs: DurableJobs) -> None:
        self.jobs = jobs
        self.limit = MAX_STREAMS
        self.keepalive = KEEPALIVE
        self.open = 0  # touched only on the server's event loop

    async def route(self, request: Request) -> Response:
        q = request.query_params
        job = q.get("job")
        if job is not None and job not in self.jobs.jobs:
            raise JobNotFoundError(f"no job {job!r}")
        # A reconnecting EventSource sends the last id it saw; a page that rendered the
        # log up to some event starts its stream with ``?after=`` that id.
        after = _event_id(request.headers.get("last-event-id"), "Last-Event-ID")
        if after is None:
            after = _event_id(q.get("after"), "after")
        if request.method == "HEAD":  # the headers alone: no stream, no slot held
            return Response(media_type="text/event-stream", headers=STREAM_HEADERS)
        if after is not None:
            # An id past the log's end (a store made afresh since): from its end.
            await self.jobs.runtimes.open()
            after = min(after, await self.jobs.runtimes.storage.last_event_id())
        if self.open >= self.limit:
            response = error_response(
                503, "TooManyStreams", f"{self.limit} event streams are open: try again later"
            )
            response.headers["Retry-After"] = "5"
            return response
        self.open += 1
        return _Stream(self._frames(q.get("instance_id"), job, after), self._release)

    def _release(self) -> None:
        self.open -= 1

    async def _frames(
        self, instance_id: str | None, job: str | None, after: int | None
    ) -> AsyncIterator[bytes]:
        # Subscribed here, not in the route: a response that never starts leaves no
        # subscription tailing the log. On a client's disconnect the server cancels
        # this generator, and the ``async with`` closes the subscription.
        subscription = self.jobs.events.subscribe(instance_id=instance_id, job=job, after=after)
        async with subscription:
            yield OPENED
            waiting: asyncio.Task[JobEvent] | None = None
            try:
                while True:
                    if waiting is None:
                        waiting = asyncio.ensure_future(anext(subscription))
                    done, _ = await asyncio.wait({waiting}, timeout=self.keepalive)
                    if not done:
                        yield b": keepalive\n\n"
                        continue
                    waiting = None
                    try:
                        event = done.pop().result()
                    except StopAsyncIteration:
                        return
                    yield frame(event)
            finally:
                if waiting is not None:
                    waiting.cancel()


def frame(event: JobEvent) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False, default=str)
    return f"event: {event.type}\nid: {event.id}\ndata: {data}\n\n".encode()


def _event_id(text: str | None, name: str) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValidationError(f"invalid {name} {text!r}: expected an event id")
    return value


class _Stream(StreamingResponse):
    """A stream that gives its slot back however it ends: done, failed or cancelled."""

    def __init__(self, frames: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers=STREAM_HEADERS,
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
