"""Screen capture of the primary monitor with mss, and the thread it runs in.

mss objects belong to the thread that made them (GDI and Xlib handles), so one worker
thread owns the grabber; the asyncio side awaits it and heartbeats keep flowing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import mss

from klasblik.agent.imaging import EncodedImage, render_frame
from klasblik.agent.pacing import ChangeDetector
from klasblik.protocol.errors import KlasblikError

__all__ = [
    "CaptureError",
    "CaptureWorker",
    "CapturedFrame",
    "Grab",
    "Grabber",
    "ScreenGrabber",
    "display_problem",
]


class CaptureError(KlasblikError):
    """The screen cannot be captured now; ``reason`` is shown to the teacher."""

    code = "capture_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        if env.get("DISPLAY"):
            return None
        if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
            return (
                "Wayland session without X: screen capture needs an X11 session (DISPLAY not set)"
            )
        return "no display to capture (DISPLAY not set)"
    return None


class ScreenGrabber:
    """Grabs the primary monitor with ``mss.MSS``; makes its mss object lazily."""

    def __init__(self, display: str | None = None) -> None:
        self._display = display
        self._sct: mss.MSS | None = None

    def _open(self) -> mss.MSS:
        if self._sct is None:
            problem = display_problem() if self._display is None else None
            if problem:
                raise CaptureError(problem)
            try:
                if self._display is not None:
                    self._sct = mss.MSS(display=self._display)
                else:
                    self._sct = mss.MSS()
            except Exception as exc:  # mss raises ScreenShotError, ctypes OSError...
                raise CaptureError(f"cannot open the screen: {_describe(exc)}") from exc
        return self._sct

    def grab(self) -> Grab:
        """Grab the primary monitor, or raise :class:`CaptureError` with a reason."""
        sct = self._open()
        try:
            shot = sct.grab(sct.primary_monitor)
        except Exception as exc:
            # A display that went away leaves a broken handle: open afresh next time.
            self.close()
            raise CaptureError(f"screen capture failed: {_describe(exc)}") from exc
        return Grab(shot.raw, shot.width, shot.height, int(time.time() * 1000))

    def close(self) -> None:
        """Release the mss handles; the next grab opens new ones."""
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
    """An encoded frame and when its pixels were grabbed."""

    image: EncodedImage
    captured_at_ms: int


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
    ) -> CapturedFrame | None:
        grab = self._grabber.grab()
        try:
            image = render_frame(
                grab.raw, (grab.width, grab.height), max_size, encoding, quality, detector
            )
        except (ValueError, OSError, MemoryError) as exc:
            # A grab Pillow cannot use (odd size, truncated buffer): a capture problem too.
            raise CaptureError(f"could not process the screen image: {_describe(exc)}") from exc
        return None if image is None else CapturedFrame(image, grab.captured_at_ms)

    async def capture(
        self,
        max_size: tuple[int, int],
        encoding: str,
        quality: int,
        detector: ChangeDetector,
    ) -> CapturedFrame | None:
        """A new frame, or None when the screen did not change; may raise CaptureError."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self._capture, max_size, encoding, quality, detector
        )

    async def close(self) -> None:
        """Close the grabber in its own thread and stop the thread."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._grabber.close)
        finally:
            self._pool.shutdown(wait=False)
