"""The web extra's HTTP API (API.md §6), through a real server on a local port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import attrs
import httpx
import pytest
import uvicorn

from durable_jobs import Continuous, Debounce, StorageError, Task, TaskContext, every
from durable_jobs.adapters.memory import MemoryStore
from durable_jobs.cli import listening_socket
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.clock import FakeClock
from durable_jobs.runtime.codec import MAX_PAYLOAD_BYTES
from durable_jobs.web import create_app
from tests.apps.operating import ONCE, Count, Order, Pay, count_run, flush_batch, on_pay, settle

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@attrs.define
class Deposit:
    amount: int


@attrs.define
class Withdraw:
    amount: int


def on_move(event: Deposit | Withdraw, ctx: TaskContext[Order]) -> None:
    total = ctx.state.total if ctx.state is not None else 0
    sign = 1 if isinstance(event, Deposit) else -1
    ctx.set_state(Order(total + sign * event.amount))


def make_jobs(storage: Any = "memory://") -> DurableJobs:
    definitions = {
        "ticker": Continuous(state=Count, schedule=every("1 minute"), execute=count_run),
        "orders": Task(state=Order, event=Pay, on_event=on_pay, execute=settle, retry=ONCE),
        "hooks": Debounce(event=Pay, execute=flush_batch, flush_after="10 seconds"),
        "ledger": Task(state=Order, event=(Deposit, Withdraw), on_event=on_move, execute=settle),
    }
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    return DurableJobs(definitions, storage=storage, clock=clock, heartbeat=False)


def serve(app: Any) -> Iterator[httpx.Client]:
    """``app`` on uvicorn in a thread, on a socket bound and listening before the
    thread starts: requests queue in its backlog until the server accepts them."""
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    yield from serve(create_app(make_jobs(), token=TOKEN))


def post(http: httpx.Client, path: str, body: Any = None) -> httpx.Response:
    return http.post(path, json=body, headers=AUTH)


def get(http: httpx.Client, path: str, **params: Any) -> httpx.Response:
    return http.get(path, params=params, headers=AUTH)


def test_healthz_needs_no_token(http: httpx.Client) -> None:
    answer = http.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"ok": True})


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
def test_every_api_route_needs_the_token(http: httpx.Client, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in [
        ("GET", "/api/instances"),
        ("GET", "/api/workers"),
        ("POST", "/api/task/orders/o1/send"),
        ("DELETE", "/api/dead-letters/task:orders:o1"),
    ]:
        answer = http.request(method, path, headers=headers, json={"event": {"amount": 1}})
        assert answer.status_code == 401
        assert answer.json()["error"] == "Unauthorized"
    assert get(http, "/api/task/orders/o1").json()["status"] == "not_found"  # nothing sent


def test_send_then_status_reflects_it(http: httpx.Client) -> None:
    sent = post(http, "/api/task/orders/o1/send", {"event": {"amount": 5}})
    assert sent.status_code == 200
    assert sent.json()["created"] is True
    assert sent.json()["instance_id"] == "task:orders:o1"
    assert sent.json()["scheduled_at"] == "2026-01-01T00:05:00+00:00"
    status = get(http, "/api/task/orders/o1").json()
    assert status["status"] == "active"
    assert status["event_count"] == 1
    assert status["scheduled_at"] == "2026-01-01T00:05:00+00:00"


def test_instances_listing_pages_and_filters(http: httpx.Client) -> None:
    for key in ("a", "b", "c"):
        post(http, f"/api/task/orders/{key}/send", {"event": {"amount": 1}})
    post(http, "/api/debounce/hooks/h1/add", {"event": {"amount": 1}})
    first = get(http, "/api/instances", job="orders", limit=2).json()
    assert [i["id"] for i in first["items"]] == ["a", "b"]
    assert first["items"][0]["status"] == "active"
    assert first["items"][0]["created_at"].endswith("+00:00")
    rest = get(http, "/api/instances", job="orders", cursor=first["next_cursor"]).json()
    assert ([i["id"] for i in rest["items"]], rest["next_cursor"]) == (["c"], None)
    debouncing = get(http, "/api/instances", kind="debounce", status="debouncing").json()
    assert [i["instance_id"] for i in debouncing["items"]] == ["debounce:hooks:h1"]


def test_instance_detail_has_state_counters_and_dead_letter(http: httpx.Client) -> None:
    post(http, "/api/task/orders/o1/send", {"event": {"amount": 7}})
    detail = get(http, "/api/instances/task:orders:o1").json()
    assert detail["instance_id"] == "task:orders:o1"
    assert detail["state"] == {"total": 7}
    assert detail["counters"]["event_count"] == 1
    assert detail["dead_letter"] is None
    history = get(http, "/api/instances/task:orders:o1/history", limit=10)
    assert history.status_code == 200
    assert history.json() == {"items": []}  # on_event is not a run of execute


def test_continuous_actions(http: httpx.Client) -> None:
    started = post(http, "/api/continuous/ticker/t1/start", {"input": {"n": 0}}).json()
    assert started == {"created": True, "instance_id": "continuous:ticker:t1", "status": "running"}
    assert post(http, "/api/continuous/ticker/t1/trigger").json() == {"triggered": True}
    assert get(http, "/api/instances/continuous:ticker:t1").json()["state"] == {"n": 1}
    assert post(http, "/api/continuous/ticker/t1/pause").json() == {"paused": True}
    assert get(http, "/api/continuous/ticker/t1").json()["status"] == "stopped"
    resumed = post(http, "/api/continuous/ticker/t1/resume").json()
    assert resumed == {"resumed": True, "next_run_at": "2026-01-01T00:01:00+00:00"}
    status = get(http, "/api/continuous/ticker/t1").json()
    assert (status["status"], status["run_count"]) == ("running", 1)
    ended = post(http, "/api/continuous/ticker/t1/terminate").json()
    assert ended == {"terminated": True, "reason": None}
    bad = post(http, "/api/continuous/ticker/t2/start", {"input": {"n": "one"}})
    assert (bad.status_code, bad.json()["error"]) == (400, "ValidationError")


def test_debounce_actions(http: httpx.Client) -> None:
    added = post(http, "/api/debounce/hooks/h1/add", {"event": {"amount": 2}}).json()
    assert (added["created"], added["event_count"]) == (True, 1)
    assert get(http, "/api/debounce/hooks/h1").json()["status"] == "debouncing"
    assert post(http, "/api/debounce/hooks/h1/flush").json() == {"flushed": True}
    post(http, "/api/debounce/hooks/h2/add", {"event": {"amount": 2}})
    assert post(http, "/api/debounce/hooks/h2/clear").json() == {"cleared": True, "discarded": 1}
    assert get(http, "/api/debounce/hooks/h2").json()["status"] == "idle"


def test_task_trigger_failure_dead_letter_redrive_and_discard(http: httpx.Client) -> None:
    post(http, "/api/task/orders/o1/send", {"event": {"amount": 500}})
    triggered = post(http, "/api/task/orders/o1/trigger")
    assert triggered.status_code == 200, triggered.text
    letters = get(http, "/api/dead-letters", job="orders").json()
    assert [d["instance_id"] for d in letters["items"]] == ["task:orders:o1"]
    assert letters["items"][0]["state"] == {"total": 500}
    history = get(http, "/api/instances/task:orders:o1/history").json()["items"]
    assert history[0]["outcome"] == "dead_lettered"
    assert history[0]["error"]["type"] == "Upstream"
    redriven = post(http, "/api/dead-letters/task:orders:o1/redrive", {"state": {"total": 1}})
    assert redriven.json() == {"redriven": True, "instance_id": "task:orders:o1"}
    assert get(http, "/api/dead-letters").json()["items"] == []
    discard = http.delete("/api/dead-letters/task:orders:o1", headers=AUTH)
    assert discard.json() == {"discarded": False}


def test_task_terminate(http: httpx.Client) -> None:
    post(http, "/api/task/orders/o1/send", {"event": {"amount": 1}})
    ended = post(http, "/api/task/orders/o1/terminate", {"reason": "done"}).json()
    assert ended == {"terminated": True, "reason": "done"}
    assert get(http, "/api/task/orders/o1").json()["status"] == "not_found"


def test_union_event_names_its_class(http: httpx.Client) -> None:
    post(http, "/api/task/ledger/l1/send", {"event": {"type": "Deposit", "amount": 10}})
    post(http, "/api/task/ledger/l1/send", {"event": {"type": "Withdraw", "amount": 3}})
    assert get(http, "/api/instances/task:ledger:l1").json()["state"] == {"total": 7}
    unnamed = post(http, "/api/task/ledger/l1/send", {"event": {"amount": 3}})
    assert unnamed.status_code == 400
    assert "Deposit, Withdraw" in unnamed.json()["message"]
    wrong = post(http, "/api/task/ledger/l1/send", {"event": {"type": "Deposit", "amount": "x"}})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "ValidationError")


def test_workers_is_a_list(http: httpx.Client) -> None:
    assert get(http, "/api/workers").json() == {"items": []}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/task/orders/o1/send", {"event": {"amount": "five"}}),
        ("POST", "/api/task/orders/o1/send", {"event": {"amount": 1}, "extra": 1}),
        ("POST", "/api/task/orders/o1/send", [1]),
        ("GET", "/api/instances?kind=batch", None),
        ("GET", "/api/instances?limit=many", None),
        ("GET", "/api/instances?limit=0", None),
        ("POST", "/api/dead-letters/not-an-instance-id/redrive", None),
    ],
)
def test_bad_input_is_400(http: httpx.Client, method: str, path: str, body: Any) -> None:
    answer = http.request(method, path, json=body, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error", "message"}


def test_bad_json_is_400(http: httpx.Client) -> None:
    answer = http.post("/api/task/orders/o1/send", content=b"{not json", headers=AUTH)
    assert (answer.status_code, answer.json()["error"]) == (400, "ValidationError")


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("GET", "/api/instances/task:orders:nobody", "InstanceNotFoundError"),
        ("GET", "/api/task/nojob/o1", "JobNotFoundError"),
        ("GET", "/api/debounce/orders/o1", "JobNotFoundError"),  # a job of another kind
        ("POST", "/api/task/nojob/o1/send", "JobNotFoundError"),
        ("POST", "/api/task/orders/o1/flush", "JobNotFoundError"),  # not a task action
        ("POST", "/api/batch/orders/o1/send", "JobNotFoundError"),
    ],
)
def test_unknown_is_404(http: httpx.Client, method: str, path: str, error: str) -> None:
    answer = http.request(method, path, headers=AUTH)
    assert (answer.status_code, answer.json()["error"]) == (404, error)


def test_duplicate_event_is_409(http: httpx.Client) -> None:
    body = {"event": {"amount": 1}, "idempotency_key": "k1"}
    assert post(http, "/api/task/orders/o1/send", body).status_code == 200
    again = post(http, "/api/task/orders/o1/send", body)
    assert (again.status_code, again.json()["error"]) == (409, "DuplicateEventError")


def test_a_handler_that_raises_is_422_and_its_failure_is_kept(http: httpx.Client) -> None:
    assert post(http, "/api/task/orders/o1/send", {"event": {"amount": 1}}).status_code == 200
    refused = post(http, "/api/task/orders/o1/send", {"event": {"amount": -1}})
    assert (refused.status_code, refused.json()["error"]) == (422, "ExecutionError")
    assert "refunds are not payments" in refused.json()["message"]
    status = get(http, "/api/task/orders/o1").json()
    assert status["last_error"]["type"] == "ValueError"


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    huge = b'{"event": {"amount": 1}, "pad": "' + b"x" * (MAX_PAYLOAD_BYTES + 65 * 1024) + b'"}'
    answer = http.post("/api/task/orders/o1/send", content=huge, headers=AUTH)
    assert (answer.status_code, answer.json()["error"]) == (413, "BodyTooLarge")
    assert get(http, "/api/task/orders/o1").json()["status"] == "not_found"


class FailingStore(MemoryStore):
    async def list_instances(self, **kwargs: Any) -> Any:
        raise StorageError("the store is down", retryable=True)


def test_storage_error_is_503_with_retry_after() -> None:
    store = FailingStore()
    for http in serve(create_app(make_jobs(storage=(store, store)), token=TOKEN)):
        for answer in (http.get("/healthz"), get(http, "/api/instances")):
            assert (answer.status_code, answer.json()["error"]) == (503, "StorageError")
            assert answer.headers["Retry-After"] == "1"


def test_an_id_ending_in_an_escaped_history_is_an_instance(http: httpx.Client) -> None:
    post(http, "/api/task/orders/x%2Fhistory/send", {"event": {"amount": 5}})
    url = http.base_url.copy_with(raw_path=b"/api/instances/task:orders:x%2Fhistory")
    answer = http.send(http.build_request("GET", url, headers=AUTH))
    assert answer.status_code == 200, answer.text
    assert answer.json()["instance_id"] == "task:orders:x/history"
    post(http, "/api/task/orders/x%2Fhistory/trigger")
    history = get(http, "/api/instances/task:orders:x%2Fhistory/history").json()
    assert [run["trigger"] for run in history["items"]] == ["trigger"]
