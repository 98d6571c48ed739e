"""The whole Microsoft 365 sign-in in Debian's Chromium (headless): the sign-in page, the
OpenID Connect provider's login form over TLS, and back to the dashboard, signed in."""

from __future__ import annotations

import pytest

from tests.m365 import signin_flow as f
from tests.support.chromium import launch
from tests.support.timing import timeout_ms

TEACHER = "m.devries@school.example"

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser():
    async with launch(["--ignore-certificate-errors"]) as b:  # the provider's own certificate
        yield b


async def test_teacher_signs_in_with_microsoft_in_chromium(m365_server, provider, browser):
    """Click "Sign in with Microsoft 365", sign in at the provider, land on / signed in."""
    await m365_server.add_class(
        "7B",
        [("anna.bakker@school.example", "Anna", "Bakker")],
        teacher=TEACHER,
        teacher_name="M. de Vries",
    )
    sub = provider.add_user(TEACHER, "M. de Vries")
    context = await browser.new_context(ignore_https_errors=True, locale="en-GB")
    context.set_default_timeout(timeout_ms(30_000))  # Playwright's own default, scaled
    page = await context.new_page()
    await page.goto(m365_server.base_url + "/signin")
    await page.get_by_role("link", name="Sign in with Microsoft 365").click()
    await page.wait_for_url(f"{provider.base_url}/**", timeout=timeout_ms(15_000))
    await page.fill("input[name=sub]", sub)
    await page.get_by_role("button", name="Authorize").click()
    await page.wait_for_url(m365_server.base_url + "/", timeout=timeout_ms(15_000))
    cookies = {c["name"]: c for c in await context.cookies(m365_server.base_url)}
    assert cookies["klasblik_session"]["httpOnly"] is True
    assert cookies["klasblik_session"]["sameSite"] == "Lax"
    me = await page.evaluate("fetch('/api/me').then(r => r.json())")
    assert me["user"]["username"] == TEACHER
    await page.locator("option", has_text="7B").first.wait_for(
        state="attached", timeout=timeout_ms(15_000)
    )
    assert await f.count_sessions(m365_server) == 1
    await context.close()


async def test_refusal_is_shown_on_the_signin_page(m365_server, provider, browser):
    """An account not in the roster ends on /signin, which shows the reason."""
    sub = provider.add_user("stranger@school.example")
    context = await browser.new_context(ignore_https_errors=True, locale="en-GB")
    context.set_default_timeout(timeout_ms(30_000))  # Playwright's own default, scaled
    page = await context.new_page()
    await page.goto(m365_server.base_url + "/signin")
    await page.get_by_role("link", name="Sign in with Microsoft 365").click()
    await page.wait_for_url(f"{provider.base_url}/**", timeout=timeout_ms(15_000))
    await page.fill("input[name=sub]", sub)
    await page.get_by_role("button", name="Authorize").click()
    await page.wait_for_url(f"{m365_server.base_url}/signin?**", timeout=timeout_ms(15_000))
    error = page.locator("#signin-error")
    await error.wait_for(state="visible", timeout=timeout_ms(15_000))
    assert "staff list" in (await error.text_content() or "")
    assert await f.count_sessions(m365_server) == 0
    await context.close()
