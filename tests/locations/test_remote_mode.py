"""Remote-lesson mode: IT lifts same-location viewing for one location until an end time."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import select, update

from klasblik.server.access import audit
from klasblik.server.locations.rule import iso
from klasblik.server.storage.models import Location, RemoteMode, Student
from tests.locations.conftest import ANNA, BRAM, TEACHER, School, make_school
from tests.support.live import frame, start_live_server
from tests.support.sourced import (
    A_NET,
    AT_A,
    OFF_SITE,
    OFF_SITE2,
    FakeClock,
    SourcedAgent,
    add_admin,
    audit_entries,
    client_at,
    policy,
)
from tests.support.timing import wait_for


async def _switch_on(school, until: dt.datetime, reason: str = "School closed: storm damage"):
    async with client_at(school.server, school.admin, AT_A) as it:
        status, body = await it.request(
            "POST",
            f"/api/admin/locations/{school.loc['A']}/remote-mode",
            {"until": iso(until), "reason": reason},
        )
    assert status == 200, body
    return body


async def test_remote_mode_lets_teachers_of_the_location_view_anywhere(school):
    """While on for location A, a teacher of A at home sees a student of A at home; a
    student of location B at home stays elsewhere; pages show the mode and its end."""
    server = school.server
    async with server.sm() as session, session.begin():
        await session.execute(
            update(Student).where(Student.id == school.bram).values(location_id=school.loc["B"])
        )
    anna = SourcedAgent(server, ANNA[0], OFF_SITE2)
    bram = SourcedAgent(server, BRAM[0], OFF_SITE2)
    try:
        await anna.connect()
        await bram.connect()
        async with client_at(server, TEACHER, OFF_SITE) as teacher:
            dash = await teacher.dashboard()
            assert (await dash.command("subscribe", class_id=school.class_id))["error"][
                "code"
            ] == "elsewhere"

            until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(microsecond=0)
            body = await _switch_on(school, until)
            assert body["remote_mode"]["until"] == iso(until)

            _status, me = await teacher.request("GET", "/api/me")
            notices = [n for n in me["notices"] if n["kind"] == "remote_mode"]
            assert len(notices) == 1 and notices[0]["until"] == iso(until)
            assert "Hoofdgebouw" in notices[0]["text"]

            res = await dash.command("subscribe", class_id=school.class_id)
            assert res["success"] is True
            states = {s["id"]: s["state"] for s in res["result"]["students"]}
            assert states[school.anna]["elsewhere"] is False
            assert states[school.bram]["elsewhere"] is True
            await wait_for(lambda: anna.mode == "grid")
            await anna.send(frame(1))
            await bram.send(frame(1))
            await wait_for(lambda: len(dash.frames[school.anna]) == 1)
            await asyncio.sleep(0.2)  # idle: nothing may be asked of or come from Bram
            assert bram.mode == "off" and dash.frames[school.bram] == []
            await dash.close()
    finally:
        await anna.close()
        await bram.close()
    [entry] = await audit_entries(server, audit.Actions.REMOTE_MODE_ON)
    assert entry.actor == school.admin and entry.ip == AT_A
    assert "storm damage" in entry.detail and iso(until) in entry.detail
    assert entry.subject == f"location:{school.loc['A']}"


async def test_remote_mode_expires_by_the_clock_and_is_audit_logged_once(school):
    """At the end time frames stop at once (by the clock, before any job runs); the
    check then tells the agent to go quiet and logs the expiry exactly once."""
    server = school.server
    clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    policy(server).clock = clock
    until = clock.now + dt.timedelta(hours=1)
    await _switch_on(school, until)
    anna = SourcedAgent(server, ANNA[0], OFF_SITE2)
    try:
        await anna.connect()
        async with client_at(server, TEACHER, OFF_SITE) as teacher:
            dash = await teacher.dashboard()
            assert (await dash.command("subscribe", class_id=school.class_id))["success"]
            await wait_for(lambda: anna.mode == "grid")
            await anna.send(frame(1))
            await wait_for(lambda: len(dash.frames[school.anna]) == 1)

            clock.advance(hours=1)  # exactly the end time: over
            await anna.send(frame(2))
            await wait_for(lambda: anna.mode == "off", message="agent told to go quiet")
            await asyncio.sleep(0.2)  # idle: the frame sent after the end may not arrive
            assert len(dash.frames[school.anna]) == 1
            assert dash.last_state(school.anna)["elsewhere"] is True
            _, me = await teacher.request("GET", "/api/me")
            assert "remote_mode" not in [n["kind"] for n in me["notices"]]
            assert (await dash.command("focus", student_id=school.anna))["error"][
                "code"
            ] == "elsewhere"

            await policy(server).tick()
            await policy(server).tick()
            await dash.close()
    finally:
        await anna.close()
    expired = await audit_entries(server, audit.Actions.REMOTE_MODE_EXPIRED)
    assert len(expired) == 1
    assert expired[0].actor == "system" and "storm damage" in expired[0].detail
    async with server.sm() as session:
        row = await session.scalar(select(RemoteMode))
    assert row.end_note == "expired" and row.ended_at == until


async def test_remote_mode_can_be_ended_early(school):
    """IT ends the mode before its time: frames stop, the end is audit-logged, and ending
    it again says it is not on."""
    server = school.server
    await _switch_on(school, dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
    anna = SourcedAgent(server, ANNA[0], OFF_SITE2)
    try:
        await anna.connect()
        async with (
            client_at(server, TEACHER, OFF_SITE) as teacher,
            client_at(server, school.admin, AT_A) as it,
        ):
            dash = await teacher.dashboard()
            assert (await dash.command("subscribe", class_id=school.class_id))["success"]
            await wait_for(lambda: anna.mode == "grid")
            status, body = await it.request(
                "DELETE", f"/api/admin/locations/{school.loc['A']}/remote-mode"
            )
            assert status == 200 and body["remote_mode"] is None
            await wait_for(lambda: anna.mode == "off", message="agent quiet after the end")
            await wait_for(lambda: (dash.last_state(school.anna) or {}).get("elsewhere") is True)
            await anna.send(frame(1))
            await asyncio.sleep(0.2)  # idle: the frame sent after the end may not arrive
            assert dash.frames[school.anna] == []
            status, body = await it.request(
                "DELETE", f"/api/admin/locations/{school.loc['A']}/remote-mode"
            )
            assert status == 409 and body["error"]["code"] == "not_on"
            await dash.close()
    finally:
        await anna.close()
    [entry] = await audit_entries(server, audit.Actions.REMOTE_MODE_OFF)
    assert entry.actor == school.admin and "ended early" in entry.detail


async def test_expiry_is_logged_once_on_sqlite_and_postgresql(tmp_path, db_url):
    """Two checks after the end time (as two instances would run them) write one
    remote_mode.expired entry, on both databases."""
    server = await start_live_server(tmp_path, database_url=db_url)
    try:
        school = await make_school(server)
        clock = FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
        policy(server).clock = clock
        await _switch_on(school, clock.now + dt.timedelta(minutes=30), "Ziekte docenten")
        clock.advance(minutes=31)
        await asyncio.gather(policy(server).tick(), policy(server).tick())
        await policy(server).tick()
        expired = await audit_entries(server, audit.Actions.REMOTE_MODE_EXPIRED)
        assert [e.actor for e in expired] == ["system"]
        assert "Ziekte docenten" in expired[0].detail
        assert policy(server).remote_on(school.loc["A"]) is None
    finally:
        await server.stop()


async def test_stored_thumbnail_follows_remote_mode(school):
    """Off-site under remote-lesson mode of A, the teacher may fetch the stored thumbnail
    of an offline student of A (none stored: 404) but not of a student of B (403)."""
    server = school.server
    async with server.sm() as session, session.begin():
        await session.execute(
            update(Student).where(Student.id == school.bram).values(location_id=school.loc["B"])
        )
    async with client_at(server, TEACHER, OFF_SITE) as teacher:
        status, body = await teacher.request("GET", f"/api/students/{school.anna}/thumbnail")
        assert (status, body["error"]["code"]) == (403, "elsewhere")
        await _switch_on(school, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        status, body = await teacher.request("GET", f"/api/students/{school.anna}/thumbnail")
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, body = await teacher.request("GET", f"/api/students/{school.bram}/thumbnail")
        assert (status, body["error"]["code"]) == (403, "elsewhere")


async def test_single_location_school_needs_no_home_locations(tmp_path):
    """A school with one location and no home locations in the roster: remote-lesson
    mode still covers its teachers and students (the only location is everyone's home)."""
    server = await start_live_server(tmp_path)
    try:
        ids = await server.add_class("7B", [ANNA], teacher=TEACHER)
        async with server.sm() as session, session.begin():
            await session.execute(update(Location).values(networks=A_NET))
            loc_id = await session.scalar(select(Location.id))
        await policy(server).reload()
        school = School(
            server,
            ids["class_id"],
            ids["students"][ANNA[0]],
            0,
            {"A": loc_id},
            await add_admin(server, ids["school_id"]),
        )
        anna = SourcedAgent(server, ANNA[0], OFF_SITE2)
        try:
            await anna.connect()
            async with client_at(server, TEACHER, OFF_SITE) as teacher:
                dash = await teacher.dashboard()
                assert (await dash.command("subscribe", class_id=school.class_id))["error"][
                    "code"
                ] == "elsewhere"
                await _switch_on(school, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
                assert (await dash.command("subscribe", class_id=school.class_id))["success"]
                await wait_for(lambda: anna.mode == "grid")
                await dash.close()
        finally:
            await anna.close()
    finally:
        await server.stop()
