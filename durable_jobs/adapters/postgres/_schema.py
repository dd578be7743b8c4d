"""The tables of the PostgreSQL back-end, as versioned migrations.

Migrations only ever get appended: version ``n`` is the ``n``-th entry of
``MIGRATIONS``. ``migrate`` applies the missing ones in one transaction that
holds a transaction-scoped advisory lock keyed on the schema, so processes starting
together queue up instead of racing, and nothing outlives the transaction (safe
behind PgBouncer in transaction mode).
"""

from __future__ import annotations

import hashlib
from typing import LiteralString

import attrs
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from ...errors import StorageError


@attrs.frozen
class Function:
    """``CREATE OR REPLACE FUNCTION {head} AS '{body}'``: the body goes in as a quoted literal,
    so no schema name can end it early (a dollar-quoted body could be)."""

    head: sql.SQL
    body: sql.SQL


# Claims queued together, in one round trip: take the free or expired ones (or, on a
# retry whose answer was lost, those already ours), then read their instances.
# ``p_now`` is the earliest clock reading of the batch, so that no claim is taken
# over before every caller saw it expire. The
# read is a second statement: with a snapshot of its own (a VOLATILE function under
# READ COMMITTED) it sees every commit fenced in before the claim was taken.
# PL/pgSQL rather than SQL: it keeps its plans for the session.
_CLAIM_HEAD = sql.SQL("""
    {schema}.claim_many(
        p_ids text[], p_tokens text[], p_owners text[], p_untils float8[], p_now float8
    ) RETURNS TABLE (
        r_token text, r_instance_id text, r_kind text, r_job_name text, r_key text,
        r_state text, r_meta text, r_alarm_at float8, r_created_at float8,
        r_updated_at float8
    ) LANGUAGE plpgsql VOLATILE""")

_CLAIM_TAKE = """
    INSERT INTO {schema}.claims AS c (instance_id, owner, token, expires_at)
    SELECT u.id, u.owner, u.token, u.until
    FROM unnest(p_ids, p_tokens, p_owners, p_untils) AS u(id, token, owner, until)
    ORDER BY u.id COLLATE "C"  -- the order every statement locks rows in
    ON CONFLICT (instance_id) DO UPDATE
        SET owner = EXCLUDED.owner, token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
        WHERE c.expires_at <= p_now OR c.token = EXCLUDED.token;"""

_CLAIM_READ = """
    RETURN QUERY
    SELECT c.token, i.instance_id, i.kind, i.job_name, i.key, i.state, i.meta,
        i.alarm_at, i.created_at, i.updated_at
    FROM {schema}.claims c
    JOIN unnest(p_ids, p_tokens) AS u(id, token) ON c.instance_id = u.id AND c.token = u.token
    LEFT JOIN {schema}.instances i ON i.instance_id = c.instance_id;"""

# The read again, through the keys whatever plan the session keeps: PL/pgSQL plans a
# statement once, and a plan made while the tables were small joins by reading all of
# them, at a cost that grows with the tables. Lookups that cannot be flattened into a
# join (LIMIT 1 on a key), compared in the keys' collation, stay index scans.
_CLAIM_READ_BY_KEY = """
    RETURN QUERY
    SELECT c.token, i.instance_id, i.kind, i.job_name, i.key, i.state, i.meta,
        i.alarm_at, i.created_at, i.updated_at
    FROM unnest(p_ids, p_tokens) AS u(id, token)
    CROSS JOIN LATERAL (
        SELECT token, instance_id FROM {schema}.claims
        WHERE instance_id = u.id COLLATE "C" AND token = u.token LIMIT 1
    ) c
    LEFT JOIN LATERAL (
        SELECT * FROM {schema}.instances WHERE instance_id = c.instance_id LIMIT 1
    ) i ON true;"""

# A claim committed without waiting for the WAL to reach the disk: a claim is worth
# keeping only until its commit, and that commit's own flush takes the claim's WAL
# along (the log is written in order). A crash may lose the claim, never the commit
# fenced by it: the caller of a lost claim finds its token gone and retries. That
# halves the flushes of a client call.
_UNFLUSHED = """
    PERFORM set_config('synchronous_commit', 'off', true);"""


def _claim_many(*statements: LiteralString) -> Function:
    return Function(_CLAIM_HEAD, sql.SQL("".join(("BEGIN", *statements, "\n    END\n"))))


