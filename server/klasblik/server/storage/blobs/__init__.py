"""Where the latest thumbnail and tab list of each student live: local folder or Azure Blob Storage."""

from __future__ import annotations

from klasblik.server.storage.blobs.base import BlobStore
from klasblik.server.storage.blobs.local import LocalBlobStore

__all__ = ["open_blob_store"]


def open_blob_store(spec: str, azure_connection_string: str = "") -> BlobStore:
    """Open the store a ``blob_store`` setting names: ``file:PATH`` or ``azure:CONTAINER``."""
    kind, _, where = spec.partition(":")
    if kind == "file":
        return LocalBlobStore(where)
    if kind == "azure":
        from klasblik.server.storage.blobs.azure import AzureBlobStore

        return AzureBlobStore(azure_connection_string, where)
    raise ValueError(f"unknown blob store {spec!r}")
