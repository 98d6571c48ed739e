"""Fixtures for Microsoft 365 sign-in and roster tests: the OpenID Connect provider in a
thread over TLS, a Klasblik server pointed at it, and a roster to sign in against."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.live import LiveServer, start_live_server
from tests.support.oidc import OidcProvider, run_provider


@pytest.fixture
def provider(tmp_path) -> Iterator[OidcProvider]:
    """The OIDC provider on https://localhost:PORT/<tenant>/v2.0."""
    folder = tmp_path / "oidc"
    folder.mkdir()
    with run_provider(folder) as p:
        yield p


@pytest.fixture
async def m365_server(tmp_path, provider) -> AsyncIterator[LiveServer]:
    """A live Klasblik server whose Microsoft 365 sign-in goes to ``provider``."""
    server = await start_live_server(tmp_path, **provider.settings())
    try:
        yield server
    finally:
        await server.stop()
