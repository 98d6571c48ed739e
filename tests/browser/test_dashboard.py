"""The teacher dashboard in real Chromium against the real `klasblik serve --demo`."""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.timing import timeout, timeout_ms, wait_for

pytestmark = pytest.mark.browser

__all__: list[str] = []

#: Screenshots for people to look at (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts"
#: Longest wait for live frames; the grid rate is a few seconds, the machine is shared.
FRAME_WAIT_MS = timeout_ms(15_000)

# Counts object URLs made and revoked by the page, to see that frames do not leak.
COUNT_OBJECT_URLS = """
(() => {
  const create = URL.createObjectURL.bind(URL);
  const revoke = URL.revokeObjectURL.bind(URL);
  window.__objectUrls = { created: 0, revoked: 0 };
  URL.createObjectURL = (obj) => { window.__objectUrls.created += 1; return create(obj); };
  URL.revokeObjectURL = (url) => { window.__objectUrls.revoked += 1; return revoke(url); };
})();
"""

TILE_SEQS = """() => Object.fromEntries([...document.querySelectorAll('#grid .tile')].map(
  (tile) => [tile.dataset.studentId, tile.querySelector('img').dataset.frameSeq || null]))"""


def _name_key(name: str) -> str:
    """Order as the dashboard does: ignoring case and accents."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()


async def _tile_names(page: Any) -> list[str]:
    return [n.strip() for n in await page.locator("#grid .tile .tile-name").all_inner_texts()]


def _watch_console(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg: Any) -> None:
        if msg.type == "error" and "favicon" not in msg.text:
            problems.append(f"console error: {msg.text}")

    page.on("console", on_console)
    return problems


async def test_demo_teacher_sees_live_grid_and_focus_then_signs_out(
    klasblik_server: Any, browser: Any
) -> None:
    """Demo sign-in shows a live tile per student, a focus view with tabs, and signs out."""
    base = klasblik_server.base_url
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    context.set_default_timeout(timeout_ms(30_000))  # Playwright's own default, scaled
    await context.add_init_script(COUNT_OBJECT_URLS)
    page = await context.new_page()
    problems = _watch_console(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    await page.goto(base + "/signin")
    demo = page.locator("#demo-signin")
    await demo.wait_for(timeout=timeout_ms(10_000))
    await demo.click()
    await page.wait_for_url(re.compile(r"^" + re.escape(base) + r"/(#class=\d+)?$"))

    me = await (await page.request.get(base + "/api/me")).json()
    assert me["demo"] is True, me
    assert me["classes"], f"the demo teacher has no classes: {me}"
    first = me["classes"][0]
    assert await page.locator("#demo-marker").is_visible()
    assert not await page.locator("#admin-links").is_visible()  # the demo teacher is no IT admin
    assert (await page.locator("#user-name").inner_text()).strip() == me["user"]["name"]

    # One tile per student of the class opened by default, each with a name.
    tiles = page.locator("#grid .tile[data-student-id]")
    await page.wait_for_function(
        "n => document.querySelectorAll('#grid .tile[data-student-id]').length >= n",
        arg=max(1, first["student_count"]),
        timeout=timeout_ms(10_000),
    )
    assert await tiles.count() == first["student_count"]
    assert page.url.endswith(f"#class={first['id']}")
    names = await _tile_names(page)
    roster = klasblik_server.class_student_names(first["id"])
    assert roster, "the demo class has no students in the database"
    assert sorted(names) == sorted(roster), (names, roster)
    assert names == sorted(names, key=_name_key), f"tiles not ordered by name: {names}"

    # Live frames arrive and keep changing.
    await page.wait_for_function(
        "() => Object.values((" + TILE_SEQS + ")()).some((s) => s !== null)",
        timeout=FRAME_WAIT_MS,
    )
    before = await page.evaluate(TILE_SEQS)
    await page.wait_for_function(
        "before => { const now = (" + TILE_SEQS + ")();"
        " return Object.keys(now).some((id) => now[id] !== null && now[id] !== before[id]); }",
        arg=before,
        timeout=FRAME_WAIT_MS,
    )
    live_id = await page.evaluate(
        "() => [...document.querySelectorAll('#grid .tile')].find("
        "(t) => t.querySelector('img').dataset.frameSeq && t.querySelector('img').naturalWidth > 0"
        ")?.dataset.studentId ?? null"
    )
    assert live_id is not None, "no tile shows a decoded live frame"
    await page.screenshot(path=str(ARTIFACTS / "dashboard-grid.png"))

    # A class of 30 fits a 1920 x 1080 screen without scrolling, leaving room for the
    # browser's own bars (the page gets 1920 x 1080 here; ask for the top 960 pixels).
    assert first["student_count"] >= 30, "seed a class of at least 30 for the layout check"
    bottom = await page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('#grid .tile')]"
        ".map((t) => t.getBoundingClientRect().bottom))"
    )
    assert bottom <= 960, f"the grid of {first['student_count']} needs {bottom} px of height"

    # Focus view by click: a larger live image and the tab list.
    tile = page.locator(f'#grid .tile[data-student-id="{live_id}"]')
    tile_img_width = (await tile.locator("img").bounding_box())["width"]
    await tile.locator("button").click()
    focus = page.locator("#focus")
    await focus.wait_for(state="visible", timeout=timeout_ms(5_000))
    assert await focus.get_attribute("data-student-id") == live_id
    await page.wait_for_function(
        "() => { const img = document.getElementById('focus-image');"
        " return !img.hidden && img.dataset.frameSeq && img.naturalWidth > 0; }",
        timeout=FRAME_WAIT_MS,
    )
    focus_box = await page.locator("#focus-image").bounding_box()
    assert focus_box["width"] > 2 * tile_img_width, (focus_box, tile_img_width)
    await page.locator("#focus-tab-list .tab").first.wait_for(timeout=FRAME_WAIT_MS)
    tab_titles = await page.locator("#focus-tab-list .tab-title").all_inner_texts()
    assert tab_titles and all(t.strip() for t in tab_titles), tab_titles
    assert await page.locator("#focus-tab-list .tab.is-active").count() >= 1
    await page.screenshot(path=str(ARTIFACTS / "dashboard-focus.png"))

    await page.keyboard.press("Escape")
    await focus.wait_for(state="hidden", timeout=timeout_ms(5_000))

    # Focus view by keyboard: Enter on a focused tile; closed with the close button.
    await tile.locator("button").focus()
    await page.keyboard.press("Enter")
    await focus.wait_for(state="visible", timeout=timeout_ms(5_000))
    assert await focus.get_attribute("data-student-id") == live_id
    await page.locator("#focus-close").click()
    await focus.wait_for(state="hidden", timeout=timeout_ms(5_000))

    # Frames keep coming, and each replaced object URL is revoked.
    seqs = await page.evaluate(TILE_SEQS)
    await page.wait_for_function(
        "before => { const now = (" + TILE_SEQS + ")();"
        " return Object.keys(now).some((id) => now[id] !== null && now[id] !== before[id]); }",
        arg=seqs,
        timeout=FRAME_WAIT_MS,
    )
    counts = await page.evaluate("() => window.__objectUrls")
    live_urls = await page.evaluate(
        "() => [...document.querySelectorAll('img')].filter((i) => i.src.startsWith('blob:')).length"
    )
    assert counts["created"] > live_urls, counts
    assert counts["created"] - counts["revoked"] == live_urls, (counts, live_urls)

    # The class picker opens another class, remembered in the URL across a reload.
    if len(me["classes"]) > 1:
        second = me["classes"][1]
        await page.locator("#class-select").select_option(str(second["id"]))
        await page.wait_for_url(re.compile(rf"#class={second['id']}$"))
        await page.wait_for_function(
            "names => { const now = [...document.querySelectorAll('#grid .tile .tile-name')]"
            ".map((n) => n.textContent).sort(); return JSON.stringify(now) === JSON.stringify(names); }",
            arg=sorted(klasblik_server.class_student_names(second["id"])),
            timeout=timeout_ms(10_000),
        )
        await page.wait_for_function(
            "() => Object.values((" + TILE_SEQS + ")()).some((s) => s !== null)",
            timeout=FRAME_WAIT_MS,
        )
        # Reloaded, the grid first shows each student's last stored thumbnail: once one of
        # this class's live pictures is stored (the store writes in batches, a fraction of
        # a second after the frame), a reload asks for it.
        shown = await page.evaluate(
            "() => [...document.querySelectorAll('#grid .tile')].filter("
            "(t) => t.querySelector('img').dataset.frameSeq).map((t) => t.dataset.studentId)"
        )

        async def stored_one() -> bool:
            for sid in shown:
                answer = await page.request.get(f"{base}/api/students/{sid}/thumbnail")
                if answer.status == 200:
                    return True
            return False

        await wait_for(stored_one, FRAME_WAIT_MS / 1000, "a stored live picture")
        async with page.expect_response(
            lambda r: (
                re.search(r"/api/students/\d+/thumbnail$", r.url) is not None and r.status == 200
            ),
            timeout=FRAME_WAIT_MS,
        ) as stored:
            await page.reload()
        assert (await stored.value).headers["content-type"].startswith("image/")
        await page.wait_for_function(
            "n => document.querySelectorAll('#grid .tile').length === n",
            arg=second["student_count"],
            timeout=timeout_ms(10_000),
        )
        assert await page.locator("#class-select").input_value() == str(second["id"])
        statuses = await page.locator("#grid .tile .tile-status").all_inner_texts()
        assert all(s.startswith(("online", "offline")) for s in statuses), statuses
        # The demo leaves its last student, who is in this class, without an agent.
        assert any(s.startswith("offline") for s in statuses), statuses

    # Sign out: back at /signin, and the session is gone.
    await page.locator("#signout").click()
    await page.wait_for_url(base + "/signin", timeout=timeout_ms(10_000))
    await page.goto(base + "/")
    assert page.url.startswith(base + "/signin"), page.url

    assert not problems, "\n".join(problems)
    await context.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


async def test_dashboard_without_sign_in_redirects_to_signin(
    klasblik_server: Any, browser: Any
) -> None:
    """`/` without a session answers a redirect to /signin, which offers demo sign-in."""
    base = klasblik_server.base_url
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(base + "/", timeout=timeout(10))
    assert answer.value.code in (302, 303, 307), answer.value.code
    assert answer.value.headers["Location"].split("?")[0] in ("/signin", base + "/signin")

    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(base + "/api/me", timeout=timeout(10))
    assert answer.value.code == 401, answer.value.code
    assert "code" in json.loads(answer.value.read())["error"]

    context = await browser.new_context()
    context.set_default_timeout(timeout_ms(30_000))  # Playwright's own default, scaled
    page = await context.new_page()
    problems = _watch_console(page)
    await page.goto(base + "/")
    assert page.url.startswith(base + "/signin"), page.url
    await page.locator("#demo-signin").wait_for(timeout=timeout_ms(10_000))

    # A failed sign-in comes back with ?error=CODE: the dashboard's own text for a code it
    # knows, a general one for any other, never text from the URL
    # (tests/hardening/test_pages_browser.py).
    await page.goto(base + "/signin?error=made_up_code&message=Only%20staff%20can%20sign%20in")
    error = page.locator("#signin-error")
    await error.wait_for(state="visible", timeout=timeout_ms(5_000))
    assert "Only staff can sign in" not in await error.inner_text()
    assert "Something went wrong" in await error.inner_text()
    assert not problems, "\n".join(problems)
    await context.close()
