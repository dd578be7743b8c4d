"""The ``durable-jobs`` command. Every option can also be set as ``DURABLE_JOBS_<OPTION>``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import secrets
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from .adapters.records import DeadLetterRecord, InstanceRecord
from .errors import (
    DurableJobsError,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    ValidationError,
)
from .logs import configure_cli
from .runtime import listing
from .runtime.app import DurableJobs
from .runtime.clock import to_datetime
from .runtime.draft import Draft
from .runtime.results import DeadLetter, ErrorInfo, Execution, InstanceInfo, Page, WorkerInfo
from .runtime.shell import Target

KINDS = ("continuous", "debounce", "task")
STATUSES = ("running", "stopped", "debouncing", "idle", "active")

EPILOG = """\
APP is module:attribute, with one ':'. INSTANCE_ID is KIND:JOB:ID, KIND one of
continuous, debounce, task. A command that takes both and is given one of them
reads it as INSTANCE_ID, and takes the app from --app or DURABLE_JOBS_APP.

With --json a command prints one JSON document on stdout, times in ISO 8601 (the
worker prints one JSON object per line), and an error as {"error": CLASS,
"message": TEXT} on stdout; without it an error is one line on stderr.

exit status:
  0    done
  1    error: the app could not be loaded, the store failed, the instance does not
       exist or the operation was refused
  2    usage: an unknown option, a missing or malformed APP or INSTANCE_ID
  130  the worker was stopped at once by a second SIGINT
"""


class AppLoadError(Exception):
    """The app named on the command line could not be loaded or rebound."""


class UsageError(Exception):
    """Options that parse but do not fit together; exit status 2, like argparse's own."""


class MissingExtraError(Exception):
    """The command needs an optional dependency that is not installed."""


@attrs.frozen
class Output:
    """What a command prints: ``data`` as JSON with --json, else ``text``."""

    data: Any
    text: str


Command = Callable[[DurableJobs, argparse.Namespace], Awaitable[Output]]


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(f"DURABLE_JOBS_{name.upper()}", default)


def _env_flag(name: str) -> bool:
    return str(_env(name, "")).lower() in ("1", "true", "yes")


def _version() -> str:
    try:
        return version("durable-jobs")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


# --- loading the app ---------------------------------------------------------------


def load_app(path: str) -> DurableJobs:
    """``module:attr`` (attr may be dotted) → the DurableJobs object it names.

    Failures are an ``AppLoadError`` of one line naming what was wrong; the
    original exception is its ``__cause__``."""
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise AppLoadError(
                f"cannot load app {path!r}: no module named {exc.name!r} "
                "(run from the directory that holds it, or set PYTHONPATH)"
            ) from exc
        raise AppLoadError(_import_failed(module_name, exc)) from exc
    except Exception as exc:
        raise AppLoadError(_import_failed(module_name, exc)) from exc
    parts = attr.split(".")
    for n, part in enumerate(parts):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            owner = f"{module_name}:{'.'.join(parts[:n])}" if n else module_name
            raise AppLoadError(
                f"cannot load app {path!r}: {owner!r} has no attribute {part!r}"
            ) from exc
    if not isinstance(target, DurableJobs):
        raise AppLoadError(f"{path!r} is a {type(target).__name__}, not a DurableJobs app")
    return target


