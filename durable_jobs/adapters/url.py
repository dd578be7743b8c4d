"""Opening a back-end from a storage URL."""

from __future__ import annotations

import os
from typing import Any

from .protocols import SchedulerAdapter, StorageAdapter

DEFAULT_STORAGE = "sqlite:///durable_jobs.db"


def storage_url(url: str | None) -> str:
    """``url``, else ``DURABLE_JOBS_STORAGE``, else the SQLite default."""
    return url or os.environ.get("DURABLE_JOBS_STORAGE") or DEFAULT_STORAGE


def open_store(url: str, **options: Any) -> tuple[StorageAdapter, SchedulerAdapter]:
    """The storage and scheduler adapters for ``memory://``, ``sqlite:///path`` or
    ``postgresql://…``. Nothing is connected until ``open()``."""
    if url == "memory://":
        from .memory import MemoryStore

        memory = MemoryStore()
        return memory, memory
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        sqlite = SQLiteStore(url.removeprefix("sqlite:///"), **options)
        return sqlite, sqlite
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        postgres = PostgresStore(url, **options)
        return postgres, postgres
    raise ValueError(
        f"unknown storage {url!r}: expected 'memory://', 'sqlite:///PATH' or "
        "'postgresql://USER@HOST/DB'"
    )
