"""Run the Chromebook agent (the unpacked extension) in headless Debian Chromium.

How the tests give the extension what a school gives it on a real Chromebook:

* The managed configuration (serverUrl, enrollmentToken) goes through the real policy
  path: a JSON file under /etc/chromium/policies/managed/ with a "3rdparty" section for
  the extension's id, exactly what Google Admin pushes on ChromeOS. The manifest's public
  ``key`` makes the id stable. The file is removed when the test ends.
* The signed-in account cannot be faked through policy, and a test profile has none, so
  the test copy of the extension gets a ``test-hooks.json`` (``"testOnly": true``) naming
  the account. The extension as shipped has no such file.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.chromium import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.support.timing import timeout, timeout_ms, wait_for

__all__ = [
    "CHROMIUM",
    "EXTENSION_ID",
    "EXTENSION_SRC",
    "POLICY_DIR",
    "ChromeAgent",
    "extension_id",
    "make_test_build",
    "managed_policy",
    "running_agent",
]

REPO = Path(__file__).resolve().parents[2]
EXTENSION_SRC = REPO / "agent" / "chrome"
POLICY_DIR = Path(os.environ.get("KLASBLIK_CHROMIUM_POLICY_DIR", "/etc/chromium/policies/managed"))


def extension_id(manifest_dir: Path = EXTENSION_SRC) -> str:
    """The id Chrome derives from the manifest's public key (sha256, first 16 bytes, a-p)."""
    manifest = json.loads((manifest_dir / "manifest.json").read_text())
    digest = hashlib.sha256(base64.b64decode(manifest["key"])).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


EXTENSION_ID = extension_id()


@contextlib.contextmanager
def managed_policy(config: dict[str, Any]) -> Iterator[Path]:
    """Write the extension's managed configuration as Chromium policy; remove it after.

    Chromium reads every file in the one machine-wide policy folder, so two test runs on
    one machine (two checkouts) would hand each other's browsers their configuration: an
    exclusive lock beside the folder makes them take turns.
    """
    with open(_POLICY_LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with _written_policy(config) as path:
            yield path


_POLICY_LOCK = Path(
    os.environ.get("KLASBLIK_CHROMIUM_POLICY_LOCK", "/tmp/klasblik-chromium-policy.lock")
)


@contextlib.contextmanager
def _written_policy(config: dict[str, Any]) -> Iterator[Path]:
    try:
        POLICY_DIR.mkdir(parents=True, exist_ok=True)
        path = POLICY_DIR / f"klasblik-test-{os.getpid()}.json"
        path.write_text(json.dumps({"3rdparty": {"extensions": {EXTENSION_ID: config}}}))
    except OSError as exc:
        pytest.fail(
            f"cannot write Chromium policy to {POLICY_DIR} ({exc}); the extension tests "
            "supply the managed configuration the real way and need write access there "
            '(run as root, or once: sudo install -d -o "$USER" '
            f"{POLICY_DIR})"
        )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def make_test_build(dest: Path, account: str, identity_token: str | None = None) -> Path:
    """Copy the extension to ``dest`` and add the test-only hooks: the account and, when
    given, the Google ID token (a test profile has no Google sign-in to get one from)."""
    shutil.copytree(EXTENSION_SRC, dest, ignore=shutil.ignore_patterns("test", "node_modules"))
    hooks: dict[str, Any] = {"testOnly": True, "account": account}
    if identity_token is not None:
        hooks["identityToken"] = identity_token
    (dest / "test-hooks.json").write_text(json.dumps(hooks))
    return dest


@dataclass
class ChromeAgent:
    """A running Chromium with the extension; helpers to look into its service worker."""

    context: Any
    worker: Any
    policy_path: Path | None = None

    def set_managed(self, config: dict[str, Any]) -> None:
        """Replace the managed configuration, as an admin changing the policy would."""
        assert self.policy_path is not None, "started without managed configuration"
        self.policy_path.write_text(
            json.dumps({"3rdparty": {"extensions": {EXTENSION_ID: config}}})
        )

    async def evaluate(self, expression: str) -> Any:
        return await self.worker.evaluate(expression)

    async def status(self) -> dict[str, Any]:
        return await self.evaluate("globalThis.klasblikStatus()")

    async def badge(self) -> dict[str, str]:
        return await self.evaluate(
            "(async () => ({text: await chrome.action.getBadgeText({}),"
            " title: await chrome.action.getTitle({})}))()"
        )

    async def open_page(self, url: str) -> Any:
        page = await self.context.new_page()
        await page.goto(url)
        await page.bring_to_front()
        return page

    async def wait_status(self, predicate: Any, timeout: float = timeout(20)) -> dict[str, Any]:
        """The extension's status once ``predicate`` holds for it."""
        last: dict[str, Any] = {}

        async def matched() -> dict[str, Any] | None:
            nonlocal last
            last = await self.status()
            return last if predicate(last) else None

        return await wait_for(
            matched,
            timeout,
            lambda: f"the extension's status to match; last: {last}",
            interval=0.1,
        )


@contextlib.asynccontextmanager
async def running_agent(
    tmp_path: Path,
    *,
    server_url: str | None,
    token: str | None,
    account: str,
    identity_token: str | None = None,
) -> AsyncIterator[ChromeAgent]:
    """Start headless Chromium with a test build of the extension and its managed config
    (no policy at all when ``server_url`` is None)."""
    require_chromium()
    from playwright.async_api import async_playwright

    ext = make_test_build(tmp_path / "extension", account, identity_token)
    policy = (
        managed_policy({"serverUrl": server_url, "enrollmentToken": token})
        if server_url is not None
        else contextlib.nullcontext()
    )
    with policy as policy_path:
        async with async_playwright() as p:
            context = await p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                timeout=timeout_ms(30_000),
                args=[
                    *CHROMIUM_ARGS,
                    "--window-size=1280,720",
                    f"--disable-extensions-except={ext}",
                    f"--load-extension={ext}",
                ],
            )
            context.set_default_timeout(timeout_ms(30_000))  # Playwright's own default, scaled
            try:
                worker = next((w for w in context.service_workers if EXTENSION_ID in w.url), None)
                if worker is None:
                    worker = await context.wait_for_event(
                        "serviceworker", timeout=timeout_ms(15_000)
                    )
                assert EXTENSION_ID in worker.url, f"unexpected service worker {worker.url}"
                yield ChromeAgent(context, worker, policy_path)
            finally:
                await context.close()