def _import_failed(module_name: str, exc: Exception) -> str:
    """One line naming the module, the exception and where it was raised."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return (
        f"importing {module_name!r} raised {type(exc).__name__}: {exc}{where} "
        "(--traceback shows it whole)"
    )


def open_app(args: argparse.Namespace) -> DurableJobs:
    """The app the command names, on the store --storage names if given."""
    app = load_app(args.app_path)
    configure_cli(args.log_level)  # after loading: an app that set up logging keeps it
    if not args.storage:
        return app
    try:
        return app.with_storage(args.storage)
    except (ValueError, TypeError) as exc:
        raise AppLoadError(f"invalid --storage: {exc}") from exc


def shown_storage(url: str) -> str:
    """``url`` as this process resolves it: a SQLite path made absolute (a worker
    started elsewhere opens another file), a PostgreSQL password left out."""
    if url.startswith("sqlite:///"):
        return "sqlite:///" + os.path.abspath(url.removeprefix("sqlite:///"))
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}{at}{host}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


# --- reading and naming instances ----------------------------------------------------


def split_instance_id(instance_id: str) -> tuple[str, str, str] | None:
    """``(kind, job, id)`` of a well-formed instance id, else ``None``."""
    kind, job, key = [*instance_id.split(":", 2), "", ""][:3]
    if kind not in KINDS or not job or not key:
        return None
    return kind, job, key


def _split(instance_id: str) -> tuple[str, str, str]:
    parts = split_instance_id(instance_id)
    assert parts is not None  # checked when the arguments were parsed
    return parts


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else to_datetime(seconds).isoformat()


def _json_or_none(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _encode(value: object) -> Any:
    """JSON for what ``json`` does not know: times as ISO 8601, attrs results as objects."""
    if isinstance(value, datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)  # type: ignore[arg-type]
    raise TypeError(f"{type(value).__name__} is not JSON")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "-"
    return str(value)


def _table(rows: Sequence[dict[str, Any]], empty: str) -> str:
    if not rows:
        return empty
    columns = list(rows[0])
    cells = [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _short(error: ErrorInfo | str | None, width: int = 60) -> str | None:
    """An error as ``Type: message`` on one line, cut to ``width`` for a table."""
    if error is None:
        return None
    text = error if isinstance(error, str) else f"{error.type}: {error.message}"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _indented(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def _paged(page: Page[Any], rows: list[dict[str, Any]], empty: str) -> Output:
    """A page as ``{"items", "next_cursor"}``; the text ends with how to get the next."""
    text = _table(rows, empty)
    if page.next_cursor is not None:
        text += f"\nnext: --cursor {page.next_cursor}"
    return Output({"items": page.items, "next_cursor": page.next_cursor}, text)


def _instance_row(info: InstanceInfo) -> dict[str, Any]:
    return {
        "instance_id": info.instance_id,
        "status": info.status,
        "next_alarm_at": info.next_alarm_at,
        "overdue": info.overdue,
        "last_error": _short(info.last_error),
    }


def _execution_row(run: Execution) -> dict[str, Any]:
    return {
        "started_at": run.started_at,
        "trigger": run.trigger,
        "outcome": run.outcome,
        "attempt": run.attempt,
        "duration_ms": run.duration_ms,
        "error": _short(run.error),
    }


def _dead_letter_row(dead: DeadLetter) -> dict[str, Any]:
    return {
        "instance_id": dead.instance_id,
        "attempts": dead.attempts,
        "at": dead.at,
        "error": _short(dead.error),
    }


def _worker_row(worker: WorkerInfo) -> dict[str, Any]:
    return attrs.asdict(worker, recurse=False)


def _result(instance_id: str, result: object) -> dict[str, Any]:
    """A client result as a JSON object, with the instance it is about."""
    return {"instance_id": instance_id, **attrs.asdict(result, recurse=False)}  # type: ignore[arg-type]


async def _not_done(app: DurableJobs, instance_id: str, why: str) -> NoReturn:
    """Raise why an operation that did nothing did nothing: the instance is missing,
    or ``why``."""
    runtime = await app.runtime()
    if await runtime.storage.read(instance_id) is None:
        raise InstanceNotFoundError(f"no instance {instance_id!r}")
    raise InvalidStateError(f"{instance_id}: {why}")


def _check_registered(app: DurableJobs, kind: str, job: str) -> None:
    definition = app.jobs.get(job)
    if definition is None or definition.kind != kind:
        raise JobNotFoundError(
            f"no {kind} job {job!r} is registered in this app; "
            "`durable-jobs remove` deletes the instances of a job no longer registered"
        )


async def remove_instance(app: DurableJobs, instance_id: str) -> bool:
    """Delete an instance without running any handler; ``False`` if there is none.

    It is deleted under its claim, like any call: this waits for (up to the app's
    ``claim_wait``) and is fenced against an activation running it elsewhere."""
    kind, job, key = _split(instance_id)

    async def delete(draft: Draft[Any]) -> bool:
        found = draft.exists
        if found:
            draft.delete()
        return found

    runtime = await app.runtime()
    return await runtime.run(Target(instance_id, kind, job, key), delete)


# --- the commands --------------------------------------------------------------------


async def _instances(app: DurableJobs, args: argparse.Namespace) -> Output:
    try:
        page = await app.client.instances(
            job=args.job, kind=args.kind, status=args.status, limit=args.limit, cursor=args.cursor
        )
    except ValueError as exc:  # a status word of another kind than --kind
        raise UsageError(str(exc)) from exc
    return _paged(page, [_instance_row(i) for i in page.items], "(no instances)")


async def _inspect(app: DurableJobs, args: argparse.Namespace) -> Output:
    runtime = await app.runtime()
    record = await runtime.storage.read(args.instance_id)
    dead = await runtime.storage.read_dead_letter(args.instance_id)
    if record is None and dead is None:
        raise InstanceNotFoundError(f"no instance {args.instance_id!r} and no dead letter for it")
    found: dict[str, Any] = {"instance_id": args.instance_id}
    if record is not None:
        found |= await _instance_data(app, record)
    found["dead_letter"] = _dead_letter(dead)
    found["history"] = await app.client.history(args.instance_id, limit=5)
    return Output(found, _inspect_text(found))


async def _instance_data(app: DurableJobs, record: InstanceRecord) -> dict[str, Any]:
    now = app.clock.now()
    info = listing.instance_info(record, now, await app.runtimes.served_jobs())
    return {
        **attrs.asdict(info, recurse=False),
        "state": _json_or_none(record.state),
        "counters": listing.shown_counters(record),
    }


def _inspect_text(found: dict[str, Any]) -> str:
    """One ``name: JSON`` line a field; the last error's traceback, the dead letter's and
    the history beneath them, indented."""
    plain = {k: v for k, v in found.items() if k not in ("last_error", "dead_letter", "history")}
    lines = [f"{k:>13}: {json.dumps(v, default=_encode)}" for k, v in plain.items()]
    error: ErrorInfo | None = found.get("last_error")
    if error is not None:
        at = error.at.isoformat(timespec="seconds")
        lines.append(f"{'last_error':>13}: {_short(error, 200)} (attempt {error.attempt}, {at})")
        lines.append(_indented(error.traceback))
    dead = found["dead_letter"]
    if dead is not None:
        shown = {k: v for k, v in dead.items() if k != "traceback"}
        lines.append(f"{'dead_letter':>13}: {json.dumps(shown)}")
        if dead["traceback"]:
            lines.append(_indented(dead["traceback"]))
    history = [_execution_row(run) for run in found["history"]]
    lines.append(f"{'history':>13}:")
    lines.append(_indented(_table(history, "(no history)")))
    return "\n".join(lines)


def _dead_letter(dead: DeadLetterRecord | None) -> dict[str, Any] | None:
    if dead is None:
        return None
    return {
        "error": dead.error,
        "attempts": dead.attempts,
        "at": to_datetime(dead.at).isoformat(),
        "state": _json_or_none(dead.state),
        "traceback": dead.traceback,
    }


async def _history(app: DurableJobs, args: argparse.Namespace) -> Output:
    runs = await app.client.history(args.instance_id, limit=args.limit)
    return Output(runs, _table([_execution_row(run) for run in runs], "(no history)"))


async def _dead_letters_list(app: DurableJobs, args: argparse.Namespace) -> Output:
    page = await app.client.dead_letters(job=args.job, limit=args.limit, cursor=args.cursor)
    runtime = await app.runtime()
    output = _paged(page, [_dead_letter_row(d) for d in page.items], "(no dead letters)")
    items = [_dead_letter_data(runtime.codec.converter.unstructure, d) for d in page.items]
    return attrs.evolve(output, data={**output.data, "items": items})


def _dead_letter_data(unstructure: Callable[[Any], Any], dead: DeadLetter) -> dict[str, Any]:
    """The dead letter as JSON; its state as stored, whether the client decoded it
    (an attrs object of its job's schema) or not (the stored JSON text)."""
    state = json.loads(dead.state) if isinstance(dead.state, str) else unstructure(dead.state)
    return {**attrs.asdict(dead, recurse=False), "state": state}


async def _redrive(app: DurableJobs, args: argparse.Namespace) -> Output:
    state = None
    if args.state is not None:
        try:
            state = json.loads(args.state)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"invalid --state: not JSON ({exc}); nothing written") from exc
    result = await app.client.redrive(args.instance_id, state=state)
    if not result.redriven:
        raise InvalidStateError(f"{args.instance_id}: no dead letter to redrive")
    return Output(_result(args.instance_id, result), f"{args.instance_id}: redriven")


