"""What only the PostgreSQL back-end has to prove: several processes on one schema
(two stores, two pools), dropped connections, notifications, schema names."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from durable_jobs.adapters.postgres import PostgresStore
from durable_jobs.adapters.postgres._schema import LATEST, migrate
from durable_jobs.adapters.postgres.store import events_lock_key
from durable_jobs.adapters.records import Claim, Commit, DeadLetterRecord, OutboxEntry
from durable_jobs.errors import StorageError
from durable_jobs.testing.conformance import LEASE, T0, claim, put, record, run

from .conftest import DSN, drop_schema, fresh_schema, needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres]

Make = Callable[..., PostgresStore]


@pytest.fixture
def schema() -> Iterator[str]:
    name = fresh_schema()
    yield name
    drop_schema(name)


@pytest.fixture
async def make(schema: str) -> AsyncIterator[Make]:
    """Unopened stores on ``schema`` (unless told otherwise), closed after the test."""
    made: list[PostgresStore] = []

    def make(dsn: str = DSN, **options: Any) -> PostgresStore:
        options.setdefault("schema", schema)
        store = PostgresStore(dsn, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


async def opened(*stores: PostgresStore) -> None:
    await asyncio.gather(*(store.open() for store in stores))


def query(text: sql.Composable, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(DSN, autocommit=True) as conn:
        cursor = conn.execute(text, params)
        return cursor.fetchall() if cursor.description else []


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail if it does not within ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def listening(store: PostgresStore) -> None:
    """Let ``store`` listen, and take the wake-up it fires once it does."""
    await store.wait_for_alarm(0)  # the first wait starts the listener
    await until(lambda: store.listening)
    await store.wait_for_alarm(0)


async def woken(store: PostgresStore, trigger: Callable[[], Any], within: float = 5.0) -> None:
    """``store.wait_for_alarm(60)`` must return within ``within`` s of ``await trigger()``."""
    await listening(store)  # so that only ``trigger`` can end the wait early
    waiting = asyncio.ensure_future(store.wait_for_alarm(60))
    await asyncio.sleep(0)  # let the waiter register before the trigger
    await trigger()
    await asyncio.wait_for(waiting, within)


# -- several stores on one schema ----------------------------------------------


async def test_concurrent_opens_all_succeed_and_migrate_once(make: Make, schema: str) -> None:
    stores = [make() for _ in range(8)]
    await opened(*stores)
    await stores[0].open()  # and again: open() is idempotent
    versions = query(
        sql.SQL("SELECT version FROM {} ORDER BY version").format(
            sql.Identifier(schema, "schema_version")
        )
    )
    assert [v for (v,) in versions] == list(range(1, len(versions) + 1))
    for n, store in enumerate(stores):
        await put(store, record(f"task:job:{n}"))
    assert len(await stores[-1].list_instances()) == len(stores)


def schema_at(schema: str, version: int) -> None:
    """Make ``schema`` as a release whose latest migration was ``version`` made it."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        migrate(conn, schema, to=version)


def schema_version(schema: str) -> int:
    table = sql.Identifier(schema, "schema_version")
    return int(query(sql.SQL("SELECT max(version) FROM {}").format(table))[0][0])


async def test_a_schema_of_the_first_version_is_migrated_on_open(make: Make, schema: str) -> None:
    """A schema made by a release before ``claim_many`` keeps its data and gains it."""
    schema_at(schema, 1)
    query(
        sql.SQL(
            "INSERT INTO {} (instance_id, kind, job_name, key, state, meta, created_at, "
            "updated_at) VALUES ('task:job:a', 'task', 'job', 'a', '\"kept\"', '{{}}', 0, 0)"
        ).format(sql.Identifier(schema, "instances"))
    )
    upgraded = make()
    await upgraded.open()
    taken = await claim(upgraded, "task:job:a")
    assert taken.record is not None
    assert taken.record.state == '"kept"'
    assert schema_version(schema) == LATEST


