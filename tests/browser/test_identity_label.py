"""The teacher's tile says when a device did not prove who it is: demo mode's simulated
agents connect on the enrollment token alone (the token policy), so every tile carries the
"unverified device" label, in English and in Dutch."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.timing import timeout_ms

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(
    ("lang", "label"), [("en", "unverified device"), ("nl", "niet-geverifieerd apparaat")]
)
async def test_unverified_tiles_are_labelled(
    klasblik_server: Any, browser: Any, lang: str, label: str
) -> None:
    """Each online tile shows the label and says it in its accessible name."""
    base = klasblik_server.base_url
    context = await browser.new_context()
    context.set_default_timeout(timeout_ms(30_000))
    page = await context.new_page()
    await page.goto(base + f"/signin?lang={lang}")
    await page.locator(
        "button[id*=demo], button:has-text('Demo'), button:has-text('demo')"
    ).first.click()
    await page.wait_for_url(re.compile(r"^" + re.escape(base) + r"/(\?.*)?(#class=\d+)?$"))
    flag = page.locator("#grid .tile .tile-flags:not([hidden]) .flag").first
    await flag.wait_for(timeout=timeout_ms(15_000))
    assert (await flag.inner_text()).strip() == label
    # the tile's accessible name is its visible text, the flag included
    named = page.get_by_role("button", name=re.compile(re.escape(label)))
    await named.first.wait_for(timeout=timeout_ms(15_000))
    await context.close()
