"""What handlers receive. Contexts buffer writes; the runtime commits them after return.

A handler's writes take effect only if it returns: a handler that raises commits
none of them. [``terminate()``][durable_jobs.jobs.contexts.StateContext.terminate] raises
[``Terminate``][durable_jobs.jobs.contexts.Terminate], a ``BaseException`` so that
a handler's ``except Exception`` cannot swallow it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, NoReturn, TypeVar

S = TypeVar("S")
E = TypeVar("E")


_UNREAD: Any = object()


class Terminate(BaseException):
    """Raised by ``ctx.terminate()``; ends the handler and deletes the instance."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


class BaseContext:
    """Members every context has."""

    __slots__ = ("_log", "_logger", "id", "instance_id", "job_name", "now")

    def __init__(
        self, *, instance_id: str, job_name: str, id: str, now: datetime, logger: Any
    ) -> None:
        self.instance_id = instance_id
        self.job_name = job_name
        self.id = id
        self.now = now
        self._logger = logger
        self._log: Any = None

    @property
    def log(self) -> Any:
        """A structlog logger bound to this instance (bound on first use: most
        handlers never log, and binding costs more than the rest of a context)."""
        if self._log is None:
            self._log = self._logger.bind(instance_id=self.instance_id)
        return self._log


class StateContext(BaseContext, Generic[S]):
    """A context whose handler may read and replace the instance's state."""

    __slots__ = ("_check", "_state", "state_json")

    def __init__(self, *, state: S, check: Callable[[Any], tuple[Any, str]], **base: Any) -> None:
        super().__init__(**base)
        self._state = state
        self._check = check
        self.state_json: str | None = None  # set once the handler replaces the state

    @property
    def state(self) -> S:
        return self._state

    def set_state(self, state: S) -> None:
        # A bad state fails the handler here, where the bug is, not at commit.
        self._state, self.state_json = self._check(state)

    def update_state(self, fn: Callable[[S], S]) -> None:
        self.set_state(fn(self._state))

    def terminate(self, reason: str | None = None) -> NoReturn:
        raise Terminate(reason)


class ContinuousContext(StateContext[S]):
    """Context of a Continuous job's ``execute``."""

    __slots__ = ("attempt", "run_count")

    def __init__(self, *, run_count: int, attempt: int, **rest: Any) -> None:
        super().__init__(**rest)
        self.run_count = run_count
        self.attempt = attempt

    @property
    def is_retry(self) -> bool:
        return self.attempt > 1


class DebounceEventContext(BaseContext, Generic[E, S]):
    """Context of a Debounce job's ``on_event``: return the new accumulated state."""

    __slots__ = ("_load", "_state", "event", "event_count")

    def __init__(
        self, *, event: E, load_state: Callable[[], S], event_count: int, **base: Any
    ) -> None:
        super().__init__(**base)
        self.event = event
        self.event_count = event_count
        self._load = load_state
        self._state: Any = _UNREAD

    @property
    def state(self) -> S:
        """The accumulated state, read from storage on first use: reducers that keep
        only the latest event never pay for decoding the batch."""
        if self._state is _UNREAD:
            self._state = self._load()
        state: S = self._state
        return state


class DebounceExecuteContext(BaseContext, Generic[S]):
    """Context of a Debounce job's ``execute`` (the flush)."""

    __slots__ = ("attempt", "debounce_started_at", "event_count", "flush_reason", "state")

    def __init__(
        self,
        *,
        state: S,
        event_count: int,
        flush_reason: str,
        debounce_started_at: datetime,
        attempt: int,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.state = state
        self.event_count = event_count
        self.flush_reason = flush_reason
        self.debounce_started_at = debounce_started_at
        self.attempt = attempt

    @property
    def is_retry(self) -> bool:
        return self.attempt > 1


_UNCHANGED: Any = object()


class TaskContext(StateContext[S | None]):
    """Context of every Task handler. ``schedule`` and ``cancel_schedule`` are buffered."""

    __slots__ = (
        "_to_instant",
        "created_at",
        "event_count",
        "execute_count",
        "is_first_event",
        "schedule_changed",
        "scheduled_at",
    )

    def __init__(
        self,
        *,
        scheduled_at: datetime | None,
        event_count: int,
        execute_count: int,
        created_at: datetime,
        is_first_event: bool,
        to_instant: Callable[[object], datetime],
        **rest: Any,
    ) -> None:
        super().__init__(**rest)
        self.scheduled_at = scheduled_at
        self.event_count = event_count
        self.execute_count = execute_count
        self.created_at = created_at
        self.is_first_event = is_first_event
        self._to_instant = to_instant
        self.schedule_changed = False

    def schedule(self, when: object) -> None:
        """Run ``execute`` at ``when``: a duration from now, an aware datetime or epoch seconds."""
        self.scheduled_at = self._to_instant(when)
        self.schedule_changed = True

    def cancel_schedule(self) -> None:
        self.scheduled_at = None
        self.schedule_changed = True
