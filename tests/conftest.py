from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from durable_jobs.adapters.memory import MemoryStore

DSN = os.environ.get("DURABLE_JOBS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("DURABLE_JOBS_REQUIRE_POSTGRES") == "1"


def postgres_available() -> bool:
    """Whether the test server answers; with DURABLE_JOBS_REQUIRE_POSTGRES=1 it must."""
    try:
        import psycopg

        with psycopg.connect(DSN, connect_timeout=3):
            return True
    except Exception as exc:
        if REQUIRE_POSTGRES:
            raise RuntimeError(f"PostgreSQL is required but {DSN} failed: {exc}") from exc
        return False


_POSTGRES = postgres_available()
needs_postgres = pytest.mark.skipif(
    not _POSTGRES, reason=f"no PostgreSQL at {DSN} (set DURABLE_JOBS_TEST_DSN)"
)


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    """Processes a test started never outlive it, even when it fails."""
    yield
    from tests.processes import reap

    reap()


BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=[needs_postgres, pytest.mark.postgres]),
]


def fresh_schema() -> str:
    return f"dj_test_{uuid.uuid4().hex[:12]}"


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def make_store(backend: str, tmp_path: Path) -> tuple[Any, str | None]:
    """An unopened store of ``backend`` on fresh storage, and its postgres schema."""
    if backend == "memory":
        return MemoryStore(), None
    if backend == "sqlite":
        from durable_jobs.adapters.sqlite import SQLiteStore

        return SQLiteStore(str(tmp_path / "jobs.db")), None
    from durable_jobs.adapters.postgres import PostgresStore

    schema = fresh_schema()
    return PostgresStore(DSN, schema=schema), schema


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """An empty, opened store of each back-end."""
    adapter, schema = make_store(request.param, tmp_path)
    await adapter.open()
    yield adapter
    await adapter.close()
    if schema is not None:
        drop_schema(schema)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A storage URL (and keyword options) of each back-end, on fresh storage."""
    if request.param == "memory":
        yield "memory://", {}
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}", {}
    else:
        schema = fresh_schema()
        yield DSN, {"schema": schema}
        drop_schema(schema)


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[needs_postgres, pytest.mark.postgres])]
)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A store that several processes open: SQLite, and PostgreSQL when it answers."""
    from tests.processes import Shared

    if request.param == "sqlite":
        yield Shared(f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    schema = fresh_schema()
    yield Shared(DSN, schema)
    drop_schema(schema)
