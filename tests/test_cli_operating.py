"""The operating commands (API.md §5) in this process, on the memory store of
tests.apps.operating: each test fills a fresh app, then runs the command on it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
import structlog

from durable_jobs.adapters.records import Commit
from durable_jobs.cli import main
from durable_jobs.runtime.clock import FakeClock
from durable_jobs.testing import TestRuntime
from tests.apps.operating import Count, Order, Pay, make_app
from tests.support import T0, later

APP = "tests.apps.operating:jobs"


@pytest.fixture(autouse=True)
def _no_cli_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("APP", "JSON", "STORAGE", "TRACEBACK", "LIMIT", "JOB", "KIND", "STATUS"):
        monkeypatch.delenv(f"DURABLE_JOBS_{name}", raising=False)
    yield
    structlog.reset_defaults()  # the command sends logs to stderr


@pytest.fixture
async def rt(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestRuntime]:
    """A fresh app on a memory store and a fake clock, as the command loads it."""
    clock = FakeClock(T0)
    app = make_app(clock)
    monkeypatch.setattr("tests.apps.operating.jobs", app)
    runtime = TestRuntime(app, clock)
    yield runtime
    await runtime.aclose()


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    async def run(self, *args: str) -> tuple[int, str, str]:
        """``durable-jobs COMMAND APP ARGS`` (in a thread: it runs its own event loop)."""
        self.capsys.readouterr()  # what the test's own handlers logged
        head = 2 if args[0] == "dead-letters" else 1  # APP after the action
        code = await asyncio.to_thread(main, [*args[:head], APP, *args[head:]])
        out, err = self.capsys.readouterr()
        return code, out, err

    async def text(self, *args: str) -> str:
        code, out, err = await self.run(*args)
        assert code == 0, err
        return out

    async def json(self, *args: str) -> Any:
        code, out, err = await self.run(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    async def refused(self, *args: str) -> str:
        """A command that must fail with exit 1; its one line on stderr."""
        code, out, err = await self.run(*args)
        assert (code, out) == (1, "")
        assert err.count("\n") == 1
        return err

    async def usage_error(self, *args: str) -> str:
        with pytest.raises(SystemExit) as exited:
            await self.run(*args)
        assert exited.value.code == 2
        return self.capsys.readouterr().err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


async def dead_order(rt: TestRuntime, key: str, amount: int = 500) -> None:
    await rt.client.task("orders").send(key, Pay(amount))
    await rt.advance("5 minutes")  # settle fails; one attempt allowed


def rows(text: str) -> list[list[str]]:
    """A table's lines (header first) split into cells."""
    return [line.split() for line in text.splitlines()]


# --- instances ---------------------------------------------------------------------


async def test_instances_pages_with_a_cursor_in_json_and_text(rt: TestRuntime, cli: Cli) -> None:
    for key in ("o1", "o2", "o3"):
        await rt.client.task("orders").send(key, Pay(1))
    first = await cli.json("instances", "--limit", "2")
    assert [i["instance_id"] for i in first["items"]] == ["task:orders:o1", "task:orders:o2"]
    assert first["next_cursor"] == "task:orders:o2"
    item = first["items"][0]
    assert (item["job_name"], item["id"], item["status"]) == ("orders", "o1", "active")
    assert item["next_alarm_at"] == later(minutes=5).isoformat()
    rest = await cli.json("instances", "--limit", "2", "--cursor", first["next_cursor"])
    assert [i["instance_id"] for i in rest["items"]] == ["task:orders:o3"]
    assert rest["next_cursor"] is None
    text = await cli.text("instances", "--limit", "2")
    assert text.splitlines()[-1] == "next: --cursor task:orders:o2"
    assert "next:" not in await cli.text("instances", "--cursor", "task:orders:o2")


