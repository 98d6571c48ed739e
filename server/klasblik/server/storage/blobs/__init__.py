"""Where the latest thumbnail and tab list of each student live: local folder or Azure Blob Storage."""

from __future__ import annotations

from klasblik.server.storage.blobs.base import BlobStore
from klasblik.server.storage.blobs.local import LocalBlobStore

__all__ = ["open_blob_store"]


def open_blob_store(
    spec: str,
    azure_connection_string: str = "",
    azure_account_url: str = "",
    azure_client_id: str = "",
) -> BlobStore:
    """Open the store a ``blob_store`` setting names: ``file:PATH`` or ``azure:CONTAINER``
    (with a connection string, or with an account URL and Microsoft Entra ID sign-in; its
    listing and deleting in a worker process, away from the event loop's GIL)."""
    kind, _, where = spec.partition(":")
    if kind == "file":
        return LocalBlobStore(where)
    if kind == "azure":
        from klasblik.server.storage.blobs.azure import AzureBlobStore

        if azure_account_url and not azure_connection_string:
            return AzureBlobStore.with_identity(
                azure_account_url, where, azure_client_id, worker=True
            )
        return AzureBlobStore(azure_connection_string, where, worker=True)
    raise ValueError(f"unknown blob store {spec!r}")
