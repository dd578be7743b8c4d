"""The three job kinds. A definition checks itself when made and lists every problem."""

from __future__ import annotations

import logging as std_logging
import operator
import types
import typing
from collections.abc import Callable
from datetime import timedelta
from functools import reduce
from typing import Any, Generic, Literal, TypeVar, overload

import attrs

from ..errors import DefinitionError
from .contexts import ContinuousContext, DebounceEventContext, DebounceExecuteContext, TaskContext
from .durations import Duration, parse_duration
from .retry import Retry
from .schedules import Cron, Every, Schedule

S = TypeVar("S")
E = TypeVar("E")
# Declared covariant so that mypy joins definitions of one kind with different classes
# (``Continuous[Tokens]`` and ``Continuous[Ping]``) to ``Continuous[object]`` rather than
# to ``object``: a mapping of them written without an annotation stays a mapping of
# ``JobDefinition``. Widening a definition explicitly would let its handle accept
# events or states the runtime then refuses.
S_co = TypeVar("S_co", covariant=True)
E_co = TypeVar("E_co", covariant=True)
# The members of a Task's event tuple, one type variable per position.
E1 = TypeVar("E1")
E2 = TypeVar("E2")
E3 = TypeVar("E3")
E4 = TypeVar("E4")
E5 = TypeVar("E5")
E6 = TypeVar("E6")

Kind = Literal["continuous", "debounce", "task"]
LogSetting = bool | int | None


def union_members(hint: object) -> tuple[type[Any], ...]:
    """``A | B`` or ``Union[A, B]`` as ``(A, B)``; a single class as ``(A,)``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(typing.get_args(hint))
    return (hint,) if isinstance(hint, type) else ()


def event_members(spec: object) -> tuple[type[Any], ...]:
    """A Task's ``event``: a class, a union of classes, or a tuple of classes."""
    if isinstance(spec, tuple):
        return spec if spec and all(isinstance(m, type) for m in spec) else ()
    return union_members(spec)


class _Problems:
    def __init__(self) -> None:
        self.found: list[str] = []

    def attrs_class(self, name: str, value: object) -> None:
        members = union_members(value)
        if not members or not all(attrs.has(m) for m in members):
            self.found.append(f"{name} must be an attrs class, got {value!r}")

    def handler(self, name: str, value: object, *, required: bool = True) -> None:
        if value is None and not required:
            return
        if not callable(value):
            self.found.append(f"{name} must be a function, got {value!r}")

    def event_classes(self, value: object) -> tuple[type[Any], ...]:
        members = event_members(value)
        if not members or not all(attrs.has(m) for m in members):
            self.found.append(
                "event must be an attrs class, a tuple of them such as (A, B) "
                f"or a union such as A | B, got {value!r}"
            )
        return members

    def timeout(self, value: object) -> timedelta | None:
        return None if value is None else self.duration("timeout", value, positive=True)

    def duration(self, name: str, value: object, *, positive: bool = False) -> timedelta:
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            self.found.append(f"{name}: {exc}")
            return timedelta(0)
        if positive and parsed <= timedelta(0):
            self.found.append(f"{name} must be longer than zero, got {value!r}")
        return parsed

    def retry(self, value: object) -> None:
        if value is not None and not isinstance(value, Retry):
            self.found.append(f"retry must be a Retry or None, got {value!r}")

    def logging(self, value: object) -> None:
        if (
            value is None
            or isinstance(value, bool)
            or (isinstance(value, int) and value in _LEVELS)
        ):
            return
        self.found.append(
            "logging must be True, False or a logging level "
            f"({', '.join(f'logging.{n}' for n in _LEVELS.values())}), "
            f"or None to log nothing; got {value!r}"
        )

    def raise_if_any(self) -> None:
        if self.found:
            raise DefinitionError(self.found)


# The levels structlog's filtering loggers are made for: another number has none.
_LEVELS = {
    std_logging.DEBUG: "DEBUG",
    std_logging.INFO: "INFO",
    std_logging.WARNING: "WARNING",
    std_logging.ERROR: "ERROR",
    std_logging.CRITICAL: "CRITICAL",
}


def log_level(setting: LogSetting) -> int:
    """The least level a job logs at. ``True`` logs everything (debug); ``False`` errors
    only (the default); ``None`` is silent: durable-jobs logs nothing for the job, as
    it never logs above ``ERROR`` (a handler's own ``ctx.log.critical`` still
    does); otherwise one of ``logging.DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or
    ``CRITICAL``."""
    if setting is None:
        return std_logging.CRITICAL
    if setting is True:
        return std_logging.DEBUG
    if setting is False:
        return std_logging.ERROR
    return int(setting)


