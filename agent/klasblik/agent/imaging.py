"""From a raw screen grab to an encoded image: size fitting, downscaling, encoding.

Pure Pillow, no screen access, so the same path runs in tests and the benchmark on
in-memory images. The grab stays in the BGRX byte order that screens give (no copy, no
channel swap at full size); channels are put in order only at the small output size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
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
