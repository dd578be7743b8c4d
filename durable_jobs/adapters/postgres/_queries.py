"""The SQL of the PostgreSQL back-end, composed and rendered once per schema.

Table names go through ``sql.Identifier``; every value is a bound parameter. The
statements are kept as bytes: psycopg renders a composed query again at every
execution, but parses the same bytes only once.
Statements of a commit carry ``{fence}`` — the claim still holds the commit's token —
in their own ``WHERE``, so a whole commit can be pipelined in one round trip and a
stale one writes nothing, without asking the server first.
"""

from __future__ import annotations

import re
from typing import LiteralString

from psycopg import sql
from psycopg.rows import TupleRow

from ..records import InstanceRecord

_SPACES = re.compile(rb"\s+")

TABLES = (
    "instances",
    "claims",
    "idempotency_keys",
    "dead_letters",
    "history",
    "events",
    "cursors",
    "workers",
)

COLUMNS: LiteralString = (
    "instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at"
)
DEAD_LETTER_COLUMNS: LiteralString = (
    "instance_id, job_name, kind, state, meta, error, traceback, attempts, at"
)
HISTORY_COLUMNS: LiteralString = (
    "id, instance_id, job_name, trig, outcome, attempt, started_at, finished_at, error"
)
WORKER_COLUMNS: LiteralString = (
    "worker_id, host, pid, started_at, last_seen_at, concurrency, running, jobs"
)

FENCE: LiteralString = (
    "EXISTS (SELECT FROM {claims} WHERE instance_id = %(claim_id)s AND token = %(token)s)"
)

READ: LiteralString = "SELECT {columns} FROM {instances} WHERE instance_id = %(instance_id)s"

# Rows are locked in id order, as commits lock them, so the two cannot deadlock.
RENEW: LiteralString = """
    WITH held AS (
        SELECT c.instance_id FROM {claims} c
        JOIN unnest(%(ids)b::text[], %(tokens)b::text[]) AS h(instance_id, token)
            ON c.instance_id = h.instance_id AND c.token = h.token
        ORDER BY c.instance_id
        FOR UPDATE OF c
    )
    UPDATE {claims} SET expires_at = %(until)s
    FROM held WHERE {claims}.instance_id = held.instance_id
    RETURNING {claims}.instance_id, {claims}.token"""

RELEASE: LiteralString = """
    WITH gone AS (
        DELETE FROM {claims} WHERE instance_id = %(instance_id)s AND token = %(token)s
        RETURNING instance_id
    )
    SELECT pg_notify(%(channel)s, %(origin)s)
    FROM gone JOIN {instances} i USING (instance_id) WHERE i.alarm_at IS NOT NULL"""

# Locking the instance before the claim keeps one lock order with claim_due,
# which holds instance rows while it takes their claims.
LOCK_INSTANCE: LiteralString = "SELECT FROM {instances} WHERE instance_id = %(claim_id)s FOR UPDATE"

LOCK_CLAIM: LiteralString = (
    "SELECT true FROM {claims} WHERE instance_id = %(claim_id)s AND token = %(token)s FOR UPDATE"
)

UPSERT: LiteralString = """
    INSERT INTO {instances} ({columns})
    SELECT %(instance_id)s::text, %(kind)s::text, %(job_name)s::text, %(key)s::text,
        %(state)s::text, %(meta)s::text, %(alarm_at)s::float8, %(created_at)s::float8,
        %(updated_at)s::float8
    WHERE {fence}
    ON CONFLICT (instance_id) DO UPDATE SET
        kind = EXCLUDED.kind, job_name = EXCLUDED.job_name, key = EXCLUDED.key,
        state = EXCLUDED.state, meta = EXCLUDED.meta, alarm_at = EXCLUDED.alarm_at,
        created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"""

DELETE: LiteralString = "DELETE FROM {instances} WHERE instance_id = %(claim_id)s AND {fence}"

