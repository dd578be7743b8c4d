"""One instance in full, as the API's instance route and the dashboard's page show it."""

from __future__ import annotations

from typing import Any

from ..errors import InstanceNotFoundError
from ..runtime.app import DurableJobs
from ..runtime.ids import check_id
from ..runtime.jsonfast import loads
from ..runtime.listing import instance_info, shown_counters
from .encode import to_json


async def instance_detail(jobs: DurableJobs, instance_id: str) -> dict[str, Any]:
    """InstanceInfo as JSON plus ``state``, ``counters`` and ``dead_letter``;
    ``InstanceNotFoundError`` for an unknown id."""
    instance_id = check_id(instance_id, "instance id")
    runtime = await jobs.runtime()
    record = await runtime.storage.read(instance_id)
    if record is None:
        raise InstanceNotFoundError(f"no instance {instance_id!r}")
    served = await jobs.runtimes.served_jobs()
    detail: dict[str, Any] = to_json(instance_info(record, jobs.clock.now(), served))
    detail["state"] = None if record.state is None else loads(record.state)
    detail["counters"] = shown_counters(record)
    detail["dead_letter"] = to_json(await jobs.client.dead_letter(instance_id))
    return detail
