"""A small Microsoft Graph client for roster sync (aiohttp), following Microsoft's documented
shapes: collections in ``value``, paging by ``@odata.nextLink``, delta queries ending in
``@odata.deltaLink``, throttling answered 429 (or 503) with ``Retry-After``.

Two answers mean "this delta link is no longer usable, read everything again"
(https://learn.microsoft.com/graph/delta-query-overview#synchronization-reset and
https://devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources):
a link past its lifetime (7 days for users, groups and education resources) is answered
400 with the error code ``syncStateNotFound``; a synchronization reset is 410 Gone. Both
raise :class:`DeltaExpired`.

The bearer token goes only to the Graph host the client was made for: a paging or delta
link that names any other scheme, host or port is refused (:class:`ForeignLink`) before a
request is made."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from klasblik.protocol.errors import KlasblikError

__all__ = ["DeltaExpired", "DeltaResult", "ForeignLink", "GraphClient", "GraphError"]

log = logging.getLogger(__name__)

TokenSource = Callable[[], Awaitable[str]]


class GraphError(KlasblikError):
    """Graph answered something the sync cannot use; the message names the request."""

    code = "graph_error"
    status = 502


class DeltaExpired(GraphError):
    """A stored delta link is no longer valid (400 ``syncStateNotFound`` or 410 Gone):
    start a full round."""

    code = "delta_expired"


class ForeignLink(GraphError):
    """Graph's answer pointed at another host: the token is never sent there."""

    code = "graph_foreign_link"


#: 400-range error codes Graph uses for a delta token it no longer has.
_EXPIRED_CODES = frozenset({"syncStateNotFound", "resyncRequired"})


def _error_code(body: str) -> str:
    """``error.code`` of a Graph error answer, or ""."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    return str(err.get("code") or "") if isinstance(err, dict) else ""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class DeltaResult:
    """Everything one delta round returned, and the link for the next round."""

    def __init__(self, items: list[dict[str, Any]], delta_link: str, full: bool) -> None:
        self.items = items
        self.delta_link = delta_link
        #: True when this round started without a stored link: ``items`` is everything.
        self.full = full


class GraphClient:
    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        ca_file: str = "",
        max_retries: int = 6,
        max_wait_s: float = 120.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        ssl_ctx: ssl.SSLContext | bool = True
        if ca_file:
            ssl_ctx = ssl.create_default_context(cafile=ca_file)
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(ssl=ssl_ctx),
        )
        #: Requests answered 429/503 and retried (for the sync's report).
        self.throttled = 0

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path_or_url: str) -> str:
        """The absolute URL; a full URL must be on the configured Graph host (ForeignLink)."""
        if "://" in path_or_url or path_or_url.startswith("//"):
            if _origin(path_or_url) != _origin(self.base_url):
                host = urllib.parse.urlsplit(path_or_url).netloc or "?"
                raise ForeignLink(
                    f"Graph answered a link to {host}, not to the configured Graph host "
                    f"{urllib.parse.urlsplit(self.base_url).netloc}; not followed, no token sent"
                )
            return path_or_url
        return self.base_url + "/" + path_or_url.lstrip("/")

    async def get(self, path_or_url: str) -> dict[str, Any]:
        """One GET, retried after ``Retry-After`` when throttled."""
        url = self.url(path_or_url)
        for attempt in range(self.max_retries + 1):
            headers = {
                "Authorization": f"Bearer {await self._token()}",
                "Accept": "application/json",
            }
            try:
                # no redirects: a Location elsewhere would otherwise get the request
                async with self._http.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status in (429, 503) and attempt < self.max_retries:
                        wait = _retry_after(resp.headers.get("Retry-After"), attempt)
                        self.throttled += 1
                        log.info(
                            "Graph throttled %s (%s); retrying in %.1fs", url, resp.status, wait
                        )
                        await asyncio.sleep(min(wait, self.max_wait_s))
                        continue
                    if resp.status == 410:
                        raise DeltaExpired(f"GET {url}: synchronization reset (410)")
                    if resp.status != 200:
                        body = await resp.text()
                        code = _error_code(body)
                        if 400 <= resp.status < 500 and code in _EXPIRED_CODES:
                            raise DeltaExpired(f"GET {url}: delta link expired ({code})")
                        raise GraphError(f"GET {url}: HTTP {resp.status}: {body[:300]}")
                    data = await resp.json(content_type=None)
            except aiohttp.ClientError as exc:
                raise GraphError(f"GET {url}: {exc}") from exc
            except TimeoutError:
                raise GraphError(f"GET {url}: timed out") from None
            if not isinstance(data, dict):
                raise GraphError(f"GET {url}: answer is not a JSON object")
            return data
        raise GraphError(f"GET {url}: still throttled after {self.max_retries} retries")

    async def pages(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink``."""
        url: str | None = path
        while url:
            page = await self.get(url)
            for item in _values(page, url):
                yield item
            url = page.get("@odata.nextLink")

    async def all(self, path: str) -> list[dict[str, Any]]:
        return [item async for item in self.pages(path)]

    async def delta(self, start_path: str, delta_link: str | None) -> DeltaResult:
        """One delta round: from the stored link, or from the start (everything)."""
        url: str | None = delta_link or start_path
        items: list[dict[str, Any]] = []
        while url:
            page = await self.get(url)
            items.extend(_values(page, url))
            if "@odata.deltaLink" in page:
                return DeltaResult(items, str(page["@odata.deltaLink"]), delta_link is None)
            url = page.get("@odata.nextLink")
        raise GraphError(f"delta round of {start_path} ended without @odata.deltaLink")


def _values(page: dict[str, Any], url: str) -> list[dict[str, Any]]:
    value = page.get("value")
    if not isinstance(value, list):
        raise GraphError(f"GET {url}: answer has no 'value' list")
    return [v for v in value if isinstance(v, dict)]


def _retry_after(header: str | None, attempt: int) -> float:
    """Seconds to wait: Retry-After when given (seconds), else exponential backoff."""
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    return float(min(2**attempt, 60))
