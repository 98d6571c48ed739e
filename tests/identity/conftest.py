"""Fixtures for agent identity: two OpenID Connect provider processes (one shaped as the
school's Microsoft Entra tenant, one playing Google's issuer), a Klasblik server that
trusts both, and a protocol-speaking agent that can carry an identity token and a device
key (the desktop agent's own :class:`~klasblik.agent.identity.DeviceKey`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select, update

from klasblik.agent.identity import DeviceKey, TokenSource
from klasblik.server.storage.models import AuditEntry, Staff, Student
from tests.support.live import LiveServer, TestAgent, start_live_server
from tests.support.oidc import CLIENT_ID, OidcProvider, oid_for, run_provider
from tests.support.timing import timeout

GOOGLE_CLIENT_ID = "123456789012-klasblik.apps.googleusercontent.com"
GOOGLE_DOMAIN = "leerling.school.example"
API_SCOPE = f"api://{CLIENT_ID}/Agent.Connect"

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")
TEACHER = "teacher@school.example"


@pytest.fixture(scope="module")
def ms(tmp_path_factory) -> Iterator[OidcProvider]:
    """The school's Microsoft 365 (Entra-shaped) provider."""
    with run_provider(tmp_path_factory.mktemp("entra")) as provider:
        yield provider


@pytest.fixture(scope="module")
def google(tmp_path_factory) -> Iterator[OidcProvider]:
    """A second provider process playing Google's issuer."""
    with run_provider(tmp_path_factory.mktemp("google"), tenant="google") as provider:
        yield provider


def server_settings(ms: OidcProvider, google: OidcProvider, **extra: Any) -> dict[str, Any]:
    values = {
        "agent_identity": "verified",
        "google_client_id": GOOGLE_CLIENT_ID,
        "google_issuer": google.authority,
        "google_domains": [GOOGLE_DOMAIN],
        "google_ca_file": str(google.ca_file),
        # the tests write the roster directly instead of syncing it: no staleness limit
        "roster_max_age_h": 0,
    }
    return ms.settings(**{**values, **extra})


@pytest.fixture
async def id_server(tmp_path, ms, google) -> AsyncIterator[LiveServer]:
    """A live server whose school requires verified agents (the default for new installs)."""
    server = await start_live_server(tmp_path, **server_settings(ms, google))
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class People:
    class_id: int
    school_id: int
    anna_id: int
    bram_id: int
    anna_sub: str
    bram_sub: str
    teacher_sub: str
    anna_oid: str
    bram_oid: str


async def enrol_people(server: LiveServer, ms: OidcProvider) -> People:
    """Anna and Bram in class 7B with their Microsoft 365 object ids, and their teacher.
    The provider's users sign in as their ``sub``; their tokens' ``oid`` is ``oid_for``
    their username, the object id the roster rows carry (as in a real tenant, sub and
    oid differ)."""
    ids = await server.add_class("7B", [ANNA, BRAM], teacher=TEACHER)
    anna_sub = await asyncio.to_thread(ms.add_user, ANNA[0], "Anna Bakker")
    bram_sub = await asyncio.to_thread(ms.add_user, BRAM[0], "Bram de Jong")
    teacher_sub = await asyncio.to_thread(ms.add_user, TEACHER, "M. de Vries")
    async with server.sm() as session, session.begin():
        for username in (ANNA[0], BRAM[0]):
            await session.execute(
                update(Student)
                .where(Student.username == username)
                .values(m365_id=oid_for(username))
            )
        await session.execute(
            update(Staff).where(Staff.username == TEACHER).values(m365_id=oid_for(TEACHER))
        )
    return People(
        ids["class_id"],
        ids["school_id"],
        ids["students"][ANNA[0]],
        ids["students"][BRAM[0]],
        anna_sub,
        bram_sub,
        teacher_sub,
        oid_for(ANNA[0]),
        oid_for(BRAM[0]),
    )


def token_source(ms: OidcProvider) -> TokenSource:
    """The desktop agent's token code, pointed at the provider (no broker here)."""
    http = requests.Session()
    http.verify = str(ms.ca_file)
    return TokenSource(
        CLIENT_ID,
        ms.authority.removesuffix("/v2.0"),
        [API_SCOPE],
        broker=False,
        http_client=http,
        instance_discovery=False,
    )


def sign_in_on_device(ms: OidcProvider, source: TokenSource, sub: str, scope: str = "") -> None:
    """What the OS sign-in does for the broker: an ordinary msal authorization-code flow
    for ``sub`` that leaves the account and its token in msal's cache (blocking)."""
    flow = source.app.initiate_auth_code_flow([scope or API_SCOPE], redirect_uri="http://localhost")
    location = ms.authorize(flow["auth_uri"], sub)
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    result = source.app.acquire_token_by_auth_code_flow(flow, params)
    assert "access_token" in result, result


async def device_token(ms: OidcProvider, sub: str, username: str, scope: str = "") -> str:
    """An access token for Klasblik's API, as the desktop agent gets it: signed in once,
    then silently from msal (``TokenSource.acquire``)."""
    source = token_source(ms)
    await asyncio.to_thread(sign_in_on_device, ms, source, sub, scope)
    if scope:  # a token for another resource: what acquire() would never ask for
        accounts = source.app.get_accounts()
        result = await asyncio.to_thread(
            source.app.acquire_token_silent, [scope], account=accounts[0]
        )
        return str(result["access_token"])
    identity = await asyncio.to_thread(source.acquire, username)
    assert identity is not None, source.last_problem
    return identity.token


class IdAgent(TestAgent):
    """A protocol-speaking agent with an optional identity token and device key. Answers
    the server's challenge with its key (or with ``answer`` when given: an attack)."""

    __test__ = False

    def __init__(
        self,
        server: LiveServer,
        account: str,
        *,
        identity: dict[str, str] | None = None,
        key: DeviceKey | None = None,
        device_id: str = "",
        kind: str = "desktop",
    ) -> None:
        super().__init__(server, account)
        self.identity = identity
        self.key = key
        self.device_id = device_id or "dev-" + account
        self.kind = kind
        self.challenges: list[str] = []

    async def connect(  # type: ignore[override]
        self, token: str | None = None, answer: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(self.server.agent_url)
        device: dict[str, Any] = {"id": self.device_id, "kind": self.kind}
        if self.key is not None:
            device["key"] = self.key.public_key
        hello: dict[str, Any] = {
            "type": "hello",
            "protocol": 1,
            "token": token or self.server.token,
            "account": self.account,
            "device": device,
        }
        if self.identity is not None:
            hello["identity"] = self.identity
        await self.ws.send_str(json.dumps(hello))
        while True:
            first = json.loads(await self.ws.receive_str(timeout=timeout(10)))
            if first["type"] != "challenge":
                break
            self.challenges.append(first["nonce"])
            assert self.key is not None
            proof = answer or {
                "nonce": first["nonce"],
                "signature": self.key.sign(first["nonce"], self.device_id),
            }
            await self.ws.send_str(json.dumps({"type": "proof", **proof}))
        if first["type"] == "welcome":
            self.welcome = first
            self._reader = asyncio.create_task(self._read())
        return first


async def audit_details(server: LiveServer, action: str = "agent.refused") -> list[str]:
    async with server.sm() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        )
        return [r.detail for r in rows.all()]


def new_key(tmp_path: Path, name: str) -> DeviceKey:
    folder = tmp_path / name
    return DeviceKey.load_or_create(folder)
