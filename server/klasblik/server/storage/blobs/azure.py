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
blobs) run on the store's own threads through the SDK's synchronous client, so that
parsing listing pages and building and reading batch requests never holds the event loop:
the loop gets the listing ``LIST_CHUNK`` blobs per hand-off and a count per delete batch.
Through the asynchronous client the same work ran on the loop in pieces of 10–30 ms (the
SDK parses a page at about 150 µs a blob, and builds and reads a batch of 256 with Python's
``email`` package, about 30 ms each way; bench/retention_stalls.py). Writes, reads and
``existing`` stay on the asynchronous client: they are small and on the live path.

Deletes go in batches of at most 256 (the service's limit; the SDK does not chunk), up to
``DELETE_THREADS`` at once. A sub-request answered 404 counts as gone; one that failed
otherwise (throttled, leased) is tried once more alone. Where batch delete is not
available (the service refuses the batch request itself), the store falls back to single
deletes and remembers that for the next call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient as SyncBlobServiceClient
from azure.storage.blob import ContainerClient as SyncContainerClient
from azure.storage.blob import ContentSettings
from azure.storage.blob import LinearRetry as SyncLinearRetry
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, LinearRetry

from klasblik.server.storage.blobs.base import (
    Blob,
    BlobInfo,
    BlobStoreError,
    BlobStoreRefused,
    check_name,
    sniff_content_type,
)

__all__ = ["BATCH_LIMIT", "AzureBlobStore"]

log = logging.getLogger(__name__)

#: Most sub-requests one blob batch may carry (Azure's limit).
BATCH_LIMIT = 256
#: The blob written by ``check`` to find out whether the account keeps versions.
PROBE_NAME = "klasblik-probe/versioning"
#: Blobs per listing page. A page is parsed on a store thread, but its XML in one C call
#: that holds the GIL (and so the event loop) throughout: 1.7 ms for 250 blobs, 8 ms for
#: 1,000, 69 ms for the service's default 5,000. 250 means 400 requests per 100,000 blobs.
LIST_PAGE = 250
#: Listed blobs handed to the event loop at a time.
LIST_CHUNK = 250
#: The store's threads for listing and deleting: batches (or single deletes) in flight at
#: once. Each holds the GIL while it builds or reads a batch, so the event loop waits for
#: them now and then (bench/retention_stalls.py shows how long: the process CPU in a tick);
#: two keep a listing page and a delete batch going at once, more gained nothing on Azurite.
DELETE_THREADS = 2
#: Tries after the first for a listing page or a delete batch (deletes are idempotent).
BACKGROUND_RETRIES = 5
#: Existence checks in flight at once (``existing``).
EXISTS_CONCURRENCY = 16


def _why(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{code}: {text}" if code else text


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
    ) -> None:
        if not connection_string and not (
            account_url and credential is not None and sync_credential is not None
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
        sync_options = {
            **options,
            "retry_policy": SyncLinearRetry(
                backoff=0.4,  # type: ignore[arg-type]
                # background work can wait: more tries, each on another pooled connection
                # (a benchmark run once met a reset connection on all of three tries)
                retry_total=background_retries,
                random_jitter_range=0.2,  # type: ignore[arg-type]
            ),
        }
        # the asynchronous client (aiohttp, ssl) trusts SSL_CERT_FILE; requests would not
        ca_file = os.environ.get("SSL_CERT_FILE")
        if ca_file and not os.environ.get("REQUESTS_CA_BUNDLE"):
            sync_options["connection_verify"] = ca_file
        if connection_string:
            self._service = BlobServiceClient.from_connection_string(connection_string, **options)
            sync_service = SyncBlobServiceClient.from_connection_string(
                connection_string, **sync_options
            )
        else:
            self._service = BlobServiceClient(account_url, credential=credential, **options)
            sync_service = SyncBlobServiceClient(
                account_url, credential=sync_credential, **sync_options
            )
        self._container: ContainerClient = self._service.get_container_client(container)
        #: the synchronous client of listing and deleting, used only on ``_pool``'s threads
        self._sync_service = sync_service
        self._sync_container: SyncContainerClient = sync_service.get_container_client(container)
        self._pool = ThreadPoolExecutor(DELETE_THREADS, thread_name_prefix="azure-blobs")
        self._ready = False
        self._ready_lock = asyncio.Lock()
        #: None until the first batch tells whether batch delete works here.
        self.batch_delete_works: bool | None = None
        #: Set by :meth:`check` when the container allows anonymous reads: no writes then.
        self.public_access: str | None = None

    @classmethod
    def with_identity(cls, account_url: str, container: str, client_id: str = "") -> AzureBlobStore:
        """A store that signs in with Microsoft Entra ID, no account key: on Azure the
        app's managed identity (``client_id`` names a user-assigned one), elsewhere
        whatever ``DefaultAzureCredential`` finds (environment, workload identity, CLI)."""
        from azure.identity import DefaultAzureCredential as SyncDefaultAzureCredential
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(
            managed_identity_client_id=client_id or None,
            exclude_interactive_browser_credential=True,
        )
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
                raise BlobStoreError(f"azure container {self.container_name}: {_why(exc)}") from exc
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
                    raise BlobStoreError(f"cannot write {name}: {_why(exc)}") from exc
                await self._ensure_container(force=True)
            except AzureError as exc:
                self._ready = False
                raise BlobStoreError(f"cannot write {name}: {_why(exc)}") from exc

    async def get(self, name: str) -> Blob | None:
        check_name(name)
        try:
            downloader = await self._container.download_blob(name)
            data = await downloader.readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise BlobStoreError(f"cannot read {name}: {_why(exc)}") from exc
        props = downloader.properties
        content_type = props.content_settings.content_type or sniff_content_type(data)
        return Blob(data, content_type, props.last_modified)

    async def delete(self, names: Iterable[str]) -> int:
        todo = list(dict.fromkeys(names))
        for name in todo:
            check_name(name)
        loop = asyncio.get_running_loop()
        counts = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, self._delete_chunk, todo[i : i + BATCH_LIMIT])
                for i in range(0, len(todo), BATCH_LIMIT)
            )
        )
        return sum(counts)

    def _delete_chunk(self, chunk: list[str]) -> int:
        """On a store thread: one batch of at most ``BATCH_LIMIT``; what it did not delete,
        one by one. 404 (already gone), in a batch or alone, counts as gone."""
        if not chunk:
            return 0
        if self.batch_delete_works is not False and len(chunk) > 1:
            try:
                responses = list(
                    self._sync_container.delete_blobs(*chunk, raise_on_any_failure=False)
                )
            except ResourceNotFoundError:
                return 0  # no container: nothing to delete
            except AzureError as exc:
                if not _looks_unsupported(exc):
                    raise BlobStoreError(f"batch delete failed: {_why(exc)}") from exc
                responses = []
            statuses = [getattr(r, "status_code", 0) for r in responses]
            if len(statuses) != len(chunk):
                # the batch request itself was refused (no answer per blob): none deleted
                if self.batch_delete_works is None:
                    log.warning(
                        "blob batch delete is not available here (answers %s); using "
                        "single deletes",
                        sorted(set(statuses)) or "none",
                    )
                    self.batch_delete_works = False
                return self._delete_singles(chunk)
            self.batch_delete_works = True
            # 202 deleted, 404 already gone; anything else (throttled, failed) one by one
            left = [n for n, s in zip(chunk, statuses, strict=True) if s not in (202, 404)]
            if left:
                log.warning(
                    "a blob batch delete left %d of %d blob(s) (answers %s); deleting those "
                    "one by one",
                    len(left),
                    len(chunk),
                    sorted(set(statuses)),
                )
            return sum(1 for s in statuses if s == 202) + self._delete_singles(left)
        return self._delete_singles(chunk)

    def _delete_singles(self, names: list[str]) -> int:
        deleted = 0
        for name in names:
            try:
                self._sync_container.delete_blob(name)
                deleted += 1
            except ResourceNotFoundError:
                pass
            except AzureError as exc:
                raise BlobStoreError(f"delete failed: {_why(exc)}") from exc
        return deleted

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
            raise BlobStoreError(f"cannot read blob properties: {_why(exc)}") from exc
        return found

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        """Streamed: pages are read and parsed on a store thread, ``LIST_CHUNK`` blobs per
        hand-off to the event loop; never built whole."""
        pages = iter(
            self._sync_container.list_blobs(
                name_starts_with=prefix or None, results_per_page=LIST_PAGE
            )
        )
        loop = asyncio.get_running_loop()
        while True:
            chunk = await loop.run_in_executor(self._pool, _take_infos, pages, LIST_CHUNK)
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
            raise BlobStoreError(f"azure container {self.container_name}: {_why(exc)}") from exc
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
                f"cannot read the blob service properties (needed to check soft delete): "
                f"{_why(exc)}"
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
            raise BlobStoreError(f"cannot write the probe blob: {_why(exc)}") from exc
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

        def close_sync() -> None:
            self._pool.shutdown(wait=True)
            self._sync_container.close()
            self._sync_service.close()
            if self._sync_credential is not None:
                close = getattr(self._sync_credential, "close", None)
                if close is not None:
                    close()

        await asyncio.to_thread(close_sync)


def _take_infos(blobs: Iterator[Any], n: int) -> list[BlobInfo]:
    """On a store thread: the next ``n`` listed blobs (fewer at the end)."""
    try:
        return [
            BlobInfo(item.name, int(item.size or 0), item.last_modified)
            for item in itertools.islice(blobs, n)
        ]
    except ResourceNotFoundError:
        return []  # no container yet: no blobs
    except AzureError as exc:
        raise BlobStoreError(f"cannot list blobs: {_why(exc)}") from exc


def _looks_unsupported(exc: AzureError) -> bool:
    """True when a whole batch request was refused as a request shape the service lacks."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status in (400, 404, 405, 501) or "batch" in str(exc).lower()
