"""Ids are never handed out twice: a new student never inherits the audit trail of a purged
or erased one (SQLite tables are AUTOINCREMENT; PostgreSQL sequences never go back)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

from sqlalchemy import select

from klasblik.server.access import audit
from klasblik.server.retention.purge import purge
from klasblik.server.retention.subject_rights import erase_student, export_student
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import Student
from tests.support.roster import add_student

OLD = "oud@school.example"
NEW = "nieuw@school.example"


def _data(archive: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return json.loads(zf.read("data.json"))


async def test_school_year_purge_then_a_new_student_gets_a_new_id(sm, settings, tmp_path):
    """The last student of a year is purged; the next student created gets a fresh id, and
    their export carries none of the old student's audit trail or name."""
    store = LocalBlobStore(tmp_path / "blobs")
    last_year = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    old_id = await add_student(sm, OLD, created_at=last_year, display_name="Oud S.")
    await audit.record(
        sm, "teacher@school.example", "view.focus.start", f"student:{old_id}", "Oud S."
    )
    report = await purge(sm, store, settings, lambda: dt.datetime(2025, 8, 15, 2, tzinfo=dt.UTC))
    assert report.students == [OLD]
    new_id = await add_student(sm, NEW, display_name="Nieuw S.")
    assert new_id > old_id
    data = _data(await export_student(sm, store, NEW, "it", settings=settings))
    assert data["student"]["id"] == new_id
    assert [e["action"] for e in data["audit"]] == ["student.export"]
    assert "Oud" not in json.dumps(data)
    await store.close()


async def test_erased_last_student_id_is_not_reused(sm, settings, tmp_path):
    """The same after an erasure of the row with the highest id."""
    store = LocalBlobStore(tmp_path / "blobs")
    old_id = await add_student(sm, OLD)
    await erase_student(sm, store, OLD, "it")
    assert await add_student(sm, NEW) > old_id
    await store.close()


async def test_upgrade_of_an_existing_sqlite_database_keeps_every_row(tmp_path):
    """The AUTOINCREMENT rebuild of an existing SQLite database loses no row and no class
    membership (foreign keys are off during the rebuild, checked after)."""
    from alembic import command
    from alembic.config import Config

    import klasblik.server.storage.engine as engine_mod

    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(engine_mod.Path(engine_mod.__file__).parent / "migrations")
    )

    def to_0005(conn) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")

    async with engine.begin() as conn:
        await conn.run_sync(to_0005)
        await conn.exec_driver_sql("INSERT INTO schools (id, name, brin) VALUES (1, 'S', '12AB')")
        await conn.exec_driver_sql(
            "INSERT INTO students (id, school_id, username, display_name, active, created_at) "
            "VALUES (7, 1, 'a@s', 'A.', 1, '2025-01-01 00:00:00')"
        )
        await conn.exec_driver_sql("INSERT INTO classes (id, school_id, name) VALUES (3, 1, '7B')")
        await conn.exec_driver_sql("INSERT INTO class_students VALUES (3, 7)")
    await upgrade_database(engine)
    async with engine.connect() as conn:
        sql = (
            await conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'students'")
        ).scalar_one()
        links = (await conn.exec_driver_sql("SELECT * FROM class_students")).all()
        fk_on = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
    assert "AUTOINCREMENT" in sql
    assert links == [(3, 7)]
    assert fk_on == 1
    sm = sessionmaker(engine)
    async with sm() as session:
        assert (await session.scalars(select(Student.username))).all() == ["a@s"]
    await engine.dispose()
