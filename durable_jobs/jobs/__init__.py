"""Job definitions: pure values, no I/O."""

from .contexts import (
    BaseContext,
    ContinuousContext,
    DebounceEventContext,
    DebounceExecuteContext,
    TaskContext,
)
from .definitions import Continuous, Debounce, JobDefinition, Task
from .durations import Duration, parse_duration
from .retry import Backoff, Retry
from .schedules import Cron, Every, Schedule, cron, every

__all__ = [
    "Backoff",
    "BaseContext",
    "Continuous",
    "ContinuousContext",
    "Cron",
    "Debounce",
    "DebounceEventContext",
    "DebounceExecuteContext",
    "Duration",
    "Every",
    "JobDefinition",
    "Retry",
    "Schedule",
    "Task",
    "TaskContext",
    "cron",
    "every",
    "parse_duration",
]
