"""Durations as users write them: ``"30 seconds"``, ``timedelta`` or seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta

Duration = str | timedelta | int | float

_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("ms", "milli", "millis", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "week", "weeks"), 604800.0),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def parse_duration(value: object) -> timedelta:
    """Return ``value`` as a non-negative ``timedelta`` or raise ``ValueError`` naming it."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected a string, timedelta or seconds")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        unit = _UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(
                f"invalid duration {value!r}: expected '<number> <unit>' with unit one of "
                "millis, seconds, minutes, hours, days, weeks"
            )
        seconds = float(match.group(1)) * unit
    else:
        raise ValueError(
            f"invalid duration {value!r}: expected a string, timedelta or seconds, "
            f"got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be finite and not negative")
    return timedelta(seconds=seconds)


def to_seconds(value: object) -> float:
    """[``parse_duration``][durable_jobs.jobs.durations.parse_duration] in seconds."""
    return parse_duration(value).total_seconds()
