"""The HTTP API's event stream (``GET /api/events``) and ``GET /metrics``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from durable_jobs.web import create_app
from durable_jobs.web import events as web_events
from tests.test_web import AUTH, TOKEN, make_jobs, post, serve


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    yield from serve(create_app(make_jobs(), token=TOKEN))


def frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """SSE frames as dicts of their fields; a comment frame as ``{"comment": text}``."""
    fields: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if fields:
                yield fields
            fields = {}
        elif line.startswith(":"):
            fields["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def opened(answer: httpx.Response, type: str | None = None) -> Iterator[dict[str, Any]]:
    """The stream's events (of ``type`` if given), data parsed; returns once the
    stream said it is subscribed, so that what is sent from then on is on it."""
    assert answer.status_code == 200, answer.read()
    stream = frames(answer.iter_lines())
    assert next(stream) == {"comment": "open"}
    return _events(stream, type)


def _events(stream: Iterator[dict[str, Any]], type: str | None) -> Iterator[dict[str, Any]]:
    for fields in stream:
        if "comment" not in fields and type in (None, fields["event"]):
            fields["data"] = json.loads(fields["data"])
            yield fields


def test_an_event_sent_through_the_api_is_on_the_stream(http: httpx.Client) -> None:
    with http.stream("GET", "/api/events", headers=AUTH) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cache-control"] == "no-cache"
        events = opened(answer)
        post(http, "/api/task/orders/o1/send", {"event": {"amount": 5}})
        first, second = next(events), next(events)
    assert first["event"] == "job.started"
    assert first["data"]["instance_id"] == "task:orders:o1"
    assert second["event"] == "task.scheduled"
    assert int(second["id"]) > int(first["id"])
    first = second
    assert first["data"]["type"] == "task.scheduled"
    assert first["data"]["instance_id"] == "task:orders:o1"
    assert int(first["id"]) == first["data"]["id"]


def test_last_event_id_replays_what_came_after_it(http: httpx.Client) -> None:
    with http.stream("GET", "/api/events", headers=AUTH) as answer:
        events = opened(answer, "task.scheduled")
        for key in ("a", "b", "c"):
            post(http, f"/api/task/orders/{key}/send", {"event": {"amount": 1}})
        seen = [next(events) for _ in range(3)]
    assert [e["data"]["instance_id"] for e in seen] == [
        "task:orders:a",
        "task:orders:b",
        "task:orders:c",
    ]
    # Reconnecting after the first: the two committed since are replayed, in order.
    headers = {**AUTH, "Last-Event-ID": seen[0]["id"]}
    with http.stream("GET", "/api/events", headers=headers) as answer:
        events = opened(answer, "task.scheduled")
        replayed = [next(events) for _ in range(2)]
    assert [e["id"] for e in replayed] == [seen[1]["id"], seen[2]["id"]]


def until_scheduled(events: Iterator[dict[str, Any]], instance_id: str) -> list[dict[str, Any]]:
    seen = []
    for event in events:
        seen.append(event["data"])
        if (event["event"], event["data"]["instance_id"]) == ("task.scheduled", instance_id):
            return seen
    raise AssertionError("the stream ended")


def test_the_stream_filters_by_job_and_instance(http: httpx.Client) -> None:
    with (
        http.stream("GET", "/api/events?job=orders", headers=AUTH) as by_job,
        http.stream("GET", "/api/events?instance_id=task:orders:o2", headers=AUTH) as by_id,
    ):
        of_job, of_instance = opened(by_job), opened(by_id)
        post(http, "/api/debounce/hooks/h1/add", {"event": {"amount": 1}})
        post(http, "/api/task/orders/o1/send", {"event": {"amount": 1}})
        post(http, "/api/task/orders/o2/send", {"event": {"amount": 1}})
        jobs = until_scheduled(of_job, "task:orders:o2")
        instances = until_scheduled(of_instance, "task:orders:o2")
    assert {e["job_name"] for e in jobs} == {"orders"}
    assert {e["instance_id"] for e in jobs} == {"task:orders:o1", "task:orders:o2"}
    assert {e["instance_id"] for e in instances} == {"task:orders:o2"}


def test_an_idle_stream_sends_keepalive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_events, "KEEPALIVE", 0.0)
    for http in serve(create_app(make_jobs(), token=TOKEN)):
        with http.stream("GET", "/api/events", headers=AUTH) as answer:
            stream = frames(answer.iter_lines())
            assert next(stream) == {"comment": "open"}
            assert next(stream) == {"comment": "keepalive"}


def test_streams_over_the_limit_answer_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_events, "MAX_STREAMS", 2)
    for http in serve(create_app(make_jobs(), token=TOKEN)):
        with (
            http.stream("GET", "/api/events", headers=AUTH) as one,
            http.stream("GET", "/api/events", headers=AUTH) as two,
        ):
            assert (one.status_code, two.status_code) == (200, 200)
            over = http.get("/api/events", headers=AUTH)
            assert over.status_code == 503
            assert over.json()["error"] == "TooManyStreams"
            assert "Retry-After" in over.headers


def test_head_answers_the_headers_and_holds_no_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_events, "MAX_STREAMS", 1)
    for http in serve(create_app(make_jobs(), token=TOKEN)):
        for _ in range(3):
            head = http.head("/api/events", headers=AUTH)
            assert head.status_code == 200
            assert head.headers["content-type"].startswith("text/event-stream")
        with http.stream("GET", "/api/events", headers=AUTH) as one:
            assert one.status_code == 200  # the HEADs left the one slot free


def test_an_id_past_the_log_s_end_streams_from_its_end(http: httpx.Client) -> None:
    """A browser that saw a store made afresh since would otherwise wait for ever."""
    after = {**AUTH, "Last-Event-ID": "99999999999999999999"}
    with http.stream("GET", "/api/events", headers=after) as answer:
        stream = frames(answer.iter_lines())
        assert next(stream) == {"comment": "open"}
        post(http, "/api/task/orders/o1/send", {"event": {"amount": 5}})
        assert next(stream)["event"] == "job.started"


def test_the_stream_refuses_bad_input(http: httpx.Client) -> None:
    assert http.get("/api/events").status_code == 401
    unknown = http.get("/api/events", params={"job": "nope"}, headers=AUTH)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "JobNotFoundError")
    bad = http.get("/api/events", headers={**AUTH, "Last-Event-ID": "x"})
    assert (bad.status_code, bad.json()["error"]) == (400, "ValidationError")


def test_metrics_count_executions(http: httpx.Client) -> None:
    assert http.get("/metrics").status_code == 401
    post(http, "/api/task/orders/o1/send", {"event": {"amount": 5}})
    assert post(http, "/api/task/orders/o1/trigger").status_code == 200
    answer = http.get("/metrics", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert 'durable_jobs_executions_total{job="orders",kind="task",outcome="ok"} 1.0' in answer.text


def test_metrics_without_prometheus_client_answer_501(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "durable_jobs.metrics", None)  # the import fails
    for http in serve(create_app(make_jobs(), token=TOKEN)):
        answer = http.get("/metrics", headers=AUTH)
        assert answer.status_code == 501
        assert answer.json()["error"] == "MissingExtra"
        assert "durable-jobs[metrics]" in answer.json()["message"]
