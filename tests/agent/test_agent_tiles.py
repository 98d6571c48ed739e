"""Changed regions only (agent/klasblik/agent/tiles.py): which tiles count as changed,
how each is coded, and when a whole picture (a key frame) goes out instead."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from klasblik import protocol as p
from klasblik.agent.imaging import ReducePlan, Reducer, reduce_plan, render_picture
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


SCREEN = (1920, 1080)
#: the grid (1920x1080 by 5: 384x216) and the close-up (3 rows to 2: 1280x720)
VIEWS = {"grid": (400, 225), "close-up": (1280, 720)}


def _long_page(pages: int = 5, seed: int = 3) -> Image.Image:
    """A long document of black text on white, 1920 wide, drawn without smoothing: two
    colours, so that every reduction of it has few colours and its tiles are lossless PNG
    (the pictures can be compared exactly)."""
    rng = random.Random(seed)
    words = ["rekenen", "taal", "lezen", "blok", "opdracht", "de", "het", "breuk", "som"]
    page = Image.new("RGB", (SCREEN[0], SCREEN[1] * pages), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    draw.fontmode = "1"
    for n, y in enumerate(range(8, page.height - 24, 21)):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 36)))
        draw.text((40 + rng.randrange(60), y), f"{n}: {line}", fill=(0, 0, 0))
        if n % 11 == 0:  # a rule across the page
            draw.line((40, y + 18, 1800, y + 18), fill=(0, 0, 0))
    return page


def _bgrx(image: Image.Image) -> bytearray:
    return bytearray(image.tobytes("raw", "BGRX"))


def reduced_group(screen: Image.Image, plan: ReducePlan, group: int, phase: int) -> Image.Image:
    """Picture rows of one group, reduced straight from the screen (RGB) with Pillow."""
    top = group * plan.py + phase
    box = (0, top, screen.width, min(screen.height, top + plan.py))
    if plan.factor:
        return screen.reduce(plan.factor, box=box)
    return screen.resize((plan.target[0], plan.qy), Image.Resampling.BOX, box=box)


def groups_are_true(
    viewer: Image.Image, screen: Image.Image, plan: ReducePlan, where: object
) -> None:
    """Every group of picture rows the viewer shows is the screen's rows reduced by Pillow,
    starting at most half a group off their place (the phases a scroll copy may use)."""
    half = plan.py // 2
    for g in range(plan.groups):
        rows = viewer.crop((0, g * plan.qy, viewer.width, (g + 1) * plan.qy)).tobytes()
        assert any(
            reduced_group(screen, plan, g, phase).tobytes() == rows
            for phase in range(-half, half + 1)
            if plan.valid(g, phase)
        ), (where, g)


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.mark.parametrize("view", VIEWS)
def test_a_scroll_by_any_number_of_rows_is_a_copy_and_the_picture_stays_true(view: str) -> None:
    """Forty scrolls of a long page by amounts that are mostly no multiple of the reduction
    (53 px moves the grid's picture by 10.6 rows): each delta is a copy tile plus the rows
    that came in, far smaller than a whole picture. The picture the viewer builds (the
    tiles painted as the dashboard paints them) is, group by group, an exact reduction of
    the screen as it is now, each group of screen rows (5 in the grid, 3 in the close-up)
    at most py // 2 rows off its place (2 screen pixels: 0.4 of a grid row; 1 pixel: 0.7
    of a close-up row); that offset is what lets a moved band be a move of whole picture
    rows. It never grows: after forty scrolls the picture is no further from a fresh
    reduction than the screen moved by py // 2 rows is."""
    page = _long_page()
    plan = reduce_plan(SCREEN, VIEWS[view])
    assert plan is not None and plan.py == (5 if view == "grid" else 3)
    half = plan.py // 2
    enc = DeltaEncoder()
    top, viewer, key_bytes, copies = 0, None, 0, 0
    steps = [53, 53, -53, 7, 1, -1, 120, 17, -31, 60, 2, 53, 200, -3, 11, 53, 4, -59, 13, 53]
    for i in range(41):
        before = top
        if i:
            top = max(0, min(page.height - SCREEN[1], top + steps[i % len(steps)]))
        screen = page.crop((0, top, SCREEN[0], top + SCREEN[1]))
        coded = enc.encode_grab(
            _bgrx(screen), SCREEN, VIEWS[view], "jpeg", 70, i / 2, screen_key=True
        )
        assert coded is not None
        assert coded.key == (i == 0), i  # no whole picture after the first
        enc.commit()
        viewer = apply_frame(viewer, _header(coded), coded.data)
        if coded.key:
            key_bytes = len(coded.data)
        else:
            tiles = p.decode_tiles(coded.data, coded.width, coded.height)
            assert tiles[0].encoding == p.TileEncoding.COPY, (i, top - before)
            copies += 1
            # new pixels: only the rows that came in (tile-rounded) and the right edge
            came_in = abs(top - before) * plan.qy / plan.py + 2 * TILE + plan.qy
            area = sum(t.width * t.height for t in tiles[1:])
            assert area <= came_in * coded.width + TILE * coded.height, (i, top - before)
            if abs(top - before) == 53:
                assert len(coded.data) < key_bytes / 4, (i, len(coded.data), key_bytes)
        groups_are_true(viewer, screen, plan, i)  # every group: the screen's, half a group off
    assert copies == 40
    fresh = (
        screen.reduce(plan.factor)
        if plan.factor
        else screen.resize(plan.target, Image.Resampling.BOX)
    )
    moved = page.crop((0, top + half, SCREEN[0], top + half + SCREEN[1]))
    moved = (
        moved.reduce(plan.factor)
        if plan.factor
        else moved.resize(plan.target, Image.Resampling.BOX)
    )
    assert viewer.size == fresh.size
    assert _mean_diff(viewer, fresh) <= _mean_diff(moved, fresh)


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((1920, 1080), (400, 225)),
        ((1920, 1080), (1280, 720)),
        ((1366, 768), (400, 225)),
        ((2560, 1440), (1280, 720)),
    ],
)
def test_rows_reduced_alone_are_the_rows_of_the_whole_reduction(size, box) -> None:
    """The reducer reduces only runs of groups; each run gives the very pixels of the
    whole picture reduced at once (random colours: every pixel counts), and a run at a
    phase gives those of the screen moved by that many rows. Also the right edge alone
    (what a scroll copy leaves out)."""
    noise = Image.merge("RGB", [Image.effect_noise(size, 90 + 10 * c) for c in range(3)])
    plan = reduce_plan(size, box)
    assert plan is not None
    full = Image.frombuffer("RGBX", size, bytes(_bgrx(noise)), "raw", "RGBX", 0, 1)
    whole = render_picture(bytes(_bgrx(noise)), size, box, whole_factor=True)
    assert whole is not None and plan.region(full, 0, plan.groups, 0).tobytes() == whole.tobytes()
    rng = random.Random(5)
    for _ in range(12):
        g0 = rng.randrange(1, plan.groups - 2)
        g1 = rng.randrange(g0 + 1, plan.groups - 1)
        part = plan.region(full, g0, g1, 0)
        assert part.tobytes() == whole.crop((0, g0 * plan.qy, whole.width, g1 * plan.qy)).tobytes()
        cw = plan.copy_width
        edge = plan.region(full, g0, g1, 0, cw)
        assert edge.tobytes() == whole.crop((cw, g0 * plan.qy, whole.width, g1 * plan.qy)).tobytes()
        for phase in plan.phases:
            moved = noise.crop((0, phase, size[0], size[1] + phase))  # the screen moved up
            ref = Image.frombuffer("RGBX", size, bytes(_bgrx(moved)), "raw", "RGBX", 0, 1)
            assert (
                plan.region(full, g0, g1, phase).tobytes() == plan.region(ref, g0, g1, 0).tobytes()
            )


