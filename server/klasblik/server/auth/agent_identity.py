"""Who an agent is, proven rather than said (docs/security.md, Agent identity).

An agent's ``hello`` names an ``account``, but the account proves nothing: the shared
enrollment token is on every student device. What can prove it:

- an **identity token** from the sign-in the device already has, validated by the one
  token-validation module (``auth/m365/idtoken.py``) as strictly as the teacher's ID token:
  a Microsoft 365 access token for Klasblik's API (desktop agents, through the OS broker),
  or a Google ID token (the Chromebook extension). The student comes from the token's
  object id (Microsoft) or its verified address (Google, through IT's mapping), never from
  ``account``; a token naming a staff member is refused.
- a **device key**: the device's own ECDSA P-256 key pair, the public half registered at
  an enrolment with a verified identity; later connections sign the server's one-time
  challenge with it (:func:`verify_proof`).

Each school's policy (``agent_identity``: verified, device, token) decides how much of this
is required; the decision is :func:`decide`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import requests
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.protocol import ErrorCode, proof_payload
from klasblik.protocol.errors import KlasblikError
from klasblik.server.auth.m365.client import IssuerKeys, M365Client
from klasblik.server.auth.m365.idtoken import TokenRefused, validate_token
from klasblik.server.keys import AGENT_IDENTITY, DB, M365, SETTINGS
from klasblik.server.settings import Settings, previous_token_until
from klasblik.server.storage.models import AgentDevice, GoogleAccount, School, Staff, Student

__all__ = [
    "LEVEL_RANK",
    "AgentIdentity",
    "IdentityRefused",
    "OidcKeys",
    "ProvenIdentity",
    "agent_identity_ctx",
    "decide",
    "key_hash",
    "verify_proof",
]

#: verified beats device beats unverified: a connection never replaces a higher one
LEVEL_RANK: Final = {"unverified": 0, "device": 1, "verified": 2}

#: token check that failed -> the error code the agent gets (each its own)
_CODE_FOR_REASON: Final = {
    "missing": ErrorCode.IDENTITY_INVALID,
    "malformed": ErrorCode.IDENTITY_INVALID,
    "invalid_signature": ErrorCode.IDENTITY_INVALID,
    "wrong_issuer": ErrorCode.IDENTITY_INVALID,
    "no_account": ErrorCode.IDENTITY_INVALID,
    "wrong_audience": ErrorCode.IDENTITY_WRONG_AUDIENCE,
    "wrong_tenant": ErrorCode.IDENTITY_WRONG_TENANT,
    "expired": ErrorCode.IDENTITY_EXPIRED,
    "not_yet_valid": ErrorCode.IDENTITY_EXPIRED,
}
_POLICY_TTL_S = 30.0


class IdentityRefused(KlasblikError):
    """The agent's proof is not believed: ``code`` (an :class:`ErrorCode`) goes to the
    agent and into the audit log, with ``detail`` (which check failed)."""

    status = 401

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(message, code)
        self.detail = detail or message


@dataclass(frozen=True, slots=True)
class ProvenIdentity:
    """What a valid identity token says: the issuer kind, the subject, the address."""

    kind: str  #: "m365" or "google"
    subject: str  #: Microsoft 365 object id (oid) or Google address (lower case)
    username: str  #: the token's account name, for logs and the audit log


class OidcKeys(IssuerKeys):
    """Google's (or another) OpenID Connect issuer's discovery document and published
    keys, read as the sign-in authority's are (:class:`IssuerKeys`); the blocking reads run
    in a worker thread."""

    def __init__(self, issuer: str, ca_file: str = "") -> None:
        http = requests.Session()
        if ca_file:
            http.verify = ca_file
        super().__init__(issuer, http)

    async def key_for(self, kid: str | None) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.signing_key, kid)

    async def issuer(self) -> str:
        return str((await asyncio.to_thread(self.discovery))["issuer"])

    def close(self) -> None:
        self.http.close()


class _RecentKeys:
    """An issuer's keys and issuer name kept in memory for a few minutes in front of a
    :class:`KeySource`, so that a storm of hellos costs no thread hop each; a key id not
    seen yet goes to the source (which refetches the JWKS once)."""

    def __init__(self, source: Any, max_age_s: float = 300.0) -> None:
        self.source = source
        self.max_age_s = max_age_s
        self._keys: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._issuer: tuple[float, str] | None = None

    async def key_for(self, kid: str | None) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = self._keys.get(kid)
        if hit is not None and now - hit[0] < self.max_age_s:
            return hit[1]
        found: dict[str, Any] | None = await self.source.key_for(kid)
        if found is not None:
            self._keys[kid] = (now, found)
        return found

    async def issuer(self) -> str:
        now = time.monotonic()
        if self._issuer is None or now - self._issuer[0] >= self.max_age_s:
            self._issuer = (now, str(await self.source.issuer()))
        return self._issuer[1]


class _ByObjectId:
    """Students and staff by Microsoft 365 object id, looked up in batches: the object ids
    waiting at the same moment cost one query each for students and staff (as
    ``roster/lookup.py`` does for accounts), so a school's devices starting together do
    not each open a database session."""

    _MAX_BATCH = 500

    def __init__(self, sm: async_sessionmaker[AsyncSession]) -> None:
        self.sm = sm
        self._waiting: dict[str, list[asyncio.Future[tuple[Student | None, bool]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.queries = 0

    async def get(self, oid: str) -> tuple[Student | None, bool]:
        """(the student with this object id or None, whether a staff member has it)."""
        fut: asyncio.Future[tuple[Student | None, bool]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.setdefault(oid, []).append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="object id lookup")
        return await fut

    async def _run(self) -> None:
        while self._waiting:
            oids = list(self._waiting)[: self._MAX_BATCH]
            batch = {oid: self._waiting.pop(oid) for oid in oids}
            try:
                async with self.sm() as session:
                    found = {
                        str(st.m365_id): st
                        for st in (
                            await session.scalars(select(Student).where(Student.m365_id.in_(oids)))
                        ).all()
                    }
                    staff = set(
                        (
                            await session.scalars(
                                select(Staff.m365_id).where(Staff.m365_id.in_(oids))
                            )
                        ).all()
                    )
                self.queries += 1
            except Exception as exc:
                for futs in batch.values():
                    for fut in futs:
                        if not fut.done():
                            fut.set_exception(exc)
                continue
            for oid, futs in batch.items():
                for fut in futs:
                    if not fut.done():
                        fut.set_result((found.get(oid), oid in staff))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for futs in self._waiting.values():
            for fut in futs:
                fut.cancel()
        self._waiting.clear()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_hash(public_key: str) -> str:
    """The look-up key of a device's public key (SHA-256 of its text)."""
    return hashlib.sha256(public_key.encode()).hexdigest()


