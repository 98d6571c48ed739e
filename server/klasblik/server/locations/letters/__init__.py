"""Letters to parents and guardians, filled from templates kept next to this module
(``remote_mode_nl.txt``, ``remote_mode_en.txt``; ``string.Template`` placeholders)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from string import Template
from zoneinfo import ZoneInfo

__all__ = ["LANGUAGES", "RemoteModeLetter", "render_remote_mode_letter"]

LANGUAGES = ("nl", "en")

_HERE = Path(__file__).parent

_NL_DAYS = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
_NL_MONTHS = (
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
)
_EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EN_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class RemoteModeLetter:
    """What the letter about a remote-lesson period is filled with."""

    school: str
    location: str
    location_code: str
    start: dt.datetime
    until: dt.datetime
    reason: str
    zone: ZoneInfo
    #: the location's lesson hours as written (e.g. "mon-fri 08:15-15:30"), or "" for none
    lesson_hours: str = ""


def _when(ts: dt.datetime, zone: ZoneInfo, lang: str) -> str:
    local = ts.astimezone(zone)
    if lang == "nl":
        return (
            f"{_NL_DAYS[local.weekday()]} {local.day} {_NL_MONTHS[local.month - 1]} "
            f"{local.year}, {local:%H:%M} uur"
        )
    return (
        f"{_EN_DAYS[local.weekday()]} {local.day} {_EN_MONTHS[local.month - 1]} "
        f"{local.year}, {local:%H:%M}"
    )


def _hours_line(letter: RemoteModeLetter, lang: str) -> str:
    if lang == "nl":
        if letter.lesson_hours:
            return (
                "- Er kan alleen worden meegekeken tijdens de lestijden van de school "
                f"({letter.lesson_hours}). Daarbuiten stuurt het apparaat niets."
            )
        return "- Er kan alleen worden meegekeken terwijl een docent de klas open heeft."
    if letter.lesson_hours:
        return (
            "- Screens can only be viewed during the school's lesson hours "
            f"({letter.lesson_hours}). Outside them the device sends nothing."
        )
    return "- Screens can only be viewed while a teacher has the class open."


def render_remote_mode_letter(letter: RemoteModeLetter, lang: str) -> str:
    """The filled letter as plain text; ``lang`` is ``nl`` or ``en``."""
    if lang not in LANGUAGES:
        raise ValueError(f"no letter in {lang!r}; choose one of {', '.join(LANGUAGES)}")
    template = Template((_HERE / f"remote_mode_{lang}.txt").read_text(encoding="utf-8"))
    return template.substitute(
        school=letter.school,
        location=letter.location,
        location_code=letter.location_code,
        start=_when(letter.start, letter.zone, lang),
        until=_when(letter.until, letter.zone, lang),
        reason=letter.reason.strip(),
        hours_line=_hours_line(letter, lang),
        zone=letter.zone.key,
    )
