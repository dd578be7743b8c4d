"""The jobs runtime: validates at the edge, routes calls and alarms to the kind handlers."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..adapters.protocols import Clock, SchedulerAdapter, StorageAdapter
from ..adapters.records import Claim, InstanceRecord
from ..errors import ExecutionError
from ..jobs.definitions import JobDefinition
from ..logs import get_logger
from .codec import Codec
from .draft import Draft
from .events import JobEvent
from .handlers import HANDLERS, KindHandler
from .shell import InstanceShell, Target

T = TypeVar("T")

log = get_logger("durable_jobs.runtime")


class JobsRuntime:
    """Everything one event loop needs to serve requests and deliver alarms."""

    def __init__(
        self,
        jobs: Mapping[str, JobDefinition],
        *,
        storage: StorageAdapter,
        scheduler: SchedulerAdapter,
        clock: Clock,
        publish: Callable[[list[JobEvent]], None],
        subscribing: Callable[[], Awaitable[None] | None],
        lease: float,
        claim_wait: float,
        max_recoveries: int,
        history_limit: int,
        heartbeat: bool,
        codec: Codec | None = None,
        rng: random.Random | None = None,
        on_delivery: Sequence[Callable[[str, float], None]] = (),
    ) -> None:
        self.storage = storage
        self.on_delivery = on_delivery
        self.scheduler = scheduler
        self.clock = clock
        self.codec = codec or Codec()
        rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.handlers: dict[str, KindHandler] = {
            name: HANDLERS[job.kind](name, job, codec=self.codec, rng=rng, clock=clock)
            for name, job in jobs.items()
        }
        self.job_names = frozenset(self.handlers)
        self.max_recoveries = max_recoveries
        self.shell = InstanceShell(
            storage,
            clock,
            publish=publish,
            subscribing=subscribing,
            lease=lease,
            claim_wait=claim_wait,
            history_limit=history_limit,
            heartbeat=heartbeat,
        )

    async def run(self, target: Target, operation: Callable[[Draft[Any]], Awaitable[T]]) -> T:
        """Apply ``operation`` to one instance under its claim and commit it."""
        return await self.shell.call(target, operation)

    async def read(self, handler: KindHandler, key: str) -> InstanceRecord | None:
        """The last committed record, without waiting for any claim; ``ValidationError``
        if its counters are damaged (SEMANTICS 6)."""
        record = await self.storage.read(handler.instance_id(key))
        if record is not None:
            handler.counters(record)
        return record

    async def claim_due(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` due alarms of this runtime's jobs (SEMANTICS 13)."""
        return await self.shell.claim_due(self.scheduler, limit, self.job_names)

    async def next_alarm_at(self) -> float | None:
        """The earliest alarm of this runtime's jobs that nobody has claimed."""
        return await self.scheduler.next_alarm_at(self.clock.now(), jobs=self.job_names)

    async def deliver(self, claim: Claim) -> None:
        """Run the due alarm of an instance claimed by ``claim_due``."""
        record = claim.record
        handler = self.handlers.get(record.job_name) if record is not None else None
        if record is None or handler is None:  # gone since, or not a job of ours
            await self.shell.release(claim.instance_id)
            return
        target = Target(record.instance_id, record.kind, record.job_name, record.key)
        if claim.recoveries:
            log.warning(
                "alarm.recovered", instance_id=claim.instance_id, recoveries=claim.recoveries
            )
        if claim.recoveries > self.max_recoveries:
            error = ExecutionError(
                f"the activation of this alarm died {claim.recoveries} times in a row "
                f"without committing (max_recoveries={self.max_recoveries})"
            )
            await self.shell.call(
                target, lambda draft: handler.poisoned(draft, error, claim.recoveries)
            )
            return
        await self.shell.call(
            target, lambda draft: self._alarm(handler, draft), expire_on_error=True
        )

    async def _alarm(self, handler: KindHandler, draft: Draft[Any]) -> None:
        if draft.alarm_at is None or draft.alarm_at > draft.now:
            return  # an earlier call moved or cleared the alarm
        for hook in self.on_delivery:  # (job name, seconds late): metrics
            hook(draft.job_name, draft.now - draft.alarm_at)
        await handler.alarm(draft)

    async def close(self) -> None:
        await self.shell.close()
