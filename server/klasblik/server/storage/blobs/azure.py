"""The blob store in Azure Blob Storage, through ``azure-storage-blob``: its asynchronous
client for writes and reads, its synchronous one on the store's threads for listing and
deleting.

The container is private: it is created without public access when missing, and a
container that allows anonymous reads is refused by :meth:`AzureBlobStore.check`. The
dashboard gets images only through the server, after authorisation.

:meth:`AzureBlobStore.check` also refuses an account with blob soft delete (the blob
service's ``DeleteRetentionPolicy``) or blob versioning (a write answered with an
``x-ms-version-id``): either keeps every overwritten or deleted screenshot past 48 hours.
Versioning is a management-plane setting that the data-plane API does not report, so it
is detected by writing a probe blob and looking for the version id in the answer.

Listing and deleting (the sweep, the nightly purge, a subject's erasure: thousands of
blobs) go through the SDK's synchronous client (``azure_bulk.py``), in the server in a
worker process of its own (``worker=True``, what ``open_blob_store`` opens), so that parsing
listing pages and building and reading batch requests never holds the server's GIL: the
event loop gets the listing ``LIST_CHUNK`` blobs per answer and a count per delete batch.
Without ``worker`` the same code runs on the store's threads in the server's process (tests
and tools); there its GIL hand-overs stalled the whole process for 13–22 ms at a time
during a sweep. Through the asynchronous client the same work ran on the loop in pieces of
10–30 ms (the SDK parses a page at about 150 µs a blob, and builds and reads a batch of 256
with Python's ``email`` package, about 30 ms each way; bench/retention_stalls.py). Writes,
reads and ``existing`` stay on the asynchronous client: they are small and on the live path.

Deletes go in batches of at most 256 (the service's limit; the SDK does not chunk), up to
``DELETE_THREADS`` at once. A sub-request answered 404 counts as gone; one that failed
otherwise (throttled, leased) is tried once more alone. Where batch delete is not
available (the service refuses the batch request itself), the store falls back to single
deletes and remembers that for the next call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient as SyncContainerClient
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, LinearRetry

from klasblik.server.storage.blobs.azure_bulk import (
    DELETE_THREADS,
    LIST_PAGE,
    BulkSide,
    BulkWorker,
    Recipe,
    from_timestamp,
    sync_service,
    why,
)
from klasblik.server.storage.blobs.base import (
    Blob,
    BlobInfo,
    BlobStoreError,
    BlobStoreRefused,
    check_name,
    sniff_content_type,
)

__all__ = ["BATCH_LIMIT", "LIST_PAGE", "AzureBlobStore"]

log = logging.getLogger(__name__)

#: Most sub-requests one blob batch may carry (Azure's limit).
BATCH_LIMIT = 256
#: The blob written by ``check`` to find out whether the account keeps versions.
PROBE_NAME = "klasblik-probe/versioning"
#: Listed blobs handed to the event loop at a time.
LIST_CHUNK = 250
#: Tries after the first for a listing page or a delete batch (deletes are idempotent).
BACKGROUND_RETRIES = 5
#: Existence checks in flight at once (``existing``).
EXISTS_CONCURRENCY = 16


class AzureBlobStore:
    """Blobs in one private Azure container; the same interface as ``LocalBlobStore``."""

    def __init__(
        self,
        connection_string: str,
        container: str,
        *,
        retry_total: int = 2,
        background_retries: int = BACKGROUND_RETRIES,
        connection_timeout: float = 5,
        read_timeout: float = 30,
        account_url: str = "",
        credential: AsyncTokenCredential | None = None,
        sync_credential: TokenCredential | None = None,
        worker: bool = False,
        worker_client_id: str | None = None,
    ) -> None:
        """``worker``: list and delete in a worker process (``azure_bulk.py``), not on
        threads of this one. Without a connection string the worker signs in with
        ``DefaultAzureCredential`` for ``worker_client_id`` ("" the default identity; set
        by :meth:`with_identity`), since a credential object cannot cross to it."""
        if worker and not connection_string and worker_client_id is None:
            raise ValueError(
                "a blob store worker signs in with a connection string or a managed "
                "identity (AzureBlobStore.with_identity)"
            )
        if not connection_string and not (
            account_url and credential is not None and (sync_credential is not None or worker)
        ):
            raise ValueError(
                "an Azure connection string, or an account URL and a credential, is needed "
                "for the azure blob store"
            )
        if not (3 <= len(container) <= 63) or not all(
            c.isdigit() or (c.isascii() and c.islower()) or c == "-" for c in container
        ):
            raise ValueError(
                f"invalid Azure container name {container!r}: 3-63 lower-case letters, "
                "digits and hyphens"
            )
        self.container_name = container
        # Short, even back-offs: a write that cannot land within about a second is dropped
        # (the next frame brings a newer one); the SDK's default waits 15 s and more between
        # tries, and its exponential policy still about 7 s per write to a store that is down.
        options: dict[str, Any] = {
            "retry_policy": LinearRetry(
                backoff=0.4,  # type: ignore[arg-type]  # seconds; the SDK takes floats
                retry_total=retry_total,
                random_jitter_range=0.2,  # type: ignore[arg-type]
            ),
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        self._credential = credential
        self._sync_credential = sync_credential
        recipe: Recipe = {
            "connection_string": connection_string,
            "account_url": account_url,
            "client_id": worker_client_id or "",
            "container": container,
            "background_retries": background_retries,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        if connection_string:
            self._service = BlobServiceClient.from_connection_string(connection_string, **options)
        else:
            self._service = BlobServiceClient(account_url, credential=credential, **options)
        self._container: ContainerClient = self._service.get_container_client(container)
        #: the worker process that lists and deletes (``worker``); without one, ``_bulk``
        #: does it here, on ``_pool``'s threads only
        self._worker = BulkWorker(recipe) if worker else None
        self._bulk: BulkSide | None = None
        if self._worker is None:
            self._sync_service = sync_service(recipe, sync_credential)
            self._bulk = BulkSide(self._sync_service.get_container_client(container))
            self._pool = ThreadPoolExecutor(DELETE_THREADS, thread_name_prefix="azure-blobs")
        self._ready = False
        self._ready_lock = asyncio.Lock()
        #: Set by :meth:`check` when the container allows anonymous reads: no writes then.
        self.public_access: str | None = None

    @property
    def batch_delete_works(self) -> bool | None:
        """None until the first batch tells whether batch delete works here."""
        side = self._worker or self._bulk
        return side.batch_delete_works if side is not None else None

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id while one runs (``worker``)."""
        return self._worker.pid if self._worker is not None else None

    @property
    def _sync_container(self) -> SyncContainerClient:
        """The synchronous client of listing and deleting in this process (no ``worker``)."""
        if self._bulk is None:
            raise AttributeError("this store lists and deletes in its worker process")
        return self._bulk.container

    @classmethod
    def with_identity(
        cls, account_url: str, container: str, client_id: str = "", *, worker: bool = False
    ) -> AzureBlobStore:
        """A store that signs in with Microsoft Entra ID, no account key: on Azure the
        app's managed identity (``client_id`` names a user-assigned one), elsewhere
        whatever ``DefaultAzureCredential`` finds (environment, workload identity, CLI).
        With ``worker``, the worker process signs in the same way on its own."""
        from azure.identity import DefaultAzureCredential as SyncDefaultAzureCredential
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(
            managed_identity_client_id=client_id or None,
            exclude_interactive_browser_credential=True,
        )
        sync_credential = None
        if not worker:
            sync_credential = SyncDefaultAzureCredential(
                managed_identity_client_id=client_id or None,
                exclude_interactive_browser_credential=True,
            )
        return cls(
            "",
            container,
            account_url=account_url,
            credential=credential,
            sync_credential=sync_credential,
            worker=worker,
            worker_client_id=client_id if worker else None,
        )

    async def _ensure_container(self, force: bool = False) -> None:
        if self._ready and not force:
            return
        async with self._ready_lock:
            if self._ready and not force:
                return
            try:
                await self._container.create_container()  # no public_access: private
                log.info("created private blob container %s", self.container_name)
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise BlobStoreError(f"azure container {self.container_name}: {why(exc)}") from exc
            self._ready = True

    async def put(self, name: str, data: bytes) -> None:
        check_name(name)
        if self.public_access:
            raise BlobStoreError(
                f"azure container {self.container_name} is refused "
                f"({self.public_access}); writes refused until that is fixed"
            )
        await self._ensure_container()
        settings = ContentSettings(content_type=sniff_content_type(data))
        for attempt in (1, 2):
            try:
                await self._container.upload_blob(
                    name, data, overwrite=True, content_settings=settings
                )
                return
            except ResourceNotFoundError as exc:
                # The container went away (emulator restarted, deleted by hand): make it again.
                if attempt == 2:
                    raise BlobStoreError(f"cannot write {name}: {why(exc)}") from exc
                await self._ensure_container(force=True)
            except AzureError as exc:
                self._ready = False
                raise BlobStoreError(f"cannot write {name}: {why(exc)}") from exc

    async def get(self, name: str) -> Blob | None:
        check_name(name)
        try:
            downloader = await self._container.download_blob(name)
            data = await downloader.readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise BlobStoreError(f"cannot read {name}: {why(exc)}") from exc
        props = downloader.properties
        content_type = props.content_settings.content_type or sniff_content_type(data)
        return Blob(data, content_type, props.last_modified)

    async def delete(self, names: Iterable[str]) -> int:
        todo = list(dict.fromkeys(names))
        for name in todo:
            check_name(name)
        chunks = [todo[i : i + BATCH_LIMIT] for i in range(0, len(todo), BATCH_LIMIT)]
        worker = self._worker
        if worker is not None:
            counts = await asyncio.gather(*(worker.call("delete", names=c) for c in chunks))
            return sum(counts)
        bulk = self._bulk
        assert bulk is not None
        loop = asyncio.get_running_loop()
        counts = await asyncio.gather(
            *(loop.run_in_executor(self._pool, bulk.delete_chunk, c) for c in chunks)
        )
        return sum(counts)

    async def existing(self, names: Iterable[str]) -> set[str]:
        """One call, a bounded number of property reads in flight: a class's thumbnails
        are spread over the container, where one listing would read every student's."""
        todo = list(dict.fromkeys(names))
        for name in todo:
            check_name(name)
        names_left = iter(todo)
        found: set[str] = set()

        async def worker() -> None:
            for name in names_left:
                try:
                    await self._container.get_blob_client(name).get_blob_properties()
                    found.add(name)
                except ResourceNotFoundError:
                    pass

        try:
            await asyncio.gather(*(worker() for _ in range(min(EXISTS_CONCURRENCY, len(todo)))))
        except AzureError as exc:
            raise BlobStoreError(f"cannot read blob properties: {why(exc)}") from exc
        return found

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Streamed: pages are read and parsed in the worker (or on a store thread),
        ``LIST_CHUNK`` blobs per hand-off to the event loop; never built whole."""
        worker = self._worker
        if worker is not None:
            lid = worker.next_listing()
            first = True
            done = False
            try:
                while True:
                    args: dict[str, Any] = {"lid": lid, "n": LIST_CHUNK}
                    if first:
                        args["prefix"] = prefix
                        first = False
                    rows = await worker.call("list", **args)
                    for name, size, ts in rows:
                        yield BlobInfo(name, size, from_timestamp(ts))
                    if len(rows) < LIST_CHUNK:
                        done = True
                        return
            finally:
                if not done:
                    worker.forget(lid)
        bulk = self._bulk
        assert bulk is not None
        pages = bulk.listing(prefix)
        loop = asyncio.get_running_loop()
        while True:
            chunk = await loop.run_in_executor(self._pool, bulk.take, pages, LIST_CHUNK)
            for info in chunk:
                yield info
            if len(chunk) < LIST_CHUNK:
                return

    async def check(self) -> None:
        await self._ensure_container()
        try:
            props: Any = await self._container.get_container_properties()
        except AzureError as exc:
            self._ready = False
            raise BlobStoreError(f"azure container {self.container_name}: {why(exc)}") from exc
        self.public_access = props.public_access or None
        if props.public_access:
            raise BlobStoreError(
                f"azure container {self.container_name} allows public access "
                f"({props.public_access}); set it to private"
            )
        await self.check_no_history()

    async def check_no_history(self) -> None:
        """Refuse (:class:`BlobStoreRefused`) an account that keeps deleted blobs (soft
        delete) or overwritten ones (versioning); writes are refused too until fixed."""
        try:
            service: Any = await self._service.get_service_properties()
        except AzureError as exc:
            raise BlobStoreError(
                f"cannot read the blob service properties (needed to check soft delete): {why(exc)}"
            ) from exc
        policy = service.get("delete_retention_policy")
        if policy is not None and policy.enabled:
            self.public_access = "soft delete"
            raise BlobStoreRefused(
                f"the storage account keeps deleted blobs for {policy.days} day(s) (blob soft "
                "delete): a deleted screenshot would outlive 48 hours. Turn blob soft delete "
                "off (deploy/azure/main.bicep does)"
            )
        probe = self._container.get_blob_client(PROBE_NAME)
        try:
            answer: Any = await probe.upload_blob(b"", overwrite=True)
            await probe.delete_blob()
            if answer.get("version_id"):  # the probe's own version goes too
                await probe.delete_blob(version_id=answer["version_id"])
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise BlobStoreError(f"cannot write the probe blob: {why(exc)}") from exc
        finally:
            await probe.close()
        if answer.get("version_id"):
            self.public_access = "versioning"
            raise BlobStoreRefused(
                "the storage account keeps a version of every overwritten blob (blob "
                "versioning): old screenshots would outlive 48 hours. Turn versioning off"
            )

    async def close(self) -> None:
        await self._container.close()
        await self._service.close()
        if self._credential is not None:
            await self._credential.close()

        if self._worker is not None:
            await self._worker.close()
            return
        bulk = self._bulk
        assert bulk is not None

        def close_sync() -> None:
            self._pool.shutdown(wait=True)
            bulk.container.close()
            self._sync_service.close()
            if self._sync_credential is not None:
                close = getattr(self._sync_credential, "close", None)
                if close is not None:
                    close()

        await asyncio.to_thread(close_sync)
