"""The agent endpoint, ``/ws/agent``: hello within the deadline, then heartbeats, tabs and
frames, relayed through the hub. A bad message gets a coded error and the socket stays
open; only authentication failures close it.

Fails closed, inside the protocol: a fault while handling one message (a bug, say) gets
``internal_error`` and the connection goes on; a fault the connection cannot go on after
(the hello's roster look-up hits a dead database) gets ``internal_error`` and close 1011,
and the agent reconnects with backoff. Never an HTTP page into the open socket. The
database writes around a live agent (last-seen, audit entries of refusals) are logged when
they fail and never drop it."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets

from aiohttp import WSMessage, WSMsgType, web
from aiohttp.base_protocol import BaseProtocol

from klasblik import protocol as p
from klasblik.server.access import audit, no_view
from klasblik.server.auth.agent_identity import IdentityRefused
from klasblik.server.errors import AccessDenied
from klasblik.server.keys import (
    AGENT_IDENTITY,
    AGENT_SOCKETS,
    DB,
    HELLO_GATE,
    HUB,
    LAST_SEEN,
    OPEN_WEBSOCKET,
    REFUSALS,
    SETTINGS,
)
from klasblik.server.live import ratelimit
from klasblik.server.live.admission import HelloGate, allow_frames, hello_socket, receive_hello
from klasblik.server.live.agent_proof import HelloEnded, establish_identity
from klasblik.server.live.hub import AgentConn, Hub
from klasblik.server.live.outbox import Outbox
from klasblik.server.locations.policy import home_of, locate
from klasblik.server.net import client_ip
from klasblik.server.settings import Settings

__all__ = ["agent_ws"]

log = logging.getLogger(__name__)

_CLOSE_FOR = {
    # only a valid identity token naming a staff member: no roster oracle (it proves itself)
    p.ErrorCode.NOT_A_STUDENT: p.CloseCode.FORBIDDEN,
    p.ErrorCode.AUTH_TIMEOUT: p.CloseCode.AUTH_TIMEOUT,
    p.ErrorCode.UNSUPPORTED_VERSION: p.CloseCode.UNSUPPORTED_VERSION,
    p.ErrorCode.INTERNAL: p.CloseCode.INTERNAL_ERROR,
}

_FAULT = "the server could not handle this message; nothing you sent was wrong"
#: a heartbeat as both agents serialise it (compact JSON); anything else takes the full
#: decode, checks and errors included (a seq of ten digits or more too: it may be too big)
_HEARTBEAT = re.compile(r'\{"type":"heartbeat"(?:,"seq":\d{1,9})?\}')
_GONE = "the server cannot serve this connection now; reconnect later"
#: what every refused account is told, whatever the reason (kept in the audit log): a
#: staff account, a disabled one and one the roster does not know look the same from outside
_NOT_ACCEPTED = "this account is not accepted by this server"


async def _refuse(ws: web.WebSocketResponse, code: str, message: str) -> web.WebSocketResponse:
    if not ws.closed:
        try:
            await ws.send_str(p.encode_message(p.error_message(code, message)))
            await ws.close(
                code=_CLOSE_FOR.get(code, p.CloseCode.AUTH_FAILED), message=code.encode()
            )
        except (ConnectionError, RuntimeError):
            pass
    return ws


def _send_error(conn: AgentConn, exc: p.ProtocolError) -> None:
    """Tell a welcomed agent what was wrong with a message, through its outbox (in order
    with the watch commands; dropped when the agent reads nothing)."""
    conn.outbox.put(p.encode_message(p.error_message(exc.code, exc.message)))


async def agent_ws(request: web.Request) -> web.StreamResponse:
    app = request.app
    ip = client_ip(request)
    gate = app[HELLO_GATE]
    if not gate.admit(ip):  # before the upgrade: a refusal costs one counter
        return gate.busy_response()
    phase = _HelloPhase(gate, ip)
    try:
        location_id = locate(app, ip)
        ws = hello_socket()
        await ws.prepare(request)
        request[OPEN_WEBSOCKET] = ws
        app[AGENT_SOCKETS].add(ws)
        try:
            return await _serve(app, request, ws, ip, location_id, phase)
        except Exception:  # not CancelledError: shutdown and the client going away pass
            log.exception("agent connection from %s: internal error, closing it (1011)", ip)
            return await _refuse(ws, p.ErrorCode.INTERNAL, _GONE)
        finally:
            app[AGENT_SOCKETS].discard(ws)
    finally:
        phase.end()


class _HelloPhase:
    """The socket's place in the hello-phase count, given back once."""

    def __init__(self, gate: HelloGate, ip: str) -> None:
        self.gate = gate
        self.ip = ip
        self.ended = False

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.gate.release(self.ip)