async def _discard(app: DurableJobs, args: argparse.Namespace) -> Output:
    if not await app.client.discard_dead_letter(args.instance_id):
        raise InvalidStateError(f"{args.instance_id}: no dead letter to discard")
    data = {"instance_id": args.instance_id, "discarded": True}
    return Output(data, f"{args.instance_id}: dead letter discarded")


async def _workers(app: DurableJobs, args: argparse.Namespace) -> Output:
    workers = await app.client.workers()
    return Output(workers, _table([_worker_row(w) for w in workers], "(no live workers)"))


def _continuous(app: DurableJobs, instance_id: str, verb: str) -> tuple[Any, str]:
    """The Continuous handle and id an instance id names; only those can ``verb``."""
    kind, job, key = _split(instance_id)
    if kind != "continuous":
        raise InvalidStateError(
            f"{instance_id} is a {kind} instance: only continuous instances can be {verb}"
        )
    return app.client.continuous(job), key


async def _pause(app: DurableJobs, args: argparse.Namespace) -> Output:
    handle, key = _continuous(app, args.instance_id, "paused")
    result = await handle.pause(key)
    if not result.paused:
        await _not_done(app, args.instance_id, "already paused")
    return Output(_result(args.instance_id, result), f"{args.instance_id}: paused")


async def _resume(app: DurableJobs, args: argparse.Namespace) -> Output:
    handle, key = _continuous(app, args.instance_id, "resumed")
    result = await handle.resume(key)
    if not result.resumed:
        await _not_done(app, args.instance_id, "not paused")
    at = _cell(result.next_run_at)
    return Output(_result(args.instance_id, result), f"{args.instance_id}: resumed, next run {at}")


