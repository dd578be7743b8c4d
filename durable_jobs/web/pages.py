"""The dashboard: server-rendered pages over the same client calls as the API.

Each page is HTML rendered by Jinja2 (autoescaped: every id, state and message is
shown as text). ``static/dashboard.js`` keeps it live: it listens to
``/api/events`` and re-reads the page's live parts, and sends the actions to the API.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

from ..adapters.records import StoreStats
from ..errors import InstanceNotFoundError
from ..runtime.app import DurableJobs
from ..runtime.clock import to_datetime
from ..runtime.events import JobEvent
from ..runtime.ids import split_instance_id
from ..runtime.listing import STATUSES
from ..runtime.results import DeadLetter
from .activity import Activity
from .detail import instance_detail
from .encode import to_json
from .errors import STATUSES as ERROR_STATUSES
from .errors import status_for

PAGE_SIZE = 50
POLL = 15.0
"""Seconds between re-reads of a page in view, for what changes without an event."""
SHARED_FOR = 1.0
"""Seconds for which overview loads share one read of the store's counts."""
FEED_SIZE = 50
"""Events the feed page starts with, the newest of the log."""

# Pages run no inline script and load nothing from elsewhere; no site may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[["Pages", Request], Awaitable[Response]]


@attrs.frozen
class JobRow:
    """One job on the overview: its instances by status word and what needs a look."""

    name: str
    kind: str
    registered: bool
    by_status: dict[str, int]
    due: int = 0
    overdue: int = 0
    dead_letters: int = 0
    executions: int = 0
    failures: int = 0

    @property
    def instances(self) -> int:
        return sum(self.by_status.values())


def _page(handler: Handler) -> Handler:
    """Errors of a page as a page with the API's status for them."""

    @functools.wraps(handler)
    async def page(self: Pages, request: Request) -> Response:
        try:
            return await handler(self, request)
        except tuple(cls for cls, _ in ERROR_STATUSES) as exc:
            status = status_for(exc)
            return self.render(request, "error.html", status=status, error=exc, code=status)

    return page