async def test_a_schema_of_version_7_keeps_its_data_in_version_8(make: Make, schema: str) -> None:
    """The instances, dead letters and undelivered outbox events of a schema made
    before the event log are kept; old dead letters get their kind from their id."""
    schema_at(schema, 7)
    table = partial(sql.Identifier, schema)
    query(
        sql.SQL(
            "INSERT INTO {} (instance_id, kind, job_name, key, state, meta, alarm_at, "
            "created_at, updated_at) VALUES ('debounce:hooks:a', 'debounce', 'hooks', 'a', "
            "'\"s\"', '{{\"n\":1}}', %s, 1, 2)"
        ).format(table("instances")),
        (T0,),
    )
    query(
        sql.SQL(
            "INSERT INTO {} (instance_id, job_name, state, error, attempts, at) "
            "VALUES ('debounce:hooks:a', 'hooks', '\"s\"', 'E: x', 3, %s)"
        ).format(table("dead_letters")),
        (T0,),
    )
    query(sql.SQL("INSERT INTO {} (event) VALUES ('\"old\"')").format(table("outbox")))

    upgraded = make()
    await upgraded.open()
    assert schema_version(schema) == LATEST == 8
    kept = await upgraded.read("debounce:hooks:a")
    assert kept is not None
    assert (kept.state, kept.meta, kept.alarm_at) == ('"s"', '{"n":1}', T0)
    assert await upgraded.list_instances(kind="debounce", alarmed=True) == [kept]
    dead = DeadLetterRecord(
        instance_id="debounce:hooks:a",
        job_name="hooks",
        kind="debounce",
        state='"s"',
        meta=None,
        error="E: x",
        traceback="",
        attempts=3,
        at=T0,
    )
    assert await upgraded.list_dead_letters(job_name="hooks") == [dead]
    [old] = await upgraded.read_events(0, 10)
    assert old.event == '"old"'
    await put(upgraded, record("task:job:b"), events=('"new"',))
    assert [e.event for e in await upgraded.read_events(old.id, 10)] == ['"new"']


def synchronous_commit_after(statement: sql.Composable) -> str:
    """``synchronous_commit`` in the transaction of ``statement``, once it ran: ``off``
    means the transaction's commit will not wait for the WAL flush. Read in the
    transaction itself, so other sessions of the server cannot change the answer."""
    with psycopg.connect(DSN) as conn:
        conn.execute(statement, (f"task:job:{uuid.uuid4().hex}", uuid.uuid4().hex))
        (setting,) = conn.execute("SHOW synchronous_commit").fetchone() or ("",)
        conn.rollback()
    return str(setting)


async def test_a_claim_does_not_wait_for_the_disk_and_a_commit_does(
    make: Make, schema: str
) -> None:
    await make().open()
    claims = sql.Identifier(schema, "claims")
    plain = sql.SQL("INSERT INTO {} VALUES (%s, 'w', %s, 0)").format(claims)
    assert synchronous_commit_after(plain) == "on"
    claim_many = sql.SQL(
        "SELECT FROM {}(ARRAY[%s], ARRAY[%s], ARRAY['w'], ARRAY[1e12::float8], 0)"
    ).format(sql.Identifier(schema, "claim_many"))
    assert synchronous_commit_after(claim_many) == "off"
    claim_one = sql.SQL("SELECT FROM {}(%s, %s, 'w', 1e12, 0)").format(
        sql.Identifier(schema, "claim_one")
    )
    assert synchronous_commit_after(claim_one) == "off"


async def test_a_claim_retried_with_its_token_is_taken_again(make: Make, schema: str) -> None:
    """A claim whose answer was lost is sent again with the same token: it must find
    the claim its first try took, alone or in a batch, and no other token may."""
    store = make()
    await store.open()
    await put(store, record("task:job:a", state='"s"'))
    one = sql.SQL("SELECT r_token, r_state FROM {}(%s, %s, 'w', 1e12, 0)").format(
        sql.Identifier(schema, "claim_one")
    )
    many = sql.SQL(
        "SELECT r_token, r_state FROM {}(ARRAY[%s], ARRAY[%s], ARRAY['w'], ARRAY[1e12::float8], 0)"
    ).format(sql.Identifier(schema, "claim_many"))
    for statement, token in ((one, "t1"), (many, "t2")):
        query(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, "claims")))
        assert query(statement, ("task:job:a", token)) == [(token, '"s"')]
        assert query(statement, ("task:job:a", token)) == [(token, '"s"')]
        assert query(statement, ("task:job:a", "other")) == []
    assert query(one, ("task:job:none", "t3")) == [("t3", None)]  # taken, no instance yet


