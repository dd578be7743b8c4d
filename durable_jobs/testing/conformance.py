"""The conformance suite every storage/scheduler back-end must pass.

Use it from a test module of your own::

    from durable_jobs.testing.conformance import *  # noqa: F403

and define a fixture ``store`` that yields an opened object implementing both
``StorageAdapter`` and ``SchedulerAdapter`` on an empty store. The tests touch the
public protocols only. They need pytest with pytest-asyncio (``asyncio_mode = auto``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import attrs
import pytest

from ..adapters.records import (
    Claim,
    Commit,
    DeadLetterRecord,
    HistoryRecord,
    InstanceRecord,
    WorkerRecord,
)

T0 = 1_800_000_000.0
LEASE = 30.0
_ids = itertools.count()


def record(
    instance_id: str = "task:job:a", *, alarm_at: float | None = None, state: str = "{}"
) -> InstanceRecord:
    kind, job_name, key = instance_id.split(":", 2)
    return InstanceRecord(
        instance_id=instance_id,
        kind=kind,
        job_name=job_name,
        key=key,
        state=state,
        meta=json.dumps({"n": next(_ids)}),
        alarm_at=alarm_at,
        created_at=T0,
        updated_at=T0,
    )


async def claim(store: Any, instance_id: str, now: float = T0, owner: str = "w1") -> Claim:
    taken = await store.claim(instance_id, owner, now, now + LEASE)
    assert taken is not None, f"could not claim {instance_id}"
    return taken  # type: ignore[no-any-return]


async def put(store: Any, rec: InstanceRecord, now: float = T0, **commit: Any) -> None:
    taken = await claim(store, rec.instance_id, now)
    assert await store.commit(Commit(claim=taken, record=rec, **commit))


def dead_letter(instance_id: str = "task:job:a", **fields: Any) -> DeadLetterRecord:
    kind, job_name, _ = instance_id.split(":", 2)
    values: dict[str, Any] = {
        "instance_id": instance_id,
        "job_name": job_name,
        "kind": kind,
        "state": "{}",
        "meta": '{"attempt":3}',
        "error": "E: x",
        "traceback": 'Traceback (most recent call last):\n  File "x.py", line 1\nE: x\n',
        "attempts": 3,
        "at": T0,
    }
    return DeadLetterRecord(**(values | fields))


def run(instance_id: str = "task:job:a", n: int = 0, **fields: Any) -> HistoryRecord:
    values: dict[str, Any] = {
        "instance_id": instance_id,
        "job_name": instance_id.split(":")[1],
        "trigger": "alarm",
        "outcome": "ok",
        "attempt": 1,
        "started_at": T0 + n,
        "finished_at": T0 + n + 0.5,
    }
    return HistoryRecord(**(values | fields))


def worker(worker_id: str = "w1", seen: float = T0, **fields: Any) -> WorkerRecord:
    values: dict[str, Any] = {
        "worker_id": worker_id,
        "host": "host-1",
        "pid": 4242,
        "started_at": T0,
        "last_seen_at": seen,
        "concurrency": 16,
        "running": 0,
        "jobs": ("orders", "hooks"),
    }
    return WorkerRecord(**(values | fields))


async def test_read_unknown_instance_is_none(store: Any) -> None:
    assert await store.read("task:job:nobody") is None


async def test_commit_then_read_returns_the_record(store: Any) -> None:
    rec = record(alarm_at=T0 + 5)
    await put(store, rec)
    assert await store.read(rec.instance_id) == rec


async def test_claim_is_exclusive_until_it_expires(store: Any) -> None:
    first = await claim(store, "task:job:a")
    assert first.record is None
    assert await store.claim("task:job:a", "w2", T0 + 1, T0 + 31) is None
    later = await store.claim("task:job:a", "w2", T0 + LEASE + 1, T0 + 2 * LEASE)
    assert later is not None
    assert later.token != first.token


async def test_claim_carries_the_current_record(store: Any) -> None:
    rec = record()
    await put(store, rec)
    again = await claim(store, rec.instance_id)
    assert again.record == rec


async def test_stale_owner_cannot_commit(store: Any) -> None:
    stale = await claim(store, "task:job:a")
    fresh = await store.claim("task:job:a", "w2", T0 + LEASE + 1, T0 + 2 * LEASE + 1)
    assert fresh is not None
    assert not await store.commit(Commit(claim=stale, record=record(state='"stale"')))
    assert await store.read("task:job:a") is None
    assert await store.commit(Commit(claim=fresh, record=record(state='"fresh"')))
    stored = await store.read("task:job:a")
    assert stored is not None
    assert stored.state == '"fresh"'


async def test_release_frees_the_claim_and_keep_holds_it(store: Any) -> None:
    held = await claim(store, "task:job:a")
    assert await store.commit(Commit(claim=held, record=record(), release=False))
    assert await store.claim("task:job:a", "w2", T0, T0 + LEASE) is None
    assert await store.commit(Commit(claim=held, release=True))
    assert await store.claim("task:job:a", "w2", T0, T0 + LEASE) is not None


async def test_release_with_a_stale_token_keeps_the_new_claim(store: Any) -> None:
    stale = await claim(store, "task:job:a")
    await store.claim("task:job:a", "w2", T0 + LEASE + 1, T0 + 3 * LEASE)
    await store.release(stale)
    assert await store.claim("task:job:a", "w3", T0 + LEASE + 2, T0 + 4 * LEASE) is None


async def test_renew_extends_only_claims_still_held(store: Any) -> None:
    mine = await claim(store, "task:job:a")
    lost = await claim(store, "task:job:b")
    await store.claim("task:job:b", "w2", T0 + LEASE + 1, T0 + 10 * LEASE)
    renewed = await store.renew([mine, lost], T0 + 5 * LEASE)
    assert [c.instance_id for c in renewed] == ["task:job:a"]
    assert await store.claim("task:job:a", "w2", T0 + 2 * LEASE, T0 + 6 * LEASE) is None


async def test_delete_removes_record_and_idempotency_keys(store: Any) -> None:
    rec = record()
    await put(store, rec, idempotency_key="k1")
    assert await store.has_idempotency_key(rec.instance_id, "k1")
    taken = await claim(store, rec.instance_id)
    assert await store.commit(Commit(claim=taken, delete=True))
    assert await store.read(rec.instance_id) is None
    assert not await store.has_idempotency_key(rec.instance_id, "k1")


async def test_one_commit_writes_everything_together(store: Any) -> None:
    rec = record(alarm_at=T0)
    dead = dead_letter(rec.instance_id)
    await put(
        store,
        rec,
        idempotency_key="k",
        dead_letter=dead,
        events=('{"type":"a"}',),
        history=(run(rec.instance_id),),
    )
    assert await store.read(rec.instance_id) == rec
    assert await store.has_idempotency_key(rec.instance_id, "k")
    assert await store.read_dead_letter(rec.instance_id) == dead
    assert [e.event for e in await store.read_events(0, 10)] == ['{"type":"a"}']
    [row] = await store.read_history(rec.instance_id, limit=10)
    assert attrs.evolve(row, id=0) == run(rec.instance_id)


async def test_a_refused_commit_writes_nothing(store: Any) -> None:
    stale = await claim(store, "task:job:a")
    await store.claim("task:job:a", "w2", T0 + LEASE + 1, T0 + 3 * LEASE)
    commit = Commit(
        claim=stale,
        record=record(),
        idempotency_key="k",
        dead_letter=dead_letter(state=None),
        events=("{}",),
        history=(run(),),
    )
    assert not await store.commit(commit)
    assert await store.read("task:job:a") is None
    assert not await store.has_idempotency_key("task:job:a", "k")
    assert await store.read_dead_letter("task:job:a") is None
    assert await store.read_events(0, 10) == []
    assert await store.last_event_id() == 0
    assert await store.read_history("task:job:a", limit=10) == []


async def test_events_are_read_in_commit_order_after_an_id(store: Any) -> None:
    for n in range(3):
        await put(store, record(f"task:job:{n}"), events=(f'{{"n":{n}}}',))
    entries = await store.read_events(0, 2)
    assert [json.loads(e.event)["n"] for e in entries] == [0, 1]
    assert entries[0].id < entries[1].id
    rest = await store.read_events(entries[1].id, 10)
    assert [json.loads(e.event)["n"] for e in rest] == [2]
    assert await store.last_event_id() == rest[0].id
    assert await store.read_events(rest[0].id, 10) == []


async def test_one_commit_s_events_keep_their_order(store: Any) -> None:
    await put(store, record(), events=tuple(f'{{"n":{n}}}' for n in range(5)))
    assert [json.loads(e.event)["n"] for e in await store.read_events(0, 10)] == list(range(5))


async def test_trim_events_keeps_the_newest_and_drops_the_old(store: Any) -> None:
    for n in range(5):
        await put(store, record(f"task:job:{n}"), events=(f'{{"n":{n}}}',), at=T0 + n)
    assert await store.trim_events(keep=3, before=T0) == 2
    assert [json.loads(e.event)["n"] for e in await store.read_events(0, 10)] == [2, 3, 4]
    assert await store.trim_events(keep=10, before=T0 + 4) == 2
    left = await store.read_events(0, 10)
    assert [json.loads(e.event)["n"] for e in left] == [4]
    assert await store.last_event_id() == left[0].id  # trimming never reuses ids


async def test_wait_for_events_wakes_on_a_commit(store: Any) -> None:
    last = await store.last_event_id()
    waiting = asyncio.ensure_future(store.wait_for_events(last, 60))
    await asyncio.sleep(0)
    await put(store, record(), events=("{}",))
    await asyncio.wait_for(waiting, 5)  # far below the 60 s the wait allows


async def test_cursors_move_only_from_where_they_are(store: Any) -> None:
    assert await store.read_cursor("tracker") == 0
    assert await store.move_cursor("tracker", 0, 7)
    assert not await store.move_cursor("tracker", 0, 9)
    assert await store.read_cursor("tracker") == 7
    assert await store.move_cursor("tracker", 7, 9)
    assert await store.read_cursor("tracker") == 9
    assert await store.read_cursor("other") == 0


async def test_history_is_newest_first_and_kept_to_the_limit(store: Any) -> None:
    rec = record()
    for n in range(5):
        await put(store, rec, history=(run(n=n),), history_limit=3)
    await put(store, record("task:job:b"), history=(run("task:job:b"),), history_limit=3)
    rows = await store.read_history(rec.instance_id, limit=10)
    assert [r.started_at for r in rows] == [T0 + 4, T0 + 3, T0 + 2]
    assert rows[0].id > rows[1].id > rows[2].id
    older = await store.read_history(rec.instance_id, limit=10, before=rows[0].id)
    assert older == rows[1:]
    assert len(await store.read_history("task:job:b", limit=10)) == 1


async def test_history_outlives_deletion_until_a_reset(store: Any) -> None:
    rec = record()
    await put(store, rec, history=(run(n=0), run(n=1, outcome="failed", error='{"x":1}')))
    taken = await claim(store, rec.instance_id)
    assert await store.commit(Commit(claim=taken, delete=True))
    rows = await store.read_history(rec.instance_id, limit=10)
    assert [(r.outcome, r.error) for r in rows] == [("failed", '{"x":1}'), ("ok", None)]
    await put(store, rec, history_reset=True)
    assert await store.read_history(rec.instance_id, limit=10) == []


async def test_dead_letters_are_listed_by_id_and_deleted(store: Any) -> None:
    for instance_id in ("task:orders:2", "task:orders:1", "debounce:hooks:1"):
        await put(store, record(instance_id), dead_letter=dead_letter(instance_id))
    listed = await store.list_dead_letters(limit=2)
    assert [d.instance_id for d in listed] == ["debounce:hooks:1", "task:orders:1"]
    assert listed[1] == dead_letter("task:orders:1")
    after = await store.list_dead_letters(after=listed[-1].instance_id)
    assert [d.instance_id for d in after] == ["task:orders:2"]
    assert [d.instance_id for d in await store.list_dead_letters(job_name="hooks")] == [
        "debounce:hooks:1"
    ]
    assert await store.delete_dead_letter("task:orders:1")
    assert not await store.delete_dead_letter("task:orders:1")
    assert await store.read_dead_letter("task:orders:1") is None


async def test_a_commit_deletes_a_dead_letter_with_its_other_writes(store: Any) -> None:
    await put(store, record(), dead_letter=dead_letter())
    await put(store, record(alarm_at=T0), delete_dead_letter=True)
    assert await store.read_dead_letter("task:job:a") is None
    assert (await store.read("task:job:a")).alarm_at == T0


async def test_workers_register_heartbeat_and_go(store: Any) -> None:
    await store.register_worker(worker("w1"))
    await store.register_worker(worker("w2", jobs=()))
    assert await store.heartbeat_worker("w1", T0 + 10, 3)
    [w1, w2] = await store.list_workers(T0)
    assert w1 == worker("w1", seen=T0 + 10, running=3)
    assert w2.jobs == ()
    await store.deregister_worker("w2")
    assert not await store.heartbeat_worker("w2", T0 + 20, 0)
    assert [w.worker_id for w in await store.list_workers(T0)] == ["w1"]
    assert [w.worker_id for w in await store.list_workers(T0 + 10)] == ["w1"]
    assert await store.list_workers(T0 + 11) == []


async def test_stats_count_instances_due_alarms_and_dead_letters(store: Any) -> None:
    await put(store, record("task:orders:1", alarm_at=T0 - 1))
    await put(store, record("task:orders:2", alarm_at=T0 + 60))
    await put(store, record("task:orders:3"))
    await put(store, record("debounce:hooks:1"), dead_letter=dead_letter("debounce:hooks:1"))
    stats = await store.stats(T0)
    assert sorted(stats.instances) == [
        ("hooks", "debounce", False, 1),
        ("orders", "task", False, 1),
        ("orders", "task", True, 2),
    ]
    assert stats.due == (("orders", 1),)
    assert stats.dead_letters == (("hooks", 1),)


async def test_claim_due_returns_due_alarms_earliest_first(store: Any) -> None:
    await put(store, record("task:job:late", alarm_at=T0 + 20))
    await put(store, record("task:job:early", alarm_at=T0 + 10))
    await put(store, record("task:job:future", alarm_at=T0 + 100))
    await put(store, record("task:job:none"))
    due = await store.claim_due(T0 + 50, 10, "w1", T0 + 50 + LEASE)
    assert [c.instance_id for c in due] == ["task:job:early", "task:job:late"]
    assert due[0].record == await store.read("task:job:early")


async def test_claim_due_respects_the_limit_and_live_claims(store: Any) -> None:
    for n in range(5):
        await put(store, record(f"task:job:{n}", alarm_at=T0 + n))
    await claim(store, "task:job:0", now=T0 + 10)
    due = await store.claim_due(T0 + 10, 2, "w1", T0 + 10 + LEASE)
    assert [c.instance_id for c in due] == ["task:job:1", "task:job:2"]
    rest = await store.claim_due(T0 + 10, 10, "w2", T0 + 10 + LEASE)
    assert [c.instance_id for c in rest] == ["task:job:3", "task:job:4"]


async def test_an_alarm_whose_claim_expired_is_delivered_again(store: Any) -> None:
    await put(store, record("task:job:a", alarm_at=T0))
    first = await store.claim_due(T0, 10, "w1", T0 + LEASE)
    assert [c.instance_id for c in first] == ["task:job:a"]
    assert await store.claim_due(T0 + 1, 10, "w2", T0 + 1 + LEASE) == []
    again = await store.claim_due(T0 + LEASE + 1, 10, "w2", T0 + 2 * LEASE + 1)
    assert [c.instance_id for c in again] == ["task:job:a"]
    # The first delivery's claim is fenced out; the second's commits.
    moved = record("task:job:a", alarm_at=T0 + 90)
    assert not await store.commit(Commit(claim=first[0], record=moved))
    assert await store.commit(Commit(claim=again[0], record=moved))
    assert await store.read("task:job:a") == moved


async def test_claim_due_and_next_alarm_at_take_only_the_jobs_named(store: Any) -> None:
    await put(store, record("task:other:a", alarm_at=T0 - 2))
    await put(store, record("task:mine:b", alarm_at=T0 - 1))
    await put(store, record("task:also:c", alarm_at=T0))
    assert await store.next_alarm_at(T0, jobs={"mine", "also"}) == T0 - 1
    assert await store.next_alarm_at(T0, jobs={"nobody"}) is None
    due = await store.claim_due(T0, 10, "w1", T0 + LEASE, jobs=["mine", "also"])
    assert [c.instance_id for c in due] == ["task:mine:b", "task:also:c"]
    assert await store.next_alarm_at(T0, jobs=["mine", "also"]) is None
    rest = await store.claim_due(T0, 10, "w2", T0 + LEASE)  # every job
    assert [c.instance_id for c in rest] == ["task:other:a"]


async def test_claim_due_counts_the_claims_that_expired_without_a_release(store: Any) -> None:
    await put(store, record("task:job:a", alarm_at=T0))
    [first] = await store.claim_due(T0, 10, "w1", T0 + LEASE)
    assert first.recoveries == 0
    now = T0 + LEASE + 1  # the first holder died: its claim expired
    [second] = await store.claim_due(now, 10, "w2", now + LEASE)
    assert second.recoveries == 1
    now += LEASE + 1
    [third] = await store.claim_due(now, 10, "w3", now + LEASE)
    assert third.recoveries == 2
    await store.release(third)  # let go cleanly: the row of deaths is broken
    [fourth] = await store.claim_due(now + 1, 10, "w4", now + 1 + LEASE)
    assert fourth.recoveries == 0


async def test_claims_taken_together_each_fence_their_own_commit(store: Any) -> None:
    for n in range(20):
        await put(store, record(f"task:job:{n:02}", alarm_at=T0))
    due = await store.claim_due(T0, 20, "w1", T0 + LEASE)
    assert len({c.token for c in due}) == 20
    forged = [attrs.evolve(c, token=due[(n + 1) % 20].token) for n, c in enumerate(due)]
    done = record("task:job:x", alarm_at=None)
    for claim in forged:
        assert not await store.commit(
            Commit(claim=claim, record=attrs.evolve(done, instance_id=claim.instance_id))
        )
    for claim in due:
        assert await store.commit(
            Commit(claim=claim, record=attrs.evolve(done, instance_id=claim.instance_id))
        )


async def test_commit_moves_the_alarm(store: Any) -> None:
    rec = record("task:job:a", alarm_at=T0)
    await put(store, rec)
    [due] = await store.claim_due(T0, 10, "w1", T0 + LEASE)
    assert await store.commit(Commit(claim=due, record=attrs.evolve(rec, alarm_at=T0 + 60)))
    assert await store.claim_due(T0 + 1, 10, "w1", T0 + 1 + LEASE) == []
    assert await store.next_alarm_at(T0 + 1) == T0 + 60


async def test_next_alarm_at_skips_live_claims(store: Any) -> None:
    assert await store.next_alarm_at(T0) is None
    await put(store, record("task:job:a", alarm_at=T0 + 1))
    await put(store, record("task:job:b", alarm_at=T0 + 2))
    await claim(store, "task:job:a")
    assert await store.next_alarm_at(T0) == T0 + 2
    assert await store.next_alarm_at(T0 + LEASE + 1) == T0 + 1


async def test_list_instances_filters_by_job_and_kind(store: Any) -> None:
    await put(store, record("task:orders:1"))
    await put(store, record("task:orders:2"))
    await put(store, record("debounce:hooks:1"))
    assert [r.key for r in await store.list_instances(job_name="orders")] == ["1", "2"]
    assert [r.instance_id for r in await store.list_instances(kind="debounce")] == [
        "debounce:hooks:1"
    ]
    assert len(await store.list_instances(limit=2)) == 2


async def test_list_instances_filters_before_the_limit_and_pages(store: Any) -> None:
    for n in range(6):
        await put(store, record(f"task:orders:{n}", alarm_at=T0 if n % 2 else None))
    await put(store, record("task:other:9", alarm_at=T0))
    first = await store.list_instances(job_name="orders", alarmed=True, limit=2)
    assert [r.key for r in first] == ["1", "3"]
    rest = await store.list_instances(
        job_name="orders", alarmed=True, after=first[-1].instance_id, limit=2
    )
    assert [r.key for r in rest] == ["5"]
    idle = await store.list_instances(kind="task", alarmed=False, limit=10)
    assert [r.key for r in idle] == ["0", "2", "4"]


async def test_wait_for_alarm_wakes_when_an_alarm_is_set(store: Any) -> None:
    waiting = asyncio.ensure_future(store.wait_for_alarm(60))
    await asyncio.sleep(0)
    await put(store, record("task:job:a", alarm_at=T0))
    await asyncio.wait_for(waiting, 5)  # far below the 60 s the wait allows


async def test_unicode_ids_and_states_round_trip(store: Any) -> None:
    rec = record("task:job:ünï-☃", state='{"name":"żółw 🐢"}')
    await put(store, rec)
    assert await store.read("task:job:ünï-☃") == rec


__all__ = [name for name in dict(globals()) if name.startswith("test_")]

pytestmark = pytest.mark.usefixtures("store")
