"""Hot paths found by the server benchmark: connection storms, listing one student's blobs."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from klasblik.server.storage.models import Student
from tests.support.live import TestAgent, start_live_server
from tests.support.timing import timeout, wait_for

STUDENTS = [(f"leerling{i}@school.example", f"Leerling{i}", "Test") for i in range(12)]


async def test_connection_storm_is_recorded_in_few_transactions(tmp_path, db_url):
    """Twelve agents saying hello at once are looked up and recorded in fewer than twelve
    queries, and every one of them gets its welcome, last_ip and last_seen."""
    server = await start_live_server(tmp_path, database_url=db_url)
    agents = [TestAgent(server, s[0]) for s in STUDENTS]
    try:
        roster = await server.add_class("7B", STUDENTS)
        answers = await asyncio.gather(*(a.connect() for a in agents))
        assert all(a["type"] == "welcome" for a in answers)

        async def recorded() -> bool:
            async with server.sm() as session:
                rows = (
                    await session.scalars(
                        select(Student).where(Student.id.in_(roster["students"].values()))
                    )
                ).all()
            return all(r.last_ip == "127.0.0.1" and r.last_seen is not None for r in rows)

        await wait_for(recorded, timeout(10), "last_ip and last_seen of every student")
        assert 1 <= server.last_seen.batches < len(STUDENTS)
        assert 1 <= server.students.queries < len(STUDENTS)
    finally:
        for agent in agents:
            await agent.close()
        await server.stop()


async def test_local_store_lists_a_prefix_without_other_folders(tmp_path):
    """Listing one student's prefix finds exactly that student's blobs, however many others."""
    from klasblik.server.storage.blobs.base import student_prefix, thumbnail_name
    from klasblik.server.storage.blobs.local import LocalBlobStore

    store = LocalBlobStore(tmp_path / "blobs")
    for sid in range(1, 30):
        await store.put(thumbnail_name(sid), b"\xff\xd8\xff" + bytes([sid]))
    names = [b.name async for b in store.list(student_prefix(7))]
    assert names == [thumbnail_name(7)]
    assert [b.name async for b in store.list(student_prefix(999))] == []
    assert len([b async for b in store.list("")]) == 29


async def test_silent_agent_is_closed_by_the_sweep(tmp_path):
    """An agent that sends nothing after its welcome is closed after three heartbeats,
    while an agent that keeps sending heartbeats stays connected."""
    server = await start_live_server(tmp_path, heartbeat_s=1)
    quiet = TestAgent(server, STUDENTS[0][0])
    talking = TestAgent(server, STUDENTS[1][0])
    try:
        await server.add_class("7B", STUDENTS[:2])
        assert (await quiet.connect())["type"] == "welcome"
        assert (await talking.connect())["type"] == "welcome"
        loop = asyncio.get_running_loop()
        start, limit = loop.time(), timeout(5)
        while loop.time() - start < limit and not quiet.ws.closed:
            await talking.send('{"type":"heartbeat"}')
            await asyncio.sleep(0.3)  # the talking agent's heartbeats, well within 1 s
        assert quiet.ws.closed
        assert 2.5 <= loop.time() - start <= limit
        assert not talking.ws.closed
        assert len(server.hub.agents) == 1
    finally:
        await quiet.close()
        await talking.close()
        await server.stop()


class _CountingStore:
    """A blob store that records what it was asked to write, and can fail."""

    def __init__(self) -> None:
        self.batches: list[dict[str, bytes]] = []
        self.fail = False

    async def put_many(self, blobs):
        from klasblik.server.storage.blobs.base import BlobStoreError

        self.batches.append(dict(blobs))
        if self.fail:
            return {name: BlobStoreError("disk full") for name in blobs}
        return {}


async def test_latest_writer_batches_and_keeps_the_last_state(tmp_path):
    """Offers for many blobs land in few batches; within the interval only the newest data
    of a blob is written (trailing write); a failing store shows as degraded, then recovers."""
    from klasblik.server.storage.latest import LatestWriter

    store = _CountingStore()
    writer = LatestWriter(store, interval_s=0.3)  # type: ignore[arg-type]
    try:
        for sid in range(200):
            writer.offer(f"students/{sid}/thumbnail", b"first")
        await writer.drain()
        assert sum(len(b) for b in store.batches) == 200
        assert len(store.batches) < 10
        first_batches = len(store.batches)
        for n in range(5):  # within the interval: only the last one is kept
            writer.offer("students/1/thumbnail", b"v%d" % n)
        await writer.drain()
        later = [b for b in store.batches[first_batches:] if "students/1/thumbnail" in b]
        assert [b["students/1/thumbnail"] for b in later] == [b"v4"]
        assert writer.writes == 201 and not writer.degraded

        store.fail = True
        writer.offer("students/2/thumbnail", b"x")
        await writer.drain()
        assert writer.degraded and writer.failures == 1
        store.fail = False
        writer.offer("students/3/thumbnail", b"y")
        await writer.drain()
        assert not writer.degraded
    finally:
        await writer.close()


async def test_a_blob_beside_another_is_written_with_it_only_when_it_changed(monkeypatch):
    """A thumbnail's place is written in the same batch as the thumbnail, but again only
    when it changed, when its last write failed, after an erasure of the student, or when
    it is ``BESIDE_REFRESH_S`` old; a view into a frame reaches the store as bytes."""
    from klasblik.server.storage import latest as latest_mod

    store = _CountingStore()
    writer = latest_mod.LatestWriter(store, interval_s=0)  # type: ignore[arg-type]
    thumb, place = "students/1/thumbnail", "students/1/thumbnail.place"
    frame = b"HEADER" + b"\xff\xd8\xffpicture"

    async def write(at: bytes) -> dict[str, bytes]:
        writer.offer(thumb, memoryview(frame)[6:], (place, at))
        await writer.drain()
        return store.batches[-1]

    try:
        first = await write(b'{"location_id":1}')
        assert first == {thumb: b"\xff\xd8\xffpicture", place: b'{"location_id":1}'}
        assert all(type(v) is bytes for v in first.values())
        assert await write(b'{"location_id":1}') == {thumb: b"\xff\xd8\xffpicture"}
        moved = await write(b'{"location_id":2}')  # taken elsewhere: both in one batch
        assert moved == {thumb: b"\xff\xd8\xffpicture", place: b'{"location_id":2}'}

        store.fail = True
        assert place in await write(b'{"location_id":3}')
        store.fail = False
        assert place in await write(b'{"location_id":3}')  # the failed write is redone

        writer.forget("students/1/")  # an erasure removed both
        assert place in await write(b'{"location_id":3}')
        assert place not in await write(b'{"location_id":3}')

        monkeypatch.setattr(latest_mod, "BESIDE_REFRESH_S", 0.0)
        assert place in await write(b'{"location_id":3}')  # old enough: written again
    finally:
        await writer.close()


async def test_latest_writer_keeps_each_blobs_interval_with_many_pending():
    """Thousands of pending blobs: each is written at most once per interval, the newest
    data each time, and none is left behind (the flusher works from a heap of due times)."""
    from klasblik.server.storage.latest import LatestWriter

    store = _CountingStore()
    writer = LatestWriter(store, interval_s=0.2)  # type: ignore[arg-type]
    names = [f"students/{sid}/thumbnail" for sid in range(3000)]
    try:
        for round_ in range(3):
            for name in names:
                writer.offer(name, b"r%d" % round_)
            await asyncio.sleep(0.05)
        await writer.drain()
        written: dict[str, list[bytes]] = {}
        for batch in store.batches:
            for name, data in batch.items():
                written.setdefault(name, []).append(data)
        assert set(written) == set(names)
        # the first offer is written at once, the rest within the interval: the last one
        assert all(w == [b"r0", b"r2"] for w in written.values()), written[names[0]]
    finally:
        await writer.close()
