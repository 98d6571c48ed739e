"""Demo mode: a demo school, two classes, a demo teacher, and simulated agents that speak the
real protocol over real WebSockets with synthetic, changing screens and tab lists.

Only for trying Klasblik out. Everything here is clearly named demo; the demo sign-in
works only in demo mode and only from this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from klasblik import protocol as p
from klasblik.server.keys import DB, DEMO, NOTICES, SETTINGS
from klasblik.server.storage.models import Location, School, SchoolClass, Staff, Student

__all__ = [
    "DEMO_ADMIN",
    "DEMO_TEACHER",
    "DemoAgent",
    "DemoState",
    "demo_ctx",
    "seed_demo",
    "start_demo_agents",
]

log = logging.getLogger(__name__)

DEMO_DOMAIN = "demo.klasblik.invalid"
DEMO_TEACHER = f"demo.teacher@{DEMO_DOMAIN}"
DEMO_ADMIN = f"demo.it@{DEMO_DOMAIN}"
_FIRST = [
    "Anna",
    "Bram",
    "Chloé",
    "Daan",
    "Emma",
    "Finn",
    "Gijs",
    "Hanna",
    "Ilse",
    "Jesse",
    "Lotte",
    "Milan",
    "Noor",
    "Owen",
    "Puck",
    "Quinten",
    "Roos",
    "Sem",
    "Tess",
    "Umut",
    "Vera",
    "Wout",
    "Yara",
    "Zoë",
    "Lucas",
    "Sara",
    "Mees",
    "Fenna",
    "Thijs",
    "Liv",
]
_LAST = "BDJKMPSVWHTGLRNC"

ACTIVITIES = [
    ("Rekenen - Blok 3, les 4", "https://rekenen.example/blok3/les4"),
    ("Spelling oefenen - werkwoorden", "https://spelling.example/werkwoorden"),
    ("Topografie Europa - hoofdsteden", "https://topo.example/europa"),
    ("Woordenlijst Engels - unit 5", "https://engels.example/unit5"),
    ("Werkstuk: de Gouden Eeuw - Documenten", "https://docs.example/werkstuk"),
    ("Typcursus - les 12", "https://typen.example/les12"),
    ("Minecraft speedrun - Video", "https://video.example/watch?v=demo"),
]


async def seed_demo(app: web.Application, students: int) -> str:
    """Create the demo school, classes, teacher, IT admin and students once; return the
    teacher. With demo data already there, nothing is seeded again: ``students`` is then
    ignored, and that is said on the console (a different count needs a fresh database)."""
    async with app[DB]() as session, session.begin():
        school = await session.scalar(select(School).where(School.brin == "99XX"))
        if school is not None:
            have = len(
                list(
                    await session.scalars(select(Student.id).where(Student.school_id == school.id))
                )
            )
            if have != students:
                print(
                    f"Demo mode: the database already holds demo data with {have} students, so "
                    f"demo_students={students} (KLASBLIK_DEMO_STUDENTS) is ignored. Start "
                    "with an empty database (another KLASBLIK_DATABASE_URL, or remove "
                    "klasblik-data/) to seed a different number.",
                    flush=True,
                )
            if await session.scalar(select(Staff).where(Staff.username == DEMO_ADMIN)) is None:
                location = await session.scalar(
                    select(Location).where(Location.school_id == school.id)
                )
                session.add(_demo_admin(school.id, location.id if location else None))
            return DEMO_TEACHER
        school = School(name="Demo school (Klasblik demo)", brin="99XX")
        session.add(school)
        await session.flush()
        location = Location(
            school_id=school.id,
            name="Hoofdlocatie",
            code="99XX00",
            networks="127.0.0.0/8 ::1/128",  # demo agents and teacher are on this machine
        )
        session.add(location)
        await session.flush()
        teacher = Staff(
            school_id=school.id,
            location_id=location.id,
            username=DEMO_TEACHER,
            name="Demo Teacher",
        )
        session.add(teacher)
        session.add(_demo_admin(school.id, location.id))
        first_class = SchoolClass(school_id=school.id, name="Groep 7B (demo)")
        second_class = SchoolClass(school_id=school.id, name="Groep 8A (demo)")
        first_class.teachers.append(teacher)
        second_class.teachers.append(teacher)
        for i in range(students):
            first = _FIRST[i % len(_FIRST)]
            initial = _LAST[(i * 7) % len(_LAST)]
            st = Student(
                school_id=school.id,
                location_id=location.id,
                username=f"{first.lower()}.{initial.lower()}{i}@{DEMO_DOMAIN}",
                display_name=f"{first} {initial}.",
            )
            (first_class if i < max(1, students * 2 // 3) else second_class).students.append(st)
            session.add(st)
        session.add_all([first_class, second_class])
    return DEMO_TEACHER


def _demo_admin(school_id: int, location_id: int | None) -> Staff:
    """The demo's IT admin: the location and audit pages, no classes."""
    return Staff(
        school_id=school_id,
        location_id=location_id,
        username=DEMO_ADMIN,
        name="Demo IT admin",
        is_admin=True,
    )


