"""The extension's words: English and Dutch `_locales` with the same messages and the same
placeholders, and every message the extension asks for exists (no browser needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

EXT = Path(__file__).resolve().parents[2] / "agent" / "chrome"


def _messages(lang: str) -> dict[str, dict[str, object]]:
    return dict(json.loads((EXT / "_locales" / lang / "messages.json").read_text("utf-8")))


def test_english_and_dutch_have_the_same_messages_and_placeholders() -> None:
    en, nl = _messages("en"), _messages("nl")
    assert sorted(en) == sorted(nl)
    for name, entry in en.items():
        assert nl[name]["message"], name
        assert entry.get("placeholders") == nl[name].get("placeholders"), name
        used = set(re.findall(r"\$(\w+)\$", str(nl[name]["message"])))
        assert used == {k.upper() for k in entry.get("placeholders", {})}, name  # type: ignore[union-attr]


def test_every_message_used_exists() -> None:
    names = set(_messages("en"))
    manifest = (EXT / "manifest.json").read_text("utf-8")
    used = set(re.findall(r"__MSG_(\w+)__", manifest))
    for path in EXT.glob("*.js"):
        used |= set(re.findall(r"""msg\(\s*["'](\w+)["']""", path.read_text("utf-8")))
        used |= set(re.findall(r"""words\(\s*["'](\w+)["']""", path.read_text("utf-8")))
    for path in EXT.glob("*.html"):
        used |= set(re.findall(r'data-msg="(\w+)"', path.read_text("utf-8")))
    assert used, "no message names found: the test would pass on nothing"
    assert used - names == set(), sorted(used - names)
    assert json.loads(manifest)["default_locale"] == "en"
