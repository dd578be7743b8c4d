"""Commits that finish together share a transaction on SQLite, each still fenced."""

from __future__ import annotations

import asyncio
from pathlib import Path

from durable_jobs.adapters.records import Commit
from durable_jobs.adapters.sqlite import SQLiteStore
from durable_jobs.testing.conformance import LEASE, T0, record


async def test_a_stale_commit_in_a_batch_is_refused_and_the_rest_applied(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "g.db"))
    await store.open()
    claims = [await store.claim(f"task:job:{n}", "w", T0, T0 + LEASE) for n in range(20)]
    stale = claims[7]
    assert stale is not None
    assert await store.claim(stale.instance_id, "rival", T0 + LEASE + 1, T0 + 3 * LEASE)
    commits = [
        Commit(claim=c, record=record(c.instance_id, alarm_at=T0)) for c in claims if c is not None
    ]
    applied = await asyncio.gather(*(store.commit(c) for c in commits))
    stored = [await store.read(c.claim.instance_id) for c in commits]
    await store.close()
    assert applied == [n != 7 for n in range(20)]
    assert [s is not None for s in stored] == [n != 7 for n in range(20)]
