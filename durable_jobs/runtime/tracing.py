"""Where a tracing system plugs into handler calls (the ``otel`` extra is one).

The shell asks a ``Tracing`` for one span per handler call, and for the trace
context of the client call that arms an alarm, which it keeps with the instance's
counters so that the run the alarm causes continues that trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol


class Tracing(Protocol):
    def current(self) -> str | None:
        """The active trace context, serialised (a W3C ``traceparent``), if any."""

    def span(
        self, name: str, attributes: Mapping[str, str], parent: str | None
    ) -> AbstractContextManager[None]:
        """A span around one handler call; ``parent`` is a context from
        ``current``, or ``None`` for the active context."""
