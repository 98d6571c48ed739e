"""Pure timing and change logic of the agent: reconnect backoff, frame pacing, change detection.

No sockets, no clocks of its own: callers pass the time and the random source, so each
rule can be tested exactly.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Final

#: Anything zlib.crc32 accepts.
Buffer = bytes | bytearray | memoryview

__all__ = [
    "BACKOFF_JITTER",
    "BACKOFF_MAX_S",
    "BACKOFF_START_S",
    "FORBIDDEN_WAIT_S",
    "Backoff",
    "ChangeDetector",
    "FramePacer",
    "ReasonFilter",
]

BACKOFF_START_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
#: Each delay is multiplied by a random factor in [1 - JITTER, 1 + JITTER].
BACKOFF_JITTER: Final = 0.5
#: After close code 4003 (a staff account: never to be viewed) wait at least this long.
FORBIDDEN_WAIT_S: Final = 3600.0


@dataclass
class Backoff:
    """Reconnect delays: 1 s doubling to 60 s, each with ±50 % jitter.

    ``next_delay()`` gives the delay before the next attempt and counts the attempt;
    ``reset()`` after a connection that got as far as ``welcome``.
    """

    start_s: float = BACKOFF_START_S
    max_s: float = BACKOFF_MAX_S
    jitter: float = BACKOFF_JITTER
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def base_delay(self, attempt: int) -> float:
        """The delay before jitter for the attempt numbered ``attempt`` (0 = first retry)."""
        if attempt < 0:
            raise ValueError("attempt must be 0 or more")
        # Cap the exponent so a long outage cannot overflow the float.
        return min(self.max_s, self.start_s * 2.0 ** min(attempt, 32))

    def next_delay(self) -> float:
        """Delay in seconds before the next attempt, with jitter; counts the attempt."""
        base = self.base_delay(self.attempts)
        self.attempts += 1
        return base * self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def forbidden_delay(self) -> float:
        """Delay after close 4003: at least an hour, jittered upwards only."""
        self.attempts += 1
        return FORBIDDEN_WAIT_S * self.rng.uniform(1.0, 1.0 + self.jitter)

    def reset(self) -> None:
        """Start again from the shortest delay."""
        self.attempts = 0


@dataclass
class FramePacer:
    """At most one frame per ``interval_ms``; times are monotonic seconds."""

    interval_ms: int
    last_sent: float | None = None

    def __post_init__(self) -> None:
        if self.interval_ms < 0:
            raise ValueError("interval_ms must be 0 or more")

    def wait_s(self, now: float) -> float:
        """Seconds to wait before a frame may go out (0 when it may go now)."""
        if self.last_sent is None:
            return 0.0
        return max(0.0, self.last_sent + self.interval_ms / 1000.0 - now)

    def mark_sent(self, now: float) -> None:
        """Record that a frame went out at ``now``."""
        self.last_sent = now


class ChangeDetector:
    """Tells whether pixels differ from those of the last frame sent (crc32 of the bytes).

    A different ``key`` (size, mode) also counts as a change.
    """

    def __init__(self) -> None:
        self._last: tuple[object, int] | None = None
        self._pending: tuple[object, int] | None = None

    @staticmethod
    def signature(pixels: Buffer) -> int:
        """The crc32 of ``pixels``."""
        return zlib.crc32(pixels)

    def changed(self, key: object, pixels: Buffer) -> bool:
        """True when ``pixels`` (under ``key``) differ from the last committed frame."""
        sig = (key, self.signature(pixels))
        self._pending = sig
        return sig != self._last

    def commit(self) -> None:
        """The pixels last passed to :meth:`changed` were sent."""
        if self._pending is not None:
            self._last = self._pending

    def reset(self) -> None:
        """Forget the last frame: the next one counts as changed."""
        self._last = None
        self._pending = None


class ReasonFilter:
    """Lets a reason through once until a different one (or success) comes."""

    def __init__(self) -> None:
        self._last: str | None = None

    def is_new(self, reason: str) -> bool:
        """True the first time ``reason`` comes after another reason or a success."""
        if reason == self._last:
            return False
        self._last = reason
        return True

    def clear(self) -> None:
        """Capture worked again: the next failure is reported even if it is the same."""
        self._last = None
