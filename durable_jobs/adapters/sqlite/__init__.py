"""The SQLite back-end (``storage="sqlite:///path"``), the embedded default."""

from .store import SQLiteStore

__all__ = ["SQLiteStore"]
