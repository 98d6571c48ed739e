"""The agent's side of the protocol session as a state machine, without I/O.

:class:`AgentSession` holds what an agent knows about its conversation with the server
(docs/protocol.md, "The agent's conversation") and decides what follows from each step.
It opens no sockets, reads no clock and starts no task: the caller does the I/O, feeds
it each text message received (:meth:`AgentSession.receive`, which returns one event or
raises :class:`~klasblik.protocol.errors.ProtocolError`) and asks it what to send
(:meth:`~AgentSession.hello`, :meth:`~AgentSession.heartbeat`, :meth:`~AgentSession.frame`,
:meth:`~AgentSession.tabs_for_title`, :meth:`~AgentSession.capture_error`) and how long to
wait before connecting again (:meth:`~AgentSession.connection_closed`,
:meth:`~AgentSession.reconnect`).

One session lives as long as the agent and goes through one connection after another::

    CLOSED --hello()--> AUTHENTICATING --welcome--> OPEN
       ^                 |   ^ challenge/proof()      |
       ^                       |                      |
       +--connection_closed() / connection_failed() --+

Heartbeat and frame sequence numbers run on across connections; what the server said
(welcome, watch, error) belongs to one connection and is forgotten at the next hello.

What the server may send, and when (anything else raises ``ProtocolError`` with the
code named, and leaves the state as it was)::

    message                CLOSED               AUTHENTICATING       OPEN
    welcome                unexpected           recorded, now OPEN   unexpected
    challenge              unexpected           reported (once)      unexpected
    watch                  not_authenticated    not_authenticated    recorded
    error                  unexpected           reported             reported
    binary, unknown type   unknown_type         unknown_type         unknown_type
    malformed, too large   invalid_json, invalid_format, message_too_large

Reconnecting (the same rule as the Chrome extension's ``reconnectDelay``): after any
close or failed attempt the agent waits with exponential backoff (:class:`Backoff`: 1 s
doubling to 60 s, ±50 % jitter); after close 4003 (a staff account, never to be viewed)
at least an hour. A connection that got a ``welcome`` starts the backoff again from the
shortest delay, except one closed with 4009 (replaced by a newer connection of the same
student), so that two devices of one account do not take the connection from each other
every second.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Any, Final

from klasblik.protocol.codes import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_TITLE_CHARS,
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
)
from klasblik.protocol.errors import ProtocolError
from klasblik.protocol.frames import FrameHeader, FrameKind, encode_frame
from klasblik.protocol.messages import decode_message, encode_message

__all__ = [
    "BACKOFF_JITTER",
    "BACKOFF_MAX_S",
    "BACKOFF_START_S",
    "FORBIDDEN_WAIT_S",
    "MAX_REASON_CHARS",
    "PROOF_CONTEXT",
    "WATCH_OFF",
    "AgentSession",
    "Backoff",
    "ChallengeReceived",
    "Closed",
    "Device",
    "ErrorReceived",
    "Event",
    "Identity",
    "Reconnect",
    "SessionState",
    "Watch",
    "WatchReceived",
    "Welcome",
    "WelcomeReceived",
    "proof_payload",
    "tabs_message",
]

BACKOFF_START_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
#: Each delay is multiplied by a random factor in [1 - JITTER, 1 + JITTER].
BACKOFF_JITTER: Final = 0.5
#: After close code 4003 (a staff account: never to be viewed) wait at least this long.
FORBIDDEN_WAIT_S: Final = 3600.0
#: A ``capture_error`` reason is cut to this many characters.
MAX_REASON_CHARS: Final = 512
#: The shortest heartbeat period the agent keeps to, whatever ``welcome`` says.
MIN_HEARTBEAT_S: Final = 1.0


# ---------------------------------------------------------------------------- reconnecting


@dataclass
class Backoff:
    """Reconnect delays: 1 s doubling to 60 s, each with ±50 % jitter.

    ``next_delay()`` gives the delay before the next attempt and counts the attempt;
    ``reset()`` after a connection that got as far as ``welcome``. The random source is
    passed in, so every delay can be tested exactly.
    """

    start_s: float = BACKOFF_START_S
    max_s: float = BACKOFF_MAX_S
    jitter: float = BACKOFF_JITTER
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def base_delay(self, attempt: int) -> float:
        """The delay before jitter for the attempt numbered ``attempt`` (0 = first retry)."""
        if attempt < 0:
            raise ValueError("attempt must be 0 or more")
        # Cap the exponent so a long outage cannot overflow the float.
        return min(self.max_s, self.start_s * 2.0 ** min(attempt, 32))

    def next_delay(self) -> float:
        """Delay in seconds before the next attempt, with jitter; counts the attempt."""
        base = self.base_delay(self.attempts)
        self.attempts += 1
        return base * self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def forbidden_delay(self) -> float:
        """Delay after close 4003: at least an hour, jittered upwards only."""
        self.attempts += 1
        return FORBIDDEN_WAIT_S * self.rng.uniform(1.0, 1.0 + self.jitter)

    def reset(self) -> None:
        """Start again from the shortest delay."""
        self.attempts = 0


def _close_code(code: object) -> int | None:
    """``code`` when it is a close code a WebSocket can report (1000-4999), else None."""
    if isinstance(code, int) and not isinstance(code, bool) and 1000 <= code <= 4999:
        return code
    return None


@dataclass(frozen=True, slots=True)
class Closed:
    """How a connection ended, as :meth:`AgentSession.connection_closed` saw it."""

    #: the close code, or None without one (no connection, a fault, an impossible code)
    code: int | None
    #: the connection got as far as ``welcome``
    welcomed: bool
    #: closed with 4009: a newer connection of the same student took over
    replaced: bool
    #: the backoff starts again from the shortest delay
    backoff_reset: bool
    #: the last ``error`` the server sent on this connection, if any
    error: ErrorReceived | None


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The wait before the next connection attempt."""

    delay_s: float
    #: the last close was 4003 (a staff account): the long wait, not the backoff
    forbidden: bool


