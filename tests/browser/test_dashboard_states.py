"""What a teacher sees in each state, in real Chromium against `klasblik serve --demo`, with
an agent of the test's own (the real protocol over a real WebSocket) to drive one tile:
stale pictures, capture errors and their clearing, the not-live overlay, a hidden tab,
the end of a sign-in, the grid tools, Dutch completeness and axe-core.

One browser and one server serve the whole module (they are the slow parts)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import expect

from klasblik import protocol as p
from tests.browser.conftest import ENROLLMENT_TOKEN
from tests.support.chromium import launch
from tests.support.live import TestAgent, jpeg
from tests.support.timing import timeout, timeout_ms, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "services" / "node_modules" / "axe-core" / "axe.min.js"
ZONE = "Europe/Amsterdam"
WAIT_MS = timeout_ms(15_000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_browser() -> AsyncIterator[Any]:
    async with launch() as instance:
        yield instance


def _db(server: Any) -> sqlite3.Connection:
    return sqlite3.connect(server.database, timeout=10)


def _second_class_last_student(server: Any) -> tuple[int, int, str, str]:
    """(class id, student id, account, name) of the demo's student left without an agent."""
    with contextlib.closing(_db(server)) as db:
        sid, account, name = db.execute(
            "SELECT id, username, display_name FROM students ORDER BY id DESC LIMIT 1"
        ).fetchone()
        (class_id,) = db.execute(
            "SELECT class_id FROM class_students WHERE student_id = ?", (sid,)
        ).fetchone()
    return class_id, sid, account, name


class Puppet(TestAgent):
    """An agent for one demo student, sending exactly what the test says."""

    def __init__(self, base_url: str, account: str, *, tiles: bool = False) -> None:
        super().__init__(
            None,
            account,
            tiles=tiles,
            url=base_url.replace("http://", "ws://") + "/ws/agent",
            token=ENROLLMENT_TOKEN,
            device_id="browser-test-" + account,
        )
        self.seq = 0

    async def connect(self, token: str | None = None) -> dict[str, Any]:
        welcome = await super().connect(token)
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def frame(self, captured_at: float | None = None) -> None:
        assert self.ws is not None
        self.seq += 1
        when = time.time() if captured_at is None else captured_at
        header = p.FrameHeader(
            p.FrameKind.GRID, p.Encoding.JPEG, 64, 36, self.seq, int(when * 1000)
        )
        await self.ws.send_bytes(p.encode_frame(header, jpeg((20, 120, 200))))

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(json.dumps(message))

    async def picture(self, kind: int, size: tuple[int, int], colour: tuple[int, int, int]) -> int:
        """A key frame: a whole PNG picture of one colour; returns its seq."""
        assert self.ws is not None
        self.seq += 1
        header = p.FrameHeader(kind, p.Encoding.PNG, *size, self.seq, int(time.time() * 1000))
        await self.ws.send_bytes(p.encode_frame(header, _png(size, colour)))
        return self.seq

    async def delta(self, kind: int, size: tuple[int, int], tiles: list[p.Tile]) -> int:
        """A delta frame of ``tiles``; returns its seq."""
        assert self.ws is not None
        self.seq += 1
        header = p.FrameHeader(kind, p.Encoding.TILES, *size, self.seq, int(time.time() * 1000))
        await self.ws.send_bytes(p.encode_frame(header, p.encode_tiles(tiles)))
        return self.seq


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def _tile(x: int, y: int, colour: tuple[int, int, int], size: int = 16) -> p.Tile:
    return p.Tile(x, y, size, size, p.TileEncoding.PNG, _png((size, size), colour))


@contextlib.asynccontextmanager
async def puppet_for(
    server: Any, *, tiles: bool = False
) -> AsyncIterator[tuple[Puppet, int, int, str]]:
    class_id, sid, account, name = _second_class_last_student(server)
    puppet = Puppet(server.base_url, account, tiles=tiles)
    try:
        await puppet.connect()
        yield puppet, class_id, sid, name
    finally:
        await puppet.close()


