"""The wire protocol on bytes and dicts only: no sockets."""

from __future__ import annotations

import json
import struct

import pytest

from klasblik import protocol as p
from tests.support.live import frame, jpeg

HELLO = {
    "type": "hello",
    "protocol": 1,
    "token": "t",
    "account": "anna@school.example",
    "device": {"id": "dev-1", "kind": "desktop", "os": "Linux"},
}

EXAMPLES = {
    "agent": [
        HELLO,
        {"type": "heartbeat", "seq": 3},
        {"type": "heartbeat"},
        {
            "type": "tabs",
            "tabs": [{"title": "A", "url": "https://a.example", "active": True, "window": 1}],
        },
        {"type": "capture_error", "reason": "no display"},
        {"type": "private_page", "on": True},
        {
            **HELLO,
            "device": {"id": "dev-2", "kind": "chromebook", "key": "MFkwEwYHKoZIzj0CAQ"},
            "identity": {"kind": "google", "token": "eyJhbGciOi.x.y"},
        },
        {"type": "proof", "nonce": "n0nce", "signature": "c2lnbmF0dXJl"},
    ],
    "server_agent": [
        {
            "type": "welcome",
            "protocol": 1,
            "session": "s",
            "display_name": "Anna B.",
            "heartbeat_s": 20,
            "max_frame_bytes": 1048576,
        },
        {
            "type": "watch",
            "mode": "grid",
            "width": 400,
            "height": 225,
            "interval_ms": 2000,
            "quality": 55,
            "encoding": "jpeg",
            "tabs": "active",
            "viewers": ["M. de Vries"],
        },
        {"type": "error", "error": {"code": "auth_failed", "message": "no"}},
        {
            "type": "welcome",
            "protocol": 1,
            "session": "s",
            "display_name": "Anna B.",
            "heartbeat_s": 20,
            "max_frame_bytes": 1048576,
            "identity": "verified",
        },
        {"type": "challenge", "nonce": "n0nce"},
    ],
    "dashboard": [
        {"type": "subscribe", "id": 1, "class_id": 7},
        {"type": "unsubscribe", "id": 2, "class_id": 7},
        {"type": "focus", "id": 3, "student_id": 12},
        {"type": "unfocus", "id": 4, "student_id": 12},
        {"type": "ping", "id": 5},
    ],
    "server_dashboard": [
        {"type": "result", "id": 1, "success": True, "result": {}},
        {"type": "status", "student_id": 1, "state": {"online": True}},
        {"type": "tabs", "student_id": 1, "tabs": []},
        {"type": "closed", "error": {"code": "too_slow", "message": "x"}},
    ],
}


@pytest.mark.parametrize(
    "direction,msg",
    [(d, m) for d, ms in EXAMPLES.items() for m in ms],
    ids=lambda v: v if isinstance(v, str) else v["type"],
)
def test_every_message_type_round_trips(direction, msg):
    """Each documented message survives encode then decode unchanged."""
    assert p.decode_message(p.encode_message(msg, direction), direction) == msg


def test_every_schema_type_has_an_example():
    """The examples above cover every message type the protocol defines."""
    for direction, schema in p.SCHEMAS.items():
        assert set(schema) == {m["type"] for m in EXAMPLES[direction]}, direction


def _code(data, direction="agent"):
    with pytest.raises(p.ProtocolError) as info:
        p.decode_message(data, direction)
    return info.value.code


def test_malformed_json_is_invalid_json():
    """Text that is not JSON, or JSON that is not an object, gives invalid_json."""
    assert _code("{not json") == "invalid_json"
    assert _code("[1, 2]") == "invalid_json"
    assert _code(b"\xff\xfe") == "invalid_json"


@pytest.mark.parametrize("direction", list(p.SCHEMAS))
def test_deeply_nested_json_is_too_deep(direction):
    """JSON nested deeper than MAX_JSON_DEPTH (here 100 000 levels, well within 256 KiB) gives
    message_too_deep, before the parser sees it."""
    nested = '{"type": "hello", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert len(nested) < p.MAX_TEXT_BYTES
    assert _code(nested, direction) == "message_too_deep"


def test_unknown_type_is_unknown_type():
    """A type not defined for the direction gives unknown_type, even if defined elsewhere."""
    assert _code('{"type": "launch_rockets"}') == "unknown_type"
    assert _code(json.dumps({"type": "subscribe", "id": 1, "class_id": 1})) == "unknown_type"


