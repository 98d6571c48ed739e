"""Wayland capture through the real ScreenCast portal, PipeWire and GStreamer.

One private desktop session per module (``wayland_stack.py``): dbus-daemon, pipewire,
wireplumber, the real xdg-desktop-portal frontend and a stand-in backend whose one
"monitor" is a real PipeWire video node of a known colour. The frontend makes, stores
and checks the restore tokens itself; the backend logs what it was asked. A second
session runs headless sway with the real xdg-desktop-portal-wlr.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from klasblik.agent.capture import CaptureError, CaptureWorker, ScreenGrabber
from klasblik.agent.client import AgentClient
from klasblik.agent.indicator import WatchIndicator
from klasblik.agent.portal_capture import PortalGrabber, gstreamer_problem
from klasblik.agent.screencast import ScreenCastSession
from tests.agent.agent_standin_server import StandInServer, standin_server
from tests.agent.agent_xscreen import Xvfb
from tests.agent.test_agent_client import Running, _settings
from tests.agent.wayland_stack import COLOUR, SIZE, DesktopSession, desktop_session

pytestmark = pytest.mark.xvfb

TOKEN_FILE = "wayland-restore-token"


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DesktopSession]:
    with desktop_session(tmp_path_factory.mktemp("wayland"), "standin") as session:
        yield session


def _pixel(raw: bytes, width: int, x: int, y: int) -> tuple[int, int, int]:
    i = (y * width + x) * 4
    b, g, r = raw[i], raw[i + 1], raw[i + 2]
    return (r, g, b)


def _session(grabber: PortalGrabber) -> ScreenCastSession | None:
    return grabber.session


def _calls(desktop: DesktopSession, name: str) -> list[dict[str, Any]]:
    return [c for c in desktop.calls() if c["call"] == name]


def test_a_frame_from_the_portal_has_the_screen_content(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    """A grab through portal + PipeWire gives the screen's size and its pixels (BGRX)."""
    grabber = PortalGrabber(tmp_path, env=desktop.env)
    try:
        grab = grabber.grab()
        assert (grab.width, grab.height) == SIZE
        assert len(grab.raw) == SIZE[0] * SIZE[1] * 4
        for x, y in ((0, 0), (SIZE[0] // 2, SIZE[1] // 2), (SIZE[0] - 1, SIZE[1] - 1)):
            assert _pixel(bytes(grab.raw), grab.width, x, y) == COLOUR
        assert grabber.session is not None and grabber.session.node_id > 0
    finally:
        grabber.close()


def test_the_restore_token_is_kept_and_used_on_the_next_session(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    """persist_mode 2 is asked; the token Start gives is stored (0600) and sent next time,
    where the frontend hands the backend its restore data (a real backend: no dialog)."""
    before = len(_calls(desktop, "SelectSources"))
    grabber = PortalGrabber(tmp_path, env=desktop.env)
    try:
        grabber.grab()
        token_path = tmp_path / TOKEN_FILE
        assert len(token_path.read_text()) >= 16
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        grabber.pause()  # nobody watches: the session ends
        assert _session(grabber) is None
        grabber.grab()
        # The spec lets every Start hand out a new token; what was handed out is kept
        # (xdg-desktop-portal 1.16 gives the same one back for persist_mode 2).
        session = _session(grabber)
        assert session is not None
        assert token_path.read_text() == session.restore_token
        assert (grabber.sessions_started, grabber.sessions_restored) == (2, 1)
    finally:
        grabber.close()
    selects = _calls(desktop, "SelectSources")[before:]
    assert len(selects) == 2
    for call in selects:
        assert call["options"]["persist_mode"] == 2
        assert call["options"]["types"] == 1
    assert "restore_data" not in selects[0]["options"]
    assert selects[1]["options"]["restore_data"] == ["klasblik-standin", 1, "monitor-0"]


def test_a_stale_or_odd_stored_token_is_not_a_failure(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    """A token the portal no longer knows just means asking again; junk is never sent."""
    (tmp_path / TOKEN_FILE).write_text("0f0f0f0f-dead-beef-0000-000000000000")
    grabber = PortalGrabber(tmp_path, env=desktop.env)
    try:
        assert grabber.grab().width == SIZE[0]
        assert grabber.sessions_restored == 1
        assert "restore_data" not in _calls(desktop, "SelectSources")[-1]["options"]
    finally:
        grabber.close()
    (tmp_path / TOKEN_FILE).write_text("bad\ntoken\x00" * 40)
    grabber = PortalGrabber(tmp_path, env=desktop.env)
    try:
        grabber.grab()
        assert grabber.sessions_restored == 0
    finally:
        grabber.close()


def test_declined_is_a_capture_error_and_not_asked_again_until_the_next_watch(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    """The student says no: a clear reason, no dialog at every grab, asked again later."""
    answer = desktop.log.with_name("answer")
    answer.write_text("decline")
    grabber = PortalGrabber(tmp_path, env=desktop.env)
    try:
        starts = len(_calls(desktop, "Start"))
        with pytest.raises(CaptureError, match="declined screen sharing") as first:
            grabber.grab()
        assert first.value.cause == "permission"  # the teacher's words: not allowed
        with pytest.raises(CaptureError, match="declined screen sharing"):
            grabber.grab()
        assert len(_calls(desktop, "Start")) == starts + 1
        assert not (tmp_path / TOKEN_FILE).exists()
        answer.unlink()
        grabber.pause()  # the watch ended; the next one asks again
        assert grabber.grab().width == SIZE[0]
    finally:
        answer.unlink(missing_ok=True)
        grabber.close()


def test_a_stream_that_ends_is_not_restarted_behind_the_students_back(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    """The stream ends while watched (the student stopped sharing): a capture_error, and no
    silent new session with the restore token until the next watch."""
    grabber = PortalGrabber(tmp_path, env=desktop.env)
    try:
        grabber.grab()
        pipeline = grabber._pipeline
        assert pipeline is not None
        pipeline.proc.kill()
        pipeline.proc.wait()
        starts = len(_calls(desktop, "Start"))
        deadline = time.monotonic() + 10
        while pipeline.alive and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(CaptureError, match="the PipeWire stream ended"):
            grabber.grab()
        with pytest.raises(CaptureError, match="shared again from the next watch on"):
            grabber.grab()
        assert len(_calls(desktop, "Start")) == starts
        grabber.pause()
        assert grabber.grab().width == SIZE[0]
    finally:
        grabber.close()


def test_a_start_without_a_stream_is_a_capture_error(
    desktop: DesktopSession, tmp_path: Path
) -> None:
    """A portal that starts but names no stream: a specific reason, nothing read."""
    answer = desktop.log.with_name("answer")
    answer.write_text("no-streams")
    grabber = PortalGrabber(tmp_path, env=desktop.env)
    try:
        with pytest.raises(CaptureError, match="started without a stream"):
            grabber.grab()
        assert grabber.session is None
    finally:
        answer.unlink(missing_ok=True)
        grabber.close()


def test_the_screen_grabber_chooses_the_portal_in_a_wayland_session(
    desktop: DesktopSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ScreenGrabber (the agent's one grabber) goes through the portal when the session
    says Wayland, even with an Xwayland DISPLAY."""
    for key, value in desktop.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DISPLAY", ":99")  # Xwayland's: not to be used for capture
    grabber = ScreenGrabber(state_dir=tmp_path)
    try:
        grab = grabber.grab()
        assert (grab.width, grab.height) == SIZE
        assert (tmp_path / TOKEN_FILE).exists()
    finally:
        grabber.close()


def test_missing_gstreamer_is_a_specific_reason(tmp_path: Path) -> None:
    """Without gst-launch-1.0 the reason names the packages to install."""
    empty = tmp_path / "bin"
    empty.mkdir()
    reason = gstreamer_problem({"PATH": str(empty)})
    assert reason is not None and "gstreamer1.0-pipewire" in reason
    assert gstreamer_problem() is None  # this machine has them (scripts/lib/system-packages)


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    async with standin_server() as s:
        yield s


async def test_the_agent_streams_the_wayland_screen_to_the_server(
    server: StandInServer,
    desktop: DesktopSession,
    tmp_path: Path,
    xvfb: Xvfb,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end: watch → portal → PipeWire → a frame at the server; off → the portal
    session ends (nothing streams while nobody watches)."""
    for key, value in desktop.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DISPLAY", raising=False)
    grabber = ScreenGrabber(state_dir=tmp_path)
    agent = Running(
        AgentClient(
            _settings(server, tmp_path),
            CaptureWorker(grabber),
            indicator=WatchIndicator("nl", "x11", display=xvfb.display),
        )
    )
    try:
        conn = await server.next_connection()
        await conn.welcome()
        closes = len(_calls(desktop, "Session.Close"))
        await conn.watch("grid", interval_ms=200)
        await conn.wait_for(lambda: len(conn.frames) >= 1)
        assert conn.of_type("capture_error") == []
        await conn.watch("off")
        await conn.wait_for(lambda: len(_calls(desktop, "Session.Close")) > closes)
        assert (tmp_path / TOKEN_FILE).exists()
    finally:
        await agent.finish()


@pytest.fixture(scope="module")
def sway_desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DesktopSession]:
    with desktop_session(tmp_path_factory.mktemp("sway"), "wlr") as session:
        yield session


def test_sway_with_xdg_desktop_portal_wlr(sway_desktop: DesktopSession, tmp_path: Path) -> None:
    """The real wlroots backend gets persist_mode 2 from the agent. Without a DRM render
    node (/dev/dri) xdg-desktop-portal-wlr 0.7 cannot start a cast (it wants a DMA-BUF
    format from screencopy, which the pixman renderer never offers: upstream issue
    emersion/xdg-desktop-portal-wlr#289), and the teacher is told exactly that Start
    failed; with one, the frame has sway's background colour."""
    grabber = PortalGrabber(tmp_path, env=sway_desktop.env)
    try:
        if os.path.exists("/dev/dri"):
            grab = grabber.grab()
            assert _pixel(bytes(grab.raw), grab.width, 10, 10) == COLOUR
        else:
            with pytest.raises(CaptureError, match=r"ended Start without a stream \(code 2\)"):
                grabber.grab()
            assert "unable to receive a valid format from wlr_screencopy" in sway_desktop.logs(
                "xdpw"
            )
    finally:
        grabber.close()
    assert "option persist_mode:2" in sway_desktop.logs("xdpw")


def test_a_stream_size_beyond_any_screen_is_refused(tmp_path: Path) -> None:
    """Caps of an absurd size (whoever produced them) are not allocated: a clear reason."""
    from klasblik.agent.portal_capture import PipeWireStream
    from klasblik.agent.screencast import PortalRefused

    fake = tmp_path / "bin"
    fake.mkdir()
    launcher = fake / "gst-launch-1.0"
    launcher.write_text(
        "#!/bin/sh\n"
        "echo '/GstPipeline:pipeline0/GstFdSink:fdsink0.GstPad:sink: caps = video/x-raw, "
        "format=(string)BGRx, width=(int)99999, height=(int)99999'\n"
        "exec sleep 30\n"
    )
    launcher.chmod(0o755)
    read_fd, write_fd = os.pipe()
    stream = PipeWireStream(read_fd, 42, {"PATH": f"{fake}:/usr/bin:/bin"})
    try:
        with pytest.raises(PortalRefused, match="unusable size 99999x99999"):
            stream.latest(10)
        assert not stream.alive
    finally:
        stream.stop()
        os.close(read_fd)
        os.close(write_fd)