async def _serve(
    app: web.Application,
    request: web.Request,
    ws: web.WebSocketResponse,
    ip: str,
    location_id: int | None,
    phase: _HelloPhase,
) -> web.WebSocketResponse:
    s = app[SETTINGS]
    try:
        msg = await receive_hello(ws, s.auth_timeout_s)
    except TimeoutError:
        return await _refuse(
            ws, p.ErrorCode.AUTH_TIMEOUT, f"no hello within {s.auth_timeout_s:g} seconds"
        )
    if msg.type == WSMsgType.ERROR and ws.close_code == p.CloseCode.TOO_BIG:
        return ws  # a hello over MAX_HELLO_BYTES: aiohttp closed it with 1009
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return ws
    if msg.type != WSMsgType.TEXT:
        return await _refuse(ws, p.ErrorCode.NOT_AUTHENTICATED, "the first message must be hello")
    try:
        hello = p.decode_message(msg.data, "agent")
    except p.ProtocolError as exc:
        return await _refuse(ws, exc.code, exc.message)
    if hello["type"] != "hello":
        return await _refuse(ws, p.ErrorCode.NOT_AUTHENTICATED, "the first message must be hello")
    if hello["protocol"] != p.PROTOCOL_VERSION:
        return await _refuse(
            ws,
            p.ErrorCode.UNSUPPORTED_VERSION,
            f"protocol {hello['protocol']} not supported; this server speaks {p.PROTOCOL_VERSION}",
        )
    identity = app[AGENT_IDENTITY]
    if not identity.enrollment_token_ok(hello["token"]):
        await _audit_refusal(app, hello["account"], "wrong enrollment token", ip)
        return await _refuse(ws, p.ErrorCode.AUTH_FAILED, "enrollment token not accepted")
    try:
        student, level = await establish_identity(app, ws, hello, ip)
    except IdentityRefused as exc:
        await _audit_refusal(app, hello["account"], f"{exc.code}: {exc.detail}", ip)
        return await _refuse(ws, exc.code, exc.message)
    except AccessDenied as exc:
        await _audit_refusal(app, hello["account"], exc.message, ip)
        return await _refuse(ws, p.ErrorCode.UNKNOWN_ACCOUNT, _NOT_ACCEPTED)
    except HelloEnded:
        return ws
    except Exception:  # the roster or the issuer's keys cannot be read: no welcome, retry later
        log.exception(
            "agent of device %r from %s: roster or identity look-up failed, closing it (1011)",
            hello["device"]["id"],
            ip,
        )
        return await _refuse(ws, p.ErrorCode.INTERNAL, _GONE)

    try:
        if await no_view.blocked(app[DB], [student.username]):
            app[HUB].no_view.add(student.id)
        else:
            app[HUB].no_view.discard(student.id)
    except Exception:  # cannot tell: fail closed, show nothing of this device
        log.exception("agent of student %s: do-not-view list unreadable", student.id)
        return await _refuse(ws, p.ErrorCode.INTERNAL, _GONE)
    conn = AgentConn(
        student_id=student.id,
        display_name=student.display_name,
        ws=ws,
        outbox=Outbox(ws, maxsize=64, lazy=True),
        ip=ip,
        device_kind=hello["device"]["kind"],
        device_id=hello["device"]["id"],
        role=hello.get("role", "full"),
        location_id=location_id,
        home_location_id=home_of(app, student.school_id, student.location_id),
        identity=level,
        tiles=hello.get("tiles") is True,
    )
    receiver = _Receiver(app, conn, request.protocol)
    inbox = allow_frames(ws, request, 2 * s.max_frame_bytes, receiver)
    phase.end()
    conn.outbox.start()
    try:  # from here on, whatever happens, the hub and the outbox are left clean
        conn.outbox.put(
            p.encode_message(
                {
                    "type": "welcome",
                    "protocol": p.PROTOCOL_VERSION,
                    "session": secrets.token_hex(8),
                    "display_name": student.display_name,
                    "heartbeat_s": s.heartbeat_s,
                    "max_frame_bytes": s.max_frame_bytes,
                    "private_pages": list(s.private_pages),
                    "private_titles": list(s.private_titles),
                    "identity": level,
                    **({"tiles": True} if conn.tiles else {}),
                },
                "server_agent",
            )
        )
        _remember(app, student.id, ip)
        old = app[HUB].attach_agent(conn)
        if old is not None:
            app[HUB].tasks.spawn(_close_replaced(old), f"close replaced agent of {student.id}")
        if conn.sidelined:
            await _audit_contested(app, student.username, conn, ip)
        log.info("agent of student %s connected from %s (%s)", student.id, ip, conn.device_kind)
        await _loop(ws, conn, receiver)
    finally:
        if inbox is not None:
            inbox.handler = None  # nothing more of this socket is handled
        receiver.close()
        app[HUB].detach_agent(conn)
        await conn.outbox.close()
        _remember(app, student.id, ip)
        log.info("agent of student %s disconnected", student.id)
    return ws


