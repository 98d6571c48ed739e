"""The width and height an encoded image says it has, read from its header, never decoded.

A frame is relayed to browsers and stored exactly as the agent sent it, so what a browser
will decode is what counts: a small file that claims a huge canvas (a decompression bomb)
must be refused before anyone decodes it. Each reader here looks only at the header bytes:

- JPEG: the markers up to the first start-of-frame (SOF0-SOF15, not DHT/JPG/DAC), whose
  height and width are the image's;
- PNG: the IHDR chunk, which the format requires to come first; an animated PNG (``acTL``
  before the image data) is refused;
- WebP: the first chunk: ``VP8`` (lossy: the key frame's 14-bit sizes), ``VP8L``
  (lossless: 14-bit sizes minus one) or ``VP8X`` (extended: the 24-bit canvas); an
  animated WebP is refused.
"""

from __future__ import annotations

import struct
from typing import Final

from klasblik.protocol.codes import ErrorCode
from klasblik.protocol.errors import ProtocolError

__all__ = ["JPEG", "PNG", "WEBP", "ImageMemo", "image_size", "image_size_and_span"]

JPEG: Final = 1
WEBP: Final = 2
PNG: Final = 3

#: how far into a JPEG the start-of-frame may be (past EXIF, ICC profiles, tables)
_JPEG_SCAN: Final = 256 * 1024
#: the bytes read first (all a PNG or WebP header needs, and a screenshot JPEG's)
_HEAD: Final = 4096
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE: Final = frozenset([0x01, *range(0xD0, 0xD8)])
#: chunks a PNG may have before its image data; more than this is not a screenshot
_PNG_MAX_CHUNKS: Final = 64


def _bad(why: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_IMAGE, why)


def image_size(encoding: int, data: bytes | memoryview) -> tuple[int, int]:
    """(width, height) of the image in ``data`` by its header, or ProtocolError
    (``bad_image``) when the header is not a valid one of ``encoding``."""
    return image_size_and_span(encoding, data)[0]


def image_size_and_span(
    encoding: int, data: bytes | memoryview
) -> tuple[tuple[int, int], int | None]:
    """:func:`image_size`, and how many leading bytes of ``data`` decided it: any image
    that starts with those same bytes has that size, valid (None: no such prefix, as
    for a WebP, whose first bytes hold its length)."""
    view = bytes(data[:_HEAD])
    if encoding == JPEG:
        # the frame header is near the start of a screenshot's JPEG: look further (past
        # EXIF, ICC profiles, tables) only when it is not within the first bytes
        found = _jpeg(view, complete=len(data) <= _HEAD)
        if found is None:
            found = _jpeg(bytes(data[:_JPEG_SCAN]), complete=True)
        assert found is not None  # complete: a size or an error
        width, height, end = found
        return (width, height), end
    if encoding == PNG:
        return _png(view)
    if encoding == WEBP:
        return _webp(view), None
    raise _bad(f"unknown image encoding {encoding}")


class ImageMemo:
    """The header bytes of the images of one sender already read, per encoding and size:
    an image that starts with the same bytes as one read before has that size and is
    not read again. A screen's encoder writes the same header (markers, tables, size) in
    front of every picture of one size and quality, so reading it once per connection
    is enough. Holds at most ``LIMIT`` headers (then starts again)."""

    LIMIT: Final = 32

    __slots__ = ("_heads",)

    def __init__(self) -> None:
        self._heads: dict[tuple[int, int, int], bytes] = {}

    def check(self, encoding: int, data: bytes | memoryview, width: int, height: int) -> bool:
        """True when the image in ``data`` is ``width`` x ``height`` by its header (read
        or remembered); False when its header gives another size; ProtocolError when it
        is not a valid header of ``encoding``."""
        key = (encoding, width, height)
        head = self._heads.get(key)
        if head is not None and data[: len(head)] == head:
            return True
        size, span = image_size_and_span(encoding, data)
        if size != (width, height):
            return False
        if span is not None:
            if len(self._heads) >= self.LIMIT:
                self._heads.clear()
            self._heads[key] = bytes(data[:span])
        return True


def _jpeg(b: bytes, complete: bool = True) -> tuple[int, int, int] | None:
    """The JPEG's size from its frame header in ``b``, and where the size ends; None
    when ``b`` ends before it and is not ``complete`` (the caller looks further)."""
    if not b.startswith(b"\xff\xd8"):
        raise _bad("not a JPEG: no start-of-image marker")
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            raise _bad(f"JPEG marker expected at byte {i}")
        while i < len(b) and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= len(b):
            break
        marker = b[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            raise _bad("JPEG has no frame header before its image data")
        if i + 2 > len(b):
            break
        (length,) = struct.unpack_from(">H", b, i)
        if length < 2:
            raise _bad("JPEG segment with a bad length")
        if marker in _SOF:
            if i + 7 > len(b) and not complete:
                return None  # it goes on past the bytes looked at
            if length < 8 or i + 7 > len(b):
                raise _bad("JPEG frame header cut short")
            height, width = struct.unpack_from(">HH", b, i + 3)
            if width == 0 or height == 0:  # a height given later (DNL) is not accepted
                raise _bad("JPEG frame header without a size")
            return width, height, i + 7
        i += length
    if not complete:
        return None
    raise _bad("JPEG frame header not found near the start")


def _png(b: bytes) -> tuple[tuple[int, int], int | None]:
    """The PNG's size, and where the chunk that ends the header (IDAT, IEND) is named:
    no span when the bytes looked at ended before it."""
    if not b.startswith(b"\x89PNG\r\n\x1a\n"):
        raise _bad("not a PNG: no signature")
    if len(b) < 33 or b[12:16] != b"IHDR":
        raise _bad("PNG does not start with its IHDR chunk")
    width, height = struct.unpack_from(">II", b, 16)
    if width == 0 or height == 0:
        raise _bad("PNG with an empty size")
    i = 33  # after IHDR (8 signature + 4 length + 4 type + 13 data + 4 crc)
    for _ in range(_PNG_MAX_CHUNKS):
        if i + 8 > len(b):
            break  # the rest is beyond the header bytes looked at
        (length,) = struct.unpack_from(">I", b, i)
        kind = b[i + 4 : i + 8]
        if kind == b"acTL":
            raise _bad("animated PNG images are not accepted")
        if kind in (b"IDAT", b"IEND"):
            return (width, height), i + 8
        i += 12 + length
    return (width, height), None


def _webp(b: bytes) -> tuple[int, int]:
    if len(b) < 30 or b[:4] != b"RIFF" or b[8:12] != b"WEBP":
        raise _bad("not a WebP: no RIFF/WEBP header")
    chunk = b[12:16]
    if chunk == b"VP8 ":
        if b[23:26] != b"\x9d\x01\x2a":
            raise _bad("WebP (lossy) without a key frame start code")
        w, h = struct.unpack_from("<HH", b, 26)
        width, height = w & 0x3FFF, h & 0x3FFF
    elif chunk == b"VP8L":
        if b[20] != 0x2F:
            raise _bad("WebP (lossless) without its signature byte")
        (bits,) = struct.unpack_from("<I", b, 21)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X":
        if b[20] & 0x02:
            raise _bad("animated WebP images are not accepted")
        width = int.from_bytes(b[24:27], "little") + 1
        height = int.from_bytes(b[27:30], "little") + 1
    else:
        raise _bad(f"WebP with an unknown first chunk {chunk!r}")
    if width == 0 or height == 0:
        raise _bad("WebP with an empty size")
    return width, height