DELETE_KEYS: LiteralString = (
    "DELETE FROM {idempotency_keys} WHERE instance_id = %(claim_id)s AND {fence}"
)

ADD_KEY: LiteralString = """
    INSERT INTO {idempotency_keys} (instance_id, key)
    SELECT %(claim_id)s::text, %(idempotency_key)s::text WHERE {fence}
    ON CONFLICT DO NOTHING"""

DEAD_LETTER: LiteralString = """
    INSERT INTO {dead_letters} ({dead_letter_columns})
    SELECT %(dl_instance_id)s::text, %(dl_job_name)s::text, %(dl_kind)s::text,
        %(dl_state)s::text, %(dl_meta)s::text, %(dl_error)s::text, %(dl_traceback)s::text,
        %(dl_attempts)s::integer, %(dl_at)s::float8
    WHERE {fence}
    ON CONFLICT (instance_id) DO UPDATE SET
        job_name = EXCLUDED.job_name, kind = EXCLUDED.kind, state = EXCLUDED.state,
        meta = EXCLUDED.meta, error = EXCLUDED.error, traceback = EXCLUDED.traceback,
        attempts = EXCLUDED.attempts, at = EXCLUDED.at"""

DELETE_DEAD_LETTER_FENCED: LiteralString = (
    "DELETE FROM {dead_letters} WHERE instance_id = %(claim_id)s AND {fence}"
)

# The history writes of the commits in ``fence`` (rows with ``instance_id`` and
# ``keep_old``): the rows of each instance from before the batch beyond its newest
# ``keep_old`` go, then the new rows (``%(h_*)b`` arrays, already cut to each
# commit's limit) are appended in order. Both see the history as it was before the
# statement, which is why the caller works out ``keep_old``. Old rows are found by
# key per instance (LATERAL, which the planner cannot turn into a scan of the whole
# table) and deleted through the same index: ids are unique, so the rows whose id is
# among those found are exactly the rows found, and naming their instances too lets
# the index on both serve the delete, however small the table was when planned.
HISTORY_WRITES: LiteralString = """
    trimmed_instances AS (
        SELECT instance_id, keep_old FROM fence WHERE keep_old IS NOT NULL
    ), trimmed AS (
        DELETE FROM {history}
        WHERE instance_id = ANY(ARRAY(SELECT instance_id FROM trimmed_instances))
        AND id = ANY(ARRAY(
            SELECT old.id FROM trimmed_instances f,
            LATERAL (SELECT id FROM {history} WHERE instance_id = f.instance_id
                     ORDER BY id DESC OFFSET f.keep_old LIMIT 1) cut,
            LATERAL (SELECT id FROM {history}
                     WHERE instance_id = f.instance_id AND id <= cut.id OFFSET 0) old
        ))
    ), recorded AS (
        INSERT INTO {history} (
            instance_id, job_name, trig, outcome, attempt, started_at, finished_at, error
        )
        SELECT h.instance_id, h.job_name, h.trig, h.outcome, h.attempt, h.started_at,
            h.finished_at, h.error
        FROM unnest(
            %(h_ids)b::text[], %(h_jobs)b::text[], %(h_trigs)b::text[],
            %(h_outcomes)b::text[], %(h_attempts)b::integer[], %(h_started)b::float8[],
            %(h_finished)b::float8[], %(h_errors)b::text[]
        ) WITH ORDINALITY AS h(
            instance_id, job_name, trig, outcome, attempt, started_at, finished_at, error, n
        )
        WHERE h.instance_id = ANY(ARRAY(SELECT instance_id FROM fence))
        ORDER BY h.n
    )"""

NO_HISTORY = sql.SQL("no_history AS (SELECT)")

# The history of a pipelined batch, in one statement: fenced by the claims, which
# the transaction holds locked (they are released at its end, by FINISH).
HISTORY: LiteralString = """
    WITH fence AS (
        SELECT b.instance_id, b.keep_old
        FROM unnest(%(ids)b::text[], %(tokens)b::text[], %(keep_olds)b::integer[])
            AS b(instance_id, token, keep_old),
        LATERAL (SELECT FROM {claims}
                 WHERE instance_id = b.instance_id AND token = b.token LIMIT 1) c
    ), {history_writes}
    SELECT"""

