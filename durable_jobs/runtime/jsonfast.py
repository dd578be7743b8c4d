"""Compact JSON, with the encoder and decoder built once: ``json.dumps`` with
non-default separators makes a new encoder on every call, a measurable share of a
client call."""

from __future__ import annotations

import json
from typing import NoReturn

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON can hold")


# Python's parser reads NaN and Infinity, which are not JSON: stored data holding
# them did not come from us and is refused.
loads = json.JSONDecoder(parse_constant=_no_constant).decode
