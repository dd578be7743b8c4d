"""No code from storage (SEMANTICS 11): what is stored is JSON produced by cattrs, and
what is read back is only ever structured into the declared attrs classes."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime

import attrs
import pytest

from durable_jobs import (
    Continuous,
    DurableJobs,
    Task,
    TaskContext,
    ValidationError,
    every,
)
from durable_jobs.adapters import Commit, MemoryStore
from tests.support import T0, ManualClock


@attrs.frozen
class Address:
    city: str


@attrs.frozen
class Profile:
    name: str
    joined: datetime
    tags: tuple[str, ...] = ()
    address: Address | None = None
    extra: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class Touch:
    pass


def app(store: MemoryStore, **options: object) -> DurableJobs:
    profile = Continuous(state=Profile, schedule=every("1 day"), execute=lambda ctx: None)

    def on_event(event: Touch, ctx: TaskContext[Profile]) -> None:
        ctx.set_state(Profile("t", T0))

    task = Task(state=Profile, event=Touch, on_event=on_event, execute=lambda ctx: None)
    return DurableJobs(
        {"profile": profile, "task": task},
        storage=(store, store),
        clock=ManualClock(),
        **options,
    )


async def test_state_and_counters_are_stored_as_plain_json() -> None:
    store = MemoryStore()
    jobs = app(store)
    value = Profile(
        "Ada",
        datetime(2026, 1, 1, 12, 30, tzinfo=UTC),
        ("admin",),
        Address("London"),
        {"k": "v"},
    )
    await jobs.client.continuous("profile").start("p", value)

    record = await store.read("continuous:profile:p")
    assert record is not None
    assert json.loads(record.state) == {
        "name": "Ada",
        "joined": "2026-01-01T12:30:00+00:00",
        "tags": ["admin"],
        "address": {"city": "London"},
        "extra": {"k": "v"},
    }
    assert isinstance(json.loads(record.meta), dict)
    assert record.alarm_at == T0.timestamp()  # times are UTC epoch seconds
    assert await jobs.client.continuous("profile").get_state("p") == value


async def test_logged_events_are_json() -> None:
    store = MemoryStore()
    jobs = app(store)  # the event log is kept with or without a tracker
    await jobs.client.task("task").send("t", Touch())
    entries = await store.read_events(0, 10)
    assert [json.loads(e.event)["type"] for e in entries] == ["job.started"]
    assert [e.id for e in entries] == [await store.last_event_id()]


async def plant(store: MemoryStore, instance_id: str, state: str) -> None:
    """Overwrite a stored state through the storage protocol, as an attacker with
    write access to the database could."""
    claim = await store.claim(instance_id, "tamper", T0.timestamp(), T0.timestamp() + 30)
    assert claim is not None
    assert claim.record is not None
    assert await store.commit(Commit(claim=claim, record=attrs.evolve(claim.record, state=state)))


@pytest.mark.parametrize(
    "planted",
    [
        json.dumps({"py/object": "os.system", "py/reduce": ["id"]}),
        json.dumps({"name": {"__reduce__": "os.system"}, "joined": "2026-01-01T00:00:00+00:00"}),
        json.dumps(pickle.dumps(Address("x")).hex()),
    ],
    ids=["jsonpickle-style", "reduce-in-a-field", "pickle-bytes"],
)
async def test_planted_documents_are_refused_not_evaluated(planted: str) -> None:
    store = MemoryStore()
    jobs = app(store)
    await jobs.client.continuous("profile").start("p", Profile("Ada", T0))
    await plant(store, "continuous:profile:p", planted)
    with pytest.raises(ValidationError, match="no longer fits Profile"):
        await jobs.client.continuous("profile").get_state("p")


async def test_free_form_fields_stay_data() -> None:
    store = MemoryStore()
    jobs = app(store)
    await jobs.client.continuous("profile").start("p", Profile("Ada", T0))
    code = "__import__('os').system('echo pwned')"
    await plant(
        store,
        "continuous:profile:p",
        json.dumps({"name": code, "joined": T0.isoformat(), "extra": {"py/object": code}}),
    )
    state = await jobs.client.continuous("profile").get_state("p")
    assert state == Profile(code, T0, extra={"py/object": code})
