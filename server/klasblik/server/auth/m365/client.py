"""The school's Microsoft 365 app registration as seen from Klasblik: one msal
confidential client (sign-in and Graph tokens) and the provider's signing keys.

msal and requests are blocking: every call here runs in a worker thread
(``asyncio.to_thread``), never on the event loop.

msal keeps no teacher's tokens: sign-in excludes ``offline_access`` (no refresh token is
asked for) and the account msal cached from a redeemed code is removed at once
(``tests/m365/test_roster_health.py::test_msal_keeps_no_teacher_tokens``). Only the
app-only Graph token stays in msal's cache, until near its expiry.

The roles (application permissions) of each app-only token are read and kept
(``app_roles``): the permission check compares them with what Klasblik needs."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

import jwt
import msal
import requests
from msal.exceptions import MsalServiceError

from klasblik.protocol.errors import KlasblikError
from klasblik.server.settings import Settings

__all__ = [
    "EXCLUDED_SCOPES",
    "GRAPH_SCOPE",
    "SIGNIN_SCOPES",
    "IssuerKeys",
    "M365Client",
    "M365Error",
    "authority_of",
]

#: Client credentials for Microsoft Graph (global cloud): the application permissions
#: granted to the app. Other clouds: ``Settings.graph_scope``.
GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
#: Sign-in asks only for the ID token (msal adds openid and profile itself).
SIGNIN_SCOPES: list[str] = []
#: msal adds offline_access (a refresh token) by default; Klasblik never wants one.
EXCLUDED_SCOPES = ["offline_access"]
_KEYS_MAX_AGE_S = 3600.0


class _Session(requests.Session):
    """A requests session whose own ``verify`` wins over REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
    (requests otherwise lets those variables replace a session's CA file)."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        return super().request(*args, **kwargs)


class M365Error(KlasblikError):
    """The sign-in authority or Graph could not be used; the message says why."""

    code = "m365_unavailable"
    status = 502


def authority_of(settings: Settings) -> str:
    """The v2.0 authority (``https://host/TENANT/v2.0``) from the settings."""
    if settings.m365_authority:
        url = str(settings.m365_authority).rstrip("/")
        return url if url.endswith("/v2.0") else url + "/v2.0"
    from klasblik.server.settings import M365_CLOUDS

    return f"https://{M365_CLOUDS[settings.m365_cloud][0]}/{settings.m365_tenant_id}/v2.0"


def _refusal(result: Any) -> str:
    """One line from a token endpoint's refusal: the error code and the first line of its
    description (Entra's ``AADSTSnnn: ...``; the trace lines after it dropped), plus the
    correlation id Microsoft support asks for."""
    if not isinstance(result, dict) or not result:
        return "the sign-in authority gave no answer"
    error = str(result.get("error") or "error")
    lines = str(result.get("error_description") or "").strip().splitlines()
    text = f"{error}: {lines[0].strip()}" if lines else error
    if result.get("correlation_id"):
        text += f" (correlation id {result['correlation_id']})"
    return text


class IssuerKeys:
    """An OpenID Connect issuer's discovery document and JSON Web Key Set, cached for an
    hour and refetched once when a token names a key not seen yet (blocking reads). The
    teacher's sign-in authority and, for agents, Google's issuer use one each."""

    def __init__(self, base_url: str, http: requests.Session) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self._lock = threading.Lock()
        self._discovery: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}
        self._keys_at = 0.0

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            resp = self.http.get(url, timeout=10)
            resp.raise_for_status()
            data = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise M365Error(f"could not read {url}: {exc}") from exc
        if not isinstance(data, dict):
            raise M365Error(f"{url} did not answer a JSON object")
        return data

    def discovery(self) -> dict[str, Any]:
        with self._lock:
            if self._discovery is None:
                self._discovery = self._get_json(
                    self.base_url + "/.well-known/openid-configuration"
                )
            return self._discovery

    def signing_key(self, kid: str | None) -> dict[str, Any] | None:
        """The JWK with this key id (or the only key when the token names none)."""
        for attempt in range(2):
            stale = time.monotonic() - self._keys_at > _KEYS_MAX_AGE_S
            if attempt or stale or not self._keys:
                jwks = self._get_json(str(self.discovery()["jwks_uri"]))
                self._keys = {str(k.get("kid")): k for k in jwks.get("keys", [])}
                self._keys_at = time.monotonic()
            if kid is None and len(self._keys) == 1:
                only: dict[str, Any] = next(iter(self._keys.values()))
                return only
            if kid is not None and kid in self._keys:
                found: dict[str, Any] = self._keys[kid]
                return found
        return None