async def test_a_claim_is_exclusive_across_stores(make: Make) -> None:
    a, b = make(), make()
    await opened(a, b)
    tries = [s.claim("task:job:x", f"w{n}", T0, T0 + LEASE) for n, s in enumerate([a, b] * 10)]
    won = [c for c in await asyncio.gather(*tries) if c is not None]
    assert len(won) == 1
    assert await a.claim("task:job:x", "late", T0 + LEASE - 1, T0 + 2 * LEASE) is None
    assert await b.claim("task:job:x", "late", T0 + LEASE - 1, T0 + 2 * LEASE) is None
    assert await b.claim("task:job:x", "late", T0 + LEASE, T0 + 2 * LEASE) is not None


async def test_a_stale_owner_in_another_store_cannot_commit(make: Make) -> None:
    a, b = make(), make()
    await opened(a, b)
    stale = await claim(a, "task:job:a")
    fresh = await claim(b, "task:job:a", now=T0 + LEASE + 1)
    refused = Commit(claim=stale, record=record(), idempotency_key="k", events=('"stale"',))
    assert not await a.commit(refused)
    assert await b.read("task:job:a") is None
    assert not await b.has_idempotency_key("task:job:a", "k")
    assert await b.read_events(0, 10) == []
    assert await b.commit(Commit(claim=fresh, record=record(state='"fresh"')))
    stored = await a.read("task:job:a")
    assert stored is not None
    assert stored.state == '"fresh"'


async def test_a_takeover_carries_every_commit_fenced_in_before_it(make: Make) -> None:
    """Race a slow owner's commits against another store taking its expired claims
    (one by one and as due alarms): each taker must see exactly the commits that won."""
    a, b = make(), make()
    await opened(a, b)
    ids = [f"task:job:{n}" for n in range(40)]
    await asyncio.gather(*(put(a, record(i, alarm_at=T0, state='"initial"')) for i in ids))
    held = await asyncio.gather(*(claim(a, i) for i in ids))
    late = T0 + LEASE + 1

    async def commit(c: Claim) -> bool:
        rec = record(c.instance_id, alarm_at=T0, state='"a"')
        return await a.commit(Commit(claim=c, record=rec))

    async def take_one(instance_id: str) -> list[Claim]:
        taken = await b.claim(instance_id, "w2", late, late + LEASE)
        return [taken] if taken is not None else []

    takers = [take_one(i) for i in ids[::2]] + [b.claim_due(late, 100, "w2", late + LEASE)]
    outcomes = await asyncio.gather(*(commit(c) for c in held), *takers)
    committed = dict(zip(ids, outcomes[: len(ids)], strict=True))
    taken = [c for found in outcomes[len(ids) :] for c in found]
    assert {c.instance_id for c in taken} >= {i for i, ok in committed.items() if not ok}
    for c in taken:
        assert c.record is not None
        assert c.record.state == ('"a"' if committed[c.instance_id] else '"initial"')


async def test_claims_asked_together_are_each_fenced_and_read(make: Make) -> None:
    a = make()
    b = make()
    await opened(a, b)
    for n in range(3):
        await put(b, record(f"task:job:{n}", state=f'"{n}"'))
    await claim(b, "task:job:1")  # held elsewhere
    ids = [f"task:job:{n % 5}" for n in range(20)]  # each instance asked for four times
    taken = await asyncio.gather(*(a.claim(i, "w", T0, T0 + LEASE) for i in ids))
    won = {c.instance_id: c for c in taken if c is not None}
    assert sorted(c.instance_id for c in taken if c is not None) == sorted(won)  # one each
    assert set(won) == {"task:job:0", "task:job:2", "task:job:3", "task:job:4"}
    assert {i: c.record and c.record.state for i, c in won.items()} == {
        "task:job:0": '"0"',
        "task:job:2": '"2"',
        "task:job:3": None,
        "task:job:4": None,
    }


