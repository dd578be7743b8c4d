"""Retrying transient storage faults: infrastructure retry, not job retry.

Each back-end names its transient errors (a locked SQLite database, a dropped
PostgreSQL connection); they are retried under a bound, then surface as a
retryable :class:`StorageError`. Anything else is a persistent fault at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import attrs
import structlog
import tenacity

from ..errors import StorageError

T = TypeVar("T")

log = structlog.get_logger("durable_jobs.storage")


@attrs.frozen(kw_only=True)
class StorageRetry:
    """How long transient faults are retried: by default up to 10 s, backing off
    exponentially from 5 ms to 0.5 s with jitter."""

    stop: tenacity.stop.stop_base = attrs.field(factory=lambda: tenacity.stop_after_delay(10))
    wait: tenacity.wait.wait_base = attrs.field(
        factory=lambda: tenacity.wait_exponential_jitter(multiplier=0.005, max=0.5)
    )

    def _retrying(self, transient: tuple[type[BaseException], ...]) -> dict[str, object]:
        return {
            "stop": self.stop,
            "wait": self.wait,
            "retry": tenacity.retry_if_exception_type(transient),
            "reraise": True,
            "before_sleep": lambda state: log.warning(
                "storage.transient_fault",
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
        }

    def call(self, what: str, fn: Callable[[], T], transient: tuple[type[BaseException], ...]) -> T:
        """Run ``fn`` (blocking), retrying ``transient`` errors."""
        with _as_storage_error(what, transient):
            try:
                return fn()  # the common case costs no retry machinery
            except transient:
                pass
            for attempt in tenacity.Retrying(**self._retrying(transient)):  # type: ignore[arg-type]
                with attempt:
                    return fn()
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(
        self, what: str, fn: Callable[[], Awaitable[T]], transient: tuple[type[BaseException], ...]
    ) -> T:
        """Run the coroutine function ``fn``, retrying ``transient`` errors."""
        with _as_storage_error(what, transient):
            try:
                return await fn()  # the common case costs no retry machinery
            except transient:
                pass
            async for attempt in tenacity.AsyncRetrying(**self._retrying(transient)):  # type: ignore[arg-type]
                with attempt:
                    return await fn()
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
