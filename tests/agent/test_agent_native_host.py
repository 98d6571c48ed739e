"""The native messaging host, as Chrome starts it: the extension's origin as argument,
length-prefixed JSON on standard input and output (the real framing, a real process)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from tests.support.timing import timeout


def _frame(message: object) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack("<I", len(data)) + data


def _answers(out: bytes) -> list[dict]:
    answers = []
    while out:
        (size,) = struct.unpack("<I", out[:4])
        answers.append(json.loads(out[4 : 4 + size]))
        out = out[4 + size :]
    return answers


def host(stdin: bytes, home: Path, exe: list[str] | None = None) -> tuple[int, list[dict]]:
    done = subprocess.run(
        [
            *(exe or [sys.executable, "-m", "klasblik.agent.cli"]),
            "chrome-extension://pgjabdacfpfkjngppdndmipkbnmcgbbg/",
        ],
        input=stdin,
        capture_output=True,
        timeout=timeout(60),
        env={"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    return done.returncode, _answers(done.stdout)


def test_host_tells_the_agents_device_id(tmp_path: Path) -> None:
    (tmp_path / "state" / "klasblik").mkdir(parents=True)
    (tmp_path / "state" / "klasblik" / "device-id").write_text("pc-0042\n")
    code, answers = host(_frame({"get": "device"}) + _frame({"get": "token"}), tmp_path)
    assert code == 0
    assert answers[0]["device_id"] == "pc-0042" and answers[0]["agent"].startswith(
        "klasblik-agent/"
    )
    assert "unknown request" in answers[1]["error"]  # nothing else is told, the token least


def test_host_refuses_a_malformed_or_oversized_message(tmp_path: Path) -> None:
    code, answers = host(struct.pack("<I", 10_000_000) + b"{}", tmp_path)
    assert code == 1 and "too large" in answers[0]["error"]
    code, answers = host(struct.pack("<I", 3) + b"\xff\xfe{", tmp_path)
    assert code == 1 and "bad message" in answers[0]["error"]