async def test_claim_due_splits_due_alarms_between_stores(make: Make) -> None:
    a, b = make(), make()
    await opened(a, b)
    ids = {f"task:job:{n}" for n in range(40)}
    for n, instance_id in enumerate(sorted(ids)):
        await put(a, record(instance_id, alarm_at=T0 + n))
    now = T0 + 100
    mine, theirs = await asyncio.gather(
        a.claim_due(now, 25, "w1", now + LEASE), b.claim_due(now, 25, "w2", now + LEASE)
    )
    got_a, got_b = {c.instance_id for c in mine}, {c.instance_id for c in theirs}
    assert not got_a & got_b
    assert got_a | got_b == ids


async def test_one_store_serves_several_event_loops(make: Make) -> None:
    store = make(poll_interval=60)
    await store.open()
    rec = record(alarm_at=T0)

    def elsewhere() -> Any:
        async def run() -> Any:
            await put(store, rec)
            return await store.read(rec.instance_id)

        return asyncio.run(run())

    async def from_another_loop() -> None:
        assert await asyncio.to_thread(elsewhere) == rec

    await woken(store, from_another_loop)
    assert await store.read(rec.instance_id) == rec


# -- faults --------------------------------------------------------------------


def backends(application_name: str) -> list[int]:
    found = query(
        sql.SQL("SELECT pid FROM pg_stat_activity WHERE application_name = %s"),
        (application_name,),
    )
    return [pid for (pid,) in found]


def listening_backends(application_name: str) -> list[int]:
    found = query(
        sql.SQL(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN%%'"
        ),
        (application_name,),
    )
    return [pid for (pid,) in found]


async def test_terminated_connections_are_survived(make: Make) -> None:
    app = f"dj_kill_{uuid.uuid4().hex[:8]}"
    a = make(make_conninfo(DSN, application_name=app), min_size=2, max_size=2, poll_interval=60)
    b = make()
    await opened(a, b)
    await listening(a)
    rec = record(alarm_at=T0)
    await put(a, rec)
    await until(lambda: len(backends(app)) >= 3)  # two pooled, one listening
    killed = set(backends(app))
    query(
        sql.SQL("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid"), (list(killed),)
    )
    await until(lambda: not killed & set(backends(app)))

    assert await a.read(rec.instance_id) == rec
    await put(a, record("task:job:b"))
    await until(lambda: bool(listening_backends(app)))
    assert not killed & set(listening_backends(app))
    for n in range(3):  # a reconnect may wake once on its own; three in a row need NOTIFY
        await woken(a, lambda n=n: put(b, record(f"task:job:n{n}", alarm_at=T0)))


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-statement", "pipelined"])
async def test_one_bad_commit_does_not_sink_the_others(make: Make, pipelined: bool) -> None:
    """Commits queued together share a transaction; each is fenced and fails alone.
    Usual commits (events included) share one statement; those deleting a dead letter
    are pipelined."""
    a = make()
    b = make()
    await opened(a, b)
    held = [await claim(a, f"task:job:{n}") for n in range(20)]
    await claim(b, "task:job:7", now=T0 + LEASE + 1)  # 7 goes stale
    bad = record("task:job:13", state='"nul \x00"')  # PostgreSQL text refuses NUL
    commits = [
        Commit(
            claim=c,
            record=bad if c.instance_id == bad.instance_id else record(c.instance_id),
            idempotency_key=f"key-{c.instance_id}",
            events=(f'"{c.instance_id}"',),
            delete_dead_letter=pipelined,
        )
        for c in held
    ]
    outcomes = dict(
        zip(
            [c.claim.instance_id for c in commits],
            await asyncio.gather(*(a.commit(c) for c in commits), return_exceptions=True),
            strict=True,
        )
    )
    failed = outcomes.pop(bad.instance_id)
    assert isinstance(failed, StorageError)
    assert not failed.retryable
    assert outcomes.pop("task:job:7") is False
    assert set(outcomes.values()) == {True}
    written = {r.instance_id for r in await a.list_instances()}
    assert written == set(outcomes)
    keyed = [i for i in held_ids(held) if await a.has_idempotency_key(i, f"key-{i}")]
    assert set(keyed) == set(outcomes)
    events = {e.event.strip('"') for e in await a.read_events(0, 100)}
    assert events == set(outcomes)


