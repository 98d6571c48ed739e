"""An access request (AVG art. 15) is answered in full: next to the data, the export says in
Dutch and English what it is for, which data, who receives it, how long it is kept (the
actual settings), where it came from, and the student's rights with the DPO contact."""

from __future__ import annotations

import io
import json
import zipfile

from klasblik.server.retention.subject_rights import export_student
from klasblik.server.settings import load_settings
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.models import SyncState
from tests.support.roster import add_student


async def test_export_answers_an_access_request_in_full(sm, tmp_path):
    settings = load_settings(
        env={},
        overrides={
            "enrollment_token": "t",
            "sweep_max_age_h": 30,
            "audit_retention_months": 3,
            "school_year_end": "07-20",
            "privacy_contact": "fg@school.example",
        },
    )
    store = LocalBlobStore(tmp_path / "b")
    await add_student(sm, "anna@school.example")
    archive = await export_student(sm, store, "anna@school.example", "it", settings=settings)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        about = json.loads(zf.read("data.json"))["about"]
    nl, en = about["nl"], about["en"]
    assert set(nl) == {
        "doelen",
        "categorieen",
        "ontvangers",
        "bewaartermijnen",
        "bron",
        "rechten",
        "contact",
    }
    assert set(en) == {
        "purposes",
        "categories",
        "recipients",
        "retention",
        "source",
        "rights",
        "contact",
    }
    assert en["retention"]["screenshot and tabs"] == "at most 30.5 hours"  # 30 h + 15 + 15 min
    assert nl["bewaartermijnen"]["schermafbeelding en tabbladen"] == "hooguit 30.5 uur"
    assert (
        en["retention"]["audit log"] == "3 months"
        and nl["bewaartermijnen"]["logboek"] == "3 maanden"
    )
    assert "07-20" in en["retention"]["student and class records"]
    assert en["contact"] == nl["contact"] == "fg@school.example"
    assert "class list (CSV)" in en["source"]
    assert any("Autoriteit Persoonsgegevens" in r for r in en["rights"])
    assert any("do not view" in r for r in en["rights"])
    assert any("bezwaar" in r for r in nl["rechten"])
    assert len(en["purposes"]) == len(nl["doelen"]) and len(en["categories"]) == len(
        nl["categorieen"]
    )
    # with a Microsoft 365 sync the source says so
    async with sm() as session, session.begin():
        session.add(SyncState(key="graph:users", value="x"))
    archive = await export_student(sm, store, "anna@school.example", "it", settings=settings)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        about = json.loads(zf.read("data.json"))["about"]
    assert "Microsoft 365" in about["en"]["source"] and "Microsoft 365" in about["nl"]["bron"]
    await store.close()
