"""A real OpenID Connect provider process part for tests: PyPI ``oidc-provider-mock``
(Flask + authlib) served over TLS with a self-signed localhost certificate made here, and
mounted under ``/<tenant>/v2.0`` so that it has the shape of a Microsoft Entra authority and
msal can use it with ``instance_discovery=False``.

``PUT /users/{sub}`` sets a user's claims (oid, tid, preferred_username, name, roles);
POSTing ``sub=...`` to the authorize URL answers 302 with the code, as its login form does.
``forge_next_token`` re-signs the next ID token with a key the provider never published.

EMULATION of Microsoft Entra's OAuth 2.0 client-credentials grant (app-only tokens, what
the scheduled roster sync uses through msal's ``acquire_token_for_client``). The mock
itself has no such grant (its token view accepts only authorization_code and
refresh_token; registering authlib's ClientCredentialsGrant with its authorization server
ends in an AssertionError there), so ``_EntraTokenEndpoint`` answers it in front of the
mock, following Microsoft's documented shapes:

- the discovery document names Entra's token endpoint, ``/{tenant}/oauth2/v2.0/token``
  (msal reads it from there; the mock's own ``/{tenant}/v2.0/oauth2/token`` still works);
  other grants posted there go on to the mock unchanged;
- ``grant_type=client_credentials`` with ``client_id`` and the secret (``client_secret``
  in the body, or HTTP Basic) and ``scope=https://graph.microsoft.com/.default`` answers
  ``{"token_type": "Bearer", "expires_in", "ext_expires_in", "access_token"}``; the
  access token is a JWT signed with the provider's own key (the one its JWKS publishes)
  and carries Graph's app-only claims: ``aud`` the requested resource
  (https://graph.microsoft.com, or a national cloud's Graph listed in
  ``graph_resources``), ``iss`` https://sts.windows.net/{tenant}/, ``tid``, ``appid``, ``idtyp`` app, and ``roles``: the
  application permissions set in ``OidcProvider.app_roles``;
- refusals as Entra words them: ``{"error", "error_description": "AADSTSnnn: ...",
  "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}``. A wrong secret
  is ``invalid_client`` AADSTS7000215 with HTTP 401, the status Entra answers it with
  (RFC 6749 5.2 allows 401 for invalid_client; msal reads the JSON whatever the 4xx, and
  caches only 400 answers, for 60 s), a missing secret 401 AADSTS7000218, an unknown app
  400 ``unauthorized_client`` AADSTS700016, a scope without ``/.default`` 400
  ``invalid_scope`` AADSTS1002012, another resource 400 ``invalid_resource`` AADSTS500011.
  msal 1.39 sends the secret in the body (``client_secret``); HTTP Basic works too.

EMULATION of Entra's v2.0 access tokens for a web API (what the desktop agent sends as its
identity proof): when an authorization-code (or refresh) grant asks for a scope of an
``api://<app id>/...`` resource, the mock's own opaque access token in the answer is
replaced by a JWT in Microsoft's documented v2.0 access-token shape: ``aud`` the API's app
id, ``iss`` the authority's issuer, ``tid``, ``oid``, ``sub``, ``preferred_username``,
``scp`` (the scope names), ``azp`` (the client that asked), ``ver`` 2.0, ``iat``/``nbf``/
``exp``, signed with the provider's published key; ``scope`` in the answer names the
granted API scope, as Entra answers it. A public client's code redemption (no secret, PKCE)
is accepted as Entra accepts it. ``forge_next_api_token`` re-signs the next one
with an unpublished key.
``mint_access_token`` signs one with chosen claims (an expired one, say).

A second provider (``run_provider(..., tenant="google")``) plays Google's issuer: users
with ``email``, ``email_verified`` and ``hd`` claims, ID tokens whose ``aud`` is the
client id that asked (``id_token_for``).

Every token request (either path, any grant) is counted in ``OidcProvider.token_requests``
and logged in ``OidcProvider.token_calls``; the app tokens issued are in ``app_tokens``.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from tests.support.timing import timeout

__all__ = [
    "APP_ROLES",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "GRAPH_AUDIENCE",
    "TENANT",
    "OidcProvider",
    "TokenCall",
    "make_localhost_cert",
    "run_provider",
]

TENANT = "5f0c2a1e-7b4d-4c3e-9a11-2b8c6d0e4f70"
CLIENT_ID = "9d2f6a3b-1c4e-4f5a-8b7c-0e1d2c3b4a59"
CLIENT_SECRET = "test-client-secret"
#: Microsoft Graph's resource id: the ``aud`` of every Graph token.
GRAPH_AUDIENCE = "https://graph.microsoft.com"
#: The application permissions (app roles) the test app registration has been granted:
#: what roster sync needs (docs/microsoft365.md, section 1).
APP_ROLES = ("EduRoster.Read.All",)


def oid_for(username: str) -> str:
    """A stable Microsoft 365 object id for a test username."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"oid:{username.lower()}"))