# The events of the commits in ``fence``, in the order given (``%(e_*)b`` arrays, one
# row per event, with its instance and its commit's time). Their ids follow that
# order; readers see them once ``sequence_events`` has numbered them.
EVENT_WRITES: LiteralString = """
    added AS (
        INSERT INTO {events} (at, event)
        SELECT e.at, e.event
        FROM unnest(%(e_ids)b::text[], %(e_ats)b::float8[], %(events)b::text[])
            WITH ORDINALITY AS e(instance_id, at, event, n)
        WHERE e.instance_id = ANY(ARRAY(SELECT instance_id FROM fence))
        ORDER BY e.n
    )"""

# The end of a pipelined batch: release the claims asked for and append the events
# of the commits fenced in. Every part sees the claims as they were before it, so a
# commit that releases still has its events fenced in.
FINISH: LiteralString = """
    WITH b AS (
        SELECT * FROM unnest(%(ids)b::text[], %(tokens)b::text[], %(releases)b::bool[])
            AS b(instance_id, token, release)
    ), fence AS (
        SELECT b.* FROM b,
        LATERAL (SELECT FROM {claims}
                 WHERE instance_id = b.instance_id AND token = b.token LIMIT 1) c
    ), released AS (
        DELETE FROM {claims}
        WHERE instance_id = ANY(ARRAY(SELECT instance_id FROM fence WHERE release))
            AND token = ANY(ARRAY(SELECT token FROM fence WHERE release))
    ), {event_writes}
    SELECT"""

# Other processes hear of new events from a transaction of its own, after the
# commits: a transaction that notifies holds the server's notification lock through
# its commit, so commits that notified would commit one at a time.
# Its transaction writes nothing but the notification's commit record, which need
# not wait for the WAL flush: a notification lost in a crash costs a reader one poll.
ANNOUNCE: LiteralString = (
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%(channel)s, %(origin)s)"
)

NOTIFY: LiteralString = """
    SELECT pg_notify(%(channel)s, %(origin)s) FROM {instances}
    WHERE instance_id = %(claim_id)s AND alarm_at IS NOT NULL AND {fence}"""


