"""The PostgreSQL back-end (``pip install durable-jobs[postgres]``)."""

from .store import PostgresStore

__all__ = ["PostgresStore"]
