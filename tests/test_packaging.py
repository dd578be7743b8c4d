"""What the wheel holds: the dashboard's assets and the licence, built as pip builds it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_wheel_ships_every_page_asset_and_the_license(tmp_path: Path) -> None:
    # From a copy: a build/ folder left in the checkout would hand its files over.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "durable_jobs", source / "durable_jobs", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "License classifiers are deprecated" not in built.stderr
    assert "project.license` as a TOML table is deprecated" not in built.stderr
    (wheel,) = tmp_path.glob("durable_jobs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = ROOT / "durable_jobs" / "web"
    assets = {
        path.relative_to(ROOT).as_posix()
        for folder in ("static", "templates")
        for path in (web / folder).iterdir()
    }
    assert assets, "no assets found next to the web package"
    assert assets <= names, f"missing from the wheel: {sorted(assets - names)}"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
