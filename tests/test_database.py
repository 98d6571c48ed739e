"""The database layer, the same tests on SQLite and on PostgreSQL (both real)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select

from klasblik.server.access import audit
from klasblik.server.access import rules as access
from klasblik.server.auth.sessions import create_session, lookup_session
from klasblik.server.errors import AccessDenied
from klasblik.server.settings import load_settings
from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
from klasblik.server.storage.models import (
    AuditEntry,
    School,
    SchoolClass,
    Staff,
    Student,
    WebSession,
    class_teachers,
    utcnow,
)


@pytest.fixture
async def sm(db_url):
    engine = create_engine(db_url)
    await upgrade_database(engine)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


async def _roster(sm):
    async with sm() as s, s.begin():
        school = School(name="De Regenboog", brin="12AB")
        s.add(school)
        await s.flush()
        t1 = Staff(school_id=school.id, username="t1@school.example", name="T One")
        t2 = Staff(school_id=school.id, username="t2@school.example", name="T Two")
        anna = Student(school_id=school.id, username="anna@school.example", display_name="Anna B.")
        bram = Student(school_id=school.id, username="bram@school.example", display_name="Bram J.")
        c1 = SchoolClass(school_id=school.id, name="7B", teachers=[t1], students=[anna, bram])
        c2 = SchoolClass(school_id=school.id, name="8A", teachers=[t2], students=[bram])
        s.add_all([t1, t2, anna, bram, c1, c2])
        await s.flush()
        return {
            "t1": t1.id,
            "t2": t2.id,
            "anna": anna.id,
            "bram": bram.id,
            "c1": c1.id,
            "c2": c2.id,
        }


async def test_migrations_create_every_table_and_are_idempotent(db_url):
    """Upgrading twice is harmless and leaves every model's table in place."""
    engine = create_engine(db_url)
    try:
        await upgrade_database(engine)
        await upgrade_database(engine)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        from klasblik.server.storage.models import Base

        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
    finally:
        await engine.dispose()


async def test_teacher_sees_only_classes_they_teach(sm):
    """authorize_class admits the class teacher and refuses another teacher."""
    ids = await _roster(sm)
    view = await access.authorize_class(sm, ids["t1"], ids["c1"])
    assert [s.display_name for s in view.students] == ["Anna B.", "Bram J."]
    with pytest.raises(AccessDenied) as info:
        await access.authorize_class(sm, ids["t2"], ids["c1"])
    assert info.value.code == "forbidden"
    with pytest.raises(AccessDenied) as info:
        await access.authorize_class(sm, ids["t1"], 999_999)
    assert info.value.code == "not_found"


async def test_student_access_follows_shared_classes(sm):
    """A teacher may focus a student of their class, not a student they do not teach."""
    ids = await _roster(sm)
    assert (await access.authorize_student(sm, ids["t2"], ids["bram"])).display_name == "Bram J."
    with pytest.raises(AccessDenied):
        await access.authorize_student(sm, ids["t2"], ids["anna"])


async def test_disabled_teacher_loses_access(sm):
    """An inactive staff member can authorise nothing and sees no classes."""
    ids = await _roster(sm)
    async with sm() as s, s.begin():
        (await s.get(Staff, ids["t1"])).active = False
    with pytest.raises(AccessDenied):
        await access.authorize_class(sm, ids["t1"], ids["c1"])
    async with sm() as s:
        staff = await s.get(Staff, ids["t1"])
    assert await access.classes_of(sm, staff) == []


async def _verdict_one_by_one(sm, staff_id, class_id, max_age_s):
    try:
        view = await access.authorize_class(sm, staff_id, class_id, roster_max_age_s=max_age_s)
    except AccessDenied as exc:
        return (exc.code, exc.message, exc.status)
    return frozenset(s.id for s in view.students)


