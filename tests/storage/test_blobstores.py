"""Both blob stores keep one blob per name, overwritten in place, with store timestamps."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import os
import time

import pytest

from klasblik.server.storage.blobs import azure as azure_module
from klasblik.server.storage.blobs.azure import BATCH_LIMIT, AzureBlobStore
from klasblik.server.storage.blobs.base import BlobStoreError, tabs_name, thumbnail_name
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.latest import BATCH_GAP_S, LatestWriter


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


async def test_a_flushed_blob_is_written_at_once_whatever_its_interval(store):
    """flush (a device that went offline) writes what is pending now, not an hour later;
    a name with nothing pending, or flushed twice, writes nothing more."""
    writer = LatestWriter(store, interval_s=3600)
    try:
        writer.offer(thumbnail_name(1), b"\xff\xd8\xff first")  # the first: at once
        async with asyncio.timeout(10):
            while writer.writes < 1:
                await asyncio.sleep(0.01)
        writer.offer(thumbnail_name(1), b"\xff\xd8\xff last")  # held back for an hour
        writer.flush(thumbnail_name(1), thumbnail_name(1), tabs_name(1))
        async with asyncio.timeout(10):  # without the flush, drain waits the hour
            await writer.drain()
        blob = await store.get(thumbnail_name(1))
        assert blob is not None and blob.data == b"\xff\xd8\xff last"
        assert writer.writes == 2 and await store.get(tabs_name(1)) is None
        writer.offer(thumbnail_name(1), b"\xff\xd8\xff after")  # the interval holds again
        await asyncio.sleep(0.5)
        assert writer.writes == 2
    finally:
        await writer.close()


class _TimedStore(LocalBlobStore):
    """The local store, noting when each blob was handed to it."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.times: dict[str, list[float]] = {}

    async def put_many(self, blobs):
        now = time.monotonic()
        for name in blobs:
            self.times.setdefault(name, []).append(now)
        return await super().put_many(blobs)


async def test_a_class_in_view_is_written_spread_over_the_interval(tmp_path):
    """Students who come into view together are stored at once, then each on its own beat:
    the second writes spread over the next interval instead of coming back as one burst,
    never less than an interval after the first, and from then on one interval apart."""
    store = _TimedStore(tmp_path)
    interval = 1.0
    writer = LatestWriter(store, interval_s=interval)
    names = [thumbnail_name(sid) for sid in range(300)]
    try:
        started = time.monotonic()
        while time.monotonic() - started < 4.0:  # a class in view: a picture every 0.1 s
            for name in names:
                writer.offer(name, b"\xff\xd8\xff")
            await asyncio.sleep(0.1)
    finally:
        await writer.close()
        store._writer.shutdown(wait=True)
    times = [store.times.get(name, []) for name in names]
    assert all(len(t) >= 3 for t in times), sorted(len(t) for t in times)[:5]
    first = {t[0] for t in times}
    assert len(first) == 1  # one batch, at once
    gaps = [b - a for t in times for a, b in itertools.pairwise(t)]
    assert min(gaps) >= interval - 0.01
    seconds = [t[1] - t[0] for t in times]
    assert max(seconds) <= 2 * interval + BATCH_GAP_S + 0.5  # slack: a busy machine
    # spread over the interval in many batches (a burst puts them all in one); by batch,
    # not by the clock: a busy machine delays batches, not the spread
    batches = collections.Counter(t[1] for t in times)
    assert max(seconds) - min(seconds) >= 0.5 * interval, seconds
    assert max(batches.values()) <= 0.5 * len(names), batches
    thirds = [t[2] - t[1] for t in times]  # on its beat now: one interval, not a new offset
    assert max(thirds) <= interval + BATCH_GAP_S + 0.5


async def test_delete_counts_and_chunks_past_the_batch_limit(store):
    """Deleting more than one batch removes them all and counts only what existed."""
    names = [tabs_name(i) for i in range(BATCH_LIMIT + 20)]
    await asyncio.gather(*(store.put(n, b"[]") for n in names))
    deleted = await store.delete([*names, tabs_name(99999)])
    assert deleted == len(names)
    assert await _names(store) == []


