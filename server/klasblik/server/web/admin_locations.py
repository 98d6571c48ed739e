"""IT's location screens and API: define locations (name, BRIN + location code, networks,
lesson hours), switch remote-lesson mode on and off, download the letter to parents.

Every route needs a signed-in, active IT admin (``Staff.is_admin``) of the school the
location belongs to; every change needs the CSRF token and is audit-logged.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from klasblik.server.auth.identity import check_csrf, current_staff, require_staff
from klasblik.server.errors import ApiError
from klasblik.server.keys import DASHBOARD_FILES, DB, LOCATIONS, SETTINGS
from klasblik.server.locations import admin as location_admin
from klasblik.server.locations.admin import LocationDraft
from klasblik.server.locations.lessonhours import (
    parse_timezone,
)
from klasblik.server.locations.letters import LANGUAGES, RemoteModeLetter, render_remote_mode_letter
from klasblik.server.locations.policy import LocationPolicy, iso
from klasblik.server.net import client_ip
from klasblik.server.storage.models import Location, Staff, WebSession
from klasblik.server.web.ids import check_id, path_id

__all__ = ["setup_location_admin_routes"]

MAX_REASON = 500


async def _admin(request: web.Request, change: bool = False) -> tuple[WebSession, Staff]:
    session, staff = await require_staff(request)
    if change:
        check_csrf(request, session)
    if not staff.active or not staff.is_admin:
        raise ApiError("forbidden", "only IT admins may manage locations", 403)
    return session, staff


def _policy(request: web.Request) -> LocationPolicy:
    return request.app[LOCATIONS]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError("invalid_json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "the body must be a JSON object")
    return data


def _location_json(loc: Location, policy: LocationPolicy) -> dict[str, Any]:
    remote = policy.remote_on(loc.id)
    return {
        "id": loc.id,
        "school_id": loc.school_id,
        "name": loc.name,
        "code": loc.code,
        "networks": (loc.networks or "").split(),
        "lesson_hours": loc.lesson_hours or "",
        "timezone": loc.timezone,
        "remote_mode": None
        if remote is None
        else {
            "until": iso(remote.until),
            "until_local": policy.local_text(loc.id, remote.until),
            "started_at": iso(remote.started_at),
            "started_by": remote.started_by,
            "reason": remote.reason,
            "letter": {
                lang: f"/api/admin/locations/{loc.id}/remote-mode/letter?lang={lang}"
                for lang in LANGUAGES
            },
        },
    }


async def _location(request: web.Request, staff: Staff) -> Location:
    lid = path_id(request, "location_id", "location")
    return await location_admin.school_location(request.app[DB], staff.school_id, lid)


# ---- pages and listing ----------------------------------------------------------------


async def admin_page(request: web.Request) -> web.StreamResponse:
    found = await current_staff(request)
    if found is None:
        raise web.HTTPSeeOther("/signin")
    if not found[1].is_admin or not found[1].active:
        raise ApiError("forbidden", "this page is for IT admins", 403)
    path = request.app[DASHBOARD_FILES] / "admin-locations.html"
    if not path.is_file():
        raise ApiError("not_found", "dashboard file admin-locations.html is missing", 404)
    return web.FileResponse(path, headers={"Cache-Control": "no-store"})


async def list_locations(request: web.Request) -> web.Response:
    _session, staff = await _admin(request)
    app = request.app
    policy = _policy(request)
    school, rows = await location_admin.school_locations(app[DB], staff.school_id)
    ip = client_ip(request)
    return web.json_response(
        {
            "school": (
                {"id": school.id, "name": school.name, "brin": school.brin} if school else None
            ),
            "locations": [_location_json(r, policy) for r in rows],
            "remote_mode_max_hours": app[SETTINGS].remote_mode_max_hours,
            "your_address": ip,
            "your_location_id": policy.resolve(ip),
            "now": iso(policy.clock()),
        }
    )


# ---- create / update --------------------------------------------------------------------


def _text(data: dict[str, Any], key: str, limit: int, required: bool = True) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ApiError("invalid_format", f"{key} must be a string")
    value = value.strip()
    if required and not value:
        raise ApiError("invalid_format", f"{key} is required")
    if len(value) > limit:
        raise ApiError("invalid_format", f"{key} is longer than {limit} characters")
    return value


async def save_location(request: web.Request) -> web.Response:
    _session, staff = await _admin(request, change=True)
    data = await _body(request)
    raw_nets = data.get("networks", "")
    if isinstance(raw_nets, list) and all(isinstance(n, str) for n in raw_nets):
        raw_nets = " ".join(raw_nets)
    if not isinstance(raw_nets, str):
        raise ApiError("invalid_format", "networks must be a list of CIDR strings")
    loc_id = data.get("id")
    if loc_id is not None and (not isinstance(loc_id, int) or isinstance(loc_id, bool)):
        raise ApiError("invalid_format", "id must be a number (or left out to create)")
    if loc_id is not None:
        check_id(loc_id, "location")
    draft = LocationDraft(
        name=_text(data, "name", 200),
        code=_text(data, "code", 8),
        networks=raw_nets,
        timezone=_text(data, "timezone", 64, required=False) or "Europe/Amsterdam",
        lesson_hours=_text(data, "lesson_hours", 1000, required=False),
    )
    confirm = data.get("confirm_wide", False)
    if not isinstance(confirm, bool):
        raise ApiError("invalid_format", "confirm_wide must be true or false")
    policy = _policy(request)
    loc, created = await location_admin.save_location(
        request.app[DB],
        policy,
        staff.username,
        staff.school_id,
        loc_id,
        draft,
        client_ip(request),
        confirm_wide=confirm or request.app[SETTINGS].demo,
    )
    return web.json_response(_location_json(loc, policy), status=201 if created else 200)


# ---- remote-lesson mode -----------------------------------------------------------------


def _parse_until(value: Any, zone_name: str) -> dt.datetime:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(
            "invalid_format", "until is required: the date and time remote-lesson mode ends"
        )
    text = value.strip().replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            "invalid_format", f"until {value!r} is not a date and time like 2026-11-27T15:30"
        ) from None
    if when.tzinfo is None:  # a wall-clock time at the location
        when = when.replace(tzinfo=parse_timezone(zone_name))
    return when.astimezone(dt.UTC)


async def remote_mode_on(request: web.Request) -> web.Response:
    _session, staff = await _admin(request, change=True)
    policy = _policy(request)
    loc = await _location(request, staff)
    data = await _body(request)
    reason = _text(data, "reason", MAX_REASON)
    until = _parse_until(data.get("until"), loc.timezone)
    await location_admin.start_remote_mode(
        request.app[DB],
        policy,
        staff.username,
        loc,
        until,
        reason,
        request.app[SETTINGS].remote_mode_max_hours,
        client_ip(request),
    )
    return web.json_response(_location_json(loc, policy))


async def remote_mode_off(request: web.Request) -> web.Response:
    _session, staff = await _admin(request, change=True)
    policy = _policy(request)
    loc = await _location(request, staff)
    await location_admin.end_remote_mode(
        request.app[DB], policy, staff.username, loc, client_ip(request)
    )
    return web.json_response(_location_json(loc, policy))


async def remote_mode_letter(request: web.Request) -> web.Response:
    _session, staff = await _admin(request)
    policy = _policy(request)
    loc = await _location(request, staff)
    lang = request.query.get("lang", "nl")
    if lang not in LANGUAGES:
        raise ApiError(
            "invalid_format", f"lang must be one of {', '.join(LANGUAGES)}; got {lang!r}"
        )
    remote = policy.remote_on(loc.id)
    if remote is None:
        raise ApiError(
            "not_on",
            f"remote-lesson mode is not on for {loc.name}: there is no letter to send",
            404,
        )
    text = render_remote_mode_letter(
        RemoteModeLetter(
            school=loc.school.name,
            location=loc.name,
            location_code=loc.code,
            start=remote.started_at,
            until=remote.until,
            reason=remote.reason,
            zone=parse_timezone(loc.timezone),
            lesson_hours=loc.lesson_hours or "",
        ),
        lang,
    )
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={
            "Content-Disposition": (
                f'attachment; filename="klasblik-remote-lessons-{loc.code}-{lang}.txt"'
            )
        },
    )


def setup_location_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/locations", admin_page)
    r.add_get("/api/admin/locations", list_locations)
    r.add_post("/api/admin/locations", save_location)
    r.add_post("/api/admin/locations/{location_id}/remote-mode", remote_mode_on)
    r.add_delete("/api/admin/locations/{location_id}/remote-mode", remote_mode_off)
    r.add_get("/api/admin/locations/{location_id}/remote-mode/letter", remote_mode_letter)
