"""Size fitting, scaling and encoding of frames, on in-memory images."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from klasblik.agent.imaging import encode_image, fit_size, reduce_factor, render_frame
from klasblik.agent.pacing import ChangeDetector
from klasblik.protocol import Encoding


@pytest.mark.parametrize(
    ("src", "box", "expected"),
    [
        ((1920, 1080), (400, 225), (400, 225)),
        ((1366, 768), (400, 225), (400, 225)),
        ((1280, 1024), (400, 225), (281, 225)),
        ((2560, 1080), (1280, 720), (1280, 540)),
        ((800, 600), (1280, 720), (800, 600)),  # never upscaled
        ((1, 5000), (400, 225), (1, 225)),
    ],
)
def test_fit_size_keeps_aspect_within_box(
    src: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]
) -> None:
    """The result fits the box, keeps the aspect ratio and is never larger than the source."""
    assert fit_size(*src, *box) == expected


def test_fit_size_rejects_empty_sizes() -> None:
    """Zero sizes get an error naming which size is wrong."""
    with pytest.raises(ValueError, match="source size"):
        fit_size(0, 10, 5, 5)
    with pytest.raises(ValueError, match="target size"):
        fit_size(10, 10, 0, 5)


def test_reduce_factor_leaves_at_most_a_twofold_filter_step() -> None:
    """Whole-factor reduction leaves the filter less than 2x (or no reduction at all)."""
    assert reduce_factor(1920, 1080, 400, 225) == 4
    assert reduce_factor(1366, 768, 400, 225) == 3
    assert reduce_factor(1920, 1080, 1280, 720) == 1
    assert reduce_factor(800, 600, 800, 600) == 1


def _bgrx(img: Image.Image) -> bytes:
    return img.convert("RGB").tobytes("raw", "BGRX")


def _decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("encoding", ["jpeg", "webp"])
def test_render_frame_keeps_colours_and_layout(encoding: str) -> None:
    """A red left half and blue right half come out red and blue, in place, at the fitted size."""
    img = Image.new("RGB", (1920, 1080), (220, 20, 20))
    img.paste((20, 40, 230), (960, 0, 1920, 1080))
    frame = render_frame(_bgrx(img), img.size, (400, 225), encoding, 80)
    assert frame is not None
    assert (frame.width, frame.height) == (400, 225)
    assert frame.encoding == Encoding.BY_NAME[encoding]
    out = _decode(frame.data)
    assert out.size == (400, 225)
    for (x, y), colour in (((50, 100), (220, 20, 20)), ((350, 100), (20, 40, 230))):
        assert all(abs(a - b) <= 12 for a, b in zip(out.getpixel((x, y)), colour, strict=False))


def test_render_frame_skips_unchanged_screen() -> None:
    """The same pixels a second time give no frame; a small change gives one again."""
    img = Image.new("RGB", (1366, 768), "white")
    detector = ChangeDetector()
    first = render_frame(_bgrx(img), img.size, (400, 225), "jpeg", 55, detector)
    assert first is not None
    detector.commit()
    assert render_frame(_bgrx(img), img.size, (400, 225), "jpeg", 55, detector) is None
    img.paste((0, 0, 0), (600, 300, 640, 312))  # a word typed
    assert render_frame(_bgrx(img), img.size, (400, 225), "jpeg", 55, detector) is not None


def test_render_frame_rejects_short_grab() -> None:
    """A grab buffer too small for its size is refused with the sizes named."""
    with pytest.raises(ValueError, match="too small for 100x100"):
        render_frame(b"\0" * 100, (100, 100), (50, 50), "jpeg", 50)


def test_encode_image_rejects_bad_quality_and_encoding() -> None:
    """Quality outside 1-100 and unknown encodings are refused, named."""
    img = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="quality"):
        encode_image(img, "jpeg", 0)
    with pytest.raises(ValueError, match="encoding must be one of jpeg, webp"):
        encode_image(img, "gif", 50)
