"""`klasblik roster sync` and `klasblik roster import` as an IT person runs them."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess

from klasblik.server import cli
from tests.m365.roster_fixture import fill
from tests.support.graph_emulator import EmulatorThread
from tests.support.process import KLASBLIK
from tests.support.timing import timeout

HEADER = (
    "Leerlingnummer;Roepnaam;Tussenvoegsel;Achternaam;Groep;M365 gebruikersnaam;BRIN;Vestiging\n"
)


def _env(tmp_path):
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("KLASBLIK_")},
        "KLASBLIK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/klasblik.db",
        "KLASBLIK_ENROLLMENT_TOKEN": "t",
    }


def test_roster_import_reports_counts(tmp_path):
    """A good file: exit 0 and a summary with what was created."""
    path = tmp_path / "leerlingen.csv"
    path.write_text(HEADER + "1001;Bram;de;Jong;7B;bram@school.example;12AB;00\n", encoding="utf-8")
    done = subprocess.run(
        [KLASBLIK, "roster", "import", str(path)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert done.returncode == 0, done.stderr
    assert (
        "imported leerlingen.csv: 1 lines; created 4 (class 1, location 1, school 1, student 1)"
        in done.stdout
    )


def test_roster_import_broken_line_exits_1_naming_it(tmp_path):
    """A broken line: exit 1, nothing changed, the line named on stderr."""
    path = tmp_path / "leerlingen.csv"
    path.write_text(
        HEADER + "1001;Bram;de;Jong;7B;bram@school.example;12AB;00\n"
        "1002;Eva;;Smit;;eva@school.example;12AB;00\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [KLASBLIK, "roster", "import", str(path)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert done.returncode == 1
    assert "leerlingen.csv: line 3: groep is empty" in done.stderr
    assert "nothing changed" in done.stderr


def test_roster_sync_without_tenant_says_what_is_missing(tmp_path):
    """Without the app registration, sync exits 1 and names the missing setting."""
    done = subprocess.run(
        [KLASBLIK, "roster", "sync"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert done.returncode == 1
    assert "m365_tenant_id is not set" in done.stderr


def _sync_env(tmp_path, provider, graph, monkeypatch, **extra):
    """This process's environment for ``klasblik roster sync`` (run in-process): the app
    registration at ``provider``, Graph at the emulator."""
    for k in [k for k in os.environ if k.startswith("KLASBLIK_")]:
        monkeypatch.delenv(k)
    settings = provider.settings(graph_url=graph.base_url, **extra)
    env = {**_env(tmp_path), **{f"KLASBLIK_{k.upper()}": str(v) for k, v in settings.items()}}
    for k, v in env.items():
        if k.startswith("KLASBLIK_"):
            monkeypatch.setenv(k, v)


def test_roster_sync_prints_progress_and_summary(
    tmp_path, provider, graph_clients, monkeypatch, capsys
):
    """`klasblik roster sync` gets an app token from the provider through msal's
    client-credentials grant, reads the emulator (which accepts only that token), prints
    progress and the counts, and closes its Graph client. Each run is its own process
    with its own msal client, so each asks for a token."""
    with EmulatorThread() as graph:
        graph.require_app_tokens(provider.jwks(), provider.tenant, provider.app_token_issuer)
        school = fill(graph)
        _sync_env(tmp_path, provider, graph, monkeypatch)
        assert cli.main(["roster", "sync"]) == 0
        first = capsys.readouterr().out
        graph.disable_user(school.t2)
        assert cli.main(["roster", "sync"]) == 0
        second = capsys.readouterr().out
    assert "roster sync: reading schools" in first
    assert "roster sync: school 12AB00 De Regenboog: 2 classes" in first
    assert (
        "roster sync done: created 9 (class 2, location 1, school 1, staff 2, student 3); "
        "updated 0; disabled 0; removed 0; throttled 0" in first
    )
    assert "roster sync done: created 0; updated 0; disabled 1 (staff 1); removed 0" in second
    assert "roster sync: app permissions: exactly what is needed" in first
    assert [(c.grant_type, c.status) for c in provider.token_calls] == [
        ("client_credentials", 200),
        ("client_credentials", 200),
    ]
    assert graph.seen_tokens and set(graph.seen_tokens) == set(provider.app_tokens)
    assert len(graph_clients) == 2 and all(g._http.closed for g in graph_clients)


def test_roster_sync_with_a_wrong_client_secret_says_why(
    tmp_path, provider, graph_clients, monkeypatch, capsys
):
    """A client secret Entra refuses: exit 1, one line on stderr with Entra's reason, no
    Graph request, nothing written but the failure itself (for the health report)."""
    with EmulatorThread() as graph:
        graph.require_app_tokens(provider.jwks(), provider.tenant, provider.app_token_issuer)
        fill(graph)
        _sync_env(tmp_path, provider, graph, monkeypatch, m365_client_secret="not-the-secret")
        assert cli.main(["roster", "sync"]) == 1
        out = capsys.readouterr()
        assert graph.requests == []
    [line] = out.err.splitlines()
    assert line.startswith("klasblik: roster sync failed, nothing changed: no Graph token")
    assert "invalid_client: AADSTS7000215: Invalid client secret provided." in line
    assert "roster sync done" not in out.out
    assert [c.status for c in provider.token_calls] == [401]
    assert len(graph_clients) == 1 and graph_clients[0]._http.closed
    with contextlib.closing(sqlite3.connect(tmp_path / "klasblik.db")) as db:
        for table in ("schools", "locations", "staff", "students", "classes"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        rows = db.execute("SELECT key, value FROM sync_state").fetchall()
    assert [(k, v.split(":")[0]) for k, v in rows] == [("roster.sync.error", "m365_unavailable")]
