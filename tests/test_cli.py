"""The durable-jobs command: in this process where it can be, as users run it where
it must be (environment read at import, signals)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from durable_jobs import create_durable_jobs
from durable_jobs.adapters.records import Commit, DeadLetterRecord
from durable_jobs.cli import listening_socket, main, remove_instance, shown_storage
from durable_jobs.errors import StorageError
from tests.apps.counter import Bump, blocking, counter
from tests.processes import ROOT, app_env, observer, observers, spawned, wait_until

APP = "tests.apps.counter:jobs"


def cli(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durable_jobs.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``durable-jobs ARGS`` in this process: exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a command that must be refused as a usage error; its stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No option comes from the environment the tests run in; handlers run here
    leave their marker files in the test's directory."""
    monkeypatch.setattr("tests.apps.counter.DIR", tmp_path)
    for name in ("APP", "JSON", "STORAGE", "TRACEBACK", "CONCURRENCY"):
        monkeypatch.delenv(f"DURABLE_JOBS_{name}", raising=False)


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """The command sends logs to stderr; the tests after it log as before."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store holding task:counter:a (alarm set) and task:counter:b (idle)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    client = observer(url).sync_client.task(counter)
    client.send("a", Bump(schedule=True))
    client.send("b", Bump())
    return url


@pytest.fixture
def env(url: str, tmp_path: Path) -> dict[str, str]:
    return app_env(url, tmp_path, DURABLE_JOBS_APP=APP)


def json_of(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


# --- listing and inspecting ----------------------------------------------------------


def test_instances_lists_with_status_and_next_alarm(env: dict[str, str]) -> None:
    table = cli(env, "instances")
    assert table.returncode == 0, table.stderr
    assert "INSTANCE_ID" in table.stdout
    assert "task:counter:a" in table.stdout
    page = json.loads(cli(env, "instances", "--json").stdout)
    assert page["next_cursor"] is None
    by_id = {r["instance_id"]: r for r in page["items"]}
    assert by_id["task:counter:a"]["status"] == "active"
    assert datetime.fromisoformat(by_id["task:counter:a"]["next_alarm_at"]).tzinfo is not None
    assert by_id["task:counter:b"]["status"] == "idle"


def test_instances_filters_by_status_from_an_environment_variable(env: dict[str, str]) -> None:
    page = json.loads(cli({**env, "DURABLE_JOBS_STATUS": "idle"}, "instances", "--json").stdout)
    assert [r["instance_id"] for r in page["items"]] == ["task:counter:b"]


def test_an_unknown_status_is_a_usage_error(capsys: pytest.CaptureFixture[str], url: str) -> None:
    err = usage_error(capsys, "instances", APP, "--storage", url, "--status", "bogus")
    assert "'bogus'" in err


def test_inspect_prints_state_as_json_and_times_in_iso_8601(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    shown = json_of(capsys, "inspect", APP, "task:counter:a", "--storage", url)
    assert shown["state"] == {"events": 1, "executed": 0}
    assert shown["counters"]["event_count"] == 1
    assert shown["dead_letter"] is None
    for field in ("created_at", "updated_at", "next_alarm_at"):
        assert datetime.fromisoformat(shown[field]).tzinfo is not None
        assert "T" in shown[field]
    code, text, _ = run(capsys, "inspect", APP, "task:counter:a", "--storage", url)
    assert code == 0
    assert 'state: {"events": 1, "executed": 0}' in text


async def _dead_letter(url: str, instance_id: str) -> None:
    app = create_durable_jobs({"counter": counter}, storage=url)
    try:
        runtime = await app.runtime()
        now = app.clock.now()
        claim = await runtime.storage.claim(instance_id, "test", now, now + 30)
        assert claim is not None
        dead = DeadLetterRecord(
            instance_id=instance_id, job_name="counter", kind="task",
            state='{"events": 2, "executed": 0}', meta=None, error="ValueError: boom",
            traceback="Traceback (most recent call last):\nValueError: boom\n",
            attempts=3, at=now,
        )  # fmt: skip
        assert await runtime.storage.commit(Commit(claim=claim, dead_letter=dead))
    finally:
        await app.aclose()


def test_inspect_prints_a_dead_letter_with_its_state_as_json(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    asyncio.run(_dead_letter(url, "task:counter:dead"))
    shown = json_of(capsys, "inspect", APP, "task:counter:dead", "--storage", url)
    assert shown["dead_letter"]["state"] == {"events": 2, "executed": 0}
    assert shown["dead_letter"]["attempts"] == 3
    assert datetime.fromisoformat(shown["dead_letter"]["at"]).tzinfo is not None


# --- --json and exit codes -----------------------------------------------------------


def test_trigger_and_terminate_print_their_results_as_json(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    triggered = json_of(capsys, "trigger", APP, "task:counter:b", "--storage", url)
    assert triggered == {"instance_id": "task:counter:b", "triggered": True}
    shown = json_of(capsys, "inspect", APP, "task:counter:b", "--storage", url)
    assert shown["state"]["executed"] == 1
    ended = json_of(capsys, "terminate", APP, "task:counter:b", "--storage", url, "--reason", "r")
    assert ended == {"instance_id": "task:counter:b", "terminated": True, "reason": "r"}


def test_trigger_runs_execute_now_and_terminate_deletes(env: dict[str, str]) -> None:
    assert "triggered" in cli(env, "trigger", "task:counter:b").stdout
    shown = json.loads(cli(env, "inspect", "task:counter:b", "--json").stdout)
    assert shown["state"]["executed"] == 1
    assert "terminated" in cli(env, "terminate", "task:counter:b", "--reason", "test").stdout
    missing = cli(env, "inspect", "task:counter:b")
    assert missing.returncode == 1
    assert "no instance" in missing.stderr


@pytest.mark.parametrize("command", ["inspect", "trigger", "terminate"])
def test_a_missing_instance_is_exit_code_1_with_one_line_on_stderr(
    capsys: pytest.CaptureFixture[str], url: str, command: str
) -> None:
    code, out, err = run(capsys, command, APP, "task:counter:nobody", "--storage", url)
    assert code == 1
    assert out == ""
    assert err.startswith("error: no instance 'task:counter:nobody'")
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["inspect", "trigger", "terminate"])
def test_with_json_a_missing_instance_is_a_json_error_on_stdout(
    capsys: pytest.CaptureFixture[str], url: str, command: str
) -> None:
    code, out, err = run(capsys, command, APP, "task:counter:nobody", "--storage", url, "--json")
    assert code == 1
    assert err == ""
    error = json.loads(out)
    assert error["error"] == "InstanceNotFoundError"
    assert "task:counter:nobody" in error["message"]


def test_json_can_be_set_from_the_environment(
    capsys: pytest.CaptureFixture[str], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_JOBS_JSON", "1")
    code, out, _ = run(capsys, "trigger", APP, "task:counter:b", "--storage", url)
    assert code == 0
    assert json.loads(out)["triggered"] is True


def test_a_malformed_instance_id_is_a_usage_error_naming_it(env: dict[str, str]) -> None:
    result = cli(env, "trigger", "nonsense")
    assert result.returncode == 2
    assert "'nonsense'" in result.stderr


def test_an_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--bogus" in usage_error(capsys, "inspect", APP, "task:counter:a", "--bogus")


def test_a_job_that_is_not_registered_is_exit_code_1(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, _, err = run(capsys, "trigger", APP, "continuous:counter:a", "--storage", url)
    assert code == 1
    assert "not a continuous job" in err


def test_help_documents_the_exit_codes_and_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "exit status:" in out
    for line in ("0    done", "1    error", "2    usage", "130  the worker"):
        assert line in out
    for command in ("worker", "dashboard", "instances", "inspect", "history", "trigger",
                    "terminate", "pause", "resume", "remove", "dead-letters",
                    "workers"):  # fmt: skip
        assert f"    {command}" in out


@pytest.mark.parametrize(
    "command",
    ["worker", "dashboard", "instances", "inspect", "history", "trigger", "terminate", "pause",
     "resume", "workers", "dead-letters list", "dead-letters redrive", "dead-letters discard"],
)  # fmt: skip
def test_each_command_has_a_description_and_the_common_options(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert description.strip()
    assert "\n" not in description.strip()
    for option in ("[APP]", "--app", "--storage", "--json", "--traceback"):
        assert option in out


def test_help_shows_defaults_as_the_environment_sets_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    assert "(default: 16)" in capsys.readouterr().out
    monkeypatch.setenv("DURABLE_JOBS_CONCURRENCY", "4")
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    assert "(default: 4)" in capsys.readouterr().out


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"durable-jobs {version('durable-jobs')}"


# --- naming the app ------------------------------------------------------------------


def test_every_command_takes_the_app_as_its_first_positional(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    rows = json_of(capsys, "instances", APP, "--storage", url)["items"]
    assert {r["instance_id"] for r in rows} == {"task:counter:a", "task:counter:b"}
    shown = json_of(capsys, "inspect", APP, "task:counter:a", "--storage", url)
    assert shown["instance_id"] == "task:counter:a"


def test_app_and_instance_id_may_have_options_between_them(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    shown = json_of(capsys, "inspect", "--storage", url, APP, "--traceback", "task:counter:a")
    assert shown["instance_id"] == "task:counter:a"


def test_one_positional_is_the_instance_id_with_the_app_from_the_option_or_environment(
    capsys: pytest.CaptureFixture[str], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = json_of(capsys, "inspect", "--app", APP, "task:counter:a", "--storage", url)
    assert shown["instance_id"] == "task:counter:a"
    monkeypatch.setenv("DURABLE_JOBS_APP", APP)
    shown = json_of(capsys, "inspect", "task:counter:b", "--storage", url)
    assert shown["instance_id"] == "task:counter:b"
    rows = json_of(capsys, "instances", "--storage", url)["items"]
    assert len(rows) == 2


def test_the_positional_app_wins_over_the_environment(
    capsys: pytest.CaptureFixture[str], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_JOBS_APP", "no_such_module:jobs")
    shown = json_of(capsys, "inspect", APP, "task:counter:a", "--storage", url)
    assert shown["instance_id"] == "task:counter:a"


def test_an_app_alone_where_an_instance_id_is_needed_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(capsys, "inspect", APP)
    assert f"invalid instance id {APP!r}" in err
    assert "give INSTANCE_ID after APP" in err


def test_no_app_or_too_many_positionals_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "name the app" in usage_error(capsys, "instances")
    assert "name the app" in usage_error(capsys, "inspect", "task:counter:a")
    assert "task:counter:a" in usage_error(capsys, "instances", APP, "task:counter:a")
    assert "extra" in usage_error(capsys, "inspect", APP, "task:counter:a", "extra")


def test_an_app_path_without_attribute_is_refused(env: dict[str, str]) -> None:
    result = cli({**env, "DURABLE_JOBS_APP": "tests.apps.counter"}, "instances")
    assert result.returncode == 2
    assert "module:attribute" in result.stderr


# --- loading the app -----------------------------------------------------------------


def test_a_module_that_does_not_exist_is_one_line(env: dict[str, str]) -> None:
    result = cli(env, "instances", "no_such_module:jobs")
    assert result.returncode == 1
    assert result.stderr == (
        "error: cannot load app 'no_such_module:jobs': no module named 'no_such_module' "
        "(run from the directory that holds it, or set PYTHONPATH)\n"
    )


def test_an_attribute_that_does_not_exist_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "instances", "tests.apps.counter:nope")
    assert code == 1
    assert err == (
        "error: cannot load app 'tests.apps.counter:nope': "
        "'tests.apps.counter' has no attribute 'nope'\n"
    )
    code, _, err = run(capsys, "instances", "tests.apps.counter:jobs.nope")
    assert "'tests.apps.counter:jobs' has no attribute 'nope'" in err
    code, _, err = run(capsys, "instances", "tests.apps.counter:counter")
    assert code == 1
    assert "is a Task, not a DurableJobs app" in err


def test_an_import_that_raises_is_one_line_naming_the_module_and_the_exception(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "instances", "tests.apps.broken:jobs")
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(
        "error: importing 'tests.apps.broken' raised RuntimeError: "
        "the app's configuration is missing at "
    )
    assert "broken.py:5" in err
    code, _, err = run(capsys, "instances", "tests.apps.broken:jobs", "--traceback")
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert 'raise RuntimeError("the app\'s configuration is missing")' in err


def test_with_json_an_app_that_cannot_load_is_a_json_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "instances", "tests.apps.counter:nope", "--json")
    assert code == 1
    assert json.loads(out)["error"] == "AppLoadError"


# --- the store -----------------------------------------------------------------------


def test_storage_flag_beats_the_environment(env: dict[str, str], url: str, tmp_path: Path) -> None:
    elsewhere = {**env, "DURABLE_JOBS_STORAGE": f"sqlite:///{tmp_path / 'empty.db'}"}
    assert json.loads(cli(elsewhere, "instances", "--json").stdout)["items"] == []
    rows = json.loads(cli(elsewhere, "instances", "--json", "--storage", url).stdout)["items"]
    assert len(rows) == 2


def test_an_invalid_storage_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "instances", APP, "--storage", "redis://x")
    assert code == 1
    assert err.startswith("error: invalid --storage: unknown storage 'redis://x'")


def test_with_storage_keeps_the_jobs_and_settings_on_another_store(url: str) -> None:
    app = create_durable_jobs({"counter": counter}, storage="memory://", lease=5, max_recoveries=2)
    moved = app.with_storage(url)
    assert moved is not app
    assert moved.jobs == app.jobs
    assert (moved.lease, moved.runtimes.settings.max_recoveries) == (5, 2)
    assert (app.storage_url, moved.storage_url) == ("memory://", url)
    assert moved.sync_client.task(counter).status("a").status == "active"
    moved.sync_client.close()


def test_with_storage_keeps_back_end_options_only_for_the_same_back_end() -> None:
    app = create_durable_jobs(
        {"counter": counter}, storage="postgresql://jobs@db/app", schema="mine"
    )
    assert "schema='mine'" in repr(app.with_storage("postgres://other@db/app").storage)
    assert app.with_storage("memory://").storage_url == "memory://"  # no TypeError on schema


def test_the_storage_is_shown_as_resolved_without_a_password() -> None:
    assert shown_storage("sqlite:///jobs.db") == f"sqlite:///{Path.cwd() / 'jobs.db'}"
    assert shown_storage("sqlite:////abs/jobs.db") == "sqlite:////abs/jobs.db"
    assert (
        shown_storage("postgresql://jobs:s3cret@db:5432/app?sslmode=require&password=s3cret")
        == "postgresql://jobs@db:5432/app?sslmode=require"
    )
    assert shown_storage("memory://") == "memory://"


def test_the_worker_banner_names_the_absolute_database_and_json_is_one_object_a_line(
    tmp_path: Path,
) -> None:
    """Started in another directory with a relative SQLite URL, the worker says which
    file it opened; its logs go to stderr, leaving stdout to the JSON lines."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = app_env("sqlite:///relative.db", tmp_path, PYTHONPATH=str(ROOT))
    worker = subprocess.Popen(
        [sys.executable, "-m", "durable_jobs.cli", "worker", APP, "--json",
         "--poll-interval", "0.05"],
        cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    spawned.append(worker)
    assert worker.stdout is not None
    started = json.loads(worker.stdout.readline())
    assert started == {
        "event": "worker.started",
        "jobs": ["blocking", "counter"],
        "storage": f"sqlite:///{elsewhere / 'relative.db'}",
    }
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event": "worker.stopped", "delivered": 0}
    ]
    assert "worker.stopped" in err  # the log line