@pytest.mark.parametrize("field", ["protocol", "token", "account", "device"])
def test_missing_field_is_invalid_format(field):
    """Dropping any required hello field gives invalid_format naming the field."""
    msg = dict(HELLO)
    del msg[field]
    with pytest.raises(p.ProtocolError) as info:
        p.decode_message(json.dumps(msg), "agent")
    assert info.value.code == "invalid_format"
    assert field in info.value.message


@pytest.mark.parametrize(
    "change",
    [
        {"protocol": "1"},
        {"protocol": True},
        {"device": {"id": "", "kind": "desktop"}},
        {"device": {"id": "x", "kind": "toaster"}},
        {"device": "laptop"},
    ],
)
def test_wrong_kinds_are_invalid_format(change):
    """Fields of the wrong type or with an unknown value give invalid_format."""
    assert _code(json.dumps({**HELLO, **change})) == "invalid_format"


def test_unknown_watch_mode_is_invalid_format():
    """A watch mode outside off/grid/focus is refused."""
    watch = dict(EXAMPLES["server_agent"][1], mode="stare")
    assert _code(json.dumps(watch), "server_agent") == "invalid_format"


def test_tabs_limits_are_enforced():
    """Too many tabs, over-long titles or URLs, and non-object tabs give invalid_format."""
    many = [{"title": "t", "active": False}] * (p.MAX_TABS + 1)
    assert _code(json.dumps({"type": "tabs", "tabs": many})) == "invalid_format"
    long_title = [{"title": "x" * (p.MAX_TITLE_CHARS + 1)}]
    assert _code(json.dumps({"type": "tabs", "tabs": long_title})) == "invalid_format"
    long_url = [{"title": "x", "url": "u" * (p.MAX_URL_CHARS + 1)}]
    assert _code(json.dumps({"type": "tabs", "tabs": long_url})) == "invalid_format"
    assert _code(json.dumps({"type": "tabs", "tabs": ["x"]})) == "invalid_format"


def test_oversized_text_message_is_message_too_large():
    """A text message over the limit is refused before parsing."""
    big = json.dumps({"type": "heartbeat", "pad": "x" * p.MAX_TEXT_BYTES})
    assert _code(big) == "message_too_large"


def test_unknown_extra_fields_are_ignored():
    """A newer peer may add fields: they pass through."""
    msg = p.decode_message(json.dumps({"type": "heartbeat", "battery": 80}), "agent")
    assert msg["battery"] == 80


def test_frame_round_trip():
    """A frame's header decodes to what was encoded; the image follows the 24 bytes."""
    data = frame(seq=42, kind=p.FrameKind.FOCUS)
    header = p.decode_frame(data)
    assert (header.kind, header.encoding, header.width, header.height, header.seq) == (
        p.FrameKind.FOCUS,
        p.Encoding.JPEG,
        64,
        36,
        42,
    )
    assert data[p.FRAME_HEADER_SIZE :] == jpeg()
    assert p.FRAME_HEADER_SIZE == 24


def _frame_code(data, max_bytes=p.DEFAULT_MAX_FRAME_BYTES):
    with pytest.raises(p.ProtocolError) as info:
        p.decode_frame(data, max_bytes)
    return info.value.code


def test_bad_frames_get_their_codes():
    """Wrong magic, oversize, bad kind/encoding/size, wrong image signature: each its code."""
    good = frame()
    assert _frame_code(b"XXXX" + good[4:]) == "bad_magic"
    assert _frame_code(b"") == "bad_magic"
    assert _frame_code(good, max_bytes=len(good) - 1) == "frame_too_large"
    assert _frame_code(good[:24]) == "bad_frame"
    assert _frame_code(good[:5] + b"\x09" + good[6:]) == "bad_frame"  # kind 9
    assert _frame_code(good[:6] + b"\x07" + good[7:]) == "bad_frame"  # encoding 7
    assert _frame_code(good[:8] + b"\x00\x00" + good[10:]) == "bad_frame"  # width 0
    assert _frame_code(good[:6] + b"\x03" + good[7:]) == "bad_frame"  # says PNG, is JPEG
    assert _frame_code(good[:4] + b"\x02" + good[5:]) == "unsupported_version"


def test_viewer_frame_keeps_the_agent_frame_bytes():
    """A viewer frame is a prefix plus the agent frame, byte for byte."""
    agent_frame = frame(seq=7)
    vf = p.encode_viewer_frame(1234, agent_frame)
    assert vf.endswith(agent_frame)
    sid, header, image = p.decode_viewer_frame(vf)
    assert (sid, header.seq, image) == (1234, 7, jpeg())
    with pytest.raises(p.ProtocolError) as info:
        p.decode_viewer_frame(b"KBF1" + vf[4:])
    assert info.value.code == "bad_magic"