CLAIM_MANY = _claim_many(_CLAIM_TAKE, _CLAIM_READ)
CLAIM_MANY_UNFLUSHED = _claim_many(_UNFLUSHED, _CLAIM_TAKE, _CLAIM_READ)
CLAIM_MANY_BY_KEY = _claim_many(_UNFLUSHED, _CLAIM_TAKE, _CLAIM_READ_BY_KEY)

# A claim alone, as ``claim_many`` takes it, on scalars: a lone caller (a sequential
# producer) is the usual case, and unnesting and sorting arrays of one cost the
# server more than the rest of the call. The read is a second statement, as above.
_CLAIM_ONE = """
    INSERT INTO {schema}.claims AS c (instance_id, owner, token, expires_at)
    VALUES (p_id, p_owner, p_token, p_until)
    ON CONFLICT (instance_id) DO UPDATE
        SET owner = EXCLUDED.owner, token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
        WHERE c.expires_at <= p_now OR c.token = EXCLUDED.token;
    IF FOUND THEN
        RETURN QUERY
        SELECT p_token, i.instance_id, i.kind, i.job_name, i.key, i.state, i.meta,
            i.alarm_at, i.created_at, i.updated_at
        FROM (SELECT) AS taken
        LEFT JOIN {schema}.instances i ON i.instance_id = p_id COLLATE "C";
    END IF;
    END
    """

CLAIM_ONE = Function(
    sql.SQL("""
    {schema}.claim_one(
        p_id text, p_token text, p_owner text, p_until float8, p_now float8
    ) RETURNS TABLE (
        r_token text, r_instance_id text, r_kind text, r_job_name text, r_key text,
        r_state text, r_meta text, r_alarm_at float8, r_created_at float8,
        r_updated_at float8
    ) LANGUAGE plpgsql VOLATILE"""),
    sql.SQL("".join(("BEGIN", _UNFLUSHED, _CLAIM_ONE))),
)

# A commit alone, as one of ``COMMIT_MANY`` (queries.py) is applied, on scalars and
# in keyed statements: the instance row is locked first, then the claim row, whose
# token fences every write; it returns the id if the commit was fenced in. The same
# few statements as one CTE over arrays of one cost the server twice as much.
_COMMIT_ONE_FENCE = """
    PERFORM FROM {schema}.instances WHERE instance_id = p_id FOR UPDATE;
    PERFORM FROM {schema}.claims WHERE instance_id = p_id AND token = p_token FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;"""

_COMMIT_ONE_WRITES = """
    IF p_has_record THEN
        INSERT INTO {schema}.instances AS i (
            instance_id, kind, job_name, key, state, meta, alarm_at, created_at, updated_at
        ) VALUES (
            p_id, p_kind, p_job_name, p_key, p_state, p_meta, p_alarm_at, p_created_at,
            p_updated_at
        )
        ON CONFLICT (instance_id) DO UPDATE SET
            kind = EXCLUDED.kind, job_name = EXCLUDED.job_name, key = EXCLUDED.key,
            state = EXCLUDED.state, meta = EXCLUDED.meta, alarm_at = EXCLUDED.alarm_at,
            created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at;
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO {schema}.idempotency_keys (instance_id, key)
        VALUES (p_id, p_idempotency_key) ON CONFLICT DO NOTHING;
    END IF;
    IF p_release THEN
        DELETE FROM {schema}.claims WHERE instance_id = p_id AND token = p_token;
    END IF;
    IF (p_has_record AND p_alarm_at IS NOT NULL)
        OR (NOT p_has_record AND p_release AND EXISTS (
            SELECT FROM {schema}.instances WHERE instance_id = p_id AND alarm_at IS NOT NULL
        )) THEN
        PERFORM pg_notify(p_channel, p_origin);
    END IF;
    RETURN NEXT p_id;
    END
    """

_COMMIT_ONE = _COMMIT_ONE_FENCE + _COMMIT_ONE_WRITES

