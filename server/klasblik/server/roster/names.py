"""Display names under data minimisation: a student is shown (and stored) as first name +
initial of the main surname, never more. Dutch surname prefixes (tussenvoegsels such as
"de", "van der", "'t") are skipped: "Bram" + "de Jong" gives "Bram J."."""

from __future__ import annotations

__all__ = ["PREFIXES", "split_prefix", "student_display_name"]

#: Words that may precede the main surname (lower case).
PREFIXES = frozenset(
    {
        "van",
        "de",
        "der",
        "den",
        "het",
        "te",
        "ter",
        "ten",
        "in",
        "op",
        "aan",
        "bij",
        "uit",
        "voor",
        "onder",
        "over",
        "'t",
        "’t",
        "t",
        "d'",
        "l'",
        "la",
        "le",
        "du",
        "des",
        "di",
        "da",
        "del",
        "dos",
        "von",
        "zu",
        "vom",
        "am",
        "im",
        "af",
        "el",
        "al",
        "'s",
    }
)


def split_prefix(surname: str) -> tuple[str, str]:
    """``("de", "Jong")`` for ``"de Jong"``; the prefix is empty when there is none."""
    words = surname.split()
    i = 0
    while i < len(words) - 1 and words[i].lower() in PREFIXES:
        i += 1
    return " ".join(words[:i]), " ".join(words[i:])


def student_display_name(first_name: str, surname: str) -> str:
    """First name + initial of the main surname: ("Bram", "de Jong") -> "Bram J."."""
    first = " ".join(first_name.split())
    if not first:
        raise ValueError("first name is empty")
    _prefix, main = split_prefix(surname.strip())
    if not main:
        return first
    return f"{first} {main[0].upper()}."
