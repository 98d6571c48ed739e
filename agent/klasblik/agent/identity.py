"""What the desktop agent proves about itself (docs/agent.md, Identity).

- :class:`DeviceKey`: the device's own ECDSA P-256 key pair, made at first start and kept
  in the per-user state folder in a file only this user can read (created with mode 0600
  on Linux and macOS; on Windows the per-user ``%LOCALAPPDATA%`` folder's access list
  keeps other users out). Only the public half ever leaves the device; the server
  registers it at the first enrolment with a verified identity and later challenges it.
- :class:`TokenSource`: a Microsoft 365 access token for Klasblik's API, for the account
  already signed in on the device, got silently through msal as a public client. The
  broker switch is this thin layer: ``enable_broker_on_windows`` (WAM),
  ``enable_broker_on_mac`` (the Enterprise SSO plug-in) and ``enable_broker_on_linux``
  (Microsoft's identity broker, installed by Intune enrolment), as msal's broker
  documentation describes; msal needs ``msal[broker]`` (pymsalruntime) for them. Without a
  broker the agent uses only msal's token cache (``acquire_token_silent``) and never opens
  a browser or a prompt: no token means the hello carries no identity, the agent logs why,
  and the school's policy decides whether the server accepts it.
"""

from __future__ import annotations

import base64
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from klasblik.protocol import Identity, proof_payload

__all__ = ["DeviceKey", "TokenSource", "broker_available"]

log = logging.getLogger(__name__)

_KEY_FILE = "device-key.pem"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class DeviceKey:
    """The device's private key and the base64url SubjectPublicKeyInfo of its public half."""

    private: ec.EllipticCurvePrivateKey
    public_key: str
    path: Path

    @classmethod
    def load_or_create(cls, state_dir: Path) -> DeviceKey:
        """The key in ``state_dir``; made on first use, readable by this user only."""
        path = state_dir / _KEY_FILE
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            loaded = None
        except ValueError:  # damaged: a new key makes this a new device (re-enrolment)
            log.warning("device key %s is unreadable; making a new one", path)
            path.unlink(missing_ok=True)
            loaded = None
        if loaded is not None and not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC key")
        key = loaded if loaded is not None else cls._create(path)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, _b64(spki), path)

    @staticmethod
    def _create(path: Path) -> ec.EllipticCurvePrivateKey:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags, 0o600)  # only this user; never widened afterwards
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return key

    def sign(self, nonce: str, device_id: str) -> str:
        """The answer to a challenge: base64url of the raw r||s signature (as WebCrypto
        gives it) over :func:`klasblik.protocol.proof_payload`."""
        der = self.private.sign(proof_payload(nonce, device_id), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def broker_available() -> bool:
    """Whether msal can reach an OS broker here: Windows 10+, macOS, or Linux, with
    ``msal[broker]`` installed (pymsalruntime)."""
    if sys.platform not in ("win32", "darwin", "linux"):
        return False
    try:
        import pymsalruntime  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


class TokenSource:
    """Silent Microsoft 365 access tokens for Klasblik's API (blocking: run in a thread).

    ``authority`` is ``https://login.microsoftonline.com/<tenant>`` (or a test provider);
    ``scopes`` the API's scope, e.g. ``api://<client id>/Agent.Connect``."""

    def __init__(
        self,
        client_id: str,
        authority: str,
        scopes: list[str],
        *,
        broker: bool | None = None,
        http_client: Any = None,
        instance_discovery: bool | None = None,
    ) -> None:
        self.client_id = client_id
        self.authority = authority
        self.scopes = scopes
        self.broker = broker_available() if broker is None else broker
        self._http_client = http_client
        self._instance_discovery = instance_discovery
        self._app: Any = None
        #: why the last attempt gave no token (for the log and the tray)
        self.last_problem = ""

    @property
    def app(self) -> Any:
        """msal's PublicClientApplication, made at first use (it reads the authority's
        discovery document: an agent starting offline must not fail for it)."""
        if self._app is None:
            import msal

            self._app = msal.PublicClientApplication(
                self.client_id,
                authority=self.authority,
                instance_discovery=self._instance_discovery,
                http_client=self._http_client,
                enable_broker_on_windows=self.broker,
                enable_broker_on_mac=self.broker,
                enable_broker_on_linux=self.broker,
                exclude_scopes=["offline_access"],  # no refresh token kept on the device
            )
        return self._app

    def acquire(self, account: str) -> Identity | None:
        """A token for ``account`` (the signed-in user), or None with ``last_problem``."""
        try:
            return self._acquire(account)
        except Exception as exc:  # the authority unreachable, a broker fault
            self.last_problem = f"sign-in authority {self.authority} not usable: {exc}"
            return None

    def _acquire(self, account: str) -> Identity | None:
        result: dict[str, Any] | None = None
        for known in self.app.get_accounts(username=account) or self.app.get_accounts():
            result = self.app.acquire_token_silent(self.scopes, account=known)
            if result and "access_token" in result:
                break
        if (not result or "access_token" not in result) and self.broker:
            # The broker knows the account signed in to the OS: it answers without UI
            # when it can (prompt none); it never shows a dialog to the student.
            result = self.app.acquire_token_interactive(
                self.scopes,
                prompt="none",
                login_hint=account,
                parent_window_handle=self.app.CONSOLE_WINDOW_HANDLE,
            )
        if result and "access_token" in result:
            self.last_problem = ""
            return Identity("m365", str(result["access_token"]))
        if result and "error" in result:
            self.last_problem = f"{result.get('error')}: {result.get('error_description', '')}"
        elif not self.broker:
            self.last_problem = (
                "no OS broker here (msal[broker] not installed or platform unsupported) "
                "and no cached token: connecting without an identity proof"
            )
        else:
            self.last_problem = "the broker gave no token for this account"
        return None
