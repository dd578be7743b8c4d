"""Logging through the standard ``logging`` module, so the application decides.

Every logger of the library is a structlog logger wrapping ``logging.getLogger(name)``
under ``durable_jobs.`` (``durable_jobs.worker``, ``durable_jobs.job.<job name>``…).
Its processors are its own: structlog is never configured globally, which would take
over the application's own structlog setup, and the application need not configure
structlog at all. The stdlib logger's level and handlers decide what is written where;
a job's ``logging=`` setting is a floor on top of that.

A record's message is ``event key=value …``, readable under a plain
``logging.basicConfig()``; the same fields ride on the record as attributes
(``record.event``, ``record.instance_id``…) for JSON formatters and filters, and the
exception of a failure as ``exc_info``. A field named like a record attribute
(``name``, ``msg``…) is set as ``name_``, ``msg_``: logging refuses to overwrite them.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from structlog.typing import EventDict, FilteringBoundLogger

if TYPE_CHECKING:
    from .adapters.protocols import Clock

ROOT = "durable_jobs"

# The HOWTO's advice for libraries: records nobody asked for go nowhere, rather
# than to stderr through logging's last resort.
logging.getLogger(ROOT).addHandler(logging.NullHandler())

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS |= {"error": logging.ERROR, "critical": logging.CRITICAL}

# Names a LogRecord has already: ``extra`` may not set them (makeRecord refuses).
_TAKEN = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_PLAIN = re.compile(r"[^\s'\"=]+")


class _StdlibGate(structlog.BoundLoggerBase):
    """Asks the stdlib logger first, so a call its level filters out costs one cached
    ``isEnabledFor`` and no event dict."""

    _logger: logging.Logger

    def _proxy_to_logger(self, method_name: str, event: str | None = None, **kw: Any) -> Any:
        if self._logger.isEnabledFor(_LEVELS[method_name]):
            return super()._proxy_to_logger(method_name, event, **kw)
        return None


@functools.cache
def _wrapper_class(floor: int) -> type[FilteringBoundLogger]:
    # structlog's filtering class turns calls below ``floor`` into a bare ``return``.
    filtering = structlog.make_filtering_bound_logger(floor)
    name = f"DurableJobsLoggerAt{logging.getLevelName(floor).title()}"
    return type(name, (filtering, _StdlibGate), {})


def get_logger(name: str, *, floor: int = logging.DEBUG, clock: Clock | None = None) -> Any:
    """A structlog logger writing to the stdlib logger ``name``: what the stdlib
    logger's level lets through, and nothing below ``floor``. With ``clock``, every
    record carries ``timestamp``: the clock's time, ISO 8601 (the record's own
    ``created`` is always the wall clock's)."""
    processors: list[Any] = [] if clock is None else [_Timestamp(clock)]
    processors.append(_to_record)
    return structlog.wrap_logger(
        logging.getLogger(name), processors=processors, wrapper_class=_wrapper_class(floor)
    ).bind()  # a logger now, not a lazy proxy that would build one on every call


class _Timestamp:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault(
            "timestamp", datetime.fromtimestamp(self._clock.now(), UTC).isoformat()
        )
        return event_dict


def _to_record(_: Any, __: str, event_dict: EventDict) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments of the stdlib logging call."""
    call = {key: event_dict.pop(key) for key in ("exc_info", "stack_info") if key in event_dict}
    event = str(event_dict.pop("event"))
    extra = {"event": event}
    extra.update((f"{k}_" if k in _TAKEN else k, v) for k, v in event_dict.items())
    call["extra"] = extra
    if not event_dict:
        return (event,), call  # no arguments: logging leaves a "%" in it alone
    # One template per event, as aggregators that group records by it expect; the
    # fields are rendered when a handler formats the record, if one ever does.
    return (event.replace("%", "%%") + " %s", _Fields(event_dict)), call


class _Fields:
    __slots__ = ("fields",)

    def __init__(self, fields: EventDict) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={_value(v)}" for k, v in self.fields.items())


def _value(value: object) -> str:
    text = str(value)
    return text if _PLAIN.fullmatch(text) else repr(text)


class Outage:
    """Tells a run of storage faults once: a warning at the first
    (``storage.unavailable``), debug lines while it lasts, and an info
    (``storage.recovered``) when something that failed during it works again.

    Each kind of call (``source``: a store's ``what``, ``"listen"``) reports on its
    own. Successes of calls that never failed end nothing: a database whose reads
    work while its writes are locked out is still failing, and saying it recovered
    at every read would start a new outage at every write. Safe to share between
    threads."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._failed: set[str] = set()
        self._faults = 0

    def failed(self, source: str, **fields: Any) -> None:
        with self._lock:
            first = not self._failed
            self._failed.add(source)
            self._faults += 1
        if first:
            self._log.warning("storage.unavailable", source=source, **fields)
        else:
            self._log.debug("storage.still_unavailable", source=source, **fields)

    def succeeded(self, source: str) -> None:
        if source not in self._failed:  # every successful storage call asks: no lock then
            return
        with self._lock:
            if source not in self._failed:
                return
            faults, self._faults = self._faults, 0
            self._failed.clear()
        self._log.info("storage.recovered", source=source, faults=faults)


def storage_failed(log: Any, event: str, error: Exception) -> None:
    """Log a failed store call of a background loop: at debug when the store may
    answer again (it said so once, as ``storage.unavailable``), else as a warning."""
    if getattr(error, "retryable", False):
        log.debug(event, error=str(error))
    else:
        log.warning(event, error=str(error))


def configure_cli(level: str | None) -> None:
    """The ``durable-jobs`` command's logging: records to stderr, durable-jobs' at
    ``level`` (default ``INFO``), unless the loaded app configured logging itself;
    then only an explicit ``level`` changes durable-jobs' level."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        level = level or "INFO"
    if level:
        try:
            logging.getLogger(ROOT).setLevel(level.upper())
        except ValueError:
            raise SystemExit(
                f"error: unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            ) from None