# ---------------------------------------------------------------------------- what the server says


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
    #: raised by the server to ask for a key frame (a whole picture) at once
    key: int = 0

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> Watch:
        """The watch of a validated ``watch`` message; sizes and quality kept in range."""
        return cls(
            mode=msg["mode"],
            width=max(1, msg["width"]),
            height=max(1, msg["height"]),
            interval_ms=max(0, msg["interval_ms"]),
            quality=min(100, max(1, msg["quality"])),
            encoding=msg["encoding"],
            tabs=msg["tabs"],
            viewers=tuple(msg["viewers"]),
            key=msg.get("key", 0),
        )

    @property
    def capturing(self) -> bool:
        """Whether this watch asks for frames (any mode but ``off``)."""
        return self.mode != "off"


#: The watch in force before the server has said anything: send nothing.
WATCH_OFF: Final = Watch()


@dataclass(frozen=True, slots=True)
class Welcome:
    """The server's ``welcome``: this connection is authenticated."""

    session: str
    display_name: str
    #: seconds between heartbeats, never under one second
    heartbeat_s: float
    #: the largest agent frame the server accepts, header included
    max_frame_bytes: int
    #: window-title words of private use: the screen is blanked before capture
    private_titles: tuple[str, ...] = ()
    #: the server takes delta frames (changed tiles) from this agent
    tiles: bool = False


@dataclass(frozen=True, slots=True)
class WelcomeReceived:
    """Event: the server welcomed this agent; heartbeats and watches follow."""

    welcome: Welcome


@dataclass(frozen=True, slots=True)
class ChallengeReceived:
    """Event: the server asks the device to sign ``nonce`` with its key (:meth:`proof`)."""

    nonce: str


@dataclass(frozen=True, slots=True)
class WatchReceived:
    """Event: a ``watch`` (the ``generation``-th of this connection) replaces ``previous``."""

    watch: Watch
    previous: Watch
    generation: int

    @property
    def changed(self) -> bool:
        """Whether it asks for anything other than the watch before it."""
        return self.watch != self.previous


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """Event: the server reported an error (often just before it closes)."""

    code: str
    message: str


