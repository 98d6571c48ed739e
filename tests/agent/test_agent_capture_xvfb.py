"""Real screen capture with mss on an Xvfb screen showing known images."""

from __future__ import annotations

import contextlib
import io

import pytest
from PIL import Image, ImageDraw

from klasblik import protocol as p
from klasblik.agent.activewindow import active_window_title
from klasblik.agent.capture import CaptureError, CaptureWorker, ScreenGrabber, display_problem
from klasblik.agent.imaging import reduce_plan
from klasblik.agent.pacing import ChangeDetector
from klasblik.agent.tiles import DeltaEncoder
from tests.agent.agent_xscreen import XPainter, Xvfb, XvfbMissing, start_xvfb
from tests.agent.test_agent_tiles import groups_are_true
from tests.support.tiles import apply_frame
from tests.support.timing import timeout

pytestmark = pytest.mark.xvfb


def _close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 14) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=False))


def _quadrants() -> Image.Image:
    img = Image.new("RGB", (1280, 720), (230, 30, 40))
    img.paste((20, 180, 60), (640, 0, 1280, 360))
    img.paste((30, 60, 220), (0, 360, 640, 720))
    img.paste((250, 240, 30), (640, 360, 1280, 720))
    return img


def test_grab_returns_the_pixels_on_screen(xvfb: Xvfb, painter: XPainter) -> None:
    """The raw grab is the full screen, in B, G, R, X order, with the colours shown."""
    painter.show(_quadrants())
    grab = ScreenGrabber(display=xvfb.display).grab()
    assert (grab.width, grab.height) == (1280, 720)
    img = Image.frombytes("RGB", (1280, 720), bytes(grab.raw), "raw", "BGRX")
    assert img.getpixel((100, 100)) == (230, 30, 40)
    assert img.getpixel((1000, 100)) == (20, 180, 60)
    assert img.getpixel((100, 600)) == (30, 60, 220)
    assert img.getpixel((1000, 600)) == (250, 240, 30)


@pytest.mark.parametrize("encoding", ["jpeg", "webp"])
async def test_capture_worker_frame_matches_screen(
    xvfb: Xvfb, painter: XPainter, encoding: str
) -> None:
    """A thumbnail of the screen has the screen's colours in the same places, at 400x225."""
    painter.show(_quadrants())
    worker = CaptureWorker(ScreenGrabber(display=xvfb.display))
    try:
        frame = await worker.capture((400, 225), encoding, 70, ChangeDetector())
    finally:
        await worker.close()
    assert frame is not None
    img = Image.open(io.BytesIO(frame.image.data)).convert("RGB")
    assert img.format is None or img.size == (400, 225)
    assert (frame.image.width, frame.image.height) == img.size == (400, 225)
    expected = {
        (50, 50): (230, 30, 40),
        (350, 50): (20, 180, 60),
        (50, 180): (30, 60, 220),
        (350, 180): (250, 240, 30),
    }
    for xy, colour in expected.items():
        assert _close(img.getpixel(xy), colour), (xy, img.getpixel(xy), colour)


async def test_unchanged_screen_gives_no_new_frame(xvfb: Xvfb, painter: XPainter) -> None:
    """A second capture of the same screen gives nothing; drawing text makes a frame again."""
    page = Image.new("RGB", (1280, 720), "white")
    painter.show(page)
    worker = CaptureWorker(ScreenGrabber(display=xvfb.display))
    detector = ChangeDetector()
    try:
        assert await worker.capture((400, 225), "jpeg", 55, detector) is not None
        detector.commit()
        assert await worker.capture((400, 225), "jpeg", 55, detector) is None
        ImageDraw.Draw(page).text((500, 300), "Hallo juf", fill="black")
        painter.show(page)
        assert await worker.capture((400, 225), "jpeg", 55, detector) is not None
    finally:
        await worker.close()


def test_active_window_title_from_x11(
    xvfb: Xvfb, painter: XPainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The title of the window named in _NET_ACTIVE_WINDOW is read, UTF-8 intact."""
    monkeypatch.setenv("DISPLAY", xvfb.display)
    assert active_window_title() is None  # no window manager: nothing active yet
    painter.set_active_window_title('Rekenen – blok 3 "oefenen"')
    assert active_window_title() == 'Rekenen – blok 3 "oefenen"'


def test_missing_display_is_a_capture_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without DISPLAY the grab raises CaptureError with a clear reason, no crash."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    with pytest.raises(CaptureError, match=r"no display to capture \(DISPLAY not set\)"):
        ScreenGrabber().grab()
    assert "Wayland" in (display_problem("linux", {"WAYLAND_DISPLAY": "wayland-0"}) or "")
    assert display_problem("win32", {}) is None


def test_display_that_went_away_is_a_capture_error(xvfb: Xvfb) -> None:
    """When the X server stops, the next grab is a CaptureError, not a crash."""
    grabber = ScreenGrabber(display=xvfb.display)
    grabber.grab()
    xvfb.process.terminate()
    xvfb.process.wait(timeout=timeout(10))
    with pytest.raises(CaptureError):
        grabber.grab()
    with pytest.raises(CaptureError, match="cannot open the screen"):
        grabber.grab()


async def test_a_page_scrolled_by_53_px_on_a_real_screen_is_a_copy() -> None:
    """On a real 1920x1080 X screen grabbed by mss through the capture worker: a page moved
    up by 53 px (no multiple of the grid's 5 rows nor of the close-up's 3) goes out as a
    copy tile plus the rows that came in, for both views; painted as the dashboard paints
    it, every group of picture rows is the screen's own reduction, at most py // 2 screen
    rows off its place (tests/agent/test_agent_tiles.py says why)."""
    page = Image.new("RGB", (1920, 1080 + 53), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.fontmode = "1"  # two colours: lossless tiles, compared exactly
    for n, y in enumerate(range(6, page.height - 20, 19)):
        draw.text((30 + n % 40, y), f"{n}: " + "rekenen taal lezen blok " * (1 + n % 9), fill=0)
    with contextlib.ExitStack() as stack:
        try:
            screen = stack.enter_context(start_xvfb(1920, 1080))
        except XvfbMissing as exc:
            pytest.fail(f"the desktop agent tests need Xvfb: {exc}")
        painter = XPainter(screen.display)
        stack.callback(painter.close)
        worker = CaptureWorker(ScreenGrabber(display=screen.display))
        try:
            for box in ((400, 225), (1280, 720)):
                await _scroll_53(painter, worker, page, box)
        finally:
            await worker.close()


async def _scroll_53(
    painter: XPainter, worker: CaptureWorker, page: Image.Image, box: tuple[int, int]
) -> None:
    plan = reduce_plan((1920, 1080), box)
    assert plan is not None
    delta, detector, viewer = DeltaEncoder(), ChangeDetector(), None
    for top in (0, 53):
        shown = page.crop((0, top, 1920, top + 1080))
        painter.show(shown)
        frame = await worker.capture(box, "jpeg", 70, detector, delta, tiles=True, screen_key=True)
        assert frame is not None and frame.key == (top == 0)
        image = frame.image
        header = p.FrameHeader(1, image.encoding, image.width, image.height, 1, 0)
        viewer = apply_frame(viewer, header, image.data)
        detector.commit()
        delta.commit()
    tiles = p.decode_tiles(image.data, image.width, image.height)
    assert tiles[0].encoding == p.TileEncoding.COPY, box
    groups_are_true(viewer, shown, plan, box)
