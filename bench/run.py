"""Entry point of ``make bench``: runs every suite in SUITES, in order.

A suite is a module next to this file with a ``main()`` that prints its table
(and returns its rows). To add one, write bench/NAME.py and append "NAME".
bench/compare.py runs the suites of two revisions side by side; bench/results/ keeps
dated outputs of whole runs to compare against.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SUITES = ["memory", "sqlite", "postgres", "growth", "dashboard"]


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    for name in sys.argv[1:] or SUITES:
        importlib.import_module(name).main()
        print()


if __name__ == "__main__":
    main()
