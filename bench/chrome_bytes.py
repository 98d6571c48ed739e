"""Bytes per second a Chromebook sends for one watched student: the real extension in
headless Debian Chromium (1280x720 window) against the protocol probe, on a text page that
scrolls 60 px (and 53 px) every 200 ms, the desktop agent's article scrolling 60 px (53 px)
every 500 ms, a page where a student types, and a static page; whole frames (a server that does not take tiles) at today's and the old
grid interval against changed tiles at both, side by side in one run. With each row, the
extension's own milliseconds per frame sent (median): captureVisibleTab, reading its
picture, scaling, comparing and coding.

    .venv/bin/python bench/chrome_bytes.py [--seconds 12] [--pages scroll,typing] [--tiles-only]

Needs /usr/bin/chromium and write access to /etc/chromium/policies/managed, like the
extension tests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.screen_bytes import PAGES as DESKTOP_PAGES
from tests.chrome.extension import running_agent
from tests.chrome.pages import serve_pages
from tests.conformance.probe import WATCH_OFF, ProbeServer, watch_message

from klasblik import protocol as p

_TEXT = " ".join(
    f"Regel {i}: de leerlingen lezen een tekst over de Gouden Eeuw en maken de opdrachten."
    for i in range(400)
)
_STYLE = "<style>html,body{margin:0;font:18px sans-serif;line-height:1.5}p{margin:8px 24px}</style>"
PAGES = {
    "/scroll": f"""<!doctype html><html><head><title>scroll</title>{_STYLE}</head><body>
<p>{_TEXT}</p><script>setInterval(()=>window.scrollBy(0,60),200);</script></body></html>""",
    "/scroll53": f"""<!doctype html><html><head><title>scroll53</title>{_STYLE}</head><body>
<p>{_TEXT}</p><script>setInterval(()=>window.scrollBy(0,53),200);</script></body></html>""",
    # the desktop agent's scroll scene (bench/screen_bytes.py): an article in a column,
    # 60 px (or 53 px) every 500 ms
    "/article": DESKTOP_PAGES["scroll"],
    "/article53": DESKTOP_PAGES["scroll53"],
    "/typing": f"""<!doctype html><html><head><title>typing</title>{_STYLE}</head><body>
<p id=t></p><script>const w='{_TEXT[:2000]}';let n=0;
setInterval(()=>{{n++;document.getElementById('t').textContent=w.slice(0,n*2);}},200);</script>
</body></html>""",
    "/static": f"""<!doctype html><html><head><title>static</title>{_STYLE}</head><body>
<p>{_TEXT[:3000]}</p></body></html>""",
}
INTERVALS_MS = (1000, 2000)


async def _welcome(conn: object, tiles: bool) -> None:
    message = {
        "type": "welcome",
        "protocol": 1,
        "session": "bench",
        "display_name": "Bench S.",
        "heartbeat_s": 20,
        "max_frame_bytes": 1 << 20,
    }
    if tiles:
        message["tiles"] = True
    await conn.send(message)  # type: ignore[attr-defined]


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


async def measure(
    seconds: float, pages: list[str], kinds: tuple[bool, ...]
) -> list[tuple[str, str, int, float, int, int, str]]:
    rows = []
    async with serve_pages(PAGES) as base:
        for tiles in kinds:
            probe = ProbeServer()
            await probe.start()
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    async with running_agent(
                        Path(tmp),
                        server_url=probe.url,
                        token="bench",
                        account="bench@school.example",
                    ) as agent:
                        conn = await probe.next_connection(timeout=30)
                        await conn.wait_for(lambda c=conn: c.hello, 10, "hello")
                        await _welcome(conn, tiles)
                        for path in pages:
                            for interval in INTERVALS_MS:
                                await agent.open_page(base + path)
                                await asyncio.sleep(1.0)
                                await conn.send(
                                    watch_message(
                                        "grid",
                                        width=400,
                                        height=225,
                                        interval_ms=interval,
                                        quality=55,
                                    )
                                )
                                await agent.evaluate("globalThis.klasblikCaptureTimes.splice(0)")
                                start = time.monotonic()
                                await asyncio.sleep(seconds)
                                every = await agent.evaluate(
                                    "globalThis.klasblikCaptureTimes.splice(0)"
                                )
                                times = [t for t in every if t["kind"] in ("delta", "whole")]
                                # captures of a page as it was: PNG ("same") or probe
                                idle = [t for t in every if t["kind"] in ("same", "probe")]
                                frames = [
                                    r for r in conn.frames(since=start) if r.at <= start + seconds
                                ]
                                await conn.send(WATCH_OFF)
                                await asyncio.sleep(0.5)
                                sent = sum(p.FRAME_HEADER_SIZE + len(r.image) for r in frames)
                                deltas = sum(
                                    1
                                    for r in frames
                                    if r.header is not None
                                    and r.header.encoding == p.Encoding.TILES
                                )
                                rows.append(
                                    (
                                        path[1:],
                                        "tiles" if tiles else "whole",
                                        interval,
                                        sent / 1024 / seconds,
                                        len(frames) - deltas,
                                        deltas,
                                        " | ".join(
                                            f"{_median([t[k] for t in times]):.1f}"
                                            for k in ("capture", "decode", "scale", "code")
                                        ),
                                        _idle(idle),
                                    )
                                )
            finally:
                await probe.stop()
    return rows


def _idle(times: list[dict[str, Any]]) -> str:
    """The captures that found the page as it was: how many were PNG captures and how
    many cheap probes, and the median ms of each."""
    parts = []
    for kind in ("same", "probe"):
        ms = [t["capture"] + t["code"] for t in times if t["kind"] == kind]
        parts.append(f"{len(ms)} × {_median(ms):.1f}" if ms else "0")
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--pages", default=",".join(p[1:] for p in PAGES))
    parser.add_argument("--tiles-only", action="store_true")
    args = parser.parse_args(argv)
    pages = [f"/{name}" for name in args.pages.split(",")]
    unknown = [name for name in pages if name not in PAGES]
    if unknown:
        parser.error(f"unknown pages {unknown}; known: {', '.join(PAGES)}")
    kinds = (True,) if args.tiles_only else (False, True)
    rows = asyncio.run(measure(args.seconds, pages, kinds))
    print(" ".join(["command: .venv/bin/python bench/chrome_bytes.py", *(argv or sys.argv[1:])]))
    print(
        "| page | frames | grid interval | KB/s | whole pictures | deltas "
        "| ms per frame sent, median: capture | decode | scale | compare and code "
        "| page as it was, captures × median ms: PNG | probe |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for page, kind, interval, kbs, whole, deltas, ms, idle in sorted(rows):
        print(
            f"| {page} | {kind} | {interval / 1000:g} s | {kbs:.2f} | {whole} | {deltas} "
            f"| {ms} | {idle} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
