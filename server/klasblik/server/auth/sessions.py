"""Server-side dashboard sessions. The browser holds only a random token in an HttpOnly
cookie; the database holds its SHA-256, the staff member, a CSRF token and the times that
bound its life (``session_lifetime_s``, ``session_idle_s``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Collection

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from klasblik.server.settings import Settings
from klasblik.server.storage.models import Staff, WebSession, utcnow

__all__ = [
    "COOKIE",
    "create_session",
    "csrf_ok",
    "end_session",
    "end_sessions_of",
    "live_sessions",
    "lookup_session",
    "set_session_cookie",
]

COOKIE = "klasblik_session"
_TOUCH_EVERY = dt.timedelta(seconds=60)
#: sessions looked up per query by live_sessions (SQLite's bound-parameter limit is far
#: above it)
_IDS_PER_QUERY = 500


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_session(
    sm: async_sessionmaker[AsyncSession], staff_id: int, ip: str | None, settings: Settings
) -> tuple[str, WebSession]:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = WebSession(
        id=_hash(token),
        staff_id=staff_id,
        csrf_token=secrets.token_urlsafe(24),
        created_at=now,
        last_used_at=now,
        expires_at=now + dt.timedelta(seconds=settings.session_lifetime_s),
        ip=ip,
    )
    async with sm() as session, session.begin():
        session.add(row)
    return token, row


async def lookup_session(
    sm: async_sessionmaker[AsyncSession], token: str | None, settings: Settings
) -> tuple[WebSession, Staff] | None:
    """The live session and its active staff member, or None (expired, idle, unknown,
    staff disabled). Expired and idle sessions are deleted on sight."""
    if not token or len(token) > 200:
        return None
    return await _live(sm, _hash(token), settings)


def _ended(row: WebSession, staff: Staff | None, now: dt.datetime, settings: Settings) -> bool:
    """Expired, idle, or its staff member gone or disabled."""
    idle_limit = row.last_used_at + dt.timedelta(seconds=settings.session_idle_s)
    return now >= row.expires_at or now >= idle_limit or staff is None or not staff.active


async def _live(
    sm: async_sessionmaker[AsyncSession], session_id: str, settings: Settings
) -> tuple[WebSession, Staff] | None:
    now = utcnow()
    async with sm() as session, session.begin():
        row = await session.get(WebSession, session_id)
        if row is None:
            return None
        staff = await session.get(Staff, row.staff_id)
        if _ended(row, staff, now, settings):
            await session.delete(row)
            return None
        assert staff is not None  # for the type checker: _ended says so
        if now - row.last_used_at >= _TOUCH_EVERY:
            row.last_used_at = now
        return row, staff


async def live_sessions(
    sm: async_sessionmaker[AsyncSession], session_ids: Collection[str], settings: Settings
) -> set[str]:
    """Which of these sessions (stored ids: their tokens' hashes) are still live, for
    every open dashboard at once: one query per ``_IDS_PER_QUERY`` sessions in one
    transaction, instead of a transaction per dashboard. An open dashboard counts as use:
    each live one is touched as :func:`lookup_session` does; each ended one found is
    deleted."""
    ids = sorted(set(session_ids))
    alive: set[str] = set()
    if not ids:
        return alive
    now = utcnow()
    async with sm() as session, session.begin():
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            rows = await session.execute(
                select(WebSession, Staff)
                .outerjoin(Staff, Staff.id == WebSession.staff_id)
                .where(WebSession.id.in_(chunk))
            )
            for row, staff in rows:
                if _ended(row, staff, now, settings):
                    await session.delete(row)
                    continue
                alive.add(row.id)
                if now - row.last_used_at >= _TOUCH_EVERY:
                    row.last_used_at = now
    return alive


async def end_session(sm: async_sessionmaker[AsyncSession], token: str) -> None:
    async with sm() as session, session.begin():
        await session.execute(delete(WebSession).where(WebSession.id == _hash(token)))


async def end_sessions_of(sm: async_sessionmaker[AsyncSession], staff_id: int) -> None:
    async with sm() as session, session.begin():
        await session.execute(delete(WebSession).where(WebSession.staff_id == staff_id))


def csrf_ok(row: WebSession, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(row.csrf_token, presented or "")


def set_session_cookie(resp: web.StreamResponse, token: str, settings: Settings) -> None:
    """Give the browser its session token: HttpOnly, Secure behind https, SameSite=Lax."""
    resp.set_cookie(
        COOKIE,
        token,
        max_age=settings.session_lifetime_s,
        httponly=True,
        secure=settings.effective_public_url.startswith("https:"),
        samesite="Lax",
        path="/",
    )
