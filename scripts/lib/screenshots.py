"""Take the grid screenshots for scripts/screenshots (see there). Starts its own demo
server on a free loopback port with its data in a temporary folder."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZES = ((1920, 1080), (1366, 768), (1024, 768))
LANGUAGES = ("en", "nl")
CHROMIUM = os.environ.get("KLASBLIK_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"klasblik serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("klasblik serve did not answer /healthz within 60 s")


async def shoot(base: str, out: Path) -> list[Path]:
    from playwright.async_api import async_playwright

    made = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        for lang in LANGUAGES:
            locale = "nl-NL" if lang == "nl" else "en-GB"
            context = await browser.new_context(locale=locale)
            page = await context.new_page()
            await page.goto(f"{base}/signin?lang={lang}")
            await page.locator("#demo-signin").click()
            await page.wait_for_url(f"{base}/**")
            signed_in = await context.storage_state()
            await context.close()
            for width, height in SIZES:
                # A fresh page at each size, as a tablet or laptop would load it.
                context = await browser.new_context(
                    viewport={"width": width, "height": height},
                    locale=locale,
                    storage_state=signed_in,
                )
                page = await context.new_page()
                await page.goto(f"{base}/?lang={lang}")
                await page.wait_for_function(
                    "() => document.querySelectorAll('#grid .tile img[data-frame-seq]').length >= 20",
                    timeout=60_000,
                )
                await page.wait_for_timeout(500)
                path = out / f"grid-{width}x{height}-{lang}.png"
                await page.screenshot(path=str(path))
                made.append(path)
                await context.close()
        await browser.close()
    return made


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "tests" / ".artifacts" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="klasblik-shots-") as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLASBLIK_")}
        env.update(
            KLASBLIK_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/k.db",
            KLASBLIK_BLOB_STORE=f"file:{tmp}/blobs",
            KLASBLIK_DEMO_STUDENTS="45",
        )
        with open(Path(tmp) / "server.log", "wb") as log:
            process = subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "klasblik"), "serve", "--demo", "--port", str(port)],
                cwd=tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, process)
            for path in asyncio.run(shoot(base, out)):
                print(path)
        finally:
            process.terminate()
            process.wait(timeout=15)


if __name__ == "__main__":
    main()