COMMIT_ONE = Function(
    sql.SQL("""
    {schema}.commit_one(
        p_id text, p_token text, p_has_record bool, p_kind text, p_job_name text,
        p_key text, p_state text, p_meta text, p_alarm_at float8, p_created_at float8,
        p_updated_at float8, p_idempotency_key text, p_release bool, p_channel text,
        p_origin text
    ) RETURNS SETOF text LANGUAGE plpgsql VOLATILE"""),
    sql.SQL("".join(("BEGIN", _COMMIT_ONE))),
)

# The commit alone again, writing history and events too: ``p_keep_old`` is how many
# of the instance's rows from before this commit to keep (``NULL``: all of them), and
# the ``p_h_*`` arrays are the rows to append, oldest first. The caller has already
# cut them to the history limit, so the trim need not see them.
_HISTORY_ONE = """
    IF p_keep_old IS NOT NULL THEN
        DELETE FROM {schema}.history
        WHERE instance_id = p_id AND id <= (
            SELECT id FROM {schema}.history WHERE instance_id = p_id
            ORDER BY id DESC OFFSET p_keep_old LIMIT 1
        );
    END IF;
    IF cardinality(p_h_trigs) > 0 THEN
        INSERT INTO {schema}.history (
            instance_id, job_name, trig, outcome, attempt, started_at, finished_at, error
        )
        SELECT p_id, h.job_name, h.trig, h.outcome, h.attempt, h.started_at,
            h.finished_at, h.error
        FROM unnest(
            p_h_jobs, p_h_trigs, p_h_outcomes, p_h_attempts, p_h_started, p_h_finished,
            p_h_errors
        ) WITH ORDINALITY AS h(
            job_name, trig, outcome, attempt, started_at, finished_at, error, n
        )
        ORDER BY h.n;
    END IF;"""

# And its events, in order, stamped with the commit's time.
_EVENTS_ONE = """
    IF cardinality(p_events) > 0 THEN
        INSERT INTO {schema}.events (at, event)
        SELECT p_at, e.event FROM unnest(p_events) WITH ORDINALITY AS e(event, n)
        ORDER BY e.n;
    END IF;"""

COMMIT_ONE_WITH_HISTORY = Function(
    sql.SQL("""
    {schema}.commit_one(
        p_id text, p_token text, p_has_record bool, p_kind text, p_job_name text,
        p_key text, p_state text, p_meta text, p_alarm_at float8, p_created_at float8,
        p_updated_at float8, p_idempotency_key text, p_release bool, p_channel text,
        p_origin text, p_keep_old integer, p_h_jobs text[], p_h_trigs text[],
        p_h_outcomes text[], p_h_attempts integer[], p_h_started float8[],
        p_h_finished float8[], p_h_errors text[], p_at float8, p_events text[]
    ) RETURNS SETOF text LANGUAGE plpgsql VOLATILE"""),
    sql.SQL("".join(("BEGIN", _COMMIT_ONE_FENCE, _HISTORY_ONE, _EVENTS_ONE, _COMMIT_ONE_WRITES))),
)

# Numbers the events committed but not yet numbered (``seq`` NULL), in id order, from
# the last number given, and returns the last number given. Commits take no lock, so
# an id taken before another commit's may commit after it: numbering only what has
# committed, one sequencer at a time, keeps numbers in the order events become
# visible, and a reader that saw a number never finds a lower one later. The lock is
# taken only when there is something to number (the check reads the partial index
# of unnumbered rows), and each statement after it sees every earlier sequencer's
# work. The last number given is kept apart, so that trimming every event never
# lets a number be given twice.
SEQUENCE_EVENTS = Function(
    sql.SQL("""
    {schema}.sequence_events(p_lock bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE"""),
    sql.SQL("""
    DECLARE
        v_last bigint;
    BEGIN
    IF EXISTS (SELECT FROM {schema}.events WHERE seq IS NULL) THEN
        PERFORM pg_advisory_xact_lock(p_lock);
        SELECT last INTO v_last FROM {schema}.sequencer;
        WITH pending AS (
            SELECT id, v_last + row_number() OVER (ORDER BY id) AS seq
            FROM {schema}.events WHERE seq IS NULL
        ), numbered AS (
            UPDATE {schema}.events e SET seq = p.seq FROM pending p
            WHERE e.id = p.id AND e.seq IS NULL
            RETURNING e.seq
        )
        SELECT coalesce(max(seq), v_last) INTO v_last FROM numbered;
        UPDATE {schema}.sequencer SET last = v_last;
        RETURN v_last;
    END IF;
    RETURN (SELECT last FROM {schema}.sequencer);
    END
    """),
)

