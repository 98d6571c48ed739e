"""The server waits for a database that is briefly away (restarting, failing over, or
started after it) instead of exiting, and says so in readiness but not liveness; the
database is a real PostgreSQL server stopped and started by the test."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support.live import TOKEN
from tests.support.pgcluster import PrivatePostgres
from tests.support.process import ServerProcess
from tests.support.timing import timeout, wait_for_sync


@pytest.fixture
def postgres():
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.close()


def _get(url: str) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout(5)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


def test_server_waits_for_a_database_that_comes_late_and_survives_an_outage(tmp_path, postgres):
    """Started while PostgreSQL is down, the server keeps retrying (it does not exit);
    once PostgreSQL starts it migrates and becomes ready. Stopped later, PostgreSQL makes
    /readyz 503 while /livez stays 200; started again, the server is ready again."""
    server = ServerProcess(
        tmp_path,
        env={
            "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
            "KLASBLIK_DATABASE_URL": postgres.url,
            "KLASBLIK_DATABASE_START_TIMEOUT_S": str(timeout(120)),
        },
    )
    try:
        wait_for_sync(
            lambda: server.log().count("database does not answer") >= 2,
            timeout(30),
            lambda: f"the server to report retrying; its log:\n{server.log()}",
            interval=0.1,
        )
        assert server.proc.poll() is None, server.log()
        postgres.start()
        ready = wait_for_sync(
            lambda: (r := _get(server.base_url + "/readyz")) and r[0] == 200 and r,
            timeout(60),
            lambda: f"readiness after PostgreSQL started; log:\n{server.log()}",
            interval=0.2,
        )
        assert ready[1]["database"] == "ok"
        assert "database answers (after" in server.log()

        postgres.stop()
        down = wait_for_sync(
            lambda: (r := _get(server.base_url + "/readyz")) and r[0] == 503 and r,
            timeout(30),
            "readiness to drop while PostgreSQL is stopped",
            interval=0.2,
        )
        assert down[1]["database"].startswith("down:")
        assert _get(server.base_url + "/livez") == (200, {"status": "ok"})

        postgres.start()
        wait_for_sync(
            lambda: (r := _get(server.base_url + "/readyz")) and r[0] == 200,
            timeout(30),
            "readiness once PostgreSQL is back",
            interval=0.2,
        )
        assert server.stop() == 0
    finally:
        server.stop()


def test_server_gives_up_when_the_wait_is_over(tmp_path, postgres):
    """With database_start_timeout_s = 0 a database that does not answer stops the
    server at once, with the error in the log and a non-zero exit code."""
    server = ServerProcess(
        tmp_path,
        env={
            "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
            "KLASBLIK_DATABASE_URL": postgres.url,
            "KLASBLIK_DATABASE_START_TIMEOUT_S": "0",
        },
    )
    try:
        server.proc.wait(timeout(30))
        assert server.proc.returncode == 1
        log = server.log()
        assert "database does not answer after 1 tries" in log
        # the failure is one log line (its traceback folded in), not a loose traceback
        assert "klasblik serve stopped" in log and "\nTraceback" not in log
    finally:
        server.stop()
