"""The PostgreSQL batchers: how the calls an event loop queues are split into batches."""

from __future__ import annotations

import asyncio

import pytest

from durable_jobs.errors import StorageError

pytest.importorskip("psycopg")

import psycopg

from durable_jobs.adapters.postgres._batch import SPLIT_FROM, Batcher


async def test_a_crowd_goes_out_in_two_halves_the_second_before_the_first_is_answered() -> None:
    """Sixteen callers queued together: eight go out, and the other eight are sent
    while the loop still has the first eight's answers to hand out, so that the
    server works on one half while the loop works on the other."""
    sent: list[tuple[int, int]] = []  # (batch size, callers answered by then)
    answered = 0

    async def send(items: list[int]) -> list[int]:
        sent.append((len(items), answered))
        await asyncio.sleep(0)  # the round trip
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(asyncio.get_running_loop(), send, ())

    async def caller(item: int) -> int:
        nonlocal answered
        result = await batcher.submit(item)
        answered += 1
        return result

    results = await asyncio.gather(*(caller(n) for n in range(16)))
    assert results == [n * 10 for n in range(16)]
    assert sent == [(8, 0), (8, 0)]


async def test_a_few_callers_go_out_together() -> None:
    sizes: list[int] = []

    async def send(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher: Batcher[int, int] = Batcher(asyncio.get_running_loop(), send, ())
    await asyncio.gather(*(batcher.submit(n) for n in range(SPLIT_FROM - 1)))
    assert sizes == [SPLIT_FROM - 1]


async def cancel_every_other_task() -> None:
    """As a loop's shutdown does: cancel every task but this one, and let them end."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class Transient(Exception):
    pass


async def test_a_transient_error_fails_every_item_of_the_batch() -> None:
    async def send(items: list[int]) -> list[int]:
        raise Transient("the connection dropped")

    batcher: Batcher[int, int] = Batcher(asyncio.get_running_loop(), send, (Transient,))
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in range(3)), return_exceptions=True)
    assert [type(o) for o in outcomes] == [Transient] * 3


async def test_a_database_error_sends_each_item_alone_and_fails_only_the_bad_one() -> None:
    sizes: list[int] = []

    async def send(items: list[int]) -> list[int]:
        sizes.append(len(items))
        if 2 in items:
            raise psycopg.DataError("refused")
        return items

    batcher: Batcher[int, int] = Batcher(asyncio.get_running_loop(), send, (Transient,))
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in range(4)), return_exceptions=True)
    assert outcomes[:2] + outcomes[3:] == [0, 1, 3]
    assert isinstance(outcomes[2], psycopg.DataError)
    assert sizes == [4, 1, 1, 1, 1]


async def test_a_batch_cancelled_in_flight_resets_and_the_next_goes_out() -> None:
    resets: list[str] = []
    started = asyncio.Event()
    hang = True

    async def send(items: list[int]) -> list[int]:
        if hang:
            started.set()
            await asyncio.Event().wait()  # a query the loop's shutdown cancels
        return items

    batcher: Batcher[int, int] = Batcher(
        asyncio.get_running_loop(), send, (), reset=lambda: resets.append("reset")
    )
    first = asyncio.ensure_future(batcher.submit(1))
    await started.wait()
    await cancel_every_other_task()
    assert first.cancelled()
    assert resets == ["reset"]  # what the connection was left with is unknown
    hang = False
    assert await batcher.submit(2) == 2


async def test_closing_lets_the_batch_in_flight_end_and_fails_the_rest() -> None:
    resets: list[str] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batcher: Batcher[int, int] = Batcher(
        asyncio.get_running_loop(), send, (), reset=lambda: resets.append("reset")
    )
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)  # the first batch is out
    behind = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    batcher.close()
    await asyncio.sleep(0)  # the close reaches the loop while the batch is out
    assert resets == []
    release.set()
    assert await first == 1
    with pytest.raises(StorageError, match="closed"):
        await behind
    assert resets == ["reset"]
    with pytest.raises(StorageError, match="closed"):
        await batcher.submit(3)