def test_the_worker_banner_in_text(url: str, tmp_path: Path) -> None:
    env = app_env(url, tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-m", "durable_jobs.cli", "worker", APP, "--poll-interval", "0.05"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    spawned.append(worker)
    assert worker.stdout is not None
    assert worker.stdout.readline() == f"durable-jobs worker: 2 job(s) on {url}\n"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


# --- signals -------------------------------------------------------------------------


@pytest.fixture
def blocked_worker(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker (grace ten minutes) whose handler blocks its thread for ten minutes."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = create_durable_jobs({"blocking": blocking}, storage=url)
    observers.append(app)
    app.sync_client.task(blocking).send("b", Bump(schedule=True))
    log = tmp_path / "w.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "durable_jobs.cli", "worker", APP,
             "--poll-interval", "0.05", "--grace", "600"],
            cwd=ROOT, env=app_env(url, tmp_path), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    spawned.append(worker)
    wait_until(lambda: any(tmp_path.glob("blocking.*")), "the worker to enter the handler")
    return worker, log


def test_a_second_sigint_exits_at_once_with_130_past_a_blocked_handler(
    blocked_worker: tuple[subprocess.Popen[bytes], Path],
) -> None:
    worker, log = blocked_worker
    worker.send_signal(signal.SIGINT)
    wait_until(lambda: "worker.stopping" in log.read_text(), "the graceful stop to begin")
    assert worker.poll() is None  # draining: its handler has ten minutes
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 130
    assert "worker.forced_exit" in log.read_text()


# --- instances of jobs no longer registered -------------------------------------------


@pytest.fixture
def orphan(url: str) -> str:
    """task:oldjob:x, of a job the app of the CLI does not register."""
    old = create_durable_jobs({"oldjob": counter}, storage=url)
    observers.append(old)
    old.sync_client.task("oldjob").send("x", Bump(schedule=True))
    return "task:oldjob:x"


def test_instances_of_unregistered_jobs_are_listed_and_inspected(
    capsys: pytest.CaptureFixture[str], url: str, orphan: str
) -> None:
    page = json_of(capsys, "instances", APP, "--storage", url)
    by_id = {r["instance_id"]: r for r in page["items"]}
    assert by_id[orphan]["status"] == "active"
    assert json_of(capsys, "inspect", APP, orphan, "--storage", url)["state"]["events"] == 1


def test_an_unregistered_jobs_instance_is_removed_not_terminated(
    capsys: pytest.CaptureFixture[str], url: str, orphan: str
) -> None:
    code, _, err = run(capsys, "terminate", APP, orphan, "--storage", url)
    assert code == 1
    assert "durable-jobs remove" in err
    removed = json_of(capsys, "remove", APP, orphan, "--storage", url)
    assert removed == {"instance_id": orphan, "removed": True}
    code, _, err = run(capsys, "inspect", APP, orphan, "--storage", url)
    assert code == 1
    code, _, err = run(capsys, "remove", APP, orphan, "--storage", url)
    assert (code, err) == (1, f"error: no instance {orphan!r}\n")


def test_remove_refuses_an_instance_of_a_registered_job(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, _, err = run(capsys, "remove", APP, "task:counter:a", "--storage", url)
    assert code == 1
    assert "terminate task:counter:a instead" in err
    assert json_of(capsys, "inspect", APP, "task:counter:a", "--storage", url)["state"]


async def test_remove_waits_for_the_claim_and_is_fenced(url: str, orphan: str) -> None:
    app = create_durable_jobs({"counter": counter}, storage=url, claim_wait=0.05)
    try:
        runtime = await app.runtime()
        now = app.clock.now()
        held = await runtime.storage.claim(orphan, "elsewhere", now, now + 600)
        assert held is not None
        with pytest.raises(StorageError, match="stayed claimed"):
            await remove_instance(app, orphan)
        assert await runtime.storage.read(orphan) is not None
        await runtime.storage.release(held)
        assert await remove_instance(app, orphan) is True
        assert await runtime.storage.read(orphan) is None
    finally:
        await app.aclose()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_the_dashboard_refuses_an_open_host_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.delenv("DURABLE_JOBS_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["dashboard", APP, "--storage", "memory://", "--host", host])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--host '{host}'" in err
    assert "--token or DURABLE_JOBS_TOKEN" in err


def test_the_dashboard_prints_its_url_and_serves_the_api(tmp_path: Path) -> None:
    """With --port 0 it prints the port it got; the token in the URL opens the API."""
    env = app_env("memory://", tmp_path)
    env.pop("DURABLE_JOBS_TOKEN", None)
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "durable_jobs.cli", "dashboard", APP, "--json", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    spawned.append(dashboard)
    assert dashboard.stdout is not None
    started = json.loads(dashboard.stdout.readline())
    assert started["event"] == "dashboard.started"
    url = httpx.URL(started["url"])
    assert url.host == "127.0.0.1"
    token = url.params["token"]
    assert len(token) >= 32  # a fresh secrets.token_urlsafe(24)
    base = f"http://127.0.0.1:{url.port}"
    assert httpx.get(f"{base}/healthz", timeout=10).json() == {"ok": True}
    assert httpx.get(f"{base}/api/workers", timeout=10).status_code == 401
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/api/workers", headers=headers, timeout=10).json() == {"items": []}
    # The URL as a browser opens it: the token moves into a cookie, the page follows.
    with httpx.Client(follow_redirects=True, timeout=10) as browser:
        page = browser.get(started["url"], headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert str(page.url) == f"{base}/"
        assert "<h1>Overview</h1>" in page.text
    dashboard.kill()
    dashboard.wait(timeout=30)


def test_the_dashboard_without_the_web_extra_says_which_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # the import fails
    code, out, err = run(capsys, "dashboard", APP, "--storage", "memory://")
    assert out == ""
    assert code == 1
    assert err.startswith("error: durable-jobs dashboard needs the web extra: ")
    assert "durable-jobs[web]" in err
    assert err.count("\n") == 1


async def test_the_dashboard_s_connections_answer_without_nagle_s_delay() -> None:
    """asyncio sets TCP_NODELAY only on connections of a socket that says it is TCP;
    without it each answer after a connection's first waits for the client's ACK."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    sock = listening_socket("127.0.0.1", 0)
    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await accepted != 0
        writer.close()
        await writer.wait_closed()
