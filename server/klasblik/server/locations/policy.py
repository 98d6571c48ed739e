"""Where teachers and devices are, and whether a teacher may see a device from there.

A connection's location follows from its source address (``AppContext.client_ip``, which
believes forwarding headers from trusted proxies only): the location whose networks hold
that address, or none (off-site). The rule the hub applies to every viewer-device pair:

- same location: the teacher's and the device's current locations are the same one; or
- remote-lesson mode: it is on for a location R (until its end time, by the clock, not by a
  job), the teacher belongs to R (home or current location) and so does the student;
- and, when the governing location has lesson hours, it is within them now.

:class:`LocationPolicy` holds the locations and active remote-lesson periods in memory
(reloaded from the database when IT changes them and at every tick), so the per-frame check
costs a few dictionary look-ups.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from klasblik.server.access import audit
from klasblik.server.errors import AccessDenied
from klasblik.server.keys import DB, HUB, LOCATIONS, SETTINGS
from klasblik.server.locations.lessonhours import (
    LessonHours,
    LessonHoursError,
    parse_lesson_hours,
    parse_timezone,
)
from klasblik.server.locations.resolver import LocationResolver, parse_location_networks
from klasblik.server.locations.rule import (
    ELSEWHERE,
    OUTSIDE,
    LocationInfo,
    Place,
    Placed,
    RemoteInfo,
    governing,
    iso,
    verdict,
)
from klasblik.server.storage.models import Location, RemoteMode, Student, utcnow
from klasblik.server.tasks import cancel_and_wait

__all__ = [
    "Connections",
    "LocationInfo",
    "LocationPolicy",
    "LocationResolver",
    "RemoteInfo",
    "home_of",
    "iso",
    "locate",
    "locations_ctx",
    "parse_location_networks",
    "policy_of",
]

log = logging.getLogger(__name__)


class _Located(Protocol):
    ip: str
    location_id: int | None


class Connections(Protocol):
    """What the policy needs of the hub: the connections to re-locate, and a way to make
    it apply the rule again."""

    @property
    def agents(self) -> Mapping[int, _Located]: ...

    @property
    def viewers(self) -> Iterable[_Located]: ...

    def reevaluate(self) -> None: ...


class LocationPolicy:
    """Locations, remote-lesson periods and lesson hours, and the viewing rule built on them."""

    def __init__(
        self,
        sm: async_sessionmaker[AsyncSession],
        hub: Connections,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sm = sm
        self.hub = hub
        #: the time source of every rule here; tests replace it
        self.clock = clock
        self.locations: dict[int, LocationInfo] = {}
        self.remote: dict[int, RemoteInfo] = {}
        self.resolver = LocationResolver(())
        self._networks_key: tuple[Any, ...] = ()
        self._signature: tuple[Any, ...] | None = None
        self._open_cache: dict[int, tuple[int, bool]] = {}
        #: verdicts by (viewer's location, home, device's location, home), true from
        #: ``_verdicts_span[0]`` until ``[1]`` (the next minute or remote-lesson boundary),
        #: as POSIX timestamps (with the default clock, ``time.time()`` is all a kept
        #: verdict costs to check: no datetime is made per frame)
        self._verdicts: dict[tuple[int | None, ...], str | None] = {}
        self._verdicts_span: tuple[float, float] | None = None
        self._only_location: dict[int, int] = {}

    # ---- loading ----------------------------------------------------------------------

    async def reload(self) -> None:
        """Read locations and open remote-lesson periods; re-apply the rule if anything
        that matters changed (connections re-located, agents told, tiles updated)."""
        async with self.sm() as session:
            rows = list(
                await session.scalars(select(Location).options(selectinload(Location.school)))
            )
            modes = list(
                await session.scalars(select(RemoteMode).where(RemoteMode.ended_at.is_(None)))
            )
        infos: dict[int, LocationInfo] = {}
        for row in rows:
            try:
                nets = parse_location_networks(row.networks or "")
            except ValueError as exc:
                log.error("location %s (%s): networks ignored: %s", row.code, row.name, exc)
                nets = ()
            try:
                hours = parse_lesson_hours(
                    row.lesson_hours or "", row.timezone or "Europe/Amsterdam"
                )
            except LessonHoursError as exc:
                # unreadable lesson hours must not open monitoring at all hours
                log.error("location %s (%s): lesson hours unusable: %s", row.code, row.name, exc)
                hours = LessonHours(((),) * 7, parse_timezone("UTC"), "never (unreadable)")
            infos[row.id] = LocationInfo(
                row.id,
                row.school_id,
                row.school.name,
                row.name,
                row.code,
                nets,
                hours,
                row.timezone or "Europe/Amsterdam",
            )
        remote: dict[int, RemoteInfo] = {}
        for m in modes:
            info = RemoteInfo(m.id, m.location_id, m.started_at, m.until, m.reason, m.started_by)
            if m.location_id not in remote or remote[m.location_id].started_at < m.started_at:
                remote[m.location_id] = info
        self.locations = infos
        per_school: dict[int, list[int]] = {}
        for loc_info in infos.values():
            per_school.setdefault(loc_info.school_id, []).append(loc_info.id)
        self._only_location = {s: ids[0] for s, ids in per_school.items() if len(ids) == 1}
        self.remote = remote
        self._open_cache.clear()
        self._verdicts_span = None
        key = tuple(sorted((i.id, i.networks) for i in infos.values()))
        if key != self._networks_key:
            self._networks_key = key
            self.resolver = LocationResolver(infos.values())
            self._relocate()
            self._signature = None  # force re-evaluation
        self.apply()

    def _relocate(self) -> None:
        for conn in self.hub.agents.values():
            conn.location_id = self.resolver.resolve(conn.ip)
        for viewer in self.hub.viewers:
            viewer.location_id = self.resolver.resolve(viewer.ip)

    def apply(self) -> bool:
        """Tell agents and dashboards when the outcome of the rule may have changed
        (remote-lesson mode began or ended, a lesson-hours boundary passed)."""
        now = self.clock()
        sig = (
            frozenset(i for i in self.locations if self._open(i, now)),
            frozenset(r.location_id for r in self.remote.values() if r.active(now)),
            self._networks_key,
        )
        if sig == self._signature:
            return False
        self._signature = sig
        self.hub.reevaluate()
        return True

    async def tick(self) -> None:
        """Close remote-lesson periods whose end time has passed (audit-logged once, even
        with several instances), reload and re-apply. Runs every minute."""
        now = self.clock()
        async with self.sm() as session:
            overdue = list(
                await session.scalars(
                    select(RemoteMode).where(RemoteMode.ended_at.is_(None), RemoteMode.until <= now)
                )
            )
        for mode in overdue:
            async with self.sm() as session, session.begin():
                res = await session.execute(
                    update(RemoteMode)
                    .where(RemoteMode.id == mode.id, RemoteMode.ended_at.is_(None))
                    .values(ended_at=mode.until, ended_by="system", end_note="expired")
                )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                loc = self.locations.get(mode.location_id)
                await audit.record(
                    self.sm,
                    "system",
                    audit.Actions.REMOTE_MODE_EXPIRED,
                    f"location:{mode.location_id}",
                    f"remote-lesson mode of {loc.name if loc else mode.location_id} ended by "
                    f"itself at {iso(mode.until)} (switched on by {mode.started_by}; "
                    f"reason: {mode.reason})",
                    school_id=loc.school_id if loc else None,
                )
        await self.reload()

    # ---- the rule -----------------------------------------------------------------------

    def resolve(self, ip: str) -> int | None:
        return self.resolver.resolve(ip)

    def home(self, school_id: int, location_id: int | None) -> int | None:
        """A person's home location: the roster's, or else the school's only location."""
        if location_id is not None:
            return location_id
        return self._only_location.get(school_id)

    def remote_on(
        self, location_id: int | None, now: dt.datetime | None = None
    ) -> RemoteInfo | None:
        if location_id is None:
            return None
        info = self.remote.get(location_id)
        if info is not None and info.active(now or self.clock()):
            return info
        return None

    def _open(self, location_id: int, now: dt.datetime) -> bool:
        info = self.locations.get(location_id)
        if info is None or info.hours is None:
            return True
        minute = int(now.timestamp() // 60)
        cached = self._open_cache.get(location_id)
        if cached is not None and cached[0] == minute:
            return cached[1]
        value = info.hours.is_open(now)
        self._open_cache[location_id] = (minute, value)
        return value

    def governing(
        self,
        viewer_loc: int | None,
        viewer_home: int | None,
        device_loc: int | None,
        device_home: int | None,
        now: dt.datetime,
    ) -> int | None:
        """The location whose rules allow this pair, or None (elsewhere)."""
        return governing(
            viewer_loc,
            viewer_home,
            device_loc,
            device_home,
            lambda loc: bool(self.remote_on(loc, now)),
        )

    def gate(self, viewer: Placed, conn: Placed) -> str | None:
        """None when this viewer may see this device now, else why not (a protocol code).

        Asked for every viewer of every relayed frame, so a verdict is kept for its pair of
        places until the next minute (lesson hours change on the minute) or the next start
        or end of a remote-lesson period, whichever comes first, or until a reload."""
        clock = self.clock
        t = time.time() if clock is utcnow else clock().timestamp()
        span = self._verdicts_span
        if span is None or not span[0] <= t < span[1]:
            now = clock()
            self._verdicts.clear()
            self._verdicts_span = (now.timestamp(), self._next_change(now).timestamp())
        key = (viewer.location_id, viewer.home_location_id, conn.location_id, conn.home_location_id)
        try:
            return self._verdicts[key]
        except KeyError:
            pass
        now = clock()
        why = verdict(
            viewer,
            conn,
            lambda loc: bool(self.remote_on(loc, now)),
            lambda loc: self._open(loc, now),
        )
        self._verdicts[key] = why
        return why

    def _next_change(self, now: dt.datetime) -> dt.datetime:
        """The first moment after ``now`` at which a verdict may change: the next minute,
        or a remote-lesson period's start or end if one comes sooner."""
        minute = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        moments = [minute]
        for info in self.remote.values():
            moments += [m for m in (info.started_at, info.until) if m > now]
        return min(moments)

    def viewer_locations(self, location_id: int | None, home_id: int | None) -> list[int]:
        """Locations under whose rules a teacher here may view anything now."""
        now = self.clock()
        out: list[int] = [] if location_id is None else [location_id]
        for loc in (home_id, location_id):
            if loc is not None and loc not in out and self.remote_on(loc, now):
                out.append(loc)
        return out

    def check_viewer(self, location_id: int | None, home_id: int | None, ip: str) -> None:
        """Raise AccessDenied (``elsewhere`` or ``outside_lesson_hours``) when a teacher at
        this address may not open any view now."""
        locs = self.viewer_locations(location_id, home_id)
        if not locs:
            raise AccessDenied(
                ELSEWHERE,
                f"you are not at a school location (your address {ip} is in none of its "
                "networks); viewing from elsewhere needs remote-lesson mode, which IT switches on",
            )
        now = self.clock()
        if not any(self._open(loc, now) for loc in locs):
            hours = "; ".join(
                f"{info.name}: {info.hours.describe()}"
                for info in (self.locations.get(loc) for loc in locs)
                if info is not None and info.hours is not None
            )
            raise AccessDenied(OUTSIDE, f"monitoring is allowed only during lesson hours ({hours})")

    def notices(
        self, location_id: int | None, home_id: int | None, ip: str
    ) -> list[dict[str, Any]]:
        """Banner entries for a teacher's dashboard pages (GET /api/me)."""
        now = self.clock()
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        for loc in (home_id, location_id):
            info = self.remote_on(loc, now)
            if info is None or info.location_id in seen:
                continue
            seen.add(info.location_id)
            loc_info = self.locations.get(info.location_id)
            name = loc_info.name if loc_info else "?"
            until = self.local_text(info.location_id, info.until)
            out.append(
                {
                    "kind": "remote_mode",
                    "text": f"Remote-lesson mode is on for {name} until {until}: teachers"
                    " of this location may view their students wherever they are.",
                    "until": iso(info.until),
                    "location": name,
                }
            )
        try:
            self.check_viewer(location_id, home_id, ip)
        except AccessDenied as exc:
            out.append({"kind": exc.code, "text": exc.message})
        return out

    def notices_for(self, ip: str, school_id: int, location_id: int | None) -> list[dict[str, Any]]:
        """The banners for a teacher of ``school_id`` (home ``location_id``) at ``ip``."""
        return self.notices(self.resolve(ip), self.home(school_id, location_id), ip)

    async def check_stored_picture(
        self,
        ip: str,
        school_id: int,
        location_id: int | None,
        device: Placed | None,
        student_id: int,
    ) -> None:
        """The stored thumbnail follows the live rule: refused (AccessDenied) to a teacher
        who may not view from ``ip``; while the student's ``device`` is online, refused
        where the live view would be; while it is offline, a teacher off-site sees it only
        under remote-lesson mode that covers the student's home location."""
        here = self.resolve(ip)
        staff_home = self.home(school_id, location_id)
        self.check_viewer(here, staff_home, ip)
        if device is not None:
            why = self.gate(Place(here, staff_home), device)
            if why:
                raise AccessDenied(why, "this student's device is not where you may view it now")
            return
        if here is not None:
            return
        async with self.sm() as session:
            student = await session.get(Student, student_id)
        home = self.home(student.school_id, student.location_id) if student else None
        if self.governing(None, staff_home, None, home, self.clock()) is None:
            raise AccessDenied(
                ELSEWHERE, "remote-lesson mode of your location does not cover this student"
            )

    def local_text(self, location_id: int, when: dt.datetime) -> str:
        info = self.locations.get(location_id)
        zone = info.hours.zone if info and info.hours else None
        if zone is None:
            zone = parse_timezone(info.timezone if info else "Europe/Amsterdam")
        return when.astimezone(zone).strftime("%Y-%m-%d %H:%M") + f" ({zone.key})"


def policy_of(app: web.Application) -> LocationPolicy | None:
    return app.get(LOCATIONS)


def locate(app: web.Application, ip: str) -> int | None:
    """The current location of a connection from ``ip``, or None (off-site)."""
    policy = app.get(LOCATIONS)
    return policy.resolve(ip) if policy is not None else None


def home_of(app: web.Application, school_id: int, location_id: int | None) -> int | None:
    """A teacher's or student's home location (see :meth:`LocationPolicy.home`)."""
    policy = app.get(LOCATIONS)
    return policy.home(school_id, location_id) if policy is not None else location_id


async def _ticker(policy: LocationPolicy, interval: float) -> None:
    while True:
        # wake just after whole intervals, so lesson-hour boundaries (whole minutes) are
        # applied within a fraction of a second
        await asyncio.sleep(interval - (time.time() % interval) + 0.05)
        try:
            await policy.tick()
        except Exception:
            log.exception("location check failed; retrying at the next tick")


async def locations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the locations, install the rule in the hub, re-check it every minute."""

    policy = LocationPolicy(app[DB], app[HUB])
    await policy.reload()
    app[HUB].gate = policy.gate
    app[LOCATIONS] = policy
    task = asyncio.create_task(
        _ticker(policy, app[SETTINGS].location_check_interval_s), name="location ticker"
    )
    try:
        yield
    finally:
        await cancel_and_wait(task)
        app[HUB].gate = None
