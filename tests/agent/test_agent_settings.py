"""Agent settings: precedence, validation messages that name the setting, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from klasblik.agent.cli import main
from klasblik.agent.settings import AGENT_SETTINGS, AgentConfigError, load_agent_settings
from tests.support.timing import timeout, wait_for_sync

GOOD = {
    "server": "wss://klasblik.school.example/ws/agent",
    "token": "T0KEN",
    "account": "anna@school.example",
}


def test_flags_override_environment_override_file(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the TOML file, which beats the default."""
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        '[agent]\nserver = "wss://file.example/ws/agent"\ntoken = "filetoken"\n'
        'account = "file@school.example"\nencoding = "jpeg"\n'
    )
    env = {"KLASBLIK_AGENT_TOKEN": "envtoken", "KLASBLIK_AGENT_ACCOUNT": "env@school.example"}
    s = load_agent_settings(
        {"account": "flag@school.example", "state_dir": str(tmp_path)}, env, cfg
    )
    assert s.server == "wss://file.example/ws/agent"
    assert s.token == "envtoken"
    assert s.account == "flag@school.example"
    assert s.encoding == "jpeg"
    assert s.log_level == "info"


def test_device_id_is_made_once_and_kept(tmp_path: Path) -> None:
    """Without a device id, one random id is stored in the state folder and reused."""
    first = load_agent_settings({**GOOD, "state_dir": str(tmp_path)}).device_id
    second = load_agent_settings({**GOOD, "state_dir": str(tmp_path)}).device_id
    other = load_agent_settings({**GOOD, "state_dir": str(tmp_path / "other")}).device_id
    assert first == second and len(first) == 32
    assert other != first
    assert (tmp_path / "device-id").read_text().strip() == first


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        (
            {"server": "http://klasblik.example/ws/agent"},
            "setting server (--server, KLASBLIK_AGENT_SERVER)",
        ),
        ({"server": "ws://klasblik.example/ws/agent"}, "use wss:// for klasblik.example"),
        ({"server": "wss:///ws/agent"}, "has no host name"),
        (
            {"token": "  "},
            "setting token (--token, KLASBLIK_AGENT_TOKEN) from the flag: must not be empty",
        ),
        ({"token": "a b"}, "must not contain spaces"),
        (
            {"account": ""},
            "setting account (--account, KLASBLIK_AGENT_ACCOUNT) from the flag: must not be empty",
        ),
        ({"encoding": "gif"}, "setting encoding"),
        ({"capture_retry_s": "0"}, "setting capture_retry_s"),
        ({"device_id": "x" * 129}, "setting device_id"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, override: dict[str, str], needle: str) -> None:
    """Each bad value is refused with a message that names the setting."""
    with pytest.raises(AgentConfigError) as info:
        load_agent_settings({**GOOD, "state_dir": str(tmp_path), **override})
    assert needle in str(info.value)


def test_ws_on_loopback_is_allowed(tmp_path: Path) -> None:
    """Plain ws:// is accepted for loopback addresses (development and tests)."""
    s = load_agent_settings(
        {**GOOD, "server": "ws://127.0.0.1:8080/ws/agent", "state_dir": str(tmp_path)}
    )
    assert s.server == "ws://127.0.0.1:8080/ws/agent"


@pytest.mark.parametrize("missing", ["server", "token", "account"])
def test_required_settings(tmp_path: Path, missing: str) -> None:
    """Server, token and account are required (the OS user name is not the account)."""
    flags = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(AgentConfigError, match=f"setting {missing} .* is required"):
        load_agent_settings({**flags, "state_dir": str(tmp_path)}, env={"USER": "anna"})


def test_unknown_key_in_config_file(tmp_path: Path) -> None:
    """A misspelt key in the TOML file is refused, naming it and the file."""
    cfg = tmp_path / "agent.toml"
    cfg.write_text('sever = "wss://x.example/ws/agent"\n')
    with pytest.raises(AgentConfigError, match="unknown setting.*sever"):
        load_agent_settings({}, {}, cfg)


