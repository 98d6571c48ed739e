"""Wayland capture: the ScreenCast portal's PipeWire stream, read through GStreamer.

:class:`PortalGrabber` has the same face as the mss grabber (``grab()`` gives a
:class:`~klasblik.agent.capture.Grab` of BGRX pixels, ``close()`` lets go), so the rest of
the agent does not know which one it has. On the first grab it asks the portal for a
stream (``screencast.py``: the desktop asks the student once, the restore token spares
the question next time) and starts ``gst-launch-1.0`` (Debian/Ubuntu:
gstreamer1.0-tools, gstreamer1.0-pipewire, gstreamer1.0-plugins-base) with the portal's
PipeWire socket and a pipe for the frames handed down (``pass_fds``)::

    pipewiresrc fd=<socket> path=<node> ! videoconvert ! video/x-raw,format=BGRx
        ! fdsink fd=<pipe>

A thread reads the raw frames from the pipe and keeps only the latest; ``grab()`` copies it.
Every frame the desktop sends is read (compositors send one per change of the screen, up
to the refresh rate): ``videorate max-rate`` let all frames through in the measurements
here (bench/agent_wayland.py), so it is not in the pipeline.
The frame size comes from the caps that ``gst-launch-1.0 -v`` prints before the first
frame; when the size changes (the student changes the resolution) the pipeline is
started afresh. ``pause()`` (nobody watches) stops the pipeline and ends the portal
session: no stream runs while nobody looks.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from klasblik.agent.capture import CaptureError, Grab
from klasblik.agent.screencast import (
    PortalRefused,
    RestoreTokenStore,
    ScreenCastSession,
    open_screencast,
)

__all__ = ["PipeWireStream", "PortalGrabber", "gstreamer_problem"]

#: how long the first frame of a fresh stream may take
_FIRST_FRAME_S = 10.0
_CAPS = re.compile(
    rb"GstFdSink:[^ ]+\.GstPad:sink: caps = video/x-raw.*?width=\(int\)(\d+).*?height=\(int\)(\d+)"
)
#: the largest screen side read (8K and a margin); a larger caps size is refused
_MAX_SIDE = 16384
_NEEDED_ELEMENTS = ("pipewiresrc", "videoconvert", "fdsink")


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for system programs: a frozen agent's own library path removed."""
    child = dict(env)
    # PyInstaller points LD_LIBRARY_PATH at its bundle and keeps the original in *_ORIG.
    if "LD_LIBRARY_PATH_ORIG" in child:
        child["LD_LIBRARY_PATH"] = child.pop("LD_LIBRARY_PATH_ORIG")
    elif getattr(sys, "frozen", False):
        child.pop("LD_LIBRARY_PATH", None)
    return child


