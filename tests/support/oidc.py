"""A real OpenID Connect provider process part for tests: PyPI ``oidc-provider-mock``
(Flask + authlib) served over TLS with a self-signed localhost certificate made here, and
mounted under ``/<tenant>/v2.0`` so that it has the shape of a Microsoft Entra authority and
msal can use it with ``instance_discovery=False``.

``PUT /users/{sub}`` sets a user's claims (oid, tid, preferred_username, name, roles);
POSTing ``sub=...`` to the authorize URL answers 302 with the code, as its login form does.
``forge_next_token`` re-signs the next ID token with a key the provider never published.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    "CLIENT_ID",
    "CLIENT_SECRET",
    "TENANT",
    "OidcProvider",
    "make_localhost_cert",
    "run_provider",
]

TENANT = "5f0c2a1e-7b4d-4c3e-9a11-2b8c6d0e4f70"
CLIENT_ID = "9d2f6a3b-1c4e-4f5a-8b7c-0e1d2c3b4a59"
CLIENT_SECRET = "test-client-secret"


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
class OidcProvider:
    port: int
    ca_file: Path
    tenant: str = TENANT
    forge_next_token: bool = False
    token_requests: int = 0
    _http: requests.Session = field(default_factory=requests.Session)

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant}/v2.0"

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

    def put_user(self, sub: str, **claims: Any) -> None:
        resp = self._http.put(
            f"{self.authority}/users/{sub}",
            json=claims,
            timeout=timeout(10),
            verify=str(self.ca_file),
        )
        assert resp.status_code == 204, resp.text

    def add_user(
        self, username: str, name: str = "", tenant: str | None = None, roles: Iterable[str] = ()
    ) -> str:
        """A user with Entra-shaped claims; returns its sub (also its oid)."""
        sub = str(uuid.uuid4())
        self.put_user(
            sub,
            oid=sub,
            tid=tenant or self.tenant,
            preferred_username=username,
            name=name or username,
            roles=list(roles),
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
        provider.token_requests += 1
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
    from oidc_provider_mock import app as provider_app

    cert, key = make_localhost_cert(folder)
    flask_app = provider_app(require_nonce=True, access_token_max_age=token_max_age)
    ref: list[OidcProvider] = []
    wsgi = _Tamper(DispatcherMiddleware(NotFound(), {f"/{tenant}/v2.0": flask_app}), ref)
    server = make_server("127.0.0.1", 0, wsgi, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    provider = OidcProvider(port=server.server_port, ca_file=cert, tenant=tenant)
    ref.append(provider)
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(timeout=timeout(5))
        provider._http.close()
