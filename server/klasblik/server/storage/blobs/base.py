"""Where the latest thumbnail and tab list of each student live: one blob each, overwritten.

Two implementations of one interface: a local folder (the embedded default) and Azure Blob
Storage (``azure_blob.py``). Blob names are fixed per student (``students/12/thumbnail``,
``students/12/tabs``), so a write replaces the previous one: there is never a history.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from klasblik.protocol.errors import KlasblikError

__all__ = [
    "Blob",
    "BlobInfo",
    "BlobStore",
    "BlobStoreError",
    "LocalBlobStore",
    "open_blob_store",
    "sniff_content_type",
    "student_prefix",
    "tabs_name",
    "thumbnail_name",
]


class BlobStoreError(KlasblikError):
    """The blob store could not do what was asked (down, refused, misconfigured)."""

    code = "blob_store_unavailable"
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
        """Every blob whose name starts with ``prefix``."""

    async def check(self) -> None:
        """Raise :class:`BlobStoreError` when the store cannot be used."""

    async def close(self) -> None: ...


_VALID_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_/.")


def _check_name(name: str) -> None:
    if (
        not name
        or name.startswith("/")
        or ".." in name.split("/")
        or not set(name) <= _VALID_NAME_CHARS
    ):
        raise ValueError(f"invalid blob name {name!r}")


class LocalBlobStore:
    """Blobs as files under one folder. Writes go to a temporary file that replaces the
    target in one rename, so a reader sees the old or the new blob, never half of one, and
    no second copy remains."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        # one writer thread: with thousands of students in view, a pool of writers would
        # fight the event loop for the GIL and delay live frames
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")

    def _path(self, name: str) -> Path:
        _check_name(name)
        return self.root / name

    async def put(self, name: str, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._put_sync, self._path(name), data)

    async def put_many(self, blobs: dict[str, bytes]) -> dict[str, BlobStoreError]:
        """Write several blobs in one hand-off to the writer thread; return the failures."""
        items = [(name, self._path(name), data) for name, data in blobs.items()]

        def write_all() -> dict[str, BlobStoreError]:
            errors: dict[str, BlobStoreError] = {}
            for name, path, data in items:
                try:
                    self._put_sync(path, data)
                except BlobStoreError as exc:
                    errors[name] = exc
            return errors

        return await asyncio.get_running_loop().run_in_executor(self._writer, write_all)

    @staticmethod
    def _put_sync(path: Path, data: bytes) -> None:
        try:
            try:  # the folder usually exists: skip the mkdir on the hot path
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise BlobStoreError(f"cannot write {path}: {exc.strerror or exc}") from exc

    async def get(self, name: str) -> Blob | None:
        path = self._path(name)

        def read() -> Blob | None:
            try:
                data = path.read_bytes()
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise BlobStoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
            return Blob(
                data,
                sniff_content_type(data),
                dt.datetime.fromtimestamp(mtime, dt.UTC),
            )

        return await asyncio.to_thread(read)

    async def delete(self, names: Iterable[str]) -> int:
        paths = [self._path(n) for n in names]

        def remove() -> int:
            count = 0
            for path in paths:
                try:
                    path.unlink()
                    count += 1
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise BlobStoreError(f"cannot delete {path}: {exc.strerror or exc}") from exc
            return count

        return await asyncio.to_thread(remove)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        def scan() -> list[BlobInfo]:
            out: list[BlobInfo] = []
            if ".." in prefix.split("/") or prefix.startswith("/"):
                raise ValueError(f"invalid blob prefix {prefix!r}")
            # walk only the folder the prefix names, not every student's blobs
            start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
            if not start.exists():
                return out
            for dirpath, _dirs, files in os.walk(start):
                for fname in files:
                    full = Path(dirpath) / fname
                    name = full.relative_to(self.root).as_posix()
                    if fname.startswith(".tmp-") or not name.startswith(prefix):
                        continue
                    try:
                        st = full.stat()
                    except FileNotFoundError:
                        continue
                    out.append(
                        BlobInfo(name, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))
                    )
            return sorted(out, key=lambda b: b.name)

        for info in await asyncio.to_thread(scan):
            yield info

    async def check(self) -> None:
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise BlobStoreError(f"blob folder {self.root} is not writable")

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise BlobStoreError(f"blob folder {self.root}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        self._writer.shutdown(wait=True)


def open_blob_store(spec: str, azure_connection_string: str = "") -> BlobStore:
    """Open the store a ``blob_store`` setting names: ``file:PATH`` or ``azure:CONTAINER``."""
    kind, _, where = spec.partition(":")
    if kind == "file":
        return LocalBlobStore(where)
    if kind == "azure":
        from klasblik.server.storage.blobs.azure import AzureBlobStore

        return AzureBlobStore(azure_connection_string, where)
    raise ValueError(f"unknown blob store {spec!r}")