async def test_instances_show_the_last_error_and_overdue_alarms(rt: TestRuntime, cli: Cli) -> None:
    await rt.client.continuous("flaky").start("f", Count())
    await rt.advance("0 seconds")  # the first run fails
    await rt.client.task("orders").send("o1", Pay(1))
    rt._clock.set(rt._clock.now() + 600)  # both alarms past due, and no worker
    [header, flaky, order] = rows(await cli.text("instances"))
    assert header == ["INSTANCE_ID", "STATUS", "NEXT_ALARM_AT", "OVERDUE", "LAST_ERROR"]
    assert flaky[:4] == ["continuous:flaky:f", "running", later(minutes=1).isoformat(), "yes"]
    assert " ".join(flaky[4:]) == "Upstream: upstream down on run 1"
    assert order[3:] == ["yes", "-"]
    [shown, _] = (await cli.json("instances"))["items"]
    assert shown["overdue"] is True
    error = shown["last_error"]
    assert (error["type"], error["message"], error["attempt"]) == (
        "Upstream",
        "upstream down on run 1",
        1,
    )
    assert "in fail_always" in error["traceback"]


async def test_instances_filter_by_status_before_the_limit(rt: TestRuntime, cli: Cli) -> None:
    await rt.client.task("orders").send("o1", Pay(1))
    await rt.advance("5 minutes")  # o1 runs and goes idle
    await rt.client.task("orders").send("o2", Pay(1))
    shown = await cli.json("instances", "--status", "active", "--limit", "1")
    assert [i["instance_id"] for i in shown["items"]] == ["task:orders:o2"]
    assert shown["next_cursor"] is None
    assert await cli.text("instances", "--job", "hooks") == "(no instances)\n"


async def test_a_status_of_another_kind_or_a_bad_limit_is_a_usage_error(
    rt: TestRuntime, cli: Cli
) -> None:
    err = await cli.usage_error("instances", "--kind", "continuous", "--status", "idle")
    assert "expected one of running, stopped" in err
    assert "invalid limit '0'" in await cli.usage_error("instances", "--limit", "0")


# --- history and inspect -------------------------------------------------------------


async def test_history_lists_runs_newest_first(rt: TestRuntime, cli: Cli) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    await rt.advance("0 seconds")
    await rt.client.continuous("ticker").trigger("t")
    [header, *lines] = rows(await cli.text("history", "continuous:ticker:t"))
    assert header == ["STARTED_AT", "TRIGGER", "OUTCOME", "ATTEMPT", "DURATION_MS", "ERROR"]
    assert [line[1:4] for line in lines] == [["trigger", "ok", "1"], ["alarm", "ok", "1"]]
    assert lines[0][0] == T0.isoformat()
    shown = await cli.json("history", "continuous:ticker:t", "--limit", "1")
    assert [(r["trigger"], r["outcome"], r["error"]) for r in shown] == [("trigger", "ok", None)]
    assert shown[0]["started_at"] == T0.isoformat()


async def test_history_of_a_failure_carries_its_error_with_traceback(
    rt: TestRuntime, cli: Cli
) -> None:
    await dead_order(rt, "o1")
    [run] = await cli.json("history", "task:orders:o1")
    assert run["outcome"] == "dead_lettered"
    assert run["error"]["message"] == "cannot settle 500"
    assert "in settle" in run["error"]["traceback"]
    text = await cli.text("history", "task:orders:o1")
    assert text.splitlines()[1].endswith("Upstream: cannot settle 500")
    assert await cli.text("history", "task:orders:nobody") == "(no history)\n"


async def test_inspect_shows_the_last_error_overdue_and_latest_runs(
    rt: TestRuntime, cli: Cli
) -> None:
    await rt.client.continuous("flaky").start("f", Count())
    await rt.advance("6 minutes")  # seven failed runs
    rt._clock.set(rt._clock.now() + 600)
    shown = await cli.json("inspect", "continuous:flaky:f")
    assert shown["overdue"] is True
    assert shown["last_error"]["message"] == "upstream down on run 7"
    assert "in fail_always" in shown["last_error"]["traceback"]
    assert "last_error" not in shown["counters"]
    assert [r["outcome"] for r in shown["history"]] == ["failed"] * 5
    assert shown["history"][0]["error"]["message"] == "upstream down on run 7"
    text = await cli.text("inspect", "continuous:flaky:f")
    assert "   last_error: Upstream: upstream down on run 7 (attempt 1," in text
    assert "\n    Traceback (most recent call last):\n" in text
    assert "      overdue: true" in text
    history = text[text.index("      history:") :].splitlines()
    assert len(history) == 1 + 1 + 5  # the title, the header and five runs


