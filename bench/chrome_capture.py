"""Chromebook agent capture figures: the extension in headless Chromium (1280×720 window)
sends frames of a page that changes every 200 ms to a probe server; per watch setting this
prints frames per second, bytes per frame and the delay from capture to arrival.

Run: .venv/bin/python bench/chrome_capture.py   (needs /usr/bin/chromium and write access
to /etc/chromium/policies/managed, like the extension tests)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chrome.extension import running_agent
from tests.chrome.pages import serve_pages
from tests.conformance.probe import WATCH_OFF, ProbeServer, watch_message

SECONDS = 8
CHANGING_PAGE = """<!doctype html><html><head><title>bench</title><style>
html,body{margin:0;height:100%;font:40px sans-serif}</style></head><body><div id=t></div>
<script>let n=0;setInterval(()=>{n++;document.body.style.background=`hsl(${n*37%360},70%,45%)`;
document.getElementById('t').textContent='frame '+n+' '+'lorem ipsum '.repeat(n%40);},200);</script>
</body></html>"""

CASES = [
    (
        "grid 400x225 jpeg q55 every 2000 ms",
        watch_message("grid", width=400, height=225, interval_ms=2000, quality=55),
    ),
    (
        "grid 400x225 jpeg q55 every 500 ms",
        watch_message("grid", width=400, height=225, interval_ms=500, quality=55),
    ),
    (
        "focus 1280x720 jpeg q70 every 500 ms",
        watch_message("focus", width=1280, height=720, interval_ms=500, quality=70),
    ),
    (
        "focus 1280x720 webp q70 every 500 ms",
        watch_message(
            "focus", width=1280, height=720, interval_ms=500, quality=70, encoding="webp"
        ),
    ),
]


async def main() -> None:
    probe = ProbeServer()
    await probe.start()
    with tempfile.TemporaryDirectory() as tmp:
        async with serve_pages({"/": CHANGING_PAGE}) as base:
            async with running_agent(
                Path(tmp), server_url=probe.url, token="bench", account="bench@school.example"
            ) as agent:
                await agent.open_page(base + "/")
                conn = await probe.next_connection(timeout=30)
                await conn.wait_for(lambda: conn.hello, 10, "hello")
                await conn.welcome()
                print(
                    f"{'watch':40} {'fps':>5} {'KiB/frame':>10} {'capture→arrival ms median':>26} {'max':>6}"
                )
                for label, watch in CASES:
                    await conn.send(watch)
                    await asyncio.sleep(1.0)
                    start = time.monotonic()
                    await asyncio.sleep(SECONDS)
                    frames = [r for r in conn.frames(since=start) if r.at <= start + SECONDS]
                    await conn.send(WATCH_OFF)
                    await asyncio.sleep(1.0)
                    if not frames:
                        print(f"{label:40} no frames")
                        continue
                    offset = time.time() - time.monotonic()  # arrival as wall-clock time
                    delays = [
                        (r.at + offset) * 1000 - r.header.captured_at_ms  # type: ignore[union-attr]
                        for r in frames
                    ]
                    sizes = [len(r.image) / 1024 for r in frames]
                    print(
                        f"{label:40} {len(frames) / SECONDS:5.2f} {statistics.median(sizes):10.1f} "
                        f"{statistics.median(delays):26.0f} {max(delays):6.0f}"
                    )
    await probe.stop()


if __name__ == "__main__":
    asyncio.run(main())
