"""The agent's side of the wire protocol: one connection at a time, reconnecting forever.

``AgentClient.run()`` connects, says ``hello``, follows ``watch`` messages (frames, tab
title, heartbeats) and, when the connection ends for any reason, waits (backoff with
jitter; an hour after 4003) and connects again.

This is the asyncio shell around :class:`klasblik.protocol.session.AgentSession`, which
holds the protocol state and makes the protocol's decisions (what a server message means
and whether it is allowed now, what goes out, how long to wait before reconnecting). The
shell does the socket, the timers, the capture and the logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from klasblik.agent.activewindow import active_window_title
from klasblik.agent.capture import CaptureError, CaptureWorker, ScreenGrabber
from klasblik.agent.device import AGENT_NAME, os_description
from klasblik.agent.identity import DeviceKey, TokenSource
from klasblik.agent.indicator import WatchIndicator
from klasblik.agent.pacing import Backoff, ChangeDetector, FramePacer, ReasonFilter
from klasblik.agent.private import PrivateWatch, is_private_title
from klasblik.agent.settings import AgentSettings
from klasblik.agent.tiles import GRID_WHOLE_GAP_S, DeltaEncoder
from klasblik.protocol import ProtocolError
from klasblik.protocol.session import (
    WATCH_OFF,
    AgentSession,
    ChallengeReceived,
    Device,
    Event,
    Identity,
    Watch,
    WatchReceived,
    WelcomeReceived,
    tabs_message,
)

__all__ = ["OFF", "AgentClient", "Watch", "choose_encoding", "tabs_message"]

log = logging.getLogger("klasblik.agent")

#: The watch in force before the server has said anything.
OFF = WATCH_OFF


def choose_encoding(setting: str, watch: Watch) -> str:
    """The encoding to use: the setting, or with ``server`` what the watch asks for."""
    return watch.encoding if setting == "server" else setting


@dataclass
class _Session:
    """The asyncio side of one connection: its socket and the events its tasks wait on."""

    ws: ClientConnection
    protocol: AgentSession
    welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    watch_changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def watch(self) -> Watch:
        return self.protocol.watch

    @property
    def watch_generation(self) -> int:
        return self.protocol.watch_generation


def _token_source(settings: AgentSettings) -> TokenSource | None:
    if not settings.m365_client_id:
        return None
    authority = settings.m365_authority or (
        f"https://login.microsoftonline.com/{settings.m365_tenant_id}"
    )
    scope = settings.m365_scope or f"api://{settings.m365_client_id}/Agent.Connect"
    return TokenSource(settings.m365_client_id, authority, [scope])


class AgentClient:
    """Connects to the server and serves its ``watch`` requests until stopped."""

    def __init__(
        self,
        settings: AgentSettings,
        capture: CaptureWorker | None = None,
        window_title: Callable[[], str | None] = active_window_title,
        backoff: Backoff | None = None,
        indicator: WatchIndicator | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        self.settings = settings
        #: the identity proof's source (None: the settings name no app registration)
        self.tokens = tokens if tokens is not None else _token_source(settings)
        self.device_key = (
            DeviceKey.load_or_create(settings.state_dir) if settings.device_key else None
        )
        self._capture = (
            capture
            if capture is not None
            else CaptureWorker(
                ScreenGrabber(monitors=settings.monitors, state_dir=settings.state_dir)
            )
        )
        #: the visible sign on screen while a teacher watches; no capture without it
        self.indicator = (
            indicator
            if indicator is not None
            else WatchIndicator(settings.language, settings.indicator)
        )
        self._window_title = window_title
        self.protocol = AgentSession(backoff)
        self._capture_reasons = ReasonFilter()
        self._private = PrivateWatch()
        self.frames_sent = 0
        self.session: _Session | None = None

    @property
    def backoff(self) -> Backoff:
        """The reconnect backoff (the session's)."""
        return self.protocol.backoff

    # ---------------------------------------------------------------- the outer loop

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, serve, reconnect with backoff; return only when ``stop`` is set."""
        stop = stop if stop is not None else asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    await self._connect_once(stop)
                except Exception:  # a fault of ours must not end the agent: log, retry
                    log.exception("connection attempt failed unexpectedly")
                    self.protocol.connection_failed()
                if stop.is_set():
                    break
                wait = self.protocol.reconnect()
                if wait.forbidden:
                    log.error(
                        "server refused this account as staff (close 4003): staff screens "
                        "are never viewed; trying again in %.0f minutes",
                        wait.delay_s / 60,
                    )
                else:
                    log.info("reconnecting in %.1f s", wait.delay_s)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait.delay_s):
                        await stop.wait()
        finally:
            await self.indicator.hide()
            await self._capture.close()

    async def _connect_once(self, stop: asyncio.Event) -> None:
        """One connection from open to close; the session records how it ended."""
        url = self.settings.server
        try:
            ws = await websockets.connect(
                url, open_timeout=15, max_size=1024 * 1024, compression=None
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            log.warning("cannot connect to %s: %s", url, exc or type(exc).__name__)
            self.protocol.connection_failed()
            return
        session = _Session(ws, self.protocol)
        self.session = session
        self._capture_reasons.clear()  # a new connection hears about a lasting problem again
        self._private.reset()  # and about a private window again
        log.info("connected to %s", url)
        tasks: list[asyncio.Task[Any]] = []
        try:
            settings = self.settings
            identity = await self._identity()
            await ws.send(
                self.protocol.hello(
                    settings.token, settings.account, self._device(), identity, tiles=True
                )
            )
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
            await self.indicator.hide()  # nobody can watch without a connection
        code = ws.close_code
        reason = ws.close_reason or ""
        closed = self.protocol.connection_closed(code)
        if closed.error is None:
            log.warning("connection closed (code %s%s)", code, f": {reason}" if reason else "")
        else:
            log.warning(
                "connection closed by the server (code %s) after error %s: %s",
                code,
                closed.error.code,
                closed.error.message,
            )
        if closed.replaced:
            # The backoff was not reset (see AgentSession.connection_closed).
            log.warning("replaced by a newer connection of the same account (another device?)")

    def _device(self) -> Device:
        key = self.device_key.public_key if self.device_key is not None else None
        return Device(self.settings.device_id, "desktop", os_description(), AGENT_NAME, key)

    async def _identity(self) -> Identity | None:
        """A fresh identity proof for this hello, or None (logged: the policy decides)."""
        if self.tokens is None:
            return None
        try:
            identity = await asyncio.to_thread(self.tokens.acquire, self.settings.account)
        except Exception:  # the sign-in authority unreachable, a broker fault: no proof
            log.exception("could not get an identity token; connecting without one")
            return None
        if identity is None:
            log.warning("no identity token: %s", self.tokens.last_problem)
        return identity

    # ---------------------------------------------------------------- receiving

    async def _receive(self, session: _Session) -> None:
        async for data in session.ws:
            try:
                event = self.protocol.receive(data)
            except ProtocolError as exc:
                log.warning("ignoring a bad message from the server (%s): %s", exc.code, exc)
                continue
            if isinstance(event, ChallengeReceived):
                if self.device_key is None:
                    log.error("the server challenged a device key this agent does not have")
                    continue
                signature = self.device_key.sign(event.nonce, self.settings.device_id)
                await session.ws.send(self.protocol.proof(event.nonce, signature))
                continue
            self._handle(session, event)

    def _handle(self, session: _Session, event: Event) -> None:
        if isinstance(event, WelcomeReceived):
            welcome = event.welcome
            session.welcomed.set()
            log.info("welcomed as %s (session %s)", welcome.display_name, welcome.session)
        elif isinstance(event, WatchReceived):
            watch = event.watch
            if event.changed:
                log.info(
                    "watch: mode %s, %dx%d every %d ms, tabs %s, viewers %s",
                    watch.mode,
                    watch.width,
                    watch.height,
                    watch.interval_ms,
                    watch.tabs,
                    ", ".join(watch.viewers) or "none",
                )
            session.watch_changed.set()
        elif isinstance(event, ChallengeReceived):  # answered in _receive
            pass
        else:
            log.error("server error %s: %s", event.code, event.message)

    # ---------------------------------------------------------------- sending

    async def _heartbeats(self, session: _Session) -> None:
        await session.welcomed.wait()
        while True:
            await asyncio.sleep(self.protocol.heartbeat_s)
            await session.ws.send(self.protocol.heartbeat())

    async def _wait_watch_change(
        self, session: _Session, generation: int, timeout: float | None
    ) -> None:
        """Sleep up to ``timeout`` seconds; return early once a newer ``watch`` is there."""
        if session.watch_generation != generation or (timeout is not None and timeout <= 0):
            return
        session.watch_changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await session.watch_changed.wait()

    async def _frames(self, session: _Session) -> None:
        """Capture and send frames and the window title while the mode is not off."""
        await session.welcomed.wait()
        detector = ChangeDetector()
        delta = DeltaEncoder()  # the last picture sent, for frames of changed tiles only
        pacer = FramePacer(0)
        generation = -1
        while True:
            watch = session.watch
            if session.watch_generation != generation:
                generation = session.watch_generation
                # A new request: the next frame goes out even if unchanged (and the next
                # title: the session forgets the last one at each watch).
                # A new watch (a new viewer raises its key): a whole picture first.
                detector.reset()
                delta.reset()
                pacer = FramePacer(watch.interval_ms, pacer.last_sent)
            if watch.mode == "off":
                await self.indicator.hide()
                await self._capture.pause()  # a Wayland portal stream stops too
                await self._wait_watch_change(session, generation, None)
                continue
            wait = pacer.wait_s(time.monotonic())
            if wait > 0:
                await self._wait_watch_change(session, generation, wait)
                continue
            if await self._private_now(session, generation, detector, delta):
                # private use: nothing captured, no title sent; look again after an interval
                pacer.mark_sent(time.monotonic())
                continue
            if watch.mode == "grid" and delta.settled(time.monotonic()):
                # the screen settled after deltas: once more whole, for the stored thumbnail
                detector.reset()
                delta.reset()
            retry = await self._capture_and_send(session, watch, generation, detector, pacer, delta)
            if session.watch_generation != generation:
                continue
            if watch.tabs != "none" and self.indicator.showing:
                title = await asyncio.to_thread(self._window_title)
                if session.watch_generation != generation:
                    continue  # a new watch while the title was read: start over
                tabs = None if title is None else self.protocol.tabs_for_title(title)
                if tabs is not None:
                    await session.ws.send(tabs)
            if retry:
                await self._wait_watch_change(session, generation, self.settings.capture_retry_s)
            else:
                # Nothing new: look again after one interval (the pacer holds the rate).
                pacer.mark_sent(time.monotonic())

    async def _private_now(
        self,
        session: _Session,
        generation: int,
        detector: ChangeDetector,
        delta: DeltaEncoder | None = None,
    ) -> bool:
        """Whether the active window is private use now (``private.py``); tells the server
        when that changes. The title is read before any capture."""
        welcome = self.protocol.welcome
        words = welcome.private_titles if welcome is not None else ()
        if not words:
            return False
        title = await asyncio.to_thread(self._window_title)
        private = is_private_title(title, words)
        change = self._private.update(private)
        if change is not None and session.watch_generation == generation:
            await session.ws.send(self.protocol.private_page(change))
            if not change:
                detector.reset()  # the next ordinary screen goes out even if unchanged
                if delta is not None:
                    delta.reset()  # and as a whole picture
        return private

    async def _capture_and_send(
        self,
        session: _Session,
        watch: Watch,
        generation: int,
        detector: ChangeDetector,
        pacer: FramePacer,
        delta: DeltaEncoder | None = None,
    ) -> bool:
        """One capture; returns True when capture failed and should wait to retry."""
        # The sign first: while it is not on screen, nothing is captured.
        problem = await self.indicator.ensure(watch.viewers, watch.mode)
        if problem is not None:
            if self._capture_reasons.is_new(problem):
                log.warning("not capturing: %s", problem)
                await session.ws.send(self.protocol.capture_error(problem, "indicator"))
            return True
        encoding = choose_encoding(self.settings.encoding, watch)
        try:
            welcome = self.protocol.welcome
            tiles = welcome is not None and welcome.tiles  # a server that takes deltas
            frame = await self._capture.capture(
                (watch.width, watch.height),
                encoding,
                watch.quality,
                detector,
                delta,
                tiles=tiles,
                screen_key=tiles,
                # the grid's whole pictures no more often than before changed tiles
                whole_gap_s=GRID_WHOLE_GAP_S if watch.mode == "grid" else 0.0,
            )
        except CaptureError as exc:
            if self._capture_reasons.is_new(exc.reason):
                log.warning("cannot capture the screen: %s", exc.reason)
                await session.ws.send(self.protocol.capture_error(exc.reason, exc.cause))
            return True
        self._capture_reasons.clear()
        # "off" (or a new request) while the grab ran: drop it, send nothing.
        if frame is None or session.watch_generation != generation:
            return False
        image = frame.image
        try:
            data = self.protocol.frame(
                image.encoding, image.width, image.height, image.data, frame.captured_at_ms
            )
        except ProtocolError as exc:  # over the server's max_frame_bytes
            log.warning("%s; not sent", exc.message)
            return False
        await session.ws.send(data)
        detector.commit()
        if delta is not None:
            delta.commit()
        pacer.mark_sent(time.monotonic())
        self.frames_sent += 1
        return False
