"""SQLite shared by several OS processes: single activation, crash safety, fencing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.apps.counter import Bump, counter
from tests.processes import (
    acknowledged,
    app_env,
    observer,
    start_producer,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def test_four_processes_sending_to_one_instance_apply_every_event_once(
    url: str, tmp_path: Path
) -> None:
    env = app_env(url, tmp_path)
    producers = [start_producer(env, 250, "shared") for _ in range(4)]
    total = sum(acknowledged(p) for p in producers)

    client = observer(url).sync_client.task(counter)
    state = client.get_state("shared").state
    assert total == 1000
    assert state is not None
    assert state.events == 1000
    assert not (tmp_path / "violation").exists(), (tmp_path / "violation").read_text()


def _entered(scratch: Path, pid: int) -> bool:
    return (scratch / f"entered.{pid}").exists()


def test_kill_9_inside_a_handler_loses_nothing_and_commits_once(url: str, tmp_path: Path) -> None:
    client = observer(url).sync_client.task(counter)
    client.send("k", Bump(schedule=True))
    hold = tmp_path / "hold-a"
    hold.touch()
    first = start_worker(app_env(url, tmp_path, lease=1.0, DJ_HOLD=str(hold)), tmp_path / "a.log")
    wait_until(lambda: _entered(tmp_path, first.pid), "the first worker to enter the handler")

    first.kill()
    first.wait()
    (tmp_path / "task_counter_k.active").unlink()  # the dead process's guard, not a claim
    after_crash = client.get_state("k")
    assert after_crash.state is not None
    assert after_crash.state.executed == 0
    assert client.status("k").status == "active"  # the alarm is still set

    second = start_worker(app_env(url, tmp_path, lease=1.0), tmp_path / "b.log")
    try:
        wait_until(lambda: client.status("k").status == "idle", "redelivery by the next worker")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    final = client.get_state("k").state
    assert final is not None
    assert final.executed == 1
    assert final.events == 1


def test_a_stopped_stale_owner_cannot_commit_after_a_takeover(url: str, tmp_path: Path) -> None:
    client = observer(url).sync_client.task(counter)
    client.send("k", Bump(schedule=True))
    hold = tmp_path / "hold-a"
    hold.touch()
    log_a = tmp_path / "a.log"
    stale = start_worker(app_env(url, tmp_path, lease=1.0, DJ_HOLD=str(hold)), log_a)
    try:
        wait_until(lambda: _entered(tmp_path, stale.pid), "the first worker to enter the handler")
        os.kill(stale.pid, signal.SIGSTOP)
        (tmp_path / "task_counter_k.active").unlink()  # let the guard admit the new owner

        fresh = start_worker(app_env(url, tmp_path, lease=1.0), tmp_path / "b.log")
        wait_until(lambda: client.status("k").status == "idle", "the takeover to commit")
        fresh.send_signal(signal.SIGTERM)
        assert fresh.wait(timeout=30) == 0

        hold.unlink()
        os.kill(stale.pid, signal.SIGCONT)
        wait_until(lambda: "taken over" in log_a.read_text(), "the stale commit to be refused")
    finally:
        os.kill(stale.pid, signal.SIGCONT)
        stale.send_signal(signal.SIGTERM)
        stale.wait(timeout=30)
    final = client.get_state("k").state
    assert final is not None
    assert final.executed == 1  # the stale owner's execution never committed
