"""The instance shell: one live activation per instance, calls applied one at a time.

The shell knows identity, serialisation, the write buffer and the commit — no job
logic. Within a process an ``asyncio.Lock`` orders calls to one instance; across
loops and processes a claim in storage does, and its fencing token makes sure a
stale activation can never commit. User code never runs while a store's write lock
is held: a claim is its own short transaction, and so is the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import attrs

from ..adapters.protocols import Clock, SchedulerAdapter, StorageAdapter
from ..adapters.records import Claim, Commit, InstanceRecord
from ..errors import DuplicateEventError, InvalidStateError, StorageError, ValidationError
from ..logs import get_logger
from .draft import Draft
from .events import JobEvent
from .threads import HandlerAbandoned
from .tracing import Tracing

T = TypeVar("T")

log = get_logger("durable_jobs.shell")


class _Running:
    """A handler call in progress, as seen by the code it calls (a context variable)."""

    __slots__ = ("active", "instance_id")

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.active = True


# The calls whose handlers the current code runs in: its task, or a thread it started.
_running: contextvars.ContextVar[tuple[_Running, ...]] = contextvars.ContextVar(
    "durable_jobs_running", default=()
)


def _forget(activation: _Activation, claim: Claim) -> None:
    """Drop ``claim`` from ``activation``, unless another has replaced it."""
    if activation.claim is claim:
        activation.claim = activation.record = None


def _refuse_own_call(instance_id: str) -> None:
    for call in _running.get():
        if call.active and call.instance_id == instance_id:
            raise InvalidStateError(
                f"a handler of {instance_id} called its own instance through the client; "
                "it would wait for itself forever. Change the instance through the "
                "handler's context (set_state, schedule, terminate) instead"
            )


async def _traced(
    tracing: Tracing,
    target: Target,
    draft: Draft[Any],
    operation: Callable[[Draft[Any]], Awaitable[T]],
) -> T:
    """``operation`` in a span of its own; an alarm's run continues the trace of the
    client call that armed it, and a client call arming one leaves its trace."""
    parent = None
    if target.trigger == "alarm" and draft.exists:
        with contextlib.suppress(ValidationError):  # damaged counters: a root span
            parent = draft.counters.trace
    attributes = {
        "durable_jobs.instance_id": target.instance_id,
        "durable_jobs.job": target.job_name,
        "durable_jobs.kind": target.kind,
        "durable_jobs.trigger": target.trigger,
    }
    with tracing.span(f"{target.kind} {target.job_name} {target.trigger}", attributes, parent):
        result = await operation(draft)
        if draft.changed and draft.exists:
            # A run arms its next alarm in a trace of its own, not its parent's.
            armed = target.trigger != "alarm" and draft.alarm_at is not None
            trace = tracing.current() if armed else None
            if trace is not None or parent is not None:
                draft.update(trace=trace)
    return result


@attrs.frozen
class Target:
    """The instance a call is for, and the idempotency key of the event it brings."""

    instance_id: str
    kind: str
    job_name: str
    key: str
    idempotency_key: str | None = None
    trigger: str = "alarm"  # what the history calls the call: a client method or "alarm"
    dead_letter: bool = False  # read the instance's dead letter into the draft (redrive)


class _Activation:
    __slots__ = ("claim", "lock", "record", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.claim: Claim | None = None
        self.record: InstanceRecord | None = None
        self.users = 0


class InstanceShell:
    """Runs operations on instances under their claim and commits their drafts."""

    def __init__(
        self,
        storage: StorageAdapter,
        clock: Clock,
        *,
        publish: Callable[[list[JobEvent]], None],
        subscribing: Callable[[], Awaitable[None] | None] = lambda: None,
        lease: float = 30.0,
        claim_wait: float = 30.0,
        history_limit: int = 100,
        heartbeat: bool = True,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self.lease = lease
        self.claim_wait = claim_wait
        self.history_limit = history_limit
        self._publish = publish
        self._subscribing = subscribing
        self.tracing: Tracing | None = None
        self._heartbeat_enabled = heartbeat
        self._heartbeat: asyncio.Task[None] | None = None
        self._activations: dict[str, _Activation] = {}

    @property
    def active_count(self) -> int:
        return len(self._activations)

    async def claim_due(
        self, scheduler: SchedulerAdapter, limit: int, jobs: Collection[str]
    ) -> list[Claim]:
        """Claim up to ``limit`` due alarms of ``jobs`` and keep their claims here
        before any caller of this process can queue for those instances."""
        now = self.clock.now()
        claims = await scheduler.claim_due(now, limit, self.owner, now + self.lease, jobs=jobs)
        for claim in claims:
            activation = self._activation(claim.instance_id)
            activation.claim, activation.record = claim, claim.record
        if claims:
            self._ensure_heartbeat()
        return claims

    async def release(self, instance_id: str) -> None:
        """Let go of a claimed instance that no caller is using."""
        activation = self._activations.get(instance_id)
        if activation is not None and activation.users == 0:
            self._activations.pop(instance_id, None)
            if activation.claim is not None:
                with contextlib.suppress(StorageError):
                    await self.storage.release(activation.claim)

    async def call(
        self,
        target: Target,
        operation: Callable[[Draft[Any]], Awaitable[T]],
        *,
        expire_on_error: bool = False,
    ) -> T:
        """Run ``operation`` under the instance's claim and commit its draft.

        With ``expire_on_error`` an operation that raises leaves the claim to expire
        instead of releasing it, so that a failing alarm is retried after the lease
        rather than at once, over and over.
        """
        _refuse_own_call(target.instance_id)
        activation = self._activation(target.instance_id)
        activation.users += 1
        try:
            async with activation.lock:
                return await self._run(target, activation, operation, expire_on_error)
        finally:
            activation.users -= 1
            if activation.users == 0 and activation.claim is None:
                self._activations.pop(target.instance_id, None)

    def _activation(self, instance_id: str) -> _Activation:
        activation = self._activations.get(instance_id)
        if activation is None:
            activation = self._activations[instance_id] = _Activation()
        return activation

    async def _run(
        self,
        target: Target,
        activation: _Activation,
        operation: Callable[[Draft[Any]], Awaitable[T]],
        expire_on_error: bool,
    ) -> T:
        if activation.claim is None:
            await self._acquire(target.instance_id, activation)
        running = _Running(target.instance_id)
        outer = _running.set((*_running.get(), running))
        draft: Draft[Any] | None = None
        try:
            draft = Draft(
                instance_id=target.instance_id,
                kind=target.kind,
                job_name=target.job_name,
                key=target.key,
                record=activation.record,
                now=self.clock.now(),
                trigger=target.trigger,
            )
            if target.idempotency_key is not None:
                await self._refuse_duplicate(draft, target.idempotency_key)
            if target.dead_letter:
                draft.found_dead_letter = await self.storage.read_dead_letter(target.instance_id)
            if self.tracing is None:
                result = await operation(draft)
            else:
                result = await _traced(self.tracing, target, draft, operation)
        except BaseException as exc:
            running.active = False
            if draft is not None and draft.commit_on_error and isinstance(exc, Exception):
                # The call failed, and says so to its caller, but its failure is kept
                # on the instance (SEMANTICS 15); its event's key is not spent.
                draft.idempotency_key = None
                await self._commit(target, activation, draft)
            elif isinstance(exc, HandlerAbandoned) or (
                isinstance(exc, Exception) and expire_on_error and activation.users == 1
            ):
                activation.claim = activation.record = None  # forgotten here, expires there
            else:  # failed, or cancelled (a worker shutting down): hand the instance on
                await self._let_go(activation)
            raise
        finally:
            running.active = False
            _running.reset(outer)
        await self._commit(target, activation, draft)
        return result

    async def _commit(self, target: Target, activation: _Activation, draft: Draft[Any]) -> None:
        claim = activation.claim
        assert claim is not None  # kept or renewed, but still ours
        release = activation.users == 1  # nobody queued behind us in this process
        record = draft.to_record() if draft.changed and not draft.deleted else None
        commit = Commit(
            claim=claim,
            record=record,
            delete=draft.deleted,
            idempotency_key=draft.idempotency_key,
            dead_letter=draft.dead_letter,
            delete_dead_letter=draft.redriven,
            events=tuple(e.to_json() for e in draft.events),
            history=tuple(draft.history),
            history_reset=draft.created,
            history_limit=self.history_limit if draft.history else None,
            at=draft.now,
            release=release,
        )
        if draft.events and (waiting := self._subscribing()) is not None:
            await waiting  # a subscription made before this commit must see its events
        try:
            committed = await self.storage.commit(commit)
        except BaseException:
            _forget(activation, claim)
            raise
        if not committed:
            _forget(activation, claim)
            raise StorageError(
                f"instance {target.instance_id} was taken over by another activation "
                "while this call ran (its claim expired); nothing was committed",
                retryable=True,
            )
        # Once the commit released it, a worker of this process may have claimed the
        # instance's due alarm before the commit answered: that claim stays.
        if activation.claim is claim:
            if draft.deleted:
                activation.record = None
            elif record is not None:
                activation.record = record
            if release:
                activation.claim = None
        if draft.events:
            self._publish(draft.events)

    async def _refuse_duplicate(self, draft: Draft[Any], key: str) -> None:
        """Refuse an event whose idempotency key the instance already applied; else
        have the commit record the key."""
        if draft.exists and await self.storage.has_idempotency_key(draft.instance_id, key):
            raise DuplicateEventError(
                f"event with idempotency key {key!r} was already applied to {draft.instance_id}"
            )
        draft.idempotency_key = key

    async def _let_go(self, activation: _Activation) -> None:
        if activation.claim is not None and activation.users == 1:
            claim, activation.claim, activation.record = activation.claim, None, None
            with contextlib.suppress(StorageError):
                await self.storage.release(claim)

    async def _acquire(self, instance_id: str, activation: _Activation) -> None:
        """Take the instance's claim for ``activation``, waiting while another holds it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.claim_wait
        delay = 0.001
        while activation.claim is None:  # a worker of this process may adopt it meanwhile
            now = self.clock.now()
            claim = await self.storage.claim(instance_id, self.owner, now, now + self.lease)
            if claim is not None:
                activation.claim, activation.record = claim, claim.record
                self._ensure_heartbeat()
                return
            if loop.time() >= deadline:
                raise StorageError(
                    f"instance {instance_id} stayed claimed by another activation for "
                    f"{self.claim_wait:.0f}s; try again later",
                    retryable=True,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat_enabled and (self._heartbeat is None or self._heartbeat.done()):
            self._heartbeat = asyncio.get_running_loop().create_task(self._renew_loop())

    async def _renew_loop(self) -> None:
        """Keep the claims of long calls alive; stop when none is left."""
        while True:
            await asyncio.sleep(self.lease / 3)
            claimed = {i: a for i, a in self._activations.items() if a.claim is not None}
            if not claimed:
                return
            now = self.clock.now()
            claims = [a.claim for a in claimed.values() if a.claim is not None]
            try:
                renewed = await self.storage.renew(claims, now + self.lease)
            except StorageError as exc:
                log.warning("claim.renew_failed", error=str(exc))
                continue
            for claim in renewed:
                activation = claimed[claim.instance_id]
                if activation.claim is not None and activation.claim.token == claim.token:
                    activation.claim = claim

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for activation in list(self._activations.values()):
            if activation.claim is not None and activation.users == 0:
                with contextlib.suppress(StorageError):
                    await self.storage.release(activation.claim)
                activation.claim = None
        self._activations.clear()