class Pages:
    def __init__(self, jobs: DurableJobs) -> None:
        self.jobs = jobs
        self.activity = Activity(jobs)
        self._counted: tuple[float, float, asyncio.Future[StoreStats]] | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("durable_jobs.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            when=_when, ago=self._ago, path=_path, pretty=_pretty, query=_query
        )

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            base=request.scope.get("root_path", ""),
            request=request,
            poll_ms=round(POLL * 1000),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def ask_for_token(self, scope: Scope, message: str) -> Response:
        return self.render(Request(scope), "unauthorized.html", status=401, message=message)

    @_page
    async def overview(self, request: Request) -> Response:
        runtimes = self.jobs.runtimes
        await runtimes.open()
        now = self.jobs.clock.now()
        stats = await self._stats(now)
        workers = await self.jobs.client.workers()
        served = frozenset(job for worker in workers for job in worker.jobs)
        counts = await self.activity.counts()
        rows = self._job_rows(stats, served, counts.by_job)
        return self.render(
            request,
            "overview.html",
            rows=rows,
            totals=JobRow(
                "all",
                "",
                True,
                {"instances": sum(r.instances for r in rows)},
                due=sum(r.due for r in rows),
                overdue=sum(r.overdue for r in rows),
                dead_letters=sum(r.dead_letters for r in rows),
                executions=sum(r.executions for r in rows),
                failures=sum(r.failures for r in rows),
            ),
            minutes=counts.minutes,
            peak=max([1, *(m.executions + m.failures for m in counts.minutes)]),
            since=counts.since,
            complete=counts.complete,
            workers=workers,
            now=now,
        )

    async def _stats(self, now: float) -> StoreStats:
        """The store's counts, read at most once within ``SHARED_FOR`` seconds: each open
        overview re-reads itself once a second under load, and the count reads every
        instance. Shared only while the app's clock has not moved on either (a test's
        fake clock jumps)."""
        counted = self._counted
        age = time.monotonic() - counted[0] if counted else SHARED_FOR
        if (
            counted is None
            or not (age < SHARED_FOR and 0 <= now - counted[1] < SHARED_FOR)
            or _failed(counted[2])
        ):
            read = asyncio.ensure_future(self.jobs.runtimes.storage.stats(now))
            counted = self._counted = (time.monotonic(), now, read)
        return await asyncio.shield(counted[2])

    def _job_rows(
        self, stats: StoreStats, served: frozenset[str], activity: dict[str, tuple[int, int]]
    ) -> list[JobRow]:
        """A row per job and kind: a job's stored instances may be of a kind it no
        longer has, and each kind has its own status words."""
        registered = {name: job.kind for name, job in self.jobs.jobs.items()}
        by_status: dict[tuple[str, str], dict[str, int]] = {
            (name, kind): dict.fromkeys(STATUSES[kind], 0) for name, kind in registered.items()
        }
        for job, kind, alarmed, count in stats.instances:
            words = STATUSES.get(kind, ("alarmed", "idle"))
            counts = by_status.setdefault((job, kind), dict.fromkeys(words, 0))
            word = words[0] if alarmed else words[1]
            counts[word] = counts.get(word, 0) + count
        due = dict(stats.due)
        dead = dict(stats.dead_letters)
        for job in set(dead) | set(activity):
            if not any(name == job for name, _ in by_status):
                by_status[(job, "")] = {}
        # What the store counts by job alone goes on one row of the job: the row of
        # its registered kind, else its first.
        home: dict[str, str] = {}
        for name, kind in sorted(by_status):
            home.setdefault(name, registered.get(name, kind))
        rows = []
        for name, kind in sorted(by_status):
            here = home[name] == kind
            rows.append(
                JobRow(
                    name,
                    kind,
                    registered.get(name) == kind,
                    by_status[(name, kind)],
                    due=due.get(name, 0) if here else 0,
                    # Every due alarm of a job that no live worker serves is overdue.
                    overdue=0 if name in served or not here else due.get(name, 0),
                    dead_letters=dead.get(name, 0) if here else 0,
                    executions=activity.get(name, (0, 0))[0] if here else 0,
                    failures=activity.get(name, (0, 0))[1] if here else 0,
                )
            )
        return rows

    @_page
    async def instances(self, request: Request) -> Response:
        q = request.query_params
        filters = {name: q.get(name) or None for name in ("job", "kind", "status")}
        page = await self.jobs.client.instances(
            **filters, limit=PAGE_SIZE, cursor=q.get("cursor") or None
        )
        kinds = {name: job.kind for name, job in self.jobs.jobs.items()}
        return self.render(
            request,
            "instances.html",
            page=page,
            filters=filters,
            jobs=sorted(kinds),
            kinds=list(STATUSES),
            statuses=sorted({word for words in STATUSES.values() for word in words}),
            first=q.get("cursor") is None,
            now=self.jobs.clock.now(),
        )

    @_page
    async def instance(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        try:
            detail = await instance_detail(self.jobs, instance_id)
        except InstanceNotFoundError:
            # A dead-lettered instance is gone from the store; its dead letter and
            # history are what there is to see of it, and redrive brings it back.
            letter = await self.jobs.client.dead_letter(instance_id)
            if letter is None:
                raise
            detail = _gone(letter)
        history = await self.jobs.client.history(detail["instance_id"], limit=PAGE_SIZE)
        job = self.jobs.jobs.get(detail["job_name"])
        return self.render(
            request,
            "instance.html",
            i=detail,
            history=history,
            registered=job is not None and job.kind == detail["kind"],
            now=self.jobs.clock.now(),
        )

    @_page
    async def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        job = q.get("job") or None
        page = await self.jobs.client.dead_letters(
            job=job, limit=PAGE_SIZE, cursor=q.get("cursor") or None
        )
        return self.render(
            request,
            "dead_letters.html",
            page=page,
            job=job,
            jobs=sorted(self.jobs.jobs),
            first=q.get("cursor") is None,
            now=self.jobs.clock.now(),
        )

    @_page
    async def events(self, request: Request) -> Response:
        runtimes = self.jobs.runtimes
        await runtimes.open()
        last = await runtimes.storage.last_event_id()
        entries = await runtimes.storage.read_events(max(0, last - FEED_SIZE), FEED_SIZE)
        events = [JobEvent.from_json(e.event, e.id) for e in entries]
        return self.render(
            request,
            "events.html",
            events=list(reversed(events)),
            after=events[-1].id if events else last,
            now=self.jobs.clock.now(),
        )

    def _ago(self, value: datetime | str | float | None) -> str:
        """How long before or after now, in the app's clock: ``3m 5s ago``, ``in 20s``."""
        at = _datetime(value)
        if at is None:
            return ""
        seconds = at.timestamp() - self.jobs.clock.now()
        text = _span(abs(seconds))
        return f"in {text}" if seconds > 0 else f"{text} ago"


def _failed(read: asyncio.Future[Any]) -> bool:
    return read.done() and (read.cancelled() or read.exception() is not None)


def _gone(letter: DeadLetter) -> dict[str, Any]:
    """A dead-lettered instance, as ``instance_detail`` shapes one."""
    kind, job_name, key = split_instance_id(letter.instance_id)
    return {
        "instance_id": letter.instance_id,
        "kind": kind,
        "job_name": job_name,
        "id": key,
        "status": "dead-lettered",
        "next_alarm_at": None,
        "created_at": None,
        "updated_at": None,
        "last_error": None,
        "overdue": False,
        "state": None,
        "counters": None,
        "dead_letter": to_json(letter),
    }


def _datetime(value: datetime | str | float | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return to_datetime(value)


def _when(value: datetime | str | float | None) -> str:
    at = _datetime(value)
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{int(seconds // size)}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _path(value: str) -> str:
    """One path segment: every character but the unreserved ones escaped."""
    return urllib.parse.quote(value, safe="")


def _pretty(value: Any) -> str:
    return json.dumps(to_json(value), indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _query(params: dict[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    return urllib.parse.urlencode({k: v for k, v in merged.items() if v not in (None, "")})
