"""Real Chromium starts the desktop agent's native messaging host for the extension.

The host manifest (as ``klasblik/agent/native_host.host_manifest`` makes it, the one the
.deb and the MSI install) is put where Chromium looks for a user's hosts: the profile's
``NativeMessagingHosts`` folder. Its ``path`` runs the agent program (``klasblik.agent.cli``)
with this test's state folder. The extension (the unpacked test build in headless Debian
Chromium) then asks it, through ``chrome.runtime.sendNativeMessage``, and says the agent's
device id with ``role: "tabs"`` in its hello to a stand-in server.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from klasblik.agent.native_host import HOST_NAME, host_manifest
from tests.agent.agent_standin_server import StandInServer, standin_server
from tests.chrome.extension import EXTENSION_ID, running_agent

pytestmark = pytest.mark.browser

DEVICE_ID = "pc-lokaal-0042"
REPO = Path(__file__).resolve().parents[2]


def _install_host(profile: Path, state: Path, allowed: str = EXTENSION_ID) -> Path:
    """The host manifest in the profile and a launcher that starts the agent program."""
    (state / "klasblik").mkdir(parents=True)
    (state / "klasblik" / "device-id").write_text(DEVICE_ID + "\n")
    launcher = profile.parent / "klasblik-agent"
    launcher.write_text(
        "#!/bin/sh\n"
        f"export XDG_STATE_HOME={shlex.quote(str(state))}\n"
        f'echo "$@" >> {shlex.quote(str(profile.parent / "host-calls"))}\n'
        f'exec {shlex.quote(sys.executable)} -m klasblik.agent.cli "$@"\n'
    )
    launcher.chmod(0o755)
    hosts = profile / "NativeMessagingHosts"
    hosts.mkdir(parents=True)
    (hosts / f"{HOST_NAME}.json").write_text(json.dumps(host_manifest(str(launcher), [allowed])))
    return launcher


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    async with standin_server() as s:
        yield s


async def test_chromium_starts_the_host_and_the_extension_joins_the_agents_tile(
    server: StandInServer, tmp_path: Path
) -> None:
    """The extension gets the agent's device id from the host Chromium started, and says it
    in its hello with role "tabs" (one tile with the desktop agent)."""
    _install_host(tmp_path / "profile", tmp_path / "state")
    async with running_agent(
        tmp_path, server_url=server.url, token="tok", account="anna@school.example"
    ) as agent:
        answer = await agent.evaluate(
            f"chrome.runtime.sendNativeMessage({json.dumps(HOST_NAME)}, {{get: 'device'}})"
        )
        assert answer["device_id"] == DEVICE_ID
        assert answer["agent"].startswith("klasblik-agent/")
        conn = await server.next_connection()
        await conn.wait_for(lambda: len(conn.of_type("hello")) >= 1)
        hello = conn.of_type("hello")[0]
        assert hello["device"]["id"] == DEVICE_ID
        assert hello["role"] == "tabs"
    calls = (tmp_path / "host-calls").read_text().split()
    assert f"chrome-extension://{EXTENSION_ID}/" in calls  # Chromium passed the origin


async def test_a_host_for_another_extension_is_not_started(tmp_path: Path) -> None:
    """allowed_origins is Chromium's gate: a manifest for another extension id is refused,
    the host never runs, and the extension works on its own (role "full")."""
    _install_host(tmp_path / "profile", tmp_path / "state", allowed="a" * 32)
    async with running_agent(
        tmp_path, server_url=None, token=None, account="anna@school.example"
    ) as agent:
        error = await agent.evaluate(
            f"chrome.runtime.sendNativeMessage({json.dumps(HOST_NAME)}, {{get: 'device'}})"
            ".then(() => 'answered', (e) => String(e && e.message || e))"
        )
        assert error == "Access to the specified native messaging host is forbidden.", error
    assert not (tmp_path / "host-calls").exists()
    assert os.path.exists(tmp_path / "profile" / "NativeMessagingHosts" / f"{HOST_NAME}.json")