async def _trigger(app: DurableJobs, args: argparse.Namespace) -> Output:
    kind, job, key = _split(args.instance_id)
    result: object
    if kind == "debounce":
        result = await app.client.debounce(job).flush(key)
        if not result.flushed:
            await _not_done(app, args.instance_id, "no events to flush")
        return Output(_result(args.instance_id, result), f"{args.instance_id}: flushed")
    if kind == "continuous":
        result = await app.client.continuous(job).trigger(key)
    else:
        result = await app.client.task(job).trigger(key)
    if not result.triggered:
        await _not_done(app, args.instance_id, "not triggered")
    return Output(_result(args.instance_id, result), f"{args.instance_id}: triggered")


async def _terminate(app: DurableJobs, args: argparse.Namespace) -> Output:
    kind, job, key = _split(args.instance_id)
    _check_registered(app, kind, job)
    if kind == "debounce":
        cleared = await app.client.debounce(job).clear(key)
        if not cleared.cleared:
            await _not_done(app, args.instance_id, "no events to clear")
        text = f"{args.instance_id}: cleared, {cleared.discarded} event(s) discarded"
        return Output(_result(args.instance_id, cleared), text)
    handle = app.client.continuous(job) if kind == "continuous" else app.client.task(job)
    result = await handle.terminate(key, args.reason)
    if not result.terminated:
        await _not_done(app, args.instance_id, "not terminated")
    return Output(_result(args.instance_id, result), f"{args.instance_id}: terminated")


async def _remove(app: DurableJobs, args: argparse.Namespace) -> Output:
    kind, job, _ = _split(args.instance_id)
    definition = app.jobs.get(job)
    if definition is not None and definition.kind == kind:
        raise InvalidStateError(
            f"{kind} job {job!r} is registered: terminate {args.instance_id} instead "
            "(remove is for instances of jobs no longer registered)"
        )
    if not await remove_instance(app, args.instance_id):
        raise InstanceNotFoundError(f"no instance {args.instance_id!r}")
    return Output(
        {"instance_id": args.instance_id, "removed": True}, f"{args.instance_id}: removed"
    )


async def _worker(app: DurableJobs, args: argparse.Namespace) -> Output:
    worker = app.worker(
        concurrency=args.concurrency, poll_interval=args.poll_interval, grace=args.grace
    )
    # Before it starts: once it is registered, a SIGTERM must find it ready to stop.
    worker.install_signal_handlers()
    await worker.start()
    where = shown_storage(app.storage_url)
    started = {"event": "worker.started", "jobs": sorted(app.jobs), "storage": where}
    _print(args, Output(started, f"durable-jobs worker: {len(app.jobs)} job(s) on {where}"))
    await worker.wait()
    stopped = {"event": "worker.stopped", "delivered": worker.delivered}
    return Output(stopped, f"durable-jobs worker: stopped after {worker.delivered} alarm(s)")


# Hosts that serve every interface, which the dashboard refuses without a chosen token.
OPEN_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - a list to refuse, not a bind


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound and listening on ``host``, ``port``.

    It says it is TCP (``IPPROTO_TCP``, which ``socket.create_server`` leaves at 0):
    asyncio turns Nagle's algorithm off only on connections of such sockets, and with it
    on every answer after the first on a connection waits ~40 ms for the client's ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