# The usual commits of a batch (a record or none, an idempotency key, a release) in
# one statement: one round trip and one implicit transaction, with no BEGIN/COMMIT
# exchange. Instance rows are locked first, in id order, as every other commit and
# claim_due lock them; the scalar subquery runs before the first claim row is locked.
# Claim rows are locked FOR UPDATE, so a claim taken over concurrently is re-read
# and its new token fails the join: a stale commit writes nothing. The statement
# answers with the ids of the commits fenced in. Rows are locked one by one through
# LATERAL lookups, which the planner cannot turn into a hash join: a prepared plan
# made while a table was small would otherwise scan all of it at every commit.
# History rows and events are written too (HISTORY_WRITES, EVENT_WRITES).
COMMIT_MANY: LiteralString = """
    WITH b AS (
        SELECT * FROM unnest(
            %(ids)b::text[], %(tokens)b::text[], %(has_record)b::bool[], %(kinds)b::text[],
            %(job_names)b::text[], %(keys)b::text[], %(states)b::text[], %(metas)b::text[],
            %(alarms)b::float8[], %(created)b::float8[], %(updated)b::float8[],
            %(idempotency_keys)b::text[], %(releases)b::bool[], %(keep_olds)b::integer[]
        ) AS b(instance_id, token, has_record, kind, job_name, key, state, meta, alarm_at,
               created_at, updated_at, idempotency_key, release, keep_old)
    ), locked AS (
        SELECT i.instance_id FROM (SELECT instance_id FROM b ORDER BY instance_id COLLATE "C") o,
        LATERAL (SELECT instance_id FROM {instances}
                 WHERE instance_id = o.instance_id FOR UPDATE) i
    ), fence AS (
        SELECT o.* FROM (
            SELECT * FROM b WHERE (SELECT count(*) FROM locked) >= 0
            ORDER BY instance_id COLLATE "C"
        ) o,
        LATERAL (SELECT FROM {claims}
                 WHERE instance_id = o.instance_id AND token = o.token FOR UPDATE) c
    ), upserted AS (
        INSERT INTO {instances} ({columns})
        SELECT instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at
        FROM fence WHERE has_record
        ON CONFLICT (instance_id) DO UPDATE SET
            kind = EXCLUDED.kind, job_name = EXCLUDED.job_name, key = EXCLUDED.key,
            state = EXCLUDED.state, meta = EXCLUDED.meta, alarm_at = EXCLUDED.alarm_at,
            created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
    ), keyed AS (
        INSERT INTO {idempotency_keys} (instance_id, key)
        SELECT instance_id, idempotency_key FROM fence WHERE idempotency_key IS NOT NULL
        ON CONFLICT DO NOTHING
    ), released AS (
        DELETE FROM {claims}
        WHERE instance_id = ANY(ARRAY(SELECT instance_id FROM fence WHERE release))
            AND token = ANY(ARRAY(SELECT token FROM fence WHERE release))
    ), {history_writes}, {event_writes}, woken AS (
        SELECT pg_notify(%(channel)s, %(origin)s) FROM fence f
        WHERE CASE WHEN f.has_record THEN f.alarm_at IS NOT NULL
                   ELSE f.release AND (SELECT alarm_at FROM {instances}
                                       WHERE instance_id = f.instance_id) IS NOT NULL END
        LIMIT 1
    )
    SELECT instance_id FROM fence WHERE (SELECT count(*) FROM woken) >= 0"""

CLAIM_MANY: LiteralString = """
    SELECT * FROM {claim_many}(
        %(ids)b::text[], %(tokens)b::text[], %(owners)b::text[], %(untils)b::float8[],
        %(now)s::float8
    )"""

CLAIM_ONE: LiteralString = """
    SELECT * FROM {claim_one}(
        %(id)s::text, %(token)s::text, %(owner)s::text, %(until)s::float8, %(now)s::float8
    )"""

COMMIT_ONE: LiteralString = """
    SELECT * FROM {commit_one}(
        %(id)s::text, %(token)s::text, %(has_record)s::bool, %(kind)s::text,
        %(job_name)s::text, %(key)s::text, %(state)s::text, %(meta)s::text,
        %(alarm_at)s::float8, %(created_at)s::float8, %(updated_at)s::float8,
        %(idempotency_key)s::text, %(release)s::bool, %(channel)s::text, %(origin)s::text,
        %(keep_old)s::integer, %(h_jobs)b::text[], %(h_trigs)b::text[],
        %(h_outcomes)b::text[], %(h_attempts)b::integer[], %(h_started)b::float8[],
        %(h_finished)b::float8[], %(h_errors)b::text[], %(at)s::float8, %(events)b::text[]
    )"""

HAS_KEY: LiteralString = (
    "SELECT true FROM {idempotency_keys} WHERE instance_id = %(instance_id)s AND key = %(key)s"
)

READ_DEAD_LETTER: LiteralString = """
    SELECT {dead_letter_columns} FROM {dead_letters} WHERE instance_id = %(instance_id)s"""

LIST: LiteralString = (
    "SELECT {columns} FROM {instances} {where} ORDER BY instance_id LIMIT %(limit)s"
)

LIST_DEAD_LETTERS: LiteralString = (
    "SELECT {dead_letter_columns} FROM {dead_letters} {where} ORDER BY instance_id LIMIT %(limit)s"
)

DELETE_DEAD_LETTER: LiteralString = (
    "DELETE FROM {dead_letters} WHERE instance_id = %(instance_id)s RETURNING true"
)

