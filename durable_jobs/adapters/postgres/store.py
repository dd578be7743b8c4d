"""The PostgreSQL back-end: ``StorageAdapter`` and ``SchedulerAdapter`` on psycopg 3.

The hot path is on the event loop: the claims and the usual commits a loop queues
together go out as one statement on one of two ``AsyncConnection``s of that loop's
own, closed with the loop or the store (``_batch.py``). Everything else — reads,
renewals, due alarms, commits that delete or write dead letters — runs on a
blocking ``psycopg_pool.ConnectionPool``, which belongs to no loop, from a small
executor owned by the store (one thread per pooled connection, so that a thread never
waits for a connection and user code on the default executor cannot starve storage).
The commits a loop queues on that path share a batch too, sent from a pool thread, and
so do a loop's claims and commits where psycopg cannot drive the loop (the Windows
proactor loop).

Fencing: a claim row holds a fresh token per claim; every statement of a commit
carries "the claim still holds my token" in its ``WHERE`` after the claim row was
locked ``FOR UPDATE``, so a stale commit writes nothing and reports ``False``. That
needs no answer from the server mid-commit: the usual commits of a batch go out as one
statement (``COMMIT_MANY``, or the ``commit_one`` function for a batch of one), the
rest (deletions, dead letters) as one pipelined transaction — one round trip either
way. History rows and events go with either.

The event log: commits take no lock for it. They insert their events unnumbered, with
ids in the order given; the ids a reader sees (``seq``) are given after the events
committed, by the ``sequence_events`` function that ``read_events``, ``last_event_id``
and ``trim_events`` run first: under an advisory lock that only it takes, it numbers
the events committed since, in id order, from the last number given. So numbers
increase in the order events become visible to readers, a reader that saw a number
never finds a lower one later, and the events of one instance (whose commits its
claim serialises) keep their commit order. Other processes hear of new events through
a notification channel of their own, sent after the commits (``_announcer.py``).

Alarms: a commit that leaves its instance with an alarm (or releases the claim of one)
sends ``pg_notify`` in its transaction; every store on the schema that waits for alarms
wakes through its ``_listener.py`` thread, started by its first wait. Commits made by
this store wake its own waiters directly.
``wait_for_alarm`` never sleeps longer than ``poll_interval``, so alarms still surface
where notifications do not arrive (a listener reconnecting, PgBouncer in transaction
mode). Needs PostgreSQL 9.5 or newer (``ON CONFLICT``, ``SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
import weakref
from collections.abc import Awaitable, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from ...errors import StorageError
from ..records import (
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
from ._announcer import Announcer
from ._batch import AsyncConnection, Batcher, LoopConnection
from ._listener import EVENTS, NAMEDATALEN, Listener, channel_name
from ._queries import Queries, to_record
from ._schema import migrate

T = TypeVar("T")
R = TypeVar("R")
Connection = psycopg.Connection[TupleRow]
Pool = ConnectionPool[Connection]
Work = Callable[[Connection], T]


TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,  # a dropped connection, a pool timeout, a server restarting
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
)

POOL_TIMEOUT = 5.0
"""Seconds a call waits for a pooled connection before it counts as a transient fault."""

CLAIM_DUE_ROUNDS = 4
"""How many statements one ``claim_due`` may spend on alarms other workers keep taking."""

TRIM_BOUND = 10_000
"""The oldest events one ``trim_events`` looks at, so that a call's work is bounded."""

NO_ID = 2**63 - 1
"""Above every id a ``bigserial`` gives."""

_PROACTOR: type[asyncio.AbstractEventLoop] | None = getattr(asyncio, "ProactorEventLoop", None)


def run(pool: Pool, work: Work[T]) -> T:
    """``work`` on a pooled connection."""
    with pool.connection() as conn:
        try:
            return work(conn)
        except psycopg.OperationalError:
            if conn.broken:
                # Connections rarely die alone (a restart, a failover, a purge):
                # drop the other dead ones now rather than one per retry.
                pool.check()
            raise


