"""The SQLite schema, as numbered migrations applied on open.

The version lives in ``PRAGMA user_version``. Migrations run inside one
``BEGIN IMMEDIATE`` transaction, so processes opening the file at once apply
each migration exactly once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    # WITHOUT ROWID: the text primary key is the table's only b-tree, so a write
    # touches one b-tree instead of two.
    db.execute(
        "CREATE TABLE instances (instance_id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
        "job_name TEXT NOT NULL, key TEXT NOT NULL, state TEXT, meta TEXT NOT NULL, "
        "alarm_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL) WITHOUT ROWID"
    )
    # Finding due alarms reads this index only: its cost grows with the number due.
    db.execute(
        "CREATE INDEX instances_alarm ON instances (alarm_at, instance_id) "
        "WHERE alarm_at IS NOT NULL"
    )
    db.table("instances").create_index(["job_name", "instance_id"], index_name="instances_job")
    # A released claim keeps its row (expired, without a token): updating a row in
    # place costs less than deleting and inserting it on every call.
    db.execute(
        "CREATE TABLE claims (instance_id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
        "token TEXT NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID"
    )
    db.table("idempotency_keys").create(
        {"instance_id": str, "key": str}, pk=("instance_id", "key"), not_null={"key"}
    )
    db.table("dead_letters").create(
        {
            "instance_id": str,
            "job_name": str,
            "state": str,
            "error": str,
            "attempts": int,
            "at": float,
        },
        pk="instance_id",
        not_null={"job_name", "error", "attempts", "at"},
    )
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL)")


def _v2(db: sqlite_utils.Database) -> None:
    # Claims of a due alarm that expired in a row without a release (SEMANTICS 14).
    db.execute("ALTER TABLE claims ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0")


def _v3(db: sqlite_utils.Database) -> None:
    # Dead letters keep what a redrive and the dashboard need. Rows from before
    # take their kind from the id ("kind:job:key"); they have no traceback.
    for column in (
        "kind TEXT NOT NULL DEFAULT ''",
        "meta TEXT",
        "traceback TEXT NOT NULL DEFAULT ''",
    ):
        db.execute(f"ALTER TABLE dead_letters ADD COLUMN {column}")
    db.execute("UPDATE dead_letters SET kind = substr(instance_id, 1, instr(instance_id, ':') - 1)")
    db.execute("CREATE INDEX dead_letters_job ON dead_letters (job_name, instance_id)")
    # AUTOINCREMENT: an id is never given twice, even after the newest row goes.
    db.execute(
        "CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "instance_id TEXT NOT NULL, job_name TEXT NOT NULL, trig TEXT NOT NULL, "
        "outcome TEXT NOT NULL, attempt INTEGER NOT NULL, started_at REAL NOT NULL, "
        "finished_at REAL NOT NULL, error TEXT)"
    )
    # Reading, resetting and trimming one instance's rows walk this index only.
    db.execute("CREATE INDEX history_instance ON history (instance_id, id)")
    # The outbox becomes the event log: events stay until trimmed, and readers keep
    # their own cursors. Events not yet delivered are kept, stamped at 0 (unknown).
    db.execute("ALTER TABLE outbox RENAME TO events")
    db.execute("ALTER TABLE events ADD COLUMN at REAL NOT NULL DEFAULT 0")
    db.execute(
        "CREATE TABLE cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE workers (worker_id TEXT PRIMARY KEY, host TEXT NOT NULL, "
        "pid INTEGER NOT NULL, started_at REAL NOT NULL, last_seen_at REAL NOT NULL, "
        "concurrency INTEGER NOT NULL, running INTEGER NOT NULL, jobs TEXT NOT NULL) "
        "WITHOUT ROWID"
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version it is at."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the database is at schema version {version}, newer than this "
                f"durable-jobs understands ({len(MIGRATIONS)}); upgrade durable-jobs"
            )
        db = sqlite_utils.Database(conn)
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(db)
            conn.execute(f"PRAGMA user_version = {number:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
