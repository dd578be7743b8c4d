"""The dashboard's pages and its cookie, through a real server on a local port.
What only a browser does (the script, the live feed) is in test_dashboard_browser.py."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable_jobs.web import create_app
from durable_jobs.web.auth import COOKIE
from tests.conftest import BACKENDS, drop_schema, make_store
from tests.test_web import AUTH, TOKEN, make_jobs, serve

HTML = {"Accept": "text/html"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    yield from serve(create_app(make_jobs(), token=TOKEN))


@pytest.fixture
def browser(http: httpx.Client) -> httpx.Client:
    """The server's client holding the cookie, as a browser does after ``?token=``."""
    login(http)
    return http


def login(http: httpx.Client) -> None:
    """The cookie ``?token=`` sets: named for the port the server listens on."""
    http.cookies.set(cookie(http), TOKEN)


def cookie(http: httpx.Client) -> str:
    return f"{COOKIE}_{http.base_url.port}"


def origin(http: httpx.Client) -> dict[str, str]:
    return {"Origin": str(http.base_url).rstrip("/")}


def text(page: str) -> str:
    """The page's text, tags dropped and spaces folded, to assert on what it says."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_token_in_the_address_becomes_an_http_only_strict_cookie(http: httpx.Client) -> None:
    answer = http.get(f"/instances?job=orders&token={TOKEN}", headers=HTML)
    assert answer.status_code == 303
    # The browser goes on to the same page without the token in its address.
    assert answer.headers["location"] == "/instances?job=orders"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}_{http.base_url.port}={TOKEN};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert http.get("/instances?job=orders", headers=HTML).status_code == 200


def test_a_wrong_token_in_the_address_sets_no_cookie(http: httpx.Client) -> None:
    answer = http.get("/?token=guess", headers=HTML)
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert "not this server" in answer.text


def test_pages_without_the_token_ask_for_it(http: httpx.Client) -> None:
    for path in ("/", "/instances", "/instances/task:orders:o1", "/dead-letters", "/events"):
        answer = http.get(path, headers=HTML)
        assert answer.status_code == 401, path
        assert "Token needed" in answer.text
        assert "?token=" in answer.text


def test_a_program_gets_json_and_the_token_in_a_query_does_nothing(http: httpx.Client) -> None:
    answer = http.get(f"/api/instances?token={TOKEN}")
    assert answer.status_code == 401
    assert answer.json()["error"] == "Unauthorized"


def test_other_servers_cookies_on_this_host_do_not_hide_the_token(http: httpx.Client) -> None:
    malformed = 'prefs={"a":1}; other="a b; x=\\a; ' + f"{cookie(http)}={TOKEN}"
    assert http.get("/api/instances", headers={"Cookie": malformed}).status_code == 200


def test_the_token_s_redirect_keeps_an_escaped_id_escaped(http: httpx.Client) -> None:
    url = http.base_url.copy_with(
        raw_path=f"/instances/task:orders:a%3Fb%23c?token={TOKEN}&x=1".encode()
    )
    answer = http.send(http.build_request("GET", url, headers=HTML))
    assert answer.headers["location"] == "/instances/task:orders:a%3Fb%23c?x=1"


def test_the_assets_need_no_token(http: httpx.Client) -> None:
    script = http.get("/static/dashboard.js")
    assert script.status_code == 200
    assert "EventSource" in script.text
    assert http.get("/static/dashboard.css").status_code == 200


def test_the_cookie_reads_the_api(browser: httpx.Client) -> None:
    assert browser.get("/api/instances").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},  # same site, another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {},  # neither: not a browser's request from a page of this server
    ],
)
def test_a_state_change_from_another_origin_is_refused(
    browser: httpx.Client, headers: dict[str, str]
) -> None:
    answer = browser.post(
        "/api/task/orders/o1/send", json={"event": {"amount": 5}}, headers=headers
    )
    assert answer.status_code == 403
    assert answer.json()["error"] == "Forbidden"
    assert browser.get("/api/task/orders/o1").json()["status"] == "not_found"
    deleted = browser.delete("/api/dead-letters/task:orders:o1", headers=headers)
    assert deleted.status_code == 403


def test_a_state_change_from_the_dashboard_s_own_origin_is_done(browser: httpx.Client) -> None:
    headers = {**origin(browser), "Sec-Fetch-Site": "same-origin"}
    answer = browser.post(
        "/api/task/orders/o1/send", json={"event": {"amount": 5}}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert browser.get("/api/task/orders/o1").json()["status"] == "active"


def test_a_browser_s_same_origin_word_is_enough_behind_a_proxy(browser: httpx.Client) -> None:
    """A proxy may send its upstream's Host; the browser's Sec-Fetch-Site still says
    the request came from the dashboard's own page."""
    headers = {"Origin": "https://jobs.example.com", "Sec-Fetch-Site": "same-origin"}
    answer = browser.post(
        "/api/task/orders/o1/send", json={"event": {"amount": 5}}, headers=headers
    )
    assert answer.status_code == 200, answer.text


