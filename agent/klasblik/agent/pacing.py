"""Pure timing and change logic of the agent: frame pacing, change detection, and the
reconnect backoff (which belongs to the protocol session: :mod:`klasblik.protocol.session`;
re-exported here).

No sockets, no clocks of its own: callers pass the time and the random source, so each
rule can be tested exactly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from klasblik.protocol.session import (
    BACKOFF_JITTER,
    BACKOFF_MAX_S,
    BACKOFF_START_S,
    FORBIDDEN_WAIT_S,
    Backoff,
)

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