Event = WelcomeReceived | WatchReceived | ErrorReceived | ChallengeReceived


# ---------------------------------------------------------------------------- what the agent says


@dataclass(frozen=True, slots=True)
class Device:
    """The device part of ``hello``: a stable, not personal id, its kind, OS and agent."""

    id: str
    kind: str = "desktop"
    os: str | None = None
    agent: str | None = None
    #: the device's public key (base64url of its SubjectPublicKeyInfo, ECDSA P-256)
    key: str | None = None

    def as_message(self) -> dict[str, str]:
        device = {"id": self.id, "kind": self.kind}
        if self.key is not None:
            device["key"] = self.key
        if self.os is not None:
            device["os"] = self.os[:128]
        if self.agent is not None:
            device["agent"] = self.agent[:128]
        return device


def tabs_message(title: str) -> dict[str, Any]:
    """The ``tabs`` message for a desktop: the active window's title as one tab."""
    return {
        "type": "tabs",
        "tabs": [{"title": title[:MAX_TITLE_CHARS], "url": "", "active": True, "window": 1}],
    }


@dataclass(frozen=True, slots=True)
class Identity:
    """The identity proof in ``hello``: a token from the sign-in the device already has
    (``m365``: an access token for Klasblik's API; ``google``: a Google ID token)."""

    kind: str
    token: str


PROOF_CONTEXT: Final = b"klasblik-device-proof/1"


def proof_payload(nonce: str, device_id: str) -> bytes:
    """What the device signs to answer a challenge: a context string, the server's nonce
    and the device id, one per line (so an answer is good for one challenge of one
    device only)."""
    return b"\n".join((PROOF_CONTEXT, nonce.encode(), device_id.encode()))


class SessionState(enum.Enum):
    """Where the session is in its current connection."""

    CLOSED = "closed"  #: no connection, or one that has not said hello yet
    AUTHENTICATING = "authenticating"  #: hello sent, no welcome yet
    OPEN = "open"  #: welcomed


