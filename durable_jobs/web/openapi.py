"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

The result schemas are derived from the attrs result classes, so a field added there
shows here without a second edit. The path table is written out: it mirrors the routes
of ``app.py``, and a test holds the two together in both directions.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib.metadata import version
from typing import Any, Literal, TypeVar

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..runtime.app import DurableJobs
from ..runtime.ids import KINDS
from ..runtime.listing import STATUSES
from ..runtime.results import (
    AddResult,
    ClearResult,
    ContinuousStatus,
    DeadLetter,
    DebounceStatus,
    Execution,
    FlushResult,
    InstanceInfo,
    Page,
    PauseResult,
    RedriveResult,
    ResumeResult,
    SendResult,
    StartResult,
    TaskStatus,
    TerminateResult,
    TriggerResult,
    WorkerInfo,
)

Schema = dict[str, Any]

# What each action answers; its body fields come from app.ACTIONS.
ACTION_RESULTS: Mapping[str, Mapping[str, type]] = {
    "continuous": {
        "start": StartResult,
        "trigger": TriggerResult,
        "terminate": TerminateResult,
        "pause": PauseResult,
        "resume": ResumeResult,
    },
    "debounce": {"add": AddResult, "flush": FlushResult, "clear": ClearResult},
    "task": {"send": SendResult, "trigger": TriggerResult, "terminate": TerminateResult},
}
STATUS_RESULTS: Mapping[str, type] = {
    "continuous": ContinuousStatus,
    "debounce": DebounceStatus,
    "task": TaskStatus,
}
BODY_FIELDS: Mapping[str, Schema] = {
    "input": {"description": "the job's input, as the JSON of its attrs class"},
    "reason": {"type": ["string", "null"]},
    "event": {
        "description": "the event as the JSON of its attrs class; "
        'an event of a union names its class: {"type": "<ClassName>", ...fields}'
    },
    "idempotency_key": {"type": ["string", "null"]},
    "state": {"description": "the state to redrive with, as the JSON of its attrs class"},
}
ERRORS: Mapping[int, str] = {
    400: "invalid input or a body that is not JSON (ValidationError)",
    401: "no or wrong 'Authorization: Bearer <token>'",
    404: "unknown job, kind, action or instance",
    409: "duplicate idempotency key or an action the instance's state refuses",
    413: "request body over the limit",
    422: "the job's handler refused the request (ExecutionError)",
    501: "an optional part is not installed (the metrics extra)",
    503: "the store did not answer (StorageError); 'Retry-After' when retrying may help",
}
_GET_ERRORS = (400, 401, 404, 503)
_POST_ERRORS = (400, 401, 404, 409, 413, 422, 503)


def openapi_endpoint(jobs: DurableJobs) -> Callable[[Request], Any]:
    """The ``GET /openapi.json`` endpoint; the document is built once, here."""
    body = JSONResponse(build_document(jobs)).body

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return openapi


