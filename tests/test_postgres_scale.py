"""Scale-out on PostgreSQL: several worker and producer processes on one database."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.apps.counter import counter
from tests.conftest import DSN, drop_schema, fresh_schema, needs_postgres
from tests.processes import (
    acknowledged,
    app_env,
    observer,
    start_producer,
    start_worker,
    wait_until,
)

INSTANCES = [f"i{n}" for n in range(1000)]
LEASE = 2.0

pytestmark = [pytest.mark.postgres, needs_postgres, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def schema() -> Iterator[str]:
    name = fresh_schema()
    yield name
    drop_schema(name)


def named(name: str) -> str:
    """The test DSN with an application_name, to find a process's connections."""
    return f"{DSN}{'&' if '?' in DSN else '?'}application_name={name}"


def listening(application_name: str) -> int:
    """How many of a process's connections LISTEN: the one kept while it runs (its
    other connections may be short-lived, like the one that migrates on open)."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND query LIKE 'LISTEN%%'",
            (application_name,),
        ).fetchone()
    return int(row[0]) if row else 0


def terminate_connections(application_name: str) -> int:
    with psycopg.connect(DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def test_three_workers_two_producers_survive_a_kill_and_a_dropped_connection(
    schema: str, tmp_path: Path
) -> None:
    env = app_env(DSN, tmp_path, lease=LEASE, schema=schema)
    workers = {
        name: start_worker(
            {**env, "DURABLE_JOBS_STORAGE": named(name)}, tmp_path / f"{name}.log", concurrency=8
        )
        for name in ("worker-a", "worker-b", "worker-c")
    }
    producers = [start_producer(env, 2, *INSTANCES) for _ in range(2)]
    client = observer(DSN, schema=schema).sync_client.task(counter)

    def executed() -> int:
        return sum((s.executed if (s := client.get_state(i).state) else 0) for i in INSTANCES[::50])

    wait_until(lambda: executed() > 0, "the workers to start executing", timeout=120)
    workers["worker-a"].kill()  # SIGKILL: its claims must expire and move to the survivors
    workers["worker-a"].wait()
    wait_until(lambda: listening("worker-b") > 0, "worker-b to connect")
    assert terminate_connections("worker-b") > 0

    total = sum(acknowledged(p) for p in producers)
    wait_until(
        lambda: all(client.status(i).status == "idle" for i in INSTANCES),
        "every alarm to be delivered by the survivors",
        timeout=300,
    )
    for name, worker in workers.items():
        if name != "worker-a":
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0, (tmp_path / f"{name}.log").read_text()[-2000:]

    states = [client.get_state(i).state for i in INSTANCES]
    assert total == 2 * 2 * len(INSTANCES)
    assert sum(s.events for s in states if s is not None) == total
    assert all(s is not None and s.executed >= 1 for s in states)
    assert not (tmp_path / "violation").exists(), (tmp_path / "violation").read_text()
