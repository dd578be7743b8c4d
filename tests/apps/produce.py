"""Send COUNT Bump events to each of the instance ids given; print how many were acknowledged.

Usage: python -m tests.apps.produce COUNT ID [ID ...]   (DJ_HANG=1: events that hang)
"""

from __future__ import annotations

import os
import sys

from tests.apps.counter import Bump, counter, jobs


def main() -> None:
    count, ids = int(sys.argv[1]), sys.argv[2:]
    client = jobs.sync_client.task(counter)
    hang = "DJ_HANG" in os.environ
    if hang:  # warm, as a running service is: its store and writer open
        client.send("warm-up", Bump())
    acknowledged = 0
    for n in range(count):
        for key in ids:
            client.send(key, Bump(schedule=n % 10 == 0, hang=hang))
            acknowledged += 1
    print(acknowledged, flush=True)


if __name__ == "__main__":
    main()
