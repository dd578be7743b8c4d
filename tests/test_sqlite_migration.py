"""A database written by an older release opens, is brought up to date in place, and
keeps what it held."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from durable_jobs.adapters.records import Commit, DeadLetterRecord
from durable_jobs.adapters.sqlite import SQLiteStore
from durable_jobs.testing.conformance import LEASE, T0, dead_letter, record, run

# The schema at version 2, as that release created it.
V2 = """
CREATE TABLE instances (instance_id TEXT PRIMARY KEY, kind TEXT NOT NULL,
    job_name TEXT NOT NULL, key TEXT NOT NULL, state TEXT, meta TEXT NOT NULL,
    alarm_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX instances_alarm ON instances (alarm_at, instance_id) WHERE alarm_at IS NOT NULL;
CREATE INDEX "instances_job" ON "instances" ("job_name", "instance_id");
CREATE TABLE claims (instance_id TEXT PRIMARY KEY, owner TEXT NOT NULL, token TEXT NOT NULL,
    expires_at REAL NOT NULL, recoveries INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE "idempotency_keys" ("instance_id" TEXT, "key" TEXT NOT NULL,
    PRIMARY KEY ("instance_id", "key"));
CREATE TABLE "dead_letters" ("instance_id" TEXT PRIMARY KEY, "job_name" TEXT NOT NULL,
    "state" TEXT, "error" TEXT NOT NULL, "attempts" INTEGER NOT NULL, "at" REAL NOT NULL);
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
PRAGMA user_version = 2;
"""


def version_2(path: Path) -> None:
    """A version 2 file with two instances, a dead letter, and two events not yet
    delivered after one that was (its id must not come back)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(V2)
        for instance_id, alarm in (("task:orders:1", T0 + 60), ("debounce:hooks:1", None)):
            kind, job, key = instance_id.split(":")
            conn.execute(
                "INSERT INTO instances VALUES (?, ?, ?, ?, '{}', '{\"n\":1}', ?, ?, ?)",
                (instance_id, kind, job, key, alarm, T0, T0),
            )
        conn.execute("INSERT INTO idempotency_keys VALUES ('task:orders:1', 'k1')")
        conn.execute(
            "INSERT INTO dead_letters VALUES ('debounce:hooks:1', 'hooks', '[1]', 'E: x', 3, ?)",
            (T0,),
        )
        conn.executemany("INSERT INTO outbox (event) VALUES (?)", [("a",), ("b",), ("c",)])
        conn.execute("DELETE FROM outbox WHERE event = 'a'")  # delivered
        conn.commit()


async def test_a_version_2_file_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    version_2(path)
    store = SQLiteStore(str(path))
    await store.open()
    try:
        listed = await store.list_instances()
        assert [(r.instance_id, r.alarm_at) for r in listed] == [
            ("debounce:hooks:1", None),
            ("task:orders:1", T0 + 60),
        ]
        assert await store.has_idempotency_key("task:orders:1", "k1")
        assert await store.read_dead_letter("debounce:hooks:1") == DeadLetterRecord(
            instance_id="debounce:hooks:1",
            job_name="hooks",
            kind="debounce",  # from the id
            state="[1]",
            meta=None,
            error="E: x",
            traceback="",
            attempts=3,
            at=T0,
        )
        assert [d.instance_id for d in await store.list_dead_letters(job_name="hooks")] == [
            "debounce:hooks:1"
        ]
        # The undelivered events stay in the log, and ids go on from the old outbox's.
        assert [(e.id, e.event) for e in await store.read_events(0, 10)] == [(2, "b"), (3, "c")]
        assert await store.last_event_id() == 3
        claim = await store.claim("task:orders:1", "w", T0, T0 + LEASE)
        assert claim is not None
        assert await store.commit(
            Commit(
                claim=claim,
                record=record("task:orders:1"),
                dead_letter=dead_letter("task:orders:1"),
                history=(run("task:orders:1"),),
                events=(json.dumps({"n": 4}),),
                at=T0,
            )
        )
        assert [e.id for e in await store.read_events(3, 10)] == [4]
        assert await store.read_dead_letter("task:orders:1") == dead_letter("task:orders:1")
        assert len(await store.read_history("task:orders:1", limit=10)) == 1
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3


async def test_opening_a_migrated_file_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    version_2(path)
    for _ in range(2):
        store = SQLiteStore(str(path))
        await store.open()
        assert [e.event for e in await store.read_events(0, 10)] == ["b", "c"]
        assert (await store.stats(T0)).dead_letters == (("hooks", 1),)
        await store.close()
