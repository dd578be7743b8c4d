"""Validation at the edge (SEMANTICS 6), on every back-end: nested values, unknown
keys, deep nesting, non-finite numbers, naive times, damaged stored rows, ids with
invisible characters, storage options and schema names, logging settings, and a
Debounce batch growing past the payload limit."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Continuous,
    ContinuousStatus,
    Debounce,
    DebounceStatus,
    DefinitionError,
    DurableJobs,
    Task,
    TaskStatus,
    ValidationError,
    create_durable_jobs,
    every,
)
from durable_jobs.adapters.records import Commit
from durable_jobs.runtime.clock import FakeClock
from durable_jobs.testing import TestRuntime
from tests.conftest import BACKENDS, DSN, drop_schema, fresh_schema, needs_postgres
from tests.support import T0, captured_logs

MIB = 1024 * 1024


@attrs.frozen
class Inner:
    n: int


@attrs.frozen
class Outer:
    inner: Inner
    items: tuple[Inner, ...] = ()
    when: datetime | None = None
    ratio: float = 0.0
    extra: list[Any] = attrs.Factory(list)
    labels: dict[str, Any] = attrs.Factory(dict)


@attrs.frozen
class Ping:
    n: int = 0


@attrs.frozen
class Node:
    child: Node | None = None


@attrs.frozen
class Blob:
    data: str = ""


@attrs.frozen
class Profile:
    name: str
    age: int = 0


def keep(ctx: Any) -> None:
    return None


def grow(ctx: Any) -> Blob:
    return Blob(ctx.state.data + ctx.event.data)


outer = Continuous(state=Outer, schedule=every("1 hour"), execute=keep)
pings = Continuous(state=Ping, schedule=every("1 hour"), execute=keep)
nodes = Continuous(state=Node, schedule=every("1 hour"), execute=keep)
profiles = Continuous(state=Profile, schedule=every("1 hour"), execute=keep)
tasks = Task(state=Ping, event=Outer, on_event=lambda e, ctx: None, execute=keep)
batches = Debounce(event=Blob, state=Blob, on_event=grow, execute=keep, flush_after=60)
JOBS = {
    "outer": outer,
    "pings": pings,
    "nodes": nodes,
    "profiles": profiles,
    "tasks": tasks,
    "batches": batches,
}


@pytest.fixture(params=BACKENDS)
async def make_runtime(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., TestRuntime]]:
    """Test runtimes on one fresh store of each back-end (several share it)."""
    schema = fresh_schema() if request.param == "postgres" else None
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'jobs.db'}"}.get(
        request.param, DSN
    )
    made: list[TestRuntime] = []

    def make(jobs: dict[str, Any] = JOBS) -> TestRuntime:
        clock = FakeClock(T0)
        options = {"schema": schema} if schema else {}
        app = DurableJobs(jobs, storage=url, clock=clock, heartbeat=False, storage_options=options)
        made.append(TestRuntime(app, clock))
        return made[-1]

    yield make
    for rt in made:
        await rt.aclose()
    if schema is not None:
        drop_schema(schema)


async def assert_nothing_written(rt: TestRuntime) -> None:
    assert await rt.app.storage.list_instances() == []
    assert rt.events == []


# -- 1. nested values, naive times, non-finite numbers --------------------------------


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (Outer(Inner("x")), r"expected int @ \$\.inner\.n"),
        ({"inner": {"n": "x"}}, r"expected int @ \$\.inner\.n"),
        ({"inner": Inner("x")}, r"expected int @ \$\.inner\.n"),
        (Outer({"n": "x"}), r"expected int @ \$\.inner\.n"),  # type: ignore[arg-type]
        (Outer("x"), r"expected an object of Inner, got str @ \$\.inner"),  # type: ignore[arg-type]
        (Outer(Inner(1), items=(Inner(1), 5)), r"got int @ \$\.items\[1\]"),  # type: ignore[arg-type]
        ({"inner": [1]}, r"expected an object of Inner, got list @ \$\.inner"),
    ],
    ids=[
        "instance",
        "mapping",
        "mapping-of-instance",
        "mapping-in-instance",
        "string-in-instance",
        "int-in-tuple",
        "list-for-object",
    ],
)
async def test_a_wrong_nested_value_is_refused_naming_the_field(
    make_runtime: Callable[..., TestRuntime], bad: Any, named: str
) -> None:
    rt = make_runtime()
    with pytest.raises(ValidationError, match=named):
        await rt.client.continuous(outer).start("o", bad)
    with pytest.raises(ValidationError, match=named):
        await rt.client.task(tasks).send("t", bad)
    await assert_nothing_written(rt)


async def test_nested_instances_and_mappings_mix_freely(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    await rt.client.continuous(outer).start("o", {"inner": Inner(1), "items": [{"n": 2}]})
    assert await rt.client.continuous(outer).get_state("o") == Outer(Inner(1), (Inner(2),))


@pytest.mark.parametrize(
    "naive", [datetime(2026, 1, 1), "2026-01-01T00:00:00"], ids=["datetime", "iso-text"]
)
async def test_a_naive_datetime_is_refused_naming_the_field(
    make_runtime: Callable[..., TestRuntime], naive: Any
) -> None:
    rt = make_runtime()
    with pytest.raises(ValidationError, match=r"naive datetime.*time zone.* @ \$\.when"):
        await rt.client.continuous(outer).start("o", {"inner": {"n": 1}, "when": naive})
    with pytest.raises(ValidationError, match=r"naive datetime.* @ \$\.when"):
        await rt.client.continuous(outer).start("o", Outer(Inner(1), when=naive))
    await assert_nothing_written(rt)


async def test_an_aware_datetime_is_kept_with_its_offset(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    when = datetime(2026, 1, 1, 9, tzinfo=UTC)
    await rt.client.continuous(outer).start("o", Outer(Inner(1), when=when))
    assert (await rt.client.continuous(outer).get_state("o")).when == when


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("state", "path"),
    [
        (lambda x: {"inner": {"n": 1}, "ratio": x}, r"\$\.ratio"),
        (lambda x: Outer(Inner(1), ratio=x), r"\$\.ratio"),
        (lambda x: Outer(Inner(1), extra=[1, [2, x]]), r"\$\.extra\[1\]\[1\]"),
        (lambda x: {"inner": {"n": 1}, "labels": {"a": {"b": x}}}, r"\$\.labels\.a\.b"),
    ],
    ids=["float-field", "instance", "list-any", "dict-any"],
)
async def test_nan_and_infinity_are_refused_naming_the_field(
    make_runtime: Callable[..., TestRuntime],
    state: Callable[[float], Any],
    path: str,
    number: float,
) -> None:
    rt = make_runtime()
    with pytest.raises(ValidationError, match=rf"not a number JSON can hold @ {path}$"):
        await rt.client.continuous(outer).start("o", state(number))
    await assert_nothing_written(rt)


# -- 2. unknown keys --------------------------------------------------------------------


async def test_unknown_keys_are_refused_not_trimmed(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    with pytest.raises(ValidationError, match=r"extra fields found \(nn\) @ \$"):
        await rt.client.continuous(pings).start("p", {"nn": 5})
    with pytest.raises(ValidationError, match=r"extra fields found \(m\) @ \$\.inner"):
        await rt.client.continuous(outer).start("o", {"inner": {"n": 1, "m": 2}})
    await assert_nothing_written(rt)


# -- 3. depth ---------------------------------------------------------------------------


def nested_list(depth: int) -> list[Any]:
    top: list[Any] = []
    for _ in range(depth - 1):
        top = [top]
    return top


def nested_dict(depth: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    for _ in range(depth - 1):
        top = {"k": top}
    return top


def nested_node(depth: int) -> Node:
    node = Node()
    for _ in range(depth - 1):
        node = Node(node)
    return node


def cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("job", "state"),
    [
        (outer, {"inner": {"n": 1}, "extra": nested_list(1000)}),
        (outer, {"inner": {"n": 1}, "labels": nested_dict(1000)}),
        (outer, {"inner": {"n": 1}, "extra": cycle()}),
        (nodes, nested_node(1000)),
    ],
    ids=["list-any", "dict-any", "cycle", "recursive-class"],
)
async def test_input_nested_too_deep_is_refused(
    make_runtime: Callable[..., TestRuntime], job: Any, state: Any
) -> None:
    rt = make_runtime()
    with pytest.raises(ValidationError, match=r"nested more than 64 levels deep @ \$\..*…"):
        await rt.client.continuous(job).start("d", state)
    await assert_nothing_written(rt)


async def test_input_nested_to_the_limit_is_kept(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    deep = Outer(Inner(1), extra=nested_list(63))  # 64 levels with the state itself
    await rt.client.continuous(outer).start("d", deep)
    assert await rt.client.continuous(outer).get_state("d") == deep
    await rt.client.continuous(nodes).start("n", nested_node(64))
    assert await rt.client.continuous(nodes).get_state("n") == nested_node(64)


# -- 4. stored data that does not fit ---------------------------------------------------


async def damage(rt: TestRuntime, instance_id: str, **changes: str) -> Any:
    """Rewrite a stored row through the storage protocol, as a bad deploy or a hand
    edit would; returns the damaged record."""
    storage, now = rt.app.storage, T0.timestamp()
    record = await storage.read(instance_id)
    claim = await storage.claim(instance_id, "someone-else", now, now + 1)
    assert record is not None
    assert claim is not None
    damaged = attrs.evolve(record, **changes)
    assert await storage.commit(Commit(claim=claim, record=damaged))
    return damaged


DAMAGED_STATES = [
    pytest.param("[1,2]", "expected an object of Profile, got list", id="list"),
    pytest.param('"hello"', "expected an object of Profile, got str", id="string"),
    pytest.param("7", "expected an object of Profile, got int", id="number"),
    pytest.param('{"name":"Ada","age":36,"zz":1}', r"extra fields found \(zz\)", id="unknown"),
    pytest.param('{"age":36}', r"required field missing @ \$\.name", id="missing"),
    pytest.param('{"name":"Ada","age":NaN}', "NaN is not a number", id="nan"),
    pytest.param('{"name":"Ada","age":"36"}', r"expected int @ \$\.age", id="wrong-type"),
    pytest.param('{"name":', "JSONDecodeError", id="not-json"),
    pytest.param("[" * 70 + "]" * 70, "nested more than 64", id="deep"),
]

DAMAGED_COUNTERS = [
    pytest.param("not json", "JSONDecodeError|Expecting value", id="not-json"),
    pytest.param("[1]", "expected a JSON object, got list", id="list"),
    pytest.param('"x"', "expected a JSON object, got str", id="string"),
    pytest.param("{}", "missing run_count, attempt", id="empty"),
    pytest.param('{"run_count":"2","attempt":1}', "run_count must be int, got str", id="type"),
    pytest.param('{"run_count":true,"attempt":1}', "run_count must be int, got bool", id="bool"),
]


@pytest.mark.parametrize(("stored", "named"), DAMAGED_STATES)
async def test_a_stored_state_that_does_not_fit_raises_and_is_left_untouched(
    make_runtime: Callable[..., TestRuntime], stored: str, named: str
) -> None:
    rt = make_runtime()
    handle = rt.client.continuous(profiles)
    await handle.start("p", Profile("Ada", 36))
    damaged = await damage(rt, "continuous:profiles:p", state=stored)

    with pytest.raises(ValidationError, match=rf"stored state of profiles .*{named}"):
        await handle.get_state("p")
    with pytest.raises(ValidationError, match="left unchanged in storage"):
        await handle.trigger("p")
    assert await handle.status("p") == ContinuousStatus("running", 0, T0)  # counters are fine
    assert await rt.app.storage.read("continuous:profiles:p") == damaged


@pytest.mark.parametrize(("stored", "named"), DAMAGED_COUNTERS)
async def test_stored_counters_that_do_not_fit_raise_naming_the_instance(
    make_runtime: Callable[..., TestRuntime], stored: str, named: str
) -> None:
    rt = make_runtime()
    handle = rt.client.continuous(profiles)
    await handle.start("p", Profile("Ada", 36))
    damaged = await damage(rt, "continuous:profiles:p", meta=stored)

    message = rf"stored counters of continuous:profiles:p are corrupt: ({named})"
    with pytest.raises(ValidationError, match=message):
        await handle.status("p")
    with pytest.raises(ValidationError, match=message):
        await handle.get_state("p")
    assert await rt.app.storage.read("continuous:profiles:p") == damaged


async def test_damaged_task_and_debounce_counters_are_reported_too(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    await rt.client.task(tasks).send("t", Outer(Inner(1)))
    await rt.client.debounce(batches).add("b", Blob("x"))
    await damage(rt, "task:tasks:t", meta='{"event_count":1,"attempt":1}')
    await damage(rt, "debounce:batches:b", meta='{"event_count":1,"attempt":1}')
    with pytest.raises(ValidationError, match="task:tasks:t are corrupt: missing execute_count"):
        await rt.client.task(tasks).status("t")
    with pytest.raises(ValidationError, match="missing started_at, flush_reason"):
        await rt.client.debounce(batches).status("b")


def sqlite_row(path: Path, instance_id: str) -> tuple[Any, ...]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT * FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
    assert row is not None
    return tuple(row)


def sqlite_write(path: Path, instance_id: str, column: str, value: str) -> None:
    assert column in ("state", "meta")
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            f"UPDATE instances SET {column} = ? WHERE instance_id = ?",
            (value, instance_id),
        )


def sqlite_app(path: Path) -> DurableJobs:
    return create_durable_jobs(JOBS, storage=f"sqlite:///{path}", clock=FakeClock(T0))


@pytest.mark.parametrize(
    ("column", "stored", "named"),
    [
        ("state", "[1,2]", "expected an object of Profile, got list"),
        ("state", '"hello"', "expected an object of Profile, got str"),
        ("state", '{"name":"Ada","age":36,"zz":1}', r"extra fields found \(zz\)"),
        ("meta", "{oops", "counters of continuous:profiles:p are corrupt"),
        ("meta", "{}", "counters of continuous:profiles:p are corrupt: missing run_count"),
    ],
    ids=["state-list", "state-string", "state-unknown-key", "meta-not-json", "meta-empty"],
)
async def test_a_row_damaged_in_the_sqlite_file_raises_and_keeps_its_bytes(
    tmp_path: Path, column: str, stored: str, named: str
) -> None:
    path = tmp_path / "jobs.db"
    app = sqlite_app(path)
    await app.client.continuous(profiles).start("p", Profile("Ada", 36))
    await app.aclose()
    sqlite_write(path, "continuous:profiles:p", column, stored)
    before = sqlite_row(path, "continuous:profiles:p")

    app = sqlite_app(path)
    handle = app.client.continuous(profiles)
    try:
        with pytest.raises(ValidationError, match=named):
            await handle.get_state("p")
        if column == "meta":
            with pytest.raises(ValidationError, match=named):
                await handle.status("p")
        for _ in range(2):  # a write call fails alike, and does not leave it claimed
            with pytest.raises(ValidationError, match=named):
                await handle.trigger("p")
    finally:
        await app.aclose()
    assert sqlite_row(path, "continuous:profiles:p") == before


# -- 5. ids with invisible characters ---------------------------------------------------

INVISIBLE = [
    pytest.param("a\u202eb", "U+202E (right-to-left override)", id="bidi-override"),
    pytest.param("a\u2066b", "U+2066 (left-to-right isolate)", id="bidi-isolate"),
    pytest.param("a\u200db", "U+200D (zero width joiner)", id="zero-width-joiner"),
    pytest.param("a\u200bb", "U+200B (zero width space)", id="zero-width-space"),
    pytest.param("\ufeffa", "U+FEFF (zero width no-break space)", id="byte-order-mark"),
    pytest.param("a\u00adb", "U+00AD (soft hyphen)", id="soft-hyphen"),
    pytest.param("a\u2028b", "line separator U+2028", id="line-separator"),
]


@pytest.mark.parametrize(("bad_id", "named"), INVISIBLE)
async def test_an_id_with_an_invisible_character_is_refused(
    make_runtime: Callable[..., TestRuntime], bad_id: str, named: str
) -> None:
    rt = make_runtime()
    with pytest.raises(ValidationError, match="invalid id") as caught:
        await rt.client.continuous(pings).start(bad_id, Ping())
    assert named in str(caught.value)
    with pytest.raises(ValidationError, match="invalid idempotency key"):
        await rt.client.debounce(batches).add("b", Blob("x"), idempotency_key=bad_id)
    await assert_nothing_written(rt)


async def test_ids_with_visible_non_ascii_text_are_still_fine(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    for good in ["שלום", "a\u00a0b", "\N{GRINNING FACE}", "e\u0301"]:  # RTL, NBSP, emoji, accent
        await rt.client.continuous(pings).start(good, Ping())
    assert len(await rt.app.storage.list_instances()) == 4


# -- 6, 7. storage options --------------------------------------------------------------


def test_an_unknown_storage_option_is_a_type_error_naming_it(backend_url: Any) -> None:
    url, options = backend_url
    with pytest.raises(TypeError, match=r"unknown storage options 'bogus', 'zz' for \w+:"):
        create_durable_jobs(JOBS, storage=url, bogus=1, zz=2, **options)


def test_the_error_lists_the_options_a_back_end_takes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="'bogus' for memory://: it takes none"):
        create_durable_jobs(JOBS, storage="memory://", bogus=1)
    with pytest.raises(TypeError, match="for sqlite:///: it takes synchronous, busy_timeout"):
        create_durable_jobs(JOBS, storage=f"sqlite:///{tmp_path / 'x.db'}", busytimeout=1)
    with pytest.raises(TypeError, match="for postgresql://: it takes schema, min_size"):
        create_durable_jobs(JOBS, storage=DSN, shema="x")
    create_durable_jobs(JOBS, storage=f"sqlite:///{tmp_path / 'x.db'}", busy_timeout=1)


# An address nothing answers at: the check happens before any connection.
NOWHERE = "postgresql://nobody@192.0.2.1:1/none"


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ("a%b", "must not contain '%'"),
        ("%s", "must not contain '%'"),
        ("information_schema", "system schema"),
        ("pg_catalog", "system schema"),
        ("pg_temp", "system schema"),
        ("PG_toast", "system schema"),
    ],
)
def test_a_postgres_schema_with_percent_or_a_system_name_is_refused(
    schema: str, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        create_durable_jobs(JOBS, storage=NOWHERE, schema=schema)


@needs_postgres
@pytest.mark.postgres
@pytest.mark.parametrize("schema", ["jobs-ünï", "my_pg_jobs", "Information"])
async def test_a_schema_of_ones_own_is_accepted(schema: str) -> None:
    app = create_durable_jobs(JOBS, storage=DSN, schema=schema, clock=FakeClock(T0))
    try:
        await app.client.continuous(pings).start("p", Ping(1))
        assert await app.client.continuous(pings).get_state("p") == Ping(1)
    finally:
        await app.aclose()
        drop_schema(schema)


# -- 8. logging -------------------------------------------------------------------------


def failing(ctx: Any) -> None:
    ctx.log.error("user.error")
    raise RuntimeError("fails")


@pytest.mark.parametrize("setting", [25, 0, 60, -1, 10.0, "info", []])
def test_logging_takes_only_a_standard_level(setting: Any) -> None:
    with pytest.raises(DefinitionError, match=f"logging must be .* got {re.escape(repr(setting))}"):
        Continuous(state=Ping, schedule=every(60), execute=keep, logging=setting)


async def test_logging_none_logs_nothing(make_runtime: Callable[..., TestRuntime]) -> None:
    quiet = Continuous(state=Ping, schedule=every(60), execute=failing, logging=None)
    errors_only = Continuous(state=Ping, schedule=every(60), execute=failing, logging=False)
    with captured_logs() as logs:
        rt = make_runtime({"quiet": quiet, "errors_only": errors_only})
        await rt.client.continuous(quiet).start("a", Ping())
        await rt.client.continuous(errors_only).start("a", Ping())
        await rt.advance(0)
    assert sorted((e["job_name"], e["event"]) for e in logs) == [
        ("errors_only", "job.failed"),
        ("errors_only", "user.error"),
    ]
    assert [e.type for e in rt.events].count("job.failed") == 2  # telemetry is not logging


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.CRITICAL])
async def test_every_standard_level_serves_calls(
    make_runtime: Callable[..., TestRuntime], level: int
) -> None:
    job = Continuous(state=Ping, schedule=every(60), execute=keep, logging=level)
    rt = make_runtime({"j": job})
    await rt.client.continuous(job).start("a", Ping())
    assert await rt.advance(0) == 1


# -- 9. a Debounce batch growing over the payload limit ---------------------------------


async def test_an_add_that_would_take_a_batch_over_the_limit_is_refused(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    handle = rt.client.debounce(batches)
    half = "x" * (MIB // 2)
    await handle.add("b", Blob(half))
    before = list(rt.events)
    with pytest.raises(ValidationError) as caught:
        await handle.add("b", Blob(half), idempotency_key="second")
    message = str(caught.value)
    for part in ("debounce:batches:b", f"{MIB + 11} bytes", f"limit of {MIB}", "1 events"):
        assert part in message
    assert "flush it first, lower max_events" in message
    assert await handle.status("b") == DebounceStatus("debouncing", 1, T0.replace(minute=1))
    assert await handle.get_state("b") == Blob(half)
    assert rt.events == before

    assert (await handle.flush("b")).flushed
    assert (await handle.add("b", Blob(half), idempotency_key="second")).event_count == 1


async def test_a_first_event_whose_state_is_over_the_limit_says_so(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    big = Debounce(
        event=Blob,
        state=Blob,
        on_event=lambda ctx: Blob(ctx.event.data * 3),
        execute=keep,
        flush_after=60,
    )
    rt = make_runtime({"big": big})
    with pytest.raises(ValidationError, match="keeps its 0 events: keep less per event"):
        await rt.client.debounce(big).add("b", Blob("x" * (MIB // 2)))
    assert await rt.client.debounce(big).status("b") == DebounceStatus("not_found")
    assert rt.events == []


async def test_a_task_is_not_found_after_a_refused_send(
    make_runtime: Callable[..., TestRuntime],
) -> None:
    rt = make_runtime()
    with pytest.raises(ValidationError):
        await rt.client.task(tasks).send("t", {"inner": {"n": 1}, "zz": 0})
    assert await rt.client.task(tasks).status("t") == TaskStatus("not_found")
