"""The durable-jobs command, run as users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps.counter import Bump, counter
from tests.processes import ROOT, app_env, observer


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durable_jobs.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    client = observer(url).sync_client.task(counter)
    client.send("a", Bump(schedule=True))
    client.send("b", Bump())
    return app_env(url, tmp_path, DURABLE_JOBS_APP="tests.apps.counter:jobs")


def test_instances_lists_with_status_and_next_alarm(env: dict[str, str]) -> None:
    table = cli(env, "instances")
    assert table.returncode == 0, table.stderr
    assert "INSTANCE_ID" in table.stdout
    assert "task:counter:a" in table.stdout
    rows = json.loads(cli(env, "instances", "--json").stdout)
    by_id = {r["instance_id"]: r for r in rows}
    assert by_id["task:counter:a"]["status"] == "active"
    assert by_id["task:counter:a"]["next_alarm"] is not None
    assert by_id["task:counter:b"]["status"] == "idle"


def test_instances_filters_by_status_from_an_environment_variable(env: dict[str, str]) -> None:
    rows = json.loads(cli({**env, "DURABLE_JOBS_STATUS": "idle"}, "instances", "--json").stdout)
    assert [r["instance_id"] for r in rows] == ["task:counter:b"]


def test_inspect_shows_state_counters_and_dead_letter(env: dict[str, str]) -> None:
    shown = json.loads(cli(env, "inspect", "task:counter:a", "--json").stdout)
    assert shown["state"] == {"events": 1, "executed": 0}
    assert shown["counters"]["event_count"] == 1
    assert shown["dead_letter"] is None


def test_trigger_runs_execute_now_and_terminate_deletes(env: dict[str, str]) -> None:
    assert "triggered" in cli(env, "trigger", "task:counter:b").stdout
    shown = json.loads(cli(env, "inspect", "task:counter:b", "--json").stdout)
    assert shown["state"]["executed"] == 1
    assert "terminated" in cli(env, "terminate", "task:counter:b", "--reason", "test").stdout
    missing = cli(env, "inspect", "task:counter:b")
    assert missing.returncode == 1
    assert "no instance" in missing.stderr


def test_a_malformed_instance_id_is_an_error_naming_it(env: dict[str, str]) -> None:
    result = cli(env, "trigger", "nonsense")
    assert result.returncode == 1
    assert "'nonsense'" in result.stderr


def test_an_app_path_without_attribute_is_refused(env: dict[str, str]) -> None:
    result = cli({**env, "DURABLE_JOBS_APP": "tests.apps.counter"}, "instances")
    assert result.returncode != 0
    assert "module:attribute" in result.stderr
