"""Bearer-token check that every route but the health check passes through."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from .encode import error_response

OPEN_PATHS = frozenset({"/healthz"})


class BearerAuth:
    """Refuses, with 401, a request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("token must be a non-empty string: the API would be open to all")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401, "Unauthorized", "send the API token as 'Authorization: Bearer <token>'"
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        # Constant time, so that the token cannot be guessed byte by byte from timings.
        return hmac.compare_digest(given, self._expected)
