"""Binary frames: the agent's 24-byte ``KBF1`` header plus the encoded image (or a list of
changed tiles), and the dashboard's ``KBV1`` prefix naming the student in front of the agent
frame as it came.

A frame whose encoding is ``TILES`` (4) is a *delta*: after the header, a tile count and
that many ``(x, y, w, h, encoding, length)`` records, each followed by its bytes: an image
of exactly ``w`` × ``h`` to paint at ``(x, y)``, or (``COPY``) a 4-byte source position to
copy a ``w`` × ``h`` area from within the picture as it stood before this frame (a scroll).
It applies to the picture built from the last full frame (a *key frame*) of the same kind
and size and every delta since.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NamedTuple

from klasblik.protocol.codes import (
    DEFAULT_MAX_FRAME_BYTES,
    ErrorCode,
)
from klasblik.protocol.errors import ProtocolError
from klasblik.protocol.images import ImageMemo, image_size

__all__ = [
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "MAX_TILES",
    "VIEWER_MAGIC",
    "Encoding",
    "FrameHeader",
    "FrameKind",
    "Tile",
    "TileEncoding",
    "decode_frame",
    "decode_tiles",
    "decode_viewer_frame",
    "encode_frame",
    "encode_tiles",
    "encode_viewer_frame",
    "viewer_frame_prefix",
]

FRAME_MAGIC: Final = b"KBF1"
VIEWER_MAGIC: Final = b"KBV1"

# magic, header version, kind, encoding, flags, width, height, seq, captured_at_ms
_FRAME_STRUCT: Final = struct.Struct(">4sBBBBHHIQ")
FRAME_HEADER_SIZE: Final = _FRAME_STRUCT.size  # 24
_VIEWER_STRUCT: Final = struct.Struct(">4sH")  # magic, student ref length
# x, y, width, height, tile encoding, reserved (0), length of the tile's bytes
_TILE_STRUCT: Final = struct.Struct(">HHHHBBI")
_COPY_STRUCT: Final = struct.Struct(">HH")  # source x, source y
#: Most tiles one delta frame may carry (a 1920x1080 picture in 32-pixel tiles is 2040).
MAX_TILES: Final = 4096


class FrameKind:
    GRID: Final = 1
    FOCUS: Final = 2
    ALL: Final = (1, 2)


class Encoding:
    JPEG: Final = 1
    WEBP: Final = 2
    PNG: Final = 3
    #: a delta: changed tiles against the picture so far (see the module's docstring)
    TILES: Final = 4
    ALL: Final = (1, 2, 3, 4)
    #: encodings of a whole picture (a key frame)
    IMAGES: Final = (1, 2, 3)
    MIME: Final = {
        1: "image/jpeg",
        2: "image/webp",
        3: "image/png",
        4: "application/x-klasblik-tiles",
    }
    BY_NAME: Final = {"jpeg": 1, "webp": 2, "png": 3}


class TileEncoding:
    """What one tile of a delta frame carries."""

    COPY: Final = 0  #: 4 bytes: the source (x, y) of an area copied within the picture
    JPEG: Final = 1
    WEBP: Final = 2
    PNG: Final = 3
    ALL: Final = (0, 1, 2, 3)


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile of a delta frame: paint ``data`` (or copy from ``source``) at (x, y)."""

    x: int
    y: int
    width: int
    height: int
    encoding: int
    data: bytes = b""
    source: tuple[int, int] | None = None


# Leading bytes of each image encoding, so a frame cannot claim to be what it is not.
_SIGNATURES: Final = {
    Encoding.JPEG: (b"\xff\xd8\xff",),
    Encoding.PNG: (b"\x89PNG\r\n\x1a\n",),
    Encoding.WEBP: (b"RIFF",),
}


class FrameHeader(NamedTuple):
    """The 24-byte header in front of every agent frame (a named tuple: one is made for
    every frame the server receives, and a tuple is made fastest)."""

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

    @property
    def key(self) -> bool:
        """Whether this is a whole picture (a key frame), not a delta."""
        return self.encoding != Encoding.TILES


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