def make_localhost_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "localhost.pem", folder / "localhost-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class TokenCall:
    """One request to a token endpoint, as the provider saw and answered it."""

    path: str
    grant_type: str
    client_id: str
    status: int


@dataclass
class OidcProvider:
    port: int
    ca_file: Path
    tenant: str = TENANT
    forge_next_token: bool = False
    #: re-sign the next API access token with an unpublished key
    forge_next_api_token: bool = False
    #: every request to a token endpoint (either path, any grant)
    token_requests: int = 0
    token_calls: list[TokenCall] = field(default_factory=list)
    #: the app registration the client-credentials grant knows, and its granted roles
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    app_roles: list[str] = field(default_factory=lambda: list(APP_ROLES))
    #: the resources (``aud``) the client-credentials grant issues tokens for: Graph of
    #: the global cloud; a national cloud's Graph (https://graph.microsoft.us, ...) when
    #: a test adds it
    graph_resources: list[str] = field(default_factory=lambda: [GRAPH_AUDIENCE])
    app_token_lifetime_s: int = 3599
    #: access tokens issued by the client-credentials grant, oldest first
    app_tokens: list[str] = field(default_factory=list)
    #: access tokens for an api:// resource issued by the code grant, oldest first
    api_tokens: list[str] = field(default_factory=list)
    api_token_lifetime_s: int = 3599
    _http: requests.Session = field(default_factory=requests.Session)
    _signing_key: Any = None
    _issuer: str | None = None

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant}/v2.0"

    @property
    def token_endpoint(self) -> str:
        """Entra's v2.0 token endpoint, as the discovery document names it."""
        return f"{self.base_url}/{self.tenant}/oauth2/v2.0/token"

    @property
    def app_token_issuer(self) -> str:
        """The ``iss`` of app-only Graph tokens (Entra issues them as v1.0 tokens)."""
        return f"https://sts.windows.net/{self.tenant}/"

    @property
    def app_token_calls(self) -> list[TokenCall]:
        return [c for c in self.token_calls if c.grant_type == "client_credentials"]

    def jwks(self) -> dict[str, Any]:
        """The provider's published JSON Web Key Set (from its discovery document)."""
        config = self._http.get(
            f"{self.authority}/.well-known/openid-configuration",
            timeout=timeout(10),
            verify=str(self.ca_file),
        ).json()
        keys: dict[str, Any] = self._http.get(
            config["jwks_uri"], timeout=timeout(10), verify=str(self.ca_file)
        ).json()
        return keys

    def settings(self, **extra: Any) -> dict[str, Any]:
        """Klasblik settings that point sign-in at this provider."""
        return {
            "m365_tenant_id": self.tenant,
            "m365_client_id": CLIENT_ID,
            "m365_client_secret": CLIENT_SECRET,
            "m365_authority": self.authority,
            "m365_ca_file": str(self.ca_file),
            "roster_sync_interval_min": 0,
            **extra,
        }

    @property
    def issuer(self) -> str:
        """The ``iss`` of this provider's tokens, as its discovery document names it."""
        if self._issuer is None:
            config = self._http.get(
                f"{self.authority}/.well-known/openid-configuration",
                timeout=timeout(10),
                verify=str(self.ca_file),
            ).json()
            self._issuer = str(config["issuer"])
        return self._issuer

    def api_claims(self, user: dict[str, Any], scopes: list[str], client_id: str) -> dict[str, Any]:
        """The claims of a v2.0 access token for the ``api://`` resource of ``scopes``."""
        resource = scopes[0].removeprefix("api://").split("/", 1)[0]
        now = int(time.time())
        return {
            "aud": resource,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + self.api_token_lifetime_s,
            "azp": client_id,
            "azpacr": "0",  # a public client
            "name": user.get("name", ""),
            "oid": user.get("oid"),
            "preferred_username": user.get("preferred_username"),
            "scp": " ".join(sc.split("/", 3)[-1] for sc in scopes),
            "sub": user.get("sub"),
            "tid": user.get("tid"),
            "uti": uuid.uuid4().hex,
            "ver": "2.0",
        }

    def mint_access_token(self, claims: dict[str, Any], forged: bool = False) -> str:
        """A JWT signed with the provider's published key (or, ``forged``, with a key it
        never published, under the same key id)."""
        key = self._signing_key
        kid = key.as_dict()["kid"]
        signer = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if forged
            else key.get_private_key()
        )
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})

    def id_token_for(self, sub: str, client_id: str, scope: str = "openid email profile") -> str:
        """An ID token for ``sub`` issued to ``client_id``, by the provider's ordinary
        authorization-code flow over HTTP (no msal): authorize, log in, redeem."""
        import hashlib
        import secrets
        from urllib.parse import parse_qs as _qs
        from urllib.parse import urlencode, urlsplit

        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        redirect = "https://localhost/callback"
        query = urlencode(
            {
                "client_id": client_id,
                "redirect_uri": redirect,
                "response_type": "code",
                "scope": scope,
                "state": secrets.token_hex(8),
                "nonce": secrets.token_hex(8),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        location = self.authorize(f"{self.authority}/oauth2/authorize?{query}", sub)
        code = _qs(urlsplit(location).query)["code"][0]
        resp = self._http.post(
            self.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "client_id": client_id,
                "code_verifier": verifier,
            },
            auth=(client_id, "any"),
            timeout=timeout(10),
            verify=str(self.ca_file),
        )
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["id_token"]
        return token

    def app_token(self, secret: str | None = None) -> str:
        """An app-only Graph token by a plain client-credentials request (no msal)."""
        resp = self._http.post(
            self.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": secret or self.client_secret,
                "scope": f"{GRAPH_AUDIENCE}/.default",
            },
            timeout=timeout(10),
            verify=str(self.ca_file),
        )
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["access_token"]
        return token

    def put_user(self, sub: str, **claims: Any) -> None:
        resp = self._http.put(
            f"{self.authority}/users/{sub}",
            json=claims,
            timeout=timeout(10),
            verify=str(self.ca_file),
        )
        assert resp.status_code == 204, resp.text

    def add_user(
        self,
        username: str,
        name: str = "",
        tenant: str | None = None,
        roles: Iterable[str] = (),
        oid: str | None = None,
        **claims: Any,
    ) -> str:
        """A user with Entra-shaped claims; returns its sub (also its oid: by default
        ``oid_for(username)``, the id ``LiveServer.add_class`` gives its rows)."""
        sub = str(uuid.uuid4())
        self.put_user(
            sub,
            oid=oid or oid_for(username),
            tid=tenant or self.tenant,
            preferred_username=username,
            name=name or username,
            roles=list(roles),
            **claims,
        )
        return sub

    def authorize(self, authorize_url: str, sub: str) -> str:
        """Complete the provider's login form as ``sub``; return the redirect (callback) URL."""
        resp = self._http.post(
            authorize_url,
            data={"sub": sub},
            allow_redirects=False,
            timeout=timeout(10),
            verify=str(self.ca_file),
        )
        assert resp.status_code == 302, f"provider answered {resp.status_code}: {resp.text[:300]}"
        return resp.headers["Location"]