def verify_proof(public_key: str, nonce: str, device_id: str, signature: str) -> bool:
    """Whether ``signature`` (base64url of the raw r||s, as WebCrypto gives it, 64 bytes)
    is the device key's ECDSA P-256/SHA-256 signature of the challenge's payload."""
    try:
        key = serialization.load_der_public_key(_b64decode(public_key))
        raw = _b64decode(signature)
    except (ValueError, binascii.Error, TypeError):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return False
    if len(raw) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, proof_payload(nonce, device_id), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def public_key_usable(public_key: str) -> bool:
    try:
        key = serialization.load_der_public_key(_b64decode(public_key))
    except (ValueError, binascii.Error, TypeError):
        return False
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def decide(policy: str, verified: bool, device_proven: bool) -> str | None:
    """The identity level of a connection under ``policy``, or None when the policy
    refuses it (``verified``: only a valid identity token; ``device``: or a registered
    device key; ``token``: anything, flagged unverified)."""
    if verified:
        return "verified"
    if device_proven and policy in ("device", "token"):
        return "device"
    if policy == "token":
        return "unverified"
    return None


class AgentIdentity:
    """The server's side of agent identity: token validation for both issuers, the
    enrollment token (current and previous), each school's policy, device keys."""

    def __init__(
        self,
        settings: Settings,
        sm: async_sessionmaker[AsyncSession],
        m365: M365Client | None,
    ) -> None:
        self.settings = settings
        self.sm = sm
        self.m365 = m365
        self.google = (
            OidcKeys(settings.google_issuer, settings.google_ca_file)
            if settings.google_client_id
            else None
        )
        self._m365_keys = _RecentKeys(m365) if m365 is not None else None
        self._google_keys = _RecentKeys(self.google) if self.google is not None else None
        self._by_oid = _ByObjectId(sm)
        self._previous_until = previous_token_until(settings.enrollment_token_previous_until)
        self._policies: dict[int, str | None] = {}
        self._policies_at = float("-inf")
        #: counters for the benchmark and /metrics-style curiosity
        self.tokens_checked = 0

    # ---- the shared enrollment token ---------------------------------------------------

    def enrollment_token_ok(self, token: str, now: dt.datetime | None = None) -> bool:
        """The current token, or the previous one until its date (rotation)."""
        if hmac.compare_digest(token.encode(), self.settings.enrollment_token.encode()):
            return True
        previous = self.settings.enrollment_token_previous
        if not previous or self._previous_until is None:
            return False
        if (now or dt.datetime.now(dt.UTC)) > self._previous_until:
            return False
        return hmac.compare_digest(token.encode(), previous.encode())

    # ---- identity tokens ---------------------------------------------------------------

    async def verify(self, identity: dict[str, Any]) -> ProvenIdentity:
        """Validate ``hello.identity``; :class:`IdentityRefused` with its own code per
        failed check. Raises M365Error when the issuer's keys cannot be read."""
        kind, token = identity["kind"], identity["token"]
        self.tokens_checked += 1
        try:
            if kind == "m365":
                return await self._m365(token)
            return await self._google(token)
        except TokenRefused as exc:
            code = _CODE_FOR_REASON.get(exc.reason, ErrorCode.IDENTITY_INVALID)
            raise IdentityRefused(code, exc.message, f"{kind} token: {exc.reason}") from None

    async def _m365(self, token: str) -> ProvenIdentity:
        client, keys = self.m365, self._m365_keys
        if client is None or keys is None:
            raise IdentityRefused(
                ErrorCode.IDENTITY_INVALID,
                "this server does not accept Microsoft 365 identity tokens (not configured)",
                "m365 token: not configured",
            )
        audience = self.settings.m365_agent_audience or client.client_id
        claims = await validate_token(
            keys,
            token,
            audience=audience,
            tenant=client.tenant_id,
            what="the identity token",
            require=("exp", "iat", "nbf", "iss", "aud", "sub", "oid", "tid"),
        )
        if claims.get("idtyp") == "app" or not claims.get("oid"):
            # an app-only token names an application, not the student on the device
            raise TokenRefused("no_account", "the identity token names no user", "no_account")
        username = str(claims.get("preferred_username") or claims.get("upn") or "")
        return ProvenIdentity("m365", str(claims["oid"]), username.lower())

    async def _google(self, token: str) -> ProvenIdentity:
        keys = self._google_keys
        if keys is None:
            raise IdentityRefused(
                ErrorCode.IDENTITY_INVALID,
                "this server does not accept Google identity tokens (not configured)",
                "google token: not configured",
            )
        claims = await validate_token(
            keys,
            token,
            audience=self.settings.google_client_id,
            what="the Google identity token",
            require=("exp", "iat", "iss", "aud", "sub", "email"),
        )
        email = str(claims.get("email", "")).strip().lower()
        if claims.get("email_verified") is not True or not email:
            raise TokenRefused("no_account", "the Google token has no verified address")
        domain = str(claims.get("hd", "")).lower()
        if domain not in self.settings.google_domains:
            # Google's hd names the Workspace; a consumer account has none
            raise TokenRefused(
                "wrong_tenant",
                "the Google token is not of the school's Google Workspace",
                "wrong_tenant",
            )
        return ProvenIdentity("google", email, email)

    async def student_of(self, proven: ProvenIdentity) -> Student:
        """The active student the proof names; AccessDenied-like refusal otherwise.
        Microsoft: by object id only. Google: IT's mapping, else the same address as
        the Microsoft 365 username."""
        staff: object = None
        if proven.kind == "m365":
            student, is_staff = await self._by_oid.get(proven.subject)  # batched
            staff = True if is_staff else None
        else:
            async with self.sm() as session:
                mapped = await session.get(GoogleAccount, proven.subject)
                if mapped is not None:
                    student = await session.get(Student, mapped.student_id)
                else:
                    student = await session.scalar(
                        select(Student).where(func.lower(Student.username) == proven.subject)
                    )
                staff = await session.scalar(
                    select(Staff).where(func.lower(Staff.username) == proven.subject)
                )
        if staff is not None and (student is None or not student.active):
            raise IdentityRefused(
                ErrorCode.NOT_A_STUDENT,
                "this is a staff account: staff screens are never viewed",
                f"{proven.kind} token names staff {proven.username}",
            )
        if student is None or not student.active:
            raise IdentityRefused(
                ErrorCode.UNKNOWN_ACCOUNT,
                "the account in the identity token is not an active student of the roster",
                f"{proven.kind} token for {proven.username}: not an active student",
            )
        return student

    # ---- each school's policy ----------------------------------------------------------

    async def policy(self, school_id: int) -> str:
        """The school's ``agent_identity`` (its own, else the setting); cached 30 s."""
        now = time.monotonic()
        if now - self._policies_at > _POLICY_TTL_S or school_id not in self._policies:
            async with self.sm() as session:
                rows = await session.execute(select(School.id, School.agent_identity))
                self._policies = {sid: mode for sid, mode in rows.all()}
            self._policies_at = now
        return self._policies.get(school_id) or self.settings.agent_identity

    def forget_policies(self) -> None:
        self._policies_at = float("-inf")

    # ---- device keys -------------------------------------------------------------------

    async def device_registered(self, student_id: int, public_key: str) -> bool:
        """Whether this key is registered for this student (and note that it was proven)."""
        digest = key_hash(public_key)
        async with self.sm() as session, session.begin():
            row = await session.scalar(
                select(AgentDevice).where(
                    AgentDevice.student_id == student_id, AgentDevice.key_hash == digest
                )
            )
            if row is None or row.public_key != public_key:
                return False
            row.last_proven_at = dt.datetime.now(dt.UTC)
        return True

    async def register_device(self, student_id: int, device_id: str, public_key: str) -> None:
        """Register a device key for a student (first enrolment, identity verified)."""
        digest = key_hash(public_key)
        async with self.sm() as session, session.begin():
            row = await session.scalar(
                select(AgentDevice).where(
                    AgentDevice.student_id == student_id, AgentDevice.key_hash == digest
                )
            )
            if row is None:
                session.add(
                    AgentDevice(
                        student_id=student_id,
                        device_id=device_id,
                        key_hash=digest,
                        public_key=public_key,
                    )
                )

    async def close(self) -> None:
        await self._by_oid.close()
        if self.google is not None:
            self.google.close()


async def agent_identity_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the agent identity service (after the database and the Microsoft 365 client)."""
    service = AgentIdentity(app[SETTINGS], app[DB], app.get(M365))
    app[AGENT_IDENTITY] = service
    try:
        yield
    finally:
        await service.close()
