"""Lesson hours: outside them nothing is sent and dashboards say why."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

from tests.locations.conftest import ANNA, TEACHER, make_school
from tests.support.live import frame, start_live_server
from tests.support.sourced import AT_A, AT_A2, FakeClock, SourcedAgent, client_at, policy
from tests.support.timing import wait_for

AMS = ZoneInfo("Europe/Amsterdam")


def _at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=AMS).astimezone(dt.UTC)


async def test_lesson_hours_start_and_stop_monitoring(tmp_path):
    """Within mon-fri 08:15-15:30 a view works; at 15:30 frames stop, the agent goes quiet,
    the tile and /api/me say why and a new subscription is refused; at 08:15 the next
    school day it resumes."""
    server = await start_live_server(tmp_path)
    try:
        school = await make_school(server, lesson_hours="mon-fri 08:15-15:30")
        clock = FakeClock(_at(2026, 11, 25, 10, 0))  # a Wednesday
        policy(server).clock = clock
        await policy(server).tick()
        anna = SourcedAgent(server, ANNA[0], AT_A2)
        try:
            await anna.connect()
            async with client_at(server, TEACHER, AT_A) as teacher:
                dash = await teacher.dashboard()
                assert (await dash.command("subscribe", class_id=school.class_id))["success"]
                await wait_for(lambda: anna.mode == "grid")
                await anna.send(frame(1))
                await wait_for(lambda: len(dash.frames[school.anna]) == 1)

                clock.now = _at(2026, 11, 25, 15, 30)
                await anna.send(frame(2))
                await policy(server).tick()
                await wait_for(lambda: anna.mode == "off", message="agent quiet after hours")
                await wait_for(
                    lambda: (dash.last_state(school.anna) or {}).get("outside_lesson_hours") is True
                )
                assert len(dash.frames[school.anna]) == 1
                _, me = await teacher.request("GET", "/api/me")
                [notice] = [n for n in me["notices"] if n["kind"] == "outside_lesson_hours"]
                assert "08:15-15:30" in notice["text"]
                dash2 = await teacher.dashboard()
                res = await dash2.command("subscribe", class_id=school.class_id)
                assert res["error"]["code"] == "outside_lesson_hours"
                await dash2.close()

                clock.now = _at(2026, 11, 28, 10, 0)  # Saturday
                await policy(server).tick()
                await asyncio.sleep(0.2)  # idle: no lessons on Saturday, so no watch
                assert anna.mode == "off"

                clock.now = _at(2026, 11, 30, 8, 15)  # Monday, first minute
                await policy(server).tick()
                await wait_for(lambda: anna.mode == "grid", message="monitoring resumes")
                await anna.send(frame(3))
                await wait_for(lambda: len(dash.frames[school.anna]) == 2)
                assert dash.last_state(school.anna).get("outside_lesson_hours") is None
                await dash.close()
        finally:
            await anna.close()
    finally:
        await server.stop()
