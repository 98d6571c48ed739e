"""The Graph emulator in app-token mode: it answers only app-only tokens of the test
provider (signature from its JWKS, audience, issuer, tenant, lifetime), as Graph does."""

from __future__ import annotations

import asyncio

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.m365.roster_fixture import fill
from tests.support.graph_emulator import GraphEmulator, start_graph_emulator


@pytest.fixture
async def graph(provider):
    emulator, runner = await start_graph_emulator(GraphEmulator())
    jwks = await asyncio.to_thread(provider.jwks)
    emulator.require_app_tokens(jwks, provider.tenant, provider.app_token_issuer)
    fill(emulator)
    try:
        yield emulator
    finally:
        await runner.cleanup()


async def _get(graph, token, path="/education/schools"):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(graph.base_url + path, headers=headers) as resp:
            return resp.status, await resp.json(), resp.headers


async def test_provider_app_token_is_accepted(graph, provider):
    """A token from the provider's client-credentials grant reads every roster API."""
    token = await asyncio.to_thread(provider.app_token)
    for path in ("/education/schools", "/education/users/delta", "/education/classes/delta"):
        status, body, _headers = await _get(graph, token, path)
        assert status == 200, body
    assert graph.seen_tokens == [token] * 3


async def test_refused_tokens_are_401_invalid_authentication_token(graph, provider):
    """No token, the emulator's fixed test token, a token signed by an unpublished key,
    an expired one: 401 InvalidAuthenticationToken in Graph's shape, nothing read."""
    good = jwt.decode(
        await asyncio.to_thread(provider.app_token), options={"verify_signature": False}
    )
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(provider.app_tokens[-1])["kid"]
    forged = jwt.encode(good, stranger, algorithm="RS256", headers={"kid": kid})
    provider.app_token_lifetime_s = -120
    expired = await asyncio.to_thread(provider.app_token)
    cases = [
        (None, "Access token is empty."),
        (graph.token, "IDX14100"),
        (forged, "Invalid signature"),
        (expired, "Lifetime validation failed"),
    ]
    for token, message in cases:
        status, body, headers = await _get(graph, token)
        assert status == 401, (token, body)
        assert body["error"]["code"] == "InvalidAuthenticationToken"
        assert message in body["error"]["message"]
        assert {"date", "request-id"} <= set(body["error"]["innerError"])
        assert headers["WWW-Authenticate"].startswith("Bearer ")
    assert graph.seen_tokens == []


async def test_token_of_another_tenant_is_refused(provider):
    """The emulator set up for another tenant refuses this tenant's tokens."""
    emulator, runner = await start_graph_emulator(GraphEmulator())
    try:
        jwks = await asyncio.to_thread(provider.jwks)
        other = "00000000-0000-0000-0000-000000000001"
        emulator.require_app_tokens(jwks, other, f"https://sts.windows.net/{other}/")
        status, body, _ = await _get(emulator, await asyncio.to_thread(provider.app_token))
        assert status == 401 and "Invalid issuer" in body["error"]["message"]
    finally:
        await runner.cleanup()


async def test_missing_permission_is_403(graph, provider):
    """A valid token without EduRoster.Read.All may not read the education API, and
    EduRoster.ReadBasic.All is enough only for the two delta functions: Microsoft's
    permission tables (https://learn.microsoft.com/graph/api/educationclass-list-members:
    "Application: EduRoster.Read.All"; https://learn.microsoft.com/graph/api/educationuser-delta:
    least privileged EduRoster.ReadBasic.All)."""
    provider.app_roles = ["User.Read.All", "GroupMember.Read.All"]
    token = await asyncio.to_thread(provider.app_token)
    status, body, _ = await _get(graph, token, "/education/schools")
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
    provider.app_roles = ["EduRoster.ReadBasic.All"]
    token = await asyncio.to_thread(provider.app_token)
    status, _body, _ = await _get(graph, token, "/education/users/delta")
    assert status == 200
    status, body, _ = await _get(graph, token, "/education/classes/x/members")
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
