"""Storage and scheduler back-ends behind the protocols of ``protocols.py``."""

from .memory import MemoryStore
from .protocols import Clock, SchedulerAdapter, StorageAdapter
from .records import Claim, Commit, DeadLetterRecord, InstanceRecord, OutboxEntry
from .url import open_store

__all__ = [
    "Claim",
    "Clock",
    "Commit",
    "DeadLetterRecord",
    "InstanceRecord",
    "MemoryStore",
    "OutboxEntry",
    "SchedulerAdapter",
    "StorageAdapter",
    "open_store",
]
