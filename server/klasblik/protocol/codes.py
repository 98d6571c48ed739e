"""Protocol version, limits, error codes and close codes: the numbers and names agents,
dashboards and the server agree on (docs/protocol.md)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CAPTURE_CODES",
    "DEFAULT_MAX_FRAME_BYTES",
    "IDENTITY_KINDS",
    "IDENTITY_LEVELS",
    "MAX_DEVICE_KEY_CHARS",
    "MAX_HELLO_BYTES",
    "MAX_ID",
    "MAX_IDENTITY_TOKEN_CHARS",
    "MAX_JSON_DEPTH",
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
#: Largest message an agent may send before its hello was accepted (the hello itself), in
#: bytes: a socket that has not said who it is holds at most this much of the server's memory.
MAX_HELLO_BYTES: Final = 16 * 1024
#: Deepest nesting of arrays and objects a text message may have; checked before parsing.
MAX_JSON_DEPTH: Final = 16
#: Largest id (class, student, location) in a URL or command: the database's 32-bit range.
MAX_ID: Final = 2**31 - 1
#: Default largest accepted agent frame (header + image), in bytes.
DEFAULT_MAX_FRAME_BYTES: Final = 1024 * 1024

WATCH_MODES: Final = ("off", "grid", "focus")
TAB_SCOPES: Final = ("none", "active", "all")
#: Why a screen cannot be captured (``capture_error.code``), so that a dashboard can say it
#: in the teacher's language; the free-text ``reason`` stays for IT. ``indicator``: the
#: watched sign cannot be shown, so nothing is captured; ``locked``: the screen is locked;
#: ``no_display``: no screen to capture; ``permission``: the operating system or the user
#: did not allow capture; ``portal``: a Wayland session without a usable ScreenCast portal;
#: ``page``: a browser page that cannot be captured (browser settings, the Web Store);
#: ``other``: anything else. A code the server does not know counts as ``other``.
CAPTURE_CODES: Final = (
    "indicator",
    "locked",
    "no_display",
    "permission",
    "portal",
    "page",
    "other",
)

MAX_TABS: Final = 500
MAX_TITLE_CHARS: Final = 512
MAX_URL_CHARS: Final = 2048
#: Largest identity token (JWT) and device public key accepted in hello.
MAX_IDENTITY_TOKEN_CHARS: Final = 16 * 1024
MAX_DEVICE_KEY_CHARS: Final = 256
#: How agents prove who they are (``hello.identity.kind``) and what the server concluded.
IDENTITY_KINDS: Final = ("m365", "google")
IDENTITY_LEVELS: Final = ("verified", "device", "unverified")


class ErrorCode:
    """Error codes carried in ``error.code``. Stable: agents and dashboards branch on them."""

    INVALID_JSON: Final = "invalid_json"  #: text message is not a JSON object
    INVALID_FORMAT: Final = "invalid_format"  #: missing field, wrong type, bad value
    UNKNOWN_TYPE: Final = "unknown_type"  #: ``type`` not known for this direction
    MESSAGE_TOO_LARGE: Final = "message_too_large"  #: text message over MAX_TEXT_BYTES
    MESSAGE_TOO_DEEP: Final = "message_too_deep"  #: JSON nested deeper than MAX_JSON_DEPTH
    FRAME_TOO_LARGE: Final = "frame_too_large"  #: binary frame over the server's limit
    BAD_MAGIC: Final = "bad_magic"  #: binary message does not start with the magic bytes
    BAD_FRAME: Final = "bad_frame"  #: binary header inconsistent (kind, encoding, size)
    BAD_IMAGE: Final = "bad_image"  #: image bytes not a valid header of the declared size
    IMAGE_TOO_LARGE: Final = "image_too_large"  #: image larger than the watch announced
    BAD_TILES: Final = "bad_tiles"  #: delta frame's tile list malformed (count, lengths)
    TILE_OUT_OF_BOUNDS: Final = "tile_out_of_bounds"  #: a tile not inside its picture
    NO_KEY_FRAME: Final = "no_key_frame"  #: a delta with no key frame of its kind and size
    RATE_LIMITED: Final = "rate_limited"  #: messages beyond the announced rate were dropped
    BUSY: Final = "busy"  #: too many connections waiting for their hello; try again later
    UNSUPPORTED_VERSION: Final = "unsupported_version"  #: protocol version not spoken
    NOT_AUTHENTICATED: Final = "not_authenticated"  #: anything before a valid hello
    AUTH_TIMEOUT: Final = "auth_timeout"  #: no hello within the deadline
    AUTH_FAILED: Final = "auth_failed"  #: enrollment token wrong
    UNKNOWN_ACCOUNT: Final = "unknown_account"  #: account not in the roster
    NOT_A_STUDENT: Final = "not_a_student"  #: staff account: staff screens are never viewed
    IDENTITY_REQUIRED: Final = "identity_required"  #: the school's policy wants a proof
    IDENTITY_INVALID: Final = "identity_invalid"  #: forged, altered, malformed, other issuer
    IDENTITY_WRONG_AUDIENCE: Final = "identity_wrong_audience"  #: a token for another app
    IDENTITY_WRONG_TENANT: Final = "identity_wrong_tenant"  #: another organisation's account
    IDENTITY_EXPIRED: Final = "identity_expired"  #: past exp (or before nbf)
    IDENTITY_MISMATCH: Final = "identity_mismatch"  #: token for one account, hello for another
    DEVICE_PROOF_INVALID: Final = "device_proof_invalid"  #: the challenge answer does not verify
    CHALLENGE_REPLAYED: Final = "challenge_replayed"  #: an answer to another challenge
    FORBIDDEN: Final = "forbidden"  #: viewer may not see this class or student
    NOT_FOUND: Final = "not_found"  #: class or student does not exist
    UNEXPECTED: Final = "unexpected"  #: message valid but not allowed now (e.g. second hello)
    TOO_SLOW: Final = "too_slow"  #: viewer fell too far behind and is disconnected
    REPLACED: Final = "replaced"  #: a newer connection for the same student took over
    OUTSIDE_LESSON_HOURS: Final = "outside_lesson_hours"
    ELSEWHERE: Final = "elsewhere"  #: teacher or device not at the required location
    ROSTER_STALE: Final = "roster_stale"  #: no successful roster sync for too long
    INTERNAL: Final = "internal_error"  #: server fault; nothing the client did
    NO_VIEW: Final = "no_view"  #: the student is on the do-not-view list
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
