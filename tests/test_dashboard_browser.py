"""The dashboard in headless Chromium (Debian's ``chromium``), driven by Playwright.

Without a Chromium these tests are skipped, saying so; ``.ci/run`` installs it and
sets DURABLE_JOBS_REQUIRE_BROWSER=1, which turns a missing browser into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from durable_jobs import Retry, Task, TaskContext
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.web import create_app
from durable_jobs.web import pages as web_pages
from durable_jobs.web.events import EventStreams
from tests.test_web import AUTH, TOKEN, make_jobs, serve

CHROMIUM = os.environ.get("DURABLE_JOBS_CHROMIUM") or shutil.which("chromium") or ""
REQUIRE_BROWSER = os.environ.get("DURABLE_JOBS_REQUIRE_BROWSER") == "1"
if not os.path.exists(CHROMIUM) and REQUIRE_BROWSER:
    raise RuntimeError(
        f"DURABLE_JOBS_REQUIRE_BROWSER=1 but no Chromium at {CHROMIUM!r} "
        "(apt-get install chromium, or set DURABLE_JOBS_CHROMIUM)"
    )
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="no Chromium: apt-get install chromium (or set DURABLE_JOBS_CHROMIUM) to run "
    "the dashboard's browser tests",
)

WAIT = 10_000  # milliseconds Playwright waits for what a test expects


@attrs.define
class Mail:
    to: str


FAILING = {"on": True}
SENT: list[str] = []


def on_mail(event: Mail, ctx: TaskContext[Mail]) -> None:
    ctx.set_state(event)
    ctx.schedule("1 minute")


def send_mail(ctx: TaskContext[Mail]) -> None:
    if FAILING["on"]:
        raise ConnectionError(f"mail server refused {ctx.state.to}")
    SENT.append(ctx.state.to)


def browser_jobs() -> DurableJobs:
    jobs = make_jobs()
    mail = Task(
        state=Mail, event=Mail, on_event=on_mail, execute=send_mail, retry=Retry(max_attempts=1)
    )
    return DurableJobs(
        {**jobs.jobs, "mail": mail}, storage="memory://", clock=jobs.clock, heartbeat=False
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def server() -> Iterator[tuple[DurableJobs, httpx.Client]]:
    FAILING["on"] = True
    SENT.clear()
    jobs = browser_jobs()
    app = create_app(jobs, token=TOKEN)
    for http in serve(app):
        SERVED[base(http)] = app
        yield jobs, http


@pytest.fixture
def page(chromium: Any, server: tuple[DurableJobs, httpx.Client]) -> Iterator[Any]:
    """A page of a fresh browser context that opened the dashboard with its token."""
    context = chromium.new_context()
    context.set_default_timeout(WAIT)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.goto(f"{base(server[1])}/?token={TOKEN}")
    yield page
    context.close()


SERVED: dict[str, Any] = {}


def events_route(http: httpx.Client) -> EventStreams:
    """The served app's event streams, whose limit a test changes while it serves."""
    app = SERVED[base(http)]
    (route,) = [r for r in app.app.routes if getattr(r, "path", None) == "/api/events"]
    streams = route.endpoint.__self__
    assert isinstance(streams, EventStreams)
    return streams


def base(http: httpx.Client) -> str:
    return str(http.base_url).rstrip("/")


