"""``GET /openapi.json``: a valid OpenAPI 3.1 document of exactly the routes served,
checked against the real server by schemathesis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import attrs
import httpx
import pytest
import schemathesis
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Mount, Route

from durable_jobs.web import create_app
from durable_jobs.web.openapi import _Schemas, build_document
from tests.test_web import AUTH, TOKEN, make_jobs, serve

METHODS = {"get", "post", "delete", "put", "patch"}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    yield from serve(create_app(make_jobs(), token=TOKEN))


@pytest.fixture(scope="module")
def document(http: httpx.Client) -> dict[str, Any]:
    answer = http.get("/openapi.json", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    doc: dict[str, Any] = answer.json()
    return doc


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document == build_document(make_jobs())
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()


def test_document_needs_the_token(http: httpx.Client) -> None:
    answer = http.get("/openapi.json")
    assert (answer.status_code, answer.json()["error"]) == (401, "Unauthorized")


def test_every_route_but_healthz_needs_the_bearer_token(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"bearer": []}]
    open_ops = {
        (path, method)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if op.get("security") == []
    }
    assert open_ops == {("/healthz", "get"), ("/static/{asset}", "get")}


def test_each_served_route_is_documented_and_each_documented_one_served(
    document: dict[str, Any],
) -> None:
    """A documented operation, its path parameters filled in, must reach a route of
    the app that takes its method; every route must be reached by one at least."""
    routes = [r for r in create_app(make_jobs(), token=TOKEN).app.routes if isinstance(r, Route)]
    # The assets are a mount of static files: GET only.
    mounts = [r for r in create_app(make_jobs(), token=TOKEN).app.routes if isinstance(r, Mount)]
    reached: set[tuple[str, str]] = set()
    for path, item in document["paths"].items():
        for method in set(item) & METHODS:
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            route: Route | Mount | None = next(
                (r for r in routes if r.path_regex.match(concrete) and method.upper() in r.methods),
                None,
            )
            if route is None and method == "get":
                route = next((m for m in mounts if m.path_regex.match(concrete)), None)
            assert route is not None, f"{method.upper()} {path} is documented but not served"
            reached.add((route.path, method.upper()))
    served = {(r.path, m) for r in routes for m in r.methods or () if m != "HEAD"}
    served |= {(m.path, "GET") for m in mounts}
    assert served - reached == set(), "served but not documented"


def test_action_paths_name_the_app_s_jobs_of_that_kind(document: dict[str, Any]) -> None:
    params = document["paths"]["/api/task/{job}/{id}/send"]["post"]["parameters"]
    assert params[0]["schema"]["enum"] == ["ledger", "orders"]
    errors = set(document["paths"]["/api/task/{job}/{id}/send"]["post"]["responses"]) - {"200"}
    assert errors == {"400", "401", "404", "409", "413", "422", "503"}


def test_error_responses_share_the_error_schema(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"]
    for path, item in document["paths"].items():
        for op in item.values():
            for code, response in op["responses"].items():
                content = response.get("content", {})
                if "application/json" not in content:
                    # The event stream and the metrics answer text, the pages HTML.
                    assert code == "200" or not path.startswith("/api/"), (path, code)
                    continue
                schema = content["application/json"]["schema"]
                assert (schema == {"$ref": "#/components/schemas/Error"}) == (code != "200")


def test_a_reason_that_is_not_a_string_is_400(http: httpx.Client) -> None:
    answer = http.post("/api/task/orders/r1/terminate", json={"reason": {}}, headers=AUTH)
    assert (answer.status_code, answer.json()["error"]) == (400, "ValidationError")


@attrs.frozen
class Inner:
    n: int


@attrs.frozen
class Sample:
    text: str
    ratio: float
    flag: bool
    at: datetime
    color: Literal["red", "blue"]
    names: tuple[str, ...]
    inners: list[Inner]
    maybe: Inner | None = None
    anything: Any = None


def test_schemas_derive_from_attrs_fields() -> None:
    schemas = _Schemas()
    assert schemas.ref(Sample) == {"$ref": "#/components/schemas/Sample"}
    sample = schemas.components["Sample"]
    inner = {"$ref": "#/components/schemas/Inner"}
    assert sample["properties"] == {
        "text": {"type": "string"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "at": {"type": "string", "format": "date-time"},
        "color": {"enum": ["red", "blue"]},
        "names": {"type": "array", "items": {"type": "string"}},
        "inners": {"type": "array", "items": inner},
        "maybe": {"anyOf": [inner, {"type": "null"}]},
        "anything": {},
    }
    assert sample["required"] == list(sample["properties"])  # cattrs writes defaults too
    assert schemas.components["Inner"]["properties"] == {"n": {"type": "integer"}}


@attrs.frozen
class Unsupported:
    mapping: dict[str, int]


def test_a_type_without_a_schema_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="dict"):
        _Schemas().ref(Unsupported)


# The document as built for these jobs: the test above shows it is the one served.
# The event stream does not end by itself: its own tests (test_web_events.py) read it.
schema = schemathesis.openapi.from_dict(build_document(make_jobs())).exclude(path="/api/events")
schema.config.generation.update(modes=[GenerationMode.POSITIVE])
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
def test_real_server_conforms_to_its_document(case: Any, http: httpx.Client) -> None:
    """No 500; every status, content type and body as documented. Not checked: that
    each schema-valid request is accepted and each invalid one refused, as some rules
    are not JSON Schema (an id of at most 255 UTF-8 bytes without control characters,
    the statuses of a kind; an id may hold '/', so ``GET .../start`` is the status of
    the id ``x/start``), and that unknown query parameters are refused (they are
    ignored)."""
    case.call_and_validate(base_url=str(http.base_url), headers=AUTH, checks=CHECKS)
