"""Same-location viewing, with clients on genuinely different source addresses."""

from __future__ import annotations

import asyncio

from klasblik.server.access import audit
from tests.locations.conftest import ANNA, BRAM, TEACHER, make_school
from tests.support.live import frame, start_live_server
from tests.support.sourced import (
    AT_A,
    AT_A2,
    AT_B,
    OFF_SITE,
    SourcedAgent,
    audit_entries,
    client_at,
)
from tests.support.timing import wait_for


async def test_teacher_off_site_is_refused(school):
    """A teacher whose address is in no location's networks cannot open the class: elsewhere."""
    anna = SourcedAgent(school.server, ANNA[0], AT_A2)
    try:
        await anna.connect()
        async with client_at(school.server, TEACHER, OFF_SITE) as teacher:
            dash = await teacher.dashboard()
            res = await dash.command("subscribe", class_id=school.class_id)
            assert res["success"] is False
            assert res["error"]["code"] == "elsewhere"
            assert OFF_SITE in res["error"]["message"]
            await asyncio.sleep(0.2)  # idle: the refused view may ask the agent for nothing
            assert anna.mode == "off"
            assert school.server.hub.viewers_of(school.anna) == []
            refused = await audit_entries(school.server, audit.Actions.VIEW_REFUSED)
            assert [(e.actor, e.ip) for e in refused] == [(TEACHER, OFF_SITE)]
            status, body = await teacher.request("GET", f"/api/students/{school.anna}/thumbnail")
            assert status == 403 and body["error"]["code"] == "elsewhere"
            await dash.close()
    finally:
        await anna.close()


async def test_teacher_on_site_sees_only_devices_on_site(school):
    """A device off-site (or at the other location) is shown as elsewhere, is never asked
    for frames, and a frame it sends anyway does not reach the viewer."""
    anna = SourcedAgent(school.server, ANNA[0], AT_A2)
    bram = SourcedAgent(school.server, BRAM[0], OFF_SITE)
    try:
        await anna.connect()
        await bram.connect()
        async with client_at(school.server, TEACHER, AT_A) as teacher:
            dash = await teacher.dashboard()
            res = await dash.command("subscribe", class_id=school.class_id)
            assert res["success"] is True
            states = {s["id"]: s["state"] for s in res["result"]["students"]}
            assert states[school.anna]["elsewhere"] is False
            assert states[school.bram]["elsewhere"] is True
            await wait_for(lambda: anna.mode == "grid", message="on-site agent asked for frames")
            await asyncio.sleep(0.2)  # idle: the off-site agent may not be asked
            assert bram.mode == "off"
            await anna.send(frame(1))
            await bram.send(frame(1))
            await wait_for(lambda: len(dash.frames[school.anna]) == 1, message="on-site frame")
            await asyncio.sleep(0.2)  # idle: the off-site frame may not arrive
            assert dash.frames[school.bram] == []
            focus = await dash.command("focus", student_id=school.bram)
            assert focus["result"]["student"]["state"]["elsewhere"] is True
            await asyncio.sleep(0.2)  # idle: focus on it may not ask it for frames either
            assert bram.mode == "off"
            await dash.close()
    finally:
        await anna.close()
        await bram.close()


async def test_device_at_the_other_location_is_elsewhere(school):
    """Location B is not location A: a device at B is elsewhere for a teacher at A."""
    anna = SourcedAgent(school.server, ANNA[0], AT_B)
    try:
        await anna.connect()
        async with client_at(school.server, TEACHER, AT_A) as teacher:
            dash = await teacher.dashboard()
            res = await dash.command("subscribe", class_id=school.class_id)
            states = {s["id"]: s["state"] for s in res["result"]["students"]}
            assert states[school.anna] == {**states[school.anna], "online": True, "elsewhere": True}
            await asyncio.sleep(0.2)  # idle: the device at B may not be asked for frames
            assert anna.mode == "off"
            await dash.close()
    finally:
        await anna.close()