async def signed_in(
    browser: Any,
    server: Any,
    *,
    lang: str = "en",
    viewport: tuple[int, int] = (1920, 1080),
    class_id: int | None = None,
    bypass_csp: bool = False,
) -> tuple[Any, Any]:
    """A new context signed in with the demo sign-in, on the grid (of `class_id`)."""
    context = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        timezone_id=ZONE,
        locale="nl-NL" if lang == "nl" else "en-GB",
        bypass_csp=bypass_csp,
    )
    context.set_default_timeout(timeout_ms(30_000))
    page = await context.new_page()
    await page.goto(f"{server.base_url}/signin?lang={lang}")
    await page.locator("#demo-signin").click()
    await page.wait_for_url(re.compile(r"/(\?lang=\w+)?(#class=\d+)?$"))
    if class_id is not None:
        await page.goto(f"{server.base_url}/#class={class_id}")
    await page.wait_for_function(
        "() => document.querySelectorAll('#grid .tile').length > 0", timeout=WAIT_MS
    )
    return context, page


def tile(page: Any, sid: int) -> Any:
    return page.locator(f'#grid .tile[data-student-id="{sid}"]')


async def wait_state(page: Any, sid: int, state: str) -> None:
    await page.wait_for_function(
        '([sid, state]) => document.querySelector(`#grid .tile[data-student-id="${sid}"]`)'
        "?.dataset.state === state",
        arg=[sid, state],
        timeout=WAIT_MS,
    )


async def test_stale_picture_capture_error_and_its_clearing(
    klasblik_server: Any, shared_browser: Any
) -> None:
    """An old picture says "last picture HH:MM"; a fresh one is online; a capture error
    never sits beside "online" and greys the old picture; the next frame clears it. The
    tab's domain is beside its title and in the tile's accessible name."""
    async with puppet_for(klasblik_server) as (puppet, class_id, sid, name):
        context, page = await signed_in(shared_browser, klasblik_server, class_id=class_id)
        await wait_for(lambda: puppet.mode == "grid", timeout(15), "the grid to watch the agent")
        await wait_state(page, sid, "waiting")

        old = time.time() - 600
        await puppet.frame(captured_at=old)
        await wait_state(page, sid, "stale")
        badge = tile(page, sid).locator(".screen-badge")
        expected = dt.datetime.fromtimestamp(old, ZoneInfo(ZONE)).strftime("%H:%M")
        assert (await badge.inner_text()).strip() == f"last picture {expected}"
        assert await badge.is_visible()
        assert "is-old" in (await tile(page, sid).get_attribute("class") or "")

        await puppet.frame()
        await wait_state(page, sid, "online")
        assert not await badge.is_visible()
        assert (await tile(page, sid).locator(".tile-status").inner_text()).strip() == "online"

        await puppet.send_json(
            {
                "type": "tabs",
                "tabs": [
                    {
                        "title": "Breuken oefenen",
                        "url": "https://www.rekenen.example/breuken?x=1",
                        "active": True,
                        "window": 7,
                    }
                ],
            }
        )
        await page.wait_for_function(
            'sid => document.querySelector(`#grid .tile[data-student-id="${sid}"] .tile-tab`)'
            "?.textContent.includes('Breuken oefenen')",
            arg=sid,
            timeout=WAIT_MS,
        )
        assert (await tile(page, sid).locator(".tab-domain").inner_text()) == "rekenen.example"
        await expect(tile(page, sid).locator("button")).to_have_accessible_name(
            re.compile(re.escape(name) + r".*online.*rekenen\.example Breuken oefenen")
        )

        await puppet.send_json({"type": "capture_error", "reason": "screen locked"})
        await wait_state(page, sid, "capture_error")
        status = (await tile(page, sid).locator(".tile-status").inner_text()).strip()
        assert "online" not in status, status
        assert (await tile(page, sid).locator(".tile-error").inner_text()) == "the screen is locked"
        assert await badge.is_visible(), "the old picture must be labelled while capture fails"
        assert "is-old" in (await tile(page, sid).get_attribute("class") or "")

        await puppet.frame()
        await wait_state(page, sid, "online")
        assert not await tile(page, sid).locator(".tile-error").is_visible()
        await context.close()


