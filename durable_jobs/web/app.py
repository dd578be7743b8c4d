"""The routes of the HTTP API (API.md §6). Each is a few lines over ``jobs.client``.

Built on Starlette rather than FastAPI: bodies are validated by the jobs' own attrs
schemas through the client, so a pydantic layer would be a second schema system.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import JobNotFoundError, ValidationError
from ..runtime.app import DurableJobs
from .auth import BearerAuth
from .body import event_of, read_object
from .detail import instance_detail
from .encode import json_response
from .errors import HANDLERS
from .events import EventStreams
from .metrics import MetricsRoute
from .openapi import openapi_endpoint
from .pages import Pages

Action = Callable[[Any, str, dict[str, Any]], Awaitable[Any]]

# Per kind, per action: the body fields it reads and the call it makes on the handle.
ACTIONS: dict[str, dict[str, tuple[tuple[str, ...], Action]]] = {
    "continuous": {
        "start": (("input",), lambda h, id, b: h.start(id, b.get("input"))),
        "trigger": ((), lambda h, id, b: h.trigger(id)),
        "terminate": (("reason",), lambda h, id, b: h.terminate(id, b.get("reason"))),
        "pause": ((), lambda h, id, b: h.pause(id)),
        "resume": ((), lambda h, id, b: h.resume(id)),
    },
    "debounce": {
        "add": (
            ("event", "idempotency_key"),
            lambda h, id, b: h.add(id, b.get("event"), b.get("idempotency_key")),
        ),
        "flush": ((), lambda h, id, b: h.flush(id)),
        "clear": ((), lambda h, id, b: h.clear(id)),
    },
    "task": {
        "send": (
            ("event", "idempotency_key"),
            lambda h, id, b: h.send(id, b.get("event"), b.get("idempotency_key")),
        ),
        "trigger": ((), lambda h, id, b: h.trigger(id)),
        "terminate": (("reason",), lambda h, id, b: h.terminate(id, b.get("reason"))),
    },
}


def create_app(jobs: DurableJobs, token: str) -> BearerAuth:
    """The JSON HTTP API over ``jobs.client`` and the dashboard at ``/``.

    Every route but ``GET /healthz`` and the page assets needs the token: as
    ``Authorization: Bearer <token>``, or, in a browser, the cookie that opening a page
    with ``?token=<token>`` sets."""
    api = _Api(jobs)
    pages = Pages(jobs)
    routes = [
        Route("/", pages.overview, methods=["GET"]),
        Route("/instances", pages.instances, methods=["GET"]),
        Route("/instances/{instance_id:path}", pages.instance, methods=["GET"]),
        Route("/dead-letters", pages.dead_letters, methods=["GET"]),
        Route("/events", pages.events, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("durable_jobs.web", "static")]), name="static"),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/api/instances", api.instances, methods=["GET"]),
        Route("/api/instances/{instance_id:path}/history", api.history, methods=["GET"]),
        Route("/api/instances/{instance_id:path}", api.instance, methods=["GET"]),
        Route("/api/dead-letters", api.dead_letters, methods=["GET"]),
        Route("/api/dead-letters/{instance_id:path}/redrive", api.redrive, methods=["POST"]),
        Route("/api/dead-letters/{instance_id:path}", api.discard, methods=["DELETE"]),
        Route("/api/workers", api.workers, methods=["GET"]),
        Route("/api/events", EventStreams(jobs).route, methods=["GET"]),
        Route("/metrics", MetricsRoute(jobs).route, methods=["GET"]),
        Route("/api/{kind}/{job}/{id:path}/{action}", api.act, methods=["POST"]),
        Route("/api/{kind}/{job}/{id:path}", api.status, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint(jobs), methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await pages.activity.close()

    app = Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)
    return BearerAuth(app, token, ask=pages.ask_for_token)


class _Api:
    def __init__(self, jobs: DurableJobs) -> None:
        self.jobs = jobs
        self.client = jobs.client

    async def healthz(self, request: Request) -> Response:
        await self.client.instances(limit=1)  # a StorageError answers 503
        return JSONResponse({"ok": True})

    async def instances(self, request: Request) -> Response:
        q = request.query_params
        page = await self.client.instances(
            job=q.get("job"),
            kind=q.get("kind"),
            status=q.get("status"),
            limit=_int(q, "limit", 100),
            cursor=q.get("cursor"),
        )
        return json_response(page)

    async def instance(self, request: Request) -> Response:
        return JSONResponse(await instance_detail(self.jobs, request.path_params["instance_id"]))

    async def history(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        if not request.scope.get("raw_path", b"/history").endswith(b"/history"):
            # The route matched the decoded path: ``x%2Fhistory`` is the id ``x/history``.
            return JSONResponse(await instance_detail(self.jobs, f"{instance_id}/history"))
        items = await self.client.history(
            instance_id, limit=_int(request.query_params, "limit", 50)
        )
        return json_response({"items": items})

    async def act(self, request: Request) -> Response:
        kind, job, id, action = (request.path_params[k] for k in ("kind", "job", "id", "action"))
        fields, call = _action(kind, action)
        handle = getattr(self.client, kind)(job)  # JobNotFoundError for an unknown job
        body = await read_object(request, fields)
        if "event" in body:
            body["event"] = event_of(self.jobs.jobs[job], body["event"])
        return json_response(await call(handle, id, body))

    async def status(self, request: Request) -> Response:
        kind, job, id = (request.path_params[k] for k in ("kind", "job", "id"))
        if kind not in ACTIONS:
            raise JobNotFoundError(f"unknown kind {kind!r}: expected one of {', '.join(ACTIONS)}")
        return json_response(await getattr(self.client, kind)(job).status(id))

    async def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        page = await self.client.dead_letters(
            job=q.get("job"), limit=_int(q, "limit", 100), cursor=q.get("cursor")
        )
        return json_response(page)

    async def redrive(self, request: Request) -> Response:
        body = await read_object(request, ("state",))
        result = await self.client.redrive(request.path_params["instance_id"], body.get("state"))
        return json_response(result)

    async def discard(self, request: Request) -> Response:
        discarded = await self.client.discard_dead_letter(request.path_params["instance_id"])
        return JSONResponse({"discarded": discarded})

    async def workers(self, request: Request) -> Response:
        return json_response({"items": await self.client.workers()})


def _action(kind: str, action: str) -> tuple[tuple[str, ...], Action]:
    actions = ACTIONS.get(kind)
    if actions is None:
        raise JobNotFoundError(f"unknown kind {kind!r}: expected one of {', '.join(ACTIONS)}")
    if action not in actions:
        raise JobNotFoundError(
            f"{kind} jobs have no action {action!r}: expected one of {', '.join(actions)}"
        )
    return actions[action]


def _int(query: Any, name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"invalid {name} {text!r}: expected an integer") from None
