"""Two revisions' benchmarks side by side, in one session: every row, before, after, ratio.

    python bench/compare.py BEFORE [AFTER] [SUITE ...]
    python bench/compare.py 9c839ab                   # that commit against this working tree
    python bench/compare.py 9c839ab HEAD sqlite       # two commits, the SQLite suite only
    python bench/compare.py --rounds 2 HEAD~3 HEAD memory
    python bench/compare.py bench/results/2026-12-07-9c839ab.txt sqlite   # a saved run

A revision is anything ``git rev-parse`` takes; AFTER defaults to this working tree as it
is, uncommitted changes included (also spelt ``.``). Each revision is exported with
``git archive`` into a temporary directory and runs its own ``bench/run.py SUITE`` there,
with this environment's packages but that tree's ``durable_jobs``: a throwaway venv whose
``.pth`` file puts the tree before this venv's site-packages, so that the worker and
consumer processes a suite starts import the same tree. The suites (default: those of
``make bench``) run in turn, each once for BEFORE and once for AFTER, the order flipping
every round so that a drifting machine favours neither; with ``--rounds N`` the table
shows each row's median over the rounds. BENCH_* variables reach both sides alike.

Rows are matched by suite, name and unit, with the run counts ``(n=…)`` and the
concurrency a "best" row picked (``c=64 best``) left out of the match; a row only one
side has shows "—" on the other. The ratio is after/before: above 1 is better for /s,
below 1 for s, ms and MiB. "ref" is the same ratio for the other library's column
(Huey, Procrastinate), whose code is the same on both sides: how far the machine alone
moved the figures. Both runs' full output goes to stderr as it comes, the table to stdout.

BEFORE may also be a file holding the output of an earlier ``make bench`` (bench/results/):
its rows stand for BEFORE and only AFTER runs, so "ref" then shows how the machine differs.
"""

from __future__ import annotations

import argparse
import os
import re
import site
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES = ["memory", "sqlite", "postgres"]
WORKTREE = "."
DASH = "—"

# The side-by-side tables of bench/sqlite.py and bench/postgres.py: the name (which may
# hold spaces and numbers) ends where a known unit follows it.
VS_ROW = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<unit>/s|s|ms|µs|MiB|KiB)\s+(?P<ours>[-\d,.]+|nan)"
    r"\s+(?P<theirs>[-\d,.]+|nan)\s+(?P<ratio>[-\d.]+|nan)(?:\s.*)?$"
)
# bench/memory.py: workload, median/s, min/s, max/s, per CPU-s, goal/s, met.
MEMORY_ROW = re.compile(
    r"^(?P<name>[\w-]+)\s+(?P<median>[\d,.]+)\s+[\d,.]+\s+[\d,.]+\s+(?P<cpu>[\d,.]+)\s"
)
# bench/postgres.py's workers table: workers, /s, vs one, ...
WORKERS_ROW = re.compile(r"^(?P<count>\d+)\s+(?P<rate>[\d,.]+)\s+[\d.]+\s")
UNMATCHED = (re.compile(r"\s*\(n=[^)]*\)"), re.compile(r"c=\d+ best"))


@dataclass
class Row:
    suite: str
    name: str
    unit: str
    value: float
    ref: float | None = None  # the other library's figure on the same row

    @property
    def key(self) -> tuple[str, str, str]:
        name = UNMATCHED[1].sub("c=… best", UNMATCHED[0].sub("", self.name))
        return self.suite, name, self.unit


def number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def parse(suite: str, lines: list[str]) -> list[Row]:
    """The rows of every table a suite printed, in order."""
    rows: list[Row] = []
    table = None
    for line in lines:
        if line.startswith("workload") and " unit " in line:
            table = "vs"
        elif line.startswith("workload") and "median/s" in line:
            table = "memory"
        elif line.startswith("workers") and "/s" in line:
            table = "workers"
        elif not line.strip() or line.startswith("#"):
            table = None
        elif table is not None:
            rows += parse_row(suite, table, line)
    return rows