class JobDefinition:
    """What every job definition has: [``Continuous``][durable_jobs.jobs.definitions.Continuous],
    [``Debounce``][durable_jobs.jobs.definitions.Debounce] and
    [``Task``][durable_jobs.jobs.definitions.Task] derive from it.

    The common base lets a type checker read a mapping of definitions of different kinds,
    written without an annotation, as ``dict[str, JobDefinition]``: what
    [``create_durable_jobs``][durable_jobs.runtime.app.create_durable_jobs] takes.
    """

    kind: Kind
    state: type[Any]
    retry: Retry | None
    timeout: timedelta | None
    logging: LogSetting


class Continuous(JobDefinition, Generic[S_co]):
    """Recurring work on a schedule, one instance per id, with its own state."""

    kind: Kind = "continuous"

    def __init__(
        self,
        *,
        state: type[S_co],
        schedule: Schedule,
        execute: Callable[[ContinuousContext[S_co]], object],
        start_immediately: bool = True,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None:
        check = _Problems()
        check.attrs_class("state", state)
        check.handler("execute", execute)
        self.timeout = check.timeout(timeout)
        if isinstance(schedule, Cron):
            check.found.extend(schedule.problems())
        elif isinstance(schedule, Every):
            if schedule.interval <= timedelta(0):
                check.found.append("schedule: every() needs a duration longer than zero")
        else:
            check.found.append(f"schedule must be every(...) or cron(...), got {schedule!r}")
        check.retry(retry)
        check.logging(logging)
        check.raise_if_any()
        self.state = state
        self.schedule = schedule
        self.execute = execute
        self.start_immediately = start_immediately
        self.retry = retry
        self.logging = logging


async def _default_reducer(ctx: DebounceEventContext[Any, Any]) -> Any:
    # async so that the runtime calls it inline: plain functions go to a thread.
    return ctx.event


class Debounce(JobDefinition, Generic[E_co, S_co]):
    """Collect events per id and process them in one batch (the flush).

    A batch's state, like any state, is at most 1 MiB of JSON. An ``add`` whose event
    would take it over is refused with [``ValidationError``][durable_jobs.errors.ValidationError]
    and adds nothing: the batch keeps its events and its flush time (it is not flushed
    early, which would run ``execute`` at a time nobody chose). Flush it, or bound it
    with ``max_events``.
    """

    kind: Kind = "debounce"

    @overload
    def __init__(
        self: Debounce[E, E],
        *,
        event: type[E],
        execute: Callable[[DebounceExecuteContext[E]], object],
        flush_after: Duration,
        max_events: int | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Debounce[E, S],
        *,
        event: type[E],
        state: type[S],
        on_event: Callable[[DebounceEventContext[E, S]], S],
        execute: Callable[[DebounceExecuteContext[S]], object],
        flush_after: Duration,
        initial_state: Callable[[], S] | None = None,
        max_events: int | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    def __init__(
        self,
        *,
        event: type[Any],
        execute: Callable[[Any], object],
        flush_after: Duration,
        state: type[Any] | None = None,
        on_event: Callable[[Any], Any] | None = None,
        initial_state: Callable[[], Any] | None = None,
        max_events: int | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None:
        check = _Problems()
        check.attrs_class("event", event)
        if state is not None:
            check.attrs_class("state", state)
        check.handler("execute", execute)
        check.handler("on_event", on_event, required=state is not None and state is not event)
        check.handler("initial_state", initial_state, required=False)
        if state is not None and initial_state is None and attrs.has(state):
            if any(f.default is attrs.NOTHING for f in attrs.fields(state)):
                check.found.append(
                    "initial_state is required: state class "
                    f"{state.__name__} has fields without defaults"
                )
            initial_state = state
        self.flush_after = check.duration("flush_after", flush_after, positive=True)
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1
        ):
            check.found.append(f"max_events must be a positive int or None, got {max_events!r}")
        self.timeout = check.timeout(timeout)
        check.retry(retry)
        check.logging(logging)
        check.raise_if_any()
        self.event = event
        self.state: type[Any] = state if state is not None else event
        self.execute = execute
        self.on_event: Callable[[Any], Any] = on_event or _default_reducer
        self.initial_state: Callable[[], Any] = initial_state or (lambda: None)
        self.max_events = max_events
        self.retry = retry
        self.logging = logging


class Task(JobDefinition, Generic[S_co, E_co]):
    """An event-driven state machine per id; handlers decide when ``execute`` runs.

    ``event`` is the class of the events ``send`` takes, or several classes:

    - ``event=(Placed, Paid)``, a tuple of up to six classes, keeps their union for the
      type checker: the definition is a ``Task[Order, Placed | Paid]``, whose ``send``
      takes a ``Placed`` or a ``Paid`` and nothing else.
    - ``event=Placed | Paid`` means the same at run time, but a type checker sees only a
      ``types.UnionType`` there, not its members: the definition is a ``Task[Order, Any]``
      and ``send`` takes anything (the runtime still checks). Prefer the tuple.
    """

    kind: Kind = "task"

    @overload
    def __init__(
        self: Task[S, E],
        *,
        state: type[S],
        event: type[E] | tuple[type[E]],
        on_event: Callable[[E, TaskContext[S]], object],
        execute: Callable[[TaskContext[S]], object],
        on_idle: Callable[[TaskContext[S]], object] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Task[S, E1 | E2],
        *,
        state: type[S],
        event: tuple[type[E1], type[E2]],
        on_event: Callable[[E1 | E2, TaskContext[S]], object],
        execute: Callable[[TaskContext[S]], object],
        on_idle: Callable[[TaskContext[S]], object] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Task[S, E1 | E2 | E3],
        *,
        state: type[S],
        event: tuple[type[E1], type[E2], type[E3]],
        on_event: Callable[[E1 | E2 | E3, TaskContext[S]], object],
        execute: Callable[[TaskContext[S]], object],
        on_idle: Callable[[TaskContext[S]], object] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Task[S, E1 | E2 | E3 | E4],
        *,
        state: type[S],
        event: tuple[type[E1], type[E2], type[E3], type[E4]],
        on_event: Callable[[E1 | E2 | E3 | E4, TaskContext[S]], object],
        execute: Callable[[TaskContext[S]], object],
        on_idle: Callable[[TaskContext[S]], object] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Task[S, E1 | E2 | E3 | E4 | E5],
        *,
        state: type[S],
        event: tuple[type[E1], type[E2], type[E3], type[E4], type[E5]],
        on_event: Callable[[E1 | E2 | E3 | E4 | E5, TaskContext[S]], object],
        execute: Callable[[TaskContext[S]], object],
        on_idle: Callable[[TaskContext[S]], object] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Task[S, E1 | E2 | E3 | E4 | E5 | E6],
        *,
        state: type[S],
        event: tuple[type[E1], type[E2], type[E3], type[E4], type[E5], type[E6]],
        on_event: Callable[[E1 | E2 | E3 | E4 | E5 | E6, TaskContext[S]], object],
        execute: Callable[[TaskContext[S]], object],
        on_idle: Callable[[TaskContext[S]], object] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    # ``A | B`` reaches a type checker as ``types.UnionType | type[A]`` (typeshed's
    # ``type.__or__``), ``Union[A, B]`` as ``typing._SpecialForm``. ``E`` is bound here
    # only so that, for a single class, this overload's handler types equal the first
    # one's: otherwise an unannotated handler (its ``Any``) would make mypy find the two
    # ambiguous and type the definition ``Any``.
    @overload
    def __init__(
        self: Task[S, Any],
        *,
        state: type[S],
        event: types.UnionType | type[E] | typing._SpecialForm,
        on_event: Callable[[E, TaskContext[S]], object],
        execute: Callable[[TaskContext[S]], object],
        on_idle: Callable[[TaskContext[S]], object] | None = None,
        on_error: Callable[[Exception, TaskContext[S]], object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None: ...

    def __init__(
        self,
        *,
        state: type[Any],
        event: object,
        on_event: Callable[..., object],
        execute: Callable[..., object],
        on_idle: Callable[..., object] | None = None,
        on_error: Callable[..., object] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        logging: LogSetting = False,
    ) -> None:
        check = _Problems()
        check.attrs_class("state", state)
        members = check.event_classes(event)
        check.handler("on_event", on_event)
        check.handler("execute", execute)
        check.handler("on_idle", on_idle, required=False)
        check.handler("on_error", on_error, required=False)
        self.timeout = check.timeout(timeout)
        check.retry(retry)
        check.logging(logging)
        check.raise_if_any()
        self.state = state
        # One spelling at run time: a tuple becomes the union it stands for.
        self.event: object = reduce(operator.or_, members)
        self.event_types = members
        self.on_event = on_event
        self.execute = execute
        self.on_idle = on_idle
        self.on_error = on_error
        self.retry = retry
        self.logging = logging
