"""`klasblik roster sync` and `klasblik roster import` as an IT person runs them."""

from __future__ import annotations

import os
import subprocess

from klasblik.server import cli
from klasblik.server.auth.m365.client import M365Client
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


def test_roster_sync_prints_progress_and_summary(tmp_path, monkeypatch, capsys):
    """`klasblik roster sync` reads the emulator, prints progress and the counts."""
    with EmulatorThread() as graph:
        school = fill(graph)

        async def app_token(self):
            return graph.token

        # the Graph emulator stands in for Graph; the app token for the emulator's own
        monkeypatch.setattr(M365Client, "graph_token", app_token)
        for k in [k for k in os.environ if k.startswith("KLASBLIK_")]:
            monkeypatch.delenv(k)
        env = {
            **_env(tmp_path),
            "KLASBLIK_M365_TENANT_ID": "t",
            "KLASBLIK_M365_CLIENT_ID": "c",
            "KLASBLIK_M365_CLIENT_SECRET": "s",
            "KLASBLIK_GRAPH_URL": graph.base_url,
        }
        for k, v in env.items():
            if k.startswith("KLASBLIK_"):
                monkeypatch.setenv(k, v)
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
