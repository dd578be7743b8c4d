"""One handler module per job kind; all job logic lives here."""

from .base import KindHandler
from .continuous import ContinuousHandler
from .debounce import DebounceHandler
from .task import TaskHandler

HANDLERS: dict[str, type[KindHandler]] = {
    "continuous": ContinuousHandler,
    "debounce": DebounceHandler,
    "task": TaskHandler,
}

__all__ = ["HANDLERS", "ContinuousHandler", "DebounceHandler", "KindHandler", "TaskHandler"]
