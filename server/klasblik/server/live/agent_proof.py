"""The identity part of an agent's hello (docs/protocol.md, ``challenge`` and ``proof``):
who the student is, and how well that is proven.

1. ``hello.identity``, when present, is validated (``auth/agent_identity.py``); the student
   is the one the token names, and ``hello.account`` must be that student's account
   (``identity_mismatch`` otherwise). Without it, the student is the account's, unproven.
2. ``hello.device.key``, when present, is challenged: the server sends a fresh one-time
   nonce, the device signs it. An answer to any other nonce is ``challenge_replayed``, a
   signature that does not verify ``device_proof_invalid``. A key registered for this
   student proves the device; a key seen first together with a verified identity is
   registered now (the device's first enrolment); any other key proves nothing: a new
   device, never a replacement.
3. The school's policy decides (:func:`~klasblik.server.auth.agent_identity.decide`).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from klasblik import protocol as p
from klasblik.server.auth.agent_identity import (
    IdentityRefused,
    decide,
    public_key_usable,
    verify_proof,
)
from klasblik.server.keys import AGENT_IDENTITY, SETTINGS, STUDENTS
from klasblik.server.storage.models import Student

__all__ = ["HelloEnded", "establish_identity"]


class HelloEnded(Exception):
    """The agent went away during its hello (no one to answer)."""


_REFUSED_BY_POLICY = {
    "verified": "this school requires an identity proof from the device's sign-in; "
    "this agent sent none (see docs/agent.md, Identity)",
    "device": "this school requires an identity proof or an enrolled device; "
    "this agent has neither",
}


async def establish_identity(
    app: web.Application, ws: web.WebSocketResponse, hello: dict[str, Any], ip: str
) -> tuple[Student, str]:
    """The student and the identity level (verified, device, unverified) of this hello,
    or IdentityRefused / AccessDenied (the caller audits and closes)."""
    service = app[AGENT_IDENTITY]
    account = hello["account"].strip().lower()
    verified = False
    if "identity" in hello:
        proven = await service.verify(hello["identity"])
        student = await service.student_of(proven)
        if account not in (student.username.lower(), proven.username):
            raise IdentityRefused(
                p.ErrorCode.IDENTITY_MISMATCH,
                "the identity token is for another account than the one this hello names",
                f"token for {proven.username}, hello for {account}",
            )
        verified = True
    else:
        student = await app[STUDENTS].student(hello["account"])
    device = hello["device"]
    device_proven = False
    key = device.get("key")
    if key is not None:
        if not public_key_usable(key):
            raise IdentityRefused(
                p.ErrorCode.DEVICE_PROOF_INVALID,
                "the device key is not an ECDSA P-256 public key",
                "unusable device key",
            )
        await _challenge(app, ws, key, device["id"])
        if await service.device_registered(student.id, key):
            device_proven = True
        elif verified:  # first enrolment of this device: its key belongs to this student now
            await service.register_device(student.id, device["id"], key)
            device_proven = True
    policy = await service.policy(student.school_id)
    level = decide(policy, verified, device_proven)
    if level is None:
        raise IdentityRefused(
            p.ErrorCode.IDENTITY_REQUIRED,
            _REFUSED_BY_POLICY[policy],
            f"policy {policy}: no identity token"
            + ("" if key is None else ", device key not enrolled"),
        )
    return student, level


async def _challenge(app: web.Application, ws: web.WebSocketResponse, key: str, dev: str) -> None:
    """Send a one-time nonce; the answer must sign exactly it with ``key``."""
    nonce = secrets.token_urlsafe(24)
    await ws.send_str(p.encode_message({"type": "challenge", "nonce": nonce}, "server_agent"))
    try:
        msg = await ws.receive(timeout=app[SETTINGS].auth_timeout_s)
    except TimeoutError:
        raise IdentityRefused(
            p.ErrorCode.AUTH_TIMEOUT, "no answer to the challenge in time", "challenge timeout"
        ) from None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        raise HelloEnded
    try:
        proof = p.decode_message(msg.data, "agent") if msg.type == WSMsgType.TEXT else None
    except p.ProtocolError:
        proof = None
    if proof is None or proof["type"] != "proof":
        raise IdentityRefused(
            p.ErrorCode.NOT_AUTHENTICATED,
            "the answer to a challenge must be proof",
            "no proof after the challenge",
        )
    if not hmac.compare_digest(proof["nonce"].encode(), nonce.encode()):
        raise IdentityRefused(
            p.ErrorCode.CHALLENGE_REPLAYED,
            "this proof answers another challenge than the one just sent",
            "proof for an old or foreign nonce",
        )
    if not verify_proof(key, nonce, dev, proof["signature"]):
        raise IdentityRefused(
            p.ErrorCode.DEVICE_PROOF_INVALID,
            "the challenge answer was not signed by this device's key",
            "signature does not verify",
        )
