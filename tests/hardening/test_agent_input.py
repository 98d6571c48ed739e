"""A hostile agent cannot flood or poison a teacher: messages beyond the announced rate are
dropped at the server (and do not delay other agents), text is bounded in size and depth
before it is parsed, and a frame must be a real image of its declared encoding and size,
within what the watch asked for, so a decompression bomb is never relayed or stored."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import struct
import time
import zlib
from contextlib import asynccontextmanager

import pytest
from PIL import Image

from klasblik import protocol as p
from klasblik.server.storage.blobs.base import thumbnail_name
from tests.support.live import TestAgent, frame, jpeg, start_live_server
from tests.support.sourced import Dashboard
from tests.support.timing import timeout, wait_for

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
BRAM = ("bram.de.jong@school.example", "Bram", "de Jong")


@asynccontextmanager
async def watched(tmp_path, **overrides):
    """Anna's and Bram's agents, watched in the grid (250 ms: 8 frames a second allowed)."""
    server = await start_live_server(tmp_path, **overrides)
    ids = await server.add_class("7B", [ANNA, BRAM])
    anna, bram = TestAgent(server, ANNA[0]), TestAgent(server, BRAM[0])
    try:
        await anna.connect()
        await bram.connect()
        dash = Dashboard(await server.dashboard(await server.login("teacher@school.example")))
        assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"]
        await wait_for(lambda: anna.mode == "grid" and bram.mode == "grid", message="grid")
        yield server, ids, anna, bram, dash
        await dash.close()
    finally:
        await anna.close()
        await bram.close()
        await server.stop()


async def test_a_frame_flood_is_dropped_and_does_not_delay_another_agent(tmp_path):
    """Anna's agent sends 150 frames as fast as it can (each dropped one costs her 50 ms of
    not being read); at most the burst and twice the
    grid rate reach the teacher, she is told rate_limited, and every frame of Bram's, sent
    at his pace meanwhile, arrives within a second."""
    async with watched(tmp_path) as (_server, ids, anna, bram, dash):
        sid_a, sid_b = ids["students"][ANNA[0]], ids["students"][BRAM[0]]
        one = frame(seq=1)
        started = time.monotonic()

        async def flood() -> None:
            for _ in range(150):
                await anna.send(one)

        flooding = asyncio.create_task(flood())
        for seq in range(1, 6):
            sent = time.monotonic()
            await bram.send(frame(seq=seq, color=(0, 0, 200)))
            await wait_for(lambda n=seq: len(dash.frames[sid_b]) >= n, timeout(1), f"Bram {seq}")
            assert time.monotonic() - sent < timeout(1)
            await asyncio.sleep(0.3)
        await asyncio.wait_for(flooding, timeout(30))
        elapsed = time.monotonic() - started
        await wait_for(lambda: any(e["code"] == "rate_limited" for e in anna.errors))
        assert len(dash.frames[sid_b]) == 5
        allowed = 10 + 8 * (elapsed + 1)  # the burst, and twice the 4-a-second grid rate
        assert 1 <= len(dash.frames[sid_a]) <= allowed, (len(dash.frames[sid_a]), elapsed)


async def test_tab_lists_and_capture_errors_beyond_their_rate_are_dropped(tmp_path):
    """40 tab lists and 40 capture errors in a burst: the teacher gets at most the bursts
    (10 tab lists; 3 capture errors as status changes) plus what the rate allows."""
    async with watched(tmp_path) as (server, ids, anna, _bram, dash):
        sid = ids["students"][ANNA[0]]
        started = time.monotonic()
        before = len(dash.statuses[sid])
        for i in range(40):
            await anna.send(json.dumps({"type": "tabs", "tabs": [{"title": f"t{i}"}]}))
            await anna.send(json.dumps({"type": "capture_error", "reason": f"r{i}"}))
        await wait_for(lambda: any(e["code"] == "rate_limited" for e in anna.errors))
        await anna.send(json.dumps({"type": "heartbeat"}))
        await asyncio.sleep(0.3)  # idle: let anything relayed arrive
        elapsed = time.monotonic() - started
        conn = server.hub.agents[sid]
        assert conn.tabs[0]["title"] != "t39"  # the last ones were dropped, not applied
        errors = len(dash.statuses[sid]) - before
        assert errors <= 3 + elapsed / 5 + 1
        assert conn.capture_error is not None and conn.capture_error != "r39"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"type":"tabs","tabs":' + '{"a":' * 40_000 + "1" + "}" * 40_000 + "}",
        '{"type":"heartbeat","x":' + "[{" * 20 + "}]" * 20 + "}",
    ],
    ids=["arrays", "objects", "mixed-40"],
)
async def test_deep_json_gets_a_coded_error_and_the_socket_stays(tmp_path, text):
    """Nesting deeper than 16 levels (arrays, objects, mixed) is refused with
    message_too_deep before parsing, on the agent socket and on the dashboard socket, and
    both go on: a frame still reaches the teacher, a ping still gets its answer."""
    async with watched(tmp_path) as (_server, ids, anna, _bram, dash):
        await anna.send(text)
        await wait_for(lambda: any(e["code"] == "message_too_deep" for e in anna.errors))
        await anna.send(frame(seq=9))
        sid = ids["students"][ANNA[0]]
        await wait_for(lambda: len(dash.frames[sid]) == 1, message="the frame after it")
        dash._next += 1
        await dash.ws.send_str(text.replace('"type":"heartbeat"', '"type":"ping","id":77'))
        if '"id":77' in text.replace('"type":"heartbeat"', '"type":"ping","id":77'):
            await wait_for(lambda: 77 in dash.results)
            assert dash.results[77]["error"]["code"] == "message_too_deep"
        assert (await dash.command("ping"))["success"] is True
        assert not dash.ws.closed and not anna.ws.closed


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"heartbeat","seq":"7"}',
        '{"type":"heartbeat","seq":12345678901234567890}',
        '{"type":"heartbeat","seq":7,"x":[1]}',
        '{"type":"heartbeat" ,"seq":7}',
    ],
    ids=["seq-a-string", "seq-huge", "extra-field", "spaced"],
)
async def test_heartbeats_off_the_fast_path_are_fully_checked(tmp_path, text):
    """The canonical heartbeat skips the JSON decode; anything that only looks like one
    gets the full decode, with the same answer as before: its coded error, or nothing.
    A canonical heartbeat gets no answer and keeps the agent alive."""
    try:
        p.decode_message(text, "agent")
        expected = None
    except p.ProtocolError as exc:
        expected = exc.code
    async with watched(tmp_path) as (server, ids, anna, _bram, _dash):
        conn = server.hub.agents[ids["students"][ANNA[0]]]
        seen = conn.last_seen
        await anna.send('{"type":"heartbeat","seq":12}')
        await wait_for(lambda: conn.last_seen > seen, message="heartbeat counted")
        await anna.send(text)
        await anna.send('{"type":"tabs","tabs":"not a list"}')  # a marker: always refused
        await wait_for(lambda: len(anna.errors) >= (2 if expected else 1), message="answers")
        assert [e["code"] for e in anna.errors][:-1] == ([expected] if expected else [])
        assert not anna.ws.closed


async def test_oversized_text_gets_message_too_large(tmp_path):
    """A text message over 256 KiB is refused with a code; the agent goes on."""
    async with watched(tmp_path) as (_server, _ids, anna, _bram, _dash):
        await anna.send('{"type":"heartbeat","x":"' + "a" * (p.MAX_TEXT_BYTES + 10) + '"}')
        await wait_for(lambda: any(e["code"] == "message_too_large" for e in anna.errors))
        assert not anna.ws.closed


# ---- images ------------------------------------------------------------------------------


@functools.cache
def _png_bomb(width: int, height: int) -> bytes:
    """A real PNG of width x height black pixels: a few hundred kB that decode to GBs."""
    rows = zlib.compressobj(9)
    body = b"".join(rows.compress(b"\0" * (width * 3 + 1)) for _ in range(height))
    body += rows.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(jpeg())
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _webp(width: int, height: int, lossless: bool = False) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 10)).save(buf, "WEBP", lossless=lossless)
    return buf.getvalue()


def _webp_canvas(width: int, height: int, flags: int = 0) -> bytes:
    """An extended WebP (VP8X) header claiming a canvas of width x height."""
    vp8x = (
        bytes([flags, 0, 0, 0])
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + vp8x + _webp(8, 8)[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _apng(width: int, height: int) -> bytes:
    png = _png_bomb(width, height)
    actl = struct.pack(">I", 8) + b"acTL" + struct.pack(">II", 2, 0) + b"\0\0\0\0"
    return png[:33] + actl + png[33:]


CASES = {
    # name: (encoding, header width, header height, image bytes, expected code)
    "png bomb, honest header": (
        p.Encoding.PNG,
        7680,
        4320,
        lambda: _png_bomb(7680, 4320),
        "image_too_large",
    ),
    "png bomb, small header": (p.Encoding.PNG, 64, 36, lambda: _png_bomb(7680, 4320), "bad_image"),
    "jpeg claiming 65500x65500": (
        p.Encoding.JPEG,
        64,
        36,
        lambda: _jpeg_claiming(65500, 65500),
        "bad_image",
    ),
    "jpeg with another size": (p.Encoding.JPEG, 64, 36, lambda: jpeg(size=(32, 18)), "bad_image"),
    "jpeg without frame header": (
        p.Encoding.JPEG,
        64,
        36,
        lambda: b"\xff\xd8\xff\xda" + b"\0" * 100,
        "bad_image",
    ),
    "webp lossy, other size": (p.Encoding.WEBP, 64, 36, lambda: _webp(40, 30), "bad_image"),
    "webp lossless too large": (
        p.Encoding.WEBP,
        800,
        450,
        lambda: _webp(800, 450, True),
        "image_too_large",
    ),
    "webp canvas 16384x16384": (
        p.Encoding.WEBP,
        64,
        36,
        lambda: _webp_canvas(16384, 16384),
        "bad_image",
    ),
    "animated webp": (
        p.Encoding.WEBP,
        64,
        36,
        lambda: _webp_canvas(64, 36, flags=0x02),
        "bad_image",
    ),
    "animated png": (p.Encoding.PNG, 64, 36, lambda: _apng(64, 36), "bad_image"),
    "png bytes called jpeg": (p.Encoding.JPEG, 64, 36, lambda: _png_bomb(64, 36), "bad_frame"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_frame_that_is_not_the_image_it_claims_is_refused(tmp_path, case):
    """Each hostile frame gets its code, is neither relayed nor stored; an honest frame
    (JPEG, PNG, WebP of the size it says) afterwards is."""
    encoding, width, height, make, code = CASES[case]
    async with watched(tmp_path) as (server, ids, anna, _bram, dash):
        sid = ids["students"][ANNA[0]]
        header = p.FrameHeader(p.FrameKind.GRID, encoding, width, height, 1, 0)
        await anna.send(p.encode_frame(header, make()))
        await wait_for(lambda: any(e["code"] == code for e in anna.errors), message=code)
        assert [e["code"] for e in anna.errors] == [code]
        for seq, (enc, image) in enumerate(
            [
                (p.Encoding.JPEG, jpeg()),
                (p.Encoding.PNG, _png_bomb(64, 36)),
                (p.Encoding.WEBP, _webp(64, 36)),
            ],
            start=2,
        ):
            await anna.send(p.encode_frame(p.FrameHeader(1, enc, 64, 36, seq, 0), image))
        await wait_for(lambda: len(dash.frames[sid]) == 3, message="the honest frames")
        seqs = [p.decode_frame(f).seq for f in dash.frames[sid]]
        assert seqs == [2, 3, 4]
        await server.latest.drain()
        stored = await server.store.get(thumbnail_name(sid))
        assert stored is not None and stored.data.startswith(b"RIFF")
