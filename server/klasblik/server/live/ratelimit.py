"""Per-agent token buckets: what an agent sends beyond the rate it was told is dropped at the
server, never relayed, and the socket is read more slowly while it keeps doing so.

Each welcomed agent has one bucket per kind of message:

- **frames**: at twice the rate of its current watch (one per ``interval_ms``), with a
  burst of ``FRAME_BURST``: a jittery clock or a mode change passes, a flood does not;
- **tabs**: ``TABS_PER_S`` with a burst of ``TABS_BURST`` (tab lists are sent on change);
- **capture errors**: one per ``CAPTURE_ERROR_EVERY_S`` with a burst of ``CAPTURE_ERROR_BURST``;
- **text** (every text message, before it is parsed): ``TEXT_PER_S``, burst ``TEXT_BURST``.

A dropped message costs its sender ``PENALTY_S`` of not being read (TCP then slows the
sender down), and the agent is told ``rate_limited`` at most once per ``NOTICE_EVERY_S``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

__all__ = ["AgentLimits", "TokenBucket"]

FRAME_BURST: Final = 10
TABS_PER_S: Final = 2.0
TABS_BURST: Final = 10
CAPTURE_ERROR_EVERY_S: Final = 5.0
CAPTURE_ERROR_BURST: Final = 3
TEXT_PER_S: Final = 10.0
TEXT_BURST: Final = 30
PENALTY_S: Final = 0.05
NOTICE_EVERY_S: Final = 5.0


@dataclass(slots=True)
class TokenBucket:
    rate: float  #: tokens per second
    burst: float  #: the most tokens held
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens >= 1:
            self.tokens = tokens - 1
            return True
        self.tokens = tokens
        return False


@dataclass(slots=True)
class AgentLimits:
    """The buckets of one agent connection."""

    frames: TokenBucket = field(default_factory=lambda: TokenBucket(2.0, FRAME_BURST))
    tabs: TokenBucket = field(default_factory=lambda: TokenBucket(TABS_PER_S, TABS_BURST))
    capture_errors: TokenBucket = field(
        default_factory=lambda: TokenBucket(1 / CAPTURE_ERROR_EVERY_S, CAPTURE_ERROR_BURST)
    )
    text: TokenBucket = field(default_factory=lambda: TokenBucket(TEXT_PER_S, TEXT_BURST))
    dropped: int = 0
    _noticed: float = float("-inf")
    _interval_ms: int = -1

    def set_frame_interval(self, interval_ms: int) -> None:
        """Frames may come at twice the rate of the watch's interval (called per frame:
        the rate is worked out again only when the interval changed)."""
        if interval_ms != self._interval_ms:
            self._interval_ms = interval_ms
            self.frames.rate = 2 * 1000 / max(1, interval_ms)

    def drop(self) -> bool:
        """Count a dropped message; True when the agent should be told (now and then)."""
        self.dropped += 1
        now = time.monotonic()
        if now - self._noticed >= NOTICE_EVERY_S:
            self._noticed = now
            return True
        return False
