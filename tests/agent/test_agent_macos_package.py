"""The macOS rollout files, read here (building and signing need a Mac: deploy/README.md)."""

from __future__ import annotations

import plistlib
import re
from pathlib import Path

MACOS = Path(__file__).resolve().parents[2] / "deploy" / "agent" / "macos"


def _plist(name: str) -> dict:
    return plistlib.loads((MACOS / name).read_bytes())


def test_launch_agent_runs_the_installed_program_in_each_gui_session() -> None:
    agent = _plist("nl.klasblik.agent.plist")
    assert agent["Label"] == "nl.klasblik.agent"
    assert agent["LimitLoadToSessionType"] == "Aqua" and agent["RunAtLoad"] and agent["KeepAlive"]
    program = agent["ProgramArguments"][0]
    script = (MACOS / "build-pkg.sh").read_text()
    # the package puts the frozen folder where the LaunchAgent looks for it
    assert program == "/Library/Application Support/Klasblik/klasblik-agent/klasblik-agent"
    assert 'cp -R "$frozen" "$root/Library/Application Support/Klasblik/klasblik-agent"' in script
    assert "--identifier nl.klasblik.agent" in script and "--options runtime" in script
    assert "notarytool submit" in script and "stapler staple" in script


def test_pppc_lets_students_approve_screen_recording_and_grants_nothing() -> None:
    """MDM cannot grant Screen Recording; the profile only lets a standard user approve it."""
    profile = _plist("klasblik-pppc.mobileconfig")
    [payload] = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.TCC.configuration-profile-policy"
    assert set(payload["Services"]) == {"ScreenCapture"}
    [rule] = payload["Services"]["ScreenCapture"]
    assert rule["Authorization"] == "AllowStandardUserToSetSystemService"
    assert "Allowed" not in rule
    assert rule["Identifier"] == "nl.klasblik.agent" and rule["IdentifierType"] == "bundleID"
    assert re.search(r'identifier "nl\.klasblik\.agent"', rule["CodeRequirement"])


def test_login_item_is_managed_by_label() -> None:
    profile = _plist("klasblik-login-item.mobileconfig")
    [payload] = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.servicemanagement"
    assert {
        "RuleType": "Label",
        "RuleValue": "nl.klasblik.agent",
        "Comment": "Klasblik desktop agent",
    } in payload["Rules"]