@dataclass
class DemoState:
    """Demo mode's teacher and simulated agents, owned by the app (``keys.DEMO``)."""

    teacher: str
    admin: str = DEMO_ADMIN
    #: the demo student left without a simulated agent, free for a real one
    free_account: str = ""
    agents: list[DemoAgent] = field(default_factory=list)
    stop: Callable[[], Awaitable[None]] | None = None

    async def close(self) -> None:
        """Stop the simulated agents (once; later calls do nothing)."""
        stop, self.stop = self.stop, None
        if stop is not None:
            await stop()


class DemoAgent:
    """A simulated student device: hello, heartbeats, and frames while watched."""

    def __init__(self, url: str, token: str, account: str, seed: int, behaviour: str) -> None:
        self.url = url
        self.token = token
        self.account = account
        self.rng = random.Random(seed)
        self.behaviour = behaviour  # "active", "idle" (unchanged screen) or "locked"
        self.activity = self.rng.randrange(len(ACTIVITIES))
        self.watch: dict[str, Any] = {"mode": "off"}
        self.seq = 0
        self.frames_sent = 0
        self._last_digest = b""
        self._last_tabs: list[dict[str, Any]] | None = None
        self._font_cache: dict[int, Any] = {}
        self.stopped = False

    def tabs(self) -> list[dict[str, Any]]:
        out = []
        for idx in sorted({self.activity, (self.activity + 2) % len(ACTIVITIES)}):
            title, url = ACTIVITIES[idx]
            out.append({"title": title, "url": url, "active": idx == self.activity, "window": 1})
        return out

    def _font(self, size: int) -> Any:
        if size not in self._font_cache:
            try:
                self._font_cache[size] = ImageFont.load_default(size=size)
            except (TypeError, OSError):
                self._font_cache[size] = ImageFont.load_default()
        return self._font_cache[size]

    def render(self, width: int, height: int, now: float) -> Image.Image:
        """A synthetic browser window: tab strip, address bar, text, a moving marker."""
        scale = width / 1280
        img = Image.new("RGB", (width, height), (245, 246, 248))
        d = ImageDraw.Draw(img)
        title, url = ACTIVITIES[self.activity]
        hue = (self.activity * 47) % 256
        d.rectangle((0, 0, width, int(40 * scale) + 1), fill=(40, 44, 52))
        d.rectangle(
            (int(8 * scale), int(6 * scale), int(420 * scale), int(40 * scale)),
            fill=(245, 246, 248),
        )
        d.text(
            (int(20 * scale), int(12 * scale)),
            title[:40],
            fill=(20, 20, 20),
            font=self._font(max(8, int(18 * scale))),
        )
        d.rectangle(
            (int(10 * scale), int(50 * scale), width - int(10 * scale), int(84 * scale)),
            fill=(255, 255, 255),
            outline=(200, 200, 200),
        )
        d.text(
            (int(24 * scale), int(56 * scale)),
            url,
            fill=(60, 60, 60),
            font=self._font(max(8, int(18 * scale))),
        )
        body_top = int(100 * scale)
        d.rectangle((0, body_top, width, height), fill=(255, 255, 255))
        d.rectangle((0, body_top, width, body_top + int(70 * scale)), fill=(hue, 120, 255 - hue))
        d.text(
            (int(30 * scale), body_top + int(16 * scale)),
            title,
            fill=(255, 255, 255),
            font=self._font(max(9, int(32 * scale))),
        )
        line_font = self._font(max(7, int(20 * scale)))
        words = [
            "de",
            "het",
            "een",
            "som",
            "antwoord",
            "vraag",
            "kaart",
            "zin",
            "woord",
            "oefening",
            "stad",
            "rivier",
            "land",
            "getal",
            "breuk",
            "tijd",
        ]
        rng = random.Random(self.activity)
        for i in range(12):
            y = body_top + int((100 + i * 38) * scale)
            if y > height - 10:
                break
            line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
            d.text((int(40 * scale), y), f"{i + 1}. {line}", fill=(30, 30, 30), font=line_font)
        if self.behaviour == "active":
            t = now % 20 / 20
            x = int((0.05 + 0.85 * t) * width)
            y = body_top + int(90 * scale) + int(((now * 0.7) % 10) * 38 * scale)
            d.ellipse((x, y, x + int(24 * scale), y + int(24 * scale)), fill=(230, 80, 40))
            clock = time.strftime("%H:%M:%S", time.localtime(now))
        else:
            clock = "idle"
        d.text(
            (width - int(150 * scale), height - int(36 * scale)),
            clock,
            fill=(90, 90, 90),
            font=self._font(max(8, int(22 * scale))),
        )
        return img

    def frame(self, now: float) -> bytes | None:
        """The next frame for the current watch, or None when the screen did not change."""
        w = self.watch
        img = self.render(min(int(w["width"]), 1280), min(int(w["height"]), 720), now)
        buf = io.BytesIO()
        if w.get("encoding") == "webp":
            img.save(buf, "WEBP", quality=int(w["quality"]), method=0)
            enc = p.Encoding.WEBP
        else:
            img.save(buf, "JPEG", quality=int(w["quality"]))
            enc = p.Encoding.JPEG
        data = buf.getvalue()
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest == self._last_digest:
            return None
        self._last_digest = digest
        self.seq += 1
        header = p.FrameHeader(
            kind=p.FrameKind.FOCUS if w["mode"] == "focus" else p.FrameKind.GRID,
            encoding=enc,
            width=img.width,
            height=img.height,
            seq=self.seq,
            captured_at_ms=int(now * 1000),
        )
        return p.encode_frame(header, data)

    def stopping(self) -> bool:
        return self.stopped

    async def run(self, session: aiohttp.ClientSession) -> None:
        backoff = 0.5
        while not self.stopped:
            try:
                async with session.ws_connect(
                    self.url, heartbeat=None, max_msg_size=p.MAX_TEXT_BYTES
                ) as ws:
                    backoff = 0.5
                    await self._converse(ws)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.debug("demo agent %s: %s", self.account, exc)
            if self.stopping():
                return
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(backoff * 2, 10)

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = {
            "type": "hello",
            "protocol": p.PROTOCOL_VERSION,
            "token": self.token,
            "account": self.account,
            "device": {"id": f"demo-{self.account}", "kind": "demo", "agent": "klasblik-demo"},
        }
        await ws.send_str(p.encode_message(hello, "agent"))
        welcome = p.decode_message(await ws.receive_str(timeout=10), "server_agent")
        if welcome["type"] != "welcome":
            log.warning("demo agent %s refused: %s", self.account, welcome.get("error"))
            await asyncio.sleep(30)
            return
        heartbeat = welcome["heartbeat_s"]
        self.watch = {"mode": "off"}
        self._last_tabs = None
        self._last_digest = b""
        sender = asyncio.create_task(self._send_loop(ws, heartbeat))
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                m = p.decode_message(msg.data, "server_agent")
                if m["type"] == "watch":
                    self.watch = m
                    self._last_digest = b""
                    self._last_tabs = None
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse, heartbeat: int) -> None:
        last_beat = time.monotonic()
        next_switch = time.monotonic() + self.rng.uniform(20, 60)
        reported_error = False
        while True:
            now = time.monotonic()
            if now - last_beat >= heartbeat:
                await ws.send_str('{"type":"heartbeat"}')
                last_beat = now
            mode = self.watch.get("mode", "off")
            if self.behaviour == "active" and now >= next_switch:
                self.activity = self.rng.randrange(len(ACTIVITIES))
                next_switch = now + self.rng.uniform(20, 60)
            if mode == "off":
                await asyncio.sleep(0.25)
                continue
            if self.behaviour == "locked":
                if not reported_error:
                    await ws.send_str(
                        p.encode_message(
                            {
                                "type": "capture_error",
                                "reason": "screen locked (demo)",
                                "code": "locked",
                            },
                            "agent",
                        )
                    )
                    reported_error = True
                await asyncio.sleep(0.5)
                continue
            if self.watch.get("tabs") != "none":
                tabs = self.tabs()
                if self.watch.get("tabs") == "active":
                    tabs = [t for t in tabs if t["active"]]
                if tabs != self._last_tabs:
                    await ws.send_str(p.encode_message({"type": "tabs", "tabs": tabs}, "agent"))
                    self._last_tabs = tabs
            started = time.monotonic()
            data = await asyncio.to_thread(self.frame, time.time())
            if data is not None:
                await ws.send_bytes(data)
                self.frames_sent += 1
            spent = time.monotonic() - started
            await asyncio.sleep(max(0.05, self.watch.get("interval_ms", 1000) / 1000 - spent))