async def _put_all(store, names, data=b"[]"):
    sem = asyncio.Semaphore(32)

    async def put(name):
        async with sem:
            await store.put(name, data)

    await asyncio.gather(*(put(n) for n in names))


def _count_single_deletes(store, monkeypatch):
    """How many single deletes the store's thread client makes (the batch path makes none)."""
    calls = []
    real = store._sync_container.delete_blob

    def counted(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(store._sync_container, "delete_blob", counted)
    return calls


async def test_azure_batch_delete_with_blobs_already_gone(azure_store, monkeypatch):
    """Azurite takes blob batches (the synchronous client's boundary): a delete of 360 names
    goes as two batches, the 100 names already gone (never written, or deleted just before)
    answer 404 inside them, count as gone, and every other blob of both batches is deleted;
    no single delete is needed."""
    names = [tabs_name(i) for i in range(300)]
    await _put_all(azure_store, names)
    gone = names[::7][:40]
    assert await azure_store.delete(gone) == 40
    ghosts = [thumbnail_name(1000 + i) for i in range(60)]
    singles = _count_single_deletes(azure_store, monkeypatch)
    # interleaved, so that both batches hold blobs that are there and names that are not
    todo = [n for pair in itertools.zip_longest(names, ghosts) for n in pair if n]
    deleted = await azure_store.delete(todo)
    assert deleted == 300 - 40
    assert azure_store.batch_delete_works is True
    assert singles == []
    assert await _names(azure_store) == []


async def test_azure_batch_leaves_one_blob_the_rest_of_the_batch_stays_deleted(
    azure_store, monkeypatch
):
    """A sub-request that fails for another reason than 404 (a leased blob: 412) is tried
    once more alone; when that fails too, the call fails with a clear error, and the other
    blobs of the same batch stay deleted."""
    names = [tabs_name(i) for i in range(20)]
    await _put_all(azure_store, names)
    lease = await azure_store._container.get_blob_client(names[7]).acquire_lease()
    singles = _count_single_deletes(azure_store, monkeypatch)
    with pytest.raises(BlobStoreError, match="delete failed"):
        await azure_store.delete(names)
    assert singles == [names[7]]
    assert azure_store.batch_delete_works is True
    assert await _names(azure_store) == [names[7]]
    await lease.release()
    assert await azure_store.delete(names) == 1
    assert await _names(azure_store) == []


async def test_azure_falls_back_to_single_deletes_where_the_batch_is_refused(
    azure_store, monkeypatch
):
    """A batch request the service refuses as a whole (here Azurite's own refusal of more
    than 256 sub-requests, 400 ExceedsMaxBatchRequestCount, with the limit raised on our
    side) deletes nothing itself: every blob is then deleted alone, 404s count as gone,
    and later calls go straight to single deletes."""
    monkeypatch.setattr(azure_module, "BATCH_LIMIT", 300)
    names = [tabs_name(i) for i in range(270)]
    await _put_all(azure_store, names)
    singles = _count_single_deletes(azure_store, monkeypatch)
    assert await azure_store.delete([*names, tabs_name(9999)]) == 270
    assert azure_store.batch_delete_works is False
    assert len(singles) == 271
    assert await _names(azure_store) == []
    await _put_all(azure_store, names[:3])
    assert await azure_store.delete([*names[:3], tabs_name(9999)]) == 3
    assert len(singles) == 275  # no batch tried again
    assert await _names(azure_store) == []


@pytest.fixture
async def worker_store(azurite):
    store = AzureBlobStore(azurite.connection_string, "w" + os.urandom(5).hex(), worker=True)
    await store.check()
    try:
        yield store
    finally:
        await store.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_azure_worker_lists_and_deletes_in_a_process_of_its_own(worker_store, monkeypatch):
    """The server's store lists and deletes in its worker process, not in the server's:
    a listing over more than one hand-off and a delete over two batches with names already
    gone come back whole and counted right; the worker runs at a lower priority, with no
    secret on its command line and none of the server's settings in its environment;
    closing the store ends the worker."""
    from klasblik.server.storage.blobs.azure import LIST_CHUNK

    monkeypatch.setenv("KLASBLIK_AZURE_CONNECTION_STRING", "AccountKey=not-for-the-worker")
    store = worker_store
    names = [tabs_name(i) for i in range(LIST_CHUNK + 30)]
    await _put_all(store, names)
    assert store.worker_pid is None  # started on first use
    listed = [b async for b in store.list("students/")]
    assert sorted(b.name for b in listed) == sorted(names)
    assert all(b.size == 2 and b.last_modified.utcoffset() == dt.timedelta(0) for b in listed)
    pid = store.worker_pid
    assert pid is not None and pid != os.getpid() and _alive(pid)
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read().split(b"\0")
    assert not [v for v in environ if v.startswith(b"KLASBLIK_")]
    assert any(v.startswith(b"PATH=") for v in environ)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"AccountKey" not in f.read()  # the connection string came over stdin
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 10
    assert await store.delete([*names, tabs_name(9999), thumbnail_name(1)]) == len(names)
    assert store.batch_delete_works is True
    assert await _names(store) == []
    assert store._worker is not None and store._worker.starts == 1
    await store.close()
    assert store.worker_pid is None and not _alive(pid)


async def test_azure_worker_that_dies_fails_its_calls_clearly_and_is_started_again(
    worker_store,
):
    """Killing the worker in the middle of a listing fails that listing with a clear
    BlobStoreError (never a short list that looks whole); the next call starts a new
    worker and works."""
    from klasblik.server.storage.blobs.azure import LIST_CHUNK

    store = worker_store
    names = [tabs_name(i) for i in range(LIST_CHUNK * 2 + 5)]
    await _put_all(store, names)
    seen: list[str] = []
    with pytest.raises(BlobStoreError, match="worker process ended|listing was lost"):
        async for info in store.list():
            seen.append(info.name)
            if len(seen) == 1:
                pid = store.worker_pid
                assert pid is not None
                os.kill(pid, 9)
    assert 0 < len(seen) < len(names)
    assert await store.delete(names[:10]) == 10
    assert store._worker is not None and store._worker.starts == 2
    assert store.worker_pid != pid
    assert len(await _names(store)) == len(names) - 10


async def test_azure_worker_falls_back_to_single_deletes_and_its_log_reaches_the_server(
    worker_store, monkeypatch, caplog
):
    """A batch the service refuses as a whole (more than 256 sub-requests, with the limit
    raised on the server's side) makes the worker delete one by one; its warning is logged
    by the server, under the store's logger, and later calls skip the batch."""
    monkeypatch.setattr(azure_module, "BATCH_LIMIT", 300)
    store = worker_store
    names = [tabs_name(i) for i in range(270)]
    await _put_all(store, names)
    with caplog.at_level("WARNING", logger="klasblik.server.storage.blobs.azure_bulk"):
        assert await store.delete([*names, tabs_name(9999)]) == 270
    assert store.batch_delete_works is False
    assert [r.getMessage() for r in caplog.records if "batch delete" in r.getMessage()] == [
        "blob batch delete is not available here (answers [400]); using single deletes"
    ]
    assert await _names(store) == []


async def test_the_server_opens_azure_with_its_worker(azurite):
    """``open_blob_store`` (the server's and the CLI's way in) gives the store that lists
    and deletes in a worker process."""
    from klasblik.server.storage.blobs import open_blob_store

    store = open_blob_store("azure:serverway", azurite.connection_string)
    assert isinstance(store, AzureBlobStore)
    try:
        await store.check()
        assert await _names(store) == []
        assert store.worker_pid is not None
    finally:
        await store.close()


def test_a_worker_without_a_connection_string_needs_a_managed_identity():
    """A credential object cannot cross to the worker: a worker store is made with a
    connection string or by ``with_identity``."""
    with pytest.raises(ValueError, match="managed identity"):
        AzureBlobStore(
            "",
            "container",
            account_url="https://example.blob.core.windows.net",
            credential=object(),  # type: ignore[arg-type]  # never used: refused first
            worker=True,
        )


@pytest.mark.parametrize("worker", [False, True], ids=["threads", "worker"])
async def test_azure_listing_and_deleting_a_store_that_is_down_fail_clearly(worker):
    """The store threads' and the worker process's errors reach the caller as
    BlobStoreError, nothing hangs."""
    from tests.support.azurite import connection_string, free_port

    store = AzureBlobStore(
        connection_string(free_port()),
        "gone",
        retry_total=0,
        background_retries=0,
        worker=worker,
    )
    try:
        with pytest.raises(BlobStoreError, match="cannot list blobs"):
            await _names(store)
        with pytest.raises(BlobStoreError, match="failed"):
            await store.delete([tabs_name(1), tabs_name(2)])
    finally:
        await store.close()


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


async def test_local_spare_still_holding_an_old_picture_leaves_no_tail_of_it(tmp_path):
    """The spare is not opened with O_TRUNC (storage/blobs/local.py): a spare that still
    holds a longer old picture (a crash between the exchange and its cut) is written over
    and cut to the new content's length, so the stored blob is exactly the new picture and
    the spare is empty again afterwards."""
    store = LocalBlobStore(tmp_path / "blobs")
    try:
        name = thumbnail_name(8)
        await store.put(name, b"\xff\xd8\xff first")
        spare = store.root / "students" / "8" / (store._spare + "thumbnail")
        old = b"\xff\xd8\xff an old picture, longer than the new one " * 40
        spare.write_bytes(old)  # as a crash right after the exchange would leave it
        await store.put(name, b"\xff\xd8\xff new")
        blob = await store.get(name)
        assert blob is not None and blob.data == b"\xff\xd8\xff new"
        assert spare.stat().st_size == 0  # the spare, holding "first" after the exchange, cut
        await store.put(name, b"\xff\xd8\xff newer")  # and the next write from an empty spare
        blob = await store.get(name)
        assert blob is not None and blob.data == b"\xff\xd8\xff newer"
        assert (
            sorted(f.name for f in spare.parent.iterdir()) == sorted([spare.name, "thumbnail"])
            and spare.stat().st_size == 0
        )
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


@pytest.mark.parametrize("worker", [False, True], ids=["threads", "worker"])
async def test_azure_listing_and_deleting_sign_in_with_the_managed_identity_too(
    tmp_path, monkeypatch, worker
):
    """Without an account key, the synchronous client of listing and deleting, on the
    store's threads or in its worker process, signs in with the managed identity on its own
    (its own DefaultAzureCredential), over TLS trusted through SSL_CERT_FILE as the
    asynchronous client's is: Azurite (``--oauth basic``) lists and deletes for it. The
    blobs are written beforehand with the account key, so that only that client talks as
    the server here."""
    from azure.storage.blob import BlobServiceClient as SyncService

    from tests.ops.test_azure_identity import GOOD_CLIENT, IdentityEndpoint
    from tests.support.azurite import KEY, Azurite
    from tests.support.oidc import make_localhost_cert

    cert, key = make_localhost_cert(tmp_path)
    azurite = Azurite(extra_args=("--oauth", "basic", "--cert", str(cert), "--key", str(key)))
    azurite.start()
    identity = IdentityEndpoint()
    await identity.start()
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_")) or name in (
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.url)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    url = f"https://127.0.0.1:{azurite.port}/devstoreaccount1"
    names = [tabs_name(i) for i in range(3)]

    def seed() -> None:
        admin = SyncService(
            url,
            credential={"account_name": "devstoreaccount1", "account_key": KEY},
            connection_verify=str(cert),
        )
        with admin:
            container = admin.create_container("mithreads")
            for name in names:
                container.upload_blob(name, b"[]")

    store = AzureBlobStore.with_identity(url, "mithreads", GOOD_CLIENT, worker=worker)
    try:
        await asyncio.to_thread(seed)
        assert sorted(await _names(store)) == sorted(names)
        assert await store.delete([*names, tabs_name(99)]) == 3
        assert await _names(store) == []
        assert [c for c in identity.calls if c.get("client_id") == GOOD_CLIENT]
        assert all(c["header"] == identity.header for c in identity.calls)
    finally:
        await store.close()
        if identity.runner is not None:
            await identity.runner.cleanup()
        azurite.stop()