def api(http: httpx.Client, path: str, body: Any = None) -> Any:
    answer = http.post(path, json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


def live(page: Any) -> None:
    """Wait until the page's event stream is open."""
    page.locator("#live.on").wait_for()


def test_the_token_leaves_the_address_and_each_page_renders(
    page: Any, server: tuple[DurableJobs, httpx.Client]
) -> None:
    _, http = server
    api(http, "/api/continuous/ticker/t1/start", {"input": {"n": 0}})
    api(http, "/api/task/mail/m1/send", {"event": {"to": "ann@example.com"}})
    api(http, "/api/task/mail/m1/trigger")
    api(http, "/api/debounce/hooks/h1/add", {"event": {"amount": 1}})
    assert page.url == f"{base(http)}/"
    pages = {
        "/": "Overview",
        "/instances": "Instances",
        "/instances/continuous:ticker:t1": "t1",
        "/instances/debounce:hooks:h1": "h1",
        "/instances/task:mail:m1": "m1",
        "/dead-letters": "Dead letters",
        "/events": "Live feed",
    }
    for path, heading in pages.items():
        answer = page.goto(base(http) + path)
        assert answer.status == 200, path
        assert heading in page.locator("h1").inner_text()
        live(page)
    page.goto(base(http) + "/dead-letters")
    assert page.locator("#dead-letters tbody tr").count() == 1
    assert "mail server refused ann@example.com" in page.locator("#dead-letters").inner_text()
    # No script error and nothing the content security policy had to block.
    assert page.console_errors == []


def test_an_event_sent_through_the_api_appears_in_the_live_feed(
    page: Any, server: tuple[DurableJobs, httpx.Client]
) -> None:
    _, http = server
    page.goto(base(http) + "/events")
    live(page)
    page.evaluate("window.notReloaded = true")
    api(http, "/api/task/orders/o7/send", {"event": {"amount": 3}})
    row = page.locator("#feed tr", has_text="task:orders:o7").first
    row.wait_for()
    assert "task.scheduled" in page.locator("#feed tr").first.inner_text()
    assert page.evaluate("window.notReloaded") is True
    assert page.console_errors == []


def test_the_overview_follows_the_store_without_a_reload(
    page: Any, server: tuple[DurableJobs, httpx.Client]
) -> None:
    _, http = server
    live(page)
    page.evaluate("window.notReloaded = true")
    first = page.locator("#summary .card").first
    assert first.inner_text().startswith("0")
    api(http, "/api/task/orders/o1/send", {"event": {"amount": 3}})
    api(http, "/api/task/orders/o2/send", {"event": {"amount": 3}})
    page.locator("#summary .card", has_text="2").first.wait_for()
    assert page.evaluate("window.notReloaded") is True


def test_a_redrive_from_the_page_runs_the_instance(
    page: Any, server: tuple[DurableJobs, httpx.Client]
) -> None:
    _, http = server
    api(http, "/api/task/mail/m1/send", {"event": {"to": "ann@example.com"}})
    api(http, "/api/task/mail/m1/trigger")  # fails: dead-lettered at once
    assert SENT == []
    FAILING["on"] = False
    page.goto(base(http) + "/dead-letters")
    live(page)
    page.get_by_role("button", name="Redrive").click()
    page.locator("#flash", has_text='"redriven":true').wait_for()
    page.locator("#dead-letters", has_text="No dead letters").wait_for()
    assert SENT == ["ann@example.com"]
    history = http.get("/api/instances/task:mail:m1/history", headers=AUTH).json()["items"]
    assert (history[0]["trigger"], history[0]["outcome"]) == ("redrive", "ok")
    page.goto(base(http) + "/instances/task:mail:m1")
    assert "redrive" in page.locator("#history tbody tr").first.inner_text()


def test_actions_on_the_instance_page(page: Any, server: tuple[DurableJobs, httpx.Client]) -> None:
    _, http = server
    api(http, "/api/continuous/ticker/t1/start", {"input": {"n": 0}})
    page.goto(base(http) + "/instances/continuous:ticker:t1")
    live(page)
    page.get_by_role("button", name="Pause").click()
    page.get_by_role("button", name="Resume").wait_for()  # the page re-read itself
    assert http.get("/api/continuous/ticker/t1", headers=AUTH).json()["status"] == "stopped"
    page.once("dialog", lambda dialog: dialog.accept("no longer needed"))
    with page.expect_response(lambda r: r.url.endswith("/terminate")) as terminated:
        page.get_by_role("button", name="Terminate").click()
    assert terminated.value.json() == {"terminated": True, "reason": "no longer needed"}
    assert http.get("/api/continuous/ticker/t1", headers=AUTH).json()["status"] == "not_found"
    # The page re-reads itself, finds the instance gone, and offers nothing more.
    page.locator("#flash", has_text="This is gone").wait_for()
    assert page.get_by_role("button", name="Trigger").is_disabled()


def test_what_time_changes_shows_without_an_event(
    chromium: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No event says that an alarm fell due with no worker to run it: the page
    re-reads itself now and then."""
    monkeypatch.setattr(web_pages, "POLL", 0.2)
    jobs = browser_jobs()
    for http in serve(create_app(jobs, token=TOKEN)):
        api(http, "/api/task/orders/o1/send", {"event": {"amount": 3}})  # due in 5 minutes
        context = chromium.new_context()
        page = context.new_page()
        page.goto(f"{base(http)}/?token={TOKEN}")
        overdue = page.locator("#summary .card", has_text="overdue")
        assert overdue.inner_text().startswith("0")
        jobs.clock.set(jobs.clock.now() + 600)
        page.locator("#summary .card.bad", has_text="overdue").wait_for(timeout=WAIT)
        assert overdue.inner_text().startswith("1")
        context.close()


def test_an_open_traceback_stays_the_only_one_open_across_a_refresh(
    page: Any, server: tuple[DurableJobs, httpx.Client]
) -> None:
    _, http = server
    for n in range(3):
        api(http, f"/api/task/mail/m{n}/send", {"event": {"to": f"user{n}@example.com"}})
        api(http, f"/api/task/mail/m{n}/trigger")  # dead-lettered, with a traceback
    page.goto(base(http) + "/dead-letters")
    live(page)
    page.locator("#dead-letters summary").nth(1).click()
    page.locator("#dead-letters").evaluate("s => s.dataset.seen = 'old'")
    api(http, "/api/task/orders/o1/send", {"event": {"amount": 3}})  # an event: a refresh
    page.wait_for_function("() => document.querySelector('#dead-letters').dataset.seen !== 'old'")
    opened = page.locator("#dead-letters details[open]")
    assert opened.count() == 1
    assert opened.get_attribute("data-key") == "traceback:task:mail:m1"


def test_the_page_listens_again_once_a_stream_is_refused(
    chromium: Any, server: tuple[DurableJobs, httpx.Client]
) -> None:
    _, http = server
    streams = events_route(http)
    streams.limit = 0  # every stream refused: 503
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{base(http)}/events?token={TOKEN}")
    page.locator("#live", has_text="offline").wait_for(timeout=WAIT)
    streams.limit = 32
    live(page)
    api(http, "/api/task/orders/o9/send", {"event": {"amount": 3}})
    page.locator("#feed tr", has_text="task:orders:o9").first.wait_for()
    context.close()


def test_a_page_without_the_token_is_refused(
    chromium: Any, server: tuple[DurableJobs, httpx.Client]
) -> None:
    _, http = server
    context = chromium.new_context()
    page = context.new_page()
    answer = page.goto(base(http) + "/instances")
    assert answer.status == 401
    assert "Token needed" in page.locator("h1").inner_text()
    status = page.evaluate("fetch('/api/instances').then(r => r.status)")
    assert status == 401
    context.close()


def attacker(target: str) -> Starlette:
    """A page elsewhere that tries to trigger an instance of the dashboard, with the
    browser's cookie if it would send it: by script, and by a form."""
    script = f"""<!doctype html><html><body>
<form id="f" method="post" action="{target}" enctype="text/plain"><input name="x"></form>
<script>
fetch("{target}", {{method: "POST", credentials: "include", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: "{{}}"}})
  .finally(() => document.getElementById("f").submit());
</script></body></html>"""

    async def evil(request: Any) -> HTMLResponse:
        return HTMLResponse(script)

    return Starlette(routes=[Route("/", evil)])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_state_change_from_another_origin_is_refused(
    page: Any, server: tuple[DurableJobs, httpx.Client], host: str
) -> None:
    """127.0.0.1 on another port is the same site (the cookie goes along) but another
    origin; localhost is another site (SameSite keeps the cookie back)."""
    _, http = server
    api(http, "/api/task/orders/o1/send", {"event": {"amount": 3}})
    target = base(http) + "/api/task/orders/o1/trigger"
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if r.url == target else None)
    for evil in serve(attacker(target)):
        port = evil.base_url.port
        with page.expect_response(lambda r: r.url == target and r.request.method == "POST"):
            page.goto(f"http://{host}:{port}/")
        page.wait_for_url(target)  # the form's navigation, after the script's request
    assert len(answers) == 2
    assert set(answers) <= {401, 403}
    assert answers == ([403, 403] if host == "127.0.0.1" else [401, 401])
    status = http.get("/api/task/orders/o1", headers=AUTH).json()
    assert status["status"] == "active"  # not triggered
    history = http.get("/api/instances/task:orders:o1/history", headers=AUTH).json()
    assert history["items"] == []
