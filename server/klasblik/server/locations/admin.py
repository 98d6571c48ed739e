"""IT's changes to locations and remote-lesson mode, as domain operations: checked,
written in one transaction, audit-logged, and applied to the location rule. The HTTP
handlers in ``web/admin_locations.py`` only read the request and render the answer."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from klasblik.server.access import audit
from klasblik.server.errors import ApiError
from klasblik.server.locations.lessonhours import (
    LessonHoursError,
    parse_lesson_hours,
    parse_timezone,
)
from klasblik.server.locations.policy import LocationPolicy
from klasblik.server.locations.resolver import parse_location_networks
from klasblik.server.locations.rule import iso
from klasblik.server.storage.models import Location, RemoteMode, School

__all__ = [
    "LocationDraft",
    "end_remote_mode",
    "save_location",
    "school_location",
    "school_locations",
    "start_remote_mode",
]

Sessions = async_sessionmaker[AsyncSession]

#: Networks wider than this (a shorter prefix) cover (nearly) every address: refused.
REFUSED_WIDER_THAN = {4: 4, 6: 16}
#: Networks wider than this need ``confirm_wide`` outside demo mode: a typo such as /8 for
#: /28 would count a whole provider's customers as on-site.
CONFIRM_WIDER_THAN = {4: 8, 6: 32}


@dataclass(frozen=True)
class LocationDraft:
    """A location as IT entered it (text already trimmed and bounded by the handler)."""

    name: str
    code: str
    networks: str
    timezone: str
    lesson_hours: str


async def school_locations(sm: Sessions, school_id: int) -> tuple[School | None, list[Location]]:
    """The school and its locations, by code."""
    async with sm() as session:
        school = await session.get(School, school_id)
        rows = list(
            await session.scalars(
                select(Location).where(Location.school_id == school_id).order_by(Location.code)
            )
        )
    return school, rows


async def school_location(sm: Sessions, school_id: int, location_id: int) -> Location:
    """One location of this school (with its school loaded), or ``not_found``: a location
    of another school does not exist for this admin."""
    async with sm() as session:
        loc = await session.get(Location, location_id, options=[selectinload(Location.school)])
    if loc is None or loc.school_id != school_id:
        raise ApiError("not_found", f"location {location_id} does not exist at your school", 404)
    return loc


async def save_location(
    sm: Sessions,
    policy: LocationPolicy,
    actor: str,
    school_id: int,
    location_id: int | None,
    draft: LocationDraft,
    ip: str,
    *,
    confirm_wide: bool = False,
) -> tuple[Location, bool]:
    """Create (``location_id`` None) or update a location; return it and whether it was
    created. Refused: a code that is not the school's BRIN + two digits, a code or network
    another location already has (an address belongs to one location only), unusable
    networks, time zone or lesson hours."""
    code = draft.code.upper()
    try:
        nets = parse_location_networks(draft.networks)
    except ValueError as exc:
        raise ApiError("invalid_network", str(exc)) from None
    for net in nets:
        if net.prefixlen < REFUSED_WIDER_THAN[net.version]:
            raise ApiError(
                "network_too_wide",
                f"{net} covers (nearly) every address: no school location is that large",
            )
        if net.prefixlen < CONFIRM_WIDER_THAN[net.version] and not confirm_wide:
            raise ApiError(
                "confirm_wide_network",
                f"{net} is wider than /{CONFIRM_WIDER_THAN[net.version]} and would count a "
                "very large number of addresses as on-site; check it, and send "
                "confirm_wide: true if it is really meant",
            )
    try:
        parse_timezone(draft.timezone)
        parsed_hours = parse_lesson_hours(draft.lesson_hours, draft.timezone)
    except LessonHoursError as exc:
        raise ApiError("invalid_lesson_hours", str(exc)) from None

    async with sm() as session, session.begin():
        school = await session.get(School, school_id)
        if school is None:
            raise ApiError("not_found", "your school is not in the roster", 404)
        if not re.fullmatch(re.escape(school.brin.upper()) + r"\d{2}", code):
            raise ApiError(
                "invalid_code",
                f"code must be the school's BRIN {school.brin} followed by the two-digit "
                f"location code (e.g. {school.brin}00); got {code}",
            )
        others = await session.scalars(select(Location).where(Location.id != (location_id or -1)))
        # Checked against every school (an address belongs to one location only, and codes
        # are unique), but another school's location is never named: that would tell this
        # admin another school's names and networks.
        for other in others:
            ours = other.school_id == school.id
            if other.code.upper() == code:
                raise ApiError(
                    "duplicate_code",
                    f"location code {code} is already used by "
                    + (other.name if ours else "a location of another school"),
                    409,
                )
            for theirs in parse_location_networks(other.networks or ""):
                for mine in nets:
                    if mine.version == theirs.version and mine.overlaps(theirs):
                        raise ApiError(
                            "overlapping_networks",
                            f"{mine} overlaps "
                            + (
                                f"{theirs} of location {other.name} ({other.code})"
                                if ours
                                else "a network of another school's location"
                            )
                            + ": an address must belong to one location only",
                            409,
                        )
        if location_id is None:
            loc = Location(school_id=school.id)
            session.add(loc)
            created = True
        else:
            found = await session.get(Location, location_id)
            if found is None or found.school_id != school.id:
                raise ApiError(
                    "not_found", f"location {location_id} does not exist at your school", 404
                )
            loc = found
            created = False
        loc.name = draft.name
        loc.code = code
        loc.networks = " ".join(str(n) for n in nets)
        loc.lesson_hours = parsed_hours.text if parsed_hours else ""
        loc.timezone = draft.timezone
        await session.flush()
    await audit.record(
        sm,
        actor,
        audit.Actions.LOCATION_SAVED,
        f"location:{loc.id}",
        f"{'created' if created else 'updated'} {draft.name} ({code}); networks: "
        f"{loc.networks or '(none)'}; lesson hours: {loc.lesson_hours or '(any time)'} "
        f"{draft.timezone}",
        ip,
        school_id=school_id,
    )
    await policy.reload()
    return loc, created


async def start_remote_mode(
    sm: Sessions,
    policy: LocationPolicy,
    actor: str,
    loc: Location,
    until: dt.datetime,
    reason: str,
    max_hours: int,
    ip: str,
) -> None:
    """Switch remote-lesson mode on for ``loc`` until ``until`` (replacing a period that
    is on), within ``max_hours`` from now; audit-logged, applied at once."""
    await policy.tick()  # close a period that has just expired, with its audit entry
    now = policy.clock()
    if until <= now:
        raise ApiError("invalid_until", "until must be in the future")
    if until > now + dt.timedelta(hours=max_hours):
        raise ApiError(
            "invalid_until",
            f"until may be at most {max_hours} hours from now (the remote_mode_max_hours policy)",
        )
    replaced = None
    async with sm() as session, session.begin():
        for old in await session.scalars(
            select(RemoteMode).where(
                RemoteMode.location_id == loc.id, RemoteMode.ended_at.is_(None)
            )
        ):
            old.ended_at, old.ended_by, old.end_note = now, actor, "replaced"
            replaced = old.until
        session.add(
            RemoteMode(
                location_id=loc.id, started_at=now, until=until, reason=reason, started_by=actor
            )
        )
    detail = (
        f"remote-lesson mode on for {loc.name} ({loc.code}) from {iso(now)} until {iso(until)}"
        f"{f' (replaces the period until {iso(replaced)})' if replaced else ''}; reason: {reason}"
    )
    await audit.record(
        sm,
        actor,
        audit.Actions.REMOTE_MODE_ON,
        f"location:{loc.id}",
        detail,
        ip,
        school_id=loc.school_id,
    )
    await policy.reload()


async def end_remote_mode(
    sm: Sessions, policy: LocationPolicy, actor: str, loc: Location, ip: str
) -> None:
    """End remote-lesson mode of ``loc`` early (``not_on`` when it is not on);
    audit-logged, applied at once."""
    await policy.tick()
    now = policy.clock()
    ended = []
    async with sm() as session, session.begin():
        for mode in await session.scalars(
            select(RemoteMode).where(
                RemoteMode.location_id == loc.id, RemoteMode.ended_at.is_(None)
            )
        ):
            mode.ended_at, mode.ended_by, mode.end_note = now, actor, "ended early"
            ended.append(mode)
    if not ended:
        raise ApiError("not_on", f"remote-lesson mode is not on for {loc.name}", 409)
    await audit.record(
        sm,
        actor,
        audit.Actions.REMOTE_MODE_OFF,
        f"location:{loc.id}",
        f"remote-lesson mode of {loc.name} ({loc.code}) ended early at {iso(now)}, "
        f"before {iso(ended[0].until)} (switched on by {ended[0].started_by}; "
        f"reason: {ended[0].reason})",
        ip,
        school_id=loc.school_id,
    )
    await policy.reload()
