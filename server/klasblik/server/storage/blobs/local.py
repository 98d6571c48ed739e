"""The embedded default blob store: a local folder, written through one thread so that a
burst of frames never blocks the event loop, each write atomic (temporary file + rename)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from klasblik.server.storage.blobs.base import (
    Blob,
    BlobInfo,
    BlobStoreError,
    check_name,
    sniff_content_type,
)

__all__ = ["LocalBlobStore"]


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
        check_name(name)
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

    async def sweep_temporaries(self, older_than: dt.datetime) -> int:
        """Delete ``.tmp-*`` files (writes cut off by a crash or a full disk) last changed
        before ``older_than``; return how many. ``list`` never shows them, so the sweep
        calls this to keep the 48-hour promise for them too."""
        limit = older_than.timestamp()

        def scan() -> int:
            count = 0
            if not self.root.exists():
                return 0
            for dirpath, _dirs, files in os.walk(self.root):
                for fname in files:
                    if not fname.startswith(".tmp-"):
                        continue
                    full = Path(dirpath) / fname
                    try:
                        if full.stat().st_mtime < limit:
                            full.unlink()
                            count += 1
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise BlobStoreError(
                            f"cannot delete {full}: {exc.strerror or exc}"
                        ) from exc
            return count

        return await asyncio.to_thread(scan)

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
