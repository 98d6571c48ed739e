"""Changed regions only: compare a picture with the last one sent, tile by tile, and encode
only the tiles that changed, each in the coding that suits it (docs/protocol.md, "Delta
frames").

Pure Pillow, no numpy: the tile comparison is one ``ImageChops.difference`` of the two
pictures, thresholded and box-reduced to one byte per 16 × 16 tile (all in C), so a
1280 × 720 picture is compared in about a millisecond. Changed tiles are merged into
runs along each tile row and runs of the same columns down the rows, so a changed area is
a few rectangles, not hundreds of small images.

Each rectangle is coded by what it shows: few colours (text, lines, flat areas: the
common case on a school screen) as a PNG with a palette, lossless and small; many colours
(photos, video) as JPEG at the watch's quality. Chromium decodes both natively.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageChops

from klasblik.agent.imaging import (
    COPY_EDGE,
    Reducer,
    Scroll,
    encode_image,
    reduce_plan,
    render_picture,
    row_shift,
)
from klasblik.agent.pacing import ChangeDetector
from klasblik.protocol import Encoding, Tile, TileEncoding, encode_tiles

__all__ = [
    "FLAT_COLOURS",
    "FLAT_SHARE",
    "KEY_AREA",
    "KEY_INTERVAL_S",
    "PALETTE_COLOURS",
    "SCREEN_COLOURS",
    "TILE",
    "DeltaEncoder",
    "Encoded",
    "changed_rects",
    "encode_rect",
    "find_scroll",
    "mostly_flat",
]

#: Side of a comparison tile, in pixels of the sent picture.
TILE: Final = 16
#: A key frame (the whole picture) at least this often while the screen changes, so the
#: stored thumbnail (only ever a key frame) stays current.
KEY_INTERVAL_S: Final = 30.0
#: A picture that has stayed the same this long after deltas is sent once more, whole: the
#: stored thumbnail (only ever a key frame) then shows the screen as it has settled, not as
#: it was at the last key frame (up to KEY_INTERVAL_S before).
SETTLE_S: Final = 10.0
#: In the grid, a whole picture because most of it changed (a scroll without a copy, a new
#: page, a video filling the screen) goes out at most this often: the grid's rate before
#: changed tiles, so the grid never costs more bytes than it did then; deltas go out at
#: every interval. Key frames asked for (a new watch, a new viewer, a lost frame) are not
#: held back.
GRID_WHOLE_GAP_S: Final = 2.0
#: Changed share of the picture from which a whole picture costs less than its tiles.
KEY_AREA: Final = 0.6
#: An area with at most this many colours is screen content (text, lines, flat areas),
#: coded as a palette PNG of at most :data:`PALETTE_COLOURS` colours.
SCREEN_COLOURS: Final = 256
PALETTE_COLOURS: Final = 32
#: An area whose FLAT_COLOURS main colours cover FLAT_SHARE of it is screen content too
#: (text with smoothed edges: measured on real Chromium pages, 128 colours cover 97-99 %;
#: on a photo or video, thousands of colours share the area).
FLAT_COLOURS: Final = 128
FLAT_SHARE: Final = 0.95
#: Columns of unchanged tiles a run may bridge (one image instead of two small ones).
_GAP: Final = 2

Rect = tuple[int, int, int, int]


def changed_rects(previous: Image.Image, current: Image.Image, tile: int = TILE) -> list[Rect]:
    """Rectangles (x, y, w, h) covering every pixel that differs; same-size RGB images."""
    diff = ImageChops.difference(previous, current).convert("L")
    if diff.getbbox() is None:
        return []
    # Any difference becomes 255; the box reduction then keeps at least 255/256 > 0.5.
    mask = diff.point(lambda v: 255 if v else 0).reduce(tile)
    cols, rows = mask.size
    cells = mask.tobytes()
    width, height = current.size
    open_runs: dict[tuple[int, int], list[int]] = {}  # (c0, c1) -> [row0, rows]
    out: list[Rect] = []
    for r in range(rows):
        row = cells[r * cols : (r + 1) * cols]
        runs: list[tuple[int, int]] = []
        c = 0
        while c < cols:
            if row[c]:
                start = c
                end = c + 1
                c += 1
                while c < cols and (row[c] or any(row[c : c + _GAP + 1])):
                    if row[c]:
                        end = c + 1
                    c += 1
                runs.append((start, end))
            else:
                c += 1
        still: dict[tuple[int, int], list[int]] = {}
        for run in runs:
            if run in open_runs:
                span = open_runs.pop(run)
                span[1] += 1
                still[run] = span
            else:
                still[run] = [r, 1]
        for (c0, c1), (r0, n) in open_runs.items():
            out.append(_rect(c0, c1, r0, n, tile, width, height))
        open_runs = still
    for (c0, c1), (r0, n) in open_runs.items():
        out.append(_rect(c0, c1, r0, n, tile, width, height))
    return out


def find_scroll(previous: Image.Image, current: Image.Image) -> Scroll | None:
    """(y0, y1, dy, width) when rows y0..y1 of ``current`` are rows y0+dy..y1+dy of
    ``previous`` exactly over their first ``width`` pixels (all but the right edge, where a
    scrollbar moves), for a band of at least a quarter of the picture; else None
    (:func:`klasblik.agent.imaging.row_shift` on the picture's rows). For pictures not made
    by a :class:`~klasblik.agent.imaging.Reducer`, which finds scrolls on the full grab."""
    width, height = current.size
    if width > 4 * COPY_EDGE:  # leave out the right edge: a scrollbar's thumb moves there
        width -= COPY_EDGE
        previous = previous.crop((0, 0, width, height))
        current = current.crop((0, 0, width, height))
    stride = width * len(current.getbands())
    old, new = previous.tobytes(), current.tobytes()
    rows_old = [old[y * stride : (y + 1) * stride] for y in range(height)]
    rows_new = [new[y * stride : (y + 1) * stride] for y in range(height)]
    shift = row_shift(rows_old, rows_new)
    return None if shift is None else (*shift, width)


def _outside(rect: Rect, scroll: Scroll) -> Rect:
    """``rect`` less the rows it shares with the copied band, where that leaves one
    rectangle (a changed tile row that reaches into the band from above or below: the band
    equals the new picture, and the tiles' areas together must not exceed the picture's)."""
    x, y, w, h = rect
    y0, y1, _, width = scroll
    if x + w > width or y >= y1 or y + h <= y0:
        return rect
    if y < y0 and y + h <= y1:
        return (x, y, w, y0 - y)
    if y >= y0 and y + h > y1:
        return (x, y1, w, y + h - y1)
    return rect


def _rect(c0: int, c1: int, r0: int, n: int, tile: int, width: int, height: int) -> Rect:
    x, y = c0 * tile, r0 * tile
    return (x, y, min(c1 * tile, width) - x, min((r0 + n) * tile, height) - y)


def _png_level(image: Image.Image) -> int:
    """zlib effort: 6 for small areas; 4 for a close-up's whole picture, where 6 costs
    half as much time again for 4 % fewer bytes (measured: docs/performance.md)."""
    return 4 if image.width * image.height > 200_000 else 6


def mostly_flat(image: Image.Image) -> bool:
    """Whether its :data:`FLAT_COLOURS` main colours cover at least :data:`FLAT_SHARE` of
    the area (text on a page, with its smoothed edges), judged on every fourth pixel of every
    fourth row (a sample, not an average: averaging would blur text into many colours)."""
    small = (
        image.resize((image.width // 4, image.height // 4), Image.Resampling.NEAREST)
        if image.width >= 64 and image.height >= 64
        else image
    )
    colours = small.getcolors(4096)
    if colours is None:  # thousands of colours: a photo
        return False
    counts = sorted((n for n, _ in colours), reverse=True)
    return sum(counts[:FLAT_COLOURS]) >= FLAT_SHARE * small.width * small.height


def encode_rect(image: Image.Image, quality: int) -> tuple[int, bytes]:
    """(tile encoding, bytes) of an RGB area: a palette PNG when it has at most
    :data:`SCREEN_COLOURS` colours (text, lines, flat areas; more than
    :data:`PALETTE_COLOURS` are merged to that many, which keeps text sharp) or is
    :func:`mostly_flat`, else JPEG at ``quality`` (photos, video)."""
    out = io.BytesIO()
    colours = image.getcolors(SCREEN_COLOURS)
    if colours is not None:
        if len(colours) <= PALETTE_COLOURS:  # exactly these colours: lossless
            palette = Image.new("P", (1, 1))
            flat: list[int] = []
            for _, rgb in colours:
                assert isinstance(rgb, tuple)  # an RGB image's colours are triples
                flat.extend(rgb)
            palette.putpalette(flat)
            coded = image.quantize(palette=palette, dither=Image.Dither.NONE)
        else:
            coded = image.quantize(
                PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
            )
        coded.save(out, "PNG", compress_level=_png_level(image))
        return TileEncoding.PNG, out.getvalue()
    if mostly_flat(image):  # text with smoothed edges: its main colours, as a palette
        image.quantize(
            PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        ).save(out, "PNG", compress_level=_png_level(image))
        return TileEncoding.PNG, out.getvalue()
    image.save(out, "JPEG", quality=quality)
    return TileEncoding.JPEG, out.getvalue()


@dataclass(frozen=True, slots=True)
class Encoded:
    """What to send: a whole picture (``key``) or a delta's body, and its header values."""

    data: bytes
    encoding: int
    width: int
    height: int
    key: bool


#: ``scroll`` of :meth:`DeltaEncoder.encode` when the picture is to be searched for one.
_SEARCH: Final = (-1, -1, 0, 0)


class DeltaEncoder:
    """Remembers the last picture sent and codes the next one as a key frame or a delta.

    :meth:`encode` does not change what is remembered; :meth:`commit` does, once the frame
    went out (a frame that was not sent is never the base of the next one).
    :meth:`encode_grab` makes the picture itself, from the grab, with a
    :class:`~klasblik.agent.imaging.Reducer` where the sizes allow one.
    """

    def __init__(self, key_interval_s: float = KEY_INTERVAL_S) -> None:
        self.key_interval_s = key_interval_s
        self._last: Image.Image | None = None
        self._last_key_at = float("-inf")
        self._pending: tuple[Image.Image, bool, float] | None = None
        #: when the last delta went out, while no key frame has followed it
        self._delta_at: float | None = None
        #: the last encode held back a whole picture (``whole_gap_s``): nothing was coded
        self.deferred = False
        self._plan_key: object = None
        self._reducer: Reducer | None = None
        self._reduced = False  # the pending frame's picture is the reducer's pending one

    def settled(self, now: float, after_s: float = SETTLE_S) -> bool:
        """Deltas went out since the last key frame, and none for ``after_s``: the screen
        has settled, and a key frame of it is due (see :data:`SETTLE_S`)."""
        return self._delta_at is not None and now - self._delta_at >= after_s

    def reset(self) -> None:
        """The next frame is a key frame (a new watch, a new viewer, a new connection)."""
        self._last = None
        self._pending = None
        if self._reducer is not None:
            self._reducer.reset()

    @property
    def reducer(self) -> Reducer | None:
        """The reducer of the last :meth:`encode_grab`, if its sizes allow one."""
        return self._reducer

    def encode_grab(
        self,
        raw: bytes | bytearray,
        size: tuple[int, int],
        max_size: tuple[int, int],
        encoding: str,
        quality: int,
        now: float,
        *,
        screen_key: bool = False,
        whole_gap_s: float = 0.0,
        detector: ChangeDetector | None = None,
    ) -> Encoded | None:
        """Code a grab (BGRX of ``size``) as a frame of changed tiles, its picture fitting
        ``max_size``; None when nothing changed or a whole picture was held back.

        Where the sizes allow (:func:`~klasblik.agent.imaging.reduce_plan`: 1920x1080 into
        400x225 or 1280x720), the picture is made by a reducer from the last one sent: no
        scaling when the screen is unchanged, only the changed rows scaled, and a scroll by
        any number of screen rows found on the grab and sent as a copy. Elsewhere the whole
        grab is scaled (:func:`~klasblik.agent.imaging.render_picture`, ``detector`` skipping
        an unchanged screen) and the picture searched for a scroll."""
        key = (size, max_size)
        if key != self._plan_key:
            self._plan_key = key
            plan = reduce_plan(size, max_size)
            self._reducer = None if plan is None else Reducer(plan)
        reducer = self._reducer
        scroll: Scroll | None = _SEARCH
        if reducer is None:
            picture = render_picture(raw, size, max_size, detector, whole_factor=True)
        else:
            if self._last is None:
                reducer.reset()  # a whole picture: reduced afresh, every phase 0
            reduction = reducer.picture(raw)
            picture = None if reduction is None else reduction.picture
            if reduction is not None:
                scroll = reduction.scroll
        if picture is None:
            return None
        coded = self.encode(
            picture,
            encoding,
            quality,
            now,
            tiles=True,
            screen_key=screen_key,
            whole_gap_s=whole_gap_s,
            scroll=scroll,
        )
        if reducer is not None:
            self._reduced = coded is not None
        return coded

    def encode(
        self,
        image: Image.Image,
        encoding: str,
        quality: int,
        now: float,
        *,
        tiles: bool,
        screen_key: bool = False,
        whole_gap_s: float = 0.0,
        scroll: Scroll | None = _SEARCH,
    ) -> Encoded | None:
        """Code ``image`` (RGB) against the last picture sent; None when nothing changed.

        A key frame (``encoding`` at ``quality``, as a whole) when ``tiles`` is off, at the
        first frame, when the size changed, when the last key frame is older than the key
        interval, or when most of the picture changed. With ``screen_key`` a key frame of
        screen content is a palette PNG instead (a close-up of text: far smaller and sharp).
        A whole picture because most of it changed comes at most every ``whole_gap_s``
        after the last whole one; before that, None with :attr:`deferred` set (nothing is
        committed, so the next grab is coded against the last picture sent again).
        ``scroll``: the copy a reducer found (or None: none), instead of a search of the
        picture (:func:`find_scroll`)."""
        self.deferred = False
        self._reduced = False
        last = self._last
        due = now - self._last_key_at >= self.key_interval_s
        if tiles and last is not None and last.size == image.size and not due:
            parts: list[Tile] = []
            base = last
            if scroll == _SEARCH:
                scroll = find_scroll(last, image)
            if scroll is not None:  # a scrolled page: a copy within the picture
                y0, y1, dy, band_w = scroll
                base = last.copy()
                base.paste(last.crop((0, y0 + dy, band_w, y1 + dy)), (0, y0))
                parts.append(Tile(0, y0, band_w, y1 - y0, TileEncoding.COPY, source=(0, y0 + dy)))
            rects = changed_rects(base, image)
            if scroll is not None:  # the copied band is the new picture's: not again
                rects = [_outside(r, scroll) for r in rects]
            if not rects and not parts:
                return None
            area = sum(w * h for _, _, w, h in rects)
            copied = sum(t.width * t.height for t in parts)
            whole = image.width * image.height
            if area < KEY_AREA * whole and area + copied <= whole:
                for x, y, w, h in rects:
                    enc, data = encode_rect(image.crop((x, y, x + w, y + h)), quality)
                    parts.append(Tile(x, y, w, h, enc, data))
                self._pending = (image, False, now)
                return Encoded(encode_tiles(parts), Encoding.TILES, *image.size, key=False)
            if now - self._last_key_at < whole_gap_s:
                self.deferred = True  # most of it changed: whole, but not yet
                return None
        elif (
            tiles
            and last is not None
            and last.size == image.size
            and ImageChops.difference(last, image).getbbox() is None
        ):
            return None
        self._pending = (image, True, now)
        if screen_key:
            enc, data = encode_rect(image, quality)
            return Encoded(data, enc, *image.size, key=True)
        data = encode_image(image, encoding, quality)
        return Encoded(data, Encoding.BY_NAME[encoding], *image.size, key=True)

    def commit(self) -> None:
        """The frame last returned by :meth:`encode` was sent."""
        if self._pending is not None:
            image, key, at = self._pending
            self._last = image
            if key:
                self._last_key_at = at
                self._delta_at = None
            else:
                self._delta_at = at
            self._pending = None
            if self._reducer is not None:
                if self._reduced:
                    self._reducer.commit()
                else:  # a picture the reducer did not make: it starts afresh
                    self._reducer.reset()
            self._reduced = False
