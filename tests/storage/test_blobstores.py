"""Both blob stores keep one blob per name, overwritten in place, with store timestamps."""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import pytest

from klasblik.server.storage.blobs.azure import BATCH_LIMIT, AzureBlobStore
from klasblik.server.storage.blobs.base import BlobStoreError, tabs_name, thumbnail_name
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.latest import LatestWriter


async def _names(store, prefix=""):
    return [b.name async for b in store.list(prefix)]


async def test_put_overwrites_and_get_returns_the_newest(store):
    """A second put replaces the first; get returns the new bytes with an aware UTC time."""
    name = thumbnail_name(7)
    await store.put(name, b"\xff\xd8\xff first")
    await store.put(name, b"\xff\xd8\xff second")
    blob = await store.get(name)
    assert blob is not None and blob.data == b"\xff\xd8\xff second"
    assert blob.content_type == "image/jpeg"
    assert blob.last_modified.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - blob.last_modified) < dt.timedelta(minutes=2)
    assert await _names(store) == [name]
    assert await store.get(tabs_name(7)) is None


async def test_no_second_copy_of_a_thumbnail_ever_exists(store):
    """Many concurrent writes through the rate-limited writer leave exactly one thumbnail."""
    writer = LatestWriter(store, interval_s=0)
    name = thumbnail_name(3)
    seen: list[list[str]] = []

    async def watch() -> None:
        for _ in range(20):
            seen.append(await _names(store, "students/3/"))
            await asyncio.sleep(0.01)  # a reader listing every 10 ms during the writes

    watcher = asyncio.create_task(watch())
    for i in range(40):
        writer.offer(name, b"\xff\xd8\xff" + bytes([i]) * 100)
        await asyncio.sleep(0.005)  # writes spread over the reader's listings
    await writer.drain()
    await watcher
    assert all(listing in ([], [name]) for listing in seen)
    assert await _names(store) == [name]
    blob = await store.get(name)
    assert blob is not None and blob.data == b"\xff\xd8\xff" + bytes([39]) * 100
    if isinstance(store, LocalBlobStore):
        files = [os.path.join(d, f) for d, _, fs in os.walk(store.root) for f in fs]
        # beside it at most the empty spare it was exchanged with: no old picture is kept
        others = [f for f in files if f != str(store.root / name)]
        assert str(store.root / name) in files
        assert [os.path.basename(f).startswith(".tmp-") for f in others] == [True] * len(others)
        assert [os.path.getsize(f) for f in others] == [0] * len(others)
        await store.delete([name])  # and it goes with its blob
        assert [f for _, _, fs in os.walk(store.root) for f in fs] == []
    await writer.close()


async def test_writes_to_one_student_are_rate_limited(store):
    """With an interval, a burst of frames becomes the first write and one trailing write."""
    writer = LatestWriter(store, interval_s=0.5)
    for i in range(10):
        writer.offer(thumbnail_name(1), b"\xff\xd8\xff" + bytes([i]))
        await asyncio.sleep(0.01)  # a burst of 10 frames in 0.1 s, inside the 0.5 s interval
    await writer.drain()
    assert writer.writes == 2
    blob = await store.get(thumbnail_name(1))
    assert blob is not None and blob.data == b"\xff\xd8\xff" + bytes([9])
    await writer.close()


async def test_delete_counts_and_chunks_past_the_batch_limit(store):
    """Deleting more than one batch removes them all and counts only what existed."""
    names = [tabs_name(i) for i in range(BATCH_LIMIT + 20)]
    await asyncio.gather(*(store.put(n, b"[]") for n in names))
    deleted = await store.delete([*names, tabs_name(99999)])
    assert deleted == len(names)
    assert await _names(store) == []


async def test_azure_falls_back_to_single_deletes_where_batches_fail(azure_store):
    """On Azurite, whose batch delete answers 400, deletes still happen (single requests)."""
    names = [tabs_name(i) for i in range(10)]
    await asyncio.gather(*(azure_store.put(n, b"[]") for n in names))
    assert await azure_store.delete(names) == 10
    assert azure_store.batch_delete_works is False
    assert await _names(azure_store) == []


async def test_azure_container_is_private(azure_store):
    """The container Klasblik creates allows no anonymous access."""
    props = await azure_store._container.get_container_properties()
    assert props.public_access is None


async def test_bad_blob_name_is_refused(store):
    """A name that could escape the store's namespace is a clear error."""
    with pytest.raises(ValueError, match="invalid blob name"):
        await store.put("../etc/passwd", b"x")


def test_azure_store_needs_a_valid_container_name():
    """A container name Azure would refuse is refused up front, with the rule."""
    with pytest.raises(ValueError, match="lower-case"):
        AzureBlobStore("UseDevelopmentStorage=true", "Bad_Name")


