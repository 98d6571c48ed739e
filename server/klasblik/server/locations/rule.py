"""The same-location rule, pure: no database, no HTTP, no clock of its own.

Given where a teacher and a device are (their current and home locations), which locations
are in remote-lesson mode now and which are within lesson hours, it says which location's
rules govern the pair, or that the device is elsewhere:

- same location: the teacher's and the device's current locations are the same one; or
- remote-lesson mode: it is on for a location R, the teacher belongs to R (home or current
  location) and so does the student (home or current location);
- and, when the governing location has lesson hours, it must be within them now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from klasblik.protocol import ErrorCode

if TYPE_CHECKING:
    from klasblik.server.locations.lessonhours import LessonHours
    from klasblik.server.net import Network

__all__ = [
    "ELSEWHERE",
    "OUTSIDE",
    "LocationInfo",
    "Place",
    "Placed",
    "RemoteInfo",
    "governing",
    "iso",
    "verdict",
]

ELSEWHERE: Final = ErrorCode.ELSEWHERE
OUTSIDE: Final = ErrorCode.OUTSIDE_LESSON_HOURS


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Placed(Protocol):
    """Anything that is somewhere: a dashboard viewer, an agent connection, a device seen
    through another instance."""

    @property
    def location_id(self) -> int | None: ...

    @property
    def home_location_id(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Place:
    """Where someone is: current and home location (None: off-site, or no home)."""

    location_id: int | None
    home_location_id: int | None


@dataclass(frozen=True)
class LocationInfo:
    id: int
    school_id: int
    school_name: str
    name: str
    code: str
    networks: tuple[Network, ...]
    hours: LessonHours | None
    timezone: str


@dataclass(frozen=True)
class RemoteInfo:
    id: int
    location_id: int
    started_at: dt.datetime
    until: dt.datetime
    reason: str
    started_by: str

    def active(self, now: dt.datetime) -> bool:
        return self.started_at <= now < self.until


def governing(
    viewer_loc: int | None,
    viewer_home: int | None,
    device_loc: int | None,
    device_home: int | None,
    remote_on: Callable[[int], bool],
) -> int | None:
    """The location whose rules allow this pair, or None (elsewhere). ``remote_on(L)``
    says whether remote-lesson mode is on for location L now."""
    if viewer_loc is not None and viewer_loc == device_loc:
        return viewer_loc
    for loc in (viewer_home, viewer_loc):
        if loc is not None and loc in (device_home, device_loc) and remote_on(loc):
            return loc
    return None


def verdict(
    viewer: Placed,
    device: Placed,
    remote_on: Callable[[int], bool],
    is_open: Callable[[int], bool],
) -> str | None:
    """None when ``viewer`` may see ``device`` now, else why not (a protocol code):
    ``elsewhere`` or ``outside_lesson_hours``."""
    loc = governing(
        viewer.location_id,
        viewer.home_location_id,
        device.location_id,
        device.home_location_id,
        remote_on,
    )
    if loc is None:
        return ELSEWHERE
    if not is_open(loc):
        return OUTSIDE
    return None