def held_ids(claims: list[Claim]) -> list[str]:
    return [c.instance_id for c in claims]


async def test_a_closed_store_refuses_calls_and_reopens(make: Make) -> None:
    store = make()
    await store.open()
    await put(store, record())
    await store.close()
    with pytest.raises(StorageError, match="not open"):
        await store.read("task:job:a")
    await store.open()
    assert await store.read("task:job:a") is not None


# -- notifications -------------------------------------------------------------


async def test_a_store_listens_from_its_first_wait_for_an_alarm(make: Make) -> None:
    app = f"dj_listen_{uuid.uuid4().hex[:8]}"
    calls = make(make_conninfo(DSN, application_name=app))
    worker = make(make_conninfo(DSN, application_name=f"{app}_w"), poll_interval=60)
    await opened(calls, worker)
    await put(calls, record(alarm_at=T0))
    taken = await claim(calls, "task:job:b")
    await calls.commit(Commit(claim=taken, record=record("task:job:b", alarm_at=T0)))
    assert await calls.claim_due(T0 + 1, 10, "w", T0 + LEASE)
    # Calls alone (a web server's) hold no listening connection.
    assert not calls.listening
    assert listening_backends(app) == []
    assert not worker.listening
    # The first wait listens, and ends once it does: what was sent before is unknown.
    await asyncio.wait_for(worker.wait_for_alarm(60), 5)
    assert worker.listening
    assert len(listening_backends(f"{app}_w")) == 1
    await woken(worker, lambda: put(calls, record("task:job:c", alarm_at=T0)))


async def test_a_commit_in_one_store_wakes_the_other(make: Make) -> None:
    a = make(poll_interval=60)  # so only a notification can end the wait early
    b = make()
    await opened(a, b)
    await woken(a, lambda: put(b, record(alarm_at=T0 + 3600)))


async def test_a_release_in_one_store_wakes_the_other(make: Make) -> None:
    a = make(poll_interval=60)
    b = make()
    await opened(a, b)
    rec = record(alarm_at=T0)
    taken = await claim(b, rec.instance_id)
    # The commit sets an alarm, so it notifies too: let that wake a first.
    await woken(a, lambda: b.commit(Commit(claim=taken, record=rec, release=False)))
    await woken(a, lambda: b.release(taken))


async def test_a_commit_releasing_an_instance_with_an_alarm_wakes_the_other(make: Make) -> None:
    a = make(poll_interval=60)
    b = make()
    await opened(a, b)
    await woken(a, lambda: put(b, record(alarm_at=T0)))  # one transaction, one notification
    taken = await claim(b, "task:job:a")
    # No record in the commit: only the release makes the stored alarm deliverable.
    await woken(a, lambda: b.commit(Commit(claim=taken, release=True)))


# -- schema names --------------------------------------------------------------


def hostile_name(kind: str, canary: str) -> str:
    tag = uuid.uuid4().hex[:6]
    if kind == "quotes":
        return f"dj{tag}\"'; DROP SCHEMA {canary} CASCADE; --"
    return f"dj_{tag}" + "ünï" * 7 + "x" * 19  # 63 bytes, the longest: a hashed channel


@pytest.mark.parametrize("kind", ["quotes", "longest"])
async def test_a_hostile_schema_name_is_quoted(make: Make, schema: str, kind: str) -> None:
    canary = schema  # the fixture drops it
    query(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(canary)))
    name = hostile_name(kind, canary)
    assert len(name.encode()) <= 63
    a, b = make(schema=name, poll_interval=60), make(schema=name)
    try:
        await opened(a, b)
        rec = record(alarm_at=T0)
        await woken(a, lambda: put(b, rec))
        assert await a.read(rec.instance_id) == rec
        tables = query(
            sql.SQL("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1"), (name,)
        )
        assert ("instances",) in tables
        canaries = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %s")
        assert query(canaries, (canary,)) == [(1,)]
    finally:
        await asyncio.gather(a.close(), b.close())
        drop_schema(name)