@pytest.mark.parametrize("max_age_s", [0.0, 3600.0])
async def test_class_access_for_many_views_says_what_authorize_class_says(sm, db_url, max_age_s):
    """The re-check of every open view (class_access) gives, for each staff member and
    class, the verdict authorize_class gives alone: the class's active students, or the
    same refusal (inactive staff, a class they do not teach, one that does not exist, a
    stale roster: 3600 s here with no sync on record); in five queries for all of them."""
    from sqlalchemy import event

    ids = await _roster(sm)
    async with sm() as s, s.begin():
        school = School(name="Elders", brin="99ZZ")
        s.add(school)
        await s.flush()
        away = Staff(school_id=school.id, username="t3@elders.example", name="T Three")
        gone = Staff(school_id=school.id, username="t4@elders.example", name="T Four", active=False)
        s.add_all([away, gone])
        await s.flush()
        s.add(SchoolClass(school_id=(await s.get(SchoolClass, ids["c1"])).school_id, name="9C"))
        # another school's staff member on the roster of a class here
        await s.execute(class_teachers.insert().values(class_id=ids["c2"], staff_id=away.id))
        (await s.get(Student, ids["bram"])).active = False
        ids["t3"], ids["t4"] = away.id, gone.id
    pairs = [
        (staff, cls)
        for staff in (ids["t1"], ids["t2"], ids["t3"], ids["t4"], 999_998)
        for cls in (ids["c1"], ids["c2"], 999_999)
    ]
    statements = []
    engine = create_engine(db_url)
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        counted = sessionmaker(engine)
        got = await access.class_access(counted, pairs, roster_max_age_s=max_age_s)
    finally:
        await engine.dispose()
    assert len([q for q in statements if q.lstrip().upper().startswith("SELECT")]) <= 5
    want = {pair: await _verdict_one_by_one(sm, *pair, max_age_s) for pair in pairs}
    assert {
        pair: (v.code, v.message, v.status) if isinstance(v, AccessDenied) else v
        for pair, v in got.items()
    } == want
    if not max_age_s:
        assert want[ids["t1"], ids["c1"]] == frozenset({ids["anna"]})  # Bram is inactive
        assert want[ids["t3"], ids["c2"]][0] == "forbidden"  # teaches it, another school
    else:
        assert want[ids["t1"], ids["c1"]][0] == "roster_stale"
        assert want[ids["t4"], ids["c1"]][0] == "forbidden"  # inactive comes first


async def test_agent_accounts(sm):
    """Students are found case-insensitively; staff and strangers are refused with codes."""
    await _roster(sm)
    assert (await access.agent_student(sm, "ANNA@school.example")).display_name == "Anna B."
    for account, code in [
        ("t1@school.example", "not_a_student"),
        ("x@y.example", "unknown_account"),
    ]:
        with pytest.raises(AccessDenied) as info:
            await access.agent_student(sm, account)
        assert info.value.code == code


async def test_sessions_expire_by_lifetime_and_idle_time(sm):
    """A session past its idle limit or lifetime is gone; a fresh one is found."""
    ids = await _roster(sm)
    settings = load_settings(env={}, overrides={"enrollment_token": "x", "session_idle_s": 600})
    token, row = await create_session(sm, ids["t1"], "127.0.0.1", settings)
    found = await lookup_session(sm, token, settings)
    assert found is not None and found[1].id == ids["t1"]
    assert await lookup_session(sm, token + "x", settings) is None
    async with sm() as s, s.begin():
        stored = await s.get(WebSession, row.id)
        stored.last_used_at = utcnow() - dt.timedelta(seconds=601)
    assert await lookup_session(sm, token, settings) is None
    async with sm() as s:
        assert await s.get(WebSession, row.id) is None  # deleted on sight
    token2, row2 = await create_session(sm, ids["t1"], None, settings)
    async with sm() as s, s.begin():
        (await s.get(WebSession, row2.id)).expires_at = utcnow() - dt.timedelta(seconds=1)
    assert await lookup_session(sm, token2, settings) is None


async def test_timestamps_come_back_aware_utc(sm):
    """Datetimes are stored and read as aware UTC on every backend."""
    await audit.record(sm, "t1@school.example", audit.Actions.SIGN_IN, "demo", "", "10.0.0.1")
    async with sm() as s:
        entry = await s.scalar(select(AuditEntry))
    assert entry.at.tzinfo is not None and entry.at.utcoffset() == dt.timedelta(0)
    assert abs(utcnow() - entry.at) < dt.timedelta(minutes=1)


async def test_usernames_are_unique(sm):
    """Two students with one Microsoft 365 username cannot exist."""
    from sqlalchemy.exc import IntegrityError

    await _roster(sm)
    with pytest.raises(IntegrityError):
        async with sm() as s, s.begin():
            school = await s.scalar(select(School))
            s.add(Student(school_id=school.id, username="anna@school.example", display_name="A"))


async def test_migrations_match_the_models(tmp_path):
    """After upgrading, Alembic finds no difference between the models and the schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from klasblik.server.storage.models import Base

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    try:
        await upgrade_database(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