def build_document(jobs: DurableJobs) -> Schema:
    from .app import ACTIONS  # app.py imports this module to serve the document

    schemas = _Schemas()
    paths = _fixed_paths(schemas)
    for kind, actions in ACTIONS.items():
        job = _job_parameter(jobs, kind)
        paths[f"/api/{kind}/{{job}}/{{id}}"] = {
            "get": _op(
                f"The {kind} handle's status",
                schemas.ref(STATUS_RESULTS[kind]),
                params=[job, _path("id")],
            )
        }
        for action, (fields, _) in actions.items():
            paths[f"/api/{kind}/{{job}}/{{id}}/{action}"] = {
                "post": _op(
                    f"{kind} {action}",
                    schemas.ref(ACTION_RESULTS[kind][action]),
                    params=[job, _path("id")],
                    body=_body(fields),
                )
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "durable-jobs HTTP API", "version": version("durable-jobs")},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _fixed_paths(schemas: _Schemas) -> dict[str, Schema]:
    ref = schemas.ref
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000})
    cursor = _query("cursor", {"type": "string"})
    job = _query("job", {"type": "string"})
    instance_id = _path("instance_id")
    items = {
        name: schemas.named(name, _object({"items": {"type": "array", "items": ref(cls)}}))
        for name, cls in (("History", Execution), ("Workers", WorkerInfo))
    }
    kind = _query("kind", {"enum": list(KINDS)})
    status = _query("status", {"enum": sorted({s for k in STATUSES.values() for s in k})})
    page_cursor = _query("cursor", {"type": "string"})
    return {
        "/": {"get": _page("The dashboard: the overview")},
        "/instances": {"get": _page("Instances", [job, kind, status, page_cursor])},
        "/instances/{instance_id}": {"get": _page("One instance", [instance_id])},
        "/dead-letters": {"get": _page("Dead letters", [job, page_cursor])},
        "/events": {"get": _page("The live feed of events")},
        "/static/{asset}": {
            "get": {
                "summary": "The dashboard's stylesheet and script",
                "parameters": [_path("asset")],
                "security": [],
                "responses": {
                    "200": {"description": "OK"},
                    "404": {"description": "No such asset"},
                },
            }
        },
        "/healthz": {"get": _healthz()},
        "/openapi.json": {"get": _op("This document", {"type": "object"}, errors=(401,))},
        "/api/instances": {
            "get": _op(
                "Instances, newest first, a page at a time",
                ref(Page[InstanceInfo]),
                params=[
                    job,
                    kind,
                    status,
                    limit,
                    cursor,
                ],
            )
        },
        "/api/instances/{instance_id}": {
            "get": _op(
                "An instance with its state, counters and dead letter",
                schemas.named("InstanceDetail", _detail(schemas)),
                params=[instance_id],
            )
        },
        "/api/instances/{instance_id}/history": {
            "get": _op(
                "Its executions, newest first", items["History"], params=[instance_id, limit]
            )
        },
        "/api/dead-letters": {
            "get": _op("Dead letters", ref(Page[DeadLetter]), params=[job, limit, cursor])
        },
        "/api/dead-letters/{instance_id}/redrive": {
            "post": _op(
                "Redrive a dead letter",
                ref(RedriveResult),
                params=[instance_id],
                body=_body(("state",)),
            )
        },
        "/api/dead-letters/{instance_id}": {
            "delete": _op(
                "Discard a dead letter",
                _object({"discarded": {"type": "boolean"}}),
                params=[instance_id],
            )
        },
        "/api/workers": {"get": _op("Live workers", items["Workers"])},
        "/api/events": {
            "get": _text(
                "The event log as Server-Sent Events, from now on, or after the event "
                "the 'Last-Event-ID' header or 'after' names; at most 32 streams at once",
                "text/event-stream",
                params=[
                    _query("instance_id", {"type": "string"}),
                    job,
                    _query("after", {"type": "integer", "minimum": 0}),
                ],
                errors=(400, 401, 404, 503),
            )
        },
        "/metrics": {
            "get": _text(
                "Prometheus metrics, text format", "text/plain", params=[], errors=(401, 501)
            )
        },
    }


def _text(summary: str, media: str, *, params: list[Schema], errors: tuple[int, ...]) -> Schema:
    """An operation answering text rather than JSON (its errors are JSON)."""
    op = _op(summary, {"type": "string"}, params=params, errors=errors)
    op["responses"]["200"]["content"] = {media: {"schema": {"type": "string"}}}
    return op


def _page(summary: str, params: list[Schema] | None = None) -> Schema:
    """A dashboard page: HTML, its errors too. A browser may open it once with
    ``?token=``, which answers 303 to the same address with the token in a cookie."""
    html = {"text/html": {"schema": {"type": "string"}}}
    token = _query("token", {"type": "string"})
    responses: Schema = {
        "200": {"description": "OK", "content": html},
        "303": {"description": "The token is now in a cookie: go on without it"},
    }
    for code in (400, 404, 503):
        responses[str(code)] = {"description": ERRORS[code], "content": html}
    # A browser (Accept: text/html) gets a page asking for the token; a program JSON.
    error = _json({"$ref": "#/components/schemas/Error"})
    responses["401"] = {"description": ERRORS[401], "content": html | error}
    return {"summary": summary, "parameters": [*(params or []), token], "responses": responses}


