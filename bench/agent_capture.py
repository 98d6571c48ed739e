"""Desktop agent capture benchmark: CPU time and bytes per frame, real capture under Xvfb.

For each screen size an Xvfb screen of that size shows synthetic content (a text page, a
photo, video frames; bench/screens.py); the agent's own path (mss grab → box reduce →
bilinear → JPEG/WebP, with change detection) captures it. CPU is time.process_time() of
this process (the X server's copy into shared memory is not counted: it is not the
agent's). Painting the screen is outside the timed part.

Then changed tiles, as sent to a server that takes them (agent/klasblik/agent/tiles.py):
a page scrolling by 53 px, typing, video, an unchanged page.

    .venv/bin/python bench/agent_capture.py [--rounds N] [--tiles-only]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_xscreen import XPainter, start_xvfb  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from klasblik.agent import imaging  # noqa: E402
from klasblik.agent.capture import CaptureWorker, ScreenGrabber  # noqa: E402
from klasblik.agent.client import Watch, choose_encoding  # noqa: E402
from klasblik.agent.imaging import render_frame  # noqa: E402
from klasblik.agent.pacing import ChangeDetector  # noqa: E402
from klasblik.agent.settings import AGENT_SETTINGS  # noqa: E402
from klasblik.agent.tiles import GRID_WHOLE_GAP_S, DeltaEncoder  # noqa: E402
from screens import photo, text_page, video_frames  # noqa: E402

SIZES = ((1920, 1080), (1366, 768))
MODES = {"thumbnail": ((400, 225), 55), "focus": ((1280, 720), 70)}
GOAL_CPU_MS = 10.0
DEFAULT_ENCODING = next(s.default for s in AGENT_SETTINGS if s.name == "encoding")
GOAL_TEXT_THUMB_BYTES = 10 * 1024
#: changed tiles (a server that takes them): CPU per frame at 1920x1080, grid / close-up
GOAL_TILES_CPU_MS = {"thumbnail": 7.0, "focus": 15.0}


def _content(width: int, height: int, rounds: int) -> dict[str, list[Image.Image]]:
    return {
        "text": [text_page(width, height)],
        "photo": [photo(width, height)],
        "video": video_frames(width, height, max(rounds, 2)),
    }


def _measure(
    painter: XPainter,
    grabber: ScreenGrabber,
    frames: list[Image.Image],
    rounds: int,
    run: Callable[[ChangeDetector], int | None],
    changed: bool,
) -> tuple[float, float, int]:
    """Average CPU ms and bytes per capture; and how many captures produced a frame."""
    cpu = 0.0
    total = 0
    produced = 0
    painter.show(frames[0])
    run(ChangeDetector())  # warm-up (first use of buffers and encoder), not counted
    detector = ChangeDetector()
    for i in range(rounds):
        frame = frames[i % len(frames)]
        if len(frames) > 1 or i == 0:
            painter.show(frame)
        if changed:
            detector.reset()  # a changed screen each time: always a frame
        start = time.process_time()
        size = run(detector)
        cpu += time.process_time() - start
        if size is not None:
            detector.commit()
            total += size
            produced += 1
    return cpu / rounds * 1000, total / rounds, produced


def _agent_run(grabber: ScreenGrabber, box: tuple[int, int], encoding: str, quality: int):
    def run(detector: ChangeDetector) -> int | None:
        grab = grabber.grab()
        out = render_frame(grab.raw, (grab.width, grab.height), box, encoding, quality, detector)
        return None if out is None else len(out.data)

    return run


def _naive_run(grabber: ScreenGrabber, box: tuple[int, int], encoding: str, quality: int):
    """The textbook path, for comparison: RGB copy, crc32 of the grab, one filtered resize."""
    last: list[int] = []

    def run(detector: ChangeDetector) -> int | None:
        grab = grabber.grab()
        sig = zlib.crc32(grab.raw)
        if last and last[-1] == sig and detector._last is not None:
            return None
        last.append(sig)
        img = Image.frombytes("RGB", (grab.width, grab.height), bytes(grab.raw), "raw", "BGRX")
        target = imaging.fit_size(grab.width, grab.height, *box)
        img = img.resize(target, Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, "JPEG" if encoding == "jpeg" else "WEBP", quality=quality)
        return len(buf.getvalue())

    return run


def _tile_scenes(width: int, height: int, rounds: int) -> dict[str, list[Image.Image]]:
    """Screens one after another: a page whose body scrolls by 53 px under a fixed title
    bar and toolbar (no multiple of the reductions), a word typed per frame, video frames,
    an unchanged page."""
    page = text_page(width, height)
    body = text_page(width, height * 4, seed=5).crop((0, 70, width, height * 4))
    scroll, typing = [], []
    for i in range(rounds + 1):
        frame = page.copy()
        frame.paste(body.crop((0, i * 53, width, i * 53 + height - 70)), (0, 70))
        scroll.append(frame)
        frame = page.copy()
        ImageDraw.Draw(frame).text((width // 8, height // 2), "antwoord: " + "42 " * i, fill=0)
        typing.append(frame)
    return {
        "scroll53": scroll,
        "typing": typing,
        "video": video_frames(width, height, rounds + 1),
        "same": [page] * (rounds + 1),
    }


def _tiles(painter: XPainter, grabber: ScreenGrabber, width: int, height: int, rounds: int):
    """Changed tiles as the agent sends them to a server that takes them (the capture
    worker's own path: grab, picture from the last one sent, tiles): CPU per frame after a
    first whole picture, and bytes per frame."""
    worker = CaptureWorker(grabber)
    failures: list[str] = []
    try:
        for name, frames in _tile_scenes(width, height, rounds).items():
            for mode, (box, quality) in MODES.items():
                delta, detector = DeltaEncoder(), ChangeDetector()
                gap = GRID_WHOLE_GAP_S if mode == "thumbnail" else 0.0
                cpu, total, sent = 0.0, 0, 0
                for i, frame in enumerate(frames):
                    if i == 0 or frame is not frames[i - 1]:
                        painter.show(frame)
                    start = time.process_time()
                    coded = worker._capture(box, "jpeg", quality, detector, delta, True, True, gap)
                    if i:
                        cpu += time.process_time() - start
                    if coded is not None:
                        detector.commit()
                        delta.commit()
                        if i:
                            total += len(coded.image.data)
                            sent += 1
                ms = cpu / rounds * 1000
                print(
                    f"{width}x{height:<4} {name:8} {mode:9} tiles {ms:7.2f} "
                    f"{total / rounds:11.0f} {sent:6d}"
                )
                goal = GOAL_TILES_CPU_MS[mode]
                if width == 1920 and ms > goal:
                    failures.append(f"tiles {name} {width}x{height} {mode}: {ms:.1f} ms > {goal}")
    finally:
        worker._pool.shutdown(wait=False)
    return failures


def _encoder_options(rounds: int) -> None:
    """Encoder settings on the 400x225 thumbnail of a 1920x1080 text page and photo."""
    print()
    print("encoder options, 400x225 thumbnail at quality 55 (encode only, in memory):")
    for name, img in (("text", text_page(1920, 1080)), ("photo", photo(1920, 1080))):
        raw = img.tobytes("raw", "BGRX")
        mid, _ = imaging.shrink(raw, img.size, (400, 225))
        small = imaging._finish(mid, (400, 225))
        options: list[tuple[str, dict[str, object]]] = [
            ("JPEG", {"quality": 55}),
            ("JPEG", {"quality": 55, "optimize": True}),
            ("JPEG", {"quality": 55, "optimize": True, "progressive": True}),
            ("WEBP", {"quality": 55, "method": 0}),
            ("WEBP", {"quality": 55, "method": 2}),
            ("WEBP", {"quality": 55, "method": 4}),
        ]
        for fmt, kw in options:
            start = time.process_time()
            for _ in range(rounds * 4):
                buf = io.BytesIO()
                small.save(buf, fmt, **kw)
            cpu = (time.process_time() - start) / (rounds * 4) * 1000
            opts = ", ".join(f"{k}={v}" for k, v in kw.items() if k != "quality")
            print(f"  {name:6} {fmt:4} {opts:32} {cpu:6.2f} ms {len(buf.getvalue()):7d} bytes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="captures per row (default 12)")
    parser.add_argument(
        "--tiles-only", action="store_true", help="only the changed-tiles rows (shorter)"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds
    given = sys.argv[1:] if argv is None else argv
    print("command: .venv/bin/python bench/agent_capture.py " + " ".join(given))
    print(
        f"source: real mss capture of an Xvfb screen of each size; Pillow {Image.__version__}; "
        f"webp method {imaging.WEBP_METHOD}; {rounds} captures per row"
    )
    print()
    header = f"{'screen':>9} {'content':7} {'mode':9} {'enc':5} {'CPU ms':>7} {'bytes/frame':>11} {'frames':>6}"
    print(header)
    print("-" * len(header))
    failures: list[str] = []
    for width, height in SIZES:
        with start_xvfb(width, height) as xvfb:
            painter = XPainter(xvfb.display)
            grabber = ScreenGrabber(display=xvfb.display)
            grabber.grab()  # open the display outside the figures
            if args.tiles_only:
                failures += _tiles(painter, grabber, width, height, rounds)
                grabber.close()
                painter.close()
                continue
            content = _content(width, height, rounds)
            for name, frames in content.items():
                for mode, (box, quality) in MODES.items():
                    for enc in ("jpeg", "webp"):
                        cpu, size, n = _measure(
                            painter,
                            grabber,
                            frames,
                            rounds,
                            _agent_run(grabber, box, enc, quality),
                            True,
                        )
                        default = choose_encoding(DEFAULT_ENCODING, Watch())
                        mark = " (default)" if default == enc else ""
                        print(
                            f"{width}x{height:<4} {name:7} {mode:9} {enc:5} {cpu:7.2f} {size:11.0f} {n:6d}{mark}"
                        )
                        if (width, mode, default) == (1920, "thumbnail", enc) and cpu > GOAL_CPU_MS:
                            failures.append(
                                f"{name} {width}x{height} thumbnail {enc}: {cpu:.1f} ms CPU > {GOAL_CPU_MS}"
                            )
                        if (name, mode, default) == (
                            "text",
                            "thumbnail",
                            enc,
                        ) and size > GOAL_TEXT_THUMB_BYTES:
                            failures.append(
                                f"text {width}x{height} thumbnail {enc}: {size:.0f} B > 10 KB"
                            )
            # An unchanged screen: the same page captured again and again.
            for mode, (box, quality) in MODES.items():
                enc = DEFAULT_ENCODING
                detector_run = _agent_run(grabber, box, enc, quality)
                painter.show(content["text"][0])
                det = ChangeDetector()
                first = detector_run(det)
                det.commit()
                cpu = 0.0
                total = 0
                n = 0
                for _ in range(rounds):
                    start = time.process_time()
                    size = detector_run(det)
                    cpu += time.process_time() - start
                    if size is not None:
                        total += size
                        n += 1
                print(
                    f"{width}x{height:<4} {'same':7} {mode:9} {enc:5} {cpu / rounds * 1000:7.2f} "
                    f"{total / rounds:11.0f} {n:6d}  (unchanged screen; first frame {first} B)"
                )
                if total:
                    failures.append(f"unchanged {width}x{height} {mode}: {total} bytes sent")
            # The textbook path, for comparison with the agent's.
            cpu, size, n = _measure(
                painter,
                grabber,
                content["text"],
                rounds,
                _naive_run(grabber, (400, 225), "jpeg", 55),
                True,
            )
            print(
                f"{width}x{height:<4} {'text':7} {'thumbnail':9} {'jpeg':5} {cpu:7.2f} {size:11.0f} "
                f"{n:6d}  (naive: RGB copy + crc32 of grab + one BILINEAR resize)"
            )
            print("changed tiles (after a first whole picture):")
            failures += _tiles(painter, grabber, width, height, rounds)
            grabber.close()
            painter.close()
    if not args.tiles_only:
        _encoder_options(rounds)
    print()
    if failures:
        print("GOALS MISSED:")
        for f in failures:
            print("  " + f)
        return 1
    print(
        f"goals met: ≤ {GOAL_CPU_MS:.0f} ms CPU per 1920x1080 capture→thumbnail, "
        "≤ 10 KB per text-page thumbnail, 0 bytes on an unchanged screen, changed tiles "
        "≤ 7 / 15 ms CPU per 1920x1080 grid / close-up frame"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
