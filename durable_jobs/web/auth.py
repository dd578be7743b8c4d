"""The token check every route but the health check and the page assets pass through.

A program sends ``Authorization: Bearer <token>``. A browser opens a page once with
``?token=``: the answer keeps the token in an HttpOnly, SameSite=Strict cookie and
sends the browser on to the same address without it, so it stays out of the history
and of every later URL. The cookie alone never allows a state change asked for from
another origin: SameSite keeps it off requests from other sites, and a POST or DELETE
whose ``Origin`` (or ``Sec-Fetch-Site``) is not this server is refused with 403 — a
page on another port of the same host is another origin but the same site.
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Callable

from starlette.datastructures import Headers, QueryParams
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .encode import error_response

OPEN_PATHS = frozenset({"/healthz"})
OPEN_PREFIXES = ("/static/",)
"""The dashboard's stylesheet and script: the same for everyone, no data in them."""
COOKIE = "durable_jobs_token"
"""The cookie's name, followed by the port the server listens on: cookies are kept per
host, not per port, and two dashboards on one host would otherwise log each other out."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Page = Callable[[Scope, str], Response]
"""Renders the page that asks a browser for the token (scope, message)."""


class BearerAuth:
    """Refuses, with 401, a request without the token (header or cookie), and with
    403 a state change that the cookie carries from another origin."""

    def __init__(self, app: ASGIApp, token: str, ask: Page | None = None) -> None:
        if not token:
            raise ValueError("token must be a non-empty string: the API would be open to all")
        self.app = app
        self._token = token.encode()
        self._ask = ask

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_open(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = QueryParams(scope.get("query_string", b"")).get("token")
        if given is not None and self._ask is not None and _is_page_visit(scope, headers):
            response = self._welcome(scope, given)
        elif self._matches(_bearer(headers.get("authorization"))):
            await self.app(scope, receive, send)
            return
        elif self._matches(_cookie(headers.get("cookie"), cookie_name(scope))):
            if scope["method"] in SAFE_METHODS or _same_origin(headers):
                await self.app(scope, receive, send)
                return
            response = error_response(
                403, "Forbidden", "a state change must come from the dashboard's own origin"
            )
        else:
            response = self._refuse(scope, headers)
        await response(scope, receive, send)

    def _welcome(self, scope: Scope, given: str) -> Response:
        """A page opened with ``?token=``: the cookie, and the address without it."""
        if not self._matches(given.encode()):
            assert self._ask is not None
            return self._ask(scope, "The token in the address is not this server's.")
        root = scope.get("root_path") or ""
        rest = urllib.parse.urlencode(
            [(k, v) for k, v in QueryParams(scope["query_string"]).multi_items() if k != "token"]
        )
        # A path on this server whatever the request's: not the Host header's choice,
        # and not ``//elsewhere`` (or ``/\\elsewhere``), which browsers read as a host.
        # Built from the path as sent, so that an escaped ``?``, ``#`` or ``/`` in an id
        # stays escaped.
        path = root + "/" + _raw_route_path(scope).lstrip("/\\")
        response = RedirectResponse(path + (f"?{rest}" if rest else ""), 303)
        response.set_cookie(
            cookie_name(scope),
            given,
            # A cookie path matches itself and what is below it: ``/jobs`` and ``/jobs/``.
            path=root or "/",
            httponly=True,
            samesite="strict",
            secure=scope.get("scheme") == "https",
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _refuse(self, scope: Scope, headers: Headers) -> Response:
        message = "send the API token as 'Authorization: Bearer <token>'"
        if self._ask is not None and "text/html" in headers.get("accept", ""):
            response = self._ask(scope, "This dashboard needs its token.")
            response.status_code = 401
        else:
            response = error_response(401, "Unauthorized", message)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    def _matches(self, given: bytes | None) -> bool:
        # Constant time, so that the token cannot be guessed byte by byte from timings.
        return given is not None and hmac.compare_digest(given, self._token)


def _route_path(scope: Scope) -> str:
    """The path below where the app is mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    return path[len(root) :] if root and path.startswith(root) else path


def _raw_route_path(scope: Scope) -> str:
    """The path below the mount as the request sent it, escapes kept."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return urllib.parse.quote(_route_path(scope))
    path = raw.decode("latin-1")
    root = urllib.parse.quote(scope.get("root_path") or "")
    return path[len(root) :] if root and path.startswith(root) else path


def _is_page_visit(scope: Scope, headers: Headers) -> bool:
    return scope["method"] in SAFE_METHODS and "text/html" in headers.get("accept", "")


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _bearer(value: str | None) -> bytes | None:
    if value is None or not value.startswith("Bearer "):
        return None
    return value[len("Bearer ") :].encode()


def cookie_name(scope: Scope) -> str:
    """The token cookie's name for the server that answers ``scope``."""
    server = scope.get("server")
    return f"{COOKIE}_{server[1]}" if server and server[1] is not None else COOKIE


def _cookie(value: str | None, name: str) -> bytes | None:
    # Leniently: the header also carries the cookies of every other server on this
    # host, and one malformed among them must not hide the dashboard's.
    token = cookie_parser(value).get(name) if value else None
    return None if token is None else token.encode()


def _same_origin(headers: Headers) -> bool:
    """Whether a browser says the request comes from a page of this server. Browsers
    send ``Sec-Fetch-Site``, which no page can set, and it is read alone: a proxy in
    front may rewrite ``Host``. Without it, ``Origin`` (sent on every POST and DELETE)
    must name this host."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False  # a browser that sent neither is not trusted
    return urllib.parse.urlsplit(origin).netloc == headers.get("host")
