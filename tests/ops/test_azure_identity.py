"""Azure Blob Storage without an account key: the server signs in with a managed identity
(``azure_account_url``; DefaultAzureCredential, as on Azure Container Apps) and Azurite
checks the bearer token (``--oauth basic``: issuer, audience and lifetime; Azurite does not
check signatures, so that part only a real subscription shows).

The identity endpoint here follows the shape Microsoft documents for App Service and
Container Apps (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``, api-version 2019-08-01): it
is the one piece that cannot be real on this machine."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass, field

import aiohttp
import jwt
from aiohttp import web

from tests.support.azurite import KEY, Azurite
from tests.support.live import TOKEN
from tests.support.oidc import make_localhost_cert
from tests.support.process import ServerProcess
from tests.support.timing import timeout, wait_for

TENANT = "5a1b2c3d-0000-4000-8000-00000000cafe"
GOOD_CLIENT, BAD_AUDIENCE_CLIENT = "11111111-aaaa-4bbb-8ccc-000000000001", "2222-wrong-aud"


@dataclass
class IdentityEndpoint:
    """The managed-identity token endpoint of a Container App, for one test."""

    header: str = field(default_factory=lambda: secrets.token_hex(16))
    calls: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def token(self, request: web.Request) -> web.Response:
        self.calls.append({**request.query, "header": request.headers.get("X-IDENTITY-HEADER", "")})
        if request.headers.get("X-IDENTITY-HEADER") != self.header:
            return web.json_response({"error": "invalid header"}, status=401)
        resource = request.query.get("resource", "")
        client = request.query.get("client_id", "")
        now = int(time.time())
        claims = {
            "aud": "https://vault.azure.net" if client == BAD_AUDIENCE_CLIENT else resource,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "tid": TENANT,
            "oid": secrets.token_hex(8),
            "appid": client,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + 3600,
        }
        token = jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
        body = {
            "access_token": token,
            "expires_on": str(now + 3600),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client,
        }
        return web.json_response(body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/msi/token", self.token)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/msi/token"


async def _readyz(server: ServerProcess) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.base_url + "/readyz") as r:
            return r.status, await r.json()


async def test_blob_store_with_managed_identity_and_no_account_key(tmp_path):
    """With azure_account_url and no connection string, the server gets a token for
    https://storage.azure.com from the identity endpoint (with the identity header and
    the configured client id), Azurite accepts it, the private container is made and
    /readyz is ready. A token for the wrong audience is refused by Azurite, and the
    server says the blob store is down."""
    cert, key = make_localhost_cert(tmp_path)
    azurite = Azurite(extra_args=("--oauth", "basic", "--cert", str(cert), "--key", str(key)))
    azurite.start()
    identity = IdentityEndpoint()
    await identity.start()
    servers: list[ServerProcess] = []
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))
    }
    try:
        for client, container in ((GOOD_CLIENT, "mitest"), (BAD_AUDIENCE_CLIENT, "mibad")):
            env = {
                **base_env,
                "KLASBLIK_ENROLLMENT_TOKEN": TOKEN,
                "KLASBLIK_BLOB_STORE": f"azure:{container}",
                "KLASBLIK_AZURE_ACCOUNT_URL": f"https://127.0.0.1:{azurite.port}/devstoreaccount1",
                "KLASBLIK_AZURE_CLIENT_ID": client,
                "IDENTITY_ENDPOINT": identity.url,
                "IDENTITY_HEADER": identity.header,
                "SSL_CERT_FILE": str(cert),  # Azurite's self-signed certificate
            }
            (tmp_path / container).mkdir()
            server = ServerProcess(tmp_path / container, env=env)
            servers.append(server)
        for server in servers:
            await asyncio.to_thread(server.wait_healthy)
        good, bad = servers

        status, body = await _readyz(good)
        assert (status, body["blob_store"]) == (200, "ok"), (body, good.log())
        calls = [c for c in identity.calls if c.get("client_id") == GOOD_CLIENT]
        assert calls and all(c["header"] == identity.header for c in calls)
        assert {c["resource"] for c in calls} == {"https://storage.azure.com"}
        assert {c["api-version"] for c in calls} == {"2019-08-01"}
        assert "AccountKey" not in good.log()

        status, body = await _readyz(bad)
        assert status == 503 and body["blob_store"].startswith("down:"), body
        assert any(c.get("client_id") == BAD_AUDIENCE_CLIENT for c in identity.calls)
        await wait_for(
            lambda: "authentication_failed" in bad.log().lower(),
            timeout(10),
            "the refusal in the log",
        )

        # what Azurite holds, read with the account key (the test may; the server did not)
        from azure.storage.blob.aio import BlobServiceClient

        async with BlobServiceClient(
            f"https://127.0.0.1:{azurite.port}/devstoreaccount1",
            credential={
                "account_name": "devstoreaccount1",
                "account_key": KEY,
            },
            connection_verify=str(cert),
        ) as admin:
            names = [c.name async for c in admin.list_containers()]
        assert "mitest" in names and "mibad" not in names
    finally:
        for server in servers:
            server.stop()
        if identity.runner is not None:
            await identity.runner.cleanup()
        azurite.stop()
