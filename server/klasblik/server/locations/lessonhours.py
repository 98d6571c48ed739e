"""Lesson hours: the days and times of a location when monitoring may happen at all.

Written as rules separated by ``;`` or new lines, each ``DAYS TIMES``:
``mon-fri 08:15-15:30``, ``mon,tue,thu,fri 08:15-15:30; wed 08:15-12:30``,
``ma-vr 08:15-12:00,12:30-15:30``. Days in English (mon..sun) or Dutch (ma..zo); a range
wraps nothing (``fri-mon`` is an error). Times are local to the location's time zone; an
interval includes its start and excludes its end. An empty text means: any time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from klasblik.protocol.errors import KlasblikError

__all__ = ["LessonHours", "LessonHoursError", "parse_lesson_hours", "parse_timezone"]

_DAYS = {
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
    "ma": 0,
    "di": 1,
    "wo": 2,
    "do": 3,
    "vr": 4,
    "za": 5,
    "zo": 6,
}
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


class LessonHoursError(KlasblikError, ValueError):
    """Lesson hours or time zone that cannot be used; the message says what is wrong."""

    code = "invalid_lesson_hours"
    status = 400


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise LessonHoursError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Amsterdam"
        ) from None


@dataclass(frozen=True)
class LessonHours:
    """Parsed lesson hours: per weekday (0 = Monday) the open intervals in minutes."""

    days: tuple[tuple[tuple[int, int], ...], ...]
    zone: ZoneInfo
    text: str

    def is_open(self, when: dt.datetime) -> bool:
        """True when monitoring is allowed at the aware moment ``when``."""
        local = when.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.days[local.weekday()])

    def describe(self) -> str:
        return f"{self.text} ({self.zone.key})"


def _minutes(text: str, rule: str) -> int:
    m = _TIME.match(text.strip())
    if not m:
        raise LessonHoursError(f"{text!r} in {rule!r} is not a time like 08:15")
    value = int(m.group(1)) * 60 + int(m.group(2))
    if value > 24 * 60:
        raise LessonHoursError(f"{text!r} in {rule!r} is past 24:00")
    return value


def _days(text: str, rule: str) -> list[int]:
    out: list[int] = []
    for part in text.lower().split(","):
        part = part.strip()
        if "-" in part:
            a, _, b = part.partition("-")
            if a.strip() not in _DAYS or b.strip() not in _DAYS:
                raise LessonHoursError(f"{part!r} in {rule!r} is not a day range like mon-fri")
            lo, hi = _DAYS[a.strip()], _DAYS[b.strip()]
            if lo > hi:
                raise LessonHoursError(f"day range {part!r} in {rule!r} runs backwards")
            out.extend(range(lo, hi + 1))
        elif part in _DAYS:
            out.append(_DAYS[part])
        else:
            raise LessonHoursError(f"{part!r} in {rule!r} is not a day (mon..sun or ma..zo)")
    return out


def parse_lesson_hours(text: str, timezone: str = "Europe/Amsterdam") -> LessonHours | None:
    """Parse lesson hours; None for an empty text (no limit). Raises LessonHoursError."""
    zone = parse_timezone(timezone)
    rules = [r.strip() for r in re.split(r"[;\n]", text or "") if r.strip()]
    if not rules:
        return None
    days: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for rule in rules:
        parts = rule.split()
        if len(parts) != 2:
            raise LessonHoursError(
                f"{rule!r} is not a rule like 'mon-fri 08:15-15:30' (days, a space, times)"
            )
        day_list = _days(parts[0], rule)
        for span in parts[1].split(","):
            a, sep, b = span.partition("-")
            if not sep:
                raise LessonHoursError(f"{span!r} in {rule!r} is not a time span like 08:15-15:30")
            start, end = _minutes(a, rule), _minutes(b, rule)
            if end <= start:
                raise LessonHoursError(
                    f"{span!r} in {rule!r} ends before it starts (spans cannot cross midnight)"
                )
            for d in day_list:
                days[d].append((start, end))
    normal = "; ".join(rules)
    return LessonHours(tuple(tuple(sorted(d)) for d in days), zone, normal)


def day_name(index: int) -> str:
    return _DAY_NAMES[index]
