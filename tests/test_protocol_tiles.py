"""Delta frames (encoding 4, changed tiles): what a hostile agent can send gets a specific
error code, and a good delta decodes to its tiles (docs/protocol.md, "Delta frames")."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from klasblik import protocol as p


def _png(size: tuple[int, int], color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def _jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 0, 0)).save(out, "JPEG")
    return out.getvalue()


def _delta(body: bytes, width: int = 400, height: int = 225, kind: int = 1) -> bytes:
    header = p.FrameHeader(kind, p.Encoding.TILES, width, height, 5, 1_700_000_000_000)
    return p.encode_frame(header, body)


def _tile(x: int, y: int, w: int, h: int, enc: int, data: bytes, reserved: int = 0) -> bytes:
    return struct.pack(">HHHHBBI", x, y, w, h, enc, reserved, len(data)) + data


def _body(*tiles: bytes, count: int | None = None) -> bytes:
    return struct.pack(">H", len(tiles) if count is None else count) + b"".join(tiles)


def _code(data: bytes) -> str:
    with pytest.raises(p.ProtocolError) as info:
        p.decode_frame(data)
    return info.value.code


def test_a_delta_round_trips_its_tiles():
    """Tiles encoded with encode_tiles decode to the same tiles; the header is no key."""
    tiles = [
        p.Tile(0, 0, 32, 32, p.TileEncoding.PNG, _png((32, 32))),
        p.Tile(32, 64, 64, 32, p.TileEncoding.JPEG, _jpeg((64, 32))),
        p.Tile(0, 100, 400, 100, p.TileEncoding.COPY, source=(0, 120)),
    ]
    data = _delta(p.encode_tiles(tiles))
    header = p.decode_frame(data)
    assert header.encoding == p.Encoding.TILES and not header.key
    assert p.decode_tiles(data[p.FRAME_HEADER_SIZE :], 400, 225) == tiles
    assert p.decode_frame(p.encode_frame(p.FrameHeader(1, 3, 32, 32, 1, 0), _png((32, 32)))).key


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "bad_frame"),  # nothing after the header at all
        (b"\x00", "bad_tiles"),  # no whole tile count
        (_body(count=0), "bad_tiles"),
        (_body(count=p.MAX_TILES + 1), "bad_tiles"),
        (_body(count=2) + _tile(0, 0, 8, 8, 3, _png((8, 8))), "bad_tiles"),  # one missing
        (_body(_tile(0, 0, 8, 8, 3, _png((8, 8)))) + b"junk", "bad_tiles"),  # left over
        (_body(_tile(0, 0, 8, 8, 3, _png((8, 8)))[:-10]), "bad_tiles"),  # bytes cut short
        (_body(_tile(0, 0, 8, 8, 3, b"")), "bad_tiles"),  # empty tile
        (_body(_tile(0, 0, 8, 8, 3, _png((8, 8)), reserved=1)), "bad_tiles"),
        (_body(*[_tile(0, 0, 400, 225, 0, b"\x00\x00\x00\x00")] * 2), "bad_tiles"),  # > area
        (_body(_tile(0, 0, 0, 8, 3, _png((8, 8)))), "tile_out_of_bounds"),  # empty size
        (_body(_tile(396, 0, 8, 8, 3, _png((8, 8)))), "tile_out_of_bounds"),  # past the right
        (_body(_tile(0, 220, 8, 8, 3, _png((8, 8)))), "tile_out_of_bounds"),  # past the bottom
        (_body(_tile(65535, 65535, 8, 8, 3, _png((8, 8)))), "tile_out_of_bounds"),
        (_body(_tile(0, 0, 8, 8, 0, struct.pack(">HH", 395, 0))), "tile_out_of_bounds"),
        (_body(_tile(0, 0, 8, 8, 0, b"\x00\x00")), "bad_tiles"),  # copy without 4 bytes
        (_body(_tile(0, 0, 8, 8, 9, _png((8, 8)))), "bad_frame"),  # unknown tile encoding
        (_body(_tile(0, 0, 8, 8, 1, _png((8, 8)))), "bad_frame"),  # says JPEG, is PNG
        (_body(_tile(0, 0, 8, 8, 3, _png((9, 8)))), "bad_image"),  # size not its record's
        (_body(_tile(0, 0, 8, 8, 3, b"\x89PNG\r\n\x1a\nbroken")), "bad_image"),
        (_body(_tile(0, 0, 8, 8, 2, b"RIFF\x00\x00\x00\x00WEBPjunk")), "bad_image"),
    ],
)
def test_malformed_deltas_get_their_codes(body: bytes, code: str):
    """Each way of breaking a delta frame has its own code; none is accepted."""
    assert _code(_delta(body)) == code


def test_frame_flags_must_be_zero():
    """The reserved flags byte is checked: a frame cannot smuggle meaning into it."""
    good = _delta(_body(_tile(0, 0, 8, 8, 3, _png((8, 8)))))
    assert _code(good[:7] + b"\x01" + good[8:]) == "bad_frame"


def test_a_delta_for_a_huge_picture_is_refused_by_its_header():
    """The picture size is checked before any tile is looked at."""
    assert _code(_delta(_body(_tile(0, 0, 8, 8, 3, _png((8, 8)))), width=9000)) == "bad_frame"


def test_viewer_side_decoding_skips_the_tile_checks():
    """The dashboard path (check_image=False) takes a delta the server checked already."""
    data = _delta(_body(_tile(0, 0, 8, 8, 3, _png((8, 8)))))
    sid, header, body = p.decode_viewer_frame(p.encode_viewer_frame(9, data))
    assert (sid, header.encoding, body) == (9, p.Encoding.TILES, data[p.FRAME_HEADER_SIZE :])