# Version 8: what operating needs. Dead letters keep what a redrive needs (the kind,
# the counters, the traceback) and are listed per job; each instance has a history of
# runs; the outbox becomes the event log that readers follow with cursors of their
# own; workers register themselves. Instances are listed by kind through the primary
# key (an id starts with its kind), so the index on kind goes: one index fewer to
# write at every commit.
OPERATING: tuple[sql.SQL | Function, ...] = (
    sql.SQL("""
    ALTER TABLE {schema}.dead_letters
        ADD COLUMN kind text,
        ADD COLUMN meta text,
        ADD COLUMN traceback text NOT NULL DEFAULT ''"""),
    sql.SQL("UPDATE {schema}.dead_letters SET kind = split_part(instance_id, ':', 1)"),
    sql.SQL("ALTER TABLE {schema}.dead_letters ALTER COLUMN kind SET NOT NULL"),
    sql.SQL("CREATE INDEX dead_letters_job_name ON {schema}.dead_letters (job_name, instance_id)"),
    # No primary key on ``id``: rows are only ever reached per instance.
    sql.SQL("""
    CREATE TABLE {schema}.history (
        id bigserial NOT NULL,
        instance_id text COLLATE "C" NOT NULL,
        job_name text NOT NULL,
        trig text NOT NULL,
        outcome text NOT NULL,
        attempt integer NOT NULL,
        started_at double precision NOT NULL,
        finished_at double precision NOT NULL,
        error text
    )"""),
    sql.SQL("CREATE INDEX history_instance ON {schema}.history (instance_id, id)"),
    sql.SQL("ALTER TABLE {schema}.outbox RENAME TO events"),
    sql.SQL("ALTER SEQUENCE {schema}.outbox_id_seq RENAME TO events_id_seq"),
    # Events still undelivered become the first of the log, stamped with the upgrade
    # (numbered by the first reader, as every event is).
    sql.SQL("ALTER TABLE {schema}.events ADD COLUMN at double precision"),
    sql.SQL("UPDATE {schema}.events SET at = extract(epoch FROM now())"),
    sql.SQL("ALTER TABLE {schema}.events ALTER COLUMN at SET NOT NULL"),
    # Events are read by their number (``seq``, given by ``sequence_events``), and
    # numbered in id order: a commit writes one index entry per event, in the index
    # of the unnumbered, as it wrote one in the primary key before.
    sql.SQL("ALTER TABLE {schema}.events DROP CONSTRAINT outbox_pkey"),
    sql.SQL("ALTER TABLE {schema}.events ADD COLUMN seq bigint"),
    sql.SQL("CREATE UNIQUE INDEX events_seq ON {schema}.events (seq) WHERE seq IS NOT NULL"),
    sql.SQL("CREATE INDEX events_unsequenced ON {schema}.events (id) WHERE seq IS NULL"),
    sql.SQL("CREATE TABLE {schema}.sequencer (last bigint NOT NULL)"),
    sql.SQL("INSERT INTO {schema}.sequencer (last) VALUES (0)"),
    sql.SQL("""
    CREATE TABLE {schema}.cursors (
        name text COLLATE "C" PRIMARY KEY,
        position bigint NOT NULL
    )"""),
    sql.SQL("""
    CREATE TABLE {schema}.workers (
        worker_id text COLLATE "C" PRIMARY KEY,
        host text NOT NULL,
        pid integer NOT NULL,
        started_at double precision NOT NULL,
        last_seen_at double precision NOT NULL,
        concurrency integer NOT NULL,
        running integer NOT NULL,
        jobs text NOT NULL
    )"""),
    sql.SQL("DROP INDEX {schema}.instances_kind"),
    sql.SQL("""
    DROP FUNCTION {schema}.commit_one(
        text, text, bool, text, text, text, text, text, float8, float8, float8, text, bool,
        text, text
    )"""),
    COMMIT_ONE_WITH_HISTORY,
    SEQUENCE_EVENTS,
)

