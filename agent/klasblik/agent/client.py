"""The agent's side of the wire protocol: one connection at a time, reconnecting forever.

``AgentClient.run()`` connects, says ``hello``, follows ``watch`` messages (frames, tab
title, heartbeats) and, when the connection ends for any reason, waits (backoff with
jitter; an hour after 4003) and connects again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from klasblik.agent.activewindow import active_window_title
from klasblik.agent.capture import CaptureError, CaptureWorker
from klasblik.agent.device import AGENT_NAME, os_description
from klasblik.agent.pacing import Backoff, ChangeDetector, FramePacer, ReasonFilter
from klasblik.agent.settings import AgentSettings
from klasblik.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    CloseCode,
    FrameHeader,
    FrameKind,
    ProtocolError,
    decode_message,
    encode_frame,
    encode_message,
)

__all__ = ["OFF", "AgentClient", "Watch", "choose_encoding", "tabs_message"]

log = logging.getLogger("klasblik.agent")

MAX_TITLE_CHARS = 512


@dataclass(frozen=True, slots=True)
class Watch:
    """What the server asked for in its last ``watch`` message."""

    mode: str = "off"
    width: int = 400
    height: int = 225
    interval_ms: int = 2000
    quality: int = 55
    encoding: str = "jpeg"
    tabs: str = "none"
    viewers: tuple[str, ...] = ()

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> Watch:
        return cls(
            mode=msg["mode"],
            width=max(1, msg["width"]),
            height=max(1, msg["height"]),
            interval_ms=max(0, msg["interval_ms"]),
            quality=min(100, max(1, msg["quality"])),
            encoding=msg["encoding"],
            tabs=msg["tabs"],
            viewers=tuple(msg["viewers"]),
        )


OFF = Watch()


def choose_encoding(setting: str, watch: Watch) -> str:
    """The encoding to use: the setting, or with ``server`` what the watch asks for."""
    return watch.encoding if setting == "server" else setting


def tabs_message(title: str) -> dict[str, Any]:
    """The ``tabs`` message for a desktop: the active window's title as one tab."""
    return {
        "type": "tabs",
        "tabs": [{"title": title[:MAX_TITLE_CHARS], "url": "", "active": True, "window": 1}],
    }


@dataclass
class _Session:
    """State of one connection."""

    ws: ClientConnection
    welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    watch_changed: asyncio.Event = field(default_factory=asyncio.Event)
    watch: Watch = OFF
    watch_generation: int = 0
    heartbeat_s: float = 20.0
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    server_error: tuple[str, str] | None = None


