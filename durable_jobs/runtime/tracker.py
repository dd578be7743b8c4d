"""Shipping telemetry events to an HTTP endpoint, in batches, from the outbox."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from ..adapters.protocols import StorageAdapter
from ..errors import DurableJobsError
from ..logs import get_logger

log = get_logger("durable_jobs.tracker")


class HttpTracker:
    """POSTs committed events as ``{"env", "service_key", "events": [...]}`` JSON.

    Events are written to the store's outbox in the transaction that produced them
    and deleted only after the endpoint accepted them (any 2xx), so a crash or an
    unreachable endpoint delays telemetry but does not lose it.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        env: str = "production",
        service_key: str = "",
        batch_size: int = 100,
        timeout: float = 10.0,
    ) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"invalid tracker endpoint {endpoint!r}: expected an http(s) URL")
        self.endpoint = endpoint
        self.env = env
        self.service_key = service_key
        self.batch_size = batch_size
        self.timeout = timeout

    async def ship(self, storage: StorageAdapter) -> int:
        """Send everything in the outbox; return how many events were delivered."""
        sent = 0
        while entries := await storage.take_outbox(self.batch_size):
            body = {
                "env": self.env,
                "service_key": self.service_key,
                "events": [json.loads(e.event) for e in entries],
            }
            try:
                await asyncio.to_thread(self._post, json.dumps(body).encode())
            except OSError as exc:
                log.warning("tracker.post_failed", endpoint=self.endpoint, error=str(exc))
                return sent
            await storage.ack_outbox([e.id for e in entries])
            sent += len(entries)
        return sent

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.endpoint, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            response.read()

    async def run(self, storage: StorageAdapter, interval: float = 1.0) -> None:
        """Ship the outbox every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.ship(storage)
            except DurableJobsError as exc:
                log.warning("tracker.outbox_failed", error=str(exc))
            await asyncio.sleep(interval)
