"""Sign-ins between the redirect to Microsoft and the callback. msal's flow dict (state,
nonce, PKCE verifier) stays in the database, so any instance can finish the sign-in; the
browser holds only a random key. A flow is taken out once: a replayed callback finds
nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.storage.models import PendingLogin, utcnow

__all__ = ["COOKIE", "LIFETIME", "put_flow", "take_flow"]

COOKIE = "klasblik_login"
LIFETIME = dt.timedelta(minutes=10)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def put_flow(sm: async_sessionmaker[AsyncSession], flow: dict[str, Any]) -> str:
    """Store ``flow``; return the key for the browser's cookie. Stale flows are swept."""
    key = secrets.token_urlsafe(32)
    now = utcnow()
    async with sm() as session, session.begin():
        await session.execute(delete(PendingLogin).where(PendingLogin.expires_at < now))
        session.add(PendingLogin(id=_hash(key), flow=json.dumps(flow), expires_at=now + LIFETIME))
    return key


async def take_flow(sm: async_sessionmaker[AsyncSession], key: str | None) -> dict[str, Any] | None:
    """The flow behind ``key``, deleted in the same transaction; None when unknown,
    already used or expired."""
    if not key or len(key) > 200:
        return None
    async with sm() as session, session.begin():
        result = await session.execute(
            delete(PendingLogin)
            .where(PendingLogin.id == _hash(key))
            .returning(PendingLogin.flow, PendingLogin.expires_at)
        )
        row = result.first()
    if row is None:
        return None
    flow, expires_at = row
    if expires_at < utcnow():
        return None
    data = json.loads(flow)
    return data if isinstance(data, dict) else None