async def test_schemas_keep_their_data_apart(make: Make) -> None:
    other = fresh_schema()
    try:
        a, b = make(), make(schema=other)
        await opened(a, b)
        await put(a, record("task:job:mine"))
        assert await b.read("task:job:mine") is None
        assert await b.list_instances() == []
        assert [r.instance_id for r in await a.list_instances()] == ["task:job:mine"]
    finally:
        await b.close()
        drop_schema(other)


def test_a_schema_name_postgres_would_cut_is_refused() -> None:
    with pytest.raises(ValueError, match="63 bytes"):
        PostgresStore(DSN, schema="x" * 64)


# -- batches ----------------------------------------------------------------------


def transactions(schema: str, table: str) -> int:
    """How many transactions wrote the rows of ``table``: the rows a statement writes
    share its transaction's id."""
    counted = sql.SQL("SELECT count(DISTINCT xmin::text) FROM {}").format(
        sql.Identifier(schema, table)
    )
    return int(query(counted)[0][0])


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-statement", "pipelined"])
async def test_claims_and_commits_queued_together_go_out_together(
    make: Make, schema: str, pipelined: bool
) -> None:
    store = make()
    await store.open()
    claims = await asyncio.gather(*(claim(store, f"task:job:{n}") for n in range(30)))
    assert transactions(schema, "claims") <= 2  # 30 calls made at once: one batch, two at most
    commits = [
        Commit(claim=c, record=record(c.instance_id), events=('"e"',), delete_dead_letter=pipelined)
        for c in claims
    ]
    applied = await asyncio.gather(*(store.commit(c) for c in commits))
    assert applied == [True] * 30
    assert transactions(schema, "instances") <= 2
    assert transactions(schema, "events") <= 2


async def test_a_loop_that_ends_closes_its_connections(make: Make) -> None:
    app = f"dj_loop_{uuid.uuid4().hex[:8]}"
    store = make(make_conninfo(DSN, application_name=app), min_size=1, max_size=2)
    await store.open()
    await listening(store)
    await until(lambda: len(backends(app)) >= 2)  # one pooled, one listening
    before = set(backends(app))

    def elsewhere() -> None:
        asyncio.run(put(store, record("task:job:elsewhere")))

    await asyncio.to_thread(elsewhere)
    gc.collect()  # the loop asyncio.run made is gone: so are its connections
    await until(lambda: set(backends(app)) <= before)
    assert await store.read("task:job:elsewhere") is not None


async def test_a_shutdown_cancelling_every_task_leaves_the_loop_working(make: Make) -> None:
    """Every task of the loop cancelled, as a shutdown does, while a commit is queued
    and the batch that would take it has not begun: later calls still go through."""
    store = make()
    await store.open()
    first = await claim(store, "task:job:a")
    committing = asyncio.ensure_future(
        store.commit(Commit(claim=first, record=record(first.instance_id)))
    )
    await asyncio.sleep(0)  # the commit is queued; the batch that takes it has not begun
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    assert committing.cancelled()
    second = await claim(store, "task:job:b")
    commit = Commit(claim=second, record=record(second.instance_id))
    assert await asyncio.wait_for(store.commit(commit), 10)


async def test_closing_the_store_lets_queued_calls_go_and_leaves_no_connection(
    make: Make, schema: str
) -> None:
    """Closed while a batch of commits waits on a row lock and more queue behind it:
    the batch ends, the rest fail, and nothing connects again."""
    app = f"dj_close_{uuid.uuid4().hex[:8]}"
    store = make(make_conninfo(DSN, application_name=app))
    await store.open()
    held = [await claim(store, f"task:job:{n}") for n in range(20)]
    await store.commit(Commit(claim=held[0], record=record(held[0].instance_id), release=False))
    with psycopg.connect(DSN) as other:
        other.execute(
            sql.SQL("SELECT FROM {} WHERE instance_id = 'task:job:0' FOR UPDATE").format(
                sql.Identifier(schema, "instances")
            )
        )
        first = asyncio.ensure_future(
            store.commit(Commit(claim=held[0], record=record(held[0].instance_id)))
        )
        await until(lambda: bool(waiting_on_a_lock(app)))  # that batch is out, and blocked
        behind = [
            asyncio.ensure_future(store.commit(Commit(claim=c, record=record(c.instance_id))))
            for c in held[1:]
        ]
        await asyncio.sleep(0)
        await store.close()
        other.rollback()
    outcomes = await asyncio.wait_for(asyncio.gather(first, *behind, return_exceptions=True), 10)
    assert outcomes[0] is True
    assert all(isinstance(o, StorageError) and "closed" in str(o) for o in outcomes[1:])
    await until(lambda: not backends(app))


