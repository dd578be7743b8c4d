"""The SQLite back-end: the embedded default, shared by every process on one machine.

WAL journal; ``synchronous=FULL`` by default so that an acknowledged call survives
power loss (``NORMAL`` trades the last moments before a power cut for speed;
a process crash loses nothing either way). Writes queued together share a
transaction on their event loop and an fsync off it (``_writer.py``, ``_syncer.py``);
reads use one connection per thread and never wait for a writer.
Connections are never shared across ``fork()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from ...errors import StorageError
from ...logs import get_logger
from ..forks import pid
from ..records import (
    DEAD_LETTER_COLUMNS,
    HISTORY_COLUMNS,
    INSTANCE_COLUMNS,
    WORKER_COLUMNS,
    Claim,
    Commit,
    DeadLetterRecord,
    HistoryRecord,
    InstanceRecord,
    OutboxEntry,
    StoreStats,
    WorkerRecord,
)
from ..retry import StorageRetry
from ..tokens import new_token
from ..wakeup import Wakeup
from ._schema import migrate
from ._writer import Busy, Writer

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_OLDEST = (3, 24, 0)  # upserts (INSERT … ON CONFLICT DO UPDATE)
_COLUMNS = INSTANCE_COLUMNS
_REPORTED_AT_ONCE = 100  # damaged alarms looked at per call that meets one

log = get_logger("durable_jobs.storage")


class SQLiteStore:
    """Implements ``StorageAdapter`` and ``SchedulerAdapter`` on one SQLite file."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        poll_interval: float = 0.05,
        retry: StorageRetry | None = None,
        pragmas: Mapping[str, int | str] | None = None,
    ) -> None:
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"invalid synchronous {synchronous!r}: expected one of {_SYNCHRONOUS}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.poll_interval = poll_interval
        self.retry = retry or StorageRetry()
        self.pragmas = dict(pragmas or {})
        self._local = threading.local()
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._writer_pid = 0
        self._wakeup = Wakeup()
        self._new_events = Wakeup()
        self._seen_version: int | None = None
        self._damaged: set[str] = set()  # instances reported with a damaged alarm

    # -- connections -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000):d}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        for name, value in self.pragmas.items():
            if not name.isidentifier():
                raise ValueError(f"invalid pragma name {name!r}")
            conn.execute(f"PRAGMA {name} = {int(value) if isinstance(value, int) else value!r}")
        return conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's connection; a new one after ``fork()``."""
        local = self._local
        if getattr(local, "pid", None) != pid():
            local.conn = self._connect()
            local.pid = pid()
        conn: sqlite3.Connection = local.conn
        return conn

    def _get_writer(self) -> Writer:
        # The pid first: the slow path sets it after the writer it belongs to.
        if self._writer_pid == pid() and (writer := self._writer) is not None:
            return writer
        with self._lock:
            if self._writer is None or self._writer_pid != pid():
                self._writer = Writer(
                    self._connect, self.retry, adaptive=self.synchronous == "FULL"
                )
                self._writer_pid = pid()
            return self._writer

    def _read(
        self,
        what: str,
        sql: str,
        params: Sequence[Any] = (),
        conn: sqlite3.Connection | None = None,
    ) -> list[Any]:
        def run() -> list[Any]:
            try:
                return (conn or self._reader()).execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise Busy(str(exc)) from exc
                raise

        try:
            rows = run()  # the common case: no lock, no retry machinery
        except Busy:
            return self.retry.call(what, run, (Busy,))
        except sqlite3.Error as exc:
            raise StorageError(f"{what} failed: {exc}") from exc
        self.retry.outage.succeeded(what)  # past the retry helper: tell it
        return rows

    async def _write(self, write: Any, *, durable: bool) -> Any:
        """Every write goes this way: see ``_writer.py``."""
        return await self._get_writer().write(write, durable=durable)

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        def setup() -> None:
            if sqlite3.sqlite_version_info < _OLDEST:
                raise StorageError(
                    f"SQLite {sqlite3.sqlite_version} is too old: durable-jobs needs "
                    f"{'.'.join(map(str, _OLDEST))} or newer (Python's sqlite3 module "
                    "uses the library it was built with)"
                )
            directory = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(directory):
                raise StorageError(f"cannot open {self.path!r}: directory {directory!r} missing")
            conn = self._connect()
            try:
                migrate(conn)
            finally:
                conn.close()

        await asyncio.to_thread(self.retry.call, f"opening {self.path}", setup, (Busy,))
        self._seen_version = self._data_version()

    async def close(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == pid():
            conn.close()
            del self._local.conn, self._local.pid

    # -- storage ---------------------------------------------------------------

    async def read(self, instance_id: str) -> InstanceRecord | None:
        rows = self._read("read", _READ_SQL, (instance_id,))
        return _record(rows[0] if rows else None)

    async def claim(self, instance_id: str, owner: str, now: float, until: float) -> Claim | None:
        claim: Claim | None = await self._write(
            lambda conn: _claim(conn, instance_id, owner, now, until), durable=False
        )
        return claim

    async def renew(self, claims: Sequence[Claim], until: float) -> list[Claim]:
        def renew(conn: sqlite3.Connection) -> list[Claim]:
            kept = []
            for claim in claims:
                cursor = conn.execute(
                    "UPDATE claims SET expires_at = ? WHERE instance_id = ? AND token = ?",
                    (until, claim.instance_id, claim.token),
                )
                if cursor.rowcount:
                    kept.append(claim)
            return kept

        kept: list[Claim] = await self._write(renew, durable=False)
        return [
            Claim(instance_id=c.instance_id, owner=c.owner, token=c.token, expires_at=until)
            for c in kept
        ]

    async def release(self, claim: Claim) -> None:
        await self._write(lambda conn: _release(conn, claim), durable=False)
        self._wakeup.fire()

    async def commit(self, commit: Commit) -> bool:
        applied: bool = await self._write(lambda conn: _commit(conn, commit), durable=True)
        if applied and (commit.release or (commit.record and commit.record.alarm_at)):
            self._wakeup.fire()
        if applied and commit.events:
            self._new_events.fire()
        return applied

    async def has_idempotency_key(self, instance_id: str, key: str) -> bool:
        return bool(
            self._read(
                "idempotency check",
                "SELECT 1 FROM idempotency_keys WHERE instance_id = ? AND key = ?",
                (instance_id, key),
            )
        )

    async def list_instances(
        self,
        *,
        job_name: str | None = None,
        kind: str | None = None,
        alarmed: bool | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[InstanceRecord]:
        # Ids are "kind:job:key": a kind's instances are one range of the key. ";"
        # follows ":", so the range ends before the next kind.
        lower, upper = after or "", None
        if kind is not None and job_name is None:
            lower, upper = max(lower, f"{kind}:"), f"{kind};"
        rows = self._read(
            "list",
            _list_sql(job_name is not None, upper is not None, alarmed),
            (job_name, kind, lower, upper, limit),
        )
        return [r for r in map(_record, rows) if r is not None]

    # -- history ---------------------------------------------------------------

    async def read_history(
        self, instance_id: str, *, limit: int, before: int | None = None
    ) -> list[HistoryRecord]:
        rows = self._read(
            "history",
            f"SELECT {HISTORY_COLUMNS} FROM history "  # noqa: S608 - constant
            "WHERE instance_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (instance_id, _NO_ID if before is None else before, limit),
        )
        return [HistoryRecord.from_row(row) for row in rows]

    # -- dead letters ----------------------------------------------------------

    async def read_dead_letter(self, instance_id: str) -> DeadLetterRecord | None:
        rows = self._read(
            "dead letter",
            f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE instance_id = ?",  # noqa: S608
            (instance_id,),
        )
        return DeadLetterRecord.from_row(rows[0]) if rows else None

    async def list_dead_letters(
        self, *, job_name: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        of_job = "" if job_name is None else "job_name = ?2 AND "
        rows = self._read(
            "dead letters",
            f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters "  # noqa: S608 - no values
            f"WHERE {of_job}instance_id > ?1 ORDER BY instance_id LIMIT ?3",
            (after or "", job_name, limit),
        )
        return [DeadLetterRecord.from_row(row) for row in rows]

    async def delete_dead_letter(self, instance_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            sql = "DELETE FROM dead_letters WHERE instance_id = ?"
            return bool(conn.execute(sql, (instance_id,)).rowcount)

        deleted: bool = await self._write(delete, durable=True)
        return deleted

    # -- the event log ---------------------------------------------------------

    async def read_events(self, after: int, limit: int) -> list[OutboxEntry]:
        # One writer at a time: ids are handed out in commit order.
        rows = self._read(
            "events",
            "SELECT id, event FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [OutboxEntry(id=i, event=e) for i, e in rows]

    async def last_event_id(self) -> int:
        return self._last_event_id()

    async def wait_for_events(self, after: int, timeout: float) -> None:
        """Wake on this process's commits at once; on other processes' within
        ``poll_interval``, by watching ``PRAGMA data_version``."""
        seen = self._data_version()

        def committed() -> bool:
            nonlocal seen
            version, seen = seen, self._data_version()
            return version != seen and self._last_event_id() > after

        if self._last_event_id() <= after:
            await self._poll(self._new_events, timeout, committed)

    def _last_event_id(self) -> int:
        # The sequence, not the newest row: it stays when trimming takes every row.
        rows = self._read("last event", "SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(rows[0][0]) if rows else 0

    async def trim_events(self, *, keep: int, before: float) -> int:
        trimmed: int = await self._write(
            lambda conn: _trim_events(conn, keep, before), durable=False
        )
        return trimmed

    async def read_cursor(self, name: str) -> int:
        rows = self._read("cursor", "SELECT position FROM cursors WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    async def move_cursor(self, name: str, expected: int, to: int) -> bool:
        def move(conn: sqlite3.Connection) -> bool:
            # A cursor without a row is at 0.
            if expected == 0:
                cursor = conn.execute(_MOVE_FROM_START_SQL, (name, to))
            else:
                cursor = conn.execute(
                    "UPDATE cursors SET position = ? WHERE name = ? AND position = ?",
                    (to, name, expected),
                )
            return bool(cursor.rowcount)

        moved: bool = await self._write(move, durable=True)
        return moved

    # -- workers ---------------------------------------------------------------

    async def register_worker(self, worker: WorkerRecord) -> None:
        w = worker
        row = (w.worker_id, w.host, w.pid, w.started_at, w.last_seen_at, w.concurrency, w.running)
        values = (*row, json.dumps(list(w.jobs)))
        # Not durable, nor the rest of the registry: a heartbeat lost to a power
        # cut is sent again, and a worker found missing registers again.
        await self._write(lambda conn: conn.execute(_REGISTER_SQL, values), durable=False)

    async def heartbeat_worker(self, worker_id: str, last_seen_at: float, running: int) -> bool:
        def beat(conn: sqlite3.Connection) -> bool:
            sql = "UPDATE workers SET last_seen_at = ?, running = ? WHERE worker_id = ?"
            return bool(conn.execute(sql, (last_seen_at, running, worker_id)).rowcount)

        alive: bool = await self._write(beat, durable=False)
        return alive

    async def deregister_worker(self, worker_id: str) -> None:
        sql = "DELETE FROM workers WHERE worker_id = ?"
        await self._write(lambda conn: conn.execute(sql, (worker_id,)), durable=False)

    async def list_workers(self, seen_since: float) -> list[WorkerRecord]:
        rows = self._read(
            "workers",
            f"SELECT {WORKER_COLUMNS} FROM workers ORDER BY worker_id",  # noqa: S608 - constant
        )
        workers = [WorkerRecord.from_row(row) for row in rows]
        if any(w.last_seen_at < seen_since for w in workers):
            # Only when there is something to prune: listing must not take the lock.
            sql = "DELETE FROM workers WHERE last_seen_at < ?"
            await self._write(lambda conn: conn.execute(sql, (seen_since,)), durable=False)
        return [w for w in workers if w.last_seen_at >= seen_since]

    async def stats(self, now: float) -> StoreStats:
        # Counting reads every instance (tens of milliseconds at 100,000): on a thread
        # and a connection of its own, so that the loop's calls go on meanwhile.
        return await asyncio.to_thread(self._stats, now)

    def _stats(self, now: float) -> StoreStats:
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN")  # one snapshot for the three counts
            return self._count(conn, now)

    def _count(self, conn: sqlite3.Connection, now: float) -> StoreStats:
        instances = self._read(
            "stats",
            # Every row is counted: reading the table straight through beats
            # following the job index to each row.
            "SELECT job_name, kind, alarm_at IS NOT NULL, count(*) FROM instances NOT INDEXED "
            "GROUP BY job_name, kind, alarm_at IS NOT NULL ORDER BY 1, 2, 3",
            conn=conn,
        )
        # Through the alarm index: the cost grows with the alarms due.
        due = self._read(
            "stats",
            "SELECT job_name, count(*) FROM instances WHERE alarm_at IS NOT NULL "
            "AND alarm_at <= ? GROUP BY job_name ORDER BY job_name",
            (now,),
            conn=conn,
        )
        dead = self._read(
            "stats",
            "SELECT job_name, count(*) FROM dead_letters GROUP BY job_name ORDER BY 1",
            conn=conn,
        )
        return StoreStats(
            instances=tuple((j, k, bool(a), n) for j, k, a, n in instances),
            due=tuple((j, n) for j, n in due),
            dead_letters=tuple((j, n) for j, n in dead),
        )

    # -- scheduler -------------------------------------------------------------

    async def claim_due(
        self,
        now: float,
        limit: int,
        owner: str,
        until: float,
        *,
        jobs: Collection[str] | None = None,
    ) -> list[Claim]:
        """A damaged ``alarm_at`` (not a number: written to the file by other means)
        is never due: SQLite orders text and blobs after every number."""
        names = tuple(jobs) if jobs is not None else None
        # A read first: an idle worker polling must not take the write lock.
        params = (now, now, *(names or ()), 1)
        if not self._read("due alarms", _due_sql("i.instance_id", names), params):
            return []
        claims: list[Claim] = await self._write(
            lambda conn: _claim_due(
                conn, now=now, limit=limit, owner=owner, until=until, jobs=names
            ),
            durable=False,
        )
        return claims

    async def next_alarm_at(
        self, now: float, *, jobs: Collection[str] | None = None
    ) -> float | None:
        """A damaged ``alarm_at`` (not a number) is no alarm: it never comes due (see
        ``claim_due``), and each instance with one is logged once, as
        ``storage.damaged_row``, rather than stopping the worker that asked."""
        names = tuple(jobs) if jobs is not None else None
        rows = self._read(
            "next alarm", _due_sql("alarm_at", names, due=False), (now, *(names or ()), 1)
        )
        if not rows:
            return None
        if isinstance(alarm := rows[0][0], int | float):
            return float(alarm)
        # Damaged alarms sort after every number: no alarm of a number is left.
        self._report_damaged_alarms()
        return None

    def _report_damaged_alarms(self) -> None:
        rows = self._read(
            "damaged alarms",
            "SELECT instance_id, alarm_at FROM instances WHERE alarm_at > ? LIMIT ?",
            (math.inf, _REPORTED_AT_ONCE),
        )
        for instance_id, alarm in rows:
            if instance_id not in self._damaged:
                self._damaged.add(instance_id)
                log.error(
                    "storage.damaged_row",
                    instance_id=instance_id,
                    column="alarm_at",
                    value=repr(alarm)[:40],
                    error="not a number: this alarm never comes due",
                )

    async def wait_for_alarm(self, timeout: float) -> None:
        """Wake on this process's writes at once; on other processes' within
        ``poll_interval``, by watching ``PRAGMA data_version``."""

        def committed() -> bool:
            # Another process committed since the last wait returned — maybe while
            # the dispatcher was busy claiming, so this is no lost wake-up.
            version = self._data_version()
            seen, self._seen_version = self._seen_version, version
            return version != seen

        await self._poll(self._wakeup, timeout, committed)

    async def _poll(self, wakeup: Wakeup, timeout: float, changed: Callable[[], bool]) -> None:
        """Return once ``changed()``, asked every ``poll_interval``, or ``wakeup`` (this
        process's writes) says so, or after ``timeout`` seconds. ``PRAGMA data_version``
        of the reading connection changes with every commit of another connection:
        no other process can commit unseen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not changed():
            left = deadline - loop.time()
            if left <= 0 or await wakeup.wait(min(left, self.poll_interval)):
                return

    def _data_version(self) -> int:
        return int(self._read("data version", "PRAGMA data_version")[0][0])


# -- SQL, run on the writer's connections or read ---------------------------------

_READ_SQL = f"SELECT {_COLUMNS} FROM instances WHERE instance_id = ?"  # noqa: S608 - constant


def _record(row: Sequence[Any] | None) -> InstanceRecord | None:
    return None if row is None else InstanceRecord.from_row(row)


def _read_record(conn: sqlite3.Connection, instance_id: str) -> InstanceRecord | None:
    return _record(conn.execute(_READ_SQL, (instance_id,)).fetchone())


@functools.cache
def _due_sql(columns: str, jobs: tuple[str, ...] | None, *, due: bool = True) -> str:
    """``columns`` of instances ``i`` and claims ``c`` for alarms due by the first
    parameter (when ``due``) without a claim live at the next, of the jobs given next
    (one parameter each), earliest first, as many as the last."""
    where = "alarm_at IS NOT NULL AND alarm_at <= ?" if due else "alarm_at IS NOT NULL"
    # "+": the alarm index, not the job index, must lead (cost grows with alarms due)
    of_jobs = "" if jobs is None else f" AND +job_name IN ({', '.join('?' * len(jobs))})"
    return (
        f"SELECT {columns} FROM instances i LEFT JOIN claims c "  # noqa: S608 - no values
        f"ON c.instance_id = i.instance_id WHERE {where} "
        f"AND (c.expires_at IS NULL OR c.expires_at <= ?){of_jobs} "
        "ORDER BY alarm_at, i.instance_id LIMIT ?"
    )


_DUE_COLUMNS = "c.token, c.recoveries, " + ", ".join(f"i.{c}" for c in _COLUMNS.split(", "))

_CLAIM_SQL = (
    "INSERT INTO claims (instance_id, owner, token, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (instance_id) DO UPDATE SET owner = excluded.owner, "
    "token = excluded.token, expires_at = excluded.expires_at "
    "WHERE claims.expires_at <= ?"
)

_CLAIM_DUE_SQL = (
    "INSERT INTO claims (instance_id, owner, token, expires_at, recoveries) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET owner = excluded.owner, "
    "token = excluded.token, expires_at = excluded.expires_at, "
    "recoveries = excluded.recoveries WHERE claims.expires_at <= ?"
)


def _claim(
    conn: sqlite3.Connection, instance_id: str, owner: str, now: float, until: float
) -> Claim | None:
    token = new_token()
    taken = conn.execute(_CLAIM_SQL, (instance_id, owner, token, until, now)).rowcount
    if not taken:
        return None
    return Claim(
        instance_id=instance_id,
        owner=owner,
        token=token,
        expires_at=until,
        record=_read_record(conn, instance_id),
    )


def _claim_due(
    conn: sqlite3.Connection,
    *,
    now: float,
    limit: int,
    owner: str,
    until: float,
    jobs: tuple[str, ...] | None,
) -> list[Claim]:
    # Two statements for the whole batch. Inside this write transaction nothing else
    # can claim or change the rows read, so every claim of the batch is taken.
    rows = conn.execute(_due_sql(_DUE_COLUMNS, jobs), (now, now, *(jobs or ()), limit)).fetchall()
    batch = new_token()
    claims = [
        Claim(
            instance_id=row[2],
            owner=owner,
            token=f"{batch}.{n}",
            expires_at=until,
            record=InstanceRecord.from_row(row[2:]),
            # A token left on an expired claim: its holder died without letting go.
            recoveries=row[1] + 1 if row[0] else 0,
        )
        for n, row in enumerate(rows)
    ]
    conn.executemany(
        _CLAIM_DUE_SQL,
        [(c.instance_id, owner, c.token, until, c.recoveries, now) for c in claims],
    )
    return claims


def _release(conn: sqlite3.Connection, claim: Claim) -> bool:
    """Drop ``claim`` if it still holds its token; whether it did."""
    return bool(
        conn.execute(
            "UPDATE claims SET token = '', expires_at = 0 WHERE instance_id = ? AND token = ?",
            (claim.instance_id, claim.token),
        ).rowcount
    )


_UPSERT_SQL = (
    f"INSERT INTO instances ({_COLUMNS}) "  # noqa: S608 - constant
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET "
    "state = excluded.state, meta = excluded.meta, alarm_at = excluded.alarm_at, "
    "updated_at = excluded.updated_at"
)


def _commit(conn: sqlite3.Connection, commit: Commit) -> bool:
    instance_id = commit.claim.instance_id
    # The fence, in one statement with the release when there is one: the commit is
    # one transaction, so nothing is written unless the claim still holds our token.
    if commit.release:
        fenced_in = _release(conn, commit.claim)
    else:
        held = conn.execute(
            "SELECT token FROM claims WHERE instance_id = ?", (instance_id,)
        ).fetchone()
        fenced_in = held is not None and held[0] == commit.claim.token
    if not fenced_in:
        return False  # the claim was taken over: write nothing
    if commit.delete:
        conn.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
        if commit.release:
            conn.execute("DELETE FROM claims WHERE instance_id = ?", (instance_id,))
        conn.execute("DELETE FROM idempotency_keys WHERE instance_id = ?", (instance_id,))
    elif (r := commit.record) is not None:
        conn.execute(
            _UPSERT_SQL,
            (
                r.instance_id,
                r.kind,
                r.job_name,
                r.key,
                r.state,
                r.meta,
                r.alarm_at,
                r.created_at,
                r.updated_at,
            ),
        )
    if commit.idempotency_key is not None and not commit.delete:
        conn.execute(
            "INSERT OR IGNORE INTO idempotency_keys (instance_id, key) VALUES (?, ?)",
            (instance_id, commit.idempotency_key),
        )
    if commit.delete_dead_letter:
        conn.execute("DELETE FROM dead_letters WHERE instance_id = ?", (instance_id,))
    if (d := commit.dead_letter) is not None:
        conn.execute(
            _DEAD_LETTER_SQL,
            (
                d.instance_id,
                d.job_name,
                d.kind,
                d.state,
                d.meta,
                d.error,
                d.traceback,
                d.attempts,
                d.at,
            ),
        )
    _write_history(conn, commit)
    events = commit.events
    if len(events) == 1:  # the usual case: execute costs less than executemany
        conn.execute(_EVENT_SQL, (commit.at, events[0]))
    elif events:
        conn.executemany(_EVENT_SQL, [(commit.at, e) for e in events])
    return True


_DEAD_LETTER_SQL = (
    f"INSERT OR REPLACE INTO dead_letters ({DEAD_LETTER_COLUMNS}) "  # noqa: S608 - constant
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EVENT_SQL = "INSERT INTO events (at, event) VALUES (?, ?)"
_HISTORY_SQL = (
    "INSERT INTO history (instance_id, job_name, trig, outcome, attempt, started_at, "
    "finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# Through the (instance_id, id) index: the walk is as long as the limit, whatever
# the size of the table.
_TRIM_HISTORY_SQL = (
    "DELETE FROM history WHERE instance_id = ?1 AND id <= (SELECT id FROM history "
    "WHERE instance_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)"
)


def _write_history(conn: sqlite3.Connection, commit: Commit) -> None:
    instance_id = commit.claim.instance_id
    if commit.history_reset:
        conn.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
    if not commit.history:
        return
    for h in commit.history:  # usually one row: execute costs less than executemany
        conn.execute(
            _HISTORY_SQL,
            (
                instance_id,
                h.job_name,
                h.trigger,
                h.outcome,
                h.attempt,
                h.started_at,
                h.finished_at,
                h.error,
            ),
        )
    if commit.history_limit is not None:
        conn.execute(_TRIM_HISTORY_SQL, (instance_id, commit.history_limit))


_TRIM_AT_ONCE = 10_000  # events looked at and deleted per call, at most


def _trim_events(conn: sqlite3.Connection, keep: int, before: float) -> int:
    """Delete events from the oldest on, up to the first that is both among the
    newest ``keep`` and stamped at or after ``before``."""
    first = conn.execute("SELECT min(id) FROM events").fetchone()[0]
    if first is None:
        return 0
    row = conn.execute(
        "SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?", (keep,)
    ).fetchone()
    beyond = row[0] if row else 0  # the newest event past ``keep``
    bound = first + _TRIM_AT_ONCE
    stop = conn.execute(
        "SELECT min(id) FROM events WHERE id > ? AND id < ? AND at >= ?", (beyond, bound, before)
    ).fetchone()[0]
    return conn.execute("DELETE FROM events WHERE id < ?", (stop or bound,)).rowcount


_MOVE_FROM_START_SQL = (
    "INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name) "
    "DO UPDATE SET position = excluded.position WHERE cursors.position = 0"
)
_REGISTER_SQL = (
    f"INSERT OR REPLACE INTO workers ({WORKER_COLUMNS}) "  # noqa: S608 - constant
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_NO_ID = 2**63 - 1  # above every id


@functools.cache
def _list_sql(by_job: bool, below: bool, alarmed: bool | None) -> str:
    """Instances by id, with parameters: ?1 the job, ?2 the kind (or NULL), ?3 the id
    to start after, ?4 the id to stop before (with ``below``), ?5 the limit. The job
    index serves a job, the primary key the rest; never the alarm index ("+"),
    which would read every alarmed instance to sort them."""
    where = ["instance_id > ?3", "(?2 IS NULL OR kind = ?2)"]
    if by_job:
        where.append("job_name = ?1")
    if below:
        where.append("instance_id < ?4")
    if alarmed is not None:
        where.append(f"+alarm_at IS {'NOT ' if alarmed else ''}NULL")
    return (
        f"SELECT {_COLUMNS} FROM instances WHERE {' AND '.join(where)} "  # noqa: S608 - no values
        "ORDER BY instance_id LIMIT ?5"
    )
