"""Changed regions only (agent/klasblik/agent/tiles.py): which tiles count as changed,
how each is coded, and when a whole picture (a key frame) goes out instead."""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageDraw, ImageStat

from klasblik import protocol as p
from klasblik.agent.tiles import (
    GRID_WHOLE_GAP_S,
    KEY_INTERVAL_S,
    SETTLE_S,
    TILE,
    DeltaEncoder,
    changed_rects,
    encode_rect,
    find_scroll,
    mostly_flat,
)
from tests.support.tiles import apply_frame


def _page(size: tuple[int, int] = (400, 225)) -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for y in range(20, size[1] - 10, 12):
        draw.text((10, y), "rekenen taal lezen blok opdracht " * 2, fill=(0, 0, 0))
    return img


def test_one_changed_pixel_is_one_tile_and_none_is_nothing():
    """A single pixel changed gives the one tile around it; equal pictures give none."""
    a = _page()
    b = a.copy()
    b.putpixel((37, 70), (255, 0, 0))
    assert changed_rects(a, a.copy()) == []
    assert changed_rects(a, b) == [(32, 64, TILE, TILE)]


def test_few_colours_are_coded_exactly():
    """Up to PALETTE_COLOURS colours, a palette PNG gives back every pixel unchanged."""
    img = Image.new("RGB", (48, 16), (255, 255, 255))
    ImageDraw.Draw(img).rectangle((4, 4, 20, 10), fill=(0, 0, 0))
    img.putpixel((30, 8), (12, 200, 7))
    enc, data = encode_rect(img, 55)
    assert enc == p.TileEncoding.PNG
    assert Image.open(io.BytesIO(data)).convert("RGB").tobytes() == img.tobytes()


def test_changed_tiles_are_merged_into_few_rectangles_clipped_to_the_picture():
    """A changed band becomes one rectangle, not a tile each; edge tiles are clipped."""
    a = _page()
    b = a.copy()
    ImageDraw.Draw(b).rectangle((0, 200, 399, 224), fill=(9, 9, 9))
    rects = changed_rects(a, b)
    assert rects == [(0, 192, 400, 33)]


def test_text_is_coded_as_a_palette_png_and_a_photo_as_jpeg():
    """Few colours: a lossless palette PNG; many colours: JPEG."""
    enc, data = encode_rect(_page((64, 32)), 55)
    assert enc == p.TileEncoding.PNG and Image.open(io.BytesIO(data)).mode == "P"
    noise = Image.effect_noise((64, 32), 60).convert("RGB")
    photo = Image.merge("RGB", [noise.getchannel(0)] * 2 + [_page((64, 32)).getchannel(0)])
    enc, data = encode_rect(photo, 55)
    assert enc == p.TileEncoding.JPEG and data.startswith(b"\xff\xd8")


def test_deltas_rebuild_the_picture_and_are_small():
    """Key frame first, then deltas: painted in order they give the last picture sent
    (lossless where the tiles are text), at a fraction of a whole picture's bytes."""
    enc = DeltaEncoder()
    first = _page()
    key = enc.encode(first, "jpeg", 55, 0.0, tiles=True)
    assert key is not None and key.key and key.encoding == p.Encoding.JPEG
    enc.commit()
    picture = apply_frame(None, _header(key), key.data)
    typed = first.copy()
    ImageDraw.Draw(typed).text((10, 200), "antwoord: 42", fill=(0, 0, 0))
    delta = enc.encode(typed, "jpeg", 55, 1.0, tiles=True)
    assert delta is not None and not delta.key and delta.encoding == p.Encoding.TILES
    enc.commit()
    assert len(delta.data) < len(key.data) / 4
    picture = apply_frame(picture, _header(delta), delta.data)
    tiles = p.decode_tiles(delta.data, *typed.size)
    assert tiles and all(t.encoding == p.TileEncoding.PNG for t in tiles)
    for t in tiles:  # the changed areas are what was typed, within a palette's rounding
        box = (t.x, t.y, t.x + t.width, t.y + t.height)
        diff = ImageChops.difference(picture.crop(box), typed.crop(box)).convert("L")
        assert diff.getextrema()[1] <= 48 and ImageStat.Stat(diff).mean[0] < 2
    assert enc.encode(typed.copy(), "jpeg", 55, 2.0, tiles=True) is None  # nothing changed


def test_key_frames_come_when_due_when_most_changed_and_without_tiles():
    """A whole picture at the key interval, when most of it changed, after reset, when the
    server takes no deltas; an uncommitted frame is never the base of the next."""
    enc = DeltaEncoder()
    a = _page()
    b = a.copy()
    b.putpixel((5, 5), (1, 2, 3))
    assert enc.encode(a, "jpeg", 55, 0.0, tiles=False) is not None
    enc.commit()
    assert enc.encode(b, "jpeg", 55, 1.0, tiles=False).key  # no tiles: whole pictures
    enc.commit()
    c = b.copy()
    c.putpixel((300, 100), (1, 2, 3))
    assert not enc.encode(c, "jpeg", 55, 2.0, tiles=True).key
    # not committed: the next is coded against b again, and due by the interval
    assert enc.encode(c, "jpeg", 55, 1.0 + KEY_INTERVAL_S, tiles=True).key
    enc.commit()
    flipped = Image.new("RGB", a.size, (0, 0, 0))
    assert enc.encode(flipped, "jpeg", 55, 40.0, tiles=True).key  # most of it changed
    enc.commit()
    enc.reset()
    assert enc.encode(flipped, "jpeg", 55, 41.0, tiles=True).key  # after reset


