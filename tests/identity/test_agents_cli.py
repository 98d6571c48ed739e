"""`klasblik agents ...`: the school's policy, the Google address mapping (all or
nothing), and forgetting a lost device's keys."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from klasblik.server.cli import main
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import AgentDevice, GoogleAccount, School, Student


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path}/k.db"
    monkeypatch.setenv("KLASBLIK_DATABASE_URL", url)
    monkeypatch.setenv("KLASBLIK_ENROLLMENT_TOKEN", "x")

    async def seed() -> None:
        engine = create_engine(url)
        await upgrade_database(engine)
        async with sessionmaker(engine)() as session, session.begin():
            school = School(name="S", brin="12AB")
            session.add(school)
            await session.flush()
            anna = Student(school_id=school.id, username="anna@school.example", display_name="A")
            session.add(anna)
            await session.flush()
            session.add(
                AgentDevice(student_id=anna.id, device_id="d", key_hash="h", public_key="k")
            )
        await engine.dispose()

    asyncio.run(seed())
    return url


def _read(url: str, what):
    async def go():
        engine = create_engine(url)
        async with sessionmaker(engine)() as session:
            rows = (await session.scalars(select(what))).all()
        await engine.dispose()
        return rows

    return asyncio.run(go())


def test_policy_is_set_per_school(db, capsys):
    """`agents policy 12AB device` stores it; `default` hands it back to the setting."""
    assert main(["agents", "policy", "12ab", "device"]) == 0
    assert [s.agent_identity for s in _read(db, School)] == ["device"]
    assert main(["agents", "policy", "12AB", "default"]) == 0
    assert [s.agent_identity for s in _read(db, School)] == [None]
    assert main(["agents", "policy", "99ZZ", "token"]) == 1
    assert "no school" in capsys.readouterr().err


def test_google_map_loads_all_or_nothing(db, tmp_path, capsys):
    """A good file replaces the mapping; a file with one unknown student loads nothing."""
    good = tmp_path / "map.csv"
    good.write_text("google_email;username\nA.Bakker@leerling.example;anna@school.example\n")
    assert main(["agents", "google-map", str(good)]) == 0
    rows = _read(db, GoogleAccount)
    assert [(r.email, r.student_id) for r in rows] == [("a.bakker@leerling.example", 1)]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "google_email,username\nx@leerling.example,anna@school.example\n"
        "y@leerling.example,nobody@school.example\n"
    )
    assert main(["agents", "google-map", str(bad)]) == 1
    assert "nobody@school.example: not a student" in capsys.readouterr().err
    assert [r.email for r in _read(db, GoogleAccount)] == ["a.bakker@leerling.example"]


def test_forget_devices(db):
    """A lost device's keys go; the next device enrols again with a verified identity."""
    assert main(["agents", "forget-devices", "Anna@school.example"]) == 0
    assert _read(db, AgentDevice) == []
