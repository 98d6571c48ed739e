"""``klasblik privacy``: the documents state the school's actual retention figures,
locations, remote-lesson history and sub-processors, in Dutch and English, with open points
marked; the breach export holds exactly the window asked for. Both are audit-logged."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from klasblik.server.access import audit
from klasblik.server.retention.art15 import retention_facts
from klasblik.server.retention.documents import (
    DOCUMENTS,
    breach_export,
    gather,
    render,
    write_documents,
)
from klasblik.server.settings import load_settings
from klasblik.server.storage.models import AuditEntry, Location, RemoteMode
from tests.support.roster import add_audit, add_staff, add_student, seed_school

AZ = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=b;BlobEndpoint=http://127.0.0.1:1/a;"


def _settings(tmp_path: Path, **extra):
    return load_settings(
        env={},
        overrides={
            "enrollment_token": "t",
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/k.db",
            "blob_store": f"file:{tmp_path}/blobs",
            **extra,
        },
    )


async def _school(sm) -> None:
    school = await seed_school(sm)
    async with sm() as session, session.begin():
        main = await session.scalar(select(Location).where(Location.school_id == school))
        main.networks = "203.0.113.0/24"
        main.lesson_hours = "mon-fri 08:15-15:30"
        session.add(Location(school_id=school, name="Sporthal", code="12AB01", networks=""))
        now = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
        session.add(
            RemoteMode(
                location_id=main.id,
                started_at=now,
                until=now + dt.timedelta(days=2),
                reason="school closed by storm",
                started_by="it",
            )
        )
    await add_student(sm, "anna@school.example")


async def test_documents_state_the_configured_facts(sm, tmp_path):
    """Retention figures, locations with networks, the remote-lesson period and the Azure
    sub-processor appear in every language; a file-store school lists no Azure."""
    await _school(sm)
    settings = _settings(
        tmp_path,
        sweep_max_age_h=40,
        sweep_interval_min=30,
        sweep_budget_min=30,
        audit_retention_months=4,
        school_year_end="07-15",
        blob_store="azure:shots",
        azure_connection_string=AZ,
        privacy_contact="fg@school.example",
    )
    facts = await gather(sm, settings)
    assert facts.retention == retention_facts(settings) | {"server_logs": "operator"}
    assert facts.retention["screenshot_max_hours"] == "41"
    assert [loc["code"] for loc in facts.locations] == ["12AB00", "12AB01"]
    assert "azure_region" in facts.open_points and "location_networks" in facts.open_points
    for lang in ("nl", "en"):
        for doc in DOCUMENTS:
            text = render(facts, doc, lang)
            assert text.startswith("# "), (doc, lang)
        dpia = render(facts, "dpia", lang)
        assert "41" in dpia and "4 " in dpia and "07-15" in dpia
        assert (
            "Main (12AB00)" in dpia and "203.0.113.0/24" in dpia and "mon-fri 08:15-15:30" in dpia
        )
        assert "school closed by storm" in dpia
        assert "Azure Blob Storage" in dpia
        assert ("[OPEN PUNT]" if lang == "nl" else "[OPEN POINT]") in dpia
        info = render(facts, "information", lang)
        assert "fg@school.example" in info and "41" in info
        for annex in ("privacy-annex", "security-annex"):
            assert "Azure Blob Storage" in render(facts, annex, lang)
        assert "students: 1" in render(facts, "register", "en")
    plain = await gather(sm, _settings(tmp_path))
    assert plain.sub_processors == []
    assert "Azure" not in render(plain, "privacy-annex", "en")
    assert "47.75" in render(plain, "information", "en")  # 47.25 h + 15 min + 15 min
    assert "contact" in plain.open_points


async def test_a_longer_audit_retention_states_its_exception(sm, tmp_path):
    settings = _settings(
        tmp_path, audit_retention_months=12, audit_retention_exception="board, 2026-03-01"
    )
    text = render(await gather(sm, settings), "register", "nl")
    assert "12 maanden" in text and "board, 2026-03-01" in text


async def test_write_documents_writes_both_languages_and_facts(sm, tmp_path):
    await _school(sm)
    written = await write_documents(sm, _settings(tmp_path), tmp_path / "out", "cli:it")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [f"{d}.{lang}.md" for d in DOCUMENTS for lang in ("nl", "en")] + ["facts.json"]
    )
    facts = json.loads((tmp_path / "out" / "facts.json").read_text())
    assert facts["locations"][0]["networks"] == ["203.0.113.0/24"]
    async with sm() as session:
        logged = list(await session.scalars(select(AuditEntry.action)))
    assert audit.Actions.PRIVACY_DOCUMENTS in logged


async def test_breach_export_holds_exactly_the_window(sm, tmp_path):
    """Entries inside [since, until) and nothing outside; sessions in use then; logged."""
    base = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)
    await add_staff(sm, "teacher@school.example")
    for hours, subject in (
        (-2, "student:1"),
        (1, "student:2"),
        (2, "student:3"),
        (30, "student:4"),
    ):
        await add_audit(sm, base + dt.timedelta(hours=hours), subject=subject)
    archive = await breach_export(sm, base, base + dt.timedelta(hours=24), "cli:it")
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        rows = list(csv.reader(io.StringIO(zf.read("audit.csv").decode())))
        summary = json.loads(zf.read("summary.json"))
        assert sorted(zf.namelist()) == ["audit.csv", "sessions.csv", "summary.json"]
    subjects = [r[4] for r in rows[1:]]
    assert subjects == ["student:2", "student:3"]
    assert summary["students_concerned"] == 2
    async with sm() as session:
        logged = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == audit.Actions.BREACH_EXPORT)
            )
        )
    assert len(logged) == 1 and logged[0].actor == "cli:it"
    with pytest.raises(ValueError):
        await breach_export(sm, base, base, "x")


def test_the_privacy_command_writes_the_documents(tmp_path):
    """`klasblik privacy documents --out DIR` and `privacy breach` as an administrator runs them."""
    from klasblik.server.cli import main

    cfg = tmp_path / "k.toml"
    cfg.write_text(
        f'database_url = "sqlite+aiosqlite:///{tmp_path}/k.db"\n'
        f'blob_store = "file:{tmp_path}/blobs"\nenrollment_token = "t"\n'
    )
    assert (
        main(["privacy", "documents", "--out", str(tmp_path / "docs"), "--config", str(cfg)]) == 0
    )
    assert (tmp_path / "docs" / "dpia.nl.md").read_text().startswith("# Hulp bij de DPIA")
    out = tmp_path / "breach.zip"
    args = ["privacy", "breach", "--since", "2026-01-01", "--until", "2027-01-01"]
    assert main([*args, "--out", str(out), "--config", str(cfg)]) == 0
    assert zipfile.is_zipfile(out)
    assert main([*args, "--out", str(out), "--config", str(cfg)]) == 2  # exists: not overwritten