async def _loop(ws: web.WebSocketResponse, conn: AgentConn, receiver: _Receiver) -> None:
    """Wait for the end of the connection. Frames and text messages go to ``receiver`` as
    they are parsed (``inbox.py``); here come the ones queued behind a ping or a close,
    and what ends the connection."""
    while True:
        # no timer per message: silence.py closes agents silent for three heartbeats
        msg = await ws.receive()
        if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
            receiver(msg)
        elif msg.type == WSMsgType.ERROR:
            log.info("agent of student %s: connection error %s", conn.student_id, ws.exception())
            return
        else:  # CLOSE, CLOSING, CLOSED
            return


class _Receiver:
    """Handles each frame and text message of a welcomed agent, synchronously, as the
    parser completes it. Never raises (an exception would fail the connection inside
    aiohttp): a fault while handling one message gets ``internal_error``, and the
    connection goes on with the next."""

    __slots__ = ("app", "conn", "faults", "images", "limits", "penalty", "protocol")

    def __init__(self, app: web.Application, conn: AgentConn, protocol: BaseProtocol) -> None:
        self.app = app
        self.conn = conn
        self.protocol = protocol
        self.limits = ratelimit.AgentLimits()
        self.images = p.ImageMemo()  # this agent's image headers, read once
        self.faults = 0
        self.penalty: asyncio.TimerHandle | None = None

    def __call__(self, msg: WSMessage) -> None:
        try:
            if not _handle(self.app, self.conn, msg, self.limits, self.images):
                self._dropped()
        except Exception:  # one message failed: say so, and go on with the next
            self.faults += 1
            if self.faults == 1:
                log.exception("agent of student %s: internal error", self.conn.student_id)
            else:  # the first one told the story: no traceback per frame
                log.debug(
                    "agent of student %s: internal error %d", self.conn.student_id, self.faults
                )
            _send_error(self.conn, p.ProtocolError(p.ErrorCode.INTERNAL, _FAULT))

    def _dropped(self) -> None:
        """A message over the agent's rate was dropped: say so now and then, and stop
        reading this socket for ``PENALTY_S`` (its sender then slows down through TCP)."""
        limits = self.limits
        if limits.drop():
            _send_error(
                self.conn,
                p.ProtocolError(
                    p.ErrorCode.RATE_LIMITED,
                    "messages beyond the rate of the watch are dropped; "
                    f"{limits.dropped} dropped so far",
                ),
            )
        if self.penalty is None:
            self.protocol.pause_reading()
            self.penalty = asyncio.get_running_loop().call_later(
                ratelimit.PENALTY_S, self._read_again
            )

    def _read_again(self) -> None:
        self.penalty = None
        self.protocol.resume_reading()

    def close(self) -> None:
        if self.penalty is not None:
            self.penalty.cancel()
            self.penalty = None


