"""Synthetic screen content for the agent benchmark: a text page, a photo, video frames."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["photo", "text_page", "video_frames"]

_WORDS = [
    "de",
    "het",
    "een",
    "en",
    "van",
    "in",
    "is",
    "dat",
    "op",
    "te",
    "met",
    "voor",
    "zijn",
    "niet",
    "aan",
    "er",
    "maar",
    "om",
    "ook",
    "als",
    "dan",
    "bij",
    "nog",
    "uit",
    "wel",
    "naar",
    "kan",
    "tot",
    "door",
    "over",
    "heeft",
    "hij",
    "zij",
    "we",
    "jullie",
    "rekenen",
    "taal",
    "lezen",
    "blok",
    "opdracht",
    "antwoord",
    "vraag",
    "tabel",
    "breuk",
    "procent",
    "som",
    "schrift",
    "les",
    "groep",
    "klas",
    "toets",
]


def text_page(width: int, height: int, seed: int = 1) -> Image.Image:
    """A document on screen: white page, title bar, many lines of black text, margins."""
    rng = random.Random(seed)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, width, 40), fill=(43, 87, 154))  # an editor's title bar
    draw.rectangle((0, 40, width, 70), fill=(240, 240, 240))  # its toolbar
    left, right = width // 8, width - width // 8
    y = 100
    while y < height - 20:
        if rng.random() < 0.12:  # paragraph break
            y += 18
            continue
        line, x = [], left
        while True:
            word = rng.choice(_WORDS)
            step = (len(word) + 1) * 6
            if x + step > right:
                break
            line.append(word)
            x += step
        draw.text((left, y), " ".join(line), fill=(0, 0, 0))
        y += 18
    return img


def photo(width: int, height: int, seed: int = 2) -> Image.Image:
    """A photo-like image: smooth colour gradients with fine noise."""
    rng = random.Random(seed)
    small = Image.new("RGB", (16, 9))
    small.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(16 * 9)])
    base = small.resize((width, height), Image.Resampling.BICUBIC)
    noise = Image.effect_noise((width, height), 24).convert("RGB")
    return Image.blend(base, noise, 0.15).filter(ImageFilter.SMOOTH)


def video_frames(width: int, height: int, count: int, seed: int = 3) -> list[Image.Image]:
    """Frames of a video playing in a window on a text page: the video part changes."""
    page = text_page(width, height, seed)
    pic = photo(width, height, seed)
    vw, vh = width // 2, height // 2
    frames = []
    for i in range(count):
        frame = page.copy()
        # The "video" pans over the photo, with a moving bright object.
        crop = pic.crop((i * 7, i * 3, i * 7 + vw, i * 3 + vh))
        draw = ImageDraw.Draw(crop)
        cx = (i * 37) % vw
        draw.ellipse((cx - 40, vh // 2 - 40, cx + 40, vh // 2 + 40), fill=(250, 220, 40))
        frame.paste(crop, (width // 4, height // 4))
        frames.append(frame)
    return frames
