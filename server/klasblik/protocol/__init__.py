"""The Klasblik wire protocol, version 1, as a pure module: no sockets, no clocks.

Everything here takes bytes or dicts and returns bytes or dicts, or raises
:class:`ProtocolError` with one of the documented error codes. The server, the desktop
agent, the demo agents and the tests all use this one implementation; the Chrome
extension implements the same rules from ``docs/protocol.md``.

Three kinds of message travel over a WebSocket:

* text messages: one JSON object with a ``type`` (see :data:`SCHEMAS`);
* agent frames (binary, agent → server): a 24-byte header (:class:`FrameHeader`) and
  the encoded image bytes;
* viewer frames (binary, server → dashboard): a small header naming the student,
  followed by the agent frame exactly as the agent sent it.

:class:`AgentSession` (``klasblik.protocol.session``) is the agent's side of the
conversation as a state machine: fed the server's messages, it returns events and says
what to send and how long to wait before reconnecting.
"""

from klasblik.protocol.codes import (
    CAPTURE_CODES,
    DEFAULT_MAX_FRAME_BYTES,
    IDENTITY_KINDS,
    IDENTITY_LEVELS,
    MAX_HELLO_BYTES,
    MAX_ID,
    MAX_JSON_DEPTH,
    MAX_TABS,
    MAX_TEXT_BYTES,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    PROTOCOL_VERSION,
    TAB_SCOPES,
    WATCH_MODES,
    CloseCode,
    ErrorCode,
)
from klasblik.protocol.errors import KlasblikError, ProtocolError
from klasblik.protocol.frames import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    MAX_TILES,
    VIEWER_MAGIC,
    Encoding,
    FrameHeader,
    FrameKind,
    Tile,
    TileEncoding,
    decode_frame,
    decode_tiles,
    decode_viewer_frame,
    encode_frame,
    encode_tiles,
    encode_viewer_frame,
    viewer_frame_prefix,
)
from klasblik.protocol.images import ImageMemo, image_size
from klasblik.protocol.messages import (
    SCHEMAS,
    check_depth,
    decode_message,
    encode_message,
    error_message,
    validate_message,
)
from klasblik.protocol.session import (
    WATCH_OFF,
    AgentSession,
    Backoff,
    ChallengeReceived,
    Closed,
    Device,
    ErrorReceived,
    Event,
    Identity,
    Reconnect,
    SessionState,
    Watch,
    WatchReceived,
    Welcome,
    WelcomeReceived,
    proof_payload,
)

__all__ = [
    "CAPTURE_CODES",
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "IDENTITY_KINDS",
    "IDENTITY_LEVELS",
    "MAX_HELLO_BYTES",
    "MAX_ID",
    "MAX_JSON_DEPTH",
    "MAX_TABS",
    "MAX_TEXT_BYTES",
    "MAX_TILES",
    "MAX_TITLE_CHARS",
    "MAX_URL_CHARS",
    "PROTOCOL_VERSION",
    "SCHEMAS",
    "TAB_SCOPES",
    "VIEWER_MAGIC",
    "WATCH_MODES",
    "WATCH_OFF",
    "AgentSession",
    "Backoff",
    "ChallengeReceived",
    "CloseCode",
    "Closed",
    "Device",
    "Encoding",
    "ErrorCode",
    "ErrorReceived",
    "Event",
    "FrameHeader",
    "FrameKind",
    "Identity",
    "ImageMemo",
    "KlasblikError",
    "ProtocolError",
    "Reconnect",
    "SessionState",
    "Tile",
    "TileEncoding",
    "Watch",
    "WatchReceived",
    "Welcome",
    "WelcomeReceived",
    "check_depth",
    "decode_frame",
    "decode_message",
    "decode_tiles",
    "decode_viewer_frame",
    "encode_frame",
    "encode_message",
    "encode_tiles",
    "encode_viewer_frame",
    "error_message",
    "image_size",
    "proof_payload",
    "validate_message",
    "viewer_frame_prefix",
]