class AgentSession:
    """The agent's protocol state across its connections, without I/O.

    ``backoff`` is the reconnect policy's state; it lives as long as the session.
    """

    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff if backoff is not None else Backoff()
        self.state = SessionState.CLOSED
        #: heartbeat and frame sequence numbers: they run on across connections
        self.heartbeat_seq = 0
        self.frame_seq = 0
        self._last_close: int | None = None
        # What the server said on the current (or last) connection:
        self.welcome: Welcome | None = None
        self.watch: Watch = WATCH_OFF
        #: how many ``watch`` messages this connection has had (0: none yet)
        self.watch_generation = 0
        self.server_error: ErrorReceived | None = None
        self._last_title: str | None = None
        self._challenge: str | None = None
        self._answered = False

    def _new_connection(self) -> None:
        """Forget what the server said on the last connection."""
        self.welcome = None
        self.watch = WATCH_OFF
        self.watch_generation = 0
        self.server_error = None
        self._last_title = None
        self._challenge = None
        self._answered = False

    # ------------------------------------------------------------------ properties

    @property
    def welcomed(self) -> bool:
        return self.state is SessionState.OPEN

    @property
    def heartbeat_s(self) -> float:
        """Seconds between heartbeats (the protocol's default until welcome says)."""
        return self.welcome.heartbeat_s if self.welcome is not None else 20.0

    @property
    def max_frame_bytes(self) -> int:
        if self.welcome is not None:
            return self.welcome.max_frame_bytes
        return DEFAULT_MAX_FRAME_BYTES

    @property
    def capturing(self) -> bool:
        """Whether frames are wanted now: welcomed, and a watch whose mode is not off."""
        return self.welcomed and self.watch.capturing

    @property
    def wants_tabs(self) -> bool:
        """Whether a tab list is wanted now (capturing, and the watch's tabs not none)."""
        return self.capturing and self.watch.tabs != "none"

    # ------------------------------------------------------------------ connecting

    def hello(
        self,
        token: str,
        account: str,
        device: Device,
        identity: Identity | None = None,
        *,
        tiles: bool = False,
    ) -> str:
        """The first message of a new connection; the session waits for ``welcome`` next
        (after a ``challenge``, when ``device`` carries a key). ``tiles``: this agent can
        send delta frames, if the server's ``welcome`` says it takes them."""
        if self.state is not SessionState.CLOSED:
            raise ProtocolError(
                ErrorCode.UNEXPECTED, "hello already sent on this connection; close it first"
            )
        msg: dict[str, Any] = {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "token": token,
            "account": account,
            "device": device.as_message(),
        }
        if identity is not None:
            msg["identity"] = {"kind": identity.kind, "token": identity.token}
        if tiles:
            msg["tiles"] = True
        text = encode_message(msg, "agent")
        self._new_connection()
        self.state = SessionState.AUTHENTICATING
        return text

    def proof(self, nonce: str, signature: str) -> str:
        """The answer to the server's ``challenge``: ``signature`` over
        :func:`proof_payload` (the caller holds the key and signs)."""
        if self.state is not SessionState.AUTHENTICATING or self._challenge != nonce:
            raise ProtocolError(ErrorCode.UNEXPECTED, "no challenge to answer on this connection")
        self._challenge = None
        self._answered = True
        return encode_message({"type": "proof", "nonce": nonce, "signature": signature}, "agent")

    def connection_closed(self, code: int | None) -> Closed:
        """The connection ended with close ``code``; see the module docstring for what follows."""
        welcomed = self.welcomed
        valid = _close_code(code)
        replaced = valid == CloseCode.REPLACED
        reset = welcomed and not replaced
        if reset:
            self.backoff.reset()
        closed = Closed(valid, welcomed, replaced, reset, self.server_error)
        self.state = SessionState.CLOSED
        self._last_close = valid
        return closed

    def connection_failed(self) -> Closed:
        """No connection came about, or it ended in a fault of the agent's: no close code,
        and the backoff goes on growing even after a welcome."""
        closed = Closed(None, self.welcomed, False, False, self.server_error)
        self.state = SessionState.CLOSED
        self._last_close = None
        return closed

    def reconnect(self) -> Reconnect:
        """How long to wait before the next attempt, after the last close; counts the attempt."""
        if self.state is not SessionState.CLOSED:
            raise ProtocolError(ErrorCode.UNEXPECTED, "the connection is still open")
        if self._last_close == CloseCode.FORBIDDEN:
            return Reconnect(self.backoff.forbidden_delay(), forbidden=True)
        return Reconnect(self.backoff.next_delay(), forbidden=False)

    # ------------------------------------------------------------------ receiving

    def receive(self, data: str | bytes) -> Event:
        """Take one message from the server; return what it means, or raise ProtocolError.

        The session's state is unchanged by a message it refuses.
        """
        if not isinstance(data, str):
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE, "the server sends an agent no binary messages"
            )
        msg = decode_message(data, "server_agent")
        kind = msg["type"]
        if kind == "welcome":
            return self._welcome(msg)
        if kind == "watch":
            return self._watch(msg)
        if kind == "challenge":
            return self._challenged(msg)
        return self._error(msg)

    def _challenged(self, msg: dict[str, Any]) -> ChallengeReceived:
        if self.state is not SessionState.AUTHENTICATING or self._answered or self._challenge:
            raise ProtocolError(ErrorCode.UNEXPECTED, "a challenge outside this agent's hello")
        self._challenge = str(msg["nonce"])
        return ChallengeReceived(self._challenge)

    def _welcome(self, msg: dict[str, Any]) -> WelcomeReceived:
        if self.state is SessionState.CLOSED:
            raise ProtocolError(ErrorCode.UNEXPECTED, "welcome before this agent's hello")
        if self.state is SessionState.OPEN:
            raise ProtocolError(ErrorCode.UNEXPECTED, "a second welcome on this connection")
        if msg["protocol"] != PROTOCOL_VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"welcome speaks protocol {msg['protocol']}; this agent speaks {PROTOCOL_VERSION}",
            )
        welcome = Welcome(
            session=msg["session"],
            display_name=msg["display_name"],
            heartbeat_s=max(MIN_HEARTBEAT_S, float(msg["heartbeat_s"])),
            max_frame_bytes=msg["max_frame_bytes"],
            private_titles=tuple(msg.get("private_titles", ())),
            tiles=msg.get("tiles") is True,
        )
        self.welcome = welcome
        self.state = SessionState.OPEN
        return WelcomeReceived(welcome)

    def _watch(self, msg: dict[str, Any]) -> WatchReceived:
        if self.state is not SessionState.OPEN:
            raise ProtocolError(ErrorCode.NOT_AUTHENTICATED, "watch before welcome")
        previous, watch = self.watch, Watch.from_message(msg)
        self.watch = watch
        self.watch_generation += 1
        # A new request: the next window title goes out even if unchanged.
        self._last_title = None
        return WatchReceived(watch, previous, self.watch_generation)

    def _error(self, msg: dict[str, Any]) -> ErrorReceived:
        if self.state is SessionState.CLOSED:
            raise ProtocolError(ErrorCode.UNEXPECTED, "error before this agent's hello")
        error = msg["error"]
        event = ErrorReceived(str(error.get("code", "?")), str(error.get("message", "")))
        self.server_error = event
        return event

    # ------------------------------------------------------------------ sending

    def _require_open(self, what: str) -> None:
        if self.state is not SessionState.OPEN:
            raise ProtocolError(ErrorCode.NOT_AUTHENTICATED, f"no {what} before welcome")

    def heartbeat(self) -> str:
        """The next ``heartbeat`` (sequence numbers from 1, on across connections)."""
        self._require_open("heartbeat")
        self.heartbeat_seq += 1
        return encode_message({"type": "heartbeat", "seq": self.heartbeat_seq}, "agent")

    def capture_error(self, reason: str, code: str = "other") -> str:
        """A ``capture_error`` telling the server why the screen cannot be captured now:
        ``code`` (one of ``CAPTURE_CODES``) for the teacher's words, ``reason`` for IT."""
        self._require_open("capture_error")
        return encode_message(
            {"type": "capture_error", "reason": reason[:MAX_REASON_CHARS], "code": code}, "agent"
        )

    def private_page(self, on: bool) -> str:
        """The ``private_page`` message: the active window is private use (nothing is
        captured) or no longer is."""
        self._require_open("private_page")
        self._last_title = None  # the next ordinary title goes out again
        return encode_message({"type": "private_page", "on": on}, "agent")

    def tabs_for_title(self, title: str) -> str | None:
        """A ``tabs`` message for the active window's ``title``, or None when none is due:
        tabs not wanted now, or the same title already sent under this watch."""
        self._require_open("tabs")
        if not self.wants_tabs or title == self._last_title:
            return None
        self._last_title = title
        return encode_message(tabs_message(title), "agent")

    def frame(
        self, encoding: int, width: int, height: int, image: bytes, captured_at_ms: int
    ) -> bytes:
        """An agent frame (header + ``image``) for the current watch; takes the next seq.

        Raises ProtocolError ``unexpected`` while the mode is off, and ``frame_too_large``
        when the frame is over the server's ``max_frame_bytes`` (the seq is used up then).
        """
        self._require_open("frame")
        if not self.watch.capturing:
            raise ProtocolError(ErrorCode.UNEXPECTED, "no frames while the mode is off")
        self.frame_seq = (self.frame_seq + 1) & 0xFFFFFFFF
        kind = FrameKind.FOCUS if self.watch.mode == "focus" else FrameKind.GRID
        header = FrameHeader(kind, encoding, width, height, self.frame_seq, captured_at_ms)
        data = encode_frame(header, image)
        if len(data) > self.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {len(data)} bytes is over the server's limit of {self.max_frame_bytes}",
            )
        return data