def waiting_on_a_lock(application_name: str) -> list[int]:
    found = query(
        sql.SQL(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'"
        ),
        (application_name,),
    )
    return [pid for (pid,) in found]


# -- history and the event log ---------------------------------------------------


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-statement", "pipelined"])
async def test_history_written_together_is_kept_per_instance(
    make: Make, schema: str, pipelined: bool
) -> None:
    """Commits queued together write and trim their history in one go, each instance
    to its own limit, and a stale one writes none."""
    store = make()
    await store.open()
    ids = [f"task:job:{n}" for n in range(10)]
    for turn in range(3):
        claims = await asyncio.gather(*(claim(store, i) for i in ids))
        if turn == 2:  # the last of them is taken over: its commit is refused
            await store.claim(ids[-1], "w2", T0 + LEASE + 1, T0 + 3 * LEASE)
        commits = [
            Commit(
                claim=c,
                record=record(c.instance_id),
                history=(run(c.instance_id, n=2 * turn), run(c.instance_id, n=2 * turn + 1)),
                history_limit=3,
                history_reset=turn == 2 and c.instance_id == ids[0],
                events=('"e"',),
                delete_dead_letter=pipelined,
            )
            for c in claims
        ]
        applied = await asyncio.gather(*(store.commit(c) for c in commits))
        assert applied == [True] * 9 + [turn < 2]
    assert transactions(schema, "history") <= 2 * 3  # a batch or two per turn
    started = {i: [r.started_at - T0 for r in await store.read_history(i, limit=10)] for i in ids}
    assert started.pop(ids[0]) == [5, 4]  # reset, then the turn's two rows
    assert started.pop(ids[-1]) == [3, 2, 1]  # the refused turn wrote nothing
    assert set(map(tuple, started.values())) == {(5, 4, 3)}


def add_event(conn: psycopg.Connection[Any], schema: str, event: str) -> None:
    """Insert ``event`` as a commit does, in ``conn``'s transaction."""
    table = sql.Identifier(schema, "events")
    conn.execute(sql.SQL("INSERT INTO {} (at, event) VALUES (0, %s)").format(table), (event,))


async def test_a_commit_with_events_takes_no_lock_of_the_event_log(make: Make, schema: str) -> None:
    """The lock that numbering events takes holds back no commit: with it held (and an
    event inserted) a commit with events still goes through."""
    store = make()
    await store.open()
    taken = await claim(store, "task:job:b")
    with psycopg.connect(DSN) as slow:
        slow.execute("SELECT pg_advisory_xact_lock(%s)", (events_lock_key(schema),))
        add_event(slow, schema, '"a"')
        done = store.commit(Commit(claim=taken, record=record("task:job:b"), events=('"b"',)))
        assert await asyncio.wait_for(done, 10)
        slow.commit()
    assert [e.event for e in await store.read_events(0, 10)] == ['"a"', '"b"']


async def test_a_transaction_writing_events_held_open_blocks_no_commit(
    make: Make, schema: str
) -> None:
    """Commits with events take no lock: one held open before its COMMIT (its event's
    id taken) holds back no other. Its event is read once committed, after those a
    reader already saw: numbers are given in the order events become visible."""
    store = make()
    await store.open()
    taken = await claim(store, "task:job:b")
    with psycopg.connect(DSN) as slow:
        add_event(slow, schema, '"a"')  # the lower id, taken first
        done = store.commit(Commit(claim=taken, record=record("task:job:b"), events=('"b"',)))
        assert await asyncio.wait_for(done, 10)
        [b] = await store.read_events(0, 10)
        assert b.event == '"b"'
        assert await store.last_event_id() == b.id
        slow.commit()
    [a] = await store.read_events(b.id, 10)
    assert a.event == '"a"'
    assert a.id > b.id
    assert await store.last_event_id() == a.id
    assert [e.event for e in await store.read_events(0, 10)] == ['"b"', '"a"']


