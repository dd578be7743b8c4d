"""What the storage itself allows a sequential producer, measured on raw connections.

A durable call with single activation makes two write transactions — taking the
instance's claim, then committing what the handler did (with the claim's release) —
and only the second must reach the disk. An enqueue (Huey, Procrastinate) makes one.
These loops make exactly those transactions on tiny rows, with no library around
them, so their rates are the ceilings no client code on this machine can pass:

    python bench/ceilings.py
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

N = 2_000
KEYS = 1_000


def rate(call: Callable[[int], object], n: int = N) -> float:
    call(-1)  # warm-up
    started = time.perf_counter()
    for i in range(n):
        call(i)
    return n / (time.perf_counter() - started)


def sqlite_ceilings() -> dict[str, float]:
    """Calls per second on a WAL file in the temporary directory."""
    with tempfile.TemporaryDirectory(prefix="djceiling-") as directory:
        conn = sqlite3.connect(os.path.join(directory, "c.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
        conn.execute("CREATE TABLE c (k TEXT PRIMARY KEY, token TEXT) WITHOUT ROWID")

        def write(sql: str, params: tuple[str, str], synchronous: str) -> None:
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, params)
            conn.execute("COMMIT")

        def one(i: int) -> None:
            write("INSERT OR REPLACE INTO t VALUES (?, ?)", (str(i % KEYS), "x" * 60), "FULL")

        def two(i: int) -> None:
            key = str(i % KEYS)
            write("INSERT OR REPLACE INTO c VALUES (?, ?)", (key, uuid.uuid4().hex), "NORMAL")
            write("INSERT OR REPLACE INTO t VALUES (?, ?)", (key, "x" * 60), "FULL")

        try:
            return {"one": rate(one), "two": rate(two)}
        finally:
            conn.close()


def postgres_ceilings(dsn: str) -> dict[str, float]:
    """Calls per second against the server at ``dsn``, autocommit, one connection."""
    import psycopg
    from psycopg import sql

    table = sql.Identifier(f"djceiling_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (k text PRIMARY KEY, v text)").format(table))
        upsert = sql.SQL(
            "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        ).format(table)
        try:
            return {
                "one": rate(lambda i: conn.execute(upsert, (str(i % KEYS), "x" * 60))),
                "two": rate(
                    lambda i: (
                        conn.execute(upsert, (f"c{i % KEYS}", uuid.uuid4().hex)),
                        conn.execute(upsert, (str(i % KEYS), "x" * 60)),
                    )
                ),
            }
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))


def describe(ceilings: dict[str, float]) -> str:
    return (
        f"one write transaction per call {ceilings['one']:,.0f}/s, "
        f"two (a claim, then a commit) {ceilings['two']:,.0f}/s"
    )


if __name__ == "__main__":
    print(f"# sqlite, raw sqlite3, {N:,} calls: {describe(sqlite_ceilings())}")
    if len(sys.argv) > 1:
        print(f"# postgres, raw psycopg, {N:,} calls: {describe(postgres_ceilings(sys.argv[1]))}")
