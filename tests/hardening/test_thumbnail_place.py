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


async def _picture_at(school, address: str, seq: int) -> None:
    """Anna's agent at ``address`` is watched by a teacher there and sends one picture,
    which is stored; then it goes offline."""
    server = school.server
    agent = SourcedAgent(server, ANNA[0], address)
    try:
        await agent.connect()
        async with client_at(server, TEACHER, address) as teacher:
            dash = await teacher.dashboard()
            assert (await dash.command("subscribe", class_id=school.class_id))["success"]
            await wait_for(lambda: agent.mode == "grid")
            await agent.send(frame(seq=seq, color=(seq * 40, 0, 0)))
            await wait_for(lambda: len(dash.frames[school.anna]) >= 1)
            await dash.close()
        await server.latest.drain()
    finally:
        await agent.close()
    await wait_for(lambda: school.anna not in server.hub.agents)


async def test_a_picture_taken_at_b_is_not_shown_at_a(school):
    server = school.server
    await _picture_at(school, AT_B, 1)
    assert await _thumbnail(server, AT_A, school.anna) == 403  # offline, taken at B
    assert await _thumbnail(server, AT_B, school.anna) == 200  # at B it may be seen
    back = SourcedAgent(server, ANNA[0], AT_A)  # the device is at A now, not watched
    try:
        await back.connect()
        assert await _thumbnail(server, AT_A, school.anna) == 403  # still taken at B
        assert await _thumbnail(server, AT_B, school.anna) == 403  # the device is not at B
    finally:
        await back.close()


async def test_a_picture_taken_after_a_move_is_stored_with_its_new_place(school):
    """The place is written beside a thumbnail only when it changed: after the device
    moved from B to A, the next stored picture says A (a teacher at A sees it, one at B
    does not), never B from the picture before."""
    server = school.server
    await _picture_at(school, AT_B, 1)
    assert await _thumbnail(server, AT_B, school.anna) == 200
    await _picture_at(school, AT_A, 2)
    assert await _thumbnail(server, AT_A, school.anna) == 200  # taken at A now
    assert await _thumbnail(server, AT_B, school.anna) == 403
    await _picture_at(school, AT_A, 3)  # the same place again: nothing new beside it, still A
    assert await _thumbnail(server, AT_A, school.anna) == 200
    assert await _thumbnail(server, AT_B, school.anna) == 403