def _entra_error(status: int, error: str, code: int, message: str) -> tuple[int, dict[str, Any]]:
    """A token endpoint refusal in Entra's words (``error_description`` starts AADSTSnnn)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {message}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


class _EntraTokenEndpoint:
    """WSGI middleware in front of the mock: Entra's token endpoint path in the discovery
    document, and Entra's client-credentials grant answered here (see the module
    docstring). Every other request goes on to the mock unchanged."""

    def __init__(self, app: Any, provider_ref: list[OidcProvider], signing_key: Any) -> None:
        self.app = app
        self.ref = provider_ref
        #: the mock's own RSA key (authlib RSAKey): app tokens verify against its JWKS
        self.signing_key = signing_key

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        provider = self.ref[0] if self.ref else None
        path = environ.get("PATH_INFO", "")
        if provider is None:
            return self.app(environ, start_response)
        if path == f"/{provider.tenant}/v2.0/.well-known/openid-configuration":
            return self._discovery(environ, start_response)
        entra_path = path == f"/{provider.tenant}/oauth2/v2.0/token"
        mock_path = path == f"/{provider.tenant}/v2.0/oauth2/token"
        if not (entra_path or mock_path) or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        provider.token_requests += 1
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            status, answer = self._client_credentials(provider, form, environ)
            provider.token_calls.append(TokenCall(path, grant, form.get("client_id", ""), status))
            data = json.dumps(answer).encode()
            start_response(
                f"{status} {HTTPStatus(status).phrase}",
                [
                    ("Content-Type", "application/json; charset=utf-8"),
                    ("Cache-Control", "no-store, no-cache"),
                    ("Pragma", "no-cache"),
                    ("Content-Length", str(len(data))),
                ],
            )
            return [data]
        # another grant (authorization code, refresh token): the mock answers it
        if "client_secret" not in form and not environ.get("HTTP_AUTHORIZATION"):
            # a public client (the desktop agent) redeems its code with PKCE and no secret,
            # as Entra allows; the mock knows only confidential clients (it takes any
            # secret), so it is given a placeholder one
            body += b"&client_secret=public-client"
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["PATH_INFO"] = f"/{provider.tenant}/v2.0/oauth2/token"
        call = TokenCall(path, grant, form.get("client_id", ""), 0)
        provider.token_calls.append(call)
        api_scopes = [sc for sc in form.get("scope", "").split() if sc.startswith("api://")]
        if api_scopes:
            return self._api_token(provider, environ, start_response, call, form, api_scopes)

        def note(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            call.status = int(status.split()[0])
            return start_response(status, headers, exc_info)

        return self.app(environ, note)

    def _api_token(
        self,
        provider: OidcProvider,
        environ: dict[str, Any],
        start_response: Any,
        call: TokenCall,
        form: dict[str, str],
        scopes: list[str],
    ) -> Iterable[bytes]:
        """The mock's answer, with an Entra-shaped access token for the API (see above)."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.app(environ, capture))
        call.status = int(captured["status"].split()[0])
        if call.status == 200:
            data = json.loads(body)
            user = jwt.decode(data["id_token"], options={"verify_signature": False})
            claims = provider.api_claims(user, scopes, form.get("client_id", ""))
            forged = provider.forge_next_api_token
            provider.forge_next_api_token = False
            token = provider.mint_access_token(claims, forged=forged)
            provider.api_tokens.append(token)
            data["access_token"] = token
            data["expires_in"] = provider.api_token_lifetime_s
            data["scope"] = " ".join(scopes)
            data.pop("refresh_token", None)  # the agent keeps none (exclude offline_access)
            body = json.dumps(data).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    def _discovery(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.app(environ, capture))
        if captured["status"].startswith("200"):
            data = json.loads(body)
            data["token_endpoint"] = str(data["token_endpoint"]).replace(
                "/v2.0/oauth2/token", "/oauth2/v2.0/token"
            )
            data["grant_types_supported"] = [
                *data.get("grant_types_supported", []),
                "client_credentials",
            ]
            body = json.dumps(data).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    def _client_credentials(
        self, provider: OidcProvider, form: dict[str, str], environ: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return _entra_error(
                    401, "invalid_client", 7000215, "Invalid client secret provided."
                )
            basic_id, basic_secret = unquote_plus(user), unquote_plus(password)
            if client_id and basic_id != client_id:
                return _entra_error(
                    400,
                    "invalid_request",
                    900144,
                    "The client_id in the request body does not match the one in the "
                    "Authorization header.",
                )
            client_id = basic_id
            if secret is not None and secret != basic_secret:
                return _entra_error(
                    401, "invalid_client", 7000215, "Invalid client secret provided."
                )
            secret = basic_secret
        if not client_id:
            return _entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if client_id != provider.client_id:
            return _entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{provider.tenant}'.",
            )
        if not secret:
            return _entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
            )
        if secret != provider.client_secret:
            return _entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the "
                "request is the client secret value, not the client secret ID, for a "
                f"secret added to app '{client_id}'.",
            )
        scopes = form.get("scope", "").split()
        resources = [s.removesuffix("/.default") for s in scopes if s.endswith("/.default")]
        if not scopes or len(resources) != len(scopes) or len(resources) > 1:
            return _entra_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope', '')} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        resource = resources[0].rstrip("/")
        if resource not in provider.graph_resources:
            return _entra_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resources[0]} was not found in the tenant "
                f"named {provider.tenant}.",
            )
        now = int(time.time())
        service_principal = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}"))
        claims = {
            "aud": resource,
            "iss": provider.app_token_issuer,
            "iat": now,
            "nbf": now,
            "exp": now + provider.app_token_lifetime_s,
            "app_displayname": "Klasblik",
            "appid": client_id,
            "appidacr": "1",  # authenticated with a client secret
            "idp": provider.app_token_issuer,
            "idtyp": "app",
            "oid": service_principal,
            "sub": service_principal,
            "roles": list(provider.app_roles),
            "tid": provider.tenant,
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        key = self.signing_key
        token = jwt.encode(
            claims,
            key.get_private_key(),
            algorithm="RS256",
            headers={"kid": key.as_dict()["kid"], "typ": "JWT"},
        )
        provider.app_tokens.append(token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": provider.app_token_lifetime_s,
            "ext_expires_in": provider.app_token_lifetime_s,
            "access_token": token,
        }


class _Tamper:
    """WSGI middleware: when asked, re-sign the next ID token with an unpublished key."""

    def __init__(self, app: Any, provider_ref: list[OidcProvider]) -> None:
        self.app = app
        self.ref = provider_ref
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        provider = self.ref[0] if self.ref else None
        if not environ.get("PATH_INFO", "").endswith("/oauth2/token") or provider is None:
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.app(environ, capture))
        if provider.forge_next_token and captured["status"].startswith("200"):
            provider.forge_next_token = False
            data = json.loads(body)
            header = jwt.get_unverified_header(data["id_token"])
            claims = jwt.decode(data["id_token"], options={"verify_signature": False})
            kid = {"kid": header["kid"]} if header.get("kid") else None
            data["id_token"] = jwt.encode(claims, self.key, algorithm="RS256", headers=kid)
            body = json.dumps(data).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]


@contextmanager
def run_provider(
    folder: Path, tenant: str = TENANT, token_max_age: dt.timedelta = dt.timedelta(hours=1)
) -> Iterator[OidcProvider]:
    """Serve the provider on https://localhost:PORT/<tenant>/v2.0 in a thread."""
    import flask
    from oidc_provider_mock import app as provider_app

    cert, key = make_localhost_cert(folder)
    flask_app = provider_app(require_nonce=True, access_token_max_age=token_max_age)
    # the mock's signing key lives in its per-app storage, which it puts on flask.g
    with flask_app.test_request_context("/"):
        flask_app.preprocess_request()
        signing_key = flask.g.oidc_provider_mock_storage.jwk
    ref: list[OidcProvider] = []
    mock = DispatcherMiddleware(NotFound(), {f"/{tenant}/v2.0": flask_app})
    wsgi = _EntraTokenEndpoint(_Tamper(mock, ref), ref, signing_key)
    server = make_server("127.0.0.1", 0, wsgi, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    provider = OidcProvider(
        port=server.server_port, ca_file=cert, tenant=tenant, _signing_key=signing_key
    )
    ref.append(provider)
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(timeout=timeout(5))
        provider._http.close()