async def test_inspect_shows_a_dead_letters_traceback(rt: TestRuntime, cli: Cli) -> None:
    await dead_order(rt, "o1")
    shown = await cli.json("inspect", "task:orders:o1")
    assert shown["dead_letter"]["state"] == {"total": 500}
    assert "in settle" in shown["dead_letter"]["traceback"]
    assert [r["outcome"] for r in shown["history"]] == ["dead_lettered"]
    text = await cli.text("inspect", "task:orders:o1")
    assert "  dead_letter: " in text
    assert "\n    Traceback (most recent call last):\n" in text


# --- dead letters --------------------------------------------------------------------


async def test_dead_letters_list_in_pages(rt: TestRuntime, cli: Cli) -> None:
    for key in ("b", "a", "c"):
        await dead_order(rt, key)
    page = await cli.json("dead-letters", "list", "--limit", "2")
    assert [d["instance_id"] for d in page["items"]] == ["task:orders:a", "task:orders:b"]
    assert page["next_cursor"] == "task:orders:b"
    dead = page["items"][0]
    assert (dead["job_name"], dead["kind"], dead["attempts"]) == ("orders", "task", 1)
    assert dead["state"] == {"total": 500}
    assert dead["error"] == "Upstream: cannot settle 500"
    assert "in settle" in dead["traceback"]
    assert dead["at"] == later(minutes=10).isoformat()  # the second to fail
    text = await cli.text("dead-letters", "list", "--cursor", "task:orders:b")
    [header, line] = rows(text)
    assert header == ["INSTANCE_ID", "ATTEMPTS", "AT", "ERROR"]
    assert line[:2] == ["task:orders:c", "1"]
    text = await cli.text("dead-letters", "list", "--limit", "1")
    assert text.splitlines()[-1] == "next: --cursor task:orders:a"
    assert await cli.text("dead-letters", "list", "--job", "hooks") == "(no dead letters)\n"


async def test_redrive_runs_from_the_dead_letter_or_a_given_state(
    rt: TestRuntime, cli: Cli
) -> None:
    await dead_order(rt, "a")
    shown = await cli.json("dead-letters", "redrive", "task:orders:a", "--state", '{"total": 50}')
    assert shown == {"instance_id": "task:orders:a", "redriven": True}
    assert await rt.client.dead_letter("task:orders:a") is None
    assert (await rt.client.task("orders").get_state("a")).state == Order(50)
    err = await cli.refused("dead-letters", "redrive", "task:orders:a")
    assert err == "error: task:orders:a: no dead letter to redrive\n"
    await dead_order(rt, "b")
    assert await cli.text("dead-letters", "redrive", "task:orders:b") == "task:orders:b: redriven\n"
    assert await rt.client.dead_letter("task:orders:b") is not None  # the saved 500 failed again


async def test_a_bad_redrive_state_is_exit_1_and_writes_nothing(rt: TestRuntime, cli: Cli) -> None:
    await dead_order(rt, "a")
    err = await cli.refused("dead-letters", "redrive", "task:orders:a", "--state", '{"total": "x"}')
    assert "invalid state" in err
    err = await cli.refused("dead-letters", "redrive", "task:orders:a", "--state", "{total")
    assert "invalid --state: not JSON" in err
    assert await rt.client.dead_letter("task:orders:a") is not None
    assert (await rt.client.task("orders").status("a")).status == "not_found"
    code, out, _ = await cli.run("dead-letters", "redrive", "task:nope:a", "--json")
    assert (code, json.loads(out)["error"]) == (1, "JobNotFoundError")


async def test_discard_deletes_a_dead_letter_and_is_exit_1_when_there_is_none(
    rt: TestRuntime, cli: Cli
) -> None:
    await dead_order(rt, "a")
    shown = await cli.json("dead-letters", "discard", "task:orders:a")
    assert shown == {"instance_id": "task:orders:a", "discarded": True}
    assert await rt.client.dead_letter("task:orders:a") is None
    err = await cli.refused("dead-letters", "discard", "task:orders:a")
    assert err == "error: task:orders:a: no dead letter to discard\n"


