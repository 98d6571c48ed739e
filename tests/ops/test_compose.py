"""deploy/compose as shipped: Debian's docker-compose validates it (no Docker engine is
needed for `config`), and what it sets up is what docs/operations.md and deploy/README.md
promise: TLS proxy in front, the proxy trusted and nobody else, restart policies and log
limits everywhere, secrets as files, Azurite only in the dev profile."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.timing import timeout

COMPOSE_DIR = Path(__file__).parents[2] / "deploy" / "compose"
ENV = {"PUBLIC_HOSTNAME": "klasblik.school.example", "CADDY_TLS": "it@school.example"}
SECRETS = ("postgres_password", "enrollment_token", "m365_client_secret")


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """docker-compose on the shipped folder, in place (``config`` reads, writes nothing)."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: scripts/test installs it (Debian)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KLASBLIK_", "COMPOSE_"))}
    return subprocess.run(
        [exe, "-f", str(COMPOSE_DIR / "compose.yaml"), *args],
        capture_output=True,
        text=True,
        env={**clean, **(ENV if env is None else env)},
        timeout=timeout(60),
        cwd=COMPOSE_DIR,
    )


@functools.cache
def _config() -> dict:
    """The resolved file, as docker-compose prints it (once per run: each call takes a
    second or two)."""
    done = _compose("config")
    assert done.returncode == 0, done.stderr
    # Debian's docker-compose prints YAML; its own Python has PyYAML (a dependency of it)
    as_json = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import json,sys,yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        input=done.stdout,
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    assert as_json.returncode == 0, as_json.stderr
    return json.loads(as_json.stdout)


def test_compose_file_validates():
    """`docker-compose config -q` accepts the file with the documented .env values, and
    the image is built from the repository root with the shipped Dockerfile."""
    done = _compose("config", "-q")
    assert done.returncode == 0, done.stderr
    build = _config()["services"]["klasblik1"]["build"]
    assert Path(build["context"]) == COMPOSE_DIR.parents[1]
    assert (COMPOSE_DIR.parents[1] / build["dockerfile"]).is_file()


def test_compose_refuses_to_start_without_hostname_and_tls_choice():
    """Without PUBLIC_HOSTNAME or CADDY_TLS the file does not even resolve, naming what
    is missing (no silent default hostname, no accidental certificate choice)."""
    for missing in ENV:
        env = {k: v for k, v in ENV.items() if k != missing}
        done = _compose("config", "-q", env=env)
        assert done.returncode != 0 and missing in done.stderr, done.stderr


def test_proxy_in_front_and_trusted_alone():
    """Only Caddy publishes ports (80, 443); the instances are reached through it, and
    trust exactly Caddy's fixed address as their proxy."""
    cfg = _config()
    services = cfg["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"caddy"}
    ports = {(p["published"], p["target"]) for p in services["caddy"]["ports"]}
    assert {(80, 80), (443, 443)} <= ports
    proxy_ip = services["caddy"]["networks"]["edge"]["ipv4_address"]
    for name in ("klasblik1", "klasblik2"):
        env = services[name]["environment"]
        assert env["KLASBLIK_TRUSTED_PROXIES"] == proxy_ip
        assert env["KLASBLIK_PUBLIC_URL"] == "https://klasblik.school.example"
        assert "internal" in services[name]["networks"] and "edge" in services[name]["networks"]
    assert cfg["networks"]["internal"].get("internal") is True
    for name in ("postgres", "redis"):
        assert set(services[name]["networks"]) == {"internal"}
    assert "CADDY_TLS" in services["caddy"]["environment"]


def test_every_service_restarts_and_limits_its_logs():
    """Each service has a restart policy and a bounded json-file log."""
    for name, svc in _config()["services"].items():
        assert svc.get("restart") == "unless-stopped", name
        log = svc.get("logging", {})
        assert log.get("driver") == "json-file", name
        assert re.fullmatch(r"\d+m", log["options"]["max-size"]), name
        assert int(log["options"]["max-file"]) >= 1, name


def test_secrets_are_files_and_no_url_carries_a_password():
    """Passwords and tokens reach the servers as secret files; no URL holds a password;
    the Microsoft 365 settings are passed through."""
    cfg = _config()
    assert set(cfg["secrets"]) == set(SECRETS)
    for name in ("klasblik1", "klasblik2"):
        svc = cfg["services"][name]
        env = svc["environment"]
        for key in ("DATABASE_PASSWORD", "ENROLLMENT_TOKEN", "M365_CLIENT_SECRET"):
            assert f"KLASBLIK_{key}" not in env
            assert env[f"KLASBLIK_{key}_FILE"].startswith("/run/secrets/")
        for key in ("DATABASE_URL", "REDIS_URL"):
            userinfo = env[f"KLASBLIK_{key}"].split("://", 1)[1].partition("@")
            assert ":" not in (userinfo[0] if userinfo[1] else ""), env[f"KLASBLIK_{key}"]
        for key in ("M365_TENANT_ID", "M365_CLIENT_ID", "M365_ADMIN_ROLE", "M365_ADMIN_GROUP"):
            assert f"KLASBLIK_{key}" in env
    assert cfg["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/postgres_password"
    )


def test_blobs_default_to_a_local_volume_and_azurite_is_dev_only():
    """By default the latest thumbnails live in a named local volume shared by both
    instances; Azurite exists only in the dev profile."""
    cfg = _config()
    for name in ("klasblik1", "klasblik2"):
        svc = cfg["services"][name]
        store = svc["environment"]["KLASBLIK_BLOB_STORE"]
        assert store.startswith("file:/srv/klasblik/klasblik-data/")
        assert "klasblik-data:/srv/klasblik/klasblik-data:rw" in svc["volumes"]
        assert svc["environment"]["KLASBLIK_AZURE_CONNECTION_STRING"] == ""
    assert "klasblik-data" in cfg["volumes"]
    assert cfg["services"]["azurite"]["profiles"] == ["dev"]
    assert all("profiles" not in s for n, s in cfg["services"].items() if n != "azurite")
