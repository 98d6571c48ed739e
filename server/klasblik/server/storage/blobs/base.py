"""Where the latest thumbnail and tab list of each student live: one blob each, overwritten.

Two implementations of one interface: a local folder (the embedded default) and Azure Blob
Storage (``azure.py``), both opened by ``open_blob_store`` (``__init__.py``). Blob names are fixed per student (``students/12/thumbnail``,
``students/12/tabs``), so a write replaces the previous one: there is never a history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from klasblik.protocol.errors import KlasblikError

__all__ = [
    "Blob",
    "BlobInfo",
    "BlobStore",
    "BlobStoreError",
    "BlobStoreRefused",
    "check_name",
    "sniff_content_type",
    "student_prefix",
    "tabs_name",
    "thumbnail_name",
    "thumbnail_place_name",
]


class BlobStoreError(KlasblikError):
    """The blob store could not do what was asked (down, refused, misconfigured)."""

    code = "blob_store_unavailable"
    status = 503


class BlobStoreRefused(KlasblikError):
    """The blob store works but would break a privacy promise (it keeps deleted or
    overwritten screenshots): the server refuses to start on it."""

    code = "blob_store_refused"
    status = 503


@dataclass(frozen=True, slots=True)
class BlobInfo:
    name: str
    size: int
    last_modified: dt.datetime  # aware, UTC


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    content_type: str
    last_modified: dt.datetime


def student_prefix(student_id: int) -> str:
    return f"students/{student_id}/"


def thumbnail_name(student_id: int) -> str:
    return f"students/{student_id}/thumbnail"


def thumbnail_place_name(student_id: int) -> str:
    """Where the stored thumbnail was taken: ``{"location_id": N or null}``, written with it."""
    return f"students/{student_id}/thumbnail.place"


def tabs_name(student_id: int) -> str:
    return f"students/{student_id}/tabs"


def sniff_content_type(data: bytes) -> str:
    """The content type of a stored blob, from its first bytes."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:1] in (b"[", b"{"):
        return "application/json"
    return "application/octet-stream"


class BlobStore(Protocol):
    """The operations Klasblik needs of a blob store."""

    async def put(self, name: str, data: bytes) -> None:
        """Write ``name``, replacing what was there, atomically."""

    async def get(self, name: str) -> Blob | None:
        """Read ``name``; None when it does not exist."""

    async def delete(self, names: Iterable[str]) -> int:
        """Delete the named blobs that exist; return how many were deleted."""

    def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Every blob whose name starts with ``prefix``, streamed (never built whole);
        in no promised order."""

    async def existing(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` exist, in one call (a class's stored thumbnails)."""

    async def check(self) -> None:
        """Raise :class:`BlobStoreError` when the store cannot be used."""

    async def close(self) -> None: ...


_VALID_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_/.")


def check_name(name: str) -> None:
    if (
        not name
        or name.startswith("/")
        or ".." in name.split("/")
        or not set(name) <= _VALID_NAME_CHARS
    ):
        raise ValueError(f"invalid blob name {name!r}")