async def test_dead_letters_needs_an_action(rt: TestRuntime, cli: Cli) -> None:
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(main, ["dead-letters"])
    assert exited.value.code == 2
    assert "ACTION" in cli.capsys.readouterr().err


# --- pause and resume ----------------------------------------------------------------


async def test_pause_and_resume_a_continuous_instance(rt: TestRuntime, cli: Cli) -> None:
    await rt.client.continuous("ticker").start("t", Count())
    assert await cli.text("pause", "continuous:ticker:t") == "continuous:ticker:t: paused\n"
    assert (await rt.client.continuous("ticker").status("t")).status == "stopped"
    err = await cli.refused("pause", "continuous:ticker:t")
    assert err == "error: continuous:ticker:t: already paused\n"
    rt._clock.set(rt._clock.now() + 60)
    shown = await cli.json("resume", "continuous:ticker:t")
    assert shown == {
        "instance_id": "continuous:ticker:t",
        "resumed": True,
        "next_run_at": later(minutes=2).isoformat(),
    }
    err = await cli.refused("resume", "continuous:ticker:t")
    assert err == "error: continuous:ticker:t: not paused\n"
    await cli.text("pause", "continuous:ticker:t")
    text = await cli.text("resume", "continuous:ticker:t")
    assert text == f"continuous:ticker:t: resumed, next run {later(minutes=2).isoformat()}\n"


@pytest.mark.parametrize("command", ["pause", "resume"])
async def test_pause_and_resume_refuse_other_kinds_and_missing_instances(
    rt: TestRuntime, cli: Cli, command: str
) -> None:
    await rt.client.task("orders").send("o1", Pay(1))
    err = await cli.refused(command, "task:orders:o1")
    assert "task:orders:o1 is a task instance: only continuous instances can be" in err
    err = await cli.refused(command, "continuous:ticker:nobody")
    assert err == "error: no instance 'continuous:ticker:nobody'\n"
    code, out, _ = await cli.run(command, "continuous:ticker:nobody", "--json")
    assert (code, json.loads(out)["error"]) == (1, "InstanceNotFoundError")


# --- workers -------------------------------------------------------------------------


async def test_workers_lists_the_live_workers(rt: TestRuntime, cli: Cli) -> None:
    assert await cli.text("workers") == "(no live workers)\n"
    assert await cli.json("workers") == []
    async with rt.app.worker(concurrency=3):
        [worker] = await cli.json("workers")
        [header, line] = rows(await cli.text("workers"))
    assert worker["jobs"] == ["flaky", "hooks", "orders", "ticker"]
    assert (worker["concurrency"], worker["running"]) == (3, 0)
    assert worker["started_at"] == T0.isoformat()
    assert header == [
        "WORKER_ID", "HOST", "PID", "STARTED_AT", "LAST_SEEN_AT", "CONCURRENCY", "RUNNING", "JOBS"
    ]  # fmt: skip
    assert line[0] == worker["worker_id"]
    assert line[5:] == ["3", "0", "flaky,hooks,orders,ticker"]


async def test_inspect_shows_an_instance_whose_counters_are_damaged(
    rt: TestRuntime, cli: Cli
) -> None:
    await rt.client.task("orders").send("o1", Pay(1))
    store = rt.app.storage
    record = await store.read("task:orders:o1")
    assert record is not None
    claim = await store.claim(record.instance_id, "test", rt._clock.now(), rt._clock.now() + 30)
    assert claim is not None
    damaged = attrs.evolve(record, meta='{"event_count": "many"}')
    assert await store.commit(Commit(claim=claim, record=damaged))
    shown = await cli.json("inspect", "task:orders:o1")
    assert shown["counters"] is None  # what is left is shown, and nothing is written
    assert shown["state"] == {"total": 1}
    assert shown["status"] == "active"
    assert await store.read("task:orders:o1") == damaged
