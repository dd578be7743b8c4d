"""The SQL of the PostgreSQL back-end, composed and rendered once per schema.

Table names go through ``sql.Identifier``; every value is a bound parameter. The
statements are kept as bytes: psycopg renders a composed query again at every
execution, but parses the same bytes only once.
Statements of a commit carry ``{fence}`` — the claim still holds the commit's token —
in their own ``WHERE``, so a whole commit can be pipelined in one round trip and a
stale one writes nothing, without asking the server first.
"""

from __future__ import annotations

from typing import LiteralString

from psycopg import sql
from psycopg.rows import TupleRow

from ..records import InstanceRecord

TABLES = ("instances", "claims", "idempotency_keys", "dead_letters", "outbox")

COLUMNS: LiteralString = (
    "instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at"
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
    INSERT INTO {dead_letters} (instance_id, job_name, state, error, attempts, at)
    SELECT %(dl_instance_id)s::text, %(dl_job_name)s::text, %(dl_state)s::text,
        %(dl_error)s::text, %(dl_attempts)s::integer, %(dl_at)s::float8
    WHERE {fence}
    ON CONFLICT (instance_id) DO UPDATE SET
        job_name = EXCLUDED.job_name, state = EXCLUDED.state, error = EXCLUDED.error,
        attempts = EXCLUDED.attempts, at = EXCLUDED.at"""

# Ids follow the order rows are inserted in, hence ORDER BY the position.
ADD_EVENTS: LiteralString = """
    INSERT INTO {outbox} (event)
    SELECT e FROM unnest(%(events)b::text[]) WITH ORDINALITY AS t(e, n)
    WHERE {fence} ORDER BY n"""

NOTIFY: LiteralString = """
    SELECT pg_notify(%(channel)s, %(origin)s) FROM {instances}
    WHERE instance_id = %(claim_id)s AND alarm_at IS NOT NULL AND {fence}"""

RELEASE_FENCED: LiteralString = (
    "DELETE FROM {claims} WHERE instance_id = %(claim_id)s AND token = %(token)s"
)

# The usual commits of a batch (a record or none, an idempotency key, a release) in
# one statement: one round trip and one implicit transaction, with no BEGIN/COMMIT
# exchange. Instance rows are locked first, in id order, as every other commit and
# claim_due lock them; the scalar subquery runs before the first claim row is locked.
# Claim rows are locked FOR UPDATE, so a claim taken over concurrently is re-read
# and its new token fails the join: a stale commit writes nothing. The statement
# answers with the ids of the commits fenced in. Rows are locked one by one through
# LATERAL lookups, which the planner cannot turn into a hash join: a prepared plan
# made while a table was small would otherwise scan all of it at every commit.
COMMIT_MANY: LiteralString = """
    WITH b AS (
        SELECT * FROM unnest(
            %(ids)b::text[], %(tokens)b::text[], %(has_record)b::bool[], %(kinds)b::text[],
            %(job_names)b::text[], %(keys)b::text[], %(states)b::text[], %(metas)b::text[],
            %(alarms)b::float8[], %(created)b::float8[], %(updated)b::float8[],
            %(idempotency_keys)b::text[], %(releases)b::bool[]
        ) AS b(instance_id, token, has_record, kind, job_name, key, state, meta, alarm_at,
               created_at, updated_at, idempotency_key, release)
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
    ), woken AS (
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
        %(idempotency_key)s::text, %(release)s::bool, %(channel)s::text, %(origin)s::text
    )"""

HAS_KEY: LiteralString = (
    "SELECT true FROM {idempotency_keys} WHERE instance_id = %(instance_id)s AND key = %(key)s"
)

READ_DEAD_LETTER: LiteralString = """
    SELECT instance_id, job_name, state, error, attempts, at
    FROM {dead_letters} WHERE instance_id = %(instance_id)s"""

LIST: LiteralString = (
    "SELECT {columns} FROM {instances} {where} ORDER BY instance_id LIMIT %(limit)s"
)

TAKE_OUTBOX: LiteralString = "SELECT id, event FROM {outbox} ORDER BY id LIMIT %(limit)s"

ACK_OUTBOX: LiteralString = "DELETE FROM {outbox} WHERE id = ANY(%(ids)b::bigint[])"

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
        self._names["columns"] = sql.SQL(COLUMNS)
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
        self.add_events = self.render(ADD_EVENTS)
        self.notify = self.render(NOTIFY)
        self.release_fenced = self.render(RELEASE_FENCED)
        self.commit_many = self.render(COMMIT_MANY)
        self.commit_one = self.render(COMMIT_ONE)
        self.claim_many = self.render(CLAIM_MANY)
        self.claim_one = self.render(CLAIM_ONE)
        self.has_key = self.render(HAS_KEY)
        self.read_dead_letter = self.render(READ_DEAD_LETTER)
        self.take_outbox = self.render(TAKE_OUTBOX)
        self.ack_outbox = self.render(ACK_OUTBOX)
        self.claim_due = self.render(CLAIM_DUE)
        self.next_alarm = self.render(NEXT_ALARM)

    def compose(self, template: LiteralString, **extra: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(**self._names, **extra)

    def render(self, template: LiteralString, **extra: sql.Composable) -> bytes:
        return self.compose(template, **extra).as_bytes(None)

    def list_instances(self, *, job_name: bool, kind: bool) -> bytes:
        """The listing, filtered on the columns asked for (so their indexes apply)."""
        conditions = [
            sql.SQL(condition)
            for condition, wanted in (
                ("job_name = %(job_name)s", job_name),
                ("kind = %(kind)s", kind),
            )
            if wanted
        ]
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        return self.render(LIST, where=where)


def to_record(row: TupleRow) -> InstanceRecord:
    """An instance from the columns of :data:`COLUMNS`, in that order."""
    return InstanceRecord.from_row(row)
