"""Retrying transient storage faults: infrastructure retry, not job retry.

Each back-end names its transient errors (a locked SQLite database, a dropped
PostgreSQL connection); they are retried under a bound, then surface as a
retryable ``StorageError``. Anything else is a persistent fault at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import attrs
import tenacity

from ..errors import StorageError
from ..logs import Outage, get_logger

T = TypeVar("T")

log = get_logger("durable_jobs.storage")


@attrs.frozen(kw_only=True)
class StorageRetry:
    """How long transient faults are retried: by default up to 10 s, backing off
    exponentially from 5 ms to 0.5 s with jitter.

    A run of transient faults is logged once, however many retries and calls it
    spans: ``storage.unavailable`` (a warning) at the first, ``storage.recovered``
    (an info) when a kind of call that failed succeeds again.
    """

    stop: tenacity.stop.stop_base = attrs.field(factory=lambda: tenacity.stop_after_delay(10))
    wait: tenacity.wait.wait_base = attrs.field(
        factory=lambda: tenacity.wait_exponential_jitter(multiplier=0.005, max=0.5)
    )
    outage: Outage = attrs.field(init=False, factory=lambda: Outage(log), eq=False, repr=False)
    """The run of faults under way, if any; a store's other connections report to it too."""

    def _retrying(self, what: str, transient: tuple[type[BaseException], ...]) -> dict[str, object]:
        return {
            "stop": self.stop,
            "wait": self.wait,
            "retry": tenacity.retry_if_exception_type(transient),
            "reraise": True,
            "before_sleep": lambda state: self.outage.failed(
                what,
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
        }

    def call(self, what: str, fn: Callable[[], T], transient: tuple[type[BaseException], ...]) -> T:
        """Run ``fn`` (blocking), retrying ``transient`` errors."""
        with _as_storage_error(what, transient):
            try:
                result = fn()  # the common case costs no retry machinery
            except transient:
                pass
            else:
                self.outage.succeeded(what)
                return result
            for attempt in tenacity.Retrying(**self._retrying(what, transient)):  # type: ignore[arg-type]
                with attempt:
                    result = fn()
                    self.outage.succeeded(what)
                    return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(
        self, what: str, fn: Callable[[], Awaitable[T]], transient: tuple[type[BaseException], ...]
    ) -> T:
        """Run the coroutine function ``fn``, retrying ``transient`` errors."""
        with _as_storage_error(what, transient):
            try:
                result = await fn()  # the common case costs no retry machinery
            except transient:
                pass
            else:
                self.outage.succeeded(what)
                return result
            async for attempt in tenacity.AsyncRetrying(**self._retrying(what, transient)):  # type: ignore[arg-type]
                with attempt:
                    result = await fn()
                    self.outage.succeeded(what)
                    return result
        raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _as_storage_error(what: str, transient: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Whatever escapes the retries becomes a StorageError, retryable if it was transient."""
    try:
        yield
    except StorageError:
        raise
    except transient as exc:
        raise StorageError(f"{what} failed after retries: {exc}", retryable=True) from exc
    except Exception as exc:
        raise StorageError(f"{what} failed: {exc}") from exc