@attrs.frozen
class _Ask:
    """One caller's claim, waiting to share a ``claim_many`` call with others."""

    instance_id: str
    owner: str
    token: str
    now: float
    until: float


Taken = tuple[bool, InstanceRecord | None]


@attrs.frozen
class _Batchers:
    """The claims and commits of one event loop, each kind in batches of its own."""

    claims: Batcher[_Ask, Taken]
    commits: Batcher[Commit, bool]  # the usual ones: one statement per batch
    pipelined: Batcher[Commit, bool]  # the others: one pipelined transaction per batch

    def close(self) -> None:
        self.claims.close()
        self.commits.close()
        self.pipelined.close()


@attrs.frozen
class _Resources:
    """What an open store holds; made by ``open()``, let go by ``close()``."""

    pool: Pool
    executor: ThreadPoolExecutor
    listener: Listener
    announcer: Announcer
    batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batchers] = attrs.field(
        factory=weakref.WeakKeyDictionary
    )
    batchers_lock: threading.Lock = attrs.field(factory=threading.Lock)

    def close(self) -> None:
        self.listener.stop()
        with self.batchers_lock:  # loops on other threads may be adding theirs
            batchers = list(self.batchers.values())
        for each in batchers:
            each.close()
        self.executor.shutdown(wait=True)
        self.pool.close()