READ_HISTORY: LiteralString = """
    SELECT {history_columns} FROM {history}
    WHERE instance_id = %(instance_id)s AND id < %(before)s
    ORDER BY id DESC LIMIT %(limit)s"""

# Events are read by number; ``sequence_events`` numbers those committed since it
# last ran, and answers the last number given.
SEQUENCE_EVENTS: LiteralString = "SELECT {sequence_events}(%(events_lock)s)"

READ_EVENTS: LiteralString = """
    SELECT seq, event FROM {events} WHERE seq > %(after)s ORDER BY seq LIMIT %(limit)s"""

# Bounded: only the oldest ``bound`` numbered events are looked at. Events not yet
# numbered stay, whatever their age: no reader has seen them.
TRIM_EVENTS: LiteralString = """
    WITH newest AS (
        SELECT coalesce(
            (SELECT seq FROM {events} WHERE seq IS NOT NULL
             ORDER BY seq DESC OFFSET %(keep)s LIMIT 1), 0
        ) AS kept_after
    ), oldest AS (
        SELECT seq, at FROM {events} WHERE seq IS NOT NULL ORDER BY seq LIMIT %(bound)s
    )
    DELETE FROM {events} WHERE seq = ANY(ARRAY(
        SELECT o.seq FROM oldest o, newest n WHERE o.seq <= n.kept_after OR o.at < %(before)s
    ))"""

READ_CURSOR: LiteralString = "SELECT position FROM {cursors} WHERE name = %(name)s"

# A reader at 0 may have no row yet.
START_CURSOR: LiteralString = """
    INSERT INTO {cursors} (name, position) VALUES (%(name)s, %(to)s)
    ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position
    WHERE {cursors}.position = 0
    RETURNING true"""

MOVE_CURSOR: LiteralString = """
    UPDATE {cursors} SET position = %(to)s
    WHERE name = %(name)s AND position = %(expected)s RETURNING true"""

REGISTER_WORKER: LiteralString = """
    INSERT INTO {workers} ({worker_columns})
    VALUES (%(worker_id)s, %(host)s, %(pid)s, %(started_at)s, %(last_seen_at)s,
        %(concurrency)s, %(running)s, %(jobs)s)
    ON CONFLICT (worker_id) DO UPDATE SET
        host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
        last_seen_at = EXCLUDED.last_seen_at, concurrency = EXCLUDED.concurrency,
        running = EXCLUDED.running, jobs = EXCLUDED.jobs"""

HEARTBEAT_WORKER: LiteralString = """
    UPDATE {workers} SET last_seen_at = %(last_seen_at)s, running = %(running)s
    WHERE worker_id = %(worker_id)s RETURNING true"""

DEREGISTER_WORKER: LiteralString = "DELETE FROM {workers} WHERE worker_id = %(worker_id)s"

# Rows of workers gone without deregistering (killed) are pruned as they are listed.
LIST_WORKERS: LiteralString = """
    WITH pruned AS (DELETE FROM {workers} WHERE last_seen_at < %(seen_since)s)
    SELECT {worker_columns} FROM {workers} WHERE last_seen_at >= %(seen_since)s
    ORDER BY worker_id"""