_PIXELS = """([selector, seq, points]) => {
  const canvas = document.querySelector(selector);
  if (!canvas || canvas.hidden || canvas.dataset.frameSeq !== String(seq)) return null;
  const ctx = canvas.getContext("2d");
  return points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
}"""


async def _pixels(page: Any, selector: str, seq: int, points: list[tuple[int, int]]) -> Any:
    """The canvas's colours at ``points`` once it shows delta ``seq``."""
    handle = await page.wait_for_function(
        _PIXELS, arg=[selector, seq, [list(xy) for xy in points]], timeout=WAIT_MS
    )
    return await handle.json_value()


def _near(a: list[int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) <= 3 for x, y in zip(a, b, strict=True))


async def test_delta_frames_are_painted_on_the_key_frame_in_grid_and_focus(
    klasblik_server: Any, shared_browser: Any
) -> None:
    """Changed tiles are painted on a canvas over the last key frame, in the grid tile and
    in the focus view (a copy tile moves pixels within it); a key frame shows the whole
    picture again and the canvas is hidden."""
    blue, red, green = (20, 120, 200), (220, 20, 20), (20, 200, 40)
    grid_kind, focus_kind = p.FrameKind.GRID, p.FrameKind.FOCUS
    async with puppet_for(klasblik_server, tiles=True) as (puppet, class_id, sid, _name):
        context, page = await signed_in(shared_browser, klasblik_server, class_id=class_id)
        await wait_for(lambda: puppet.mode == "grid", timeout(15), "the grid to watch the agent")
        assert "key" in puppet.watches[-1]
        size = (64, 36)
        key = await puppet.picture(grid_kind, size, blue)
        img = f'#grid .tile[data-student-id="{sid}"] img.tile-image'
        await page.wait_for_function(
            "([sel, seq]) => document.querySelector(sel)?.dataset.frameSeq === String(seq)",
            arg=[img, key],
            timeout=WAIT_MS,
        )
        seq = await puppet.delta(grid_kind, size, [_tile(0, 0, red), _tile(32, 16, green)])
        canvas = f'#grid .tile[data-student-id="{sid}"] canvas.tile-image'
        got = await _pixels(page, canvas, seq, [(4, 4), (40, 20), (60, 4)])
        assert [_near(c, want) for c, want in zip(got, (red, green, blue), strict=True)] == [
            True
        ] * 3, got
        assert await page.locator(img).is_hidden()
        copy = p.Tile(48, 16, 16, 16, p.TileEncoding.COPY, source=(0, 0))
        seq = await puppet.delta(grid_kind, size, [_tile(0, 0, blue), copy])
        got = await _pixels(page, canvas, seq, [(4, 4), (52, 20)])
        assert _near(got[0], blue) and _near(got[1], red), got  # copied before the repaint

        key = await puppet.picture(grid_kind, size, green)
        await page.wait_for_function(
            "([sel, seq]) => { const i = document.querySelector(sel);"
            " return i && !i.hidden && i.dataset.frameSeq === String(seq); }",
            arg=[img, key],
            timeout=WAIT_MS,
        )
        assert await page.locator(canvas).is_hidden()

        await tile(page, sid).locator("button").click()
        await wait_for(lambda: puppet.mode == "focus", timeout(15), "the focus watch")
        big = (128, 72)
        await puppet.picture(focus_kind, big, blue)
        seq = await puppet.delta(focus_kind, big, [_tile(100, 50, red)])
        got = await _pixels(page, ".focus-screen canvas", seq, [(105, 55), (10, 10)])
        assert _near(got[0], red) and _near(got[1], blue), got
        await context.close()


