"""How long the tests wait: one factor scales every timeout, and one helper waits.

The suite runs real services (PostgreSQL, Redis, Azurite, Chromium, Xvfb, server
subprocesses) on a shared two-core machine, so every wait in it has a timeout sized for
that machine. On a slower one (a loaded CI runner, a laptop on battery, a run under
coverage or a debugger) set ``KLASBLIK_TEST_TIMEOUT_FACTOR``, e.g. to 2 or 3: each timeout
is written as ``timeout(seconds)`` (or ``timeout_ms(ms)`` for Playwright), so this one
constant scales all of them, pytest-timeout's per-test limit included (tests/conftest.py).
A helper that takes a timeout (``wait_for`` here, ``next_connection``, ``wait_status``...)
takes it scaled already: the number goes through ``timeout()`` where it is written.
A timeout only bounds a wait that ends as soon as its condition holds, so a larger factor
slows down failures, not passing tests. Also scaled: the upper bounds a test puts on how
long something may take, and the few grace periods for work already under way (a capture
in flight when an agent is told to stop).

Not scaled: idle periods, in which a test checks that nothing happens (a larger factor
would only make them slower, not more reliable), and the intervals and limits that the code
under test is configured with or that a test checks it keeps to.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

__all__ = [
    "ENV_VAR",
    "TIMEOUT_FACTOR",
    "timeout",
    "timeout_ms",
    "wait_for",
    "wait_for_sync",
]

ENV_VAR = "KLASBLIK_TEST_TIMEOUT_FACTOR"


def parse_factor(raw: str | None) -> float:
    """The factor a value of ``KLASBLIK_TEST_TIMEOUT_FACTOR`` means; unset or empty is 1.

    Anything but a finite number above 0 is a usage error: a typo must not quietly run
    the suite with the wrong timeouts."""
    if raw is None or not raw.strip():
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise pytest.UsageError(
            f"{ENV_VAR}={raw!r} is not a positive number: set it to the factor that scales "
            "every test timeout (e.g. 2 on a slow machine), or unset it for 1"
        )
    return factor


#: Every timeout in the tests is multiplied by this.
TIMEOUT_FACTOR = parse_factor(os.environ.get(ENV_VAR))


def timeout(seconds: float) -> float:
    """``seconds`` scaled by ``TIMEOUT_FACTOR``: use it for every timeout a test sets."""
    return seconds * TIMEOUT_FACTOR


def timeout_ms(milliseconds: float) -> float:
    """``milliseconds`` scaled by ``TIMEOUT_FACTOR``, for APIs that count in ms (Playwright)."""
    return milliseconds * TIMEOUT_FACTOR


#: How long ``wait_for`` waits when not told.
DEFAULT_TIMEOUT = timeout(5.0)
#: How often ``wait_for`` checks its condition when not told.
DEFAULT_INTERVAL = 0.02

Message = str | Callable[[], str]


def _failure(predicate: Callable[..., Any], limit: float, message: Message) -> AssertionError:
    what = message() if callable(message) else message
    what = what or getattr(predicate, "__qualname__", repr(predicate))
    return AssertionError(
        f"timed out after {limit:g} s waiting for {what} ({ENV_VAR}={TIMEOUT_FACTOR:g})"
    )


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    message: Message = "",
    *,
    interval: float = DEFAULT_INTERVAL,
) -> Any:
    """Check ``predicate()`` (a function or a coroutine function) every ``interval`` seconds
    until it returns something truthy, and return that. After ``timeout`` seconds (already
    scaled: pass ``timeout(...)``) fail with an AssertionError saying what was awaited:
    ``message``, or a function that says it (called only then, so it can show the latest
    state). An exception from ``predicate`` ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _failure(predicate, timeout, message)
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    message: Message = "",
    *,
    interval: float = DEFAULT_INTERVAL,
) -> Any:
    """``wait_for`` for code outside an event loop (subprocesses, sockets, files)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise _failure(predicate, timeout, message)
        time.sleep(interval)
