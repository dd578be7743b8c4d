"""What a failed handler call leaves behind: its error, as stored and as returned."""

from __future__ import annotations

import traceback
from typing import Any

from .clock import to_datetime
from .results import ErrorInfo

MAX_TRACEBACK = 16_000
"""Characters of a traceback kept; the end, where the error was raised, is kept."""


def failure(error: BaseException, at: float, attempt: int) -> dict[str, Any]:
    """The JSON-ready record of ``error``, raised at ``at`` on ``attempt``."""
    formatted = "".join(traceback.format_exception(error))
    if len(formatted) > MAX_TRACEBACK:
        formatted = "...\n" + formatted[-MAX_TRACEBACK:]
    return {
        "type": type(error).__name__,
        "message": str(error),
        "traceback": formatted,
        "at": at,
        "attempt": attempt,
    }


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def error_info(stored: dict[str, Any] | str | None) -> ErrorInfo | None:
    """The ``ErrorInfo`` of a stored failure; a bare string is what versions
    before ErrorInfo stored (``"Type: message"``)."""
    if stored is None:
        return None
    if isinstance(stored, str):
        kind, _, message = stored.partition(": ")
        return ErrorInfo(kind, message, "", to_datetime(0), 0)
    return ErrorInfo(
        type=str(stored.get("type", "")),
        message=str(stored.get("message", "")),
        traceback=str(stored.get("traceback", "")),
        at=to_datetime(float(stored.get("at", 0))),
        attempt=int(stored.get("attempt", 0)),
    )
