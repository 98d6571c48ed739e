"""Text messages: one JSON object with a ``type``, checked against :data:`SCHEMAS` for its
direction. Pure: dicts and strings in, dicts and strings out, or :class:`ProtocolError`."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from klasblik.protocol.codes import (
    IDENTITY_KINDS,
    IDENTITY_LEVELS,
    MAX_DEVICE_KEY_CHARS,
    MAX_ID,
    MAX_IDENTITY_TOKEN_CHARS,
    MAX_JSON_DEPTH,
    MAX_TABS,
    MAX_TEXT_BYTES,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    TAB_SCOPES,
    WATCH_MODES,
    ErrorCode,
)
from klasblik.protocol.errors import ProtocolError

__all__ = [
    "CONNECTION_ROLES",
    "SCHEMAS",
    "check_depth",
    "decode_message",
    "encode_message",
    "error_message",
    "validate_message",
]

# A field spec is (kind, required). Kinds: "str", "int", "bool", "number", "dict",
# "list", "tabs", "device", "strlist", "id" (an integer in the database's range, 1 to
# MAX_ID; anything else is ``not_found`` rather than a fault), or a tuple of allowed string values.
_FieldSpec = tuple[Any, bool]

_DEVICE_KINDS = ("desktop", "chromebook", "demo")
#: what a connection contributes to its student's tile: everything, or only the tabs
CONNECTION_ROLES = ("full", "tabs")

SCHEMAS: Final[dict[str, dict[str, dict[str, _FieldSpec]]]] = {
    # agent -> server
    "agent": {
        "hello": {
            "protocol": ("int", True),
            "token": ("str", True),
            "account": ("str", True),
            "device": ("device", True),
            # "tabs": a browser extension on a device whose screen a desktop agent sends
            # (same device id): it adds the tabs to that tile and sends no frames
            "role": (CONNECTION_ROLES, False),
            "identity": ("identity", False),
            #: the agent can send delta frames (changed tiles); see docs/protocol.md
            "tiles": ("bool", False),
        },
        "proof": {"nonce": ("str", True), "signature": ("str", True)},
        "heartbeat": {"seq": ("int", False)},
        "tabs": {"tabs": ("tabs", True)},
        # code: one of CAPTURE_CODES (a string: a newer agent's code is "other" here)
        "capture_error": {"reason": ("str", True), "code": ("str", False)},
        #: the device shows a page on the school's private list: nothing is captured
        "private_page": {"on": ("bool", True)},
    },
    # server -> agent
    "server_agent": {
        "welcome": {
            "protocol": ("int", True),
            "session": ("str", True),
            "display_name": ("str", True),
            "heartbeat_s": ("int", True),
            "max_frame_bytes": ("int", True),
            #: hosts (and host/path prefixes) the agent blanks before capture
            "private_pages": ("strlist", False),
            #: words in a window title that make the desktop agent blank the screen
            "private_titles": ("strlist", False),
            "identity": (IDENTITY_LEVELS, False),
            #: the server takes delta frames from this agent (it said it can send them)
            "tiles": ("bool", False),
        },
        "challenge": {"nonce": ("str", True)},
        "watch": {
            "mode": (WATCH_MODES, True),
            "width": ("int", True),
            "height": ("int", True),
            "interval_ms": ("int", True),
            "quality": ("int", True),
            "encoding": (("jpeg", "webp"), True),
            "tabs": (TAB_SCOPES, True),
            "viewers": ("strlist", True),
            #: a counter the server raises to ask for a key frame at once
            "key": ("int", False),
        },
        "error": {"error": ("dict", True)},
    },
    # dashboard -> server
    "dashboard": {
        "subscribe": {"id": ("int", True), "class_id": ("id", True)},
        "unsubscribe": {"id": ("int", True), "class_id": ("id", True)},
        "focus": {"id": ("int", True), "student_id": ("id", True)},
        "unfocus": {"id": ("int", True), "student_id": ("id", True)},
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
    if kind == "id":
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
    if kind == "identity":
        return _check_identity(value)
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
    key = value.get("key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_DEVICE_KEY_CHARS):
        return f"an object whose key is a string of 1 to {MAX_DEVICE_KEY_CHARS} characters"
    return None


def _check_identity(value: Any) -> str | None:
    if not isinstance(value, dict) or value.get("kind") not in IDENTITY_KINDS:
        return "an object whose kind is one of " + ", ".join(IDENTITY_KINDS)
    token = value.get("token")
    if not isinstance(token, str) or not 1 <= len(token) <= MAX_IDENTITY_TOKEN_CHARS:
        return f"an object whose token is a string of 1 to {MAX_IDENTITY_TOKEN_CHARS} characters"
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
        if kind == "id" and not 1 <= msg[name] <= MAX_ID:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"{msg_type}: no such {name}: {msg[name]}")
    return msg


# A JSON string (escapes included), matched without backtracking; and one innermost pair.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_INNERMOST = re.compile(r"\[\]|\{\}")


def check_depth(text: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse (``message_too_deep``) a JSON text nested deeper than ``limit``, before any
    parser sees it: strings are blanked, everything but brackets dropped, and the innermost
    pairs removed ``limit`` times; a pair still left is nesting deeper than that. (Brackets
    that never pair up are left to the parser: ``invalid_json``.) Linear per pass, in C."""
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(limit):
        if not skeleton:
            return
        shorter = _INNERMOST.sub("", skeleton)
        if shorter == skeleton:
            return  # unbalanced: the parser says so
        skeleton = shorter
    if _INNERMOST.search(skeleton):
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_DEEP, f"text message nested deeper than {limit} levels"
        )


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
        text = data if isinstance(data, str) else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc}") from None
    check_depth(text)  # within the size limit there is room for 100 000 nested brackets
    try:
        msg = json.loads(text)
    except ValueError as exc:
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
