"""The errors durable-jobs raises.

Every one is a [``DurableJobsError``][durable_jobs.errors.DurableJobsError].
"""

from __future__ import annotations


class DurableJobsError(Exception):
    """Base class of every error raised by durable-jobs."""


class JobNotFoundError(DurableJobsError):
    """The job name is not registered, or names a job of another kind."""


class InstanceNotFoundError(DurableJobsError):
    """The instance does not exist (it was never started, or was terminated)."""


class InvalidStateError(DurableJobsError):
    """The call does not fit the instance's current state."""


class ValidationError(DurableJobsError):
    """An input, event, state or id does not fit its schema. Nothing was written."""


class DefinitionError(ValidationError):
    """A job definition is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid job definition:\n  - " + "\n  - ".join(problems))


class ExecutionError(DurableJobsError):
    """A user handler raised; the original exception is ``__cause__``."""


class DuplicateEventError(DurableJobsError):
    """An event with this idempotency key was already applied to the instance."""


class StorageError(DurableJobsError):
    """The store failed. ``retryable`` says whether trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class SchedulerError(DurableJobsError):
    """An alarm could not be set or read."""
