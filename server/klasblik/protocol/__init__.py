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
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "MAX_TEXT_BYTES",
    "PROTOCOL_VERSION",
    "SCHEMAS",
    "TAB_SCOPES",
    "VIEWER_MAGIC",
    "WATCH_MODES",
    "CloseCode",
    "Encoding",
    "ErrorCode",
    "FrameHeader",
    "FrameKind",
    "ProtocolError",
    "decode_frame",
    "decode_message",
    "decode_viewer_frame",
    "encode_frame",
    "encode_message",
    "encode_viewer_frame",
    "error_message",
    "viewer_frame_prefix",
]

PROTOCOL_VERSION: Final = 1

#: Largest accepted text message (JSON), in bytes.
MAX_TEXT_BYTES: Final = 256 * 1024
#: Default largest accepted agent frame (header + image), in bytes.
DEFAULT_MAX_FRAME_BYTES: Final = 1024 * 1024

WATCH_MODES: Final = ("off", "grid", "focus")
TAB_SCOPES: Final = ("none", "active", "all")

MAX_TABS: Final = 500
MAX_TITLE_CHARS: Final = 512
MAX_URL_CHARS: Final = 2048


class ErrorCode:
    """Error codes carried in ``error.code``. Stable: agents and dashboards branch on them."""

    INVALID_JSON: Final = "invalid_json"  #: text message is not a JSON object
    INVALID_FORMAT: Final = "invalid_format"  #: missing field, wrong type, bad value
    UNKNOWN_TYPE: Final = "unknown_type"  #: ``type`` not known for this direction
    MESSAGE_TOO_LARGE: Final = "message_too_large"  #: text message over MAX_TEXT_BYTES
    FRAME_TOO_LARGE: Final = "frame_too_large"  #: binary frame over the server's limit
    BAD_MAGIC: Final = "bad_magic"  #: binary message does not start with the magic bytes
    BAD_FRAME: Final = "bad_frame"  #: binary header inconsistent (kind, encoding, size)
    UNSUPPORTED_VERSION: Final = "unsupported_version"  #: protocol version not spoken
    NOT_AUTHENTICATED: Final = "not_authenticated"  #: anything before a valid hello
    AUTH_TIMEOUT: Final = "auth_timeout"  #: no hello within the deadline
    AUTH_FAILED: Final = "auth_failed"  #: enrollment token wrong
    UNKNOWN_ACCOUNT: Final = "unknown_account"  #: account not in the roster
    NOT_A_STUDENT: Final = "not_a_student"  #: staff account: staff screens are never viewed
    FORBIDDEN: Final = "forbidden"  #: viewer may not see this class or student
    NOT_FOUND: Final = "not_found"  #: class or student does not exist
    UNEXPECTED: Final = "unexpected"  #: message valid but not allowed now (e.g. second hello)
    TOO_SLOW: Final = "too_slow"  #: viewer fell too far behind and is disconnected
    REPLACED: Final = "replaced"  #: a newer connection for the same student took over
    OUTSIDE_LESSON_HOURS: Final = "outside_lesson_hours"
    ELSEWHERE: Final = "elsewhere"  #: teacher or device not at the required location
    INTERNAL: Final = "internal_error"  #: server fault; nothing the client did


class CloseCode:
    """WebSocket close codes (4000-4999 is the application range)."""

    NORMAL: Final = 1000
    GOING_AWAY: Final = 1001
    POLICY: Final = 1008
    TOO_BIG: Final = 1009
    AUTH_FAILED: Final = 4001
    AUTH_TIMEOUT: Final = 4002
    FORBIDDEN: Final = 4003
    UNSUPPORTED_VERSION: Final = 4004
    TOO_SLOW: Final = 4008
    REPLACED: Final = 4009
    ACCESS_REVOKED: Final = 4010