def gstreamer_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why the PipeWire stream cannot be read here (GStreamer missing), or None."""
    env = os.environ if env is None else env
    launch = shutil.which("gst-launch-1.0", path=env.get("PATH"))
    inspect = shutil.which("gst-inspect-1.0", path=env.get("PATH"))
    if launch is None or inspect is None:
        return (
            "Wayland session: gst-launch-1.0 is missing, so the portal's PipeWire stream "
            "cannot be read (install gstreamer1.0-tools, gstreamer1.0-pipewire and "
            "gstreamer1.0-plugins-base)"
        )
    for element in _NEEDED_ELEMENTS:
        found = subprocess.run(
            # the version check must be low: the PipeWire plugin has its own numbers (0.3)
            [inspect, "--exists", "--atleast-version=0.1.0", element],
            env=_child_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if found.returncode != 0:
            package = (
                "gstreamer1.0-pipewire" if element == "pipewiresrc" else "gstreamer1.0-plugins-base"
            )
            return (
                f"Wayland session: the GStreamer element {element} is missing (install {package})"
            )
    return None


class PipeWireStream:
    """One gst-launch-1.0 reading one portal stream; a thread keeps the latest frame."""

    def __init__(self, pipewire_fd: int, node_id: int, env: Mapping[str, str]) -> None:
        read_fd, write_fd = os.pipe()
        launch = shutil.which("gst-launch-1.0", path=env.get("PATH")) or "gst-launch-1.0"
        args = [
            launch, "-v", "pipewiresrc", f"fd={pipewire_fd}", f"path={node_id}",
            "!", "videoconvert", "!", "video/x-raw,format=BGRx",
            "!", "fdsink", f"fd={write_fd}", "sync=false",
        ]  # fmt: skip
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                # gst-launch-1.0 prints -v caps and errors on stdout: both are read as text
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=_child_env(env),
                pass_fds=(pipewire_fd, write_fd),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._frames = io.FileIO(read_fd, "r")
        self._lock = threading.Condition()
        self.size: tuple[int, int] | None = None
        self._latest: bytearray | None = None
        self._latest_at_ms = 0
        self.size_changed = False
        #: frames read from the pipe so far (the bench checks the rate with it)
        self.frames_read = 0
        self.error: str | None = None
        self._stderr_tail: list[str] = []
        self._caps_seen = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_caps, name="klasblik-gst-log", daemon=True),
            threading.Thread(target=self._read_frames, name="klasblik-gst-frames", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_caps(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = _CAPS.search(line)
            if found:
                size = (int(found.group(1)), int(found.group(2)))
                if not (0 < size[0] <= _MAX_SIDE and 0 < size[1] <= _MAX_SIDE):
                    with self._lock:
                        self.error = f"the PipeWire stream has an unusable size {size[0]}x{size[1]}"
                        self._lock.notify_all()
                    self._caps_seen.set()
                    return
                with self._lock:
                    if self.size is None:
                        self.size = size
                    elif size != self.size:
                        self.size_changed = True
                    self._lock.notify_all()
                self._caps_seen.set()
            elif line.strip() and not line.startswith(
                (b"/Gst", b"Setting", b"Pipeline", b"Redistribute", b"New clock")
            ):
                self._stderr_tail = [*self._stderr_tail, line.decode("utf-8", "replace").strip()][
                    -5:
                ]
        self._caps_seen.set()

    def _read_frames(self) -> None:
        try:
            self._caps_seen.wait()
            while True:
                with self._lock:
                    size = self.size
                if size is None:
                    break
                frame = bytearray(size[0] * size[1] * 4)
                view = memoryview(frame)
                got = 0
                while got < len(frame):
                    n = self._frames.readinto(view[got:])
                    if not n:
                        return
                    got += n
                with self._lock:
                    self._latest = frame
                    self.frames_read += 1
                    self._latest_at_ms = int(time.time() * 1000)
                    self._lock.notify_all()
        finally:
            with self._lock:
                code = self.proc.poll()
                if self.error is None:
                    tail = "; ".join(self._stderr_tail) or "no message"
                    self.error = (
                        f"the PipeWire stream ended (gst-launch-1.0 exit {code}: {tail[:200]})"
                        if code is not None
                        else "the PipeWire stream ended"
                    )
                self._lock.notify_all()

    def latest(self, wait_s: float) -> tuple[bytes, tuple[int, int], int]:
        """A copy of the latest frame, its size and when it came; waits for the first."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            while self._latest is None:
                if self.error is not None:
                    raise PortalRefused(self.error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PortalRefused(
                        f"no picture from the PipeWire stream within {wait_s:.0f} seconds"
                    )
                self._lock.wait(left)
            assert self.size is not None
            return bytes(self._latest), self.size, self._latest_at_ms

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and self.error is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The child has gone: both threads see the end of their pipe and finish.
        for thread in self._threads:
            thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._frames.close()
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()


class PortalGrabber:
    """Grabs the screen of a Wayland session through the ScreenCast portal and PipeWire."""

    def __init__(
        self,
        state_dir: Path | None,
        env: Mapping[str, str] | None = None,
        start_wait_s: float = 120.0,
    ) -> None:
        self._env = dict(os.environ) if env is None else dict(env)
        self.tokens = RestoreTokenStore(state_dir) if state_dir is not None else None
        self.start_wait_s = start_wait_s
        self.session: ScreenCastSession | None = None
        self._pipeline: PipeWireStream | None = None
        #: the student said no: not asked again until the next watch (``pause``)
        self._declined: str | None = None
        #: sessions started, and how many of them sent a stored restore token
        self.sessions_started = 0
        self.sessions_restored = 0

    def _start(self) -> PipeWireStream:
        if self._declined is not None:
            raise CaptureError(self._declined, "permission")
        problem = gstreamer_problem(self._env)
        if problem is not None:
            raise CaptureError(problem, "portal")
        address = self._env.get("DBUS_SESSION_BUS_ADDRESS", "")
        try:
            session = open_screencast(address, self.tokens, self.start_wait_s)
        except PortalRefused as exc:
            reason = f"Wayland session: {exc.reason}"
            if exc.declined:
                self._declined = reason
            raise CaptureError(reason, "permission" if exc.declined else "portal") from exc
        except Exception as exc:  # an answer of a shape no portal should give
            raise CaptureError(
                f"Wayland session: unexpected answer from the ScreenCast portal "
                f"({type(exc).__name__}: {str(exc)[:120]})",
                "portal",
            ) from exc
        self.session = session
        self.sessions_started += 1
        self.sessions_restored += int(session.used_restore_token)
        try:
            self._pipeline = PipeWireStream(session.pipewire_fd, session.node_id, self._env)
        except OSError as exc:
            self.close()
            raise CaptureError(
                f"Wayland session: cannot start gst-launch-1.0 ({exc})", "portal"
            ) from exc
        return self._pipeline

    def grab(self) -> Grab:
        """The latest picture of the portal's stream (starts it on first use)."""
        pipeline = self._pipeline
        if pipeline is not None and not pipeline.alive:
            # The stream ended without us: most often the student stopped the sharing in
            # the desktop's own indicator. Not restarted behind their back (a restore
            # token would do it silently): asked again at the next watch.
            reason = pipeline.error or "the PipeWire stream ended"
            self._stop_pipeline()
            self._declined = f"Wayland session: {reason}; shared again from the next watch on"
            raise CaptureError(self._declined, "permission")
        if pipeline is not None and pipeline.size_changed:
            self._stop_pipeline()  # a new screen size: a fresh pipeline reads the new caps
            pipeline = None
        fresh = pipeline is None
        if pipeline is None:
            pipeline = self._start()
        try:
            raw, size, _arrived_ms = pipeline.latest(_FIRST_FRAME_S if fresh else 1.0)
        except PortalRefused as exc:
            self.close()
            raise CaptureError(f"Wayland session: {exc.reason}", "portal") from exc
        # The desktop sends a frame at each change, so the latest one is the screen as it
        # is now: stamped with the time of the grab, as mss grabs are.
        return Grab(raw, size[0], size[1], int(time.time() * 1000))

    def _stop_pipeline(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.stop()
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def pause(self) -> None:
        """Nobody watches: stop the stream and end the portal session; ask anew next time."""
        self._stop_pipeline()
        self._declined = None

    def close(self) -> None:
        """Stop the stream and end the portal session."""
        self._stop_pipeline()
