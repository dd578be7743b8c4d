"""Opening a back-end from a storage URL."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from .protocols import SchedulerAdapter, StorageAdapter

DEFAULT_STORAGE = "sqlite:///durable_jobs.db"


def storage_url(url: str | None) -> str:
    """``url``, else ``DURABLE_JOBS_STORAGE``, else the SQLite default."""
    return url or os.environ.get("DURABLE_JOBS_STORAGE") or DEFAULT_STORAGE


def open_store(url: str, **options: Any) -> tuple[StorageAdapter, SchedulerAdapter]:
    """The storage and scheduler adapters for ``memory://``, ``sqlite:///path`` or
    ``postgresql://…``. Nothing is connected until ``open()``.

    ``options`` go to the back-end's constructor; one it does not take is a
    ``TypeError`` naming it, rather than a setting silently ignored."""
    if url == "memory://":
        from .memory import MemoryStore

        memory = MemoryStore(**_known(MemoryStore, "memory://", options))
        return memory, memory
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        path = url.removeprefix("sqlite:///")
        sqlite = SQLiteStore(path, **_known(SQLiteStore, "sqlite:///", options))
        return sqlite, sqlite
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        postgres = PostgresStore(url, **_known(PostgresStore, "postgresql://", options))
        return postgres, postgres
    raise ValueError(
        f"unknown storage {url!r}: expected 'memory://', 'sqlite:///PATH' or "
        "'postgresql://USER@HOST/DB'"
    )


def _known(store: type, scheme: str, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """``options``, if ``store`` takes every one of them as a keyword."""
    taken = [
        name
        for name, parameter in inspect.signature(store).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise TypeError(
            f"unknown storage option{plural} {', '.join(map(repr, unknown))} for {scheme}: "
            + (f"it takes {', '.join(taken)}" if taken else "it takes none")
        )
    return options
