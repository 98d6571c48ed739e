"""The dashboard's pure JavaScript modules under Node's test runner, no browser.

The viewer-frame vectors come from the reference implementation (klasblik.protocol), so
the dashboard's parser and the server agree byte for byte.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from klasblik.protocol import (
    Encoding,
    FrameHeader,
    FrameKind,
    ProtocolError,
    Tile,
    TileEncoding,
    decode_tiles,
    decode_viewer_frame,
    encode_frame,
    encode_tiles,
    encode_viewer_frame,
)
from tests.support.timing import ENV_VAR, TIMEOUT_FACTOR, timeout

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
JS_TESTS = Path(__file__).resolve().parent / "js"

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(40))
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(20)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(30))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _valid(name: str, student_id: int, header: FrameHeader, image: bytes) -> dict:
    data = encode_viewer_frame(student_id, encode_frame(header, image))
    sid, decoded, img = decode_viewer_frame(data)
    return {
        "name": name,
        "data": _b64(data),
        "expect": {
            "student_id": sid,
            "kind": decoded.kind,
            "encoding": decoded.encoding,
            "mime": decoded.mime,
            "width": decoded.width,
            "height": decoded.height,
            "seq": decoded.seq,
            "captured_at_ms": decoded.captured_at_ms,
            "image": _b64(img),
        },
    }


def _invalid(name: str, data: bytes) -> dict:
    try:
        decode_viewer_frame(data)
    except ProtocolError as exc:
        return {"name": name, "data": _b64(data), "code": exc.code}
    raise AssertionError(f"the reference accepted the invalid vector {name!r}")


def frame_vectors() -> dict:
    """Valid and invalid viewer frames with what the reference makes of them."""
    grid = FrameHeader(FrameKind.GRID, Encoding.JPEG, 400, 225, 17, 1_795_000_000_123)
    good = encode_frame(grid, JPEG)
    prefix = encode_viewer_frame(12, b"")
    valid = [
        _valid("grid jpeg", 12, grid, JPEG),
        _valid(
            "focus webp, seq at its maximum",
            987654,
            FrameHeader(FrameKind.FOCUS, Encoding.WEBP, 1280, 720, 2**32 - 1, 2**41 + 5),
            WEBP,
        ),
        _valid(
            "focus png at the size limit",
            7,
            FrameHeader(FrameKind.FOCUS, Encoding.PNG, 7680, 4320, 0, 0),
            PNG,
        ),
    ]
    invalid = [
        _invalid("empty message", b""),
        _invalid("wrong viewer magic", b"KBX1" + encode_viewer_frame(12, good)[4:]),
        _invalid("student ref not digits", b"KBV1\x00\x02a1" + good),
        _invalid("student ref longer than the message", b"KBV1\x00\x09123"),
        _invalid("empty student ref", b"KBV1\x00\x00" + good),
        _invalid("wrong agent magic", prefix + b"KBX1" + good[4:]),
        _invalid("header without image", prefix + good[:24]),
        _invalid("header version 2", prefix + good[:4] + b"\x02" + good[5:]),
        _invalid("unknown kind", prefix + good[:5] + b"\x09" + good[6:]),
        _invalid("unknown encoding", prefix + good[:6] + b"\x07" + good[7:]),
        _invalid("zero width", prefix + good[:8] + b"\x00\x00" + good[10:]),
        _invalid("height over the limit", prefix + good[:10] + b"\x10\xe1" + good[12:]),
        _invalid("png bytes labelled jpeg", prefix + good[:24] + PNG),
    ]
    return {"valid": valid, "invalid": invalid, "tiles": tile_vectors()}


def _real_png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


def tile_vectors() -> dict:
    """Delta-frame bodies (for a 64x36 picture) the reference accepts, with their tiles, and
    ones it refuses, with its code (the dashboard checks them again before painting)."""
    png = _real_png((16, 16))
    record = struct.Struct(">HHHHBBI")
    good = [
        Tile(0, 0, 16, 16, TileEncoding.PNG, png),
        Tile(48, 20, 16, 16, TileEncoding.COPY, source=(0, 0)),
    ]
    valid = []
    for name, tiles in [("png and copy", good), ("one tile", good[:1])]:
        body = encode_tiles(tiles)
        decoded = decode_tiles(body, 64, 36)
        valid.append(
            {
                "name": name,
                "data": _b64(body),
                "expect": [
                    [t.x, t.y, t.width, t.height, t.encoding, *(t.source or (0, 0))]
                    for t in decoded
                ],
            }
        )
    bad = {
        "no tiles": struct.pack(">H", 0),
        "more tiles than carried": struct.pack(">H", 2)
        + record.pack(0, 0, 16, 16, 3, 0, len(png))
        + png,
        "bytes left over": encode_tiles(good[:1]) + b"x",
        "reserved byte set": struct.pack(">H", 1) + record.pack(0, 0, 16, 16, 3, 1, len(png)) + png,
        "tile past the edge": struct.pack(">H", 1)
        + record.pack(56, 0, 16, 16, 3, 0, len(png))
        + png,
        "copy source past the edge": encode_tiles(
            [Tile(0, 0, 16, 16, TileEncoding.COPY, source=(60, 0))]
        ),
        "unknown tile encoding": struct.pack(">H", 1)
        + record.pack(0, 0, 16, 16, 9, 0, len(png))
        + png,
        "png labelled jpeg": struct.pack(">H", 1) + record.pack(0, 0, 16, 16, 1, 0, len(png)) + png,
    }
    invalid = []
    for name, body in bad.items():
        try:
            decode_tiles(body, 64, 36)
        except ProtocolError as exc:
            invalid.append({"name": name, "data": _b64(body), "code": exc.code})
        else:
            raise AssertionError(f"the reference accepted the invalid tiles {name!r}")
    return {"width": 64, "height": 36, "valid": valid, "invalid": invalid}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node (Debian package nodejs) is missing: scripts/lib/system-packages installs it"
        )
    return node


def test_dashboard_js_modules(tmp_path: Path) -> None:
    """frames.js parses and refuses exactly what the reference does; helpers hold."""
    node = _node()
    # Node treats .js as CommonJS without a package.json saying otherwise; the served
    # folder stays free of one, so the modules are copied next to such a file.
    shutil.copytree(ROOT / "dashboard", tmp_path / "dashboard")
    shutil.copytree(JS_TESTS, tmp_path / "js")
    (tmp_path / "package.json").write_text('{"type": "module"}\n')
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps(frame_vectors()))
    tests = sorted(str(p) for p in (tmp_path / "js").glob("*.test.mjs"))
    assert len(tests) >= 2, "the JavaScript test files are missing"
    proc = subprocess.run(
        [node, "--test", *tests],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "KLASBLIK_FRAME_VECTORS": str(vectors),
            "TZ": "Europe/Amsterdam",
            ENV_VAR: str(TIMEOUT_FACTOR),
        },
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert proc.returncode == 0, f"node --test failed:\n{proc.stdout}\n{proc.stderr}"
    assert "# fail 0" in proc.stdout and "# pass " in proc.stdout, proc.stdout
