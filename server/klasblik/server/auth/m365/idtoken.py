"""Validation of the ID token that msal received: msal (>= 1.38) only decodes it, so
Klasblik checks the signature against the authority's keys, the issuer, the audience (our
client id), the tenant and the expiry itself."""

from __future__ import annotations

from typing import Any

import jwt

from klasblik.protocol.errors import KlasblikError
from klasblik.server.auth.m365.client import M365Client

__all__ = ["TokenRefused", "is_guest", "validate_id_token"]

_ALGORITHMS = ["RS256"]
_LEEWAY_S = 60


class TokenRefused(KlasblikError):
    """The ID token must not be believed. ``code`` is stable, the message is for people."""

    code = "id_token_refused"
    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def validate_id_token(client: M365Client, id_token: str | None) -> dict[str, Any]:
    """The verified claims of ``id_token``, or :class:`TokenRefused`."""
    if not id_token:
        raise TokenRefused("invalid_token", "the sign-in answer carried no ID token")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise TokenRefused("invalid_token", "the ID token is not a valid JWT") from None
    if header.get("alg") not in _ALGORITHMS:
        raise TokenRefused(
            "invalid_token", f"ID token algorithm {header.get('alg')!r} not accepted"
        )
    jwk = await client.key_for(header.get("kid"))
    if jwk is None:
        raise TokenRefused("invalid_token", "the ID token is signed with an unknown key")
    issuer = await client.issuer()
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key=jwt.PyJWK(jwk).key,
            algorithms=_ALGORITHMS,
            audience=client.client_id,
            issuer=issuer,
            leeway=_LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("expired_token", "the ID token has expired: sign in again") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("invalid_token", "the ID token's signature is not valid") from None
    except jwt.InvalidAudienceError:
        raise TokenRefused("invalid_token", "the ID token was issued for another app") from None
    except jwt.InvalidIssuerError:
        raise TokenRefused("invalid_token", "the ID token comes from another issuer") from None
    except jwt.PyJWTError as exc:
        raise TokenRefused("invalid_token", f"the ID token is not valid: {exc}") from None
    if claims.get("tid") != client.tenant_id:
        raise TokenRefused(
            "wrong_tenant", "this account belongs to another organisation than the school's"
        )
    if not claims.get("oid"):
        # the object id is the only key Klasblik matches accounts on; preferred_username
        # is mutable and Microsoft says it must not be used for authorization
        raise TokenRefused("invalid_token", "the ID token names no account (no oid)")
    if is_guest(claims, client.tenant_id):
        raise TokenRefused(
            "guest_account",
            "this is a guest account from another organisation: only the school's own staff "
            "can sign in",
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
