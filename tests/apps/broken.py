"""An app module whose import fails, for the CLI's error on loading it."""

from __future__ import annotations

raise RuntimeError("the app's configuration is missing")