def test_the_sizes_decide_how_the_picture_is_made() -> None:
    """Region by region where the groups are small: by a whole factor (the grid of 1920x1080
    by 5, of 1366x768 by 4), 3 rows to 2 (1920x1080 into 1280x720), as is (a screen that
    fits); otherwise the whole grab is resized as before (1366x768 into 1280x720 is 16 rows
    to 15) and the picture is searched for a scroll, which still works."""
    assert reduce_plan((1920, 1080), (400, 225)) == ReducePlan(
        (1920, 1080), (384, 216), 5, 5, 1, 5, 1
    )
    assert reduce_plan((1366, 768), (400, 225)) == ReducePlan(
        (1366, 768), (342, 192), 4, 4, 1, 4, 1
    )
    assert reduce_plan((1920, 1080), (1280, 720)) == ReducePlan(
        (1920, 1080), (1280, 720), 0, 3, 2, 3, 2
    )
    assert reduce_plan((800, 600), (1280, 720)) == ReducePlan((800, 600), (800, 600), 1, 1, 1, 1, 1)
    assert reduce_plan((1366, 768), (1280, 720)) is None
    tall = Image.new("RGB", (1366, 768 * 3), (255, 255, 255))
    draw = ImageDraw.Draw(tall)
    for n, y in enumerate(range(4, tall.height - 20, 16)):
        draw.text((10 + n % 50, y), f"regel {n}: " + "rekenen taal lezen " * (1 + n % 4), fill=0)
    enc = DeltaEncoder()
    for i, top in enumerate((0, 32)):  # 32 rows: 30 of the picture (16 to 15)
        screen = tall.crop((0, top, 1366, top + 768))
        coded = enc.encode_grab(_bgrx(screen), (1366, 768), (1280, 720), "jpeg", 70, float(i))
        assert coded is not None and coded.key == (i == 0)
        enc.commit()
    assert enc.reducer is None
    assert p.decode_tiles(coded.data, 1280, 720)[0].encoding == p.TileEncoding.COPY