class ProtocolError(Exception):
    """A message broke the protocol. ``code`` is one of :class:`ErrorCode`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r})"


# --------------------------------------------------------------------------------------
# Text messages
# --------------------------------------------------------------------------------------

# A field spec is (kind, required). Kinds: "str", "int", "bool", "number", "dict",
# "list", "tabs", "device", "strlist", or a tuple of allowed string values.
_FieldSpec = tuple[Any, bool]

_DEVICE_KINDS = ("desktop", "chromebook", "demo")

SCHEMAS: Final[dict[str, dict[str, dict[str, _FieldSpec]]]] = {
    # agent -> server
    "agent": {
        "hello": {
            "protocol": ("int", True),
            "token": ("str", True),
            "account": ("str", True),
            "device": ("device", True),
        },
        "heartbeat": {"seq": ("int", False)},
        "tabs": {"tabs": ("tabs", True)},
        "capture_error": {"reason": ("str", True)},
    },
    # server -> agent
    "server_agent": {
        "welcome": {
            "protocol": ("int", True),
            "session": ("str", True),
            "display_name": ("str", True),
            "heartbeat_s": ("int", True),
            "max_frame_bytes": ("int", True),
        },
        "watch": {
            "mode": (WATCH_MODES, True),
            "width": ("int", True),
            "height": ("int", True),
            "interval_ms": ("int", True),
            "quality": ("int", True),
            "encoding": (("jpeg", "webp"), True),
            "tabs": (TAB_SCOPES, True),
            "viewers": ("strlist", True),
        },
        "error": {"error": ("dict", True)},
    },
    # dashboard -> server
    "dashboard": {
        "subscribe": {"id": ("int", True), "class_id": ("int", True)},
        "unsubscribe": {"id": ("int", True), "class_id": ("int", True)},
        "focus": {"id": ("int", True), "student_id": ("int", True)},
        "unfocus": {"id": ("int", True), "student_id": ("int", True)},
        "ping": {"id": ("int", True)},
    },
    # server -> dashboard
    "server_dashboard": {
        "result": {"id": ("int", True), "success": ("bool", True)},
        "status": {"student_id": ("int", True), "state": ("dict", True)},
        "tabs": {"student_id": ("int", True), "tabs": ("tabs", True)},
        "closed": {"error": ("dict", True)},
    },
}

_DIRECTIONS: Final = tuple(SCHEMAS)


def _check_type(kind: Any, value: Any) -> str | None:
    """Return a description of what was expected, or None when ``value`` fits."""
    if isinstance(kind, tuple):
        if isinstance(value, str) and value in kind:
            return None
        return "one of " + ", ".join(repr(k) for k in kind)
    if kind == "str":
        return None if isinstance(value, str) else "a string"
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "an integer"
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a number"
    if kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if kind == "dict":
        return None if isinstance(value, dict) else "an object"
    if kind == "list":
        return None if isinstance(value, list) else "a list"
    if kind == "strlist":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "a list of strings"
    if kind == "device":
        return _check_device(value)
    if kind == "tabs":
        return _check_tabs(value)
    raise AssertionError(f"unknown field kind {kind!r}")


def _check_device(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "an object with id and kind"
    dev_id = value.get("id")
    if not isinstance(dev_id, str) or not 1 <= len(dev_id) <= 128:
        return "an object whose id is a string of 1 to 128 characters"
    if value.get("kind") not in _DEVICE_KINDS:
        return "an object whose kind is one of " + ", ".join(_DEVICE_KINDS)
    for opt in ("os", "agent"):
        if opt in value and (not isinstance(value[opt], str) or len(value[opt]) > 128):
            return f"an object whose {opt} is a string of at most 128 characters"
    return None


def _check_tabs(value: Any) -> str | None:
    if not isinstance(value, list):
        return "a list of tabs"
    if len(value) > MAX_TABS:
        return f"a list of at most {MAX_TABS} tabs"
    for i, tab in enumerate(value):
        if not isinstance(tab, dict):
            return f"a list of tab objects (item {i} is not an object)"
        title = tab.get("title")
        if not isinstance(title, str) or len(title) > MAX_TITLE_CHARS:
            return f"tabs with a title of at most {MAX_TITLE_CHARS} characters (item {i})"
        url = tab.get("url", "")
        if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
            return f"tabs with a url of at most {MAX_URL_CHARS} characters (item {i})"
        if not isinstance(tab.get("active", False), bool):
            return f"tabs whose active is true or false (item {i})"
        window = tab.get("window", 0)
        if not isinstance(window, int) or isinstance(window, bool):
            return f"tabs whose window is an integer (item {i})"
    return None


def validate_message(msg: Any, direction: str) -> dict[str, Any]:
    """Check a decoded message against the schema of ``direction``; return it.

    Unknown extra fields are allowed (a newer peer may send more); unknown types,
    missing fields and values of the wrong kind are not.
    """
    if direction not in SCHEMAS:
        raise ValueError(f"unknown direction {direction!r}; use one of {_DIRECTIONS}")
    if not isinstance(msg, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "message must be a JSON object")
    msg_type = msg.get("type")
    if not isinstance(msg_type, str):
        raise ProtocolError(ErrorCode.INVALID_FORMAT, "missing field: type")
    schema = SCHEMAS[direction].get(msg_type)
    if schema is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type: {msg_type!r}")
    for name, (kind, required) in schema.items():
        if name not in msg:
            if required:
                raise ProtocolError(ErrorCode.INVALID_FORMAT, f"{msg_type}: missing field: {name}")
            continue
        expected = _check_type(kind, msg[name])
        if expected is not None:
            raise ProtocolError(
                ErrorCode.INVALID_FORMAT, f"{msg_type}: field {name} must be {expected}"
            )
    return msg


def decode_message(data: str | bytes, direction: str) -> dict[str, Any]:
    """Parse and validate one text message travelling in ``direction``.

    ``direction`` is one of ``agent`` (agent → server), ``server_agent``,
    ``dashboard`` (dashboard → server) and ``server_dashboard``.
    """
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > MAX_TEXT_BYTES:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"text message of {size} bytes is over the limit of {MAX_TEXT_BYTES}",
        )
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc}") from None
    return validate_message(msg, direction)


def encode_message(msg: dict[str, Any], direction: str | None = None) -> str:
    """Serialise a message; with ``direction``, validate it first (a bug guard)."""
    if direction is not None:
        validate_message(msg, direction)
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False)


def error_message(code: str, message: str, msg_id: int | None = None) -> dict[str, Any]:
    """Build the one error shape: ``result`` (with an id) or ``error`` (without)."""
    err = {"code": code, "message": message}
    if msg_id is None:
        return {"type": "error", "error": err}
    return {"type": "result", "id": msg_id, "success": False, "error": err}


# --------------------------------------------------------------------------------------
# Binary frames
# --------------------------------------------------------------------------------------

FRAME_MAGIC: Final = b"KBF1"
VIEWER_MAGIC: Final = b"KBV1"

# magic, header version, kind, encoding, flags, width, height, seq, captured_at_ms
_FRAME_STRUCT: Final = struct.Struct(">4sBBBBHHIQ")
FRAME_HEADER_SIZE: Final = _FRAME_STRUCT.size  # 24
_VIEWER_STRUCT: Final = struct.Struct(">4sH")  # magic, student ref length


class FrameKind:
    GRID: Final = 1
    FOCUS: Final = 2
    ALL: Final = (1, 2)


class Encoding:
    JPEG: Final = 1
    WEBP: Final = 2
    PNG: Final = 3
    ALL: Final = (1, 2, 3)
    MIME: Final = {1: "image/jpeg", 2: "image/webp", 3: "image/png"}
    BY_NAME: Final = {"jpeg": 1, "webp": 2, "png": 3}


# Leading bytes of each image encoding, so a frame cannot claim to be what it is not.
_SIGNATURES: Final = {
    Encoding.JPEG: (b"\xff\xd8\xff",),
    Encoding.PNG: (b"\x89PNG\r\n\x1a\n",),
    Encoding.WEBP: (b"RIFF",),
}


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The 24-byte header in front of every agent frame."""

    kind: int
    encoding: int
    width: int
    height: int
    seq: int
    captured_at_ms: int
    flags: int = 0
    version: int = 1

    @property
    def mime(self) -> str:
        return Encoding.MIME[self.encoding]


