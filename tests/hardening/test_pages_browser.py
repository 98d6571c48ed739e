"""The pages in real Chromium against `klasblik serve --demo`: the sign-in page shows only
the dashboard's own words for a code (never text from the URL), every answer the browser
loads carries the security headers, and live images are drawn only inside their tiles."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from tests.support.timing import timeout_ms

EVIL = "Your account is blocked: call 0900-1234"
HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
)


SIGNIN_CASES = [
    (f"error=unknown_account&message={quote(EVIL)}", "not in the school's staff list"),
    (f"error={quote('<img src=x onerror=alert(1)>' + EVIL)}", "Something went wrong"),
    ("error=signin.title", "Something went wrong"),
    ("error=__proto__&message=" + quote(EVIL), "Something went wrong"),
    (f"message={quote(EVIL)}", None),
]


async def test_the_signin_page_shows_only_its_own_words(klasblik_server: Any, browser: Any) -> None:
    """For a known code its text, for anything else a generic one; a message in the URL,
    markup in the code, a strings key or a prototype name as the code: never shown."""
    base = klasblik_server.base_url
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    for query, expected in SIGNIN_CASES:
        await page.goto(f"{base}/signin?{query}")
        await page.locator("#demo-signin").wait_for(timeout=timeout_ms(10_000))
        box = page.locator("#signin-error")
        text = await page.locator("body").inner_text()
        assert EVIL not in text and "onerror" not in text, query
        if expected is None:
            assert await box.is_hidden(), query
        else:
            assert expected in await box.inner_text(), query
        assert await page.locator("#signin-error img").count() == 0
    await context.close()


async def test_headers_on_everything_and_images_inside_their_tiles(
    klasblik_server: Any, browser: Any
) -> None:
    """Every response of a signed-in session (pages, scripts, styles, API, thumbnails, a
    404) has the security headers; each live tile image lies within its tile."""
    base = klasblik_server.base_url
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(timeout_ms(30_000))
    page = await context.new_page()
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r))
    await page.goto(base + "/signin")
    await page.locator("#demo-signin").click()
    await page.wait_for_url(re.compile(r"^" + re.escape(base) + r"/(#class=\d+)?$"))
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#grid .tile-image')]"
        ".filter((i) => i.complete && i.naturalWidth > 0 && !i.hidden).length >= 3",
        timeout=timeout_ms(30_000),
    )
    missing = await page.request.get(base + "/no-such-page.js")
    assert missing.status == 404
    for name in HEADERS:
        assert name in missing.headers, name
    boxes = await page.evaluate(
        """() => [...document.querySelectorAll('#grid .tile')]
        .filter((tile) => !tile.querySelector('.tile-image').hidden).map((tile) => {
            const screen = tile.querySelector('.tile-screen').getBoundingClientRect();
            const img = tile.querySelector('.tile-image').getBoundingClientRect();
            return [screen.left, screen.top, screen.right, screen.bottom,
                    img.left, img.top, img.right, img.bottom];
        })"""
    )
    assert len(boxes) >= 3
    for sl, st, sr, sb, il, it, ir, ib in boxes:
        assert sl - 1 <= il and st - 1 <= it and ir <= sr + 1 and ib <= sb + 1
    ours = [r for r in responses if r.url.startswith(base)]
    assert len({r.url.split("?")[0] for r in ours}) >= 5
    for response in ours:
        headers = await response.all_headers()
        for name in HEADERS:
            assert name in headers, (response.url, name)
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    await context.close()
