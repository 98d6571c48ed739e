"""From a raw screen grab to an encoded image: size fitting, downscaling, encoding.

Pure Pillow, no screen access, so the same path runs in tests and the benchmark on
in-memory images. The grab stays in the BGRX byte order that screens give (no copy, no
channel swap at full size); channels are put in order only at the small output size.

For frames of changed tiles, :class:`Reducer` makes each picture from the last one sent:
only the screen rows that changed are scaled, and a scroll by any number of rows, found on
the full-resolution rows, becomes an exact move of picture rows (docs/agent.md).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from typing import Final

from PIL import Image

from klasblik.agent.pacing import ChangeDetector
from klasblik.protocol import Encoding

__all__ = [
    "ENCODINGS",
    "WEBP_METHOD",
    "WHOLE_FACTOR_SHARE",
    "EncodedImage",
    "encode_image",
    "fit_size",
    "longest_run",
    "reduce_factor",
    "render_frame",
    "render_picture",
    "shrink",
    "whole_factor_size",
]

#: A screen grab's bytes (mss gives a bytearray).
Buffer = bytes | bytearray

#: Encodings the agent can produce, by protocol name.
ENCODINGS: Final = ("jpeg", "webp")
#: libwebp effort (0 fastest .. 6 smallest); see docs/agent.md for the figures behind it.
WEBP_METHOD: Final = 0
#: How much smaller than the fitted size a whole-factor reduction may be (each way).
WHOLE_FACTOR_SHARE: Final = 0.85


def fit_size(src_w: int, src_h: int, max_w: int, max_h: int) -> tuple[int, int]:
    """Largest size within ``max_w`` × ``max_h`` with the source's aspect; never larger."""
    if src_w < 1 or src_h < 1:
        raise ValueError(f"source size must be positive, got {src_w}x{src_h}")
    if max_w < 1 or max_h < 1:
        raise ValueError(f"target size must be positive, got {max_w}x{max_h}")
    scale = min(max_w / src_w, max_h / src_h, 1.0)
    width = min(max_w, max(1, round(src_w * scale)))
    height = min(max_h, max(1, round(src_h * scale)))
    return width, height


