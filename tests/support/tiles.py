"""Painting delta frames onto the picture so far, in Pillow: what the dashboard does on its
canvas, for tests that look at what a teacher would see (docs/protocol.md, "Delta frames")."""

from __future__ import annotations

import io

from PIL import Image

from klasblik import protocol as p

__all__ = ["apply_frame"]


def apply_frame(picture: Image.Image | None, header: p.FrameHeader, body: bytes) -> Image.Image:
    """The picture after ``header`` + ``body``: a key frame's image, or ``picture`` with a
    delta's tiles painted (copies read the picture as it stood before the frame)."""
    if header.key:
        return Image.open(io.BytesIO(body)).convert("RGB")
    assert picture is not None and picture.size == (header.width, header.height), "no base"
    before = picture.copy()
    out = picture.copy()
    for tile in p.decode_tiles(body, header.width, header.height):
        if tile.encoding == p.TileEncoding.COPY:
            assert tile.source is not None
            sx, sy = tile.source
            area = before.crop((sx, sy, sx + tile.width, sy + tile.height))
        else:
            area = Image.open(io.BytesIO(tile.data)).convert("RGB")
        out.paste(area, (tile.x, tile.y))
    return out