def test_cli_exits_2_on_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI prints the setting's problem and exits with code 2."""
    for s in AGENT_SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
    monkeypatch.setenv("KLASBLIK_AGENT_TOKEN", "")
    code = main(
        [
            "--server",
            "ws://127.0.0.1:1/ws/agent",
            "--account",
            "a@b.example",
            "--state-dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "setting token" in capsys.readouterr().err


def test_every_setting_is_documented() -> None:
    """docs/agent.md mentions each setting's flag and environment variable."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "agent.md").read_text()
    for s in AGENT_SETTINGS:
        assert s.flag in doc and s.env in doc, s.name


def test_account_from_upn_fills_a_missing_account(tmp_path: Path) -> None:
    """With account_from_upn and no account, the signed-in UPN is the account; an account given wins."""
    flags = {
        "server": GOOD["server"],
        "token": "t",
        "state_dir": str(tmp_path),
        "account_from_upn": True,
    }
    s = load_agent_settings(flags, env={}, upn_reader=lambda: "anna.bakker@school.example")
    assert s.account == "anna.bakker@school.example"
    s = load_agent_settings(
        {**flags, "account": "bram@school.example"},
        env={},
        upn_reader=lambda: "anna.bakker@school.example",
    )
    assert s.account == "bram@school.example"
    env = {"KLASBLIK_AGENT_ACCOUNT_FROM_UPN": "yes"}
    s = load_agent_settings(
        {k: v for k, v in flags.items() if k != "account_from_upn"},
        env=env,
        upn_reader=lambda: "cas@school.example",
    )
    assert s.account == "cas@school.example"


def test_account_from_upn_without_a_upn_is_a_clear_error(tmp_path: Path) -> None:
    """When no UPN can be read (not Windows, local account) the agent refuses to guess."""
    flags = {
        "server": GOOD["server"],
        "token": "t",
        "state_dir": str(tmp_path),
        "account_from_upn": True,
    }
    with pytest.raises(
        AgentConfigError, match="setting account .* could not read a Microsoft 365 username"
    ):
        load_agent_settings(flags, env={}, upn_reader=lambda: None)
    with pytest.raises(AgentConfigError, match="setting account_from_upn .* must be true or false"):
        load_agent_settings(
            {**flags, "account_from_upn": "perhaps"}, env={}, upn_reader=lambda: None
        )


def test_cli_switch_and_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--account-from-upn is a switch; --log-file is a path."""
    from klasblik.agent.cli import build_parser

    args = build_parser().parse_args(["--account-from-upn", "--log-file", str(tmp_path / "a.log")])
    assert args.account_from_upn is True and args.log_file == str(tmp_path / "a.log")
    assert build_parser().parse_args([]).account_from_upn is None


def test_cli_process_logs_to_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The real command logs to --log-file without the token, keeps retrying, exits 0 on SIGTERM."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLASBLIK_AGENT_")}
    env.update(
        KLASBLIK_AGENT_SERVER=f"ws://127.0.0.1:{port}/ws/agent",
        KLASBLIK_AGENT_TOKEN="s3cret-token",
        KLASBLIK_AGENT_ACCOUNT="anna@school.example",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "klasblik.agent.cli",
            "--log-file",
            str(log),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        env=env,
    )
    try:
        wait_for_sync(
            lambda: log.exists() and log.read_text().count("cannot connect") >= 2,
            timeout(20),
            lambda: f"two retries logged: {log.read_text() if log.exists() else '(no log)'}",
            interval=0.1,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=timeout(20)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "s3cret-token" not in text and "'token': '***'" in text


def test_config_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Windows PowerShell 5.1's ``-Encoding UTF8`` writes a BOM; the agent reads it anyway."""
    config = tmp_path / "agent.toml"
    config.write_bytes(
        b"\xef\xbb\xbf" + b'server = "wss://k.school.example/ws/agent"\ntoken = "t"\n'
    )
    s = load_agent_settings({"account": "a@school.example", "state_dir": str(tmp_path)}, {}, config)
    assert s.server == "wss://k.school.example/ws/agent" and s.token == "t"
    config.write_bytes(b'server = "wss://k.school.example/ws/agent"\ntoken = "\xff"\n')
    with pytest.raises(AgentConfigError, match="is not UTF-8"):
        load_agent_settings({"account": "a@school.example", "state_dir": str(tmp_path)}, {}, config)


def test_account_from_local_user_and_domain(tmp_path: Path) -> None:
    base = {"server": "wss://k.school.example/ws/agent", "token": "t", "state_dir": str(tmp_path)}
    s = load_agent_settings(
        {**base, "account_domain": "@School.Example"}, {}, user_reader=lambda: "anna.bakker"
    )
    assert s.account == "anna.bakker@school.example"
    # an explicit account wins
    s = load_agent_settings(
        {**base, "account_domain": "school.example", "account": "x@y.example"},
        {},
        user_reader=lambda: "anna",
    )
    assert s.account == "x@y.example"
    for bad in ("nodot", "a b.example", "evil@x.example"):
        with pytest.raises(AgentConfigError, match="account_domain"):
            load_agent_settings({**base, "account_domain": bad}, {}, user_reader=lambda: "anna")
    with pytest.raises(AgentConfigError, match="account_domain"):  # a user name with a space
        load_agent_settings(
            {**base, "account_domain": "school.example"}, {}, user_reader=lambda: "an na"
        )


def test_machine_policy_fills_in_below_file_env_and_flags(tmp_path: Path) -> None:
    """The registry policy (Windows) is read last: file, environment and flags override it."""
    policy = {
        "server": "wss://policy.school.example/ws/agent",
        "token": "policy-token",
        "account_from_upn": "1",
        "language": "en",
    }
    s = load_agent_settings(
        {"state_dir": str(tmp_path)},
        {"KLASBLIK_AGENT_LANGUAGE": "nl"},
        upn_reader=lambda: "anna@school.example",
        machine_reader=lambda: dict(policy),
    )
    assert (s.server, s.token, s.account, s.language) == (
        "wss://policy.school.example/ws/agent",
        "policy-token",
        "anna@school.example",
        "nl",
    )
    with pytest.raises(AgentConfigError, match=r"machine policy .*unknown value\(s\) tokn"):
        load_agent_settings({"state_dir": str(tmp_path)}, {}, machine_reader=lambda: {"tokn": "x"})
    with pytest.raises(AgentConfigError, match="setting server"):
        load_agent_settings(
            {"state_dir": str(tmp_path), "account": "a@b.example"},
            {},
            machine_reader=lambda: {"server": "ws://evil.example/ws/agent", "token": "t"},
        )