def _handle(
    app: web.Application,
    conn: AgentConn,
    msg: WSMessage,
    limits: ratelimit.AgentLimits,
    images: p.ImageMemo,
) -> bool:
    """One message of an agent that said hello: a frame, tabs, a capture error, a heartbeat.
    False when it was dropped for coming faster than the agent was told to send."""
    hub = app[HUB]
    hub.touch(conn)
    if msg.type == WSMsgType.BINARY:
        s = app[SETTINGS]
        try:
            header = p.decode_frame(msg.data, s.max_frame_bytes, memo=images)
            _check_announced(s, header)
            _check_base(hub, conn, header)
        except p.ProtocolError as exc:
            _send_error(conn, exc)
            return True
        if conn.watch is not None:
            limits.set_frame_interval(conn.watch["interval_ms"])
        if not limits.frames.take():
            # what follows this frame would be painted on a picture no viewer has
            hub.lost_frame(conn)
            return False
        if header.key:
            conn.key_base = (header.kind, header.width, header.height)
        hub.on_frame(conn, msg.data, header)
        return True
    if not limits.text.take():  # before parsing: a flood of text costs no JSON
        return False
    if _HEARTBEAT.fullmatch(msg.data):  # the message of every idle agent: no JSON for it
        return True
    try:
        m = p.decode_message(msg.data, "agent")
    except p.ProtocolError as exc:
        _send_error(conn, exc)
        return True
    kind = m["type"]
    if kind == "tabs":
        if not limits.tabs.take():
            return False
        hub.on_tabs(conn, m["tabs"])
    elif kind == "capture_error":
        if not limits.capture_errors.take():
            return False
        hub.on_capture_error(conn, m["reason"], m.get("code"))
    elif kind == "private_page":
        hub.on_private_page(conn, m["on"])
    elif kind in ("hello", "proof"):
        _send_error(conn, p.ProtocolError(p.ErrorCode.UNEXPECTED, "already authenticated"))
    # a heartbeat only counts as a sign of life (hub.touch above)
    return True


def _check_base(hub: Hub, conn: AgentConn, header: p.FrameHeader) -> None:
    """A delta frame only from an agent that may send them, and only on the key frame of
    its kind and size that came last (and was not dropped): else ``no_key_frame``, and the
    agent is asked for a key frame."""
    if header.key:
        return
    if not conn.tiles:
        raise p.ProtocolError(
            p.ErrorCode.UNEXPECTED, "delta frames only after a hello and welcome with tiles"
        )
    if conn.key_base != (header.kind, header.width, header.height):
        hub.request_key(conn)
        raise p.ProtocolError(
            p.ErrorCode.NO_KEY_FRAME,
            f"a delta of a {header.width}x{header.height} picture with no key frame of it",
        )


def _check_announced(s: Settings, header: p.FrameHeader) -> None:
    """A frame no larger than the watch of its kind announces (grid or focus size): what a
    browser decodes is bounded before anyone decodes it."""
    if header.kind == p.FrameKind.FOCUS:
        width, height = s.focus_width, s.focus_height
    else:
        width, height = s.grid_width, s.grid_height
    if header.width > width or header.height > height:
        raise p.ProtocolError(
            p.ErrorCode.IMAGE_TOO_LARGE,
            f"a {header.width}x{header.height} image is larger than the {width}x{height} asked",
        )


async def _close_replaced(old: AgentConn) -> None:
    await old.outbox.close()
    try:
        await old.ws.send_str(
            p.encode_message(p.error_message(p.ErrorCode.REPLACED, "a newer connection took over"))
        )
        await old.ws.close(code=p.CloseCode.REPLACED, message=b"replaced")
    except (ConnectionError, RuntimeError):
        pass


def _remember(app: web.Application, student_id: int, ip: str) -> None:
    """Keep the student's last IP address and last-seen time (DESIGN: both are held),
    batched: a connection storm costs a few transactions."""
    app[LAST_SEEN].note(student_id, ip)


async def _audit_refusal(app: web.Application, account: str, why: str, ip: str) -> None:
    """Audit-logged, aggregated (``access/refusals.py``); a failed write is logged."""
    await app[REFUSALS].note(account, why, ip)


async def _audit_contested(app: web.Application, username: str, conn: AgentConn, ip: str) -> None:
    """An unverified connection claimed a student whose verified one is connected: it
    replaced nothing; the teacher sees both, flagged; the audit log says so."""
    log.warning(
        "agent of student %s from %s (%s) did not replace a better-proven connection",
        conn.student_id,
        ip,
        conn.identity,
    )
    try:
        await audit.record(
            app[DB],
            username,
            audit.Actions.AGENT_CONTESTED,
            "agent",
            f"a {conn.identity} connection claimed this student while a better-proven one "
            "is connected: it replaced nothing and is shown flagged",
            ip,
        )
    except Exception:
        log.exception("could not audit-log a contested agent connection")
