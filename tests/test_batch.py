"""The PostgreSQL batchers: how the calls an event loop queues are split into batches."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("psycopg")

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
