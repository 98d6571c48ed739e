"""A student's export holds exactly what is kept about them; erasure leaves nothing behind
but the record that it happened."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from sqlalchemy import func, select

from klasblik.server.access import audit
from klasblik.server.retention.subject_rights import (
    STUDENT_FIELDS,
    UnknownStudent,
    erase_student,
    export_student,
)
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name
from klasblik.server.storage.models import AuditEntry, SchoolClass, Student, class_students
from tests.support.roster import add_student

JPEG = b"\xff\xd8\xff\xe0 a jpeg"
TABS = json.dumps([{"title": "Wiskunde", "url": "https://example.org/", "active": True}]).encode()


async def _anna(sm, store) -> int:
    sid = await add_student(
        sm,
        "anna@school.example",
        class_name="7B",
        display_name="Anna B.",
        last_ip="192.0.2.7",
        m365_id="m365-anna",
    )
    await add_student(sm, "bram@school.example", class_name="7B", display_name="Bram d.")
    await store.put(thumbnail_name(sid), JPEG)
    await store.put(tabs_name(sid), TABS)
    await audit.record(
        sm,
        "teacher@school.example",
        audit.Actions.VIEW_FOCUS_START,
        f"student:{sid}",
        "Anna B.",
        "192.0.2.1",
    )
    # a grid view, written as the dashboard endpoint writes it: the class and each student
    await audit.record_many(
        sm,
        [
            ("teacher@school.example", "view.grid.start", "class:1", "7B", "192.0.2.1", None),
            (
                "teacher@school.example",
                "view.grid.start",
                f"student:{sid}",
                "class:1 7B",
                "192.0.2.1",
                None,
            ),
        ],
    )
    return sid


async def test_export_contains_exactly_the_listed_fields(sm, store, settings):
    """The archive: data.json with the record, classes, audit about the student (grid views
    included), who watched when, the art. 15 information; the latest thumbnail and tab list
    as they are stored, because a reason was given; nothing else."""
    sid = await _anna(sm, store)
    archive = await export_student(
        sm,
        store,
        "anna@school.example",
        "it@school.example",
        settings=settings,
        latest_reason="parent asked for the stored screenshot",
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert sorted(zf.namelist()) == ["data.json", "tabs.json", "thumbnail.jpg"]
        data = json.loads(zf.read("data.json"))
        assert zf.read("thumbnail.jpg") == JPEG
        assert zf.read("tabs.json") == TABS
    assert set(data) == {
        "exported_at",
        "student",
        "classes",
        "do_not_view",
        "devices",
        "google_addresses",
        "latest",
        "audit",
        "views",
        "about",
    }
    assert tuple(data["student"]) == STUDENT_FIELDS
    assert set(STUDENT_FIELDS) == {
        "id",
        "username",
        "display_name",
        "m365_id",
        "active",
        "last_ip",
        "last_seen",
        "created_at",
        "school",
        "location",
    }
    student = data["student"]
    assert (student["username"], student["display_name"], student["last_ip"]) == (
        "anna@school.example",
        "Anna B.",
        "192.0.2.7",
    )
    assert student["school"] == {"name": "School 12AB", "brin": "12AB"}
    assert student["location"] == {"name": "Main", "code": "12AB00"}
    assert data["classes"] == ["7B"]
    assert set(data["latest"]) == {"thumbnail", "tabs"}
    # Every entry about this student, the grid view too; the export is logged before reading,
    # with its reason.
    assert {e["subject"] for e in data["audit"]} == {f"student:{sid}"}
    assert [e["action"] for e in data["audit"]] == [
        "view.focus.start",
        "view.grid.start",
        "student.export",
    ]
    assert "reason: parent asked" in data["audit"][-1]["detail"]
    assert set(data["audit"][0]) == {"id", "at", "actor", "action", "subject", "detail", "ip"}
    assert [(v["by"], v["how"]) for v in data["views"]] == [
        ("teacher@school.example", "view.focus.start"),
        ("teacher@school.example", "view.grid.start"),
    ]
    assert set(data["about"]) == {"nl", "en"}


async def test_export_without_stored_blobs_has_data_json_only(sm, store, settings):
    """A student with no stored screenshot or tabs gets data.json alone."""
    await add_student(sm, "cas@school.example")
    archive = await export_student(
        sm, store, "cas@school.example", "it", settings=settings, latest_reason="asked for"
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.namelist() == ["data.json"]
        assert json.loads(zf.read("data.json"))["latest"] == {}


async def test_export_without_a_reason_leaves_screenshot_and_tabs_out(sm, store, settings):
    """Without a stated reason the stored screenshot and tab list stay out of the archive."""
    await _anna(sm, store)
    archive = await export_student(sm, store, "anna@school.example", "it", settings=settings)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.namelist() == ["data.json"]
        assert "not_included" in json.loads(zf.read("data.json"))["latest"]


async def test_erasure_leaves_no_blob_and_no_row_behind(sm, store, settings):
    """Erase removes the student row, class memberships and both blobs; other students stay;
    an audit entry records the erasure without the student's name or username."""
    sid = await _anna(sm, store)
    result = await erase_student(sm, store, "anna@school.example", "it@school.example", "192.0.2.9")
    assert (result.student_id, result.blobs_deleted, result.class_memberships) == (sid, 2, 1)
    async with sm() as session:
        assert await session.get(Student, sid) is None
        links = list(
            await session.scalars(
                select(class_students.c.student_id).where(class_students.c.student_id == sid)
            )
        )
        assert links == []
        assert await session.scalar(select(func.count()).select_from(SchoolClass)) == 1
        erasures = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == audit.Actions.STUDENT_ERASE)
            )
        )
        others = list(await session.scalars(select(Student.username)))
    assert [b.name async for b in store.list(f"students/{sid}/")] == []
    assert others == ["bram@school.example"]
    assert len(erasures) == 1
    entry = erasures[0]
    assert (entry.actor, entry.subject, entry.ip) == (
        "it@school.example",
        f"student:{sid}",
        "192.0.2.9",
    )
    assert "anna" not in entry.detail.lower()
    with pytest.raises(UnknownStudent):
        await export_student(sm, store, "anna@school.example", "it", settings=settings)