@pytest.mark.parametrize("view", VIEWS)
def test_only_the_rows_that_changed_are_reduced(view: str) -> None:
    """An unchanged screen gives nothing and reduces nothing; a word typed reduces only the
    groups of rows it touched, and the picture is still the whole screen's reduction."""
    page = _long_page(pages=1)
    plan = reduce_plan(SCREEN, VIEWS[view])
    reducer = Reducer(plan)
    first = reducer.picture(_bgrx(page))
    assert first is not None and first.reduced_rows == plan.target[1]
    reducer.commit()
    assert reducer.picture(_bgrx(page)) is None
    typed = page.copy()
    draw = ImageDraw.Draw(typed)
    draw.fontmode = "1"
    draw.text((900, 500), "antwoord: 42", fill=(0, 0, 0))
    changed = reducer.picture(_bgrx(typed))
    assert changed is not None and changed.scroll is None
    assert 0 < changed.reduced_rows <= 24 * plan.qy // plan.py + 2 * plan.qy  # ~12 rows of text
    whole = render_picture(_bgrx(typed), SCREEN, VIEWS[view], whole_factor=True)
    assert changed.picture.tobytes() == whole.tobytes()
    # not committed: the next grab is compared with the first again
    assert reducer.picture(_bgrx(page)) is None


def test_a_reduced_frame_not_sent_is_not_the_base_and_bad_grabs_are_refused() -> None:
    """A scroll coded but not sent: the next grab is coded against the last picture sent
    (its copy reads what the viewer has); a reset makes a whole picture, every phase 0;
    a grab too small for its size is refused, naming the sizes."""
    page = _long_page(pages=2)
    enc = DeltaEncoder()
    shots = [page.crop((0, t, 1920, t + 1080)) for t in (0, 53, 106)]
    assert enc.encode_grab(_bgrx(shots[0]), SCREEN, (400, 225), "jpeg", 55, 0.0).key
    enc.commit()
    assert enc.encode_grab(_bgrx(shots[1]), SCREEN, (400, 225), "jpeg", 55, 1.0) is not None
    # not committed: 106 px from the picture sent, not 53 from the one coded
    coded = enc.encode_grab(_bgrx(shots[2]), SCREEN, (400, 225), "jpeg", 55, 2.0)
    copy = p.decode_tiles(coded.data, 384, 216)[0]
    assert copy.encoding == p.TileEncoding.COPY and copy.source[1] - copy.y == 21  # 106 / 5
    enc.commit()
    assert set(enc.reducer.phase) != {0}
    enc.reset()
    assert enc.encode_grab(_bgrx(shots[2]), SCREEN, (400, 225), "jpeg", 55, 3.0).key
    enc.commit()
    assert set(enc.reducer.phase) == {0}
    with pytest.raises(ValueError, match="too small for 1920x1080"):
        enc.encode_grab(b"\0" * 100, SCREEN, (400, 225), "jpeg", 55, 4.0)


@pytest.mark.parametrize(
    "box",
    [
        (1, 1),
        (7, 3),
        (64, 36),
        (399, 225),
        (400, 225),
        (640, 1080),
        (1000, 1000),
        (1279, 720),
        (1920, 1080),
        (4000, 4000),
    ],
)
def test_any_watch_size_the_server_asks_for_gives_the_picture_of_before(box) -> None:
    """The watch's width and height come from the server: whatever they are, the picture
    made region by region (or by the fallback) has the size and the pixels the whole-grab
    path gives, and a second, changed grab still rebuilds it exactly."""
    noise = Image.merge("RGB", [Image.effect_noise(SCREEN, 60 + 20 * c) for c in range(3)])
    enc = DeltaEncoder()
    coded = enc.encode_grab(_bgrx(noise), SCREEN, box, "jpeg", 55, 0.0, screen_key=True)
    assert coded is not None and coded.key
    enc.commit()
    whole = render_picture(_bgrx(noise), SCREEN, box, whole_factor=True)
    assert (coded.width, coded.height) == whole.size
    assert enc._last is not None and enc._last.tobytes() == whole.tobytes()
    changed = noise.copy()
    changed.paste((0, 0, 0), (300, 200, 900, 260))
    delta = enc.encode_grab(_bgrx(changed), SCREEN, box, "jpeg", 55, 1.0, screen_key=True)
    assert delta is not None
    enc.commit()
    whole = render_picture(_bgrx(changed), SCREEN, box, whole_factor=True)
    assert enc._last.tobytes() == whole.tobytes()
