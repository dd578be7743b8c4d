"""``GET /metrics``: the app's Prometheus metrics, when ``prometheus_client`` is there."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..runtime.app import DurableJobs
from .encode import error_response

MISSING = "GET /metrics needs prometheus_client: install the metrics extra, " + (
    "pip install 'durable-jobs[metrics]'"
)


class MetricsRoute:
    """Instruments the app when the API is made, not at the first scrape, so that
    executions before that scrape are counted too."""

    def __init__(self, jobs: DurableJobs) -> None:
        self._metrics: Any = None
        try:
            from ..metrics import instrument
        except ImportError:
            return
        self._metrics = instrument(jobs)

    async def route(self, request: Request) -> Response:
        if self._metrics is None:
            return error_response(501, "MissingExtra", MISSING)
        from prometheus_client import CONTENT_TYPE_LATEST

        await self._metrics.refresh()  # a StorageError answers 503
        return Response(self._metrics.render(), media_type=CONTENT_TYPE_LATEST)
