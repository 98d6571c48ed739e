"""The test OpenID Connect provider's emulation of Microsoft Entra's client-credentials
grant (tests/support/oidc.py), as msal and a plain HTTP client see it."""

from __future__ import annotations

import base64

import jwt
import msal

from klasblik.server.auth.m365.client import GRAPH_SCOPE, _Session
from tests.m365 import signin_flow as f
from tests.support.oidc import APP_ROLES, CLIENT_ID, CLIENT_SECRET, GRAPH_AUDIENCE, TENANT
from tests.support.timing import timeout


def _msal_app(provider, secret=CLIENT_SECRET):
    http = _Session()
    http.verify = str(provider.ca_file)
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=secret,
        authority=provider.authority.removesuffix("/v2.0"),
        instance_discovery=False,
        http_client=http,
    )


def _post(provider, data, **kwargs):
    return provider._http.post(
        provider.token_endpoint,
        data=data,
        timeout=timeout(10),
        verify=str(provider.ca_file),
        **kwargs,
    )


def _verified(provider, token):
    keys = jwt.PyJWKSet.from_dict(provider.jwks())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=GRAPH_AUDIENCE,
        issuer=provider.app_token_issuer,
    )


def test_msal_gets_an_app_token_from_the_discovered_endpoint(provider):
    """msal posts client credentials to the token endpoint of the discovery document
    (Entra's /{tenant}/oauth2/v2.0/token); the answer is Entra-shaped and the token
    verifies against the provider's JWKS with Graph's audience and the granted roles."""
    app = _msal_app(provider)
    assert app.authority.token_endpoint == provider.token_endpoint
    assert provider.token_endpoint.endswith(f"/{TENANT}/oauth2/v2.0/token")
    result = app.acquire_token_for_client(GRAPH_SCOPE)
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599
    assert result["access_token"] == provider.app_tokens[-1]
    claims = _verified(provider, result["access_token"])
    assert claims["tid"] == TENANT and claims["appid"] == CLIENT_ID
    assert claims["idtyp"] == "app" and claims["roles"] == list(APP_ROLES)
    assert claims["exp"] - claims["iat"] == 3599
    [call] = provider.token_calls
    assert (call.path, call.grant_type, call.status) == (
        f"/{TENANT}/oauth2/v2.0/token",
        "client_credentials",
        200,
    )
    # msal's token cache: the second call does not reach the provider
    again = app.acquire_token_for_client(GRAPH_SCOPE)
    assert again["access_token"] == result["access_token"]
    assert again["token_source"] == "cache" and provider.token_requests == 1


def test_wrong_secret_is_invalid_client_aadsts7000215(provider):
    """A wrong secret: 401 invalid_client, AADSTS7000215 in Entra's error shape, no token;
    msal hands that answer back (and asks again next time: it caches only 400s)."""
    app = _msal_app(provider, secret="not-the-secret")
    for _ in range(2):
        result = app.acquire_token_for_client(GRAPH_SCOPE)
        assert result["error"] == "invalid_client"
        assert result["error_description"].startswith("AADSTS7000215: Invalid client secret")
        assert result["error_codes"] == [7000215] and "access_token" not in result
        assert {"trace_id", "correlation_id", "timestamp", "error_uri"} <= set(result)
    assert [c.status for c in provider.token_calls] == [401, 401]
    assert provider.app_tokens == []


def test_basic_auth_and_the_documented_refusals(provider):
    """HTTP Basic client authentication works; a missing secret, an unknown app, a scope
    without /.default and a resource other than Graph are refused as Entra does."""
    scope = "https://graph.microsoft.com/.default"
    basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    ok = _post(
        provider,
        {"grant_type": "client_credentials", "scope": scope},
        headers={"Authorization": basic},
    )
    assert ok.status_code == 200 and ok.headers["Cache-Control"].startswith("no-store")
    assert _verified(provider, ok.json()["access_token"])["appid"] == CLIENT_ID
    cases = [
        ({"client_id": CLIENT_ID}, 401, "invalid_client", 7000218),
        ({"client_id": "someone-else", "client_secret": "x"}, 400, "unauthorized_client", 700016),
        (
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scope": "User.Read"},
            400,
            "invalid_scope",
            1002012,
        ),
        (
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": "https://vault.azure.net/.default",
            },
            400,
            "invalid_resource",
            500011,
        ),
    ]
    for form, status, error, code in cases:
        resp = _post(provider, {"grant_type": "client_credentials", "scope": scope, **form})
        body = resp.json()
        assert (resp.status_code, body["error"], body["error_codes"]) == (status, error, [code])
        assert body["error_description"].startswith(f"AADSTS{code}: ")


async def test_sign_in_goes_through_the_same_token_endpoint(m365_server, provider):
    """The sign-in's code redemption uses the discovered endpoint too, and the provider
    hands it on to the mock's own grant: one token endpoint, as in Entra."""
    await m365_server.add_class("7B", [], teacher="m.devries@school.example")
    sub = provider.add_user("m.devries@school.example")
    async with f.new_client() as http:
        out = await f.sign_in(http, m365_server, provider, sub)
    assert (out.status, out.location) == (303, "/")
    # (the server's permission check at start asked for an app token too)
    [call] = [c for c in provider.token_calls if c.grant_type != "client_credentials"]
    assert (call.path, call.grant_type, call.status) == (
        f"/{TENANT}/oauth2/v2.0/token",
        "authorization_code",
        200,
    )