async def test_lost_connection_dims_the_grid_until_it_is_back(
    klasblik_server: Any, shared_browser: Any
) -> None:
    """The dashboard's socket goes: the whole grid dims with "Not live — reconnecting…",
    no tile and not the header say online or Live; back, the overlay goes."""
    context, page = await signed_in(shared_browser, klasblik_server)
    down = {"on": False}
    routes: list[Any] = []

    async def handler(ws: Any) -> None:
        if down["on"]:  # the server stays out of reach: each attempt fails at once
            await ws.close()
            return
        ws.connect_to_server()
        routes.append(ws)

    await page.route_web_socket(re.compile(r"/ws/dashboard$"), handler)
    await page.reload()
    await page.wait_for_function(
        "() => document.querySelectorAll('#grid .tile[data-state=\"online\"]').length > 5",
        timeout=WAIT_MS,
    )
    assert not await page.locator("#grid-overlay").is_visible()
    down["on"] = True
    for ws in routes:
        await ws.close()
    overlay = page.locator("#grid-overlay")
    await overlay.wait_for(state="visible", timeout=WAIT_MS)
    assert (await overlay.inner_text()).strip() == "Not live — reconnecting…"
    states = await page.eval_on_selector_all("#grid .tile", "ts => ts.map((t) => t.dataset.state)")
    assert states and "online" not in states and "waiting" not in states, states
    statuses = await page.locator("#grid .tile .tile-status").all_inner_texts()
    assert not any("online" in s for s in statuses), statuses
    assert await page.locator("#live-status").get_attribute("data-state") != "open"
    down["on"] = False
    await overlay.wait_for(state="hidden", timeout=timeout_ms(45_000))  # backoff up to 30 s
    assert await page.locator("#live-status").get_attribute("data-state") == "open"
    await context.close()