def test_error_message_shapes():
    """Errors have one shape: under result (with an id) or error (without)."""
    assert p.error_message("forbidden", "no", 3) == {
        "type": "result",
        "id": 3,
        "success": False,
        "error": {"code": "forbidden", "message": "no"},
    }
    assert p.error_message("auth_failed", "no") == {
        "type": "error",
        "error": {"code": "auth_failed", "message": "no"},
    }


def test_documented_error_codes_match_the_module():
    """docs/protocol.md lists exactly the error codes the module defines."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    codes = {v for k, v in vars(p.ErrorCode).items() if k.isupper()}
    for code in codes:
        assert f"| `{code}` |" in doc, code


@pytest.mark.parametrize("pad", [0, 4000, 4085, 4090, 20000, 200000])
def test_jpeg_size_is_read_past_a_long_segment_before_the_frame_header(pad):
    """The size check reads the first 4 KB of a JPEG and looks further only when the
    frame header is not in them: a header just inside, straddling or far past that window
    (behind a long APP1 segment, as EXIF or an ICC profile would be) is found, and a size
    it does not match is still refused."""
    import io

    from PIL import Image

    from klasblik.protocol.images import JPEG, image_size

    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (10, 20, 30)).save(buf, "JPEG")
    plain = buf.getvalue()
    segment = b""
    if pad:
        body = b"Exif\0\0" + b"\0" * min(pad, 65533 - 6)
        segment = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
        while len(segment) < pad:  # more than one segment when it is longer than 64 KB
            more = b"\0" * min(pad - len(segment), 65533)
            segment += b"\xff\xe2" + struct.pack(">H", len(more) + 2) + more
    data = plain[:2] + segment + plain[2:]
    assert image_size(JPEG, data) == (64, 36)
    frame = p.encode_frame(p.FrameHeader(p.FrameKind.GRID, p.Encoding.JPEG, 32, 18, 1, 0), data)
    with pytest.raises(p.ProtocolError) as err:
        p.decode_frame(frame, 1024 * 1024)
    assert err.value.code == p.ErrorCode.BAD_IMAGE


def _outcome(frame: bytes, memo: p.ImageMemo | None) -> object:
    try:
        return p.decode_frame(frame, 1024 * 1024, memo=memo)
    except p.ProtocolError as exc:
        return exc.code


@pytest.mark.parametrize("encoding", [p.Encoding.JPEG, p.Encoding.PNG])
def test_a_remembered_image_header_decides_nothing_a_fresh_read_would_not(encoding):
    """An agent's image headers are read once (``ImageMemo``); a forged frame must not
        pass on the strength of an honest one before it. After one honest 64x36 frame, every
        frame made from it by changing one byte of its first 200 bytes (the markers, the
        tables, the size), or by cutting it short there, or by naming an animation where the
    PNG's data begins, gets the same verdict with that memo
        as with none: a 4000x4000 image behind the honest header bytes is still refused."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (10, 20, 30)).save(
        buf, "JPEG" if encoding == p.Encoding.JPEG else "PNG"
    )
    image = buf.getvalue()
    header = p.FrameHeader(p.FrameKind.GRID, encoding, 64, 36, 1, 0)
    memo = p.ImageMemo()
    assert p.decode_frame(p.encode_frame(header, image), memo=memo).width == 64
    variants = [image[:cut] for cut in range(8, min(200, len(image)))]
    variants.append(image.replace(b"IDAT", b"acTL", 1))  # an animation where data was
    for i in range(min(200, len(image))):
        for value in (0x00, 0x10, 0xFF, image[i] ^ 0x01):
            variants.append(image[:i] + bytes([value]) + image[i + 1 :])
    refused = 0
    for variant in variants:
        forged = p.encode_frame(header, variant)
        fresh = _outcome(forged, None)
        assert _outcome(forged, memo) == fresh, variant[:64]
        refused += isinstance(fresh, str)
    assert refused > 50  # the variants do reach the checks


def test_an_image_memo_holds_a_bounded_number_of_headers():
    """A sender cycling through sizes cannot make the memo grow past its limit."""
    import io

    from PIL import Image

    memo = p.ImageMemo()
    for n in range(1, 3 * p.ImageMemo.LIMIT):
        buf = io.BytesIO()
        Image.new("RGB", (n, 8)).save(buf, "JPEG")
        assert memo.check(p.Encoding.JPEG, buf.getvalue(), n, 8)
        assert len(memo._heads) <= p.ImageMemo.LIMIT
