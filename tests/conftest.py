from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from durable_jobs.adapters.memory import MemoryStore

BACKENDS = ["memory"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An empty, opened store of each back-end."""
    if request.param == "memory":
        adapter = MemoryStore()
    await adapter.open()
    yield adapter
    await adapter.close()
