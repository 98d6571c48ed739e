"""Pure timing and change rules of the agent."""

from __future__ import annotations

import random

import pytest

from klasblik.agent.pacing import (
    BACKOFF_MAX_S,
    FORBIDDEN_WAIT_S,
    Backoff,
    ChangeDetector,
    FramePacer,
    ReasonFilter,
)


def test_backoff_base_doubles_from_one_second_to_sixty() -> None:
    """Base delays are 1, 2, 4, ... seconds, never above 60."""
    b = Backoff()
    assert [b.base_delay(i) for i in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert b.base_delay(10_000) == BACKOFF_MAX_S


@pytest.mark.parametrize("attempt", [0, 3, 6, 50])
def test_backoff_jitter_stays_within_half(attempt: int) -> None:
    """Each jittered delay is within ±50 % of its base, and the jitter really varies."""
    delays = []
    for seed in range(300):
        b = Backoff(rng=random.Random(seed), attempts=attempt)
        delays.append(b.next_delay())
    base = Backoff().base_delay(attempt)
    assert all(0.5 * base <= d <= 1.5 * base for d in delays)
    assert min(delays) < 0.7 * base and max(delays) > 1.3 * base


def test_backoff_counts_attempts_and_resets() -> None:
    """Successive delays grow; reset starts again at about one second."""
    b = Backoff(rng=random.Random(1), jitter=0.0)
    assert [b.next_delay() for _ in range(4)] == [1, 2, 4, 8]
    b.reset()
    assert b.next_delay() == 1


def test_forbidden_wait_is_at_least_an_hour() -> None:
    """After close 4003 the agent waits an hour or more, however the jitter falls."""
    for seed in range(100):
        d = Backoff(rng=random.Random(seed)).forbidden_delay()
        assert FORBIDDEN_WAIT_S <= d <= 1.5 * FORBIDDEN_WAIT_S


def test_backoff_rejects_negative_attempt() -> None:
    """A negative attempt number is a programming error, said so."""
    with pytest.raises(ValueError, match="attempt"):
        Backoff().base_delay(-1)


def test_pacer_holds_interval() -> None:
    """After a frame, the next may go only interval_ms later."""
    p = FramePacer(2000)
    assert p.wait_s(100.0) == 0
    p.mark_sent(100.0)
    assert p.wait_s(100.5) == pytest.approx(1.5)
    assert p.wait_s(102.0) == 0
    assert p.wait_s(105.0) == 0


def test_pacer_rejects_negative_interval() -> None:
    """A negative interval is refused."""
    with pytest.raises(ValueError, match="interval_ms"):
        FramePacer(-1)


def test_change_detector_sees_equal_and_changed_pixels() -> None:
    """Same bytes after a commit: unchanged; one byte different or another key: changed."""
    d = ChangeDetector()
    pixels = bytearray(b"\x10" * 4096)
    assert d.changed("k", pixels)
    d.commit()
    assert not d.changed("k", bytes(pixels))
    pixels[2000] ^= 1
    assert d.changed("k", pixels)
    assert d.changed("other", bytes(b"\x10" * 4096))


def test_change_detector_without_commit_keeps_reporting_change() -> None:
    """A frame that was not sent (no commit) does not count as the last frame."""
    d = ChangeDetector()
    assert d.changed("k", b"abc")
    assert d.changed("k", b"abc")
    d.commit()
    assert not d.changed("k", b"abc")
    d.reset()
    assert d.changed("k", b"abc")


def test_reason_filter_reports_each_distinct_reason_once() -> None:
    """The same capture failure is reported once; a new one or one after success again."""
    f = ReasonFilter()
    assert f.is_new("no display")
    assert not f.is_new("no display")
    assert f.is_new("locked")
    assert f.is_new("no display")
    f.clear()
    assert f.is_new("no display")
