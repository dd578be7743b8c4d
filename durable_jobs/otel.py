"""OpenTelemetry for durable-jobs (the ``otel`` extra): one span per handler call.

``instrument(jobs)`` makes every handler call of the app a span named
``"<kind> <job> <trigger>"`` (``"task orders send"``, ``"task orders alarm"``) with
the instance id, job, kind and trigger as attributes; a call that raises records
the exception and an error status. A client call that arms an alarm stores its trace
context with the instance, and the run the alarm causes — in whichever process —
is a child of that call's span: a trace follows the work across the alarm.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

try:
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "durable_jobs.otel needs OpenTelemetry: pip install 'durable-jobs[otel]'"
    ) from exc

from .runtime.app import DurableJobs

_PROPAGATOR = TraceContextTextMapPropagator()


class OtelTracing:
    """The ``durable_jobs.runtime.tracing.Tracing`` of OpenTelemetry."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("durable_jobs", tracer_provider=tracer_provider)

    def current(self) -> str | None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    def span(
        self, name: str, attributes: Mapping[str, str], parent: str | None
    ) -> AbstractContextManager[None]:
        return self._span(name, attributes, parent)

    @contextmanager
    def _span(self, name: str, attributes: Mapping[str, str], parent: str | None) -> Iterator[None]:
        ctx = None if parent is None else _PROPAGATOR.extract({"traceparent": parent})
        token = None if ctx is None else context.attach(ctx)
        try:
            with self.tracer.start_as_current_span(name, attributes=dict(attributes)):
                yield
        finally:
            if token is not None:
                context.detach(token)


def instrument(
    jobs: DurableJobs, tracer_provider: trace.TracerProvider | None = None
) -> OtelTracing:
    """Trace every handler call of ``jobs`` from now on; returns the tracing used."""
    tracing = OtelTracing(tracer_provider)
    jobs.runtimes.set_tracing(tracing)
    return tracing