class M365Client:
    """msal's ConfidentialClientApplication plus the authority's discovery document and
    JSON Web Key Set (cached, refetched once when a token names an unknown key)."""

    def __init__(self, settings: Settings, http: requests.Session | None = None) -> None:
        self.settings = settings
        self.tenant_id = str(settings.m365_tenant_id)
        self.client_id = str(settings.m365_client_id)
        self.authority = authority_of(settings)
        if http is None:
            http = _Session()
            if settings.m365_ca_file:
                http.verify = str(settings.m365_ca_file)
        self.http = http
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._issuer = IssuerKeys(self.authority, http)
        #: the ``roles`` claim of the last app-only Graph token, and when it was read
        self.app_roles: frozenset[str] | None = None
        self.app_roles_at: dt.datetime | None = None

    # ---- blocking helpers (run in a thread) ---------------------------------------

    def _msal(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self.client_id,
                        client_credential=str(self.settings.m365_client_secret),
                        # msal wants the authority without "/v2.0" and adds it itself
                        authority=self.authority.removesuffix("/v2.0"),
                        instance_discovery=False,
                        http_client=self.http,
                        exclude_scopes=EXCLUDED_SCOPES,
                    )
                except (ValueError, requests.RequestException) as exc:
                    raise M365Error(f"sign-in authority {self.authority} unusable: {exc}") from exc
            return self._app

    def discovery(self) -> dict[str, Any]:
        return self._issuer.discovery()

    def signing_key(self, kid: str | None) -> dict[str, Any] | None:
        """The JWK with this key id (or the only key when the token names none)."""
        return self._issuer.signing_key(kid)

    def _start(self, redirect_uri: str) -> dict[str, Any]:
        try:
            flow: dict[str, Any] = self._msal().initiate_auth_code_flow(
                SIGNIN_SCOPES, redirect_uri=redirect_uri
            )
            return flow
        except (requests.RequestException, MsalServiceError) as exc:
            raise M365Error(f"sign-in authority unreachable: {exc}") from exc

    def _finish(self, flow: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        app = self._msal()
        try:
            result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, params)
            return result
        except (requests.RequestException, MsalServiceError) as exc:
            raise M365Error(f"sign-in authority unreachable: {exc}") from exc
        finally:
            self._forget_users(app)

    def _forget_users(self, app: msal.ConfidentialClientApplication) -> None:
        """Drop every user account (and its ID, access and any refresh token) msal cached
        from a redeemed code: Klasblik's session is its own, nothing of the teacher's stays."""
        with self._lock:
            for account in app.get_accounts():
                app.remove_account(account)

    def _graph_token(self) -> str:
        try:
            result = self._msal().acquire_token_for_client(self.settings.graph_scope)
        except (requests.RequestException, MsalServiceError) as exc:
            raise M365Error(f"sign-in authority unreachable: {exc}") from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            raise M365Error(f"no Graph token for the app registration: {_refusal(result)}")
        self._note_roles(str(token))
        return str(token)

    def _note_roles(self, token: str) -> None:
        """Keep the token's ``roles``. Read without checking the signature: the token came
        straight from the authority over TLS, and only its own permissions are read from it
        (Graph checks it; Klasblik reports on it)."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return
        roles = claims.get("roles")
        self.app_roles = frozenset(str(r) for r in roles) if isinstance(roles, list) else None
        self.app_roles_at = dt.datetime.now(dt.UTC)

    # ---- async faces --------------------------------------------------------------

    async def start_flow(self, redirect_uri: str) -> dict[str, Any]:
        """msal's auth-code flow (auth_uri, state, nonce, PKCE verifier): keep it server-side."""
        return await asyncio.to_thread(self._start, redirect_uri)

    async def finish_flow(self, flow: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        """Redeem the code; raises ValueError (state) or RuntimeError (nonce) like msal."""
        return await asyncio.to_thread(self._finish, flow, params)

    async def key_for(self, kid: str | None) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.signing_key, kid)

    async def issuer(self) -> str:
        return str((await asyncio.to_thread(self.discovery))["issuer"])

    async def graph_token(self) -> str:
        """An app-only Graph token (client credentials), cached by msal until near expiry."""
        return await asyncio.to_thread(self._graph_token)

    def close(self) -> None:
        self.http.close()
