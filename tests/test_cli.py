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


def test_demo_prints_token_and_a_working_agent_command_and_a_second_start_says_ignored(
    tmp_path,
):
    """Demo mode prints its enrollment token and a `klasblik agent …` command; that command,
    run as printed, connects a real desktop agent. Started again on the same data with
    another KLASBLIK_DEMO_STUDENTS, it says the number is ignored."""
    import re
    import shlex

    server = ServerProcess(tmp_path, "--demo", env={"KLASBLIK_DEMO_STUDENTS": "4"})
    agent = None
    try:
        server.wait_healthy()
        wait_for_sync(lambda: "--account" in server.log(), timeout(30), "the agent command")
        log = server.log()
        token = re.search(r"Demo enrollment token: (\S+)", log)
        assert token, log
        command = re.search(r"^\s+(\S*klasblik agent .*)$", log, re.MULTILINE)
        assert command and f"--token {token.group(1)}" in command.group(1), log
        assert "ssh -L" in log
        argv = shlex.split(command.group(1))
        argv[0] = KLASBLIK  # the printed path is relative to the checkout
        agent = subprocess.Popen(
            argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def agents() -> int:  # /healthz tells outsiders nothing of live use: the log
            return server.log().count(" connected from ")

        # 3 simulated agents and the real one, on the account the demo left free
        wait_for_sync(lambda: agents() == 4, timeout(30), "the real agent to connect")
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=timeout(10))
        assert server.stop() == 0, server.log()
    again = ServerProcess(tmp_path, "--demo", env={"KLASBLIK_DEMO_STUDENTS": "9"})
    try:
        again.wait_healthy()
    finally:
        assert again.stop() == 0, again.log()
    assert "already holds demo data with 4 students" in again.log(), again.log()
    assert "KLASBLIK_DEMO_STUDENTS" in again.log()
