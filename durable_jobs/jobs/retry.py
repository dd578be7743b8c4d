"""Job retry: a declarative policy, applied by the runtime through durable alarms."""

from __future__ import annotations

import random
from datetime import timedelta

import attrs

from .durations import Duration, parse_duration


def _duration(value: object) -> timedelta:
    return parse_duration(value)


@attrs.frozen(kw_only=True)
class Backoff:
    """How long to wait before retry number ``n`` (``n = 1`` is the first retry).

    * ``exponential``: ``min(base * factor ** (n - 1), max)`` — 1s, 2s, 4s, … capped.
    * ``linear``: ``base + increment * (n - 1)`` — 1s, 2s, 3s, …
    * ``fixed``: ``base`` every time.
    """

    kind: str
    base: timedelta = attrs.field(converter=_duration)
    max: timedelta | None = None
    factor: float = 2.0
    increment: timedelta = timedelta(0)

    @classmethod
    def exponential(cls, base: Duration, max: Duration, factor: float = 2) -> Backoff:
        if factor < 1:
            raise ValueError(f"invalid backoff factor {factor!r}: must be at least 1")
        return cls(kind="exponential", base=base, max=parse_duration(max), factor=float(factor))

    @classmethod
    def linear(cls, base: Duration, increment: Duration) -> Backoff:
        return cls(kind="linear", base=base, increment=parse_duration(increment))

    @classmethod
    def fixed(cls, delay: Duration) -> Backoff:
        return cls(kind="fixed", base=delay)

    def delay(self, retry: int) -> timedelta:
        if self.kind == "exponential":
            assert self.max is not None
            # Cap the exponent first so a large retry number cannot overflow.
            grown = self.base.total_seconds() * self.factor ** min(retry - 1, 64)
            return timedelta(seconds=min(grown, self.max.total_seconds()))
        if self.kind == "linear":
            return self.base + self.increment * (retry - 1)
        return self.base


@attrs.frozen(kw_only=True)
class Retry:
    """Retry a failed execute up to ``max_attempts`` tries in all (the first included).

    Retry ``n`` waits ``delay.delay(n)``; with ``jitter`` a uniformly random part of
    that wait ("full jitter") so that instances failing together spread out.
    """

    max_attempts: int
    delay: Backoff = attrs.field(factory=lambda: Backoff.fixed(0))
    jitter: bool = False

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"invalid max_attempts {self.max_attempts!r}: expected an int")
        if self.max_attempts < 1:
            raise ValueError(f"invalid max_attempts {self.max_attempts!r}: must be at least 1")

    def wait_before(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait before try ``attempt`` (``attempt >= 2``)."""
        wait = self.delay.delay(attempt - 1)
        if self.jitter:
            wait = wait * (rng or random).random()
        return wait
