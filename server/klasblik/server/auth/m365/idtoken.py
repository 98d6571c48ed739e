"""Validation of signed identity tokens (JWTs), the one place Klasblik decides whether a
token is believed: the teacher's ID token after sign-in (msal >= 1.38 only decodes it),
and the identity proofs agents send in ``hello`` (a Microsoft 365 access token for
Klasblik's API, a Google ID token). Every token is checked the same way: the signature
against the issuer's published keys (JWKS), the algorithm, the issuer, the audience, the
tenant where there is one, the expiry and the not-before time.

:func:`validate_token` raises :class:`TokenRefused` whose ``reason`` says which check
failed (one of :data:`REASONS`); each caller maps the reason to its own stable codes."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Iterable
from typing import Any, Final, Protocol

import jwt

from klasblik.protocol.errors import KlasblikError
from klasblik.server.auth.m365.client import M365Client

__all__ = [
    "REASONS",
    "KeySource",
    "TokenRefused",
    "is_guest",
    "validate_id_token",
    "validate_token",
]

_ALGORITHMS = ["RS256"]
_LEEWAY_S = 60

#: why a token was refused
REASONS: Final = (
    "missing",  #: no token at all
    "malformed",  #: not a JWT, another algorithm, required claims missing
    "invalid_signature",  #: signed with a key the issuer never published, or altered
    "wrong_issuer",
    "wrong_audience",
    "wrong_tenant",
    "expired",
    "not_yet_valid",
    "no_account",  #: valid, but names no user
    "guest",  #: valid, but a guest or personal account, not one of the tenant's own
)

#: the codes the teacher's sign-in has always answered with, by reason
_SIGNIN_CODES: Final = {"wrong_tenant": "wrong_tenant", "expired": "expired_token"}


class KeySource(Protocol):
    """An issuer's discovery document and keys: :class:`M365Client` is one."""

    async def key_for(self, kid: str | None) -> dict[str, Any] | None: ...

    async def issuer(self) -> str: ...


class TokenRefused(KlasblikError):
    """The token must not be believed. ``code`` is stable, the message is for people,
    ``reason`` (one of :data:`REASONS`) says which check failed."""

    code = "id_token_refused"
    status = 401

    def __init__(self, code: str, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason


@functools.lru_cache(maxsize=64)
def _public_key(jwk_json: str) -> Any:
    """The key object of a published JWK (parsed once per key, not once per token)."""
    return jwt.PyJWK(json.loads(jwk_json)).key


def _header(token: str) -> dict[str, Any] | None:
    """The JOSE header, only to choose the key: ``jwt.decode`` checks the whole token
    after. (PyJWT's get_unverified_header parses and checks every segment, which doubled
    the cost of each agent's hello.)"""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return header if isinstance(header, dict) else None


def _refuse(reason: str, message: str) -> TokenRefused:
    return TokenRefused(reason, message, reason)


async def validate_token(
    keys: KeySource,
    token: str | None,
    *,
    audience: str | Iterable[str],
    tenant: str | None = None,
    what: str = "token",
    require: Iterable[str] = ("exp", "iat", "iss", "aud", "sub"),
) -> dict[str, Any]:
    """The verified claims of ``token``, or :class:`TokenRefused` (code = reason).

    ``tenant``, when given, must equal the ``tid`` claim (Microsoft 365). ``what`` names the
    token in messages ("the ID token", "the identity token")."""
    if not token:
        raise _refuse("missing", f"{what} is missing")
    header = _header(token)
    if header is None:
        raise _refuse("malformed", f"{what} is not a valid JWT")
    if header.get("alg") not in _ALGORITHMS:
        raise _refuse("malformed", f"{what}: algorithm {header.get('alg')!r} not accepted")
    jwk = await keys.key_for(header.get("kid"))
    if jwk is None:
        raise _refuse("invalid_signature", f"{what} is signed with an unknown key")
    issuer = await keys.issuer()
    aud = [audience] if isinstance(audience, str) else list(audience)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=_public_key(json.dumps(jwk, sort_keys=True)),
            algorithms=_ALGORITHMS,
            audience=aud,
            issuer=issuer,
            leeway=_LEEWAY_S,
            options={"require": list(require), "verify_nbf": True},
        )
    except jwt.ExpiredSignatureError:
        raise _refuse("expired", f"{what} has expired") from None
    except jwt.ImmatureSignatureError:
        raise _refuse("not_yet_valid", f"{what} is not valid yet (nbf/iat)") from None
    except jwt.InvalidSignatureError:
        raise _refuse("invalid_signature", f"{what}'s signature is not valid") from None
    except jwt.InvalidAudienceError:
        raise _refuse("wrong_audience", f"{what} was issued for another app") from None
    except jwt.InvalidIssuerError:
        raise _refuse("wrong_issuer", f"{what} comes from another issuer") from None
    except jwt.PyJWTError as exc:
        raise _refuse("malformed", f"{what} is not valid: {exc}") from None
    if tenant is not None and claims.get("tid") != tenant:
        raise _refuse("wrong_tenant", f"{what} belongs to another organisation than the school's")
    return claims


async def validate_id_token(client: M365Client, id_token: str | None) -> dict[str, Any]:
    """The verified claims of the teacher's ``id_token``, or :class:`TokenRefused` with the
    sign-in codes (``invalid_token``, ``expired_token``, ``wrong_tenant``)."""
    try:
        claims = await validate_token(
            client,
            id_token,
            audience=client.client_id,
            tenant=client.tenant_id,
            what="the ID token",
        )
    except TokenRefused as exc:
        message = exc.message
        if exc.reason == "missing":
            message = "the sign-in answer carried no ID token"
        elif exc.reason == "expired":
            message = "the ID token has expired: sign in again"
        elif exc.reason == "wrong_tenant":
            message = "this account belongs to another organisation than the school's"
        code = _SIGNIN_CODES.get(exc.reason, "invalid_token")
        raise TokenRefused(code, message, exc.reason) from None
    if not claims.get("oid"):
        # the object id is the only key Klasblik matches accounts on; preferred_username
        # is mutable and Microsoft says it must not be used for authorization
        raise TokenRefused("invalid_token", "the ID token names no account (no oid)", "no_account")
    if is_guest(claims, client.tenant_id):
        raise TokenRefused(
            "guest_account",
            "this is a guest account from another organisation: only the school's own staff "
            "can sign in",
            "guest",
        )
    return claims


def is_guest(claims: dict[str, Any], tenant_id: str) -> bool:
    """A guest (B2B) or personal account signed in to the school's tenant: Entra puts the
    home identity provider in ``idp`` when it is not the tenant itself, and the optional
    ``acct`` claim is 1 for guests (https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference,
    https://learn.microsoft.com/entra/identity-platform/optional-claims-reference)."""
    if claims.get("acct") in (1, "1"):
        return True
    idp = claims.get("idp")
    return bool(idp) and tenant_id.lower() not in str(idp).lower()
