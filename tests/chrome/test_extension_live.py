"""The Chromebook agent in headless Chromium against the real Klasblik server on loopback:
a teacher's dashboard receives its thumbnails and tabs, watching switches it on and off,
and it survives the server going away."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from klasblik import protocol as p
from klasblik.server.app import init_app

from ..support.live import LiveServer, start_live_server
from ..support.tiles import apply_frame
from ..support.timing import timeout, wait_for
from .extension import ChromeAgent, running_agent
from .pages import serve_pages, solid_page_html

pytestmark = pytest.mark.browser

STUDENT = ("sem.devries@school.example", "Sem", "de Vries")
TEACHER = "teacher@school.example"
TEACHER_NAME = "M. de Vries"
RED = (208, 16, 16)
GREEN = (16, 160, 48)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _close_to(img: Image.Image, rgb: tuple[int, int, int], tol: int = 40) -> bool:
    got = img.convert("RGB").getpixel((img.width // 2, img.height // 2))
    return all(abs(a - b) <= tol for a, b in zip(got, rgb, strict=False))  # type: ignore[arg-type]


@dataclass
class HubSpy:
    """Records every frame and tab list the server's hub receives from agents."""

    frames: list[tuple[float, str, p.FrameHeader]] = field(default_factory=list)
    tabs: list[tuple[float, list[dict[str, Any]]]] = field(default_factory=list)

    def attach(self, server: LiveServer) -> None:
        hub = server.hub
        on_frame, on_tabs = hub.on_frame, hub.on_tabs

        def frame_spy(conn: Any, data: bytes, header: p.FrameHeader) -> int:
            self.frames.append((time.monotonic(), conn.mode, header))
            return on_frame(conn, data, header)

        def tabs_spy(conn: Any, tabs: list[dict[str, Any]]) -> None:
            self.tabs.append((time.monotonic(), tabs))
            on_tabs(conn, tabs)

        hub.on_frame = frame_spy  # type: ignore[method-assign]
        hub.on_tabs = tabs_spy  # type: ignore[method-assign]

    def frames_since(self, t: float) -> list[p.FrameHeader]:
        return [h for at, _mode, h in self.frames if at >= t]


