"""Screen capture with mss (all monitors, the active one, or the primary), in its own thread.

In a Wayland session the same grabber goes through the ScreenCast desktop portal and its
PipeWire stream instead (``portal_capture.py``); X11, Windows and macOS stay on mss.

Which part of the desktop a frame shows is the setting ``monitors``: ``all`` grabs the
whole virtual desktop (every monitor, side by side as arranged), ``active`` the monitor
with the centre of the active window, ``primary`` the primary one. On X11 the monitors are
the RandR monitors (what desktops report per screen); elsewhere mss's list.

mss objects belong to the thread that made them (GDI and Xlib handles), so one worker
thread owns the grabber; the asyncio side awaits it and heartbeats keep flowing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import mss

from klasblik.agent.activewindow import active_window_centre
from klasblik.agent.imaging import EncodedImage, render_frame, render_picture
from klasblik.agent.pacing import ChangeDetector
from klasblik.agent.tiles import DeltaEncoder
from klasblik.agent.wayland import is_wayland_session, portal_problem
from klasblik.agent.x11 import randr_monitors
from klasblik.protocol.errors import KlasblikError

if TYPE_CHECKING:
    from klasblik.agent.portal_capture import PortalGrabber

__all__ = [
    "CaptureError",
    "CaptureWorker",
    "CapturedFrame",
    "Grab",
    "Grabber",
    "Region",
    "ScreenGrabber",
    "choose_region",
    "display_problem",
]

#: (left, top, width, height) of a part of the virtual desktop
Region = tuple[int, int, int, int]


def choose_region(
    desktop: Region,
    monitors: list[tuple[Region, bool]],
    setting: str,
    point: tuple[int, int] | None,
) -> Region:
    """The part of the desktop to grab for ``setting`` (all, active, primary).

    ``monitors`` lists each monitor with whether it is primary; ``point`` is the centre
    of the active window, if known. ``active`` without a known point, or with a point on
    no monitor, falls back to the primary monitor, which falls back to the first one.
    """
    if setting == "all" or not monitors:
        return desktop
    primary = next((m for m, is_primary in monitors if is_primary), monitors[0][0])
    if setting == "active" and point is not None:
        px, py = point
        for (left, top, width, height), _ in monitors:
            if left <= px < left + width and top <= py < top + height:
                return (left, top, width, height)
    return primary


class CaptureError(KlasblikError):
    """The screen cannot be captured now; ``reason`` is shown to the teacher."""

    code = "capture_failed"

    def __init__(self, reason: str, cause: str = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        #: one of ``klasblik.protocol.CAPTURE_CODES``: what the teacher is told
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Grab:
    """Raw pixels of one grab, 4 bytes per pixel in B, G, R, X order."""

    raw: bytearray | bytes
    width: int
    height: int
    captured_at_ms: int


class Grabber(Protocol):
    def grab(self) -> Grab: ...

    def close(self) -> None: ...


def display_problem(platform: str = sys.platform, env: dict[str, str] | None = None) -> str | None:
    """A reason why no screen can be captured on this platform and session, or None."""
    env = dict(os.environ) if env is None else env
    if platform.startswith("linux") or "bsd" in platform:
        # A Wayland session: even with Xwayland's DISPLAY, X capture sees only X clients.
        if is_wayland_session(env):
            return portal_problem(env)
        if env.get("DISPLAY"):
            return None
        return "no display to capture (DISPLAY not set)"
    return None


class ScreenGrabber:
    """Grabs (part of) the desktop with ``mss.MSS``; makes its mss object lazily.

    In a Wayland session (``XDG_SESSION_TYPE``/``WAYLAND_DISPLAY``, no explicit
    ``display``) it grabs through the ScreenCast portal instead, keeping the portal's
    restore token in ``state_dir``.
    """

    def __init__(
        self,
        display: str | None = None,
        monitors: str = "all",
        active_point: Callable[[str | None], tuple[int, int] | None] | None = None,
        monitor_list: Callable[[str], list[tuple[int, int, int, int, bool]] | None] = (
            randr_monitors
        ),
        state_dir: Path | None = None,
    ) -> None:
        self._monitor_list = monitor_list
        self._state_dir = state_dir
        self._portal: PortalGrabber | None = None
        self._display = display
        self._sct: mss.MSS | None = None
        self.monitors = monitors
        self._active_point: Callable[[str | None], tuple[int, int] | None] = (
            active_point if active_point is not None else active_window_centre
        )

    def region(self, sct: mss.MSS) -> Region:
        """What to grab now, for the ``monitors`` setting."""
        whole = sct.monitors[0]
        desktop = (whole["left"], whole["top"], whole["width"], whole["height"])
        if self.monitors == "all":
            return desktop
        screens: list[tuple[Region, bool]] | None = None
        if sys.platform.startswith("linux") or "bsd" in sys.platform:
            found = self._monitor_list(self._display or os.environ.get("DISPLAY", ""))
            if found:
                screens = [((m[0], m[1], m[2], m[3]), m[4]) for m in found]
        if screens is None:
            screens = [
                ((m["left"], m["top"], m["width"], m["height"]), bool(m.get("is_primary", i == 0)))
                for i, m in enumerate(sct.monitors[1:])
            ]
        point = self._active_point(self._display) if self.monitors == "active" else None
        return choose_region(desktop, screens, self.monitors, point)

    def _open(self) -> mss.MSS:
        if self._sct is None:
            problem = display_problem() if self._display is None else None
            if problem:
                raise CaptureError(
                    problem, "portal" if is_wayland_session(os.environ) else "no_display"
                )
            try:
                if self._display is not None:
                    self._sct = mss.MSS(display=self._display)
                else:
                    self._sct = mss.MSS()
            except Exception as exc:  # mss raises ScreenShotError, ctypes OSError...
                raise CaptureError(f"cannot open the screen: {_describe(exc)}") from exc
        return self._sct

    def grab(self) -> Grab:
        """Grab what ``monitors`` asks for, or raise :class:`CaptureError` with a reason."""
        if self._display is None and is_wayland_session(dict(os.environ)):
            return self._portal_grab()
        sct = self._open()
        try:
            left, top, width, height = self.region(sct)
            shot = sct.grab({"left": left, "top": top, "width": width, "height": height})
        except Exception as exc:
            # A display that went away leaves a broken handle: open afresh next time.
            self.close()
            raise CaptureError(f"screen capture failed: {_describe(exc)}") from exc
        return Grab(shot.raw, shot.width, shot.height, int(time.time() * 1000))

    def _portal_grab(self) -> Grab:
        if self._portal is None:
            problem = portal_problem()
            if problem:
                raise CaptureError(problem, "portal")
            from klasblik.agent.portal_capture import PortalGrabber

            self._portal = PortalGrabber(self._state_dir)
        return self._portal.grab()

    def pause(self) -> None:
        """Nobody watches: a Wayland portal stream stops (mss keeps nothing running)."""
        if self._portal is not None:
            self._portal.pause()

    def close(self) -> None:
        """Release the mss handles; the next grab opens new ones."""
        portal, self._portal = self._portal, None
        if portal is not None:
            portal.close()
        sct, self._sct = self._sct, None
        if sct is not None:
            try:
                sct.close()
            except Exception:
                pass


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """An encoded frame and when its pixels were grabbed; ``image.encoding`` is
    ``Encoding.TILES`` for a delta (changed tiles only), and ``key`` False then."""

    image: EncodedImage
    captured_at_ms: int
    key: bool = True


class CaptureWorker:
    """Runs grab → scale → encode in one dedicated thread that owns the grabber."""

    def __init__(self, grabber: Grabber | None = None) -> None:
        self._grabber: Grabber = grabber if grabber is not None else ScreenGrabber()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="klasblik-capture")

    def _capture(
        self,
        max_size: tuple[int, int],
        encoding: str,
        quality: int,
        detector: ChangeDetector,
        delta: DeltaEncoder | None = None,
        tiles: bool = False,
        screen_key: bool = False,
        whole_gap_s: float = 0.0,
    ) -> CapturedFrame | None:
        grab = self._grabber.grab()
        try:
            if delta is None:
                image = render_frame(
                    grab.raw, (grab.width, grab.height), max_size, encoding, quality, detector
                )
                return None if image is None else CapturedFrame(image, grab.captured_at_ms)
            if tiles:  # the picture made from the last one sent (agent/tiles.py)
                coded = delta.encode_grab(
                    grab.raw,
                    (grab.width, grab.height),
                    max_size,
                    encoding,
                    quality,
                    time.monotonic(),
                    screen_key=screen_key,
                    whole_gap_s=whole_gap_s,
                    detector=detector,
                )
            else:
                picture = render_picture(grab.raw, (grab.width, grab.height), max_size, detector)
                if picture is None:
                    return None
                coded = delta.encode(
                    picture,
                    encoding,
                    quality,
                    time.monotonic(),
                    tiles=False,
                    screen_key=screen_key,
                    whole_gap_s=whole_gap_s,
                )
        except (ValueError, OSError, MemoryError) as exc:
            # A grab Pillow cannot use (odd size, truncated buffer): a capture problem too.
            raise CaptureError(f"could not process the screen image: {_describe(exc)}") from exc
        if coded is None:
            return None
        encoded = EncodedImage(coded.data, coded.encoding, coded.width, coded.height)
        return CapturedFrame(encoded, grab.captured_at_ms, coded.key)

    async def capture(
        self,
        max_size: tuple[int, int],
        encoding: str,
        quality: int,
        detector: ChangeDetector,
        delta: DeltaEncoder | None = None,
        *,
        tiles: bool = False,
        screen_key: bool = False,
        whole_gap_s: float = 0.0,
    ) -> CapturedFrame | None:
        """A new frame, or None when the screen did not change; may raise CaptureError.

        With ``delta`` the frame is coded against the last one sent (``agent/tiles.py``):
        a delta when ``tiles`` (the server takes them), else always a whole picture;
        ``screen_key``: a key frame of screen content may be a palette PNG (close-ups);
        ``whole_gap_s``: see :meth:`DeltaEncoder.encode`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool,
            self._capture,
            max_size,
            encoding,
            quality,
            detector,
            delta,
            tiles,
            screen_key,
            whole_gap_s,
        )

    async def pause(self) -> None:
        """Nobody watches: let the grabber stop any stream it keeps running (Wayland)."""
        pause = getattr(self._grabber, "pause", None)
        if pause is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, pause)

    async def close(self) -> None:
        """Close the grabber in its own thread and stop the thread."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._grabber.close)
        finally:
            self._pool.shutdown(wait=False)
