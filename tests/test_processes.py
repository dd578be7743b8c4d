"""A store shared by several OS processes (SQLite and PostgreSQL): single activation,
crash safety, fencing."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from durable_jobs import create_durable_jobs
from tests.apps.counter import Bump
from tests.processes import (
    Shared,
    acknowledged,
    start_producer,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)


def test_four_processes_sending_to_one_instance_apply_every_event_once(
    shared: Shared, tmp_path: Path
) -> None:
    env = shared.env(tmp_path)
    producers = [start_producer(env, 250, "shared") for _ in range(4)]
    total = sum(acknowledged(p) for p in producers)

    state = shared.client().get_state("shared").state
    assert total == 1000
    assert state is not None
    assert state.events == 1000
    assert not (tmp_path / "violation").exists(), (tmp_path / "violation").read_text()


def test_kill_9_of_a_client_inside_on_event_loses_nothing(shared: Shared, tmp_path: Path) -> None:
    """The dead client's claim expires after its lease; the next call then goes on
    from the last commit, and the crash wrote nothing of its own."""
    client = shared.client()
    client.send("h", Bump())
    producer = start_producer(shared.env(tmp_path, lease=1.0, DJ_HANG="1"), 1, "h")
    wait_until(lambda: any(tmp_path.glob("hanging.*")), "the producer to enter on_event")
    producer.kill()
    producer.wait()
    after_crash = client.get_state("h").state
    if shared.schema is None:
        db = sqlite3.connect(shared.url.removeprefix("sqlite:///"))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
    client.send("h", Bump())
    final = client.get_state("h").state
    assert after_crash is not None
    assert after_crash.events == 1
    assert final is not None
    assert final.events == 2


def test_a_handler_that_blocks_never_holds_other_processes_writes(
    shared: Shared, tmp_path: Path
) -> None:
    """User code never runs under the store's write lock: while one process's handler
    blocks its thread, another process's calls to other instances commit."""
    client = shared.client()
    producer = start_producer(shared.env(tmp_path, DJ_HANG="1"), 1, "blocked")
    wait_until(lambda: any(tmp_path.glob("hanging.*")), "the producer to enter on_event")
    for n in range(3):
        client.send(f"other-{n}", Bump())
    assert producer.poll() is None  # still blocked inside its handler
    producer.kill()
    producer.wait()
    states = [client.get_state(f"other-{n}").state for n in range(3)]
    assert [s.events if s else None for s in states] == [1, 1, 1]


def test_a_worker_stops_on_time_past_a_plain_handler_that_will_not_end(
    shared: Shared, tmp_path: Path
) -> None:
    """SIGTERM: the grace, two seconds for the cancelled calls, then the stuck thread is
    abandoned with its claim, which expires; the process exits at once (it waited for
    the thread's 600 s before)."""
    from tests.apps.counter import blocking

    options = {"schema": shared.schema} if shared.schema else {}
    app = create_durable_jobs({"blocking": blocking}, storage=shared.url, **options)
    app.sync_client.task(blocking).send("b", Bump(schedule=True))
    worker = start_worker(shared.env(tmp_path, lease=30.0), tmp_path / "w.log")
    wait_until(lambda: any(tmp_path.glob("blocking.*")), "the worker to enter the handler")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=5 + 2 + 10) == 0  # --grace 5, two seconds more, then exit
    assert "worker.abandoned_threads" in (tmp_path / "w.log").read_text()
    assert app.sync_client.task(blocking).status("b").status == "active"  # nothing committed
    app.sync_client.close()


def _entered(scratch: Path, pid: int) -> bool:
    return (scratch / f"entered.{pid}").exists()


def held_in_a_handler(shared: Shared, scratch: Path, log: Path) -> Any:
    """A worker (lease 1 s) that has entered execute of instance k and stays there
    until the file ``hold-a`` is deleted."""
    shared.client().send("k", Bump(schedule=True))
    hold = scratch / "hold-a"
    hold.touch()
    worker = start_worker(shared.env(scratch, lease=1.0, DJ_HOLD=str(hold)), log)
    wait_until(lambda: _entered(scratch, worker.pid), "the first worker to enter the handler")
    return worker


def test_kill_9_inside_a_handler_loses_nothing_and_commits_once(
    shared: Shared, tmp_path: Path
) -> None:
    client = shared.client()
    first = held_in_a_handler(shared, tmp_path, tmp_path / "a.log")
    first.kill()
    first.wait()
    (tmp_path / "task_counter_k.active").unlink()  # the dead process's guard, not a claim
    after_crash = client.get_state("k")
    assert after_crash.state is not None
    assert after_crash.state.executed == 0
    assert client.status("k").status == "active"  # the alarm is still set

    second = start_worker(shared.env(tmp_path, lease=1.0), tmp_path / "b.log")
    try:
        wait_until(lambda: client.status("k").status == "idle", "redelivery by the next worker")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    final = client.get_state("k").state
    assert final is not None
    assert final.executed == 1
    assert final.events == 1


def test_a_stopped_stale_owner_cannot_commit_after_a_takeover(
    shared: Shared, tmp_path: Path
) -> None:
    client = shared.client()
    log_a = tmp_path / "a.log"
    stale = held_in_a_handler(shared, tmp_path, log_a)
    try:
        os.kill(stale.pid, signal.SIGSTOP)
        (tmp_path / "task_counter_k.active").unlink()  # let the guard admit the new owner

        fresh = start_worker(shared.env(tmp_path, lease=1.0), tmp_path / "b.log")
        wait_until(lambda: client.status("k").status == "idle", "the takeover to commit")
        fresh.send_signal(signal.SIGTERM)
        assert fresh.wait(timeout=30) == 0

        (tmp_path / "hold-a").unlink()
        os.kill(stale.pid, signal.SIGCONT)
        wait_until(lambda: "taken over" in log_a.read_text(), "the stale commit to be refused")
    finally:
        os.kill(stale.pid, signal.SIGCONT)
        stale.send_signal(signal.SIGTERM)
        stale.wait(timeout=30)
    final = client.get_state("k").state
    assert final is not None
    assert final.executed == 1  # the stale owner's execution never committed