HIDE = """hidden => {
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


async def test_hidden_tab_stops_watching_and_resumes(
    klasblik_server: Any, shared_browser: Any
) -> None:
    """Hidden (Page Visibility): the agent is told to go quiet; visible again: it is asked
    for grid frames at once, and the next frame is on the tile."""
    async with puppet_for(klasblik_server) as (puppet, class_id, sid, _name):
        context, page = await signed_in(shared_browser, klasblik_server, class_id=class_id)
        await wait_for(lambda: puppet.mode == "grid", timeout(15), "the grid to watch the agent")
        await page.evaluate(HIDE, True)
        await wait_for(lambda: puppet.mode == "off", timeout(10), "a hidden tab to stop watching")
        assert await page.locator("#live-status").get_attribute("data-state") == "paused"
        await page.evaluate(HIDE, False)
        await wait_for(lambda: puppet.mode == "grid", timeout(10), "the visible tab to watch again")
        await puppet.frame()
        await wait_state(page, sid, "online")
        assert await page.locator("#live-status").get_attribute("data-state") == "open"
        await context.close()


# Failed once in a fresh-clone run (the page did not reach /signin within 15 s after its
# session row was deleted); passes alone. Re-run while the cause is looked for.
@pytest.mark.flaky(reruns=2)
async def test_sign_out_elsewhere_and_expiry_end_the_live_view(
    klasblik_server: Any, shared_browser: Any
) -> None:
    """Signing out in another tab ends this tab's live view at once; an expired sign-in
    (gone from the database: expired, idle, ended by IT) ends it within the check
    interval (tests/test_dashboard_state.py expires one by its clock); both land on the sign-in page saying why."""
    context, page = await signed_in(shared_browser, klasblik_server)
    other = await context.new_page()
    await other.goto(klasblik_server.base_url + "/")
    await other.wait_for_function("() => document.getElementById('user-name').textContent")
    await other.locator("#signout").click()  # its handler is set once /api/me answered
    await page.wait_for_url(re.compile(r"/signin\?reason=session_ended$"), timeout=WAIT_MS)
    error = page.locator("#signin-error")
    await error.wait_for(state="visible", timeout=WAIT_MS)
    assert "your sign-in has ended" in await error.inner_text()
    await context.close()

    context, page = await signed_in(shared_browser, klasblik_server)
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    session_id = hashlib.sha256(cookies["klasblik_session"].encode()).hexdigest()
    with contextlib.closing(_db(klasblik_server)) as db, db:  # ended on the server side
        assert db.execute("DELETE FROM web_sessions WHERE id = ?", (session_id,)).rowcount == 1
    await page.wait_for_url(re.compile(r"/signin\?reason=session_ended$"), timeout=WAIT_MS)
    await context.close()


async def test_search_sort_filter_size_keys_and_focus_navigation(
    klasblik_server: Any, shared_browser: Any
) -> None:
    """A class of 30 at 1366x768: search by name (accents ignored), filter problems,
    sort by status, tile size, arrow keys, previous/next in the focus view, and focus back
    on the tile shown last when the view closes."""
    context, page = await signed_in(shared_browser, klasblik_server, viewport=(1366, 768))
    visible = "() => (() => [...document.querySelectorAll('#grid .tile')].filter((t) => !t.hidden))"
    await page.wait_for_function(
        "() => document.querySelectorAll('#grid .tile[data-state=\"capture_error\"]').length === 1",
        timeout=WAIT_MS,
    )
    total = await page.locator("#grid .tile").count()
    assert total == 30

    await page.locator("#tool-search").fill("zoe")
    names = await page.evaluate(
        visible + "().map((t) => t.querySelector('.tile-name').textContent)"
    )
    assert names == ["Zoë D."], names
    assert (await page.locator("#tool-count").inner_text()) == f"1 of {total} students"
    await page.locator("#tool-search").fill("")

    await page.locator("#tool-filter").select_option("problems")
    states = await page.evaluate(visible + "().map((t) => t.dataset.state)")
    assert states == ["capture_error"], states
    await page.locator("#tool-filter").select_option("all")

    await page.locator("#tool-sort").select_option("status")
    first = await page.evaluate(visible + "()[0].dataset.state")
    assert first == "capture_error"
    await page.locator("#tool-sort").select_option("name")

    width = (await page.locator("#grid .tile").first.bounding_box())["width"]
    await page.locator("#tool-size").select_option("large")
    larger = (await page.locator("#grid .tile").first.bounding_box())["width"]
    assert larger > width * 1.2, (width, larger)
    await page.locator("#tool-size").select_option("small")

    ids = await page.evaluate(visible + "().map((t) => t.dataset.studentId)")
    await page.locator(f'#grid .tile[data-student-id="{ids[0]}"] button').focus()
    await page.keyboard.press("ArrowRight")
    focused = await page.evaluate("() => document.activeElement.closest('.tile').dataset.studentId")
    assert focused == ids[1]
    columns = await page.evaluate(
        "() => getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length"
    )
    await page.keyboard.press("ArrowDown")
    focused = await page.evaluate("() => document.activeElement.closest('.tile').dataset.studentId")
    assert focused == ids[1 + columns]

    await page.keyboard.press("Enter")
    await page.locator("#focus").wait_for(state="visible")
    assert await page.locator("#focus").get_attribute("data-student-id") == ids[1 + columns]
    await page.locator("#focus-next").click()
    await page.wait_for_function(
        "id => document.getElementById('focus').dataset.studentId === id",
        arg=ids[2 + columns],
        timeout=WAIT_MS,
    )
    assert (await page.locator("#focus-position").inner_text()) == f"{3 + columns} of {total}"
    await page.keyboard.press("Escape")
    await page.locator("#focus").wait_for(state="hidden")
    focused = await page.evaluate(
        "() => document.activeElement.closest('.tile')?.dataset.studentId"
    )
    assert focused == ids[2 + columns], "focus goes back to the tile of the student shown last"
    await context.close()


async def test_class_wide_state_is_one_banner_never_beside_live(
    klasblik_server: Any, shared_browser: Any
) -> None:
    """The school's networks change so that teacher and class are off-site: the open grid
    says it once in a banner (not "Live"); after a reload still one banner, no tiles, no
    old picture or tab title. Back on-site, the grid is live again."""
    context, page = await signed_in(shared_browser, klasblik_server)
    await page.wait_for_function(
        "() => document.querySelectorAll('#grid .tile[data-state=\"online\"]').length > 5",
        timeout=WAIT_MS,
    )
    with contextlib.closing(_db(klasblik_server)) as db, db:
        (networks,) = db.execute("SELECT networks FROM locations").fetchone()
        db.execute("UPDATE locations SET networks = '192.0.2.0/24'")
    try:
        banner = page.locator("#banners .banner")
        await banner.wait_for(state="visible", timeout=WAIT_MS)
        assert await banner.count() == 1
        assert "not at a school location" in await banner.inner_text()
        assert await page.locator("#live-status").get_attribute("data-state") == "blocked"
        assert "Live" not in await page.locator("#live-status").inner_text()
        assert await page.locator("#grid .tile img:not([hidden])").count() == 0
        assert await page.locator("#grid .tile .tile-tab:not([hidden])").count() == 0

        await page.reload()
        await page.locator("#banners .banner").first.wait_for(state="visible", timeout=WAIT_MS)
        await page.wait_for_function(
            "() => document.getElementById('live-status').dataset.state === 'blocked'",
            timeout=WAIT_MS,
        )
        assert await page.locator("#banners .banner").count() == 1
        texts = await page.evaluate(
            "() => document.getElementById('banners').innerText"
            " + document.getElementById('notices').innerText"
        )
        assert texts.count("not at a school location") == 1, texts
        assert await page.locator("#grid .tile").count() == 0
        assert not await page.locator("#grid-message").is_visible()
    finally:
        with contextlib.closing(_db(klasblik_server)) as db, db:
            db.execute("UPDATE locations SET networks = ?", (networks,))
    await page.reload()
    await page.wait_for_function(
        "() => document.querySelectorAll('#grid .tile[data-state=\"online\"]').length > 5",
        timeout=WAIT_MS,
    )
    assert await page.locator("#banners .banner").count() == 0
    assert await page.locator("#live-status").get_attribute("data-state") == "open"
    await context.close()


def _literals(text: str) -> list[str]:
    return [part.strip(" .,:;·—()") for part in re.split(r"\{\w+\}", text)]


async def _catalogue(page: Any) -> dict[str, dict[str, str]]:
    return dict(await page.evaluate("async () => (await import('/i18n.js')).STRINGS"))


async def _page_words(page: Any) -> str:
    return str(
        await page.evaluate(
            """() => {
      // Records and names (translate="no": audit details, tab titles) are data, not UI.
      const body = document.body.cloneNode(true);
      for (const el of body.querySelectorAll('[translate="no"]')) el.remove();
      document.body.after(body);
      const parts = [document.title, body.innerText];
      body.remove();
      for (const el of document.querySelectorAll('*')) {
        if (el.closest('[translate="no"]')) continue;
        for (const name of ['aria-label', 'title', 'placeholder', 'alt']) {
          const v = el.getAttribute(name);
          if (v) parts.push(v);
        }
        if (el.tagName === 'OPTION') parts.push(el.textContent);
      }
      return parts.join('\\n');
    }"""
        )
    )


def _english_in(words: str, strings: dict[str, dict[str, str]]) -> list[str]:
    """English catalogue texts (their literal parts, 6+ characters, not also Dutch) found
    in `words`."""
    dutch = "\n".join(strings["nl"].values())
    found = []
    for key, text in strings["en"].items():
        if strings["nl"].get(key) == text:
            continue
        for part in _literals(text):
            if len(part) >= 6 and part not in dutch and part in words:
                found.append(f"{key}: {part!r}")
    return found


async def test_dutch_dashboard_has_no_english(klasblik_server: Any, shared_browser: Any) -> None:
    """The Dutch grid, focus view, not-live overlay and sign-in page show no English text
    from the catalogue (visible text, labels, titles, placeholders, options)."""
    context, page = await signed_in(shared_browser, klasblik_server, lang="nl")
    await page.wait_for_function(
        "() => document.querySelectorAll('#grid .tile[data-state=\"capture_error\"]').length === 1",
        timeout=WAIT_MS,
    )
    assert await page.evaluate("() => document.documentElement.lang") == "nl"
    strings = await _catalogue(page)
    words = await _page_words(page)
    assert "Zoek op naam" in words and "leerlingen" in words, words[:500]
    problems = _english_in(words, strings)
    await page.locator("#grid .tile button").first.click()
    await page.locator("#focus").wait_for(state="visible")
    await page.locator("#focus-tab-list .tab, #focus-tab-list p").first.wait_for()
    problems += _english_in(await _page_words(page), strings)
    await page.keyboard.press("Escape")
    await page.goto(klasblik_server.base_url + "/signin?reason=session_ended")
    await page.locator("#signin-error").wait_for(state="visible")
    problems += _english_in(await _page_words(page), strings)
    assert "je inlog is beëindigd" in await page.locator("#signin-error").inner_text()
    assert not problems, "English in the Dutch UI:\n" + "\n".join(problems)

    # The test can fail: the English page is full of catalogue texts.
    context_en, page_en = await signed_in(shared_browser, klasblik_server, lang="en")
    assert _english_in(await _page_words(page_en), strings)
    await context_en.close()
    await context.close()


async def _axe(page: Any) -> list[str]:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run scripts/lib/node-packages")
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map((v) => `${v.id}: ${v.help} (${v.nodes.length}) ${v.nodes.slice(0, 3)"
        ".map((n) => n.target.join(' ')).join(', ')}`)"
    )
    return list(result)


@pytest.mark.parametrize("lang", ["en", "nl"])
async def test_axe_finds_no_violations(
    klasblik_server: Any, shared_browser: Any, lang: str
) -> None:
    """axe-core: 0 violations on the sign-in page, the grid and the focus view."""
    context = await shared_browser.new_context(bypass_csp=True, timezone_id=ZONE)
    page = await context.new_page()
    await page.goto(f"{klasblik_server.base_url}/signin?lang={lang}")
    await page.locator("#demo-signin").wait_for()
    found = {"signin": await _axe(page)}
    await page.locator("#demo-signin").click()
    await page.wait_for_function(
        "() => document.querySelectorAll('#grid .tile[data-state=\"online\"]').length > 5",
        timeout=WAIT_MS,
    )
    found["grid"] = await _axe(page)
    await page.locator("#grid .tile button").first.click()
    await page.locator("#focus").wait_for(state="visible")
    found["focus"] = await _axe(page)
    await context.close()
    assert not any(found.values()), json.dumps(found, indent=1)


async def _admin_page(browser: Any, server: Any, lang: str, bypass_csp: bool = False) -> Any:
    context = await browser.new_context(timezone_id=ZONE, bypass_csp=bypass_csp)
    context.set_default_timeout(timeout_ms(30_000))
    page = await context.new_page()
    await page.goto(f"{server.base_url}/signin?lang={lang}")
    await page.locator("#demo-signin-admin").click()
    await page.wait_for_url(re.compile(r"/admin/locations$"))
    await page.wait_for_selector("#locations tr")
    return context, page


async def test_admin_pages_for_the_demo_it_admin(klasblik_server: Any, shared_browser: Any) -> None:
    """The demo IT admin: pages linked to each other with sign-out; a refused field gets
    its error beside it (aria-invalid); "End now" asks first; the banner follows the
    switch at once; the audit log shows local times and names. A teacher gets a proper
    page, not JSON."""
    context, page = await _admin_page(shared_browser, klasblik_server, "en")
    nav = await page.locator(".admin-nav a").all_inner_texts()
    assert nav == ["Dashboard", "Locations", "Audit log"], nav
    assert await page.locator("#signout").is_visible()

    await (
        page.locator("#locations tr").first.get_by_role("button", name=re.compile("^Edit")).click()
    )
    await page.fill("#edit-form input[name=name]", "")
    await page.click("#edit-form button[type=submit]")
    assert await page.get_attribute("#edit-form input[name=name]", "aria-invalid") == "true"
    assert (await page.inner_text("#error-name")) == "Fill this in."
    await page.fill("#edit-form input[name=name]", "Hoofdlocatie")
    await page.fill("#edit-form input[name=code]", "ZZ12")
    await page.click("#edit-form button[type=submit]")
    await page.wait_for_selector("#error-code:not([hidden])")
    assert await page.get_attribute("#edit-form input[name=code]", "aria-invalid") == "true"
    assert await page.get_attribute("#edit-form input[name=name]", "aria-invalid") is None
    assert "BRIN" in await page.inner_text("#error-code")
    await page.click("#edit-cancel")

    await (
        page.locator("#locations tr")
        .first.get_by_role("button", name=re.compile("^Remote-lesson mode"))
        .click()
    )
    until = (dt.datetime.now(ZoneInfo(ZONE)) + dt.timedelta(hours=2)).replace(second=0)
    await page.fill("#remote-form input[name=until]", until.strftime("%Y-%m-%dT%H:%M"))
    await page.fill("#remote-form textarea[name=reason]", "Proef")
    await page.click("#remote-form button[type=submit]")
    await page.wait_for_selector('#notices [data-kind="remote_mode"]')
    await page.click("#remote-end")
    assert await page.locator("#remote-confirm").is_visible()
    await page.click("#remote-end-keep")
    assert await page.locator('#notices [data-kind="remote_mode"]').count() == 1
    await page.click("#remote-end")
    await page.click("#remote-end-confirm")
    await page.wait_for_selector('#notices [data-kind="remote_mode"]', state="detached")

    await page.locator(".admin-nav a", has_text="Audit log").click()
    await page.wait_for_selector("#entries tbody tr")
    rows = await page.locator("#entries tbody tr").all_inner_texts()
    assert any("(location:" in r and "Hoofdlocatie" in r for r in rows), rows[:5]
    assert not any(re.match(r"\d{4}-\d\d-\d\dT", r) for r in rows), rows[:3]  # local, not ISO
    await context.close()

    teacher, tpage = await signed_in(shared_browser, klasblik_server)
    answer = await tpage.goto(klasblik_server.base_url + "/admin/locations")
    assert answer is not None and answer.status == 403
    assert "text/html" in answer.headers["content-type"]
    await tpage.wait_for_function("() => document.getElementById('error-title').textContent")
    assert (await tpage.inner_text("h1")) == "This page is for IT admins"
    assert await tpage.get_attribute("#error-home", "href") == "/"
    await teacher.close()


@pytest.mark.parametrize("lang", ["en", "nl"])
async def test_admin_pages_axe_and_dutch(
    klasblik_server: Any, shared_browser: Any, lang: str
) -> None:
    """axe-core: 0 violations on both admin pages and the refusal page; the Dutch admin
    pages show no English from the catalogue."""
    context, page = await _admin_page(shared_browser, klasblik_server, lang, bypass_csp=True)
    strings = await _catalogue(page)
    await page.locator("#locations tr").first.get_by_role("button").nth(1).click()
    found = {"locations": await _axe(page)}
    english = _english_in(await _page_words(page), strings) if lang == "nl" else []
    await page.goto(klasblik_server.base_url + "/admin/audit")
    await page.wait_for_selector("#entries tbody tr")
    found["audit"] = await _axe(page)
    if lang == "nl":
        english += _english_in(await _page_words(page), strings)
    await context.close()
    teacher, tpage = await signed_in(shared_browser, klasblik_server, lang=lang, bypass_csp=True)
    await tpage.goto(klasblik_server.base_url + "/admin/audit")
    await tpage.wait_for_function("() => document.getElementById('error-title').textContent")
    found["refused"] = await _axe(tpage)
    if lang == "nl":
        english += _english_in(await _page_words(tpage), strings)
    await teacher.close()
    assert not any(found.values()), json.dumps(found, indent=1)
    assert not english, "English in the Dutch admin pages:\n" + "\n".join(english)