def _healthz() -> Schema:
    ok = _object({"ok": {"const": True}})
    return _op("The store answers", ok, errors=(503,)) | {"security": []}


def _detail(schemas: _Schemas) -> Schema:
    info = schemas.schema(InstanceInfo)
    extra = {
        "state": {"description": "the instance's state as JSON, null before its first"},
        "counters": {"type": ["object", "null"]},
        "dead_letter": {"anyOf": [schemas.ref(DeadLetter), {"type": "null"}]},
    }
    return _object({**info["properties"], **extra})


def _job_parameter(jobs: DurableJobs, kind: str) -> Schema:
    names = sorted(name for name, d in jobs.jobs.items() if d.kind == kind)
    return _path("job", {"type": "string", "enum": names} if names else None)


def _op(
    summary: str,
    result: Schema,
    *,
    params: list[Schema] | None = None,
    body: Schema | None = None,
    errors: tuple[int, ...] | None = None,
) -> Schema:
    codes = errors if errors is not None else _POST_ERRORS if body is not None else _GET_ERRORS
    responses: Schema = {"200": {"description": "OK", "content": _json(result)}}
    error = {"$ref": "#/components/schemas/Error"}
    for code in codes:
        responses[str(code)] = {"description": ERRORS[code], "content": _json(error)}
    op: Schema = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": False, "content": _json(body)}
    return op


def _body(fields: tuple[str, ...]) -> Schema:
    return {
        "type": "object",
        "properties": {f: BODY_FIELDS[f] for f in fields},
        "additionalProperties": False,
    }


def _path(name: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema or {"type": "string", "minLength": 1, "pattern": "^[^\\n]+$"},
    }


def _query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _object(properties: Schema) -> Schema:
    # cattrs writes every field, defaults included, so each one is required.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


class _Schemas:
    """JSON Schemas of attrs classes (and generic aliases of them such as
    ``Page[InstanceInfo]``), each registered once under ``components.schemas``."""

    def __init__(self) -> None:
        error = {"error": {"type": "string"}, "message": {"type": "string"}}
        self.components: dict[str, Schema] = {"Error": _object(error)}

    def named(self, name: str, schema: Schema) -> Schema:
        self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def ref(self, cls: Any) -> Schema:
        origin = typing.get_origin(cls) or cls
        args = typing.get_args(cls)
        name = "".join(a.__name__ for a in args) + origin.__name__
        if name not in self.components:
            self.components[name] = self.schema(cls)
        return {"$ref": f"#/components/schemas/{name}"}

    def schema(self, cls: Any) -> Schema:
        origin = typing.get_origin(cls) or cls
        bound = dict(zip(getattr(origin, "__parameters__", ()), typing.get_args(cls), strict=True))
        hints = typing.get_type_hints(origin)
        fields = {a.name: self.of(hints[a.name], bound) for a in attrs.fields(origin)}
        return _object(fields)

    def of(self, tp: Any, bound: Mapping[Any, Any]) -> Schema:
        """``tp`` as JSON Schema, as cattrs' JSON converter writes it."""
        if isinstance(tp, TypeVar):
            return self.of(bound[tp], bound)
        simple = _SIMPLE.get(tp)
        if simple is not None:
            return dict(simple)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.of(a, bound) for a in args]}
        if origin is list or (origin is tuple and args[1:] == (...,)):
            return {"type": "array", "items": self.of(args[0], bound)}
        if attrs.has(origin or tp):
            return self.ref(tp)
        raise TypeError(f"no JSON Schema for {tp!r}: add it to durable_jobs/web/openapi.py")


_SIMPLE: Mapping[Any, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    datetime: {"type": "string", "format": "date-time"},
    Any: {},
}
