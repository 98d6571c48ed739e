"""The test suite's own timing: KLASBLIK_TEST_TIMEOUT_FACTOR and the shared wait helper
(tests/support/timing.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.timing import (
    ENV_VAR,
    TIMEOUT_FACTOR,
    parse_factor,
    timeout,
    timeout_ms,
    wait_for,
    wait_for_sync,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_factor_is_read_from_the_environment() -> None:
    """TIMEOUT_FACTOR is what KLASBLIK_TEST_TIMEOUT_FACTOR says (1 when unset), and
    timeout() and timeout_ms() multiply by it."""
    assert float(os.environ.get(ENV_VAR) or 1) == TIMEOUT_FACTOR
    assert timeout(1.5) == 1.5 * TIMEOUT_FACTOR
    assert timeout_ms(15_000) == 15_000 * TIMEOUT_FACTOR


def test_the_per_test_limit_scales(request: pytest.FixtureRequest) -> None:
    """pytest-timeout's limit from pyproject.toml is multiplied by the factor too."""
    if request.config.getoption("timeout") is not None or os.environ.get("PYTEST_TIMEOUT"):
        pytest.skip("a limit given for this run is taken as given")
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None
    assert marker.args == (timeout(float(request.config.getini("timeout"))),)


@pytest.mark.parametrize(("raw", "factor"), [(None, 1.0), ("", 1.0), (" 2 ", 2.0), ("0.5", 0.5)])
def test_good_factors(raw: str | None, factor: float) -> None:
    assert parse_factor(raw) == factor


@pytest.mark.parametrize("raw", ["fast", "0", "-1", "nan", "inf", "2x"])
def test_bad_factors_are_a_usage_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(pytest.UsageError, match=f"{ENV_VAR}={raw!r} is not a positive number"):
        parse_factor(raw)


def test_a_bad_factor_stops_the_run_with_the_reason() -> None:
    """pytest with a bad factor runs no test, exits with a usage error and says why."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=ROOT,
        env={**os.environ, ENV_VAR: "fast"},
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert f"{ENV_VAR}='fast' is not a positive number" in done.stderr
    assert " passed" not in done.stdout


async def test_wait_for_returns_the_first_truthy_result() -> None:
    calls: list[int] = []

    def ready() -> list[int]:
        calls.append(1)
        return calls if len(calls) >= 3 else []

    assert await wait_for(ready, timeout(5), "three calls", interval=0.001) == [1, 1, 1]

    async def answer() -> str:
        return "yes"

    assert await wait_for(answer) == "yes"


async def test_wait_for_fails_saying_what_it_waited_for() -> None:
    state = {"seen": 0}

    def never() -> bool:
        state["seen"] += 1
        return False

    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for the moon"):
        await wait_for(never, 0.05, "the moon")
    with pytest.raises(AssertionError, match=r"waiting for 2 or more looks, not \d+"):
        await wait_for(never, 0.05, lambda: f"2 or more looks, not {state['seen']}")
    with pytest.raises(AssertionError, match="waiting for .*never"):
        await wait_for(never, 0.05)


def test_wait_for_sync_polls_until_done_or_fails() -> None:
    values = iter([0, 0, "done"])
    assert wait_for_sync(lambda: next(values), timeout(5), "done", interval=0.001) == "done"
    with pytest.raises(AssertionError, match=rf"waiting for nothing \({ENV_VAR}="):
        wait_for_sync(lambda: None, 0.05, "nothing")