class PostgresStore:
    """Implements ``StorageAdapter`` and ``SchedulerAdapter`` in one PostgreSQL schema.

    ``schema`` holds the tables (created by ``open()``); ``min_size``/``max_size``
    bound the connection pool, which the notification listener's own connection
    comes on top of once the store waits for alarms; ``poll_interval`` is the longest
    ``wait_for_alarm`` relies on notifications alone; ``retry`` bounds the retrying of
    transient faults.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "durable_jobs",
        min_size: int = 1,
        max_size: int = 10,
        poll_interval: float = 1.0,
        retry: StorageRetry | None = None,
    ) -> None:
        _check_options(schema, min_size, max_size, poll_interval)
        self._dsn = dsn
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._poll_interval = poll_interval
        self._retry = retry or StorageRetry()
        self._q = Queries(schema)
        self._channel = channel_name(schema)
        self._events_channel = channel_name(schema, EVENTS)
        self._events_lock = events_lock_key(schema)
        self._origin = uuid.uuid4().hex
        self._wakeup = Wakeup()
        self._new_events = Wakeup()
        self._lock = threading.Lock()
        self._resources: _Resources | None = None

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self._schema!r})"

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if self._resources is None:
            await asyncio.to_thread(self._open)

    def _open(self) -> None:
        with self._lock:
            if self._resources is not None:
                return
            self._retry.call("migrate", self._migrate, TRANSIENT)
            self._resources = self._start()

    def _migrate(self) -> None:
        # Its own connection, so a server that refuses us says why (the pool
        # would only report that it timed out).
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            migrate(conn, self._schema)

    def _start(self) -> _Resources:
        pool: Pool = ConnectionPool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT,
            name=f"durable-jobs:{self._schema}",
            open=False,
        )
        pool.open(wait=False)
        executor = ThreadPoolExecutor(self._max_size, thread_name_prefix="durable-jobs-pg")
        wakeups = {self._channel: self._wakeup, self._events_channel: self._new_events}
        listener = Listener(self._dsn, wakeups, self._origin, self._retry.outage)
        announce = partial(run, pool, self._announce)
        announcer = Announcer(announce, executor.submit, self._retry.outage)
        return _Resources(pool, executor, listener, announcer)

    def _announce(self, conn: Connection) -> None:
        params = {"channel": self._events_channel, "origin": self._origin}
        conn.execute(self._q.announce, params).close()

    async def close(self) -> None:
        if self._resources is not None:
            await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            resources, self._resources = self._resources, None
        if resources is not None:
            resources.close()

    def _require(self) -> _Resources:
        resources = self._resources
        if resources is None:
            raise StorageError(f"{self!r} is not open: await its open() first")
        return resources

    async def _call(self, what: str, work: Work[T]) -> T:
        """``work`` on a pooled connection off the event loop, transient faults retried."""
        resources = self._require()
        loop = asyncio.get_running_loop()
        return await self._retry.acall(
            what,
            lambda: loop.run_in_executor(resources.executor, run, resources.pool, work),
            TRANSIENT,
        )

    async def _rows(self, what: str, query: bytes, params: dict[str, Any]) -> list[TupleRow]:
        return await self._call(what, lambda conn: conn.execute(query, params).fetchall())

    async def _execute(self, what: str, query: bytes, params: dict[str, Any]) -> None:
        await self._call(what, lambda conn: conn.execute(query, params).close())

    # -- storage ---------------------------------------------------------------

    async def read(self, instance_id: str) -> InstanceRecord | None:
        rows = await self._rows("read", self._q.read, {"instance_id": instance_id})
        return to_record(rows[0]) if rows else None

    def _batchers(self) -> _Batchers:
        """The running loop's batchers, made on first use."""
        resources = self._require()
        loop = asyncio.get_running_loop()
        batchers = resources.batchers.get(loop)
        if batchers is None:
            batchers = self._new_batchers(loop, resources)
            with resources.batchers_lock:
                resources.batchers[loop] = batchers
            # A loop that goes away (asyncio.run returning) takes its connections along.
            weakref.finalize(loop, batchers.close)
        return batchers

    def _new_batchers(self, loop: asyncio.AbstractEventLoop, resources: _Resources) -> _Batchers:
        pipelined = _on_pool(loop, resources, self._commit_batch)
        if _PROACTOR is not None and isinstance(loop, _PROACTOR):  # psycopg cannot drive it
            claims = _on_pool(loop, resources, self._claim_many)
            return _Batchers(claims=claims, commits=pipelined, pipelined=pipelined)
        return _Batchers(
            claims=self._on_loop(loop, self._claim_many_async),
            commits=self._on_loop(loop, self._commit_many_async),
            pipelined=pipelined,
        )

    def _on_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        apply: Callable[[list[T], AsyncConnection], Awaitable[list[R]]],
    ) -> Batcher[T, R]:
        """A batcher sending with ``apply`` on a connection of ``loop``'s own."""
        conn = LoopConnection(self._connect_async)

        async def send(items: list[T]) -> list[R]:
            return await conn.run(partial(apply, items))

        return Batcher(loop, send, TRANSIENT, reset=conn.close)

    async def _connect_async(self) -> AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, connect_timeout=int(POOL_TIMEOUT)
        )

    async def claim(self, instance_id: str, owner: str, now: float, until: float) -> Claim | None:
        ask = _Ask(instance_id, owner, new_token(), now, until)
        claims = self._batchers().claims
        taken, record = await self._retry.acall("claim", lambda: claims.submit(ask), TRANSIENT)
        if not taken:
            return None
        return Claim(
            instance_id=instance_id, owner=owner, token=ask.token, expires_at=until, record=record
        )

    def _claim_many(self, asks: list[_Ask], conn: Connection) -> list[Taken]:
        return _taken(asks, conn.execute(*self._claim_statement(asks)).fetchall())

    async def _claim_many_async(self, asks: list[_Ask], conn: AsyncConnection) -> list[Taken]:
        cursor = await conn.execute(*self._claim_statement(asks))
        return _taken(asks, await cursor.fetchall())

    def _claim_statement(self, asks: list[_Ask]) -> tuple[bytes, dict[str, Any]]:
        if len(asks) == 1:
            (ask,) = asks
            params = {
                "id": ask.instance_id,
                "token": ask.token,
                "owner": ask.owner,
                "until": ask.until,
                "now": ask.now,
            }
            return self._q.claim_one, params
        return self._q.claim_many, _claim_params(asks)

    async def _commit_many_async(self, commits: list[Commit], conn: AsyncConnection) -> list[bool]:
        if not _usual(commits):  # an instance twice: one statement each
            return [(await self._commit_many_async([c], conn))[0] for c in commits]
        cursor = await conn.execute(*self._commit_many(commits))
        fenced_in = {row[0] for row in await cursor.fetchall()}
        return [c.claim.instance_id in fenced_in for c in commits]

    async def renew(self, claims: Sequence[Claim], until: float) -> list[Claim]:
        if not claims:
            return []
        params = {
            "ids": [c.instance_id for c in claims],
            "tokens": [c.token for c in claims],
            "until": until,
        }
        held = {(i, t) for i, t in await self._rows("renew", self._q.renew, params)}
        return [
            attrs.evolve(c, expires_at=until) for c in claims if (c.instance_id, c.token) in held
        ]

    async def release(self, claim: Claim) -> None:
        params = {
            "instance_id": claim.instance_id,
            "token": claim.token,
            "channel": self._channel,
            "origin": self._origin,
        }
        await self._execute("release", self._q.release, params)
        self._wakeup.fire()

    async def commit(self, commit: Commit) -> bool:
        batchers = self._batchers()
        batcher = batchers.commits if _usual([commit]) else batchers.pipelined
        done = await self._retry.acall("commit", lambda: batcher.submit(commit), TRANSIENT)
        if done and _wakes(commit):
            self._wakeup.fire()
        if done and commit.events:
            self._new_events.fire()
            self._require().announcer.announce()
        return done

    def _commit_batch(self, commits: list[Commit], conn: Connection) -> list[bool]:
        if _usual(commits):
            fenced_in = {row[0] for row in conn.execute(*self._commit_many(commits))}
            return [c.claim.instance_id in fenced_in for c in commits]
        if len({c.claim.instance_id for c in commits}) < len(commits):
            # An instance twice: its claims are released at the end of a transaction,
            # so each commit gets one of its own, in order.
            return [self._commit_batch([c], conn)[0] for c in commits]
        # Instance order is the lock order of every batch, so batches cannot deadlock.
        ordered = sorted(commits, key=lambda c: c.claim.instance_id)
        fences: dict[str, psycopg.Cursor[TupleRow]] = {}
        with conn.pipeline(), conn.transaction():
            for commit in ordered:
                fences[commit.claim.instance_id] = self._queue_commit(conn, commit)
            self._queue_finish(conn, ordered)
        return [fences[c.claim.instance_id].fetchone() is not None for c in commits]

    def _queue_commit(self, conn: Connection, commit: Commit) -> psycopg.Cursor[TupleRow]:
        """Send the statements of ``commit`` but its history, events and release; the
        cursor returned has a row if it was fenced in."""
        params = self._commit_params(commit)
        conn.execute(self._q.lock_instance, params)
        fence = conn.execute(self._q.lock_claim, params)
        for statement in self._commit_statements(commit):
            conn.execute(statement, params)
        return fence

    def _queue_finish(self, conn: Connection, commits: list[Commit]) -> None:
        """Send what the ``commits`` write for the whole batch: history, then the
        releases and events, which end the transaction."""
        ids = [c.claim.instance_id for c in commits]
        tokens = [c.claim.token for c in commits]
        if any(c.history or c.history_reset for c in commits):
            params = {"ids": ids, "tokens": tokens} | _history_params(commits)
            conn.execute(self._q.history, params)
        finish = {"ids": ids, "tokens": tokens, "releases": [c.release for c in commits]}
        conn.execute(self._q.finish, finish | _event_params(commits))

    def _commit_many(self, commits: list[Commit]) -> tuple[bytes, dict[str, Any]]:
        """The statement and parameters applying the usual ``commits`` at once."""
        if len(commits) == 1:
            return self._commit_one(commits[0])
        records = [c.record for c in commits]
        params = {
            "ids": [c.claim.instance_id for c in commits],
            "tokens": [c.claim.token for c in commits],
            "has_record": [r is not None for r in records],
            "kinds": [r and r.kind for r in records],
            "job_names": [r and r.job_name for r in records],
            "keys": [r and r.key for r in records],
            "states": [r and r.state for r in records],
            "metas": [r and r.meta for r in records],
            "alarms": [_seconds(r.alarm_at) if r else None for r in records],
            "created": [float(r.created_at) if r else None for r in records],
            "updated": [float(r.updated_at) if r else None for r in records],
            "idempotency_keys": [c.idempotency_key for c in commits],
            "releases": [c.release for c in commits],
            "channel": self._channel,
            "origin": self._origin,
        } | _event_params(commits)
        if any(c.history or c.history_reset for c in commits):
            return self._q.commit_many_history, params | _history_params(commits)
        return self._q.commit_many, params | {"keep_olds": [None] * len(commits)}

    def _commit_one(self, commit: Commit) -> tuple[bytes, dict[str, Any]]:
        r = commit.record
        params: dict[str, Any] = {
            "id": commit.claim.instance_id,
            "token": commit.claim.token,
            "has_record": r is not None,
            "kind": r and r.kind,
            "job_name": r and r.job_name,
            "key": r and r.key,
            "state": r and r.state,
            "meta": r and r.meta,
            "alarm_at": r and r.alarm_at,
            "created_at": r and r.created_at,
            "updated_at": r and r.updated_at,
            "idempotency_key": commit.idempotency_key,
            "release": commit.release,
            "channel": self._channel,
            "origin": self._origin,
            "at": float(commit.at),
            "events": list(commit.events),
        } | _history_params([commit])
        params["keep_old"] = params.pop("keep_olds")[0]
        return self._q.commit_one, params

    def _commit_statements(self, commit: Commit) -> list[bytes]:
        q = self._q
        statements = []
        if commit.delete:
            statements += [q.delete, q.delete_keys]
        elif commit.record is not None:
            statements.append(q.upsert)
        if commit.idempotency_key is not None and not commit.delete:
            statements.append(q.add_key)
        if commit.delete_dead_letter:
            statements.append(q.delete_dead_letter_fenced)
        if commit.dead_letter is not None:
            statements.append(q.dead_letter)
        if _wakes(commit) and not commit.delete:
            statements.append(q.notify)
        return statements

    def _commit_params(self, commit: Commit) -> dict[str, Any]:
        params: dict[str, Any] = {
            "claim_id": commit.claim.instance_id,
            "token": commit.claim.token,
            "idempotency_key": commit.idempotency_key,
            "channel": self._channel,
            "origin": self._origin,
        }
        if commit.record is not None:
            params |= attrs.asdict(commit.record)
        if commit.dead_letter is not None:
            params |= {f"dl_{k}": v for k, v in attrs.asdict(commit.dead_letter).items()}
        return params

    async def has_idempotency_key(self, instance_id: str, key: str) -> bool:
        params = {"instance_id": instance_id, "key": key}
        return bool(await self._rows("has_idempotency_key", self._q.has_key, params))

    async def list_instances(
        self,
        *,
        job_name: str | None = None,
        kind: str | None = None,
        alarmed: bool | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[InstanceRecord]:
        query = self._q.list_instances(
            job_name=job_name is not None,
            kind=kind is not None,
            alarmed=alarmed,
            after=after is not None,
        )
        params = {"job_name": job_name, "kind": kind, "after": after, "limit": limit}
        return [to_record(row) for row in await self._rows("list_instances", query, params)]

    # -- history ---------------------------------------------------------------

    async def read_history(
        self, instance_id: str, *, limit: int, before: int | None = None
    ) -> list[HistoryRecord]:
        params = {
            "instance_id": instance_id,
            "before": NO_ID if before is None else before,
            "limit": limit,
        }
        rows = await self._rows("read_history", self._q.read_history, params)
        return [HistoryRecord.from_row(row) for row in rows]

    # -- dead letters ----------------------------------------------------------

    async def read_dead_letter(self, instance_id: str) -> DeadLetterRecord | None:
        params = {"instance_id": instance_id}
        rows = await self._rows("read_dead_letter", self._q.read_dead_letter, params)
        if not rows:
            return None
        return DeadLetterRecord.from_row(rows[0])

    async def list_dead_letters(
        self, *, job_name: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        query = self._q.list_dead_letters(job_name=job_name is not None, after=after is not None)
        params = {"job_name": job_name, "after": after, "limit": limit}
        rows = await self._rows("list_dead_letters", query, params)
        return [DeadLetterRecord.from_row(row) for row in rows]

    async def delete_dead_letter(self, instance_id: str) -> bool:
        params = {"instance_id": instance_id}
        return bool(await self._rows("delete_dead_letter", self._q.delete_dead_letter, params))

    # -- the event log ---------------------------------------------------------

    async def read_events(self, after: int, limit: int) -> list[OutboxEntry]:
        params = {"after": after, "limit": limit}
        rows = await self._call(
            "read_events", partial(self._sequenced, self._q.read_events, params)
        )
        return [OutboxEntry(id=i, event=event) for i, event in rows]

    async def last_event_id(self) -> int:
        params = {"events_lock": self._events_lock}
        rows = await self._rows("last_event_id", self._q.sequence_events, params)
        return int(rows[0][0])

    def _sequenced(self, query: bytes, params: dict[str, Any], conn: Connection) -> list[TupleRow]:
        """``query``'s rows, once the events committed before it are numbered: both
        in one round trip."""
        with conn.pipeline():
            conn.execute(self._q.sequence_events, {"events_lock": self._events_lock})
            cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []

    async def wait_for_events(self, after: int, timeout: float) -> None:
        self._require().listener.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Notifications wake the wait; the look between waits catches what they
        # missed (sent before the listener was up, or while it reconnected).
        while await self.last_event_id() <= after:
            left = deadline - loop.time()
            if left <= 0:
                return
            await self._new_events.wait(min(left, self._poll_interval))

    async def trim_events(self, *, keep: int, before: float) -> int:
        """Numbered events only: those not yet numbered, no reader has seen. Numbering
        first lets a log nobody reads be trimmed too."""
        params = {"keep": keep, "before": before, "bound": TRIM_BOUND}
        return await self._call("trim_events", partial(self._trim_events, params))

    def _trim_events(self, params: dict[str, Any], conn: Connection) -> int:
        with conn.pipeline():
            conn.execute(self._q.sequence_events, {"events_lock": self._events_lock})
            cursor = conn.execute(self._q.trim_events, params)
        return cursor.rowcount

    async def read_cursor(self, name: str) -> int:
        rows = await self._rows("read_cursor", self._q.read_cursor, {"name": name})
        return int(rows[0][0]) if rows else 0

    async def move_cursor(self, name: str, expected: int, to: int) -> bool:
        query = self._q.start_cursor if expected == 0 else self._q.move_cursor
        params = {"name": name, "expected": expected, "to": to}
        return bool(await self._rows("move_cursor", query, params))

    # -- workers ---------------------------------------------------------------

    async def register_worker(self, worker: WorkerRecord) -> None:
        params = attrs.asdict(worker) | {"jobs": json.dumps(list(worker.jobs))}
        await self._execute("register_worker", self._q.register_worker, params)

    async def heartbeat_worker(self, worker_id: str, last_seen_at: float, running: int) -> bool:
        params = {"worker_id": worker_id, "last_seen_at": last_seen_at, "running": running}
        return bool(await self._rows("heartbeat_worker", self._q.heartbeat_worker, params))

    async def deregister_worker(self, worker_id: str) -> None:
        params = {"worker_id": worker_id}
        await self._execute("deregister_worker", self._q.deregister_worker, params)

    async def list_workers(self, seen_since: float) -> list[WorkerRecord]:
        params = {"seen_since": seen_since}
        rows = await self._rows("list_workers", self._q.list_workers, params)
        return [WorkerRecord.from_row(row) for row in rows]

    async def stats(self, now: float) -> StoreStats:
        return await self._call("stats", partial(self._stats, now))

    def _stats(self, now: float, conn: Connection) -> StoreStats:
        with conn.pipeline():
            instances = conn.execute(self._q.stats_instances)
            due = conn.execute(self._q.stats_due, {"now": now})
            dead = conn.execute(self._q.stats_dead_letters)
        return StoreStats(
            instances=tuple((j, k, a, n) for j, k, a, n in instances.fetchall()),
            due=tuple((j, n) for j, n in due.fetchall()),
            dead_letters=tuple((j, n) for j, n in dead.fetchall()),
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
        if limit <= 0:
            return []
        names = None if jobs is None else list(jobs)
        params = {"now": now, "limit": limit, "owner": owner, "until": until, "jobs": names}
        rows = await self._call("claim_due", partial(self._claim_due, params))
        taken = sorted(((to_record(row[2:]), row) for row in rows), key=_alarm_order)
        return [
            Claim(
                instance_id=r.instance_id,
                owner=owner,
                token=row[0],
                expires_at=until,
                record=r,
                recoveries=row[1],
            )
            for r, row in taken
        ]

    def _claim_due(self, params: dict[str, Any], conn: Connection) -> list[TupleRow]:
        """Rows of the claims taken. Rows that another worker claimed while this
        statement ran use up the limit without being ours, so while that happens
        and more are wanted, look again: the next statement sees those claims."""
        taken: list[TupleRow] = []
        for _ in range(CLAIM_DUE_ROUNDS):
            wanted = params["limit"] - len(taken)
            # A fresh token prefix per statement keeps tokens unique, retries included.
            round_params = {**params, "limit": wanted, "prefix": uuid.uuid4().hex}
            rows = conn.execute(self._q.claim_due, round_params).fetchall()
            taken += [row for row in rows if row[0] is not None]
            if len(rows) < wanted or len(taken) == params["limit"] or all(r[0] for r in rows):
                break
        return taken

    async def next_alarm_at(
        self, now: float, *, jobs: Collection[str] | None = None
    ) -> float | None:
        names = None if jobs is None else list(jobs)
        rows = await self._rows("next_alarm_at", self._q.next_alarm, {"now": now, "jobs": names})
        return float(rows[0][0]) if rows else None

    @property
    def listening(self) -> bool:
        """Whether alarms set and events committed by other processes wake this
        store's waits now: from its first ``wait_for_alarm`` or ``wait_for_events``
        on, while its listening connection is up."""
        resources = self._resources
        return resources is not None and resources.listener.listening

    async def wait_for_alarm(self, timeout: float) -> None:
        self._require().listener.start()  # once listening, it wakes this wait at once
        await self._wakeup.wait(min(timeout, self._poll_interval))


def _on_pool(
    loop: asyncio.AbstractEventLoop,
    resources: _Resources,
    work: Callable[[list[T], Connection], list[R]],
) -> Batcher[T, R]:
    """A batcher sending with ``work`` on a pooled connection, from the store's executor."""

    async def send(items: list[T]) -> list[R]:
        running = asyncio.get_running_loop()
        job = partial(run, resources.pool, partial(work, items))
        return await running.run_in_executor(resources.executor, job)

    return Batcher(loop, send, TRANSIENT)


def _seconds(value: float | None) -> float | None:
    """A time as a float: an array mixing ints and floats cannot be sent."""
    return None if value is None else float(value)


def _claim_params(asks: list[_Ask]) -> dict[str, Any]:
    return {
        "ids": [a.instance_id for a in asks],
        "tokens": [a.token for a in asks],
        "owners": [a.owner for a in asks],
        "untils": [float(a.until) for a in asks],
        "now": min(a.now for a in asks),
    }


def _taken(asks: list[_Ask], rows: list[TupleRow]) -> list[Taken]:
    """Per ask, in order: whether its claim was taken, and the record it read."""
    by_token = {row[0]: row for row in rows}
    taken: list[Taken] = []
    for ask in asks:
        row = by_token.get(ask.token)
        if row is None:
            taken.append((False, None))
        else:
            taken.append((True, to_record(row[1:]) if row[1] is not None else None))
    return taken


def _alarm_order(taken: tuple[InstanceRecord, TupleRow]) -> tuple[float, str]:
    record = taken[0]
    return (record.alarm_at or 0.0, record.instance_id)  # due rows always have an alarm


def _usual(commits: list[Commit]) -> bool:
    """Whether one ``COMMIT_MANY`` statement can apply ``commits``: no deletion or dead
    letter (written or deleted) among them, and no instance twice (its upsert would
    clash)."""
    ids = {c.claim.instance_id for c in commits}
    return len(ids) == len(commits) and not any(
        c.delete or c.dead_letter is not None or c.delete_dead_letter for c in commits
    )


def _event_params(commits: list[Commit]) -> dict[str, Any]:
    """The events of ``commits`` as arrays, one row per event, in order: its
    instance (``e_ids``), its commit's time (``e_ats``), the event."""
    events = [(c.claim.instance_id, float(c.at), e) for c in commits for e in c.events]
    return {
        "e_ids": [i for i, _, _ in events],
        "e_ats": [at for _, at, _ in events],
        "events": [e for _, _, e in events],
    }


def _history_params(commits: list[Commit]) -> dict[str, Any]:
    """The history writes of ``commits`` as arrays: per commit, ``keep_olds`` — how
    many of its instance's rows from before to keep, ``None`` for all — and the new
    rows (``h_*``), already cut to the commit's limit. The statements writing them see
    the history as it was before, so the limit is split here between old and new."""
    keep_olds: list[int | None] = []
    rows: list[HistoryRecord] = []
    for c in commits:
        new = c.history
        keep_old = None
        if c.history_limit is not None and new:
            new = new[max(len(new) - c.history_limit, 0) :]
            keep_old = max(c.history_limit - len(new), 0)
        keep_olds.append(0 if c.history_reset else keep_old)
        rows += [attrs.evolve(r, instance_id=c.claim.instance_id) for r in new]
    return {
        "keep_olds": keep_olds,
        "h_ids": [r.instance_id for r in rows],
        "h_jobs": [r.job_name for r in rows],
        "h_trigs": [r.trigger for r in rows],
        "h_outcomes": [r.outcome for r in rows],
        "h_attempts": [r.attempt for r in rows],
        "h_started": [float(r.started_at) for r in rows],
        "h_finished": [float(r.finished_at) for r in rows],
        "h_errors": [r.error for r in rows],
    }


def events_lock_key(schema: str) -> int:
    """The advisory lock of ``schema``'s event log, which only the numbering of events
    takes: a stable signed 64-bit hash."""
    digest = hashlib.blake2b(f"durable_jobs:{schema}:events".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _wakes(commit: Commit) -> bool:
    """Whether ``commit`` may make an alarm deliverable sooner than waiters expect."""
    return commit.release or (commit.record is not None and commit.record.alarm_at is not None)


def _check_options(schema: str, min_size: int, max_size: int, poll_interval: float) -> None:
    _check_schema(schema)
    if not 0 <= min_size <= max_size or max_size < 1:
        raise ValueError(
            f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}"
        )
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, got {poll_interval}")


def _check_schema(schema: str) -> None:
    if not schema or "\x00" in schema or len(schema.encode()) > NAMEDATALEN:
        raise ValueError(
            f"schema {schema!r} must be 1 to {NAMEDATALEN} bytes without NUL characters "
            "(PostgreSQL would silently cut a longer name)"
        )
    if "%" in schema:
        raise ValueError(
            f"schema {schema!r} must not contain '%': the driver would read it in every "
            "query as a parameter placeholder"
        )
    if schema.lower() == "information_schema" or schema.lower().startswith("pg_"):
        raise ValueError(
            f"schema {schema!r} is a PostgreSQL system schema name (pg_*, information_schema): "
            "choose one of your own, such as the default 'durable_jobs'"
        )
