"""Fixtures for Microsoft 365 sign-in and roster tests: the OpenID Connect provider in a
thread over TLS, a Klasblik server pointed at it, and a spy on the Graph clients the
roster sync opens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from klasblik.server.roster.graph import GraphClient
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


@pytest.fixture
def graph_clients(monkeypatch) -> list[GraphClient]:
    """Every Graph client the roster sync opens through ``roster.jobs.graph_for`` (the
    scheduled job and ``klasblik roster sync``), for checking that each was closed. A spy:
    the clients work unchanged."""
    from klasblik.server.roster import jobs as roster_jobs

    opened: list[GraphClient] = []

    class Spy(GraphClient):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(roster_jobs, "GraphClient", Spy)
    return opened