async def test_device_keys_and_google_addresses_are_exported_and_erased(sm, store, settings):
    """The agent identity rows of a student are in the export and gone after erasure."""
    from klasblik.server.storage.models import AgentDevice, GoogleAccount

    sid = await _anna(sm, store)
    async with sm() as session, session.begin():
        session.add(AgentDevice(student_id=sid, device_id="laptop", key_hash="h", public_key="k"))
        session.add(GoogleAccount(email="a.b@leerling.example", student_id=sid))
    archive = await export_student(
        sm, store, "anna@school.example", "it@school.example", settings=settings
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        data = json.loads(zf.read("data.json"))
    assert [(d["device_id"], d["public_key"]) for d in data["devices"]] == [("laptop", "k")]
    assert data["google_addresses"] == ["a.b@leerling.example"]
    await erase_student(sm, store, "anna@school.example", "it@school.example")
    async with sm() as session:
        assert await session.scalar(select(func.count()).select_from(AgentDevice)) == 0
        assert await session.scalar(select(func.count()).select_from(GoogleAccount)) == 0


async def test_unknown_student_is_a_clear_error(sm, store):
    """Export or erase of a username nobody has names the username."""
    with pytest.raises(UnknownStudent, match="nobody@school.example"):
        await erase_student(sm, store, "nobody@school.example", "it")


def test_export_fields_cover_every_student_column():
    """Every column of the students table is in the export (ids of school and location as
    their names and codes), and every table that refers to students is handled by erasure."""
    from klasblik.server.storage.models import Base

    columns = {c.name for c in Student.__table__.columns}
    assert columns - {"school_id", "location_id"} | {"school", "location"} == set(STUDENT_FIELDS)
    referring = sorted(
        t.name
        for t in Base.metadata.sorted_tables
        if any(fk.column.table.name == "students" for fk in t.foreign_keys)
    )
    assert referring == ["agent_devices", "class_students", "google_accounts"]
