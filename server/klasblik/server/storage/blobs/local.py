"""The embedded default blob store: a local folder, written through one thread so that a
burst of frames never blocks the event loop, each write atomic (temporary file + rename).

On Linux a blob that exists already is replaced by exchanging it with a spare file next to
it (``renameat2`` with ``RENAME_EXCHANGE``), and the spare, which then holds the old
content, is cut to nothing at once: the same atomic replacement without making and freeing
an inode per write. Creating a file is what a write costs most on many file systems (on
this project's development machine a temporary file and rename cost 230-500 µs of CPU per
thumbnail, the exchange 100-160 µs: ``bench/blob_writes.py``). Elsewhere, and for a first
write, it is a temporary file and ``os.replace``.

The spare is opened without ``O_TRUNC`` and cut through a file descriptor that is closed
at once. ext4's ``auto_da_alloc`` (on by default) takes a file cut to length zero, by path
or by ``O_TRUNC``, and then written and closed, for the replace-via-truncate pattern and
makes the ``close`` allocate and start writing the new data there and then: with a cut by
path a write cost the writer thread 122-162 µs of CPU, 145-178 µs beside a busy loop,
against 51 µs and 57-82 µs this way (the same system calls plus an open and a close:
``bench/blob_writes.py``, with and without ``--beside-loop``). A spare that still
holds something (a crash between the exchange and the cut) is cut to the new content's
length after the write, so it never keeps a tail of the old picture."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import errno
import itertools
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from klasblik.server.storage.blobs.base import (
    Blob,
    BlobInfo,
    BlobStoreError,
    check_name,
    sniff_content_type,
)

__all__ = ["LIST_CHUNK", "LocalBlobStore"]

#: Blobs a listing reads per hand-off to its thread (the loop runs in between).
LIST_CHUNK = 256


def _take(entries: Iterator[BlobInfo], n: int) -> list[BlobInfo]:
    return list(itertools.islice(entries, n))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: what a system or file system without the exchange answers
_NO_EXCHANGE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM})


def _renameat2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """glibc's ``renameat2`` (Linux 3.15, glibc 2.28), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


