"""The agent as a Chrome/Edge native messaging host: tells the Klasblik extension on this
PC the desktop agent's device id, so both say the same id and make one tile.

Chrome starts the host (``nl.klasblik.agent``, manifest installed by the .deb and the MSI)
with the extension's origin as the first argument, as the signed-in user, and speaks
native messaging: each message is a 4-byte little-endian length and UTF-8 JSON. The one
request is ``{"get": "device"}``; the answer ``{"device_id": "...", "agent": "..."}``.
The host reads only this user's own state folder and exits at the end of its input.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import IO, Any

from klasblik.agent.device import AGENT_NAME, default_state_dir, load_device_id

__all__ = ["HOST_NAME", "host_manifest", "is_native_host_call", "serve"]

HOST_NAME = "nl.klasblik.agent"
#: the extension id of agent/chrome/manifest.json's key; a school that packs the extension
#: with its own key puts its own id in the manifest (agent/packaging/build_agent.py --extension-id)
DEFAULT_EXTENSION_ID = "pgjabdacfpfkjngppdndmipkbnmcgbbg"
MAX_MESSAGE = 64 * 1024


def is_native_host_call(args: list[str]) -> bool:
    return bool(args) and args[0].startswith("chrome-extension://")


def host_manifest(path: str, extension_ids: list[str]) -> dict[str, Any]:
    return {
        "name": HOST_NAME,
        "description": "Klasblik desktop agent: this PC's device id for the Klasblik extension",
        "path": path,
        "type": "stdio",
        "allowed_origins": [f"chrome-extension://{e}/" for e in extension_ids],
    }


def _read(stream: IO[bytes]) -> Any | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack("<I", head)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes is too large")
    body = stream.read(size)
    if len(body) < size:
        return None
    return json.loads(body.decode("utf-8"))


def _write(stream: IO[bytes], message: dict[str, Any]) -> None:
    data = json.dumps(message).encode("utf-8")
    stream.write(struct.pack("<I", len(data)) + data)
    stream.flush()


def serve(
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    state_dir: Path | None = None,
) -> int:
    """Answer requests until the input ends; exit code 0, or 1 on a malformed message."""
    inp = stdin if stdin is not None else sys.stdin.buffer
    out = stdout if stdout is not None else sys.stdout.buffer
    while True:
        try:
            request = _read(inp)
        except (ValueError, UnicodeDecodeError) as exc:
            _write(out, {"error": f"bad message: {exc}"})
            return 1
        if request is None:
            return 0
        if isinstance(request, dict) and request.get("get") == "device":
            device_id = load_device_id(state_dir or default_state_dir())
            _write(out, {"device_id": device_id, "agent": AGENT_NAME})
        else:
            _write(out, {"error": 'unknown request; ask {"get": "device"}'})
