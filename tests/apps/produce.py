"""Send COUNT Bump events to each of the instance ids given; print how many were acknowledged.

Usage: python -m tests.apps.produce COUNT ID [ID ...]   (DJ_HANG=1: events that hang)
"""

from __future__ import annotations

import os
import sys
from typing import Any

from durable_jobs import StorageError
from tests.apps.counter import Bump, counter, jobs


def send(client: Any, key: str, event: Bump, tries: int = 20) -> None:
    """``send``, tried again while the store says trying again may succeed — as a
    service would: a call whose claim expired under load commits nothing and says so."""
    for attempt in range(1, tries + 1):
        try:
            client.send(key, event)
            return
        except StorageError as exc:
            if not exc.retryable or attempt == tries:
                raise


def main() -> None:
    count, ids = int(sys.argv[1]), sys.argv[2:]
    client = jobs.sync_client.task(counter)
    hang = "DJ_HANG" in os.environ
    if hang:  # warm, as a running service is: its store and writer open
        client.send("warm-up", Bump())
    acknowledged = 0
    for n in range(count):
        for key in ids:
            send(client, key, Bump(schedule=n % 10 == 0, hang=hang))
            acknowledged += 1
    print(acknowledged, flush=True)


if __name__ == "__main__":
    main()
