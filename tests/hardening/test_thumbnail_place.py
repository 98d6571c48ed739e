"""A stored thumbnail follows the place it was taken: one captured at location B is not
shown to a teacher at A after the device left B, whether the device is offline or back
online at A; at B it still is."""

from __future__ import annotations

from tests.locations.conftest import ANNA, TEACHER
from tests.support.live import frame
from tests.support.sourced import AT_A, AT_B, SourcedAgent, client_at
from tests.support.timing import wait_for


async def _thumbnail(server, address: str, sid: int) -> int:
    async with client_at(server, TEACHER, address) as teacher:
        assert teacher.http is not None
        async with teacher.http.get(f"{server.base_url}/api/students/{sid}/thumbnail") as r:
            body = await r.read()
            if r.status == 200:
                assert body.startswith(b"\xff\xd8")
            return r.status


async def test_a_picture_taken_at_b_is_not_shown_at_a(school):
    server = school.server
    anna = SourcedAgent(server, ANNA[0], AT_B)
    try:
        await anna.connect()
        async with client_at(server, TEACHER, AT_B) as teacher:
            dash = await teacher.dashboard()
            assert (await dash.command("subscribe", class_id=school.class_id))["success"]
            await wait_for(lambda: anna.mode == "grid")
            await anna.send(frame(seq=1))
            await wait_for(lambda: len(dash.frames[school.anna]) == 1)
            await dash.close()
        await server.latest.drain()
    finally:
        await anna.close()
    await wait_for(lambda: school.anna not in server.hub.agents)
    assert await _thumbnail(server, AT_A, school.anna) == 403  # offline, taken at B
    assert await _thumbnail(server, AT_B, school.anna) == 200  # at B it may be seen
    back = SourcedAgent(server, ANNA[0], AT_A)  # the device is at A now, not watched
    try:
        await back.connect()
        assert await _thumbnail(server, AT_A, school.anna) == 403  # still taken at B
        assert await _thumbnail(server, AT_B, school.anna) == 403  # the device is not at B
    finally:
        await back.close()