async def test_azure_refuses_to_write_to_a_public_container(azure_store):
    """A container opened to anonymous reads fails the check, and writes are refused."""
    from azure.storage.blob import PublicAccess

    from klasblik.server.storage.blobs.base import BlobStoreError

    await azure_store._container.set_container_access_policy({}, public_access=PublicAccess.BLOB)
    with pytest.raises(BlobStoreError, match="public access"):
        await azure_store.check()
    with pytest.raises(BlobStoreError, match="writes refused"):
        await azure_store.put(thumbnail_name(1), b"\xff\xd8\xff")
    assert await azure_store.get(thumbnail_name(1)) is None


async def test_existing_names_which_blobs_exist_in_one_call(store):
    """``existing`` answers for many names at once: present ones in, absent ones out,
    a bad name refused."""
    await store.put(thumbnail_name(1), b"\xff\xd8\xff")
    await store.put(tabs_name(2), b"[]")
    asked = [thumbnail_name(1), thumbnail_name(2), thumbnail_name(3), tabs_name(2)]
    assert await store.existing(asked) == {thumbnail_name(1), tabs_name(2)}
    assert await store.existing([]) == set()
    with pytest.raises(ValueError, match="invalid blob name"):
        await store.existing(["../x"])


async def test_a_listing_past_one_chunk_streams_every_blob_once(store):
    """A listing longer than one hand-off (local) or one page (Azure) yields every blob of
    the prefix exactly once, and nothing outside it."""
    from klasblik.server.storage.blobs.azure import LIST_PAGE
    from klasblik.server.storage.blobs.local import LIST_CHUNK

    n = max(LIST_CHUNK, LIST_PAGE) + 40
    names = {thumbnail_name(100 + i) for i in range(n)}
    sem = asyncio.Semaphore(32)

    async def put(name):
        async with sem:
            await store.put(name, b"\xff\xd8\xff")

    await asyncio.gather(*(put(name) for name in names), put("other/blob"))
    listed = await _names(store, "students/")
    assert len(listed) == len(set(listed)) == n
    assert set(listed) == names
    assert set(await _names(store, "students/10/")) == {thumbnail_name(10)} & names
    assert set(await _names(store, "students/1")) == {
        x for x in names if x.startswith("students/1")
    }


async def test_local_delete_removes_the_folder_its_last_blob_leaves_empty(tmp_path):
    """Deleting a student's last blob removes the student's folder; a folder that still
    holds a blob, and the store's own folder, stay; a later write makes the folder again."""
    store = LocalBlobStore(tmp_path / "blobs")
    try:
        await store.put(thumbnail_name(1), b"\xff\xd8\xff")
        await store.put(tabs_name(1), b"[]")
        await store.put(thumbnail_name(2), b"\xff\xd8\xff")
        await store.put(tabs_name(2), b"[]")
        assert await store.delete([thumbnail_name(1), tabs_name(1), thumbnail_name(2)]) == 3
        root = tmp_path / "blobs"
        assert not (root / "students" / "1").exists()
        assert (root / "students" / "2" / "tabs").is_file()
        assert await store.delete([tabs_name(2)]) == 1
        assert root.is_dir() and not (root / "students").exists()
        await store.put(thumbnail_name(1), b"\xff\xd8\xff")
        assert (await store.get(thumbnail_name(1))) is not None
    finally:
        await store.close()


async def test_local_store_without_the_exchange_renames_and_leaves_nothing(tmp_path):
    """Where the system or file system cannot exchange two files (another OS, EINVAL from
    the file system), a write is a temporary file and a rename: the blob lands, no
    temporary file stays, and the store stops trying to exchange."""
    import ctypes
    import errno

    store = LocalBlobStore(tmp_path / "blobs")
    calls = []

    def refuses(*args: object) -> int:
        calls.append(args)
        ctypes.set_errno(errno.EINVAL)
        return -1

    try:
        name = thumbnail_name(5)
        await store.put(name, b"\xff\xd8\xff first")  # a first write never exchanges
        store._exchange = refuses
        await store.put(name, b"\xff\xd8\xff second")
        await store.put(name, b"\xff\xd8\xff third")
        assert len(calls) == 1 and store._exchange is None
        blob = await store.get(name)
        assert blob is not None and blob.data == b"\xff\xd8\xff third"
        files = [f for _, _, fs in os.walk(store.root) for f in fs]
        assert files == ["thumbnail"]
    finally:
        await store.close()


async def test_local_store_exchange_failing_otherwise_is_a_clear_error(tmp_path):
    """An exchange failing for another reason (a full disk, a read-only folder) is the
    store's error naming the blob, and the blob keeps its last content."""
    import ctypes
    import errno

    store = LocalBlobStore(tmp_path / "blobs")

    def full(*args: object) -> int:
        ctypes.set_errno(errno.ENOSPC)
        return -1

    try:
        name = thumbnail_name(6)
        await store.put(name, b"\xff\xd8\xff kept")
        store._exchange = full
        with pytest.raises(BlobStoreError, match="cannot write .*students/6/thumbnail"):
            await store.put(name, b"\xff\xd8\xff lost")
        blob = await store.get(name)
        assert blob is not None and blob.data == b"\xff\xd8\xff kept"
        assert [f for _, _, fs in os.walk(store.root) for f in fs] == ["thumbnail"]
    finally:
        await store.close()
