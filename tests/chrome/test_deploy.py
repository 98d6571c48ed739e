"""deploy/chromebook: the policy files match the extension's schema, and pack.sh makes a
signed CRX without test hooks whose id the update manifest names."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support.timing import timeout

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "chromebook"
EXT = REPO / "agent" / "chrome"


def _schema_keys() -> set[str]:
    return set(json.loads((EXT / "schema.json").read_text())["properties"])


def test_admin_console_config_matches_schema() -> None:
    """managed-config.json sets exactly the schema's settings, in the Admin console's Value form."""
    config = json.loads((DEPLOY / "managed-config.json").read_text())
    assert set(config) == _schema_keys() == {"serverUrl", "enrollmentToken", "googleClientId"}
    assert all(set(v) == {"Value"} and isinstance(v["Value"], str) for v in config.values())
    assert config["serverUrl"]["Value"].startswith("wss://")


def test_force_install_policies() -> None:
    """Both policy examples force-install the extension, pinned, from an https update URL."""
    for name in ("extension-settings.json", "chromium-policy.example.json"):
        policy = json.loads((DEPLOY / name).read_text())
        settings = policy["ExtensionSettings"]["EXTENSION_ID"]
        assert settings["installation_mode"] == "force_installed", name
        assert settings["toolbar_pin"] == "force_pinned", name
        assert settings["update_url"].startswith("https://"), name
    linux = json.loads((DEPLOY / "chromium-policy.example.json").read_text())
    assert set(linux["3rdparty"]["extensions"]["EXTENSION_ID"]) == _schema_keys()


def test_pack_makes_a_signed_crx_without_test_hooks(tmp_path: Path) -> None:
    """pack.sh signs a CRX with the school key; its id is in updates.xml; no key, tests or hooks inside."""
    for tool in ("openssl", "chromium"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to pack the extension and is not installed")
    key = tmp_path / "school.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    assert not (EXT / "test-hooks.json").exists(), "agent/chrome must not contain test-hooks.json"
    done = subprocess.run(
        [str(DEPLOY / "pack.sh"), str(key), str(tmp_path / "out"), "https://k.example/cb/"],
        capture_output=True,
        text=True,
        timeout=timeout(90),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ext_id = re.search(r"extension id: ([a-p]{32})", done.stdout)
    assert ext_id, done.stdout
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    want = "".join(chr(ord("a") + int(c, 16)) for c in hashlib.sha256(der).hexdigest()[:32])
    assert ext_id.group(1) == want
    version = json.loads((EXT / "manifest.json").read_text())["version"]
    crx = tmp_path / "out" / f"klasblik-{version}.crx"
    data = crx.read_bytes()
    assert data[:4] == b"Cr24" and der in data
    with zipfile.ZipFile(crx) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
    assert {
        "manifest.json",
        "worker.js",
        "protocol.js",
        "capture.js",
        "tiles.js",
        "scale.js",
        "palette.js",
        "options.html",
        "popup.html",
        "popup.js",
        "i18n.js",
        "_locales/en/messages.json",
        "_locales/nl/messages.json",
        "schema.json",
    } <= names
    assert not any(n.startswith("test") or n == "package.json" for n in names), names
    assert "key" not in manifest
    updates = (tmp_path / "out" / "updates.xml").read_text()
    assert f"appid='{want}'" in updates
    assert f"codebase='https://k.example/cb/klasblik-{version}.crx' version='{version}'" in updates