class LocalBlobStore:
    """Blobs as files under one folder. Writes go to a temporary file that replaces the
    target in one rename, so a reader sees the old or the new blob, never half of one, and
    no second copy remains."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        # one writer thread: with thousands of students in view, a pool of writers would
        # fight the event loop for the GIL and delay live frames
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")
        #: this process's spare files are ``.tmp-<token>-<blob>`` (several processes may
        #: share the folder; the sweep removes spares unused for ten minutes)
        self._spare = f".tmp-{secrets.token_hex(4)}-"
        self._exchange = _renameat2()
        #: the folder as a string: a write on the hot path makes its paths by joining
        #: strings (pathlib's objects cost the writer thread more than the system calls)
        self._root = os.fspath(self.root)

    def _path(self, name: str) -> Path:
        check_name(name)
        return self.root / name

    async def put(self, name: str, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._put_sync, os.fspath(self._path(name)), data)

    async def put_many(self, blobs: dict[str, bytes]) -> dict[str, BlobStoreError]:
        """Write several blobs in one hand-off to the writer thread; return the failures."""
        for name in blobs:
            check_name(name)  # a bad name is the caller's error, here; paths on the thread
        items = list(blobs.items())
        root = self._root

        def write_all() -> dict[str, BlobStoreError]:
            errors: dict[str, BlobStoreError] = {}
            for name, data in items:
                try:
                    self._put_sync(f"{root}/{name}", data)
                except BlobStoreError as exc:
                    errors[name] = exc
            return errors

        return await asyncio.get_running_loop().run_in_executor(self._writer, write_all)

    def _put_sync(self, path: str, data: bytes) -> None:
        folder, _, base = path.rpartition("/")
        spare = f"{folder}/{self._spare}{base}"
        try:
            for attempt in range(3):
                try:  # the folder usually exists: skip the mkdir on the hot path
                    fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    break
                except FileNotFoundError:
                    if attempt == 2:  # removed again each time, by a delete of its last blob
                        raise
                    os.makedirs(folder, exist_ok=True)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.ftruncate(fd, len(data))  # a spare not cut (a crash): no old tail
                finally:
                    os.close(fd)
                if not self._swap(spare, path):
                    os.replace(spare, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(spare)
                raise
        except OSError as exc:
            raise BlobStoreError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def _swap(self, spare: str, path: str) -> bool:
        """Exchange ``spare`` (the new content) with ``path`` in one step and cut the old
        content, now in ``spare``, to nothing; False when ``path`` does not exist yet or
        the system cannot exchange (the caller renames instead)."""
        exchange = self._exchange
        if exchange is None:
            return False
        if (
            exchange(_AT_FDCWD, os.fsencode(spare), _AT_FDCWD, os.fsencode(path), _RENAME_EXCHANGE)
            == 0
        ):
            fd = os.open(spare, os.O_WRONLY | os.O_CLOEXEC)  # cut through a descriptor that
            try:  # is closed at once: see the module text (ext4's auto_da_alloc)
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)
            return True
        err = ctypes.get_errno()
        if err == errno.ENOENT:  # a first write: nothing to exchange with
            return False
        if err in _NO_EXCHANGE:
            self._exchange = None  # this file system cannot: rename from now on
            return False
        raise OSError(err, os.strerror(err), path)

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and the folders above it while they are empty, up to (not
        including) the store's own folder. A write racing it makes its folder again."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty, or gone already
                return
            folder = folder.parent

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
        todo = list(names)

        def remove() -> int:
            # the paths are made here too: for a sweep's thousand names, that alone would
            # hold the event loop for tens of milliseconds
            paths = [self._path(n) for n in todo]
            count = 0
            folders: set[Path] = set()
            for path in paths:
                try:
                    path.unlink()
                    count += 1
                    folders.add(path.parent)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise BlobStoreError(f"cannot delete {path}: {exc.strerror or exc}") from exc
                with contextlib.suppress(OSError):  # its (empty) spare goes with it
                    (path.parent / (self._spare + path.name)).unlink()
            for folder in folders:  # a student's folder goes with its last blob
                self._prune(folder)
            return count

        return await asyncio.to_thread(remove)

    async def existing(self, names: Iterable[str]) -> set[str]:
        todo = list(names)

        def probe() -> set[str]:
            return {n for n in todo if self._path(n).is_file()}

        return await asyncio.to_thread(probe)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Streamed: the folder is read on a thread, ``LIST_CHUNK`` blobs per hand-off, so
        a listing of 100,000 blobs never holds the event loop (nor builds one list of
        them all). In no particular order."""
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ValueError(f"invalid blob prefix {prefix!r}")
        # walk only the folder the prefix names, not every student's blobs
        start = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        entries = self._scan(start, prefix)
        while True:
            chunk = await asyncio.to_thread(_take, entries, LIST_CHUNK)
            for info in chunk:
                yield info
            if len(chunk) < LIST_CHUNK:
                return

    def _scan(self, start: str, prefix: str) -> Iterator[BlobInfo]:
        """The blobs under the folder ``start`` (relative, ``/``-terminated or empty) whose
        names start with ``prefix``; depth first, one folder open at a time."""
        folders = [start]
        while folders:
            rel = folders.pop()
            try:
                with os.scandir(self.root / rel if rel else self.root) as it:
                    found = list(it)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in found:
                name = rel + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if prefix.startswith(name + "/") or (name + "/").startswith(prefix):
                        folders.append(name + "/")
                    continue
                if entry.name.startswith(".tmp-") or not name.startswith(prefix):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                yield BlobInfo(name, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))

    async def sweep_temporaries(self, older_than: dt.datetime) -> int:
        """Delete ``.tmp-*`` files (writes cut off by a crash or a full disk) last changed
        before ``older_than``; return how many. ``list`` never shows them, so the sweep
        calls this to keep the 48-hour promise for them too. Empty folders (a student
        whose blobs were all deleted) go too; the store's own folder stays."""
        limit = older_than.timestamp()

        def scan() -> int:
            count = 0
            if not self.root.exists():
                return 0
            for dirpath, _dirs, files in os.walk(self.root, topdown=False):
                for fname in files:
                    if not fname.startswith(".tmp-"):
                        continue
                    full = os.path.join(dirpath, fname)
                    try:
                        if os.stat(full).st_mtime < limit:
                            os.unlink(full)
                            count += 1
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        raise BlobStoreError(
                            f"cannot delete {full}: {exc.strerror or exc}"
                        ) from exc
                if dirpath != str(self.root):
                    with contextlib.suppress(OSError):  # not empty (or gone): kept
                        os.rmdir(dirpath)
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
