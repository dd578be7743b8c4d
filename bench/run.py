"""Entry point of ``make bench``: runs every suite in SUITES, in order.

A suite is a module next to this file with a ``main()`` that prints its table
(and returns its rows). To add one, write bench/NAME.py and append "NAME".
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SUITES = ["memory", "sqlite", "postgres"]


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    for name in sys.argv[1:] or SUITES:
        importlib.import_module(name).main()
        print()


if __name__ == "__main__":
    main()