def reduce_factor(src_w: int, src_h: int, dst_w: int, dst_h: int) -> int:
    """Whole factor to box-reduce by first, leaving at most a 2× step for the filter.

    Box reduction by a whole factor is several times cheaper than a filtered resize
    of the full frame and averages every pixel (text does not flicker in and out).
    """
    factor = min(src_w // dst_w, src_h // dst_h)
    return factor if factor >= 2 else 1


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """One encoded image and what the frame header must say about it."""

    data: bytes
    encoding: int
    width: int
    height: int


def shrink(
    raw: Buffer, size: tuple[int, int], target: tuple[int, int], factor: int | None = None
) -> tuple[Image.Image, Buffer]:
    """Box-reduce a BGRX grab towards ``target``; return the image and bytes to compare.

    The comparison bytes are the reduced pixels when there was a reduction (cheap to
    checksum), else the raw grab itself.
    """
    width, height = size
    if len(raw) < width * height * 4:
        raise ValueError(f"grab of {len(raw)} bytes is too small for {width}x{height} BGRX")
    # Channels are really B, G, R, X; they are swapped at the end, at the small size.
    full = Image.frombuffer("RGBX", size, raw, "raw", "RGBX", 0, 1)
    if factor is None:
        factor = reduce_factor(width, height, *target)
    if factor == 1:
        return full, raw
    mid = full.reduce(factor)
    return mid, mid.tobytes()


def _finish(
    mid: Image.Image,
    target: tuple[int, int],
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """Filter ``mid`` (BGRX) to exactly ``target`` and return it as RGB."""
    if mid.size != target:
        mid = mid.resize(target, resample)
    return Image.frombytes("RGB", target, mid.tobytes(), "raw", "BGRX")


def encode_image(image: Image.Image, encoding: str, quality: int) -> bytes:
    """Encode an RGB image as ``jpeg`` or ``webp`` at ``quality`` (1-100)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    out = io.BytesIO()
    if encoding == "jpeg":
        image.save(out, "JPEG", quality=quality, optimize=True)
    elif encoding == "webp":
        image.save(out, "WEBP", quality=quality, method=WEBP_METHOD)
    else:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    return out.getvalue()


def whole_factor_size(
    size: tuple[int, int], max_size: tuple[int, int], fitted: tuple[int, int]
) -> tuple[int, int] | None:
    """The size a box reduction by one whole factor gives within ``max_size`` (1920x1080
    in 400x225: by 5, 384x216), when it is at least :data:`WHOLE_FACTOR_SHARE` of the
    ``fitted`` size each way; else None. A picture reduced by a whole factor only is
    exact under a scroll by a multiple of it: a scrolled page is then a copy."""
    width, height = size
    factor = max(-(-width // max_size[0]), -(-height // max_size[1]))
    if factor < 2:
        return None
    out = (-(-width // factor), -(-height // factor))
    if out[0] < WHOLE_FACTOR_SHARE * fitted[0] or out[1] < WHOLE_FACTOR_SHARE * fitted[1]:
        return None
    return out


def render_picture(
    raw: Buffer,
    size: tuple[int, int],
    max_size: tuple[int, int],
    detector: ChangeDetector | None = None,
    *,
    whole_factor: bool = False,
) -> Image.Image | None:
    """Grab bytes (BGRX) → RGB image fitting ``max_size``; None when unchanged.

    With a ``detector``, pixels equal to those of the last committed frame give None
    and cost no scaling beyond the box reduction. With ``whole_factor`` the picture is a
    box reduction by one whole factor where that is nearly as large
    (:func:`whole_factor_size`), for frames of changed tiles.
    """
    target = fit_size(size[0], size[1], *max_size)
    factor = None
    if whole_factor:
        exact = whole_factor_size(size, max_size, target)
        if exact is not None:
            target = exact
            factor = max(-(-size[0] // max_size[0]), -(-size[1] // max_size[1]))
    mid, compare = shrink(raw, size, target, factor)
    if detector is not None and not detector.changed((size, target), compare):
        return None
    # No whole-factor reduction (1920x1080 -> 1280x720): one resize of the full grab, where
    # BOX (area averaging) costs two thirds of BILINEAR (7.6 against 11.3 ms here).
    resample = Image.Resampling.BOX if mid.size == size else Image.Resampling.BILINEAR
    return _finish(mid, target, resample)


def render_frame(
    raw: Buffer,
    size: tuple[int, int],
    max_size: tuple[int, int],
    encoding: str,
    quality: int,
    detector: ChangeDetector | None = None,
) -> EncodedImage | None:
    """Grab bytes (BGRX) → image fitting ``max_size``, encoded; None when unchanged
    (see :func:`render_picture`)."""
    image = render_picture(raw, size, max_size, detector)
    if image is None:
        return None
    target = image.size
    data = encode_image(image, encoding, quality)
    return EncodedImage(data, Encoding.BY_NAME[encoding], target[0], target[1])


#: Right edge of the picture left out of a scroll copy (a scrollbar's thumb moves there),
#: in pixels of the picture, when the picture is wider than four times it.
COPY_EDGE: Final = 16
#: Largest whole number of screen rows a region-wise reduction works in (5 for 1920x1080
#: by 5; 3 rows to 2 for 1920x1080 to 1280x720); longer periods fall back to one resize.
MAX_PERIOD: Final = 8

#: (y0, y1, dy, width): picture rows y0..y1 over their first ``width`` columns are rows
#: y0+dy..y1+dy of the last picture (a copy tile).
Scroll = tuple[int, int, int, int]


def longest_run(flags: Sequence[bool]) -> tuple[int, int]:
    """(start, end) of the longest run of true flags (the first of equals; (0, 0): none)."""
    best, start = (0, 0), None
    for i, ok in enumerate([*flags, False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def row_shift(old: Sequence[object], new: Sequence[object]) -> tuple[int, int, int] | None:
    """(y0, y1, dy) when ``new[y] == old[y + dy]`` for every y in y0..y1, a band of at least
    a quarter of the rows; else None. Rows found at most twice in ``old`` that changed in
    place vote for the shift (at least an eighth of the rows must); the longest run of rows
    that match under it is the band. Rows are anything hashable (bytes, checksums)."""
    height = len(new)
    where: dict[object, list[int]] = {}
    for y, row in enumerate(old):
        where.setdefault(row, []).append(y)
    votes: dict[int, int] = {}
    for y, row in enumerate(new):
        found = where.get(row)
        if found and len(found) <= 2 and old[y] != row:
            for y_old in found:
                votes[y_old - y] = votes.get(y_old - y, 0) + 1
    if not votes:
        return None
    dy = max(votes, key=votes.__getitem__)
    if dy == 0 or votes[dy] < height // 8:
        return None
    best = longest_run([0 <= y + dy < height and new[y] == old[y + dy] for y in range(height)])
    if best[1] - best[0] < height // 4:
        return None
    return best[0], best[1], dy


def _ratio(src: int, dst: int) -> tuple[int, int] | None:
    """(p, q): ``dst`` pixels are made of ``src`` ones in groups of p to q, p ≤ MAX_PERIOD,
    q a power of two (so that BOX's window edges are exact in floating point and a region
    resized alone gives the very pixels of the whole resize); else None."""
    g = gcd(src, dst)
    p, q = src // g, dst // g
    if p > MAX_PERIOD or q & (q - 1):
        return None
    return p, q


@dataclass(frozen=True, slots=True)
class ReducePlan:
    """How a grab of ``size`` becomes the picture of ``target``, region by region.

    The screen's rows are taken in *groups* of ``py`` rows that make ``qy`` rows of the
    picture (5 to 1 for 1920x1080 by 5, 3 to 2 for 1920x1080 to 1280x720), columns alike
    (``px`` to ``qx``). Each group may start up to ``py // 2`` screen rows off its place
    (its *phase*): a page scrolled by any number of rows is then an exact move of whole
    groups of the picture (docs/agent.md, "A scrolled page is a copy"). Any run of groups
    reduced alone gives the same pixels as the whole picture reduced at once
    (``tests/agent/test_agent_imaging.py``)."""

    size: tuple[int, int]
    target: tuple[int, int]
    factor: int  # a whole factor (Image.reduce), or 0: one BOX resize
    px: int
    qx: int
    py: int
    qy: int

    @property
    def groups(self) -> int:
        return -(-self.size[1] // self.py)

    @property
    def phases(self) -> range:
        return range(-(self.py // 2), (self.py - 1) // 2 + 1)

    @property
    def copy_width(self) -> int:
        """Picture columns a scroll copy covers (all but :data:`COPY_EDGE`)."""
        width = self.target[0]
        if width <= 4 * COPY_EDGE:
            return width
        return (width - COPY_EDGE) // self.qx * self.qx

    @property
    def copy_columns(self) -> int:
        """Screen columns under :attr:`copy_width`."""
        return min(self.size[0], self.copy_width * self.px // self.qx)

    def valid(self, group: int, phase: int) -> bool:
        """Whether ``group`` may start ``phase`` rows off: all its rows on the screen."""
        top = group * self.py + phase
        return phase == 0 or (top >= 0 and top + self.py <= self.size[1])

    def rows(self, group: int, phase: int) -> tuple[int, int]:
        """Screen rows of ``group`` at ``phase``."""
        top = group * self.py + phase
        return top, min(self.size[1], top + self.py)

    def region(self, full: Image.Image, g0: int, g1: int, phase: int, x0: int = 0) -> Image.Image:
        """Picture rows of groups g0..g1 at ``phase``, columns from ``x0`` (a multiple of
        qx) on, reduced from ``full`` (the grab, BGRX as RGBX), as RGB."""
        width, height = self.size
        top = g0 * self.py + phase
        bottom = min(height, g1 * self.py + phase)
        left = x0 * self.px // self.qx
        if self.factor:
            box = (left, top, width, bottom)
            part = full.reduce(self.factor, box=box) if self.factor > 1 else full.crop(box)
        else:
            out = (self.target[0] - x0, (g1 - g0) * self.qy)
            part = full.resize(out, Image.Resampling.BOX, box=(left, top, width, bottom))
        return Image.frombytes("RGB", part.size, part.tobytes(), "raw", "BGRX")


def reduce_plan(size: tuple[int, int], max_size: tuple[int, int]) -> ReducePlan | None:
    """The region-wise plan giving the picture :func:`render_picture` gives with
    ``whole_factor`` (the same size and the same pixels), or None where that picture is
    not made in small groups of rows (two steps, or a long period such as 768 to 720)."""
    width, height = size
    fitted = fit_size(width, height, *max_size)
    exact = whole_factor_size(size, max_size, fitted)
    if exact is not None:
        f = max(-(-width // max_size[0]), -(-height // max_size[1]))
        if f > MAX_PERIOD:
            return None
        return ReducePlan(size, exact, f, f, 1, f, 1)
    if fitted == size:
        return ReducePlan(size, size, 1, 1, 1, 1, 1)
    if reduce_factor(width, height, *fitted) != 1:
        return None
    x, y = _ratio(width, fitted[0]), _ratio(height, fitted[1])
    if x is None or y is None:
        return None
    return ReducePlan(size, fitted, 0, x[0], x[1], y[0], y[1])


@dataclass(frozen=True, slots=True)
class _Reduced:
    raw: Buffer
    keys: list[int]  # crc32 of each screen row's first copy_columns pixels
    edges: list[int]  # crc32 of the rest of each row
    picture: Image.Image
    phase: list[int]  # per group


@dataclass(frozen=True, slots=True)
class Reduction:
    """A new picture, and the scroll copy in it (picture pixels), if any."""

    picture: Image.Image
    scroll: Scroll | None
    #: picture rows made from the grab (the rest was the last picture's, moved or not)
    reduced_rows: int


class Reducer:
    """Makes the picture of each grab from the last one sent, reducing only what changed.

    The grab's rows are compared with the last committed grab's by checksum (an unchanged
    screen costs one compare of the bytes and no scaling); a page scrolled by any number of
    screen rows is found on the full-resolution rows (:func:`row_shift`), and the groups of
    the band that moved are given the phase that makes them an exact move of groups of the
    last picture: they are copied, not reduced again, and go out as one copy tile. Only the
    groups whose rows changed, or came in, are reduced from the grab.

    :meth:`picture` does not change what is remembered; :meth:`commit` does, once the frame
    went out. Not for concurrent use (one capture thread owns it).
    """

    def __init__(self, plan: ReducePlan) -> None:
        self.plan = plan
        self._base: _Reduced | None = None
        self._pending: _Reduced | None = None

    def reset(self) -> None:
        """Forget the last picture: the next one is reduced whole, every phase 0."""
        self._base = None
        self._pending = None

    def commit(self) -> None:
        """The picture last returned by :meth:`picture` was sent."""
        if self._pending is not None:
            self._base = self._pending
            self._pending = None

    @property
    def phase(self) -> list[int]:
        """Phase of each group of the last committed picture (all 0 before any)."""
        return list(self._base.phase) if self._base else [0] * self.plan.groups

    def picture(self, raw: Buffer) -> Reduction | None:
        """The picture of ``raw`` (BGRX of the plan's size); None when the grab equals
        the last committed one."""
        plan = self.plan
        width, height = plan.size
        stride = width * 4
        if len(raw) < stride * height:
            raise ValueError(f"grab of {len(raw)} bytes is too small for {width}x{height} BGRX")
        base = self._base
        if base is not None and raw is not base.raw and raw == base.raw:
            return None
        view = memoryview(raw)
        main = plan.copy_columns * 4
        crc = zlib.crc32
        starts = range(0, stride * height, stride)
        keys = [crc(view[o : o + main]) for o in starts]
        edges = [crc(view[o + main : o + stride]) for o in starts] if main < stride else keys
        full = Image.frombuffer("RGBX", plan.size, raw, "raw", "RGBX", 0, 1)
        if base is None:
            picture = plan.region(full, 0, plan.groups, 0)
            self._pending = _Reduced(raw, keys, edges, picture, [0] * plan.groups)
            return Reduction(picture, None, picture.height)
        dirty = [
            k != b or e != f for k, b, e, f in zip(keys, base.keys, edges, base.edges, strict=True)
        ]
        if not any(dirty):
            return None
        phase = list(base.phase)
        copy: tuple[int, int, int, int] | None = None  # groups ga..gb, k groups, phase
        shift = row_shift(base.keys, keys) if plan.py * 4 <= height else None
        if shift is not None:
            copy = self._scroll(shift, base.phase, phase)
        picture = base.picture.copy()
        reduced = 0
        qy, h = plan.qy, plan.target[1]
        if copy is not None:
            ga, gb, k, pn = copy
            src = ((ga + k) * qy, min(h, (gb + k) * qy))
            cw = plan.copy_width
            picture.paste(base.picture.crop((0, src[0], cw, src[1])), (0, ga * qy))
            if cw < plan.target[0]:  # the right edge (a scrollbar) from the grab
                picture.paste(plan.region(full, ga, gb, pn, cw), (cw, ga * qy))
        run: tuple[int, int] | None = None  # groups g0.. of one phase to reduce
        for g in range(plan.groups + 1):
            need = False
            if g < plan.groups and not (copy is not None and copy[0] <= g < copy[1]):
                top, bottom = plan.rows(g, phase[g])
                need = phase[g] != base.phase[g] or any(dirty[top:bottom])
            if run is not None and (not need or phase[g] != phase[run[0]]):
                g0, g1 = run[0], g
                part = plan.region(full, g0, g1, phase[g0])
                picture.paste(part, (0, g0 * qy))
                reduced += part.height
                run = None
            if need and run is None:
                run = (g, g)
        self._pending = _Reduced(raw, keys, edges, picture, phase)
        scroll = None
        if copy is not None:
            ga, gb, k, _ = copy
            scroll = (ga * qy, min(h, gb * qy), k * qy, plan.copy_width)
        return Reduction(picture, scroll, reduced)

    def _scroll(
        self, shift: tuple[int, int, int], old: list[int], phase: list[int]
    ) -> tuple[int, int, int, int] | None:
        """For screen rows y0..y1 moved from y0+dy..y1+dy: the groups ga..gb of the new
        picture that are groups ga+k..gb+k of the last one at the new phase pn, as
        (ga, gb, k, pn); sets ``phase`` of the groups the scroll moved or brought in."""
        plan = self.plan
        y0, y1, dy = shift
        height, p = plan.size[1], plan.py
        votes: dict[int, int] = {}
        for g, ph in enumerate(old):
            top, bottom = plan.rows(g, ph)
            if y0 + dy <= top and bottom <= y1 + dy:
                votes[ph] = votes.get(ph, 0) + 1
        if not votes:
            return None
        ps = max(votes, key=votes.__getitem__)  # the moved band's phase in the last picture
        lo = plan.phases.start
        pn = (ps - dy - lo) % p + lo
        k = (pn + dy - ps) // p
        # the part of the screen that scrolled: the band and the rows that came in
        r0, r1 = (y0, min(height, y1 + dy)) if dy > 0 else (max(0, y0 + dy), y1)
        moved: list[bool] = []
        for g in range(plan.groups):
            ok = False
            if plan.valid(g, pn):
                top, bottom = plan.rows(g, pn)
                if r0 <= top and bottom <= r1 and bottom - top == p:
                    phase[g] = pn
                src = g + k
                ok = (
                    y0 <= top
                    and bottom <= y1
                    and bottom - top == p
                    and 0 <= src < plan.groups
                    and old[src] == ps
                )
            moved.append(ok)
        best = longest_run(moved)
        if (best[1] - best[0]) * p < height // 4:
            return None
        return best[0], best[1], k, pn
