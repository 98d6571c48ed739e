"""The `klasblik` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from tests.support.process import KLASBLIK, ServerProcess
from tests.support.timing import timeout, wait_for_sync


def test_demo_server_starts_serves_and_stops_cleanly_on_sigterm(tmp_path):
    """`klasblik serve --demo` prints its address, connects demo agents, exits 0 on SIGTERM."""
    server = ServerProcess(tmp_path, "--demo", env={"KLASBLIK_DEMO_STUDENTS": "6"})
    try:
        server.wait_healthy()

        def five_agents() -> bool:  # /healthz tells outsiders nothing of live use: the log
            return server.log().count(" connected from ") == 5  # one is left offline

        wait_for_sync(
            five_agents, timeout(30), lambda: f"5 demo agents; log:\n{server.log()}", interval=0.2
        )
        with urllib.request.urlopen(server.base_url + "/api/auth/options") as r:
            assert json.loads(r.read()) == {"demo": True, "microsoft": False}
    finally:
        code = server.stop()
    log = server.log()
    assert code == 0, log
    assert f"Dashboard: http://127.0.0.1:{server.port}/" in log
    assert "Klasblik is stopping." in log
    assert "Traceback" not in log


def test_bad_setting_exits_2_naming_it(tmp_path):
    """A bad value stops the server before it starts, with the setting's name."""
    done = subprocess.run(
        [KLASBLIK, "serve"],
        env={"KLASBLIK_ENROLLMENT_TOKEN": "x", "KLASBLIK_PORT": "eighty", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout(60),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "configuration error: port (KLASBLIK_PORT)" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_without_token_refuses_outside_demo(tmp_path):
    """Outside demo mode an enrollment token is required."""
    done = subprocess.run(
        [KLASBLIK, "serve"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout(60),
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "enrollment_token" in done.stderr


def test_db_upgrade(tmp_path):
    """`klasblik db upgrade` creates the schema and says so."""
    done = subprocess.run(
        [KLASBLIK, "db", "upgrade"],
        env={
            "PATH": "/usr/bin:/bin",
            "KLASBLIK_ENROLLMENT_TOKEN": "x",
            "KLASBLIK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/k.db",
        },
        capture_output=True,
        text=True,
        timeout=timeout(60),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "newest schema" in done.stdout
    assert (tmp_path / "k.db").stat().st_size > 0
