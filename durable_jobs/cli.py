"""The ``durable-jobs`` command. Every option can also be set as ``DURABLE_JOBS_<OPTION>``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from .adapters.records import InstanceRecord
from .errors import DurableJobsError
from .logs import configure_cli
from .runtime.app import DurableJobs
from .runtime.clock import to_datetime_or_none
from .runtime.counters import load_counters
from .runtime.results import DeadLetter


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"DURABLE_JOBS_{name.upper()}", default)


def load_app(path: str) -> DurableJobs:
    """``module:attr`` (attr may be dotted) → the DurableJobs object it names."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"error: app {path!r} must look like 'package.module:attribute'")
    sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not isinstance(target, DurableJobs):
        raise SystemExit(f"error: {path!r} is a {type(target).__name__}, not a DurableJobs app")
    return target


def status_of(record: InstanceRecord) -> str:
    counters = load_counters(record.meta, record.instance_id, record.kind)
    return counters.status(record.alarm_at)


def _row(record: InstanceRecord) -> dict[str, Any]:
    alarm = to_datetime_or_none(record.alarm_at)
    return {
        "instance_id": record.instance_id,
        "kind": record.kind,
        "job": record.job_name,
        "id": record.key,
        "status": status_of(record),
        "next_alarm": alarm.isoformat() if alarm else None,
    }


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(no instances)"
    columns = list(rows[0])
    cells = [[("-" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


async def _instances(app: DurableJobs, args: argparse.Namespace) -> str:
    runtime = await app.runtime()
    records = await runtime.storage.list_instances(
        job_name=args.job, kind=args.kind, limit=args.limit
    )
    rows = [_row(r) for r in records if args.status is None or status_of(r) == args.status]
    return json.dumps(rows, indent=2) if args.json else _table(rows)


async def _inspect(app: DurableJobs, args: argparse.Namespace) -> str:
    runtime = await app.runtime()
    record = await runtime.storage.read(args.instance_id)
    dead = await app.client.dead_letter(args.instance_id)
    if record is None and dead is None:
        raise DurableJobsError(f"no instance {args.instance_id!r} and no dead letter for it")
    found: dict[str, Any] = {"instance_id": args.instance_id}
    if record is not None:
        found |= _row(record)
        found["state"] = json.loads(record.state) if record.state else None
        counters = load_counters(record.meta, record.instance_id, record.kind)
        found["counters"] = attrs.asdict(counters)
        found["created_at"] = to_datetime_or_none(record.created_at)
        found["updated_at"] = to_datetime_or_none(record.updated_at)
    found["dead_letter"] = _dead_letter(dead)
    if args.json:
        return json.dumps(found, indent=2, default=str)
    return "\n".join(f"{k:>12}: {json.dumps(v, default=str)}" for k, v in found.items())


def _dead_letter(dead: DeadLetter | None) -> dict[str, Any] | None:
    if dead is None:
        return None
    state = dead.state if isinstance(dead.state, str | None) else repr(dead.state)
    return {"error": dead.error, "attempts": dead.attempts, "at": dead.at, "state": state}


def _split(instance_id: str) -> tuple[str, str, str]:
    kind, job, key = [*instance_id.split(":", 2), "", ""][:3]
    if kind not in ("continuous", "debounce", "task") or not job or not key:
        raise DurableJobsError(f"invalid instance id {instance_id!r}: expected KIND:JOB:ID")
    return kind, job, key


async def _trigger(app: DurableJobs, args: argparse.Namespace) -> str:
    kind, job, key = _split(args.instance_id)
    if kind == "debounce":
        done = (await app.client.debounce(job).flush(key)).flushed
    elif kind == "continuous":
        done = (await app.client.continuous(job).trigger(key)).triggered
    else:
        done = (await app.client.task(job).trigger(key)).triggered
    return f"{args.instance_id}: {'triggered' if done else 'not triggered (not found)'}"


async def _terminate(app: DurableJobs, args: argparse.Namespace) -> str:
    kind, job, key = _split(args.instance_id)
    if kind == "debounce":
        cleared = await app.client.debounce(job).clear(key)
        return f"{args.instance_id}: cleared, {cleared.discarded} event(s) discarded"
    handle = app.client.continuous(job) if kind == "continuous" else app.client.task(job)
    done = (await handle.terminate(key, args.reason)).terminated
    return f"{args.instance_id}: {'terminated' if done else 'not found'}"


async def _worker(app: DurableJobs, args: argparse.Namespace) -> str:
    worker = app.worker(
        concurrency=args.concurrency, poll_interval=args.poll_interval, grace=args.grace
    )
    await worker.start()
    worker.install_signal_handlers()
    print(f"durable-jobs worker: {len(app.jobs)} job(s) on {app.storage_url}", flush=True)
    await worker.wait()
    return f"durable-jobs worker: stopped after {worker.delivered} alarm(s)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="durable-jobs", description=__doc__)
    parser.add_argument("--log-level", default=_env("log_level"), help="default INFO, to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Callable[..., Any], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--app", default=_env("app"), help="module:attribute of the app")
        sub.set_defaults(run=run)
        return sub

    worker = command("worker", _worker, "deliver due alarms until SIGTERM/SIGINT")
    worker.add_argument("app_path", nargs="?", metavar="APP", help="module:attribute")
    worker.add_argument("--concurrency", type=int, default=int(_env("concurrency", 16)))
    worker.add_argument("--poll-interval", type=float, default=float(_env("poll_interval", 1.0)))
    worker.add_argument("--grace", type=float, default=float(_env("grace", 30.0)))

    listing = command("instances", _instances, "list instances with their next alarm")
    listing.add_argument("--job", default=_env("job"))
    listing.add_argument("--kind", choices=["continuous", "debounce", "task"], default=_env("kind"))
    listing.add_argument("--status", default=_env("status"))
    listing.add_argument("--limit", type=int, default=int(_env("limit", 1000)))

    inspect = command("inspect", _inspect, "show an instance's state, alarm and dead letter")
    inspect.add_argument("instance_id")

    trigger = command("trigger", _trigger, "run an instance now (flush a debounce)")
    trigger.add_argument("instance_id")

    terminate = command("terminate", _terminate, "terminate an instance (clear a debounce)")
    terminate.add_argument("instance_id")
    terminate.add_argument("--reason", default=_env("reason"))

    for sub in (listing, inspect, trigger, terminate):
        sub.add_argument("--json", action="store_true", default=_env("json") == "1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    app_path = getattr(args, "app_path", None) or args.app
    if not app_path:
        raise SystemExit("error: name the app: --app module:attribute or DURABLE_JOBS_APP")
    app = load_app(app_path)
    configure_cli(args.log_level)  # after loading: an app that set up logging keeps it

    async def run() -> str:
        try:
            return str(await args.run(app, args))
        finally:
            await app.aclose()

    try:
        print(asyncio.run(run()))
    except DurableJobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
