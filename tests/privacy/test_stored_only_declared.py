"""Only what the privacy statement declares is stored: the grid thumbnail (never a close-up
frame), tab addresses without their query strings (unless IT opts in), and remote-lesson
periods go with the audit retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import func, select

from klasblik import protocol as p
from klasblik.server.retention.purge import purge
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name
from klasblik.server.storage.blobs.local import LocalBlobStore
from klasblik.server.storage.models import Location, RemoteMode
from tests.privacy.conftest import ANNA, TEACHER
from tests.support.live import TestAgent, frame, start_live_server
from tests.support.roster import seed_school
from tests.support.timing import wait_for

TABS = [
    {"title": "Zoeken", "url": "https://www.google.com/search?q=mijn+ziekte#top", "active": True},
    {"title": "Wiskunde", "url": "https://example.org/les/3", "active": False},
]


async def _focused(server, ids):
    teacher = await server.login(TEACHER)
    ws = await server.dashboard(teacher)
    sid = ids["students"][ANNA[0]]
    await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
    await ws.send_str(json.dumps({"type": "focus", "id": 2, "student_id": sid}))
    return ws


async def _handled(agent):
    """Wait until the server has handled everything the agent sent (a second hello is
    answered with an error, in order)."""
    n = len(agent.errors)
    hello = {
        "type": "hello",
        "protocol": 1,
        "token": "t",
        "account": ANNA[0],
        "device": {"id": "d", "kind": "desktop"},
    }
    await agent.send(json.dumps(hello))
    await wait_for(lambda: len(agent.errors) > n, message="agent messages handled")


async def test_close_up_frames_are_never_stored_grid_thumbnails_are(server):
    """In focus, the agent's focus-kind frames reach the teacher but not the store; a grid
    frame is stored."""
    ids = await server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        ws = await _focused(server, ids)
        await wait_for(lambda: agent.mode == "focus", message="focus asked")
        await agent.send(frame(1, kind=2))
        await _handled(agent)
        await server.latest.drain()
        assert await server.store.get(thumbnail_name(sid)) is None
        assert server.hub.frames_relayed >= 1
        await agent.send(frame(2, kind=1))
        await _handled(agent)
        await server.latest.drain()
        assert await server.store.get(thumbnail_name(sid)) is not None
        await ws.close()
    finally:
        await agent.close()


async def _tabs_sent_and_stored(server) -> tuple[bytes, list[dict]]:
    """An agent in a teacher's focus sends TABS; (the stored tab list, the live one)."""
    ids = await server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        ws = await _focused(server, ids)
        await wait_for(lambda: agent.mode == "focus", message="focus asked")
        await agent.send(json.dumps({"type": "tabs", "tabs": TABS}))
        await _handled(agent)
        await server.latest.drain()
        blob = await server.store.get(tabs_name(sid))
        assert blob is not None
        live = list(server.hub.agents[sid].tabs)
        await ws.close()
        return blob.data, live
    finally:
        await agent.close()


async def test_stored_tab_addresses_lose_their_query_string(server):
    """The teacher sees the tab list as sent; the stored copy has no ?query or #fragment."""
    data, live = await _tabs_sent_and_stored(server)
    stored = json.loads(data)
    assert [t["url"] for t in stored] == ["https://www.google.com/search", TABS[1]["url"]]
    assert "ziekte" not in data.decode()
    assert live[0]["url"] == TABS[0]["url"]  # live, not stored


async def test_it_may_opt_in_to_keep_query_strings(db_url, tmp_path):
    """store_url_query = true keeps the whole address."""
    server = await start_live_server(tmp_path, database_url=db_url, store_url_query=True)
    try:
        data, _live = await _tabs_sent_and_stored(server)
        assert json.loads(data)[0]["url"] == TABS[0]["url"]
    finally:
        await server.stop()


async def test_a_device_going_offline_has_its_last_state_stored_at_once(db_url, tmp_path):
    """With an hour between two stored writes, the first picture and tab list are written
    at once and the next ones wait; when the agent disconnects they are written at once."""
    server = await start_live_server(tmp_path, database_url=db_url, store_interval_s=3600)
    ids = await server.add_class("7B", [ANNA])
    sid = ids["students"][ANNA[0]]
    agent = TestAgent(server, ANNA[0])
    try:
        await agent.connect()
        teacher = await server.login(TEACHER)
        ws = await server.dashboard(teacher)
        await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": ids["class_id"]}))
        await wait_for(lambda: agent.mode == "grid", message="grid asked")
        first, second = frame(1, color=(200, 30, 30)), frame(2, color=(30, 30, 200))
        await agent.send(first)
        await agent.send(json.dumps({"type": "tabs", "tabs": TABS[:1]}))
        await _handled(agent)

        async def stored(name: str, data: bytes) -> bool:
            blob = await server.store.get(name)
            return blob is not None and blob.data == data

        header = p.FRAME_HEADER_SIZE  # the stored picture is the image without it
        await wait_for(lambda: stored(thumbnail_name(sid), first[header:]), message="1st stored")
        await agent.send(second)
        await agent.send(json.dumps({"type": "tabs", "tabs": TABS[1:]}))
        await _handled(agent)
        await asyncio.sleep(0.5)  # long enough for a write the interval did not hold back
        assert await stored(thumbnail_name(sid), first[header:])  # the interval holds
        await agent.close()
        await wait_for(lambda: stored(thumbnail_name(sid), second[header:]), message="last stored")
        tabs = await server.store.get(tabs_name(sid))
        assert tabs is not None and [t["url"] for t in json.loads(tabs.data)] == [TABS[1]["url"]]
        await ws.close()
    finally:
        await agent.close()
        await server.stop()


async def test_remote_lesson_periods_are_purged_with_the_audit_log(sm, settings, tmp_path):
    """A remote-lesson period that ended before the audit cutoff goes; a recent one stays."""
    school = await seed_school(sm)
    now = dt.datetime(2026, 11, 20, 3, 30, tzinfo=dt.UTC)
    async with sm() as session, session.begin():
        loc = await session.scalar(select(Location).where(Location.school_id == school))
        old = now - dt.timedelta(days=200)
        session.add_all(
            [
                RemoteMode(
                    location_id=loc.id, started_at=old, until=old, reason="storm", started_by="it"
                ),
                RemoteMode(
                    location_id=loc.id,
                    started_at=old,
                    until=now,
                    reason="x",
                    started_by="it",
                    ended_at=old + dt.timedelta(hours=1),
                    ended_by="it",
                    end_note="ended early",
                ),
                RemoteMode(
                    location_id=loc.id,
                    started_at=now - dt.timedelta(days=3),
                    until=now - dt.timedelta(days=2),
                    reason="recent",
                    started_by="it",
                ),
            ]
        )
    store = LocalBlobStore(tmp_path / "b")
    report = await purge(sm, store, settings, lambda: now)
    assert report.remote_modes == 2
    async with sm() as session:
        left = list(await session.scalars(select(RemoteMode.reason)))
        assert left == ["recent"]
        assert await session.scalar(select(func.count()).select_from(RemoteMode)) == 1
    await store.close()