async def test_trimming_leaves_events_not_yet_numbered_and_never_reuses_a_number(
    make: Make, schema: str
) -> None:
    store = make()
    await store.open()
    await put(store, record("task:job:a"), events=('"a"',))
    [a] = await store.read_events(0, 10)
    with psycopg.connect(DSN) as conn:
        add_event(conn, schema, '"b"')  # committed, not yet read by anyone
    assert await store.trim_events(keep=0, before=T0 + 1) == 2  # "b" is numbered first
    assert await store.read_events(0, 10) == []
    last = await store.last_event_id()
    assert last > a.id
    await put(store, record("task:job:c"), events=('"c"',))
    [c] = await store.read_events(0, 10)
    assert c.id == last + 1


async def test_a_reader_following_the_event_log_misses_nothing(make: Make, schema: str) -> None:
    """Stores commit events at once, and transactions that took their ids early commit
    late, while a reader follows the log from the last id it saw: it must end up with
    every event, once, in id order, each instance's in the order they were committed."""
    writers = [make(max_size=4), make(max_size=4)]
    reader = make()
    await opened(*writers, reader)
    seen: list[OutboxEntry] = []
    written = asyncio.Event()

    async def follow() -> None:
        after = 0
        while True:
            last_look = written.is_set()
            batch = await reader.read_events(after, 1000)
            seen.extend(batch)
            if batch:
                after = batch[-1].id
            elif last_look:
                return

    async def write(store: PostgresStore, worker: int) -> None:
        for n in range(25):
            rec = record(f"task:job:{worker}")
            taken = await claim(store, rec.instance_id)
            events = (f'"{worker}-{n}"', f'"{worker}-{n}+"')
            assert await store.commit(Commit(claim=taken, record=rec, events=events))

    def late(n: int) -> None:  # ids taken, then commits held back behind others
        with psycopg.connect(DSN) as conn:
            for step in range(n):
                add_event(conn, schema, f'"late-{step}"')
                asyncio.run_coroutine_threadsafe(reader.last_event_id(), loop).result()
                conn.commit()

    loop = asyncio.get_running_loop()
    following = asyncio.ensure_future(follow())
    await asyncio.gather(
        *(write(writers[w % 2], w) for w in range(16)), asyncio.to_thread(late, 20)
    )
    written.set()
    await asyncio.wait_for(following, 30)
    everything = await reader.read_events(0, 10_000)
    assert len(everything) == 16 * 25 * 2 + 20
    assert seen == everything
    assert [e.id for e in everything] == sorted({e.id for e in everything})
    per_instance: dict[str, list[str]] = {}
    for entry in everything:
        name, _, rest = entry.event.strip('"').rpartition("-")
        per_instance.setdefault(name, []).append(rest)
    for worker in range(16):
        assert per_instance.pop(str(worker)) == [
            part for n in range(25) for part in (str(n), f"{n}+")
        ]
    assert per_instance == {"late": [str(step) for step in range(20)]}


async def test_events_committed_in_one_store_wake_a_wait_in_the_other(make: Make) -> None:
    a = make(poll_interval=60)  # so only a notification can end the wait early
    b = make()
    await opened(a, b)
    await a.wait_for_events(0, 0)  # the first wait starts the listener
    await until(lambda: a.listening)
    waiting = asyncio.ensure_future(a.wait_for_events(0, 60))
    await asyncio.sleep(0)
    await put(b, record("task:job:quiet"))  # no events: the wait goes on
    await put(b, record(), events=('"e"',))
    await asyncio.wait_for(waiting, 5)
    assert [e.event for e in await a.read_events(0, 10)] == ['"e"']