async def test_device_moving_mid_view_stops_at_once(school):
    """When a watched device reconnects from off-site, its tile says elsewhere, its frames
    stop reaching the view, and it is told to send nothing; coming back restores it."""
    anna = SourcedAgent(school.server, ANNA[0], AT_A2)
    moved = SourcedAgent(school.server, ANNA[0], OFF_SITE)
    back = SourcedAgent(school.server, ANNA[0], AT_A2)
    try:
        await anna.connect()
        async with client_at(school.server, TEACHER, AT_A) as teacher:
            dash = await teacher.dashboard()
            assert (await dash.command("subscribe", class_id=school.class_id))["success"]
            await wait_for(lambda: anna.mode == "grid")
            await anna.send(frame(1))
            await wait_for(lambda: len(dash.frames[school.anna]) == 1)

            await moved.connect()  # the same student, now from home
            await wait_for(
                lambda: (dash.last_state(school.anna) or {}).get("elsewhere") is True,
                message="tile says elsewhere",
            )
            assert dash.last_state(school.anna)["online"] is True
            await moved.send(frame(2))
            await asyncio.sleep(0.3)  # idle: the frame from off-site may not reach the view
            assert len(dash.frames[school.anna]) == 1
            assert moved.mode == "off"
            assert [w["mode"] for w in moved.watches] == ["off"]

            await back.connect()
            await wait_for(lambda: back.mode == "grid", message="back on-site: asked again")
            assert dash.last_state(school.anna)["elsewhere"] is False
            await back.send(frame(3))
            await wait_for(lambda: len(dash.frames[school.anna]) == 2)
            await dash.close()
    finally:
        for a in (anna, moved, back):
            await a.close()


async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(school):
    """Without trusted proxies, X-Forwarded-For/Forwarded naming an on-site address change
    nothing: the teacher off-site stays refused and the device off-site stays elsewhere."""
    spoof = {"X-Forwarded-For": AT_A2, "Forwarded": f"for={AT_A2}"}
    bram = SourcedAgent(school.server, BRAM[0], OFF_SITE, headers=spoof)
    try:
        await bram.connect()
        async with (
            client_at(school.server, TEACHER, OFF_SITE) as home,
            client_at(school.server, TEACHER, AT_A) as site,
        ):
            dash = await home.dashboard(headers=spoof)
            res = await dash.command("subscribe", class_id=school.class_id)
            assert res["error"]["code"] == "elsewhere"
            dash2 = await site.dashboard()
            res = await dash2.command("subscribe", class_id=school.class_id)
            states = {s["id"]: s["state"] for s in res["result"]["students"]}
            assert states[school.bram]["elsewhere"] is True
            await asyncio.sleep(0.2)  # idle: the spoofing agent may not be asked for frames
            assert bram.mode == "off"
            _status, me = await home.request("GET", "/api/me", headers=spoof)
            assert "elsewhere" in [n["kind"] for n in me["notices"]]
            await dash.close()
            await dash2.close()
    finally:
        await bram.close()


async def test_trusted_proxy_is_honoured(tmp_path):
    """From a configured proxy (itself off-site), the forwarded client address counts
    (X-Forwarded-For, the default proxy_header; Forwarded: tests/hardening/test_proxies.py);
    a forwarded off-site address is still refused."""
    proxy = "127.0.0.9"
    server = await start_live_server(tmp_path, trusted_proxies=proxy)
    try:
        school = await make_school(server)
        anna = SourcedAgent(server, ANNA[0], proxy, headers={"X-Forwarded-For": f"{AT_A2}:4711"})
        try:
            await anna.connect()
            async with client_at(server, TEACHER, proxy) as teacher:
                dash = await teacher.dashboard(headers={"X-Forwarded-For": f"{OFF_SITE}, {AT_A}"})
                res = await dash.command("subscribe", class_id=school.class_id)
                assert res["success"] is True
                states = {s["id"]: s["state"] for s in res["result"]["students"]}
                assert states[school.anna]["elsewhere"] is False
                await wait_for(lambda: anna.mode == "grid")
                await anna.send(frame(1))
                await wait_for(lambda: len(dash.frames[school.anna]) == 1)
                await dash.close()

                dash = await teacher.dashboard(headers={"X-Forwarded-For": f"{AT_A}, {OFF_SITE}"})
                res = await dash.command("subscribe", class_id=school.class_id)
                assert res["error"]["code"] == "elsewhere"  # the nearest untrusted hop counts
                await dash.close()
            async with client_at(server, TEACHER, OFF_SITE) as direct:
                dash = await direct.dashboard(headers={"X-Forwarded-For": AT_A})
                res = await dash.command("subscribe", class_id=school.class_id)
                assert res["error"]["code"] == "elsewhere"  # not from the proxy: ignored
                await dash.close()
        finally:
            await anna.close()
    finally:
        await server.stop()