class AgentClient:
    """Connects to the server and serves its ``watch`` requests until stopped."""

    def __init__(
        self,
        settings: AgentSettings,
        capture: CaptureWorker | None = None,
        window_title: Callable[[], str | None] = active_window_title,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self._capture = capture if capture is not None else CaptureWorker()
        self._window_title = window_title
        self.backoff = backoff if backoff is not None else Backoff()
        self._frame_seq = 0
        self._heartbeat_seq = 0
        self._capture_reasons = ReasonFilter()
        self.frames_sent = 0
        self.session: _Session | None = None

    # ---------------------------------------------------------------- the outer loop

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, serve, reconnect with backoff; return only when ``stop`` is set."""
        stop = stop if stop is not None else asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    close_code = await self._connect_once(stop)
                except Exception:  # a fault of ours must not end the agent: log, retry
                    log.exception("connection attempt failed unexpectedly")
                    close_code = None
                if stop.is_set():
                    break
                if close_code == CloseCode.FORBIDDEN:
                    delay = self.backoff.forbidden_delay()
                    log.error(
                        "server refused this account as staff (close 4003): staff screens "
                        "are never viewed; trying again in %.0f minutes",
                        delay / 60,
                    )
                else:
                    delay = self.backoff.next_delay()
                    log.info("reconnecting in %.1f s", delay)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            await self._capture.close()

    async def _connect_once(self, stop: asyncio.Event) -> int | None:
        """One connection from open to close; returns the close code (None: no connection)."""
        url = self.settings.server
        try:
            ws = await websockets.connect(
                url, open_timeout=15, max_size=1024 * 1024, compression=None
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            log.warning("cannot connect to %s: %s", url, exc or type(exc).__name__)
            return None
        session = _Session(ws)
        self.session = session
        self._capture_reasons.clear()  # a new connection hears about a lasting problem again
        log.info("connected to %s", url)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await ws.send(encode_message(self._hello(), "agent"))
            tasks = [
                asyncio.create_task(self._receive(session), name="receive"),
                asyncio.create_task(self._heartbeats(session), name="heartbeat"),
                asyncio.create_task(self._frames(session), name="frames"),
            ]
            stopper = asyncio.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done:
                if task is stopper or task.cancelled():
                    continue
                failure = task.exception()
                if failure is not None and not isinstance(failure, ConnectionClosed):
                    log.error(
                        "agent task %s failed; reconnecting", task.get_name(), exc_info=failure
                    )
        except ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
            self.session = None
        code = ws.close_code
        reason = ws.close_reason or ""
        if session.server_error is None:
            log.warning("connection closed (code %s%s)", code, f": {reason}" if reason else "")
        else:
            err_code, message = session.server_error
            log.warning(
                "connection closed by the server (code %s) after error %s: %s",
                code,
                err_code,
                message,
            )
        if code == CloseCode.REPLACED:
            # The same student connected from elsewhere: keep backing off (no reset), so two
            # devices of one account do not take the connection from each other every second.
            log.warning("replaced by a newer connection of the same account (another device?)")
        elif session.welcomed.is_set():
            self.backoff.reset()
        return code

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "token": self.settings.token,
            "account": self.settings.account,
            "device": {
                "id": self.settings.device_id,
                "kind": "desktop",
                "os": os_description(),
                "agent": AGENT_NAME,
            },
        }

    # ---------------------------------------------------------------- receiving

    async def _receive(self, session: _Session) -> None:
        async for data in session.ws:
            if isinstance(data, bytes):
                log.warning("ignoring a binary message from the server")
                continue
            try:
                msg = decode_message(data, "server_agent")
            except ProtocolError as exc:
                log.warning("ignoring a bad message from the server (%s): %s", exc.code, exc)
                continue
            self._handle(session, msg)

    def _handle(self, session: _Session, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "welcome":
            session.heartbeat_s = max(1.0, float(msg["heartbeat_s"]))
            session.max_frame_bytes = msg["max_frame_bytes"]
            session.welcomed.set()
            log.info("welcomed as %s (session %s)", msg["display_name"], msg["session"])
        elif kind == "watch":
            watch = Watch.from_message(msg)
            if watch != session.watch:
                log.info(
                    "watch: mode %s, %dx%d every %d ms, tabs %s, viewers %s",
                    watch.mode,
                    watch.width,
                    watch.height,
                    watch.interval_ms,
                    watch.tabs,
                    ", ".join(watch.viewers) or "none",
                )
            session.watch = watch
            session.watch_generation += 1
            session.watch_changed.set()
        elif kind == "error":
            error = msg["error"]
            code = str(error.get("code", "?"))
            message = str(error.get("message", ""))
            session.server_error = (code, message)
            log.error("server error %s: %s", code, message)

    # ---------------------------------------------------------------- sending

    async def _heartbeats(self, session: _Session) -> None:
        await session.welcomed.wait()
        while True:
            await asyncio.sleep(session.heartbeat_s)
            self._heartbeat_seq += 1
            await session.ws.send(
                encode_message({"type": "heartbeat", "seq": self._heartbeat_seq}, "agent")
            )

    async def _wait_watch_change(
        self, session: _Session, generation: int, timeout: float | None
    ) -> None:
        """Sleep up to ``timeout`` seconds; return early once a newer ``watch`` is there."""
        if session.watch_generation != generation or (timeout is not None and timeout <= 0):
            return
        session.watch_changed.clear()
        try:
            await asyncio.wait_for(session.watch_changed.wait(), timeout=timeout)
        except TimeoutError:
            pass

    async def _frames(self, session: _Session) -> None:
        """Capture and send frames and the window title while the mode is not off."""
        await session.welcomed.wait()
        detector = ChangeDetector()
        pacer = FramePacer(0)
        last_title: str | None = None
        generation = -1
        while True:
            watch = session.watch
            if session.watch_generation != generation:
                generation = session.watch_generation
                # A new request: the next frame and title go out even if unchanged.
                detector.reset()
                last_title = None
                pacer = FramePacer(watch.interval_ms, pacer.last_sent)
            if watch.mode == "off":
                await self._wait_watch_change(session, generation, None)
                continue
            wait = pacer.wait_s(time.monotonic())
            if wait > 0:
                await self._wait_watch_change(session, generation, wait)
                continue
            retry = await self._capture_and_send(session, watch, generation, detector, pacer)
            if session.watch_generation != generation:
                continue
            if watch.tabs != "none":
                title = await asyncio.to_thread(self._window_title)
                if session.watch_generation != generation or session.watch.mode == "off":
                    continue
                if title is not None and title != last_title:
                    await session.ws.send(encode_message(tabs_message(title), "agent"))
                    last_title = title
            if retry:
                await self._wait_watch_change(session, generation, self.settings.capture_retry_s)
            else:
                # Nothing new: look again after one interval (the pacer holds the rate).
                pacer.mark_sent(time.monotonic())

    async def _capture_and_send(
        self,
        session: _Session,
        watch: Watch,
        generation: int,
        detector: ChangeDetector,
        pacer: FramePacer,
    ) -> bool:
        """One capture; returns True when capture failed and should wait to retry."""
        encoding = choose_encoding(self.settings.encoding, watch)
        try:
            frame = await self._capture.capture(
                (watch.width, watch.height), encoding, watch.quality, detector
            )
        except CaptureError as exc:
            if self._capture_reasons.is_new(exc.reason):
                log.warning("cannot capture the screen: %s", exc.reason)
                await session.ws.send(
                    encode_message({"type": "capture_error", "reason": exc.reason[:512]}, "agent")
                )
            return True
        self._capture_reasons.clear()
        # "off" (or a new request) while the grab ran: drop it, send nothing.
        if frame is None or session.watch_generation != generation:
            return False
        self._frame_seq = (self._frame_seq + 1) & 0xFFFFFFFF
        image = frame.image
        kind = FrameKind.FOCUS if watch.mode == "focus" else FrameKind.GRID
        header = FrameHeader(
            kind, image.encoding, image.width, image.height, self._frame_seq, frame.captured_at_ms
        )
        data = encode_frame(header, image.data)
        if len(data) > session.max_frame_bytes:
            log.warning(
                "frame of %d bytes is over the server's limit of %d; not sent",
                len(data),
                session.max_frame_bytes,
            )
            return False
        await session.ws.send(data)
        detector.commit()
        pacer.mark_sent(time.monotonic())
        self.frames_sent += 1
        return False
