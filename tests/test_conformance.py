"""Every back-end against the storage and scheduler contracts."""

from durable_jobs.testing.conformance import *  # noqa: F403
