"""The SQL of the PostgreSQL back-end on the server: the plans its statements get.

These read the statements themselves (a unit test of ``_queries``), and the functions
the schema holds; what the store does with them is tested through its protocols.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from durable_jobs.adapters.postgres import PostgresStore
from durable_jobs.adapters.postgres._queries import Queries

from .conftest import DSN, drop_schema, fresh_schema, needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres]


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema, migrated by a store's ``open()``; dropped after the test."""
    name = fresh_schema()
    store = PostgresStore(DSN, schema=name)

    async def migrate() -> None:
        await store.open()
        await store.close()

    asyncio.run(migrate())
    yield name
    drop_schema(name)


def query(text: sql.Composable, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DSN, autocommit=True) as conn:
        cursor = conn.execute(text, params)
        return cursor.fetchall() if cursor.description else []


@pytest.mark.parametrize("statement", ["commit_many", "commit_many_history"])
def test_a_commit_looks_its_rows_up_by_key_in_any_plan(schema: str, statement: str) -> None:
    """The plan a prepared commit keeps may date from when the tables were small; it
    must still find the rows of the batch through their keys, never by reading a
    whole table, which would make every commit cost as much as the table is large."""
    ids = [f"task:job:{n:05d}" for n in range(2_000)]
    tables = {t: sql.Identifier(schema, t) for t in ("instances", "claims")}
    query(
        sql.SQL(
            "INSERT INTO {} (instance_id, kind, job_name, key, state, meta, created_at, "
            "updated_at) SELECT id, 'task', 'job', id, '{{}}', '{{}}', 0, 0 "
            "FROM unnest(%s::text[]) id"
        ).format(tables["instances"]),
        (ids,),
    )
    query(
        sql.SQL(
            "INSERT INTO {} (instance_id, owner, token, expires_at) "
            "SELECT id, 'w', id, 1e12 FROM unnest(%s::text[]) id"
        ).format(tables["claims"]),
        (ids,),
    )
    numbers: dict[bytes, int] = {}

    def placeholder(name: re.Match[bytes]) -> bytes:
        return b"$%d" % numbers.setdefault(name[1], len(numbers) + 1)

    prepared = re.sub(rb"%\((\w+)\)[bs]", placeholder, getattr(Queries(schema), statement))
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(b"PREPARE commit_many AS " + prepared)
        conn.execute("SET plan_cache_mode = force_generic_plan")  # the plan a connection keeps
        nulls = sql.SQL(", ").join([sql.NULL] * len(numbers))
        explain = sql.SQL("EXPLAIN EXECUTE commit_many({})").format(nulls)
        plan = "\n".join(row[0] for row in conn.execute(explain))
    assert "Index Scan using instances_pkey" in plan
    if statement == "commit_many_history":  # the history is trimmed by key, even empty
        assert "using history_instance" in plan
    assert "Seq Scan" not in plan, plan