def parse_saved(path: Path, suites: list[str]) -> list[Row]:
    """The rows of ``suites`` in the saved output of a whole run, whose suites each
    begin with a line "# NAME suite"."""
    by_suite: dict[str, list[str]] = {}
    suite = None
    for line in path.read_text().splitlines():
        if m := re.match(r"^# (\w+) suite\b", line):
            suite = m[1]
        if suite is not None:
            by_suite.setdefault(suite, []).append(line)
    return [row for suite in suites for row in parse(suite, by_suite.get(suite, []))]


def parse_row(suite: str, table: str, line: str) -> list[Row]:
    if table == "vs" and (m := VS_ROW.match(line)):
        ours = number(m["ours"])
        return [] if ours is None else [Row(suite, m["name"], m["unit"], ours, number(m["theirs"]))]
    if table == "memory" and (m := MEMORY_ROW.match(line)):
        return [
            Row(suite, m["name"], "/s", float(m["median"].replace(",", ""))),
            Row(suite, m["name"], "/CPU-s", float(m["cpu"].replace(",", ""))),
        ]
    if table == "workers" and (m := WORKERS_ROW.match(line)):
        return [Row(suite, f"workers: {m['count']}", "/s", float(m["rate"].replace(",", "")))]
    return []


# -- revisions ------------------------------------------------------------------------


