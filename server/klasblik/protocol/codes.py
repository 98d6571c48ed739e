"""Protocol version, limits, error codes and close codes: the numbers and names agents,
dashboards and the server agree on (docs/protocol.md)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_TABS",
    "MAX_TEXT_BYTES",
    "MAX_TITLE_CHARS",
    "MAX_URL_CHARS",
    "PROTOCOL_VERSION",
    "TAB_SCOPES",
    "WATCH_MODES",
    "CloseCode",
    "ErrorCode",
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
    SESSION_ENDED: Final = "session_ended"  #: dashboard sign-in expired or signed out


class CloseCode:
    """WebSocket close codes (4000-4999 is the application range)."""

    NORMAL: Final = 1000
    GOING_AWAY: Final = 1001
    POLICY: Final = 1008
    TOO_BIG: Final = 1009
    INTERNAL_ERROR: Final = 1011  #: a fault on the server; reconnect with backoff
    AUTH_FAILED: Final = 4001
    AUTH_TIMEOUT: Final = 4002
    FORBIDDEN: Final = 4003
    UNSUPPORTED_VERSION: Final = 4004
    TOO_SLOW: Final = 4008
    REPLACED: Final = 4009
    ACCESS_REVOKED: Final = 4010
    SESSION_ENDED: Final = 4011  #: the dashboard's sign-in expired or was signed out
