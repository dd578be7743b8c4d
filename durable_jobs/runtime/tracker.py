"""Shipping telemetry events to an HTTP endpoint, in batches, from the event log."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping

from ..adapters.protocols import StorageAdapter
from ..errors import DurableJobsError
from ..logs import get_logger

log = get_logger("durable_jobs.tracker")


CURSOR = "http_tracker"
"""The name of the tracker's position in the event log, shared by every process."""


class HttpTracker:
    """POSTs committed events as ``{"env", "service_key", "events": [...]}`` JSON.

    Events are written to the store's event log in the transaction that produced
    them, by whichever process committed; the tracker of any worker ships them from
    there and moves a position kept in the store only after the endpoint accepted
    them (any 2xx), so a crash or an unreachable endpoint delays telemetry but does
    not lose it. A batch may be sent twice if a process dies between the two.
    ``headers`` are added to every request (an ``Authorization``, say).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        env: str = "production",
        service_key: str = "",
        headers: Mapping[str, str] | None = None,
        batch_size: int = 100,
        timeout: float = 10.0,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"invalid tracker endpoint {endpoint!r}: expected an http(s) URL")
        self.endpoint = endpoint
        self.env = env
        self.service_key = service_key
        self.headers = {**(headers or {}), "Content-Type": "application/json"}
        self.batch_size = batch_size
        self.timeout = timeout

    async def ship(self, storage: StorageAdapter) -> int:
        """Send every event after the tracker's position; return how many were sent."""
        sent = 0
        position = await storage.read_cursor(CURSOR)  # 0: from the oldest event kept
        while entries := await storage.read_events(position, self.batch_size):
            body = {
                "env": self.env,
                "service_key": self.service_key,
                "events": [{"id": e.id, **json.loads(e.event)} for e in entries],
            }
            try:
                await asyncio.to_thread(self._post, json.dumps(body).encode())
            except OSError as exc:
                log.warning("tracker.post_failed", endpoint=self.endpoint, error=str(exc))
                return sent
            if not await storage.move_cursor(CURSOR, position, entries[-1].id):
                position = await storage.read_cursor(CURSOR)  # another process shipped
                continue
            position = entries[-1].id
            sent += len(entries)
        return sent

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.endpoint, data=body, headers=self.headers
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            response.read()

    async def run(self, storage: StorageAdapter, interval: float = 1.0) -> None:
        """Ship the event log every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.ship(storage)
            except DurableJobsError as exc:
                log.warning("tracker.read_failed", error=str(exc))
            await asyncio.sleep(interval)
