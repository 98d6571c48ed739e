"""deploy/azure/main.bicep, checked without Azure: no Bicep compiler can be installed here
(it is distributed outside PyPI, npm and Debian), so two kinds of static check stand in.

1. Checkov (PyPI, in its own virtual environment: scripts/lib/checkov) parses the template
   and runs its Azure policies; the few it reports are skipped below, each with its reason.
2. Checks of our own on the text, for what Klasblik itself needs of the template and no
   general policy knows: EU regions only, no secret in any URL, Key Vault references, a
   managed identity and no storage key, Azure Managed Redis, private endpoints, the
   lifecycle backstop, separate liveness and readiness probes, a registry, a custom domain.

What only a real subscription can show is listed in deploy/README.md."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from klasblik.server.settings import SETTINGS
from tests.support.timing import timeout

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "deploy" / "azure" / "main.bicep"
CHECKOV = ROOT / "tests" / "services" / "checkov" / "bin" / "checkov"

#: Checkov's findings we accept, and why.
ACCEPTED = {
    "CKV_AZURE_41": "no expiry on Key Vault secrets: an expired secret cannot be read, and the "
    "app would stop at an arbitrary date; rotation is a documented procedure instead "
    "(docs/operations.md)",
    "CKV_AZURE_114": "reported for the conditional metrics-token secret only, which has a "
    "content type: Checkov loses properties of resources under `if`",
    "CKV_AZURE_166": "image quarantine needs the Premium registry tier; the image holds no "
    "personal data and is pulled by the app's identity only",
    "CKV_AZURE_139": "public registry endpoint: private registry access needs the Premium tier; "
    "no anonymous pull, no admin user, pulls by managed identity",
    "CKV_AZURE_206": "locally redundant storage: the blobs are a cache of the last 48 hours, "
    "rewritten by the agents every few seconds",
    "CKV_AZURE_43": "the storage account name is computed (take(prefix + 'st' + "
    "uniqueString(...), 24)); Checkov cannot evaluate it, Azure checks it at deployment",
}

TEXT = TEMPLATE.read_text()


def _block(kind: str, name: str) -> str:
    """The text of resource ``name`` (up to the next top-level declaration)."""
    m = re.search(rf"^resource {name} '{re.escape(kind)}@[^']+'.*?(?=^\S)", TEXT, re.S | re.M)
    assert m, f"resource {name} ({kind}) is missing"
    return m.group(0)


def test_checkov_passes_with_only_the_accepted_findings(tmp_path):
    """Checkov's Bicep policies pass, except the findings accepted above (each with its
    reason); it runs offline (--skip-download)."""
    if not CHECKOV.exists():
        pytest.fail(
            f"checkov is not installed ({CHECKOV}): run scripts/lib/checkov (scripts/test does)"
        )
    done = subprocess.run(
        [
            str(CHECKOV),
            "-f",
            str(TEMPLATE),
            "--framework",
            "bicep",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=timeout(300),
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(done.stdout)
    assert report["summary"]["parsing_errors"] == 0, done.stderr[-2000:]
    assert report["summary"]["resource_count"] >= 20  # it did read the template
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    unexpected = sorted(f for f in failed if f[0] not in ACCEPTED)
    assert unexpected == [], unexpected
    assert report["summary"]["passed"] >= 20


def test_regions_are_eu_only_and_every_resource_uses_them():
    """The location parameter allows EU regions only; every regional resource is in it."""
    m = re.search(r"@allowed\(\[(.*?)\]\)\s*param location string", TEXT, re.S)
    assert m
    allowed = re.findall(r"'([a-z]+)'", m.group(1))
    assert allowed and all(
        any(
            word in r
            for word in ("europe", "sweden", "germany", "france", "italy", "poland", "spain")
        )
        for r in allowed
    ), allowed
    locations = set(re.findall(r"^\s*location: (\S+)$", TEXT, re.M))
    assert locations == {"location", "'global'"}, locations  # private DNS zones are global


def test_no_secret_in_any_url_and_secrets_come_from_key_vault():
    """No URL in the template carries a password or key; every secret the app reads is a
    Key Vault reference read with its managed identity; secure parameters are @secure()."""
    for url in re.findall(r"'[a-z+]+://[^']*'", TEXT):
        userinfo = url.split("://", 1)[1].split("/")[0].rpartition("@")[0]
        assert ":" not in userinfo, url  # a user name at most, never user:password
        assert not re.search(r"listKeys|Password|password|Secret|secret|Token|token", url), url
    assert "AccountKey=" not in TEXT and "listKeys().keys" not in TEXT
    for param in ("enrollmentToken", "postgresPassword", "m365ClientSecret", "metricsToken"):
        assert re.search(rf"@secure\(\)\n(@description\([^\n]*\)\n)?param {param} string", TEXT), (
            param
        )
    app = _block("Microsoft.App/containerApps", "app")
    secrets = re.search(r"secrets: concat\((.*?)\n      \]\)", app, re.S)
    assert secrets
    entries = re.findall(
        r"union\(vaultSecret, \{ name: '([a-z0-9-]+)', keyVaultUrl: \w+\.properties\.secretUri \}\)",
        secrets.group(1),
    )
    assert set(entries) == {
        "enrollment-token",
        "database-password",
        "redis-password",
        "m365-client-secret",
        "metrics-token",
    }
    assert "value:" not in secrets.group(1)
    assert "var vaultSecret = { identity: identity.id }" in TEXT
    for env, ref in (
        ("ENROLLMENT_TOKEN", "enrollment-token"),
        ("DATABASE_PASSWORD", "database-password"),
        ("REDIS_PASSWORD", "redis-password"),
        ("M365_CLIENT_SECRET", "m365-client-secret"),
        ("METRICS_TOKEN", "metrics-token"),
    ):
        assert f"{{ name: 'KLASBLIK_{env}', secretRef: '{ref}' }}" in app, env
    assert "properties: { value: redisDb.listKeys().primaryKey" in _block(
        "Microsoft.KeyVault/vaults/secrets", "secretRedis"
    )


def test_every_setting_named_exists_and_microsoft_365_is_passed():
    """Each KLASBLIK_ variable is a real setting; the Microsoft 365 settings are there."""
    names = set(re.findall(r"'(KLASBLIK_[A-Z0-9_]+)'", TEXT))
    known = {s.env for s in SETTINGS}
    assert names and names <= known, sorted(names - known)
    for name in ("M365_TENANT_ID", "M365_CLIENT_ID", "M365_CLIENT_SECRET", "M365_ADMIN_ROLE"):
        assert f"KLASBLIK_{name}" in names


def test_storage_uses_the_identity_keeps_nothing_deleted_and_has_the_backstop():
    """The storage account refuses shared keys and public access, is reached over a
    private endpoint, keeps no soft-deleted or versioned blobs, and keeps the lifecycle
    rule as a second line for the 48 hours; the app has a blob data role and the account
    URL instead of a connection string."""
    storage = _block("Microsoft.Storage/storageAccounts", "storage")
    for line in (
        "allowSharedKeyAccess: false",
        "allowBlobPublicAccess: false",
        "publicNetworkAccess: 'Disabled'",
    ):
        assert line in storage, line
    blobs = _block("Microsoft.Storage/storageAccounts/blobServices", "blobService")
    for line in ("deleteRetentionPolicy: { enabled: false }", "isVersioningEnabled: false"):
        assert line in blobs
    rule = _block("Microsoft.Storage/storageAccounts/managementPolicies", "lifecycle")
    assert "daysAfterModificationGreaterThan: 1" in rule and "'${containerName}/students/'" in rule
    role = _block("Microsoft.Authorization/roleAssignments", "storageRole")
    assert "roles.storageBlobDataContributor" in role and "scope: storage" in role
    assert "ba92f5b4-2d11-453d-a403-e96b0029c9fe" in TEXT  # Storage Blob Data Contributor
    app = _block("Microsoft.App/containerApps", "app")
    assert "KLASBLIK_AZURE_ACCOUNT_URL', value: storage.properties.primaryEndpoints.blob" in app
    assert "KLASBLIK_AZURE_CLIENT_ID', value: identity.properties.clientId" in app
    assert "AZURE_CONNECTION_STRING" not in TEXT


def test_network_private_endpoints_and_postgres_in_its_subnet():
    """The app environment is in the VNet; PostgreSQL is VNet-integrated without public
    access; blob, vault and Redis have private endpoints with their DNS zones; the trusted
    proxies are the app subnet, where the ingress runs."""
    env = _block("Microsoft.App/managedEnvironments", "appEnv")
    assert "vnetConfiguration: { infrastructureSubnetId: appsSubnetId" in env
    pg = _block("Microsoft.DBforPostgreSQL/flexibleServers", "postgres")
    assert (
        "delegatedSubnetResourceId: postgresSubnetId" in pg
        and "publicNetworkAccess: 'Disabled'" in pg
    )
    for group in ("'blob'", "'vault'", "'redisEnterprise'"):
        assert f"group: {group}" in TEXT, group
    for zone in (
        "privatelink.blob.",
        "privatelink.vaultcore.azure.net",
        "privatelink.redis.azure.net",
        ".postgres.database.azure.com",
    ):
        assert zone in TEXT, zone
    vault = _block("Microsoft.KeyVault/vaults", "vault")
    assert "publicNetworkAccess: 'Disabled'" in vault and "enableRbacAuthorization: true" in vault
    assert "{ name: 'KLASBLIK_TRUSTED_PROXIES', value: appsSubnetPrefix }" in TEXT


def test_azure_managed_redis_and_no_retired_cache():
    """Redis is Azure Managed Redis (redisEnterprise, TLS only), not Azure Cache for Redis;
    the URL has no key in it and the key is its own setting."""
    assert "Microsoft.Cache/redis@" not in TEXT
    redis = _block("Microsoft.Cache/redisEnterprise", "redis")
    assert "publicNetworkAccess: 'Disabled'" in redis
    db = _block("Microsoft.Cache/redisEnterprise/databases", "redisDb")
    assert "clientProtocol: 'Encrypted'" in db
    assert "'rediss://${redis.properties.hostName}:10000/0'" in TEXT


def test_probes_registry_identity_and_custom_domain():
    """Liveness asks /livez, readiness /readyz, a startup probe gives the database time;
    the image comes from the deployment's registry pulled by the managed identity; the
    custom domain gets a managed certificate."""
    app = _block("Microsoft.App/containerApps", "app")
    probes = dict(re.findall(r"type: '(\w+)', httpGet: \{ path: '([^']+)'", app))
    assert probes == {"Startup": "/livez", "Liveness": "/livez", "Readiness": "/readyz"}
    assert (
        "registries: [ { server: registry.properties.loginServer, identity: identity.id } ]" in app
    )
    assert "image: '${registry.properties.loginServer}/${image}'" in app
    assert "adminUserEnabled: false" in _block("Microsoft.ContainerRegistry/registries", "registry")
    assert "roles.acrPull" in _block("Microsoft.Authorization/roleAssignments", "registryRole")
    assert "userAssignedIdentities: { '${identity.id}': {} }" in app
    cert = _block("Microsoft.App/managedEnvironments/managedCertificates", "certificate")
    assert "subjectName: hostname" in cert
    assert "{ name: hostname, certificateId: certificate.id, bindingType: 'SniEnabled' }" in app
    assert "{ name: 'KLASBLIK_PUBLIC_URL', value: 'https://${hostname}' }" in app


def _unbalanced(text: str) -> str | None:
    """What is wrong with the nesting of brackets and strings in Bicep ``text`` (None: all
    well). Knows comments, ``\\'`` escapes and ``${...}`` interpolation inside strings."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []  # brackets, "'" for a string, "${" for an interpolation
    line, i = 1, 0
    while i < len(text):
        ch, two = text[i], text[i : i + 2]
        in_string = bool(stack) and stack[-1] == "'"
        if ch == "\n":
            line += 1
            if in_string:
                return f"line {line - 1}: string not closed"
        if in_string:
            if two in ("\\'", "\\\\"):
                i += 2
                continue
            if two == "${":
                stack.append("${")
                i += 2
                continue
            if ch == "'":
                stack.pop()
        elif two == "//":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif ch == "'":
            stack.append("'")
        elif ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            top = stack.pop() if stack else None
            if not (top == pairs[ch] or (ch == "}" and top == "${")):
                return f"line {line}: {ch!r} closes {top!r}"
        i += 1
    return f"not closed: {stack}" if stack else None


def test_template_is_balanced():
    """Brackets, braces and parentheses balance and every string literal closes: the
    syntax slips a compiler would catch first (and the checker catches a slip)."""
    assert _unbalanced(TEXT) is None, _unbalanced(TEXT)
    assert _unbalanced("param a string = 'x") is not None
    assert _unbalanced("var b = { c: [ 1 }") is not None
    assert _unbalanced("var d = '${e}' // '") is None
