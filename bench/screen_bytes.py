"""Bytes per second per watched student, changed tiles against whole frames, side by side
with x11vnc: real Debian Chromium pages on one Xvfb screen (1920x1080).

For each scene (a text page scrolling, a student typing, a video-like page, a static page)
Chromium shows a local page in kiosk mode; the desktop agent's own path grabs the screen
(mss), shrinks it and codes it twice from the same grab: as today's whole frame (JPEG,
sent only when the picture changed) and as a key frame or delta of changed tiles
(agent/klasblik/agent/tiles.py), for the grid (400x225, q55) and the close-up
(1280x720, q70), at 1 s and 2 s intervals. Meanwhile a small RFB client asks Debian's
x11vnc for ZRLE updates of the whole screen once a second, as Veyon's master does, and
counts the bytes it gets. Agent CPU is time.process_time() of the coding only (the
grab's copy in the X server is not the agent's), per frame.

    .venv/bin/python bench/screen_bytes.py [--seconds 20] [--scenes scroll,typing,video,static]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_xscreen import start_xvfb  # noqa: E402

from klasblik.agent.capture import ScreenGrabber  # noqa: E402
from klasblik.agent.imaging import encode_image, render_picture  # noqa: E402
from klasblik.agent.pacing import ChangeDetector  # noqa: E402
from klasblik.agent.tiles import GRID_WHOLE_GAP_S, DeltaEncoder  # noqa: E402

SCREEN = (1920, 1080)
VIEWS = {"grid": ((400, 225), 55), "focus": ((1280, 720), 70)}
INTERVALS = (1.0, 2.0)

_WORDS = [
    "de",
    "het",
    "een",
    "en",
    "van",
    "in",
    "is",
    "dat",
    "op",
    "te",
    "met",
    "voor",
    "zijn",
    "niet",
    "aan",
    "er",
    "maar",
    "om",
    "ook",
    "als",
    "dan",
    "bij",
    "nog",
    "uit",
    "wel",
    "naar",
    "kan",
    "tot",
    "door",
    "over",
    "heeft",
    "rekenen",
    "taal",
    "lezen",
    "blok",
    "opdracht",
    "antwoord",
    "vraag",
    "tabel",
    "breuk",
    "procent",
    "som",
    "schrift",
    "les",
    "groep",
    "klas",
    "toets",
    "aardrijkskunde",
    "water",
    "rivier",
]


def _article(seed: int = 1, paragraphs: int = 120) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(paragraphs):
        if i % 9 == 0:
            out.append(f"<h2>Hoofdstuk {i // 9 + 1}: {' '.join(rng.sample(_WORDS, 3))}</h2>")
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90)))
        out.append(f"<p>{words.capitalize()}.</p>")
    return "\n".join(out)


_STYLE = (
    "<style>body{font:16px/1.5 sans-serif;margin:40px 18%;color:#222;background:#fff}"
    "h2{color:#2b579a}textarea{width:100%;height:70vh;font:16px/1.5 sans-serif}</style>"
)

PAGES = {
    # a reader scrolling: 60 px every half second
    "scroll": _STYLE
    + _article()
    + "<script>setInterval(() => window.scrollBy(0, 60), 500)</script>",
    # the same reader, 53 px at a time: no whole multiple of the reduction, so no copies
    "scroll53": _STYLE
    + _article()
    + "<script>setInterval(() => window.scrollBy(0, 53), 500)</script>",
    # typing about 6 characters a second into a document, the caret blinking
    "typing": _STYLE
    + "<h2>Opdracht 3</h2><textarea id=t autofocus></textarea><script>"
    + "const w = "
    + repr(" ".join(_WORDS))
    + ";let i = 0;const t = document.getElementById('t');t.focus();"
    + "setInterval(() => { t.value += w[i % w.length]; i += 1; }, 160)</script>",
    # a video-like page: a photo-like picture (smooth colours, fine noise) panning in a
    # 960x540 canvas inside a text page, with a moving bright ball, 30 frames a second
    "video": _STYLE
    + _article(paragraphs=3)
    + "<canvas id=c width=960 height=540></canvas>"
    + _article(seed=2, paragraphs=6)
    + "<script>const W = 1500, H = 900;const o = document.createElement('canvas');"
    + "o.width = W; o.height = H; const g = o.getContext('2d');let s = 7;"
    + "const r = () => (s = (s * 16807) % 2147483647) / 2147483647;"
    + "for (let k = 0; k < 60; k++) { const x = r() * W, y = r() * H;"
    + "const gr = g.createRadialGradient(x, y, 0, x, y, 80 + r() * 300);"
    + "gr.addColorStop(0, `hsl(${r() * 360},70%,55%)`); gr.addColorStop(1, 'rgba(0,0,0,0)');"
    + "g.fillStyle = gr; g.fillRect(0, 0, W, H); }"
    + "const d = g.getImageData(0, 0, W, H);"
    + "for (let i = 0; i < d.data.length; i += 4) { const n = (r() - 0.5) * 24;"
    + "d.data[i] += n; d.data[i + 1] += n; d.data[i + 2] += n; }"
    + "g.putImageData(d, 0, 0);const c = document.getElementById('c').getContext('2d');"
    + "let f = 0;function draw() { f += 1;"
    + "c.drawImage(o, -((f * 2) % 540), -((f) % 360));c.fillStyle = '#fc3';c.beginPath();"
    + "c.arc((f * 9) % 960, 270 + 120 * Math.sin(f / 15), 60, 0, 7);c.fill();"
    + "requestAnimationFrame(draw); }draw();</script>",
    "static": _STYLE + _article(),
}


@contextlib.contextmanager
def chromium(display: str, page: Path) -> Iterator[None]:
    """Debian's Chromium in kiosk mode on ``display`` showing ``page``."""
    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("chromium is not installed (scripts/lib/system-packages)")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                exe,
                "--no-sandbox",
                "--disable-gpu",
                "--kiosk",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-features=Translate",
                f"--user-data-dir={profile}",
                f"--window-size={SCREEN[0]},{SCREEN[1]}",
                "--window-position=0,0",
                page.as_uri(),
            ],
            env={"DISPLAY": display, "PATH": "/usr/bin:/bin", "HOME": profile},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(4)  # a benchmark, not a test: let the page load and start moving
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def x11vnc(display: str) -> Iterator[int]:
    """Debian's x11vnc serving ``display`` on a free loopback port (no password)."""
    exe = shutil.which("x11vnc")
    if exe is None:
        raise SystemExit("x11vnc is not installed (Debian package x11vnc)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            *(exe, "-display", display, "-rfbport", str(port), "-localhost", "-nopw"),
            *("-shared", "-forever", "-quiet", "-noxrecord"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # it may sit in a poll of the screen
            proc.kill()
            proc.wait()


def _exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("the VNC server closed the connection")
        out += chunk
    return out


@dataclass
class RfbCounter:
    """An RFB 3.8 client asking for ZRLE updates once a second; counts what it receives."""

    port: int
    received: int = 0
    started: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            _exact(s, 12)
            s.sendall(b"RFB 003.008\n")
            (count,) = _exact(s, 1)
            if 1 not in _exact(s, count):
                raise ConnectionError("x11vnc offers no 'None' security")
            s.sendall(b"\x01")
            if _exact(s, 4) != b"\x00\x00\x00\x00":
                raise ConnectionError("RFB security refused")
            s.sendall(b"\x01")  # shared
            width, height = struct.unpack(">HH", _exact(s, 4))
            _exact(s, 16)
            (name_len,) = struct.unpack(">I", _exact(s, 4))
            _exact(s, name_len)
            s.sendall(struct.pack(">BBHi", 2, 0, 1, 16))  # SetEncodings: ZRLE
            s.settimeout(0.05)
            self.started = time.monotonic()
            incremental = 0
            next_ask = self.started
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= next_ask:
                    s.sendall(struct.pack(">BBHHHH", 3, incremental, 0, 0, width, height))
                    incremental = 1
                    next_ask += 1.0
                with contextlib.suppress(TimeoutError):
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    self.received += len(chunk)

    def rate(self) -> float:
        return self.received / max(1e-9, time.monotonic() - self.started)


@dataclass
class Tally:
    full_bytes: int = 0
    tile_bytes: int = 0
    frames: int = 0
    cpu_full: float = 0.0
    cpu_tiles: float = 0.0


def measure(display: str, seconds: float, interval: float) -> dict[str, Tally]:
    """Grab every ``interval`` s for ``seconds``; code each grab both ways, per view."""
    grabber = ScreenGrabber(display=display)
    # per view: today's path (its own change detector) and the tiles path (its own, and the
    # picture made region by region from the last one sent where the sizes allow:
    # DeltaEncoder.encode_grab, agent/klasblik/agent/tiles.py and imaging.py)
    state = {v: (ChangeDetector(), ChangeDetector(), DeltaEncoder()) for v in VIEWS}
    out = {v: Tally() for v in VIEWS}
    end = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < end:
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        grab = grabber.grab()
        size = (grab.width, grab.height)
        for view, (box, quality) in VIEWS.items():
            whole_detector, tile_detector, delta = state[view]
            tally = out[view]
            tally.frames += 1
            t0 = time.process_time()
            picture = render_picture(grab.raw, size, box, whole_detector)
            if picture is not None:
                tally.full_bytes += len(encode_image(picture, "jpeg", quality))
                whole_detector.commit()
            t1 = time.process_time()
            coded = delta.encode_grab(  # as the agent's capture worker does
                grab.raw,
                size,
                box,
                "jpeg",
                quality,
                time.monotonic(),
                screen_key=True,
                whole_gap_s=GRID_WHOLE_GAP_S if view == "grid" else 0.0,
                detector=tile_detector,
            )
            if coded is not None:  # sent (a held-back whole picture is not)
                tally.tile_bytes += len(coded.data)
                tile_detector.commit()
                delta.commit()
            t2 = time.process_time()
            tally.cpu_full += t1 - t0
            tally.cpu_tiles += t2 - t1
    grabber.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per scene and interval")
    parser.add_argument("--scenes", default=",".join(PAGES), help="comma-separated scenes")
    args = parser.parse_args(argv)
    scenes = [s for s in args.scenes.split(",") if s]
    cmd = "python bench/screen_bytes.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# {cmd.strip()}")
    print(f"# Xvfb {SCREEN[0]}x{SCREEN[1]}, Debian Chromium, x11vnc ZRLE 1/s; KB = 1024 bytes")
    print(
        "| scene | view | interval | whole frames KB/s | tiles KB/s | tiles/whole "
        "| ZRLE 1/s KB/s | tiles/ZRLE | CPU ms/frame whole / tiles |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp, start_xvfb(*SCREEN) as xvfb:
        for scene in scenes:
            page = Path(tmp) / f"{scene}.html"
            page.write_text("<!doctype html><meta charset=utf-8>" + PAGES[scene])
            with chromium(xvfb.display, page), x11vnc(xvfb.display) as port:
                counter = RfbCounter(port)
                thread = threading.Thread(target=counter.run, daemon=True)
                thread.start()
                results = {i: measure(xvfb.display, args.seconds, i) for i in INTERVALS}
                counter.stop.set()
                thread.join(5)
                zrle = counter.rate() / 1024
                for interval, views in results.items():
                    for view, t in views.items():
                        full = t.full_bytes / args.seconds / 1024
                        tiles = t.tile_bytes / args.seconds / 1024
                        sent = max(1, t.frames)
                        ratio = tiles / full if full else 0.0
                        print(
                            f"| {scene} | {view} | {interval:.0f} s | {full:.2f} | {tiles:.2f} "
                            f"| {ratio:.2f} | {zrle:.1f} | {tiles / zrle if zrle else 0:.3f} "
                            f"| {t.cpu_full / sent * 1000:.1f} / {t.cpu_tiles / sent * 1000:.1f} |"
                        )
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
