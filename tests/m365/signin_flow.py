"""Drive the sign-in over plain HTTP (a cookie-keeping client), step by step, so a test can
stop, change or repeat any step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import aiohttp
from sqlalchemy import func, select

from klasblik.server.storage.models import Staff, WebSession
from tests.support.live import LiveServer
from tests.support.oidc import OidcProvider


@dataclass
class Outcome:
    status: int
    location: str

    @property
    def error(self) -> str | None:
        q = parse_qs(urlsplit(self.location).query)
        return q.get("error", [None])[0]

    @property
    def message(self) -> str:
        q = parse_qs(urlsplit(self.location).query)
        return q.get("message", [""])[0]


def new_client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def start(http: aiohttp.ClientSession, server: LiveServer) -> str:
    """GET /auth/login; return the provider's authorize URL it redirects to."""
    async with http.get(server.base_url + "/auth/login", allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def provider_login(provider: OidcProvider, authorize_url: str, sub: str) -> str:
    return await asyncio.to_thread(provider.authorize, authorize_url, sub)


async def callback(http: aiohttp.ClientSession, url: str) -> Outcome:
    async with http.get(url, allow_redirects=False) as resp:
        return Outcome(resp.status, resp.headers.get("Location", ""))


async def sign_in(http, server, provider, sub) -> Outcome:
    authorize_url = await start(http, server)
    return await callback(http, await provider_login(provider, authorize_url, sub))


async def count_sessions(server: LiveServer) -> int:
    async with server.sm() as s:
        return int(await s.scalar(select(func.count()).select_from(WebSession)))


async def count_staff(server: LiveServer) -> int:
    async with server.sm() as s:
        return int(await s.scalar(select(func.count()).select_from(Staff)))
