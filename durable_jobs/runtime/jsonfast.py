"""Compact JSON, with the encoder built once: ``json.dumps`` with non-default
separators makes a new encoder on every call, a measurable share of a client call."""

from __future__ import annotations

import functools
import json
from typing import Any

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@functools.lru_cache(maxsize=4096)
def _parse_object(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def load_object(text: str) -> dict[str, Any]:
    """A JSON object as a fresh dict; counters are re-read on every call, so parsed
    texts are cached and copied."""
    return dict(_parse_object(text))