async def start_demo_agents(app: web.Application, agent_url: str) -> list[DemoAgent]:
    """Start one simulated agent per demo student except one, left offline on purpose."""

    async with app[DB]() as session:
        accounts = list(
            await session.scalars(
                select(Student.username)
                .where(Student.username.like(f"%@{DEMO_DOMAIN}"))
                .order_by(Student.id)
            )
        )
    agents = []
    for i, account in enumerate(accounts[:-1]):  # the last student stays offline
        behaviour = "idle" if i % 11 == 5 else "locked" if i == 7 else "active"
        agents.append(DemoAgent(agent_url, app[SETTINGS].enrollment_token, account, i, behaviour))
    http = aiohttp.ClientSession()
    tasks = [asyncio.create_task(a.run(http), name=f"demo agent {a.account}") for a in agents]

    async def stop() -> None:
        for a in agents:
            a.stopped = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()

    app[DEMO].agents = agents
    app[DEMO].stop = stop
    app[DEMO].free_account = accounts[-1] if accounts else ""
    log.info("demo: %d simulated agents started, 1 student left offline", len(agents))
    return agents


async def demo_ctx(app: web.Application) -> AsyncIterator[None]:
    """Seed the demo data at start; stop the simulated agents at the end."""

    app[DEMO] = DemoState(teacher=await seed_demo(app, app[SETTINGS].demo_students))
    app[NOTICES].append({"kind": "demo", "text": "Demo mode: simulated students, no real screens."})
    try:
        yield
    finally:
        await app[DEMO].close()