class Teacher:
    """The teacher's dashboard socket: subscribe, focus, and collect what arrives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[tuple[int, p.FrameHeader, bytes]] = []
        self.raw: list[bytes] = []  # the viewer frames as they came, for the dashboard's code
        self.tabs: list[list[dict[str, Any]]] = []
        self.results: dict[int, dict[str, Any]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for m in self.ws:
            if m.type == aiohttp.WSMsgType.BINARY:
                self.raw.append(m.data)
                self.frames.append(p.decode_viewer_frame(m.data))
            elif m.type == aiohttp.WSMsgType.TEXT:
                msg = json.loads(m.data)
                if msg["type"] == "tabs":
                    self.tabs.append(msg["tabs"])
                elif msg["type"] == "result":
                    self.results[msg["id"]] = msg

    async def command(self, msg: dict[str, Any]) -> dict[str, Any]:
        await self.ws.send_str(json.dumps(msg))
        await wait_for(lambda: msg["id"] in self.results, timeout(10), f"answer to {msg['type']}")
        answer = self.results[msg["id"]]
        assert answer["success"] is True, answer
        return answer

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait([self._reader], timeout=timeout(5))


@dataclass
class Rig:
    server: LiveServer
    agent: ChromeAgent
    spy: HubSpy
    ids: dict[str, Any]
    base: str

    @property
    def sid(self) -> int:
        return self.ids["students"][STUDENT[0]]

    async def teacher(self) -> Teacher:
        client = await self.server.login(TEACHER)
        return Teacher(await self.server.dashboard(client))

    def connected(self) -> bool:
        return self.sid in self.server.hub.agents


def _text_page() -> str:
    """A long page of text in blocks of different background colours (a picture moved by
    a few rows against another shows), no scrollbar (its thumb would change each time)."""
    backgrounds = ["#ffffff", "#e8f0ff", "#fff4d8", "#e6f6e6", "#f6e6f6"]
    blocks = "".join(
        f"<div style='background:{backgrounds[i % 5]};padding:6px 24px'>"
        + " ".join(f"Regel {i}.{j}: de leerlingen lezen over de Gouden Eeuw." for j in range(6))
        + "</div>"
        for i in range(60)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Tekst</title><style>"
        "html{scrollbar-width:none}body{margin:0;font:18px sans-serif;line-height:1.5}"
        f"</style></head><body>{blocks}</body></html>"
    )


@pytest.fixture
async def pages() -> AsyncIterator[str]:
    html = {
        "/red": solid_page_html("Rood vlak", _hex(RED), "Rekenen"),
        "/green": solid_page_html("Groen vlak", _hex(GREEN)),
        "/text": _text_page(),
    }
    async with serve_pages(html) as base:
        yield base


@pytest.fixture
async def rig(live_server: LiveServer, pages: str, tmp_path: Path) -> AsyncIterator[Rig]:
    """The extension, the red page in front, connected to the real server; nobody watching."""
    ids = await live_server.add_class("7B", [STUDENT], teacher=TEACHER, teacher_name=TEACHER_NAME)
    spy = HubSpy()
    spy.attach(live_server)
    async with running_agent(
        tmp_path, server_url=live_server.agent_url, token=live_server.token, account=STUDENT[0]
    ) as agent:
        await agent.open_page(pages + "/green")
        await agent.open_page(pages + "/red")
        r = Rig(live_server, agent, spy, ids, pages)
        await wait_for(r.connected, timeout(30), "the extension to connect to the server")
        yield r


async def test_teacher_gets_thumbnail_and_tabs(rig: Rig) -> None:
    """Subscribing brings a red thumbnail and the active tab; focus brings all tabs."""
    teacher = await rig.teacher()
    try:
        await teacher.command({"type": "subscribe", "id": 1, "class_id": rig.ids["class_id"]})
        await wait_for(lambda: teacher.frames, timeout(20), "a thumbnail at the dashboard")
        sid, header, image = teacher.frames[0]
        assert sid == rig.sid
        assert header.kind == p.FrameKind.GRID
        s = rig.server.settings
        img = Image.open(io.BytesIO(image))
        assert img.size == (header.width, header.height)
        assert img.width <= s.grid_width and img.height <= s.grid_height
        assert _close_to(img, RED), img.convert("RGB").getpixel((img.width // 2, img.height // 2))
        tabs = await wait_for(lambda: teacher.tabs, timeout(10), "a tab list at the dashboard")
        assert tabs[-1] == [
            {
                "title": "Rood vlak",
                "url": rig.base + "/red",
                "active": True,
                "window": tabs[-1][0]["window"],
            }
        ]

        await teacher.command({"type": "focus", "id": 2, "student_id": rig.sid})
        focus = await wait_for(
            lambda: [f for f in teacher.frames if f[1].kind == p.FrameKind.FOCUS],
            timeout(20),
            "a focus frame",
        )
        assert focus[0][1].width > s.grid_width
        all_tabs = await wait_for(
            lambda: [t for t in teacher.tabs if len(t) >= 2], timeout(10), "all tabs"
        )
        urls = {t["url"]: t["active"] for t in all_tabs[-1]}
        assert urls[rig.base + "/red"] is True and urls[rig.base + "/green"] is False
    finally:
        await teacher.close()


async def test_a_small_change_goes_out_as_changed_tiles(rig: Rig) -> None:
    """The extension says tiles in its hello; after the whole first picture the page stays
    as it was and is looked at with cheap JPEG probes (docs/chromebook.md); a small change
    then goes out as a delta of a few tiles, which painted on that picture gives what the
    page shows (docs/protocol.md, "Delta frames")."""
    teacher = await rig.teacher()
    try:
        await teacher.command({"type": "subscribe", "id": 1, "class_id": rig.ids["class_id"]})
        await wait_for(lambda: teacher.frames, timeout(20), "a thumbnail at the dashboard")
        assert rig.server.hub.agents[rig.sid].tiles
        await rig.agent.evaluate("globalThis.klasblikCaptureTimes.splice(0)")
        probes: list[str] = []

        async def probing() -> bool:
            kinds = await rig.agent.evaluate(
                "globalThis.klasblikCaptureTimes.splice(0).map((t) => t.kind)"
            )
            probes.extend(kinds)
            return probes.count("probe") >= 2

        await wait_for(probing, timeout(20), lambda: f"probes of a quiet page: {probes}")
        assert set(probes[: probes.index("probe")]) <= {"same"}  # PNG captures, then probes
        first = len(teacher.frames)
        page = rig.agent.context.pages[-1]
        await page.evaluate(
            "() => { const d = document.createElement('div');"
            f" d.style.cssText = 'position:fixed;left:0;top:0;width:25vw;height:25vh;"
            f"background:{_hex(GREEN)}'; document.body.append(d); }}"
        )
        deltas = await wait_for(
            lambda: [f for f in teacher.frames[first:] if f[1].encoding == p.Encoding.TILES],
            timeout(20),
            "a delta frame",
        )
        picture = None
        for _sid, header, body in teacher.frames[: teacher.frames.index(deltas[0]) + 1]:
            picture = apply_frame(picture, header, body)
        assert picture is not None
        w, h = picture.size
        tiles = p.decode_tiles(deltas[0][2], w, h)
        assert sum(t.width * t.height for t in tiles) < 0.5 * w * h
        near = lambda a, b: all(abs(x - y) <= 40 for x, y in zip(a, b, strict=False))  # noqa: E731
        assert near(picture.getpixel((w // 10, h // 10)), GREEN), picture.getpixel(
            (w // 10, h // 10)
        )
        assert near(picture.getpixel((w * 3 // 4, h * 3 // 4)), RED)
    finally:
        await teacher.close()


# In a page of the server's origin: the dashboard's own FrameImage (dashboard/images.js)
# shows the viewer frames one after another, as a grid tile does; then the RGB of what it
# shows (the canvas deltas are painted on, or the <img> of a last key frame).
_DASHBOARD_PAINTS = """async (frames) => {
  const { FrameImage } = await import("/images.js");
  const { parseViewerFrame } = await import("/frames.js");
  const img = document.createElement("img");
  document.body.append(img);
  const shown = new FrameImage(img);
  for (const b64 of frames) {
    const frame = parseViewerFrame(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    if (!shown.showFrame(frame)) throw new Error(`frame ${frame.seq} not taken`);
  }
  await shown.chain;
  const source = shown.canvas && !shown.canvas.hidden ? shown.canvas : img;
  if (source === img) await img.decode();
  const canvas = new OffscreenCanvas(img.naturalWidth || source.width, img.naturalHeight || source.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(source, 0, 0);
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  return { width: canvas.width, height: canvas.height, rgb: Array.from(rgba).filter((_, i) => i % 4 !== 3) };
}"""


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    diff = [abs(x - y) for x, y in zip(a.tobytes(), b.tobytes(), strict=True)]
    return sum(diff) / len(diff)


async def test_a_scrolled_page_goes_out_as_copies_the_dashboard_paints(rig: Rig) -> None:
    """A text page scrolled by 53 px at a time (not a whole number of the grid picture's
    rows: the tab is scaled 3.2 times) goes out as deltas that start with a copy tile;
    the server takes them (the dashboard socket gets them), the dashboard's own code in
    Chromium paints them as Pillow does, and the picture is the page as it now stands."""
    page = await rig.agent.open_page(rig.base + "/text")
    teacher = await rig.teacher()
    try:
        await teacher.command({"type": "subscribe", "id": 1, "class_id": rig.ids["class_id"]})
        await wait_for(lambda: teacher.frames, timeout(20), "a thumbnail at the dashboard")
        copies = 0
        for _ in range(4):
            seen = len(teacher.frames)
            await page.evaluate("() => window.scrollBy(0, 53)")
            _sid, header, body = await wait_for(
                lambda n=seen: next(iter(teacher.frames[n:]), None),  # type: ignore[misc]
                timeout(20),
                "a frame of the scrolled page",
            )
            if header.encoding == p.Encoding.TILES:
                tiles = p.decode_tiles(body, header.width, header.height)
                copies += tiles[0].encoding == p.TileEncoding.COPY
        assert copies >= 3, f"{copies} of 4 scrolls went out as a copy"
        assert rig.connected()  # no frame was refused (a bad frame closes the connection)
        picture = None
        for _sid, header, body in teacher.frames:
            picture = apply_frame(picture, header, body)
        assert picture is not None
        w, h = picture.size

        async def scaled_shot() -> Image.Image:
            shot = Image.open(io.BytesIO(await page.screenshot())).convert("RGB")
            return shot.resize((w, h), Image.Resampling.BOX)

        want = await scaled_shot()
        await page.evaluate("() => window.scrollBy(0, -53)")
        before = await scaled_shot()  # the page one scroll earlier
        # the picture is the page as it stands, not as it stood 53 px before
        assert _mean_diff(picture, want) < 0.5 * _mean_diff(picture, before), (
            _mean_diff(picture, want),
            _mean_diff(picture, before),
        )

        dashboard = await rig.agent.context.new_page()
        await dashboard.goto(rig.server.base_url + "/signin")
        shown = await dashboard.evaluate(
            _DASHBOARD_PAINTS, [base64.b64encode(f).decode() for f in teacher.raw]
        )
        assert (shown["width"], shown["height"]) == (w, h)
        painted = Image.frombytes("RGB", (w, h), bytes(shown["rgb"]))
        worst = max(abs(a - b) for a, b in zip(painted.tobytes(), picture.tobytes(), strict=True))
        assert worst <= 3, f"the dashboard's picture differs from Pillow's by up to {worst}"
    finally:
        await teacher.close()


async def test_watch_and_unwatch_switch_frames_and_badge(rig: Rig) -> None:
    """Nobody watching: no frames and no badge; watched: frames and ON naming the teacher;
    the teacher leaves: badge cleared and no more frames."""
    await asyncio.sleep(3)  # idle: nobody watches, so nothing may be sent
    assert rig.spy.frames == [] and rig.spy.tabs == []
    assert (await rig.agent.badge())["text"] == ""

    teacher = await rig.teacher()
    await teacher.command({"type": "subscribe", "id": 1, "class_id": rig.ids["class_id"]})
    await wait_for(lambda: rig.spy.frames, timeout(20), "frames at the server")
    await rig.agent.wait_status(lambda s: s["mode"] == "grid")
    badge = await rig.agent.badge()
    assert badge["text"] == "ON" and TEACHER_NAME in badge["title"]

    await teacher.close()
    await rig.agent.wait_status(lambda s: s["mode"] == "off")
    assert (await rig.agent.badge())["text"] == ""
    settled = time.monotonic() + timeout(1.0)  # a frame under way at "off" may still land
    page = rig.agent.context.pages[-1]
    await page.evaluate(
        f"document.body.style.background = {_hex(GREEN)!r}"
    )  # a change nobody asked for
    await asyncio.sleep(settled + 3 - time.monotonic())  # idle: no frame in the 3 s after that
    assert rig.spy.frames_since(settled) == []


async def test_survives_the_server_going_away(pages: str, tmp_path: Path) -> None:
    """Server stopped and started again on the same port: the extension reconnects and
    the teacher gets thumbnails again."""
    server = await start_live_server(tmp_path)
    ids = await server.add_class("7B", [STUDENT], teacher=TEACHER, teacher_name=TEACHER_NAME)
    sid = ids["students"][STUDENT[0]]
    try:
        async with running_agent(
            tmp_path, server_url=server.agent_url, token=server.token, account=STUDENT[0]
        ) as agent:
            await agent.open_page(pages + "/red")
            await wait_for(lambda: sid in server.hub.agents, timeout(30), "first connection")
            port = server.port
            await server.stop()
            down = await agent.wait_status(lambda s: not s["connected"], timeout=timeout(15))
            await agent.wait_status(  # an attempt that fails while the server is down
                lambda s: s["lastClose"]["at"] > down["lastClose"]["at"], timeout=timeout(10)
            )

            app = init_app(server.settings)  # same database file: same roster
            runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            server = LiveServer(app, runner, port, server.settings)
            await wait_for(
                lambda: sid in server.hub.agents, timeout(30), "reconnection after restart"
            )

            client = await server.login(TEACHER)
            teacher = Teacher(await server.dashboard(client))
            try:
                await teacher.command({"type": "subscribe", "id": 1, "class_id": ids["class_id"]})
                await wait_for(lambda: teacher.frames, timeout(20), "a thumbnail after the restart")
                assert _close_to(Image.open(io.BytesIO(teacher.frames[0][2])), RED)
            finally:
                await teacher.close()
    finally:
        await server.stop()
