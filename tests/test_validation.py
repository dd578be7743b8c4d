"""Validation at the edge (SEMANTICS 6): inputs, events, states and ids are checked
when written; bad ones raise ``ValidationError`` naming what was wrong and nothing is
written. Stored data that no longer fits its schema is reported and left as it is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Continuous,
    ContinuousContext,
    ContinuousStatus,
    Debounce,
    DebounceStatus,
    DurableJobs,
    ExecutionError,
    JobNotFoundError,
    Task,
    TaskContext,
    TaskState,
    TaskStatus,
    TriggerResult,
    ValidationError,
    every,
)
from durable_jobs.adapters import MemoryStore
from durable_jobs.testing import TestRuntime, create_test_runtime
from tests.support import T0, ManualClock, of_type, types

MIB = 1024 * 1024


@attrs.frozen
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float = 0.0


@attrs.frozen
class Blob:
    data: str = ""


@attrs.frozen
class Click:
    page: str


@attrs.frozen
class Clicks:
    pages: tuple[str, ...] = ()


@attrs.frozen
class Open:
    name: str


@attrs.frozen
class Close:
    pass


@attrs.frozen
class Stranger:
    name: str


def keep_state(ctx: Any) -> None:
    return None


def fold(ctx: Any) -> Clicks:
    return Clicks((*ctx.state.pages, ctx.event.page))


def on_event(event: Open | Close, ctx: TaskContext[Tokens]) -> None:
    if isinstance(event, Open):
        ctx.set_state(Tokens(event.name, "r"))
        ctx.schedule("1 hour")


refresher = Continuous(state=Tokens, schedule=every("1 hour"), execute=keep_state)
blobs = Continuous(state=Blob, schedule=every("1 hour"), execute=keep_state)
clicks = Debounce(event=Click, state=Clicks, on_event=fold, execute=keep_state, flush_after=60)
doors = Task(state=Tokens, event=Open | Close, on_event=on_event, execute=keep_state)
JOBS = {"refresher": refresher, "blobs": blobs, "clicks": clicks, "doors": doors}


def runtime() -> TestRuntime:
    return create_test_runtime(JOBS, now=T0)


# -- inputs, events, states -----------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (Stranger("x"), "expected Tokens, got Stranger"),
        ("a token", "expected Tokens, got str"),
        (None, "expected Tokens, got NoneType"),
        (Tokens(1, "r"), "$.access_token"),
        (Tokens("a", "r", expires_at="soon"), "$.expires_at"),
        ({"access_token": "a", "refresh_token": 7}, "$.refresh_token"),
        ({"access_token": "a", "refresh_token": True}, "$.refresh_token"),
    ],
)
async def test_a_start_input_of_the_wrong_type_is_refused_and_nothing_written(
    bad: Any, named: str
) -> None:
    rt = runtime()
    with pytest.raises(ValidationError) as caught:
        await rt.client.continuous(refresher).start("u1", bad)
    assert named in str(caught.value)
    assert await rt.client.continuous(refresher).status("u1") == ContinuousStatus("not_found")
    assert rt.events == []


async def test_a_missing_required_field_is_named_in_the_message() -> None:
    rt = runtime()
    with pytest.raises(ValidationError, match="required field missing") as caught:
        await rt.client.continuous(refresher).start("u1", {"refresh_token": "r"})
    assert "access_token" in str(caught.value)
    assert "refresh_token" not in str(caught.value)
    assert await rt.client.continuous(refresher).get_state("u1") is None


async def test_a_mapping_of_the_fields_is_accepted_as_the_state() -> None:
    rt = runtime()
    await rt.client.continuous(refresher).start("u1", {"access_token": "a", "refresh_token": "r"})
    assert await rt.client.continuous(refresher).get_state("u1") == Tokens("a", "r")


async def test_a_debounce_event_of_the_wrong_type_leaves_the_batch_unchanged() -> None:
    rt = runtime()
    handle = rt.client.debounce(clicks)
    with pytest.raises(ValidationError, match="expected Click, got Stranger"):
        await handle.add("s", Stranger("x"))
    assert await handle.status("s") == DebounceStatus("not_found")

    await handle.add("s", Click("/a"))
    before = list(rt.events)
    with pytest.raises(ValidationError, match=r"\$\.page"):
        await handle.add("s", Click(42))
    assert await handle.status("s") == DebounceStatus("debouncing", 1, T0.replace(minute=1))
    assert await handle.get_state("s") == Clicks(("/a",))
    assert rt.events == before


async def test_a_debounce_reducer_returning_the_wrong_state_type_writes_nothing() -> None:
    job = Debounce(
        event=Click,
        state=Clicks,
        on_event=lambda ctx: ctx.event,  # a Click, not Clicks
        execute=keep_state,
        flush_after=60,
    )
    rt = create_test_runtime({"bad": job}, now=T0)
    with pytest.raises(ValidationError, match="expected Clicks, got Click"):
        await rt.client.debounce(job).add("s", Click("/a"))
    assert await rt.client.debounce(job).status("s") == DebounceStatus("not_found")
    assert rt.events == []


async def test_an_event_outside_the_task_union_is_refused_and_nothing_written() -> None:
    rt = runtime()
    handle = rt.client.task(doors)
    with pytest.raises(ValidationError, match=r"expected Open \| Close, got Stranger"):
        await handle.send("d", Stranger("x"))
    assert await handle.status("d") == TaskStatus("not_found")
    assert rt.events == []

    await handle.send("d", Open("front"))
    before = list(rt.events)
    with pytest.raises(ValidationError):
        await handle.send("d", Stranger("x"))
    with pytest.raises(ValidationError, match=r"expected Open \| Close, got dict"):
        await handle.send("d", {"name": "back"})  # a mapping cannot say which member it is
    assert await handle.status("d") == TaskStatus("active", T0.replace(hour=1), 1)
    assert await handle.get_state("d") == TaskState(Tokens("front", "r"), T0.replace(hour=1))
    assert rt.events == before


async def test_a_wrong_state_set_by_execute_fails_that_run_and_keeps_the_state() -> None:
    def execute(ctx: ContinuousContext[Tokens]) -> None:
        ctx.set_state({"access_token": None, "refresh_token": "r"})

    job = Continuous(state=Tokens, schedule=every("1 hour"), execute=execute)
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.continuous(job).start("u1", Tokens("a", "r"))
    await rt.advance(0)
    assert await rt.client.continuous(job).get_state("u1") == Tokens("a", "r")
    [failed] = of_type(rt.events, "job.failed")
    assert failed.error.startswith("ValidationError:")
    assert "$.access_token" in failed.error


async def test_a_wrong_state_set_by_on_event_fails_the_send_and_writes_nothing() -> None:
    job = Task(
        state=Tokens,
        event=Open,
        on_event=lambda event, ctx: ctx.set_state(Blob("x")),
        execute=keep_state,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    with pytest.raises(ExecutionError) as caught:
        await rt.client.task(job).send("a", Open("x"))
    assert isinstance(caught.value.__cause__, ValidationError)
    assert await rt.client.task(job).status("a") == TaskStatus("not_found")
    assert rt.events == []


# -- job names ----------------------------------------------------------------------------


def test_an_unknown_job_name_is_job_not_found() -> None:
    rt = runtime()
    with pytest.raises(JobNotFoundError, match=r"'nope'.*registered: blobs, clicks, doors"):
        rt.client.continuous("nope")
    with pytest.raises(JobNotFoundError):
        rt.client.debounce("nope")
    with pytest.raises(JobNotFoundError):
        rt.client.task("nope")


def test_a_job_of_another_kind_is_job_not_found() -> None:
    rt = runtime()
    with pytest.raises(JobNotFoundError, match="'refresher' is a continuous job, not a task"):
        rt.client.task("refresher")
    with pytest.raises(JobNotFoundError, match="continuous job, not a debounce"):
        rt.client.debounce(refresher)


def test_an_unregistered_definition_is_job_not_found() -> None:
    rt = runtime()
    other = Continuous(state=Tokens, schedule=every("1 hour"), execute=keep_state)
    with pytest.raises(JobNotFoundError, match="unregistered Continuous"):
        rt.client.continuous(other)


# -- ids ----------------------------------------------------------------------------------

BAD_IDS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 256, id="256-ascii-bytes"),
    pytest.param("\N{GRINNING FACE}" * 64, id="256-utf8-bytes"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\nb", id="newline"),
    pytest.param("a\x1bb", id="escape"),
    pytest.param("a\x7fb", id="delete"),
    pytest.param("a\x85b", id="c1-control"),
    pytest.param("a\u202eb", id="bidi-override"),
    pytest.param("a\u200db", id="zero-width-joiner"),
    pytest.param("a\u2028b", id="line-separator"),
    pytest.param(42, id="not-a-string"),
    pytest.param(None, id="none"),
]

Call = Callable[[Any, Any], Awaitable[Any]]
CALLS: list[Any] = [
    pytest.param(lambda c, i: c.continuous(refresher).start(i, Tokens("a", "r")), id="start"),
    pytest.param(lambda c, i: c.continuous(refresher).trigger(i), id="c.trigger"),
    pytest.param(lambda c, i: c.continuous(refresher).status(i), id="c.status"),
    pytest.param(lambda c, i: c.continuous(refresher).get_state(i), id="c.get_state"),
    pytest.param(lambda c, i: c.continuous(refresher).terminate(i), id="c.terminate"),
    pytest.param(lambda c, i: c.debounce(clicks).add(i, Click("/")), id="add"),
    pytest.param(lambda c, i: c.debounce(clicks).flush(i), id="flush"),
    pytest.param(lambda c, i: c.debounce(clicks).clear(i), id="clear"),
    pytest.param(lambda c, i: c.debounce(clicks).status(i), id="d.status"),
    pytest.param(lambda c, i: c.debounce(clicks).get_state(i), id="d.get_state"),
    pytest.param(lambda c, i: c.task(doors).send(i, Open("x")), id="send"),
    pytest.param(lambda c, i: c.task(doors).trigger(i), id="t.trigger"),
    pytest.param(lambda c, i: c.task(doors).status(i), id="t.status"),
    pytest.param(lambda c, i: c.task(doors).get_state(i), id="t.get_state"),
    pytest.param(lambda c, i: c.task(doors).terminate(i), id="t.terminate"),
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize("call", CALLS)
async def test_every_call_refuses_a_bad_id_and_writes_nothing(call: Call, bad_id: Any) -> None:
    rt = runtime()
    with pytest.raises(ValidationError, match="invalid id"):
        await call(rt.client, bad_id)
    assert rt.events == []
    assert await rt.app.storage.list_instances() == []


@pytest.mark.parametrize("bad_id", ["a\ud800b", "a" * 70 + "\udfff"], ids=["short", "long"])
async def test_an_id_that_is_not_valid_unicode_text_is_refused(bad_id: str) -> None:
    rt = runtime()
    with pytest.raises(ValidationError, match="invalid id"):
        await rt.client.continuous(refresher).start(bad_id, Tokens("a", "r"))
    assert await rt.app.storage.list_instances() == []


@pytest.mark.parametrize(
    "good_id",
    [
        "x" * 255,
        "\N{GRINNING FACE}" * 63,  # 252 bytes
        "user:42/ünïcødé tab-free",
        "a b",
    ],
)
async def test_ids_up_to_255_bytes_of_printable_text_are_fine(good_id: str) -> None:
    rt = runtime()
    result = await rt.client.continuous(refresher).start(good_id, Tokens("a", "r"))
    assert result.instance_id == f"continuous:refresher:{good_id}"
    assert (await rt.client.continuous(refresher).status(good_id)).status == "running"


# -- payload size -------------------------------------------------------------------------

# {"data":"…"} is 11 bytes around the string.
JUST_FITS = "x" * (MIB - 11)
TOO_BIG = "x" * (MIB - 10)


async def test_an_input_over_one_mib_serialised_is_refused() -> None:
    rt = runtime()
    await rt.client.continuous(blobs).start("fits", Blob(JUST_FITS))
    with pytest.raises(ValidationError, match="over the limit of 1048576"):
        await rt.client.continuous(blobs).start("big", Blob(TOO_BIG))
    assert await rt.client.continuous(blobs).status("big") == ContinuousStatus("not_found")
    assert types(rt.events) == ["job.started"]


async def test_the_limit_counts_the_serialised_json_not_the_python_string() -> None:
    rt = runtime()
    # 300 000 characters, under the limit as a Python string, but four bytes each
    # of stored UTF-8 JSON: 1.2 MB.
    with pytest.raises(ValidationError, match="bytes once serialised"):
        await rt.client.continuous(blobs).start("big", Blob("\N{SNAIL}" * 300_000))


async def test_an_event_over_one_mib_is_refused_and_nothing_written() -> None:
    job = Task(state=Blob, event=Blob, on_event=lambda e, ctx: ctx.set_state(e), execute=keep_state)
    rt = create_test_runtime({"t": job}, now=T0)
    with pytest.raises(ValidationError, match="over the limit"):
        await rt.client.task(job).send("a", Blob(TOO_BIG))
    assert await rt.client.task(job).status("a") == TaskStatus("not_found")

    batch = Debounce(event=Blob, execute=keep_state, flush_after=60)
    rt = create_test_runtime({"d": batch}, now=T0)
    with pytest.raises(ValidationError, match="over the limit"):
        await rt.client.debounce(batch).add("a", Blob(TOO_BIG))
    assert await rt.client.debounce(batch).status("a") == DebounceStatus("not_found")
    assert rt.events == []


async def test_an_accumulated_state_growing_over_one_mib_is_refused() -> None:
    job = Debounce(
        event=Blob,
        state=Blob,
        on_event=lambda ctx: Blob(ctx.state.data + ctx.event.data),
        execute=keep_state,
        flush_after=60,
    )
    rt = create_test_runtime({"d": job}, now=T0)
    half = "x" * (MIB // 2)
    await rt.client.debounce(job).add("a", Blob(half))
    with pytest.raises(ValidationError, match="over the limit"):
        await rt.client.debounce(job).add("a", Blob(half))
    assert await rt.client.debounce(job).status("a") == DebounceStatus(
        "debouncing", 1, T0.replace(minute=1)
    )
    assert await rt.client.debounce(job).get_state("a") == Blob(half)


async def test_a_state_over_one_mib_set_by_a_handler_fails_the_run() -> None:
    job = Continuous(
        state=Blob, schedule=every("1 hour"), execute=lambda ctx: ctx.set_state(Blob(TOO_BIG))
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.continuous(job).start("a", Blob("small"))
    await rt.advance(0)
    assert await rt.client.continuous(job).get_state("a") == Blob("small")
    assert "over the limit" in of_type(rt.events, "job.failed")[0].error


# -- stored data that no longer fits ------------------------------------------------------


@attrs.frozen
class ProfileV1:
    name: str
    age: int


@attrs.frozen
class ProfileV2:
    name: str
    age: str  # the code changed the type


def profile_app(state: type[Any], store: MemoryStore, runs: list[object]) -> DurableJobs:
    job = Continuous(state=state, schedule=every("1 hour"), execute=runs.append)
    return DurableJobs({"profile": job}, storage=(store, store), clock=ManualClock())


async def test_stored_state_that_no_longer_fits_raises_on_read_and_is_left_untouched() -> None:
    store = MemoryStore()
    old_runs: list[object] = []
    new_runs: list[object] = []
    old = profile_app(ProfileV1, store, old_runs)
    new = profile_app(ProfileV2, store, new_runs)  # the same store, after a deploy
    await old.client.continuous("profile").start("p", ProfileV1("Ada", 36))
    stored = await store.read("continuous:profile:p")
    assert stored is not None
    assert stored.state == '{"name":"Ada","age":36}'

    with pytest.raises(ValidationError, match=r"no longer fits ProfileV2.*\$\.age"):
        await new.client.continuous("profile").get_state("p")
    with pytest.raises(ValidationError, match="left unchanged"):
        await new.client.continuous("profile").trigger("p")
    assert new_runs == []  # execute never saw the bad state

    assert await store.read("continuous:profile:p") == stored  # not a byte changed
    assert await old.client.continuous("profile").get_state("p") == ProfileV1("Ada", 36)
    assert await old.client.continuous("profile").trigger("p") == TriggerResult(True)
    assert len(old_runs) == 1


async def test_a_worker_does_not_spin_on_an_alarm_whose_state_no_longer_fits() -> None:
    store = MemoryStore()
    old = profile_app(ProfileV1, store, [])
    new = profile_app(ProfileV2, store, [])
    await old.client.continuous("profile").start("p", ProfileV1("Ada", 36))  # due now
    stored = await store.read("continuous:profile:p")

    async with new.worker(poll_interval=60) as worker:
        for _ in range(100):  # give it the loop; the (manual) clock does not move
            await asyncio.sleep(0)
    await new.aclose()

    assert await store.read("continuous:profile:p") == stored
    # One failed delivery, then the alarm waits (for the claim's lease, or a backoff).
    assert worker.delivered == 1


@pytest.mark.parametrize("bad_key", ["", "k\x00", "k\u202e", "k\ufeff", "k" * 256, 7])
async def test_a_bad_idempotency_key_is_refused_and_nothing_written(bad_key: Any) -> None:
    rt = runtime()
    with pytest.raises(ValidationError, match="invalid idempotency key"):
        await rt.client.task("doors").send("d1", Open("front"), idempotency_key=bad_key)
    assert rt.events == []
    assert await rt.app.storage.list_instances() == []