def encode_frame(header: FrameHeader, image: bytes) -> bytes:
    """Build an agent frame: header + image bytes."""
    return (
        _FRAME_STRUCT.pack(
            FRAME_MAGIC,
            header.version,
            header.kind,
            header.encoding,
            header.flags,
            header.width,
            header.height,
            header.seq & 0xFFFFFFFF,
            header.captured_at_ms,
        )
        + image
    )


def decode_frame(data: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> FrameHeader:
    """Validate an agent frame and return its header; the image is ``data[24:]``.

    Checks size, magic, version, kind, encoding, dimensions and that the image bytes
    start with the signature of the encoding named. Never decodes the image.
    """
    if len(data) > max_bytes:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {len(data)} bytes is over the limit of {max_bytes}",
        )
    if len(data) < len(FRAME_MAGIC) or data[:4] != FRAME_MAGIC:
        raise ProtocolError(ErrorCode.BAD_MAGIC, "binary message must start with KBF1")
    if len(data) <= FRAME_HEADER_SIZE:
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame has no image after its header")
    _, version, kind, encoding, flags, width, height, seq, ts = _FRAME_STRUCT.unpack_from(data)
    if version != 1:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION, f"frame header version {version} not supported"
        )
    if kind not in FrameKind.ALL:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown frame kind {kind}")
    if encoding not in Encoding.ALL:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown image encoding {encoding}")
    if not (1 <= width <= 7680 and 1 <= height <= 4320):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"implausible size {width}x{height}")
    image_start = bytes(data[FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + 8])
    if not any(image_start.startswith(sig) for sig in _SIGNATURES[encoding]):
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            f"image bytes do not look like {Encoding.MIME[encoding]}",
        )
    return FrameHeader(kind, encoding, width, height, seq, ts, flags, version)


def viewer_frame_prefix(student_id: int) -> bytes:
    """The bytes the server puts in front of an agent frame for dashboards."""
    ref = str(student_id).encode("ascii")
    return _VIEWER_STRUCT.pack(VIEWER_MAGIC, len(ref)) + ref


def encode_viewer_frame(student_id: int, frame: bytes) -> bytes:
    """A viewer frame: ``KBV1``, ref length, student ref, then the agent frame as is."""
    return viewer_frame_prefix(student_id) + frame


def decode_viewer_frame(data: bytes) -> tuple[int, FrameHeader, bytes]:
    """Split a viewer frame into (student id, agent frame header, image bytes)."""
    if len(data) < _VIEWER_STRUCT.size or data[:4] != VIEWER_MAGIC:
        raise ProtocolError(ErrorCode.BAD_MAGIC, "viewer frame must start with KBV1")
    _, ref_len = _VIEWER_STRUCT.unpack_from(data)
    start = _VIEWER_STRUCT.size
    ref = data[start : start + ref_len]
    if len(ref) != ref_len or not ref.isdigit():
        raise ProtocolError(ErrorCode.BAD_FRAME, "viewer frame has a bad student ref")
    frame = data[start + ref_len :]
    header = decode_frame(frame, max_bytes=len(frame))
    return int(ref), header, bytes(frame[FRAME_HEADER_SIZE:])
