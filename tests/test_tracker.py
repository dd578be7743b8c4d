"""HttpTracker: committed events reach an HTTP endpoint in batches, and are kept until then."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import pytest

from durable_jobs import HttpTracker, Task, TaskContext, create_durable_jobs


@attrs.frozen
class Hit:
    pass


@attrs.frozen
class Hits:
    count: int = 0


async def on_hit(event: Hit, ctx: TaskContext[Hits]) -> None:
    ctx.set_state(Hits((ctx.state or Hits()).count + 1))
    ctx.schedule("1 hour")


async def nothing(ctx: TaskContext[Hits]) -> None:
    return None


hits = Task(state=Hits, event=Hit, on_event=on_hit, execute=nothing)


collected: list[list[dict[str, str]]] = []  # the headers of the collector's requests


@pytest.fixture
def collector() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    headers: list[dict[str, str]] = []
    collected.clear()
    collected.append(headers)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            headers.append(dict(self.headers))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ingest", received
    server.shutdown()
    server.server_close()


async def test_events_are_posted_in_batches_with_env_and_service_key(
    collector: tuple[str, list[dict[str, Any]]],
) -> None:
    endpoint, received = collector
    tracker = HttpTracker(endpoint, env="test", service_key="svc", batch_size=2)
    jobs = create_durable_jobs({"hits": hits}, storage="memory://", tracker=tracker)
    await jobs.client.task(hits).send("a", Hit())  # job.started, task.scheduled
    await jobs.client.task(hits).send("a", Hit())  # task.scheduled

    assert await tracker.ship(jobs.storage) == 3
    assert await tracker.ship(jobs.storage) == 0  # delivered events leave the outbox
    assert [len(batch["events"]) for batch in received] == [2, 1]
    assert {(b["env"], b["service_key"]) for b in received} == {("test", "svc")}
    types = [e["type"] for batch in received for e in batch["events"]]
    assert types == ["job.started", "task.scheduled", "task.scheduled"]
    assert received[0]["events"][0]["instance_id"] == "task:hits:a"


async def test_an_unreachable_endpoint_keeps_events_for_later() -> None:
    tracker = HttpTracker("http://127.0.0.1:9/unreachable", timeout=1)
    jobs = create_durable_jobs({"hits": hits}, storage="memory://", tracker=tracker)
    await jobs.client.task(hits).send("a", Hit())
    assert await tracker.ship(jobs.storage) == 0
    # The tracker's place in the event log did not move past the events it could not send.
    assert await jobs.storage.read_cursor("http_tracker") == 0
    assert len(await jobs.storage.read_events(0, 10)) == 2


def test_a_non_http_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpTracker("file:///etc/passwd")


async def test_a_tracker_ships_what_another_process_committed_with_its_headers(
    collector: tuple[str, list[dict[str, Any]]], tmp_path: Any
) -> None:
    url, bodies = collector
    storage = f"sqlite:///{tmp_path / 'jobs.db'}"
    service = create_durable_jobs({"hits": hits}, storage=storage)  # no tracker: a web app
    worker = create_durable_jobs(
        {"hits": hits},
        storage=storage,
        tracker=HttpTracker(url, headers={"Authorization": "Bearer s3cret"}),
    )
    await service.client.task(hits).send("a", Hit())
    assert worker.tracker is not None
    assert await worker.tracker.ship(worker.storage) == 2
    assert [e["type"] for e in bodies[0]["events"]] == ["job.started", "task.scheduled"]
    assert collected[0][0]["Authorization"] == "Bearer s3cret"
    assert await worker.tracker.ship(worker.storage) == 0  # its position is in the store
    again = HttpTracker(url)  # another process's tracker starts from there too
    assert await again.ship(worker.storage) == 0
    await service.aclose()
    await worker.aclose()
