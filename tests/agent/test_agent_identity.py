"""The desktop agent's device key: made once, kept readable by its user only, signing
answers the server's check accepts; and its token source says clearly when it has none."""

from __future__ import annotations

import stat

import requests

from klasblik.agent.identity import DeviceKey, TokenSource
from klasblik.server.auth.agent_identity import verify_proof


def test_device_key_is_made_once_and_only_its_user_can_read_it(tmp_path) -> None:
    """0600 on first creation; the same key the next start; answers verify; others not."""
    first = DeviceKey.load_or_create(tmp_path / "state")
    mode = stat.S_IMODE((tmp_path / "state" / "device-key.pem").stat().st_mode)
    assert mode == 0o600
    again = DeviceKey.load_or_create(tmp_path / "state")
    assert again.public_key == first.public_key
    answer = first.sign("n0nce", "dev-1")
    assert verify_proof(first.public_key, "n0nce", "dev-1", answer)
    other = DeviceKey.load_or_create(tmp_path / "other")
    assert not verify_proof(other.public_key, "n0nce", "dev-1", answer)


def test_a_damaged_key_file_makes_a_new_device(tmp_path) -> None:
    """An unreadable key is replaced: a new device, which must enrol again."""
    first = DeviceKey.load_or_create(tmp_path)
    (tmp_path / "device-key.pem").write_text("not a key")
    second = DeviceKey.load_or_create(tmp_path)
    assert second.public_key != first.public_key


def test_an_unreachable_authority_gives_no_token_and_says_why(tmp_path) -> None:
    """The agent starts and connects offline from the sign-in authority: no token, no
    prompt, no crash, and a reason for the log."""
    source = TokenSource(
        "9d2f6a3b-1c4e-4f5a-8b7c-0e1d2c3b4a59",
        "https://login.invalid/5f0c2a1e-7b4d-4c3e-9a11-2b8c6d0e4f70",
        ["api://9d2f6a3b-1c4e-4f5a-8b7c-0e1d2c3b4a59/Agent.Connect"],
        broker=False,
        http_client=requests.Session(),
        instance_discovery=False,
    )
    assert source.acquire("anna@school.example") is None
    assert "login.invalid" in source.last_problem