def test_a_screen_that_settles_after_deltas_is_due_once_whole():
    """After deltas, a picture unchanged for SETTLE_S is due whole (for the stored
    thumbnail); a key frame ends that, and no delta means nothing is due."""
    enc = DeltaEncoder()
    a = _page()
    b = a.copy()
    b.putpixel((5, 5), (1, 2, 3))
    assert enc.encode(a, "jpeg", 55, 0.0, tiles=True).key
    enc.commit()
    assert not enc.settled(100.0)  # only a key frame so far: the stored picture is current
    assert not enc.encode(b, "jpeg", 55, 1.0, tiles=True).key
    assert not enc.settled(100.0)  # not sent: nothing changed on the server's side
    enc.commit()
    assert not enc.settled(1.0 + SETTLE_S - 0.1)
    assert enc.settled(1.0 + SETTLE_S)
    enc.reset()
    assert enc.encode(b, "jpeg", 55, 1.0 + SETTLE_S, tiles=True).key  # the same screen, whole
    enc.commit()
    assert not enc.settled(1000.0)


def test_in_the_grid_a_whole_picture_comes_no_more_often_than_before_tiles():
    """Most of the picture changed (a scroll without a copy, a new page): whole, but at most
    every GRID_WHOLE_GAP_S after the last whole one; held back before that (deferred, so
    the caller grabs again); deltas are never held back, nor asked-for key frames."""
    enc = DeltaEncoder()
    a = _page()
    flipped = Image.new("RGB", a.size, (0, 0, 0))
    assert enc.encode(a, "jpeg", 55, 0.0, tiles=True, whole_gap_s=GRID_WHOLE_GAP_S).key
    enc.commit()
    assert enc.encode(flipped, "jpeg", 55, 1.0, tiles=True, whole_gap_s=GRID_WHOLE_GAP_S) is None
    assert enc.deferred
    small = a.copy()
    small.putpixel((5, 5), (1, 2, 3))
    coded = enc.encode(small, "jpeg", 55, 1.0, tiles=True, whole_gap_s=GRID_WHOLE_GAP_S)
    assert coded is not None and not coded.key and not enc.deferred  # a delta: at once
    later = enc.encode(flipped, "jpeg", 55, GRID_WHOLE_GAP_S, tiles=True, whole_gap_s=2.0)
    assert later is not None and later.key  # the gap has passed
    assert enc.encode(flipped, "jpeg", 55, 1.0, tiles=True).key  # no gap (a close-up)
    enc.reset()  # asked for (a new watch, a new viewer): never held back
    assert enc.encode(flipped, "jpeg", 55, 1.0, tiles=True, whole_gap_s=GRID_WHOLE_GAP_S).key


def test_a_close_up_key_frame_of_text_is_a_palette_png():
    """screen_key: a whole picture of screen content is coded losslessly, as PNG."""
    enc = DeltaEncoder()
    key = enc.encode(_page((1280, 720)), "jpeg", 70, 0.0, tiles=True, screen_key=True)
    assert key is not None and key.key and key.encoding == p.Encoding.PNG


def _header(coded) -> p.FrameHeader:
    return p.FrameHeader(1, coded.encoding, coded.width, coded.height, 1, 0)


def test_smoothed_text_is_screen_content_and_a_photo_is_not():
    """Text with anti-aliased edges (hundreds of greys) still counts as screen content and
    is coded as a palette PNG; a photo-like area does not, and stays JPEG."""
    big = _page((1280, 640))
    draw = ImageDraw.Draw(big)
    for i, y in enumerate(range(6, 640, 40)):  # headings in colours
        draw.text((600, y), "Hoofdstuk 2: breuken", fill=(43, 87, 154 + i % 80))
    text = big.resize((333, 167), Image.Resampling.LANCZOS)  # smoothed edges
    assert len(text.getcolors(1 << 16) or []) > 256
    assert mostly_flat(text) and encode_rect(text, 55)[0] == p.TileEncoding.PNG
    noise = Image.merge("RGB", [Image.effect_noise((320, 160), s) for s in (40, 50, 60)])
    assert not mostly_flat(noise) and encode_rect(noise, 55)[0] == p.TileEncoding.JPEG


def test_a_scrolled_page_is_a_copy_not_new_pixels():
    """A page moved up by 12 rows: one copy tile for the band that moved, tiles only for
    the rows that came in; painted, the band is exactly the new picture's."""
    tall = Image.new("RGB", (400, 600), (255, 255, 255))
    draw = ImageDraw.Draw(tall)
    for n, y in enumerate(range(4, 590, 12)):  # every line its own words
        draw.text((10, y), f"regel {n}: " + "rekenen taal lezen "[n % 7 :] * 2, fill=(0, 0, 0))
    first, scrolled = tall.crop((0, 0, 400, 225)), tall.crop((0, 12, 400, 237))
    assert find_scroll(first, scrolled) == (0, 213, 12, 400 - TILE)
    enc = DeltaEncoder()
    key = enc.encode(first, "jpeg", 55, 0.0, tiles=True)
    enc.commit()
    delta = enc.encode(scrolled, "jpeg", 55, 1.0, tiles=True)
    assert delta is not None and not delta.key
    tiles = p.decode_tiles(delta.data, 400, 225)
    assert tiles[0].encoding == p.TileEncoding.COPY and tiles[0].source == (0, 12)
    assert len(delta.data) < len(key.data) / 3
    base = first  # what the viewer has (the key frame as sent is JPEG: use the exact one)
    picture = apply_frame(base, _header(delta), delta.data)
    band = (0, 0, 400, 200)
    assert picture.crop(band).tobytes() == scrolled.crop(band).tobytes()
    assert find_scroll(first, first.copy()) is None