async def _dashboard(app: DurableJobs, args: argparse.Namespace) -> Output:
    token = args.token
    if not token and args.host in OPEN_HOSTS:
        raise UsageError(
            f"--host {args.host!r} serves every network the machine is on: "
            "give a token with --token or DURABLE_JOBS_TOKEN"
        )
    try:
        import uvicorn

        from .web import create_app
    except ImportError as exc:
        raise MissingExtraError(
            f"durable-jobs dashboard needs the web extra: pip install 'durable-jobs[web]' ({exc})"
        ) from None
    token = token or secrets.token_urlsafe(24)
    # Bound here, so that the URL printed is already accepting connections (and so
    # that --port 0 prints the port it got).
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={token}"
    started = {"event": "dashboard.started", "url": url}
    _print(args, Output(started, f"durable-jobs dashboard: open {url}"))
    # The app's lifespan stops the overview's tally of the event log on shutdown.
    config = uvicorn.Config(create_app(app, token), lifespan="on", log_level="warning")
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
    return Output({"event": "dashboard.stopped"}, "durable-jobs dashboard: stopped")


# --- the command line ----------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout; shows each option's default when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help = action.help or ""
        shown = action.default not in (None, argparse.SUPPRESS) and action.default is not False
        if action.option_strings and shown and "%(default)" not in help:
            help += " (default: %(default)s)"
        return help


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durable-jobs", description=__doc__, epilog=EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, run: Command, help: str, *, instance: bool = False, under: Any = commands
    ) -> argparse.ArgumentParser:
        """A subcommand taking APP (and INSTANCE_ID), --app, --storage, --json, --traceback."""
        sub: argparse.ArgumentParser = under.add_parser(
            name, help=help, description=help, epilog=EPILOG, formatter_class=_Formatter
        )
        sub.add_argument("app_path", nargs="?", metavar="APP", help="module:attribute of the app")
        if instance:
            sub.add_argument("instance_id", metavar="INSTANCE_ID", help="KIND:JOB:ID")
        sub.add_argument("--app", default=_env("app"), help="the app, when not given as APP")
        sub.add_argument(
            "--storage",
            default=None,
            metavar="URL",
            help="a store to use instead of the app's (which is its storage=, else "
            "DURABLE_JOBS_STORAGE, else sqlite:///durable_jobs.db)",
        )
        sub.add_argument(
            "--json", action="store_true", default=_env_flag("json"), help="print JSON"
        )
        sub.add_argument("--log-level", default=_env("log_level"),
                         help="durable-jobs' log level, to stderr (default INFO)")  # fmt: skip
        sub.add_argument(
            "--traceback",
            action="store_true",
            default=_env_flag("traceback"),
            help="print the whole traceback of an error",
        )
        sub.set_defaults(run=run, command_parser=sub, takes_instance=instance)
        return sub

    worker = command("worker", _worker, "deliver due alarms until SIGTERM or SIGINT")
    worker.add_argument("--concurrency", type=int, default=int(_env("concurrency", 16)),
                        help="handlers run at once")  # fmt: skip
    worker.add_argument("--poll-interval", type=float, default=float(_env("poll_interval", 1.0)),
                        help="seconds between looks for alarms set by other processes")  # fmt: skip
    worker.add_argument("--grace", type=float, default=float(_env("grace", 30.0)),
                        help="seconds running handlers get to finish when stopping")  # fmt: skip

    dashboard = command("dashboard", _dashboard, "serve the dashboard and HTTP API; print its URL")
    dashboard.add_argument("--host", default=_env("host", "127.0.0.1"), help="address to serve on")
    dashboard.add_argument(
        "--port",
        type=int,
        default=int(_env("port", 8765)),
        help="port to serve on (0: any free one)",
    )
    dashboard.add_argument("--token", default=_env("token"),
                           help="the API token (default: a fresh one, printed)")  # fmt: skip

    listing = command("instances", _instances, "list instances: status, next alarm, last error")
    listing.add_argument("--job", default=_env("job"), help="only this job's")
    listing.add_argument("--kind", choices=KINDS, default=_env("kind"), help="only this kind's")
    listing.add_argument("--status", choices=STATUSES, default=_env("status"),
                         help="only instances with this status")  # fmt: skip
    _paging(listing)

    command(
        "inspect",
        _inspect,
        "show an instance: state, counters, last error, dead letter, latest runs",
        instance=True,
    )
    history = command("history", _history, "list an instance's latest runs, newest first",
                      instance=True)  # fmt: skip
    history.add_argument("--limit", type=_limit, default=_limit(_env("limit", "50")),
                         help="at most this many runs")  # fmt: skip
    command("trigger", _trigger, "run an instance now (flush a debounce)", instance=True)
    terminate = command(
        "terminate", _terminate, "terminate an instance (clear a debounce)", instance=True
    )
    terminate.add_argument("--reason", default=_env("reason"), help="recorded with it")
    command("pause", _pause, "pause a continuous instance, keeping its state", instance=True)
    command("resume", _resume, "resume a paused continuous instance from now", instance=True)
    command("remove", _remove, "delete an instance of a job no longer registered", instance=True)
    _dead_letter_commands(command, commands)
    command("workers", _workers, "list the live workers and the jobs they serve")
    return parser


