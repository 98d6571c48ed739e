"""The Windows rollout, as far as Linux can check it: the MSI (built with wixl, read with
msiinfo), the PowerShell installer (read, not run: no PowerShell here), the ADMX.

The MSI is built from a stand-in payload (a frozen folder's shape: klasblik-agent.exe and
_internal/); the real .exe comes from the Windows CI workflow. What only Windows can check
(msiexec really installing, the Run entry starting the agent at sign-in, uninstall leaving
nothing) is listed in deploy/README.md.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from klasblik.agent.cli import build_parser
from klasblik.agent.settings import AGENT_SETTINGS, load_agent_settings

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "agent" / "packaging"))
import build_agent as agent_build  # noqa: E402

PS1 = REPO / "deploy" / "agent" / "install-windows.ps1"
WINDOWS = REPO / "deploy" / "agent" / "windows"


def _table(msi: Path, name: str) -> list[dict[str, str]]:
    out = subprocess.run(
        ["msiinfo", "export", str(msi), name], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    columns = out[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=False)) for line in out[3:]]


@pytest.fixture(scope="module")
def msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("wixl", "wixl-heat", "msiinfo"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} is not installed (Debian wixl/msitools; scripts/lib/system-packages)"
            )
    root = tmp_path_factory.mktemp("msi")
    frozen = root / "klasblik-agent"
    (frozen / "_internal" / "PIL").mkdir(parents=True)
    (frozen / "klasblik-agent.exe").write_bytes(b"MZ stand-in")
    (frozen / "_internal" / "python311.dll").write_bytes(b"stand-in")
    (frozen / "_internal" / "PIL" / "_imaging.pyd").write_bytes(b"stand-in")
    return agent_build.make_msi(frozen, root / "out")


def test_msi_installs_per_machine_into_program_files(msi: Path) -> None:
    props = {r["Property"]: r["Value"] for r in _table(msi, "Property")}
    assert props["ALLUSERS"] == "1"  # per machine
    assert props["ProductName"] == "Klasblik agent" and props["ProductVersion"] == "0.1.0"
    suminfo = subprocess.run(
        ["msiinfo", "suminfo", str(msi)], capture_output=True, text=True, check=True
    ).stdout
    assert "Template: x64;1033" in suminfo
    dirs = {
        r["Directory"]: (r["Directory_Parent"], r["DefaultDir"]) for r in _table(msi, "Directory")
    }
    assert dirs["INSTALLDIR"] == ("KlasblikFolder", "Agent")
    assert dirs["KlasblikFolder"] == ("ProgramFiles64Folder", "Klasblik")
    files = {r["FileName"] for r in _table(msi, "File")}
    assert {"klasblik-agent.exe", "python311.dll", "_imaging.pyd"} <= files
    for comp in _table(msi, "Component"):
        assert int(comp["Attributes"]) & 256, comp  # 64-bit components


def test_msi_starts_the_agent_in_every_users_session(msi: Path) -> None:
    registry = _table(msi, "Registry")
    run = [r for r in registry if r["Key"] == r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run"]
    assert len(run) == 1 and run[0]["Root"] == "2"  # HKLM: every user, as that user
    command = run[0]["Value"]
    assert command.startswith('"[INSTALLDIR]klasblik-agent.exe" ')
    # The agent's own parser accepts the flags the Run entry gives.
    args = build_parser().parse_args(shlex.split(command.split('" ', 1)[1]))
    assert args.account_from_upn is True and "%LOCALAPPDATA%" in args.log_file


def test_msi_settings_go_to_machine_scope_and_nowhere_per_user(msi: Path) -> None:
    registry = _table(msi, "Registry")
    assert {r["Root"] for r in registry} == {"2"}  # only HKLM; nothing in HKCU or HKCR
    settings = {r["Name"]: r["Value"] for r in registry if r["Key"] == r"SOFTWARE\Klasblik\Agent"}
    assert settings == {
        "server": "[SERVER]",
        "token": "[TOKEN]",
        "language": "[LANGUAGE]",
        "monitors": "[MONITORS]",
    }
    names = {s.name for s in AGENT_SETTINGS}
    assert set(settings) <= names  # the agent knows every value it will read


def test_msi_registers_the_native_messaging_host_for_chrome_and_edge(msi: Path) -> None:
    rows = {
        r["Key"]: r["Value"] for r in _table(msi, "Registry") if "NativeMessagingHosts" in r["Key"]
    }
    assert rows == {
        r"SOFTWARE\Google\Chrome\NativeMessagingHosts\nl.klasblik.agent": "[INSTALLDIR]nl.klasblik.agent.json",
        r"SOFTWARE\Microsoft\Edge\NativeMessagingHosts\nl.klasblik.agent": "[INSTALLDIR]nl.klasblik.agent.json",
    }
    [manifest] = [r for r in _table(msi, "File") if r["FileName"] == "nl.klasblik.agent.json"]
    top = {r["Directory"]: r for r in _table(msi, "Directory")}
    component = {r["Component"]: r for r in _table(msi, "Component")}[manifest["Component_"]]
    directory = top[component["Directory_"]]
    assert directory["Directory"] == "INSTALLDIR" or (
        directory["Directory_Parent"] == "INSTALLDIR" and directory["DefaultDir"] == "."
    )  # beside klasblik-agent.exe, which its relative "path" names


def test_msi_uninstalls_cleanly_and_upgrades_in_place(msi: Path) -> None:
    """Everything it installs belongs to a component of its one feature, none permanent, no
    custom actions that could leave things behind; a major upgrade replaces older versions."""
    components = {r["Component"]: r for r in _table(msi, "Component")}
    in_feature = {r["Component_"] for r in _table(msi, "FeatureComponents")}
    assert set(components) == in_feature
    for comp in components.values():
        assert not int(comp["Attributes"]) & 0x10, comp  # msidbComponentAttributesPermanent
    for row in _table(msi, "File") + _table(msi, "Registry"):
        assert row["Component_"] in components
    assert _table(msi, "CustomAction") == [] or all(
        r["Action"].startswith("WIX") for r in _table(msi, "CustomAction")
    )
    upgrades = _table(msi, "Upgrade")
    assert any(r["UpgradeCode"] == "{6F1B3A52-0C7E-4D2B-9A41-3E0C5D7B8A10}" for r in upgrades)


# ------------------------------------------------------------------ the PowerShell installer

SCRIPT = PS1.read_text(encoding="utf-8")
#: the script without its comment lines
CODE = "\n".join(line for line in SCRIPT.splitlines() if not line.lstrip().startswith("#"))
#: ... and without the text of its strings
STATEMENTS = re.sub(r'"[^"\n]*"', '""', CODE)


def test_powershell_writes_the_config_without_a_byte_order_mark() -> None:
    """PowerShell 5.1's Set-Content/Out-File -Encoding UTF8 write a BOM: none of them here;
    the one writer uses UTF8Encoding($false) with WriteAllText."""
    assert not SCRIPT.startswith("\ufeff")
    for forbidden in ("Set-Content", "Out-File", "Add-Content", "-Encoding UTF8", "> $"):
        assert forbidden not in CODE, forbidden
    writer = re.search(r"function Write-AgentConfig.*?\n\}", CODE, re.S)
    assert writer is not None
    assert "New-Object System.Text.UTF8Encoding($false)" in writer.group(0)
    assert "[System.IO.File]::WriteAllText($Path, $Text, $utf8NoBom)" in writer.group(0)


def test_powershell_config_text_is_what_the_agent_reads(tmp_path: Path) -> None:
    """The text the script writes (its template, PowerShell's `n as newlines) loads."""
    template = re.search(r'\$config = "(.*)"\n', SCRIPT)
    assert template is not None
    text = (
        template.group(1)
        .replace("`n", "\n")
        .replace('`"', '"')
        .replace("$Server", "wss://k.school.example/ws/agent")
        .replace("$Token", "abc123")
        .replace("$Language", "en")
    )
    config = tmp_path / "agent.toml"
    config.write_bytes(text.encode("utf-8"))  # what UTF8Encoding($false) writes: no BOM
    s = load_agent_settings({"account": "a@school.example", "state_dir": str(tmp_path)}, {}, config)
    assert (s.server, s.token, s.language) == ("wss://k.school.example/ws/agent", "abc123", "en")


def test_powershell_exit_codes_say_what_happened() -> None:
    """No mandatory parameters (an Intune script gets none); no Write-Error, which under
    $ErrorActionPreference = "Stop" would throw past the specific exit code; success is
    reported only for msiexec's 0 and 3010; every other exit is a failure code."""
    assert "Mandatory" not in CODE
    assert '$ErrorActionPreference = "Stop"' in CODE
    assert "Write-Error" not in CODE
    assert re.search(r"trap \{ Fail 1 ", CODE)
    exits = re.findall(r"\bexit\s+(\S+)", STATEMENTS)
    assert sorted(set(exits)) == sorted({"$Code", "0", "$p.ExitCode"}), exits
    fails = re.findall(r"\bFail (\S+) ", CODE)
    assert set(fails) <= {"1", "2", "$p.ExitCode"} and "2" in fails
    success = re.search(
        r"if \(\$p\.ExitCode -eq 0 -or \$p\.ExitCode -eq 3010\) \{(.*?)\n\}", SCRIPT, re.S
    )
    assert success is not None and "exit $p.ExitCode" in success.group(1)
    after = SCRIPT[success.end() :]
    assert after.strip().startswith("Fail $p.ExitCode")
    assert "py -3" not in CODE and "pip " not in CODE  # no Python on the PC, no PyPI


def test_admx_writes_the_policy_key_the_agent_reads() -> None:
    ns = {"p": "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"}
    admx = ET.parse(WINDOWS / "klasblik.admx").getroot()
    adml = ET.parse(WINDOWS / "en-US" / "klasblik.adml").getroot()
    strings = {s.get("id") for s in adml.iterfind(".//p:string", ns)}
    names = {s.name for s in AGENT_SETTINGS}
    for policy in admx.iterfind(".//p:policy", ns):
        assert policy.get("key") == r"SOFTWARE\Policies\Klasblik\Agent"
        assert policy.get("class") == "Machine"
        for ref in ("displayName", "explainText"):
            assert policy.get(ref, "").removeprefix("$(string.").removesuffix(")") in strings
        for element in policy.find("p:elements", ns) or []:
            assert element.get("valueName") in names