@dataclass
class Revision:
    label: str  # "before" or "after"
    spec: str
    tree: Path = field(default=REPO)
    python: Path = field(default=Path(sys.executable))

    def describe(self) -> str:
        if self.spec == WORKTREE:
            dirty = git("status", "--porcelain", "--untracked-files=no")
            return f"working tree at {git('rev-parse', '--short', 'HEAD')}" + (
                " + uncommitted changes" if dirty else ""
            )
        return f"{self.spec} ({git('rev-parse', '--short', self.spec + '^{commit}')})"


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def export(revision: Revision, into: Path) -> None:
    """The revision's tree in ``into``/tree, and a venv there that imports it."""
    if revision.spec != WORKTREE:
        commit = git("rev-parse", "--verify", revision.spec + "^{commit}")
        revision.tree = into / "tree"
        revision.tree.mkdir()
        archive = subprocess.Popen(["git", "archive", commit], cwd=REPO, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(revision.tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {commit} failed")
    if not (revision.tree / "bench" / "run.py").exists():
        raise SystemExit(f"{revision.spec} has no bench/run.py")
    venv = into / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    # Plain paths in a .pth file are added without reading the .pth files they hold, so
    # this venv's editable install of durable_jobs (a .pth) stays out of the way.
    paths = [str(revision.tree), *site.getsitepackages()]
    Path(purelib, "revision.pth").write_text("\n".join(paths) + "\n")
    revision.python = venv / "bin" / "python"
    where = subprocess.run(
        [str(revision.python), "-c", "import durable_jobs; print(durable_jobs.__file__)"],
        cwd=into,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).is_relative_to(revision.tree):
        raise SystemExit(f"{revision.spec}: durable_jobs came from {where}, not its tree")


def run_suite(revision: Revision, suite: str) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = [str(revision.python), "bench/run.py", suite]
    lines = []
    print(f"== {revision.label}: {suite} ({revision.describe()})", file=sys.stderr, flush=True)
    with subprocess.Popen(
        argv, cwd=revision.tree, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"{revision.label:>6} | {line}", end="", file=sys.stderr, flush=True)
            lines.append(line.rstrip("\n"))
    if proc.returncode != 0:
        raise SystemExit(f"{revision.label}: bench/run.py {suite} exited {proc.returncode}")
    return parse(suite, lines)


def rounds_of(
    before: Revision, after: Revision, suites: list[str], rounds: int
) -> Iterator[tuple[Revision, list[Row]]]:
    for n in range(rounds):
        for suite in suites:
            order = (before, after) if n % 2 == 0 else (after, before)
            for revision in order:
                yield revision, run_suite(revision, suite)


# -- the table --------------------------------------------------------------------------


def medians(runs: list[list[Row]]) -> dict[tuple[str, str, str], Row]:
    """Each row's median over the rounds, keyed for matching."""
    grouped: dict[tuple[str, str, str], list[Row]] = {}
    for rows in runs:
        for row in rows:
            grouped.setdefault(row.key, []).append(row)
    found = {}
    for key, rows in grouped.items():
        refs = [r.ref for r in rows if r.ref is not None]
        found[key] = Row(
            rows[-1].suite,
            rows[-1].name,
            rows[-1].unit,
            statistics.median(r.value for r in rows),
            statistics.median(refs) if refs else None,
        )
    return found


def merged_keys(
    before: list[tuple[str, str, str]], after: list[tuple[str, str, str]]
) -> list[tuple[str, str, str]]:
    """After's rows in its order, each row only before has placed after its predecessor."""
    keys = list(after)
    for i, key in enumerate(before):
        if key not in keys:
            previous = next((k for k in reversed(before[:i]) if k in keys), None)
            keys.insert(keys.index(previous) + 1 if previous is not None else 0, key)
    return keys


def show(value: float | None, unit: str) -> str:
    if value is None:
        return DASH
    if unit.startswith("/"):
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def ratio(after: float | None, before: float | None) -> str:
    return f"{after / before:.2f}" if after is not None and before else DASH


def table(before: dict[tuple[str, str, str], Row], after: dict[tuple[str, str, str], Row]) -> None:
    width = max((len(f"{k[0]}: {r.name}") for k, r in (before | after).items()), default=20)
    print(f"{'row':<{width}} {'unit':<6} {'before':>10} {'after':>10} {'ratio':>6} {'ref':>6}")
    for key in merged_keys(list(before), list(after)):
        old, new = before.get(key), after.get(key)
        row = new or old
        assert row is not None
        print(
            f"{f'{row.suite}: {row.name}':<{width}} {row.unit:<6} "
            f"{show(old and old.value, row.unit):>10} {show(new and new.value, row.unit):>10} "
            f"{ratio(new and new.value, old and old.value):>6} "
            f"{ratio(new and new.ref, old and old.ref):>6}",
            flush=True,
        )


def arguments() -> tuple[str, str, list[str], int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the revision to compare against")
    parser.add_argument("rest", nargs="*", help="[AFTER] [SUITE ...]")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each suite per side")
    args = parser.parse_args()
    rest = list(args.rest)
    after = rest.pop(0) if rest and rest[0] not in SUITES else WORKTREE
    unknown = [s for s in rest if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITES)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args.before, after, rest or SUITES, args.rounds


def main() -> None:
    before_spec, after_spec, suites, rounds = arguments()
    saved = Path(before_spec)
    with tempfile.TemporaryDirectory(prefix="djcompare-") as directory:
        revisions = []
        for label, spec in (("before", before_spec), ("after", after_spec)):
            revision = Revision(label, spec)
            if label == "before" and saved.is_file():
                revisions.append(revision)
                continue
            (Path(directory) / label).mkdir()
            export(revision, Path(directory) / label)
            revisions.append(revision)
        before, after = revisions
        runs: dict[str, list[list[Row]]] = {"before": [], "after": []}
        if saved.is_file():
            runs["before"].append(parse_saved(saved, suites))
            for _ in range(rounds):
                for suite in suites:
                    runs["after"].append(run_suite(after, suite))
        else:
            for revision, rows in rounds_of(before, after, suites, rounds):
                runs[revision.label].append(rows)
        shown = f"saved run {saved}" if saved.is_file() else before.describe()
        print(f"# before: {shown}; after: {after.describe()}")
        print(f"# suites {', '.join(suites)}; {rounds} round(s), medians over rounds")
        print("# ratio = after/before (/s: higher is better; s, ms, MiB: lower); ref = the")
        print("# same ratio of the other library's figure, whose code did not change")
        table(medians(runs["before"]), medians(runs["after"]))


if __name__ == "__main__":
    main()