def decode_frame(
    data: bytes,
    max_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    *,
    check_image: bool = True,
    memo: ImageMemo | None = None,
) -> FrameHeader:
    """Validate an agent frame and return its header; the image is ``data[24:]``.

    Checks size, magic, version, kind, encoding, dimensions, that the image bytes start
    with the signature of the encoding named, and that the image's own header gives the
    same width and height as the frame header (``bad_image`` otherwise; skipped with
    ``check_image=False``, for frames the server checked already). Never decodes the image.
    ``memo``: the image headers of this sender read before (an image that starts with
    the same bytes as one of them is not read again).
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
    if flags != 0:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"unknown frame flags {flags}")
    if encoding == Encoding.TILES:
        if check_image:
            decode_tiles(memoryview(data)[FRAME_HEADER_SIZE:], width, height, memo)
        return FrameHeader(kind, encoding, width, height, seq, ts, flags, version)
    if not data.startswith(_SIGNATURES[encoding], FRAME_HEADER_SIZE):
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            f"image bytes do not look like {Encoding.MIME[encoding]}",
        )
    if check_image:
        image = memoryview(data)[FRAME_HEADER_SIZE:]
        if not (memo or ImageMemo()).check(encoding, image, width, height):
            real = image_size(encoding, image)
            raise ProtocolError(
                ErrorCode.BAD_IMAGE,
                f"the image is {real[0]}x{real[1]} but its frame header says {width}x{height}",
            )
    return FrameHeader(kind, encoding, width, height, seq, ts, flags, version)


def encode_tiles(tiles: list[Tile]) -> bytes:
    """The body of a delta frame (what follows its header) for ``tiles``."""
    parts = [struct.pack(">H", len(tiles))]
    for t in tiles:
        if t.encoding == TileEncoding.COPY:
            if t.source is None:
                raise ValueError("a copy tile needs its source")
            body = _COPY_STRUCT.pack(*t.source)
        else:
            body = t.data
        parts.append(_TILE_STRUCT.pack(t.x, t.y, t.width, t.height, t.encoding, 0, len(body)))
        parts.append(body)
    return b"".join(parts)


def _bad_tiles(why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_TILES, why)


def decode_tiles(
    body: bytes | memoryview, width: int, height: int, memo: ImageMemo | None = None
) -> list[Tile]:
    """Validate the body of a delta frame for a ``width`` × ``height`` picture; its tiles.

    ``bad_tiles``: no tiles or more than :data:`MAX_TILES`, a record or its bytes cut
    short, bytes left over, a reserved byte not 0, tiles covering more than the picture's
    area in all; ``tile_out_of_bounds``: a tile (or a copy's source) not inside the
    picture; ``bad_frame``: an unknown tile encoding or image bytes without its signature;
    ``bad_image``: a tile image whose own header gives another size than its record.
    Never decodes an image.
    """
    view = memoryview(body)
    if len(view) < 2:
        raise _bad_tiles("delta frame has no tile count")
    (count,) = struct.unpack_from(">H", view, 0)
    if not 1 <= count <= MAX_TILES:
        raise _bad_tiles(f"a delta frame carries 1 to {MAX_TILES} tiles, not {count}")
    tiles: list[Tile] = []
    area = 0
    i = 2
    for n in range(count):
        if i + _TILE_STRUCT.size > len(view):
            raise _bad_tiles(f"tile {n} record cut short")
        x, y, w, h, enc, reserved, length = _TILE_STRUCT.unpack_from(view, i)
        i += _TILE_STRUCT.size
        if reserved != 0:
            raise _bad_tiles(f"tile {n} has a reserved byte of {reserved}")
        if w < 1 or h < 1 or x + w > width or y + h > height:
            raise ProtocolError(
                ErrorCode.TILE_OUT_OF_BOUNDS,
                f"tile {n} ({x},{y} {w}x{h}) is not inside the {width}x{height} picture",
            )
        area += w * h
        if area > width * height:
            raise _bad_tiles("the tiles cover more than the whole picture")
        if enc not in TileEncoding.ALL:
            raise ProtocolError(ErrorCode.BAD_FRAME, f"tile {n} has an unknown encoding {enc}")
        if length < 1 or i + length > len(view):
            raise _bad_tiles(f"tile {n} bytes cut short")
        chunk = view[i : i + length]
        i += length
        if enc == TileEncoding.COPY:
            if length != _COPY_STRUCT.size:
                raise _bad_tiles(f"copy tile {n} must carry 4 bytes, not {length}")
            sx, sy = _COPY_STRUCT.unpack_from(chunk)
            if sx + w > width or sy + h > height:
                raise ProtocolError(
                    ErrorCode.TILE_OUT_OF_BOUNDS,
                    f"copy tile {n} source ({sx},{sy} {w}x{h}) is not inside the picture",
                )
            tiles.append(Tile(x, y, w, h, enc, source=(sx, sy)))
            continue
        start = bytes(chunk[:8])
        if not any(start.startswith(sig) for sig in _SIGNATURES[enc]):
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"tile {n} bytes do not look like {Encoding.MIME[enc]}"
            )
        if not (memo or ImageMemo()).check(enc, chunk, w, h):
            real = image_size(enc, chunk)
            raise ProtocolError(
                ErrorCode.BAD_IMAGE,
                f"tile {n} image is {real[0]}x{real[1]} but its record says {w}x{h}",
            )
        tiles.append(Tile(x, y, w, h, enc, bytes(chunk)))
    if i != len(view):
        raise _bad_tiles(f"{len(view) - i} bytes after the last tile")
    return tiles


@lru_cache(maxsize=1 << 16)
def viewer_frame_prefix(student_id: int) -> bytes:
    """The bytes the server puts in front of an agent frame for dashboards (made once per
    student: every relayed frame needs them)."""
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
    header = decode_frame(frame, max_bytes=len(frame), check_image=False)  # the server did
    return int(ref), header, bytes(frame[FRAME_HEADER_SIZE:])