def test_the_bearer_header_needs_no_origin(http: httpx.Client) -> None:
    answer = http.post(
        "/api/task/orders/o1/send",
        json={"event": {"amount": 5}},
        headers={**AUTH, "Origin": "http://elsewhere.example"},
    )
    assert answer.status_code == 200


def test_pages_forbid_framing_and_scripts_from_elsewhere(browser: httpx.Client) -> None:
    headers = browser.get("/").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"


def send(http: httpx.Client, path: str, body: object = None) -> httpx.Response:
    answer = http.post(path, json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer


def test_overview_counts_instances_alarms_dead_letters_and_runs(browser: httpx.Client) -> None:
    for n in range(3):
        send(browser, f"/api/task/orders/o{n}/send", {"event": {"amount": 10}})
    send(browser, "/api/task/orders/big/send", {"event": {"amount": 500}})
    send(browser, "/api/task/orders/big/trigger")  # settle fails: dead-lettered (ONCE)
    send(browser, "/api/task/orders/o0/trigger")  # settles
    send(browser, "/api/continuous/ticker/t1/start", {"input": {"n": 0}})
    page = browser.get("/")
    assert page.status_code == 200
    shown = text(page.text)
    assert "4 instances" in shown  # the dead-lettered one is gone
    assert "1 dead letters" in shown
    assert "0 live workers" in shown
    row = text(
        re.search(r"<tr>\s*<td><a href=\"/instances\?job=orders[^\"]*\">.*?</tr>", page.text, re.S)[
            0
        ]
    )
    # active 2, idle 1 (o0 settled), the due, overdue, dead letters, runs, failures columns
    assert "active 2 idle 1" in row
    assert row.split()[-5:] == ["0", "0", "1", "1", "1"]
    assert "This minute so far: 1 executions, 1 failures" in shown


def test_overview_shows_overdue_alarms_of_jobs_no_worker_serves() -> None:
    jobs = make_jobs()
    for http in serve(create_app(jobs, token=TOKEN)):
        login(http)
        send(http, "/api/task/orders/o1/send", {"event": {"amount": 1}})  # due in 5 minutes
        send(http, "/api/task/orders/o2/send", {"event": {"amount": 1}})
        send(http, "/api/task/orders/o2/trigger")  # idle: no alarm
        assert "0 alarms due 0 overdue" in text(http.get("/").text)
        jobs.clock.set(jobs.clock.now() + 6 * 60)
        assert "1 alarms due 1 overdue" in text(http.get("/").text)
        listing = text(http.get("/instances").text)
        assert "o1 orders task active overdue" in listing
        assert "o2 orders task idle" in listing


def test_instances_page_filters_and_pages(browser: httpx.Client) -> None:
    for n in range(55):
        send(browser, f"/api/task/orders/o{n:02}/send", {"event": {"amount": 1}})
    send(browser, "/api/continuous/ticker/t1/start", {"input": {"n": 0}})
    first = browser.get("/instances", params={"job": "orders", "status": "active"})
    ids = re.findall(r'href="/instances/task%3Aorders%3A(o\d+)"', first.text)
    assert ids == [f"o{n:02}" for n in range(50)]
    cursor = re.search(r'rel="next" href="/instances\?([^"]+)"', first.text)
    assert cursor is not None
    second = browser.get("/instances?" + cursor[1].replace("&amp;", "&"))
    assert re.findall(r'href="/instances/task%3Aorders%3A(o\d+)"', second.text) == [
        f"o{n}" for n in range(50, 55)
    ]
    assert 'rel="next"' not in second.text
    assert "First page" in second.text
    tickers = browser.get("/instances", params={"kind": "continuous"})
    assert "continuous%3Aticker%3At1" in tickers.text
    assert "task%3Aorders" not in tickers.text


def test_a_bad_filter_is_a_400_page_naming_it(browser: httpx.Client) -> None:
    answer = browser.get("/instances", params={"status": "sleeping"})
    assert answer.status_code == 400
    assert "text/html" in answer.headers["content-type"]
    assert "unknown status 'sleeping'" in text(answer.text)


def test_an_unknown_instance_is_a_404_page(browser: httpx.Client) -> None:
    answer = browser.get("/instances/task:orders:nope")
    assert answer.status_code == 404
    assert "no instance" in answer.text


def test_instance_page_shows_state_alarm_counters_last_error_and_history(
    browser: httpx.Client,
) -> None:
    send(browser, "/api/task/orders/o1/send", {"event": {"amount": 10}})
    refused = browser.post("/api/task/orders/o1/send", json={"event": {"amount": -1}}, headers=AUTH)
    assert refused.status_code == 422
    page = browser.get("/instances/task:orders:o1")
    assert page.status_code == 200
    shown = text(page.text)
    assert "status active" in shown
    assert "next alarm 2026-01-01 00:05:00 UTC" in shown
    assert '"total": 10' in shown  # the state
    assert '"event_count": 1' in shown  # the counters
    assert "Last error ValueError : refunds are not payments — attempt 1" in shown
    assert 'in on_pay\n    raise ValueError("refunds are not payments")' in html.unescape(page.text)
    rows = re.findall(r"<td>(\w+)</td>\s*<td><span class=\"outcome (\w+)\"", page.text)
    assert rows == [("send", "failed")]


def test_a_dead_lettered_instance_s_page_shows_its_dead_letter(browser: httpx.Client) -> None:
    send(browser, "/api/task/orders/big/send", {"event": {"amount": 500}})
    send(browser, "/api/task/orders/big/trigger")
    page = browser.get("/instances/task:orders:big")
    assert page.status_code == 200
    shown = text(page.text)
    assert "status dead-lettered" in shown
    assert "Dead letter Upstream: cannot settle 500 — after 1 attempt" in shown
    assert '"total": 500' in shown  # the saved state
    assert "in settle" in shown  # the traceback with the handler's frame
    assert "dead_lettered" in re.findall(r'class="outcome (\w+)"', page.text)
    assert re.findall(r'data-post="([^"]+)"', page.text) == [
        "/api/dead-letters/task%3Aorders%3Abig/redrive"
    ]
    assert 'data-delete="/api/dead-letters/task%3Aorders%3Abig"' in page.text


@pytest.mark.parametrize(
    ("start", "path", "actions"),
    [
        (
            "/api/continuous/ticker/t1/start",
            "continuous:ticker:t1",
            ["trigger", "pause", "terminate"],
        ),
        ("/api/task/orders/o1/send", "task:orders:o1", ["trigger", "terminate"]),
        ("/api/debounce/hooks/h1/add", "debounce:hooks:h1", ["flush", "clear"]),
    ],
)
def test_instance_page_offers_its_kind_s_actions(
    browser: httpx.Client, start: str, path: str, actions: list[str]
) -> None:
    body = {"input": {"n": 0}} if "continuous" in start else {"event": {"amount": 1}}
    send(browser, start, body)
    page = browser.get(f"/instances/{path}").text
    kind, job, key = path.split(":")
    offered = re.findall(rf'data-post="/api/{kind}/{job}/{key}/(\w+)"', page)
    assert offered == actions


def test_a_paused_instance_offers_resume(browser: httpx.Client) -> None:
    send(browser, "/api/continuous/ticker/t1/start", {"input": {"n": 0}})
    send(browser, "/api/continuous/ticker/t1/pause")
    page = browser.get("/instances/continuous:ticker:t1").text
    assert re.findall(r'data-post="/api/continuous/ticker/t1/(\w+)"', page) == [
        "trigger",
        "resume",
        "terminate",
    ]


def test_values_are_shown_as_text_never_as_markup(browser: httpx.Client) -> None:
    send(browser, "/api/task/orders/x/send", {"event": {"amount": 1}})
    send(browser, "/api/task/orders/<b>x</b>/send", {"event": {"amount": 1}})
    listing = browser.get("/instances").text
    assert "<b>x</b>" not in listing
    assert "&lt;b&gt;x&lt;/b&gt;" in listing


def test_dead_letters_page_lists_them_with_redrive_and_discard(browser: httpx.Client) -> None:
    send(browser, "/api/task/orders/big/send", {"event": {"amount": 500}})
    send(browser, "/api/task/orders/big/trigger")
    page = browser.get("/dead-letters", params={"job": "orders"})
    shown = text(page.text)
    assert "task:orders:big" in shown
    assert "Upstream: cannot settle 500" in shown
    assert "Redrive" in shown
    assert "Discard" in shown
    assert "No dead letters" in text(browser.get("/dead-letters", params={"job": "ticker"}).text)


def test_feed_page_starts_with_the_newest_events_and_streams_after_them(
    browser: httpx.Client,
) -> None:
    send(browser, "/api/task/orders/o1/send", {"event": {"amount": 1}})
    send(browser, "/api/task/orders/o1/trigger")
    page = browser.get("/events").text
    types = re.findall(r'class="event ([\w-]+)"', page)
    assert types[0] == "job-executed"  # newest first
    assert "task-scheduled" in types
    newest = max(int(i) for i in re.findall(r'data-id="(\d+)"', page))
    assert f'data-events="/api/events?after={newest}"' in page


def test_the_stream_starts_after_the_event_a_page_names(browser: httpx.Client) -> None:
    send(browser, "/api/task/orders/o1/send", {"event": {"amount": 1}})
    with browser.stream("GET", "/api/events", params={"after": 0}) as answer:
        lines = answer.iter_lines()
        assert next(lines) == ": open"
        # The send's first event, committed before the stream opened.
        assert next(line for line in lines if line.startswith("event:")) == "event: job.started"


def test_pages_follow_the_prefix_they_are_mounted_under() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    host = Starlette(routes=[Mount("/jobs", app=create_app(make_jobs(), token=TOKEN))])
    for http in serve(host):
        opened = http.get(f"/jobs/?token={TOKEN}", headers=HTML)
        assert opened.status_code == 303
        assert opened.headers["location"] == "/jobs/"
        assert "Path=/jobs;" in opened.headers["set-cookie"]  # /jobs and below
        login(http)
        page = http.get("/jobs/").text
        assert 'href="/jobs/static/dashboard.css"' in page
        assert 'data-events="/jobs/api/events"' in page
        assert http.get("/jobs/static/dashboard.js").status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_page_on_every_back_end(backend: str, tmp_path: Path) -> None:
    adapter, schema = make_store(backend, tmp_path)
    try:
        for http in serve(create_app(make_jobs(storage=(adapter, adapter)), token=TOKEN)):
            login(http)
            send(http, "/api/task/orders/o1/send", {"event": {"amount": 1}})
            send(http, "/api/task/orders/o1/trigger")
            send(http, "/api/task/orders/big/send", {"event": {"amount": 500}})
            send(http, "/api/task/orders/big/trigger")
            overview = text(http.get("/").text)
            assert "1 instances" in overview
            assert "1 dead letters" in overview
            assert "This minute so far: 1 executions, 1 failures" in overview
            assert "o1 orders task idle" in text(http.get("/instances").text)
            assert "redrive" in http.get("/instances/task:orders:big").text
            assert "task:orders:big" in text(http.get("/dead-letters").text)
            feed = http.get("/events").text
            assert re.findall(r'class="event ([\w-]+)"', feed)[:2] == [
                "job-retry_exhausted",
                "job-failed",
            ]
    finally:
        if schema is not None:
            drop_schema(schema)


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x", "/\\/evil.example"])
def test_the_token_s_redirect_stays_on_this_server(http: httpx.Client, path: str) -> None:
    url = http.base_url.copy_with(raw_path=f"{path}?token={TOKEN}".encode())
    answer = http.send(http.build_request("GET", url, headers=HTML))
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/")
    assert not location.startswith(("//", "/\\"))
    assert "evil.example" in location  # kept as a path on this server, where it is a 404


def test_two_dashboards_on_one_host_keep_their_own_cookies() -> None:
    """Cookies are kept per host, not per port: one name for both would let opening
    the second log the first out."""
    one = serve(create_app(make_jobs(), token="first"))
    two = serve(create_app(make_jobs(), token="second"))
    first, second = next(one), next(two)
    try:
        jar = httpx.Cookies()
        with httpx.Client(cookies=jar, headers=HTML, timeout=10) as browser:
            for http, token in ((first, "first"), (second, "second")):
                opened = browser.get(f"{http.base_url}?token={token}")
                assert opened.status_code == 303
            assert browser.get(str(first.base_url)).status_code == 200
            assert browser.get(str(second.base_url)).status_code == 200
    finally:
        one.close()
        two.close()


def test_instances_of_a_kind_their_job_no_longer_has_get_their_own_row() -> None:
    from durable_jobs import Continuous, every
    from durable_jobs.adapters.memory import MemoryStore
    from durable_jobs.runtime.app import DurableJobs
    from tests.apps.operating import Count, count_run

    store = MemoryStore()
    before = make_jobs(storage=(store, store))
    was = {"orders": Continuous(state=Count, schedule=every("1 minute"), execute=count_run)}
    old = DurableJobs(was, storage=(store, store), clock=before.clock, heartbeat=False)
    for http in serve(create_app(old, token=TOKEN)):
        send(http, "/api/continuous/orders/c1/start", {"input": {"n": 0}})
    for http in serve(create_app(before, token=TOKEN)):
        login(http)
        send(http, "/api/task/orders/o1/send", {"event": {"amount": 1}})
        page = http.get("/").text
        rows = re.findall(
            r"<tr>\s*<td><a href=\"/instances\?job=orders[^\"]*\">.*?</tr>", page, re.S
        )
        assert len(rows) == 2
        continuous, task = (text(r) for r in rows)
        assert "continuous running 1 stopped 0" in continuous
        assert "unregistered" in continuous
        assert "task active 1 idle 0" in task
        # Each row's status links name statuses of its own kind: they answer.
        for link in re.findall(r'class="status \w+" href="([^"]+)"', page):
            assert http.get(link.replace("&amp;", "&")).status_code == 200, link


def test_overview_loads_close_together_share_one_count_of_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from durable_jobs.adapters.memory import MemoryStore
    from durable_jobs.web import pages

    class Counting(MemoryStore):
        reads = 0

        async def stats(self, now: float) -> Any:
            Counting.reads += 1
            return await super().stats(now)

    monkeypatch.setattr(pages, "SHARED_FOR", 60.0)
    store = Counting()
    jobs = make_jobs(storage=(store, store))
    for http in serve(create_app(jobs, token=TOKEN)):
        login(http)
        for _ in range(3):
            assert http.get("/").status_code == 200
        assert Counting.reads == 1
        send(http, "/api/task/orders/o1/send", {"event": {"amount": 1}})
        jobs.clock.set(jobs.clock.now() + 120)  # the app's clock moved on: read again
        assert "1 instances" in text(http.get("/").text)
        assert Counting.reads == 2
