"""Private use is spared from monitoring: while the active window's title carries a word of
the school's list (``welcome.private_titles``: private mail, health, banking, counselling),
the screen is not captured at all; the server is told "private page" and gets no title.

Kept apart from the capture loop so the rule is one small pure function."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PrivateWatch", "is_private_title"]


def is_private_title(title: str | None, words: Iterable[str]) -> bool:
    """Whether ``title`` contains one of ``words`` (case-insensitive)."""
    if not title:
        return False
    low = title.casefold()
    return any(w.strip() and w.strip().casefold() in low for w in words)


class PrivateWatch:
    """Remembers whether the last look was private, so that the server is told only of
    changes: ``update`` returns True (now private), False (no longer), or None (no change)."""

    def __init__(self) -> None:
        self.private = False

    def update(self, private: bool) -> bool | None:
        if private == self.private:
            return None
        self.private = private
        return private

    def reset(self) -> None:
        self.private = False
