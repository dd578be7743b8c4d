"""The client's errors as HTTP answers: ``{"error": "<class>", "message": "..."}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import (
    DuplicateEventError,
    ExecutionError,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    StorageError,
    ValidationError,
)
from .body import BodyTooLarge
from .encode import error_response

# Most specific first: the first class an error is an instance of gives its status.
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (ValidationError, 400),
    (ValueError, 400),  # the listings' unknown kind, status or limit
    (JobNotFoundError, 404),
    (InstanceNotFoundError, 404),
    (DuplicateEventError, 409),
    (InvalidStateError, 409),
    (ExecutionError, 422),  # the job's handler refused the request (on_event raised)
    (StorageError, 503),
    (BodyTooLarge, 413),
)


def status_for(exc: Exception) -> int:
    """The HTTP status of one of the errors in ``STATUSES``."""
    return next(code for cls, code in STATUSES if isinstance(exc, cls))


async def on_error(request: Request, exc: Exception) -> Response:
    status = status_for(exc)
    response = error_response(status, type(exc).__name__, str(exc))
    if isinstance(exc, StorageError) and exc.retryable:
        response.headers["Retry-After"] = "1"
    return response


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown route, wrong method) in the same shape."""
    assert isinstance(exc, HTTPException)
    error = "NotFound" if exc.status_code == 404 else "HTTPError"
    response = error_response(exc.status_code, error, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


HANDLERS: Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    HTTPException: on_http_error,
    **{cls: on_error for cls, _ in STATUSES},
}
