"""The typing promise of API.md section 2, checked with ``mypy --strict``: handles are
typed by the definition they are given, a name string gives ``Any``, and a wrong
argument is an error (so that these tests can fail)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).with_name("typing_probe.py")

# Lines ending in "# E: <code>" must be reported with that error code, and no others.
WRONG = textwrap.dedent(
    """\
    from durable_jobs import Continuous, Task, TaskContext, create_durable_jobs, every
    from tests.typing_probe import (
        Batch, Order, Paid, Ping, Placed, Tokens, batcher, jobs, pinger, refresh,
        token_refresher, tuple_orders, typed_orders
    )


    def on_placed(event: Placed, ctx: TaskContext[Order]) -> None:
        return None


    hourly = every("1 hour")


    async def wrong() -> None:
        client = jobs.client
        await client.continuous(token_refresher).start("x", Ping(1))  # E: arg-type
        await client.continuous(token_refresher).start("x", {"access_token": ""})  # E: arg-type
        await client.task(pinger).send("x", Tokens("a", "b"))  # E: arg-type
        await client.task(pinger).send("x", Paid())  # E: arg-type
        await client.debounce(batcher).add("x", Batch())  # E: arg-type
        state: Tokens = await client.continuous(token_refresher).get_state("x")  # E: assignment
        batch: Ping | None = await client.debounce(batcher).get_state("x")  # E: assignment
        jobs.sync_client.task(pinger).send("x", Batch())  # E: arg-type
        await client.task(typed_orders).send("x", Order("o"))  # E: arg-type
        await client.task(tuple_orders).send("x", "Placed")  # E: arg-type
        await client.task(tuple_orders).send("x", Order("o"))  # E: arg-type
        Task(state=Order, event=(Placed, Paid), on_event=on_placed, execute=print)  # E: arg-type
        Continuous(state=Tokens, schedule=hourly, execute=refresh, timeout=[1])  # E: arg-type
        create_durable_jobs({"a": token_refresher, "b": "token_refresher"})  # E: dict-item
    """
)


@pytest.fixture(scope="module")
def mypy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """--strict on the probes; the library's own errors are its own test's business."""
    folder = tmp_path_factory.mktemp("mypy")
    config = folder / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "strict = True\n"
        "follow_imports = silent\n"
        f"mypy_path = {ROOT}\n"
        f"cache_dir = {folder / 'cache'}\n"
    )
    return config


def run_mypy(config: Path, path: Path) -> tuple[str, int]:
    stdout, stderr, status = api.run(["--config-file", str(config), str(path)])
    return stdout + stderr, status


def test_the_probe_type_checks_under_strict(mypy_config: Path) -> None:
    output, status = run_mypy(mypy_config, PROBE)
    assert status == 0, output
    assert "Success: no issues found in 1 source file" in output


def test_wrong_arguments_are_reported(mypy_config: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_probe.py"
    wrong.write_text(WRONG)
    output, status = run_mypy(mypy_config, wrong)
    assert status == 1, output

    expected = {
        number: line.rsplit("# E: ", 1)[1]
        for number, line in enumerate(WRONG.splitlines(), start=1)
        if "# E: " in line
    }
    reported = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"wrong_probe\.py:(\d+): error: .*\[([a-z-]+)\]$", output, re.M)
    }
    assert reported == expected, output
    assert 'has incompatible type "Ping"; expected "Tokens"' in output
    assert 'has incompatible type "Tokens"; expected "Ping"' in output
    assert 'has incompatible type "str"; expected "Placed | Paid"' in output


def test_mypy_finds_the_installed_package_from_another_directory(tmp_path: Path) -> None:
    """A project that installs durable-jobs with ``pip install -e`` type-checks against it:
    mypy runs no import hooks, so the editable install must be a plain path entry."""
    (tmp_path / "mypy.ini").write_text(f"[mypy]\nstrict = True\ncache_dir = {tmp_path / 'cache'}\n")
    (tmp_path / "app.py").write_text(
        "from durable_jobs import JobDefinition, create_durable_jobs\n"
        "def build(jobs: dict[str, JobDefinition]) -> None:\n"
        "    create_durable_jobs(jobs)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "app.py"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    output = checked.stdout + checked.stderr
    assert "import-not-found" not in output, output
    assert checked.returncode == 0, output