def test_claims_and_commits_look_their_rows_up_by_key_in_any_plan(schema: str) -> None:
    """The functions keep the plans of their statements for the session, maybe made
    while the tables were small: they must still reach rows through their keys."""
    ids = [f"task:job:{n:05d}" for n in range(2_000)]
    for table, columns in (
        ("instances", "id, 'task', 'job', id, '{{}}', '{{}}', 1e12, 0, 0"),
        ("claims", "id, 'w', id, 0"),
        ("history", "row_number() OVER (), id, 'job', 'alarm', 'ok', 1, 0, 0, NULL"),
        ("events", "row_number() OVER (), '{{}}', 0, row_number() OVER ()"),  # all read
    ):
        query(
            sql.SQL("INSERT INTO {} SELECT " + columns + " FROM unnest(%s::text[]) id").format(
                sql.Identifier(schema, table)
            ),
            (ids,),
        )
    plans: list[str] = []
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        try:
            conn.execute("LOAD 'auto_explain'")  # the plans of statements inside functions
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("auto_explain needs a superuser to load it")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "client_min_messages = log",
            "plan_cache_mode = force_generic_plan",
        ):
            conn.execute("SET " + setting)
        claim_many = sql.SQL(
            "SELECT * FROM {}(ARRAY[%s], ARRAY['new'], ARRAY['w'], ARRAY[1e12::float8], 1)"
        ).format(sql.Identifier(schema, "claim_many"))
        (row,) = conn.execute(claim_many, (ids[7],)).fetchall()
        assert row[:2] == ("new", ids[7])  # the expired claim was taken, the instance read
        claim_one = sql.SQL("SELECT * FROM {}(%s, 'new', 'w', 1e12, 1)").format(
            sql.Identifier(schema, "claim_one")
        )
        assert conn.execute(claim_one, (ids[8],)).fetchall()[0][:2] == ("new", ids[8])
        commit_one = sql.SQL(
            "SELECT * FROM {}(%s, 'new', true, 'task', 'job', %s, NULL, '{{}}', 1e12, 0, 1, "
            "'key', true, 'channel', 'origin', 0, ARRAY['job'], ARRAY['alarm'], ARRAY['ok'], "
            "ARRAY[1], ARRAY[0::float8], ARRAY[1::float8], ARRAY[NULL], 1, ARRAY['{{}}'])"
        ).format(sql.Identifier(schema, "commit_one"))
        assert conn.execute(commit_one, (ids[8], ids[8])).fetchall() == [(ids[8],)]
        query(sql.SQL("UPDATE {} SET last = 2000").format(sql.Identifier(schema, "sequencer")))
        sequence = sql.SQL("SELECT {}(1)").format(sql.Identifier(schema, "sequence_events"))
        assert conn.execute(sequence).fetchall() == [(2001,)]  # the event committed above
    nested = "\n".join(plan for plan in plans if "Scan" in plan)
    assert "Index Scan using claims_pkey" in nested, nested
    assert "Index Scan using instances_pkey" in nested, nested
    assert "using history_instance" in nested, nested  # the history trimmed by key
    assert "using events_unsequenced" in nested, nested  # only the events not numbered
    scanned = {name.split(".")[-1] for name in re.findall(r"Seq Scan on (\S+)", nested)}
    assert scanned <= {"sequencer"}, nested  # its one row


def test_events_are_read_and_trimmed_through_their_numbers(schema: str) -> None:
    """Reading the log from a number and trimming its oldest read an index from
    there: never every event kept."""
    query(
        sql.SQL(
            "INSERT INTO {} (at, event, seq) SELECT n, '{{}}', n FROM generate_series(1, 20000) n"
        ).format(sql.Identifier(schema, "events"))
    )
    query(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, "events")))
    q = Queries(schema)
    with psycopg.connect(DSN, autocommit=True) as conn:
        for statement, params in (
            (q.read_events, {"after": 100, "limit": 1000}),
            (q.trim_events, {"keep": 1000, "before": 50.0, "bound": 10_000}),
        ):
            plan = "\n".join(row[0] for row in conn.execute(b"EXPLAIN " + statement, params))
            assert "using events_seq" in plan, plan
            assert "Seq Scan" not in plan, plan


def test_listings_page_through_an_index(schema: str) -> None:
    """Each page of a listing, filtered or not, is read through an index in id order
    from where the last page ended: never a scan of every instance or dead letter."""
    ids = [f"{'task' if n % 4 else 'debounce'}:job{n % 50}:{n:06d}" for n in range(20_000)]
    for table, columns in (
        (
            "instances",
            "id, split_part(id, ':', 1), split_part(id, ':', 2), id, '{{}}', '{{}}', "
            "CASE WHEN substr(id, length(id) - 1, 1) < '5' THEN 1e9 END, 0, 0",
        ),
        (
            "dead_letters",
            "id, split_part(id, ':', 2), NULL, 'E: x', 3, 0, split_part(id, ':', 1), NULL, ''",
        ),
    ):
        query(
            sql.SQL("INSERT INTO {} SELECT " + columns + " FROM unnest(%s::text[]) id").format(
                sql.Identifier(schema, table)
            ),
            (ids,),
        )
        query(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))
    q = Queries(schema)
    page = {"job_name": "job7", "kind": "debounce", "after": ids[100], "limit": 50}
    listings = {
        "instances_job_name": q.list_instances(job_name=True, kind=False, alarmed=True, after=True),
        "instances_pkey": q.list_instances(job_name=False, kind=True, alarmed=False, after=True),
        "dead_letters_job_name": q.list_dead_letters(job_name=True, after=True),
    }
    with psycopg.connect(DSN, autocommit=True) as conn:
        for index, listing in listings.items():
            plan = "\n".join(row[0] for row in conn.execute(b"EXPLAIN " + listing, page))
            assert re.search(rf"Index (Only )?Scan using {index}\b", plan), plan
            assert "Seq Scan" not in plan, plan