STATS_INSTANCES: LiteralString = """
    SELECT job_name, kind, alarm_at IS NOT NULL, count(*) FROM {instances}
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""

# Through the partial index on alarms: only those due are read.
STATS_DUE: LiteralString = """
    SELECT job_name, count(*) FROM {instances} WHERE alarm_at <= %(now)s
    GROUP BY 1 ORDER BY 1"""

STATS_DEAD_LETTERS: LiteralString = (
    "SELECT job_name, count(*) FROM {dead_letters} GROUP BY 1 ORDER BY 1"
)

LIVE_CLAIM: LiteralString = """
    EXISTS (SELECT FROM {claims} c
            WHERE c.instance_id = i.instance_id AND c.expires_at > %(now)s)"""

# Walks the partial alarm index earliest first; SKIP LOCKED leaves rows another
# worker (or a commit) holds. The instance columns come from the locked rows, which
# are their latest version even when a commit landed after this statement began.
# Every locked row comes back; a NULL token means another worker claimed it after
# this statement's snapshot was taken.
CLAIM_DUE: LiteralString = """
    WITH due AS (
        SELECT {columns} FROM {instances} i
        WHERE i.alarm_at <= %(now)s AND NOT {live_claim} AND {of_jobs}
        ORDER BY i.alarm_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), taken AS (
        INSERT INTO {claims} (instance_id, owner, token, expires_at)
        SELECT instance_id, %(owner)s,
            %(prefix)s || '.' || row_number() OVER (ORDER BY instance_id), %(until)s
        FROM due ORDER BY instance_id
        ON CONFLICT (instance_id) DO UPDATE
            SET owner = EXCLUDED.owner, token = EXCLUDED.token,
                expires_at = EXCLUDED.expires_at, recoveries = {claims}.recoveries + 1
            WHERE {claims}.expires_at <= %(now)s
        RETURNING instance_id, token, recoveries
    )
    SELECT taken.token, taken.recoveries, {due_columns}
    FROM due LEFT JOIN taken USING (instance_id)
    ORDER BY due.alarm_at, due.instance_id"""

NEXT_ALARM: LiteralString = """
    SELECT i.alarm_at FROM {instances} i
    WHERE i.alarm_at IS NOT NULL AND NOT {live_claim} AND {of_jobs}
    ORDER BY i.alarm_at LIMIT 1"""

# Released claims are deleted, so a claim row that a due alarm's claim finds has
# expired without a release: its holder died (SEMANTICS 14 counts these).
OF_JOBS: LiteralString = "(%(jobs)s::text[] IS NULL OR i.job_name = ANY(%(jobs)s::text[]))"


class Queries:
    """Every statement of the back-end, bound to one schema."""

    def __init__(self, schema: str) -> None:
        self._names: dict[str, sql.Composable] = {
            table: sql.Identifier(schema, table) for table in TABLES
        }
        self._names["claim_many"] = sql.Identifier(schema, "claim_many")
        self._names["claim_one"] = sql.Identifier(schema, "claim_one")
        self._names["commit_one"] = sql.Identifier(schema, "commit_one")
        self._names["sequence_events"] = sql.Identifier(schema, "sequence_events")
        self._names["columns"] = sql.SQL(COLUMNS)
        self._names["dead_letter_columns"] = sql.SQL(DEAD_LETTER_COLUMNS)
        self._names["history_columns"] = sql.SQL(HISTORY_COLUMNS)
        self._names["worker_columns"] = sql.SQL(WORKER_COLUMNS)
        self._names["due_columns"] = sql.SQL(", ").join(
            sql.Identifier("due", c) for c in COLUMNS.split(", ")
        )
        self._names["fence"] = self.compose(FENCE)
        self._names["live_claim"] = self.compose(LIVE_CLAIM)
        self._names["of_jobs"] = sql.SQL(OF_JOBS)
        self.read = self.render(READ)
        self.renew = self.render(RENEW)
        self.release = self.render(RELEASE)
        self.lock_instance = self.render(LOCK_INSTANCE)
        self.lock_claim = self.render(LOCK_CLAIM)
        self.upsert = self.render(UPSERT)
        self.delete = self.render(DELETE)
        self.delete_keys = self.render(DELETE_KEYS)
        self.add_key = self.render(ADD_KEY)
        self.dead_letter = self.render(DEAD_LETTER)
        self.delete_dead_letter_fenced = self.render(DELETE_DEAD_LETTER_FENCED)
        self.notify = self.render(NOTIFY)
        history_writes = self.compose(HISTORY_WRITES)
        self.history = self.render(HISTORY, history_writes=history_writes)
        event_writes = self.compose(EVENT_WRITES)
        self.finish = self.render(FINISH, event_writes=event_writes)
        self.announce = self.render(ANNOUNCE)
        # Without history, the statement a batch of producers' commits uses.
        self.commit_many = self.render(
            COMMIT_MANY, history_writes=NO_HISTORY, event_writes=event_writes
        )
        self.commit_many_history = self.render(
            COMMIT_MANY, history_writes=history_writes, event_writes=event_writes
        )
        self.commit_one = self.render(COMMIT_ONE)
        self.claim_many = self.render(CLAIM_MANY)
        self.claim_one = self.render(CLAIM_ONE)
        self.has_key = self.render(HAS_KEY)
        self.read_dead_letter = self.render(READ_DEAD_LETTER)
        self.claim_due = self.render(CLAIM_DUE)
        self.next_alarm = self.render(NEXT_ALARM)
        self._render_operating()

    def _render_operating(self) -> None:
        """The statements of the history, dead letters, event log and workers."""
        self.delete_dead_letter = self.render(DELETE_DEAD_LETTER)
        self.read_history = self.render(READ_HISTORY)
        self.sequence_events = self.render(SEQUENCE_EVENTS)
        self.read_events = self.render(READ_EVENTS)
        self.trim_events = self.render(TRIM_EVENTS)
        self.read_cursor = self.render(READ_CURSOR)
        self.start_cursor = self.render(START_CURSOR)
        self.move_cursor = self.render(MOVE_CURSOR)
        self.register_worker = self.render(REGISTER_WORKER)
        self.heartbeat_worker = self.render(HEARTBEAT_WORKER)
        self.deregister_worker = self.render(DEREGISTER_WORKER)
        self.list_workers = self.render(LIST_WORKERS)
        self.stats_instances = self.render(STATS_INSTANCES)
        self.stats_due = self.render(STATS_DUE)
        self.stats_dead_letters = self.render(STATS_DEAD_LETTERS)

    def compose(self, template: LiteralString, **extra: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(**self._names, **extra)

    def render(self, template: LiteralString, **extra: sql.Composable) -> bytes:
        # Runs of whitespace become one space (no statement has a literal or comment
        # that this would change): psycopg parses a statement once and keeps it only
        # up to 4096 bytes, and the biggest commit statement is longer indented.
        return _SPACES.sub(b" ", self.compose(template, **extra).as_bytes(None)).strip()

    def list_instances(
        self, *, job_name: bool, kind: bool, alarmed: bool | None, after: bool
    ) -> bytes:
        """The listing, filtered on the columns asked for, in the order of an index
        that serves it: by job, ``(job_name, instance_id)``; by kind, the range of
        the primary key its ids start with (``kind:``); else the primary key."""
        return self.render(
            LIST,
            where=_where(
                ("job_name = %(job_name)s", job_name),
                ("instance_id >= %(kind)s || ':' AND instance_id < %(kind)s || ';'", kind),
                ("kind = %(kind)s", kind),
                ("alarm_at IS NOT NULL", alarmed is True),
                ("alarm_at IS NULL", alarmed is False),
                ("instance_id > %(after)s", after),
            ),
        )

    def list_dead_letters(self, *, job_name: bool, after: bool) -> bytes:
        """Dead letters in id order, by job through ``(job_name, instance_id)``."""
        return self.render(
            LIST_DEAD_LETTERS,
            where=_where(("job_name = %(job_name)s", job_name), ("instance_id > %(after)s", after)),
        )


def _where(*conditions: tuple[LiteralString, bool]) -> sql.Composable:
    """``WHERE`` and the conditions wanted, or nothing."""
    wanted = [sql.SQL(condition) for condition, want in conditions if want]
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(wanted) if wanted else sql.SQL("")


def to_record(row: TupleRow) -> InstanceRecord:
    """An instance from the columns of ``COLUMNS``, in that order."""
    return InstanceRecord.from_row(row)