# ``{schema}`` is replaced by the quoted schema name. Times are epoch seconds
# (float8) handed in by the caller; ids sort by code point (COLLATE "C") as they
# do in the other back-ends. ``state``/``meta`` stay TEXT: JSON must come back
# byte for byte, which jsonb would not do.
MIGRATIONS: tuple[tuple[sql.SQL | Function, ...], ...] = (
    (
        sql.SQL("""
        CREATE TABLE {schema}.instances (
            instance_id text COLLATE "C" PRIMARY KEY,
            kind text NOT NULL,
            job_name text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            state text,
            meta text NOT NULL,
            alarm_at double precision,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL
        )"""),
        sql.SQL("""
        CREATE INDEX instances_alarm_at ON {schema}.instances (alarm_at)
            WHERE alarm_at IS NOT NULL"""),
        sql.SQL("CREATE INDEX instances_job_name ON {schema}.instances (job_name, instance_id)"),
        sql.SQL("CREATE INDEX instances_kind ON {schema}.instances (kind, instance_id)"),
        sql.SQL("""
        CREATE TABLE {schema}.claims (
            instance_id text COLLATE "C" PRIMARY KEY,
            owner text NOT NULL,
            token text NOT NULL,
            expires_at double precision NOT NULL
        )"""),
        sql.SQL("""
        CREATE TABLE {schema}.idempotency_keys (
            instance_id text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            PRIMARY KEY (instance_id, key)
        )"""),
        sql.SQL("""
        CREATE TABLE {schema}.dead_letters (
            instance_id text COLLATE "C" PRIMARY KEY,
            job_name text NOT NULL,
            state text,
            error text NOT NULL,
            attempts integer NOT NULL,
            at double precision NOT NULL
        )"""),
        sql.SQL("CREATE TABLE {schema}.outbox (id bigserial PRIMARY KEY, event text NOT NULL)"),
    ),
    (CLAIM_MANY,),
    (CLAIM_MANY_UNFLUSHED,),
    (CLAIM_MANY_BY_KEY,),
    (CLAIM_ONE,),
    (COMMIT_ONE,),
    # Claims of a due alarm that expired in a row without a release (SEMANTICS 14).
    (
        sql.SQL(
            "ALTER TABLE {schema}.claims "
            "ADD COLUMN IF NOT EXISTS recoveries integer NOT NULL DEFAULT 0"
        ),
    ),
    OPERATING,
)

LATEST = len(MIGRATIONS)


def lock_key(schema: str) -> int:
    """The advisory lock of ``schema``'s migrations: a stable signed 64-bit hash."""
    digest = hashlib.blake2b(f"durable_jobs:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def migrate(conn: psycopg.Connection[TupleRow], schema: str, *, to: int = LATEST) -> int:
    """Bring ``schema`` up to version ``to`` (``LATEST``, unless testing an
    upgrade); return the version found before.

    A schema already up to date is only read, so a role without the right to
    create schemas or tables can use one its DBA prepared.
    """
    name = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        found = _version(conn, schema, name)
        if found > LATEST:
            raise StorageError(
                f"schema {schema!r} is at version {found}, newer than this durable-jobs "
                f"knows ({LATEST}); upgrade durable-jobs or use another schema"
            )
        if found == 0:
            _bootstrap(conn, schema, name)
        for version in range(found + 1, to + 1):
            _apply(conn, name, version)
    return found


def _version(conn: psycopg.Connection[TupleRow], schema: str, name: sql.Identifier) -> int:
    exists = conn.execute(
        "SELECT FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'schema_version'",
        (schema,),
    )
    if exists.fetchone() is None:
        return 0
    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(name)
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _bootstrap(conn: psycopg.Connection[TupleRow], schema: str, name: sql.Identifier) -> None:
    found = conn.execute("SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,))
    if found.fetchone() is None:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
    conn.execute(
        sql.SQL("CREATE TABLE {}.schema_version (version integer PRIMARY KEY)").format(name)
    )


def _apply(conn: psycopg.Connection[TupleRow], name: sql.Identifier, version: int) -> None:
    for statement in MIGRATIONS[version - 1]:
        if isinstance(statement, Function):
            body = statement.body.format(schema=name).as_string(conn)
            head = statement.head.format(schema=name)
            conn.execute(
                sql.SQL("CREATE OR REPLACE FUNCTION {} AS {}").format(head, sql.Literal(body))
            )
        else:
            conn.execute(statement.format(schema=name))
    insert = sql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(name)
    conn.execute(insert, (version,))
