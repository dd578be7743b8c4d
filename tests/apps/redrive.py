"""Redrive INSTANCE_ID as soon as the file GO exists; print whether this process did.

Usage: python -m tests.apps.redrive INSTANCE_ID GO
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.apps.counter import jobs


def main() -> None:
    instance_id, go = sys.argv[1], Path(sys.argv[2])
    client = jobs.sync_client
    client.workers()  # warm, as a running service is: its store open
    (go.parent / f"ready.{instance_id}.{id(client)}").touch()
    while not go.exists():  # a start line for racing processes, not a timing guess
        pass
    print(client.redrive(instance_id).redriven, flush=True)
    client.close()


if __name__ == "__main__":
    main()
