"""The deployment files name only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from klasblik.server.settings import SETTINGS

ROOT = Path(__file__).parents[1]
#: a secret setting may also come from a file: KLASBLIK_<NAME>_FILE
SERVER_ENV = (
    {s.env for s in SETTINGS}
    | {s.env + "_FILE" for s in SETTINGS if s.secret}
    | {"KLASBLIK_CONFIG"}
)


def test_deploy_files_use_real_server_settings():
    """Every KLASBLIK_* variable in deploy/ (not the agent's) is a server setting."""
    files = [
        p
        for p in (ROOT / "deploy").rglob("*")
        if p.is_file() and "agent" not in p.parts and "chromebook" not in p.parts
    ]
    found = set()
    for path in files:
        for name in re.findall(r"KLASBLIK_[A-Z0-9_]+", path.read_text(errors="replace")):
            if not name.startswith("KLASBLIK_AGENT_"):
                found.add((path.name, name))
    assert found, "no settings found: the pattern is wrong"
    unknown = sorted((f, n) for f, n in found if n not in SERVER_ENV)
    assert unknown == []


def test_compose_and_azure_use_the_engines_for_several_instances():
    """The multi-instance deployments set PostgreSQL, Redis and a blob store shared by
    the instances (Azure Blob on Azure; a local volume on one machine)."""
    for name in ("compose/compose.yaml", "azure/main.bicep"):
        text = (ROOT / "deploy" / name).read_text()
        for env in ("KLASBLIK_DATABASE_URL", "KLASBLIK_REDIS_URL", "KLASBLIK_BLOB_STORE"):
            assert env in text, (name, env)
        assert "postgresql+asyncpg://" in text
    assert "'azure:${containerName}'" in (ROOT / "deploy" / "azure" / "main.bicep").read_text()
