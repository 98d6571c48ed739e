"""The Chromebook extension in real Chromium proves who it is: a Google ID token (from the
second OpenID Connect provider process, playing Google's issuer; the test build takes it
from test-hooks.json, as a test profile has no Google sign-in) and its WebCrypto device
key answering the server's challenge. The server accepts it, verified, and registers the
key; a tampered token is refused with its own code and audit entry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from klasblik.server.storage.models import AgentDevice, GoogleAccount

from ..identity.conftest import GOOGLE_CLIENT_ID, GOOGLE_DOMAIN, audit_details, server_settings
from ..support.live import LiveServer, start_live_server
from ..support.oidc import OidcProvider, run_provider
from ..support.timing import timeout
from .extension import running_agent

pytestmark = pytest.mark.browser

STUDENT = ("sem.devries@school.example", "Sem", "de Vries")
GOOGLE_EMAIL = f"sem.devries@{GOOGLE_DOMAIN}"


@pytest.fixture(scope="module")
def providers(tmp_path_factory) -> Iterator[tuple[OidcProvider, OidcProvider]]:
    with (
        run_provider(tmp_path_factory.mktemp("entra")) as ms,
        run_provider(tmp_path_factory.mktemp("google"), tenant="google") as google,
    ):
        yield ms, google


@pytest.fixture
async def server(tmp_path, providers) -> AsyncIterator[tuple[LiveServer, str]]:
    """A verified-only server, Sem mapped from his Google address, and Sem's ID token."""
    ms, google = providers
    live = await start_live_server(tmp_path, **server_settings(ms, google))
    try:
        ids = await live.add_class("7B", [STUDENT])
        async with live.sm() as session, session.begin():
            session.add(GoogleAccount(email=GOOGLE_EMAIL, student_id=ids["students"][STUDENT[0]]))
        sub = str(uuid.uuid4())
        await asyncio.to_thread(
            google.put_user, sub, email=GOOGLE_EMAIL, email_verified=True, hd=GOOGLE_DOMAIN
        )
        token = await asyncio.to_thread(google.id_token_for, sub, GOOGLE_CLIENT_ID)
        yield live, token
    finally:
        await live.stop()


async def test_extension_sends_its_proof_and_is_verified(server, tmp_path: Path) -> None:
    """Verified, with the WebCrypto key registered for Sem; the private key never leaves."""
    live, token = server
    async with running_agent(
        tmp_path,
        server_url=live.agent_url,
        token=live.token,
        account=GOOGLE_EMAIL,
        identity_token=token,
    ) as agent:
        status = await agent.wait_status(lambda s: s["connected"], timeout(30))
        assert status["identity"] == "verified"
        sid = next(iter(live.hub.agents))
        assert live.hub.agents[sid].identity == "verified"
        assert live.hub.agents[sid].device_kind == "chromebook"
        async with live.sm() as session:
            keys = (await session.scalars(select(AgentDevice))).all()
        assert [k.student_id for k in keys] == [sid]
        extractable = await agent.evaluate(
            "(async () => { const req = indexedDB.open('klasblik', 1);"
            " const db = await new Promise((ok) => { req.onsuccess = () => ok(req.result); });"
            " const pair = await new Promise((ok) => { const g = db.transaction('keys')"
            ".objectStore('keys').get('device'); g.onsuccess = () => ok(g.result); });"
            " return pair.privateKey.extractable; })()"
        )
        assert extractable is False


async def test_extension_with_a_tampered_token_is_refused(server, tmp_path: Path) -> None:
    """One character of the signature changed: identity_invalid, audited, not connected."""
    live, token = server
    head, body, sig = token.split(".")
    changed = "A" if sig[10] != "A" else "B"
    tampered = f"{head}.{body}.{sig[:10]}{changed}{sig[11:]}"
    async with running_agent(
        tmp_path,
        server_url=live.agent_url,
        token=live.token,
        account=GOOGLE_EMAIL,
        identity_token=tampered,
    ) as agent:
        status = await agent.wait_status(
            lambda s: (s["lastError"] or "").startswith("identity_invalid"), timeout(30)
        )
        assert not status["connected"]
        assert live.hub.agents == {}
        details = await audit_details(live)
        assert any(d.startswith("identity_invalid:") for d in details), details