def _dead_letter_commands(command: Callable[..., argparse.ArgumentParser], under: Any) -> None:
    """``dead-letters list|redrive|discard``."""
    about = "list, redrive or discard what instances that failed for good left"
    summary = "list, redrive or discard dead letters"
    group = under.add_parser(
        "dead-letters", help=summary, description=about, formatter_class=_Formatter
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command("list", _dead_letters_list, "list dead letters by instance id",
                      under=actions)  # fmt: skip
    listing.add_argument("--job", default=_env("job"), help="only this job's")
    _paging(listing)
    redrive = command(
        "redrive",
        _redrive,
        "re-create an instance from its dead letter and run it now",
        instance=True,
        under=actions,
    )
    redrive.add_argument(
        "--state", default=None, metavar="JSON", help="run it from this state instead (checked)"
    )
    command("discard", _discard, "delete an instance's dead letter", instance=True, under=actions)


def _paging(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--limit", type=_limit, default=_limit(_env("limit", "100")),
                         help="at most this many")  # fmt: skip
    listing.add_argument("--cursor", default=None, help="where the previous page ended")


def _limit(text: str) -> int:
    """A page size, as the client takes it."""
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 10_000:
        raise argparse.ArgumentTypeError(f"invalid limit {text!r}: expected 1 to 10000")
    return limit


def _place_positionals(args: argparse.Namespace, extras: list[str]) -> None:
    """Settle APP and INSTANCE_ID, checking both: by count, two positionals are APP
    INSTANCE_ID and one is INSTANCE_ID. Those after an option come in ``extras``."""
    parser: argparse.ArgumentParser = args.command_parser
    given = [v for v in (args.app_path, getattr(args, "instance_id", None)) if v is not None]
    given += [e for e in extras if not e.startswith("-")]
    if any(e.startswith("-") for e in extras) or len(given) > 1 + args.takes_instance:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if args.takes_instance:
        args.instance_id = given.pop()
        if split_instance_id(args.instance_id) is None:
            looks_like_app = args.instance_id.count(":") == 1 and not given
            hint = "; give INSTANCE_ID after APP" if looks_like_app else ""
            parser.error(
                f"invalid instance id {args.instance_id!r}: expected KIND:JOB:ID with KIND "
                f"one of {', '.join(KINDS)}{hint}"
            )
    args.app_path = given[0] if given else args.app
    if not args.app_path:
        parser.error("name the app: as APP, with --app or in DURABLE_JOBS_APP")
    module_name, colon, attr = args.app_path.partition(":")
    if not module_name or not colon or not attr or ":" in attr:
        parser.error(f"app {args.app_path!r} must look like 'package.module:attribute'")


def _print(args: argparse.Namespace, output: Output) -> None:
    if not args.json:
        print(output.text, flush=True)
    elif args.command in ("worker", "dashboard"):  # a stream of events: one object per line
        print(json.dumps(output.data, default=_encode), flush=True)
    else:
        print(json.dumps(output.data, indent=2, default=_encode), flush=True)


def _fail(args: argparse.Namespace, error: Exception) -> int:
    if args.traceback:
        traceback.print_exception(error)
    if args.json:
        print(json.dumps({"error": type(error).__name__, "message": str(error)}, indent=2))
    else:
        print(f"error: {error}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args, extras = _parser().parse_known_args(argv)
    _place_positionals(args, extras)
    run: Command = args.run

    async def on(app: DurableJobs) -> Output:
        try:
            return await run(app, args)
        finally:
            await app.aclose()

    try:
        output = asyncio.run(on(open_app(args)))
    except (DurableJobsError, AppLoadError, MissingExtraError) as exc:
        return _fail(args, exc)
    except UsageError as exc:
        args.command_parser.error(str(exc))
    _print(args, output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
