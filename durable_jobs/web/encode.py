"""Results as JSON: attrs values through cattrs, times as ISO 8601 with their offset."""

from __future__ import annotations

from typing import Any

from cattrs.preconf.json import make_converter
from starlette.responses import JSONResponse

# The preconfigured JSON converter writes datetimes with ``isoformat()``; every time
# the client returns is aware UTC, so each carries ``+00:00``. A field typed ``Any``
# (a dead letter's state) is unstructured by the class of its value.
_converter = make_converter()


def to_json(value: Any) -> Any:
    """``value`` (attrs results, lists and dicts of them) as plain JSON values."""
    return _converter.unstructure(value)


def json_response(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(to_json(value), status_code=status)


def error_response(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)
