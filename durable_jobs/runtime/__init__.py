"""The instance shell, the per-kind handlers, the client, the worker and the app."""

from .app import DurableJobs, create_durable_jobs
from .client import ContinuousHandle, DebounceHandle, JobsClient, TaskHandle
from .events import EventBus, JobEvent, Subscription
from .sync_client import SyncJobsClient
from .tracker import HttpTracker
from .worker import Worker

__all__ = [
    "ContinuousHandle",
    "DebounceHandle",
    "DurableJobs",
    "EventBus",
    "HttpTracker",
    "JobEvent",
    "JobsClient",
    "Subscription",
    "SyncJobsClient",
    "TaskHandle",
    "Worker",
    "create_durable_jobs",
]
