"""The IT admin API for locations and remote-lesson mode, and the letter to parents."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from klasblik.server.access import audit
from tests.locations.conftest import ANNA, TEACHER
from tests.support.sourced import AT_A, FakeClock, SourcedAgent, audit_entries, client_at, policy
from tests.support.timing import wait_for

AMS = ZoneInfo("Europe/Amsterdam")


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/api/admin/locations", None),
        ("POST", "/api/admin/locations", {"name": "X", "code": "12AB05", "networks": []}),
        (
            "POST",
            "/api/admin/locations/{A}/remote-mode",
            {"until": "2030-01-01T00:00Z", "reason": "x"},
        ),
        ("DELETE", "/api/admin/locations/{A}/remote-mode", None),
        ("GET", "/api/admin/locations/{A}/remote-mode/letter?lang=nl", None),
        ("GET", "/admin/locations", None),
    ],
)
async def test_non_admin_is_refused(school, method, path, body):
    """A teacher who is not an IT admin gets 403 forbidden on every admin route."""
    path = path.replace("{A}", str(school.loc["A"]))
    async with client_at(school.server, TEACHER, AT_A) as teacher:
        status, answer = await teacher.request(method, path, body)
    assert status == 403
    assert answer["error"]["code"] == "forbidden"


async def test_signed_out_and_csrf_less_requests_are_refused(school):
    """No session: 401; an admin change without the CSRF token: 403 csrf_failed."""
    async with client_at(school.server, None, AT_A) as anon:
        status, body = await anon.request("GET", "/api/admin/locations")
        assert status == 401 and body["error"]["code"] == "not_authenticated"
    async with client_at(school.server, school.admin, AT_A) as it:
        status, body = await it.request(
            "POST",
            "/api/admin/locations",
            {"name": "X", "code": "12AB05"},
            headers={"X-CSRF-Token": "wrong"},
        )
        assert status == 403 and body["error"]["code"] == "csrf_failed"


async def test_admin_creates_and_validates_locations(school):
    """A new location with IPv4 and IPv6 networks is stored, listed, audit-logged and used
    at once; bad networks, codes and lesson hours get specific errors."""
    async with client_at(school.server, school.admin, AT_A) as it:
        new = {
            "name": "Sporthal",
            "code": "12ab02",
            "networks": ["127.0.0.8/30", "2001:db8:1::/48"],
            "lesson_hours": "ma-vr 08:30-16:00",
        }
        status, body = await it.request("POST", "/api/admin/locations", new)
        assert status == 201, body
        assert body["code"] == "12AB02" and body["networks"] == ["127.0.0.8/30", "2001:db8:1::/48"]
        assert body["timezone"] == "Europe/Amsterdam"
        assert policy(school.server).resolve("127.0.0.9") == body["id"]
        assert policy(school.server).resolve("2001:db8:1::42") == body["id"]
        status, listing = await it.request("GET", "/api/admin/locations")
        assert status == 200
        assert [loc["code"] for loc in listing["locations"]] == ["12AB00", "12AB01", "12AB02"]
        assert listing["your_address"] == AT_A and listing["your_location_id"] == school.loc["A"]

        bad = [
            ({"networks": ["127.0.0.9/30"]}, 400, "invalid_network", "did you mean 127.0.0.8/30"),
            ({"networks": ["school"]}, 400, "invalid_network", "'school'"),
            ({"networks": ["0.0.0.0/0"]}, 400, "invalid_network", "every address"),
            ({"networks": ["127.0.0.0/29"]}, 409, "overlapping_networks", "127.0.0.0/30"),
            ({"networks": ["2001:db8::/32"]}, 409, "overlapping_networks", "2001:db8:1::/48"),
            ({"code": "99ZZ03"}, 400, "invalid_code", "12AB"),
            ({"code": "12AB01"}, 409, "duplicate_code", "Dependance"),
            ({"lesson_hours": "mon-fri 15:30-08:15"}, 400, "invalid_lesson_hours", "ends before"),
            ({"lesson_hours": "weekdays 08:00-15:00"}, 400, "invalid_lesson_hours", "weekdays"),
            ({"timezone": "Mars/Olympus"}, 400, "invalid_lesson_hours", "Mars/Olympus"),
            ({"name": ""}, 400, "invalid_format", "name"),
        ]
        for change, code, error, words in bad:
            payload = {"name": "Kantoor", "code": "12AB03", "networks": [], **change}
            status, body = await it.request("POST", "/api/admin/locations", payload)
            assert (status, body["error"]["code"]) == (code, error), change
            assert words in body["error"]["message"], body
    saved = await audit_entries(school.server, audit.Actions.LOCATION_SAVED)
    assert len(saved) == 1 and "Sporthal" in saved[0].detail and saved[0].actor == school.admin


async def test_changing_networks_relocates_connected_devices(school):
    """When IT adds a network to location A, a device already connected from it becomes
    on-site for a teacher at A without reconnecting."""
    anna = SourcedAgent(school.server, ANNA[0], "127.0.0.9")
    try:
        await anna.connect()
        async with (
            client_at(school.server, TEACHER, AT_A) as teacher,
            client_at(school.server, school.admin, AT_A) as it,
        ):
            dash = await teacher.dashboard()
            res = await dash.command("subscribe", class_id=school.class_id)
            assert {s["id"]: s["state"]["elsewhere"] for s in res["result"]["students"]}[
                school.anna
            ]
            status, body = await it.request(
                "POST",
                "/api/admin/locations",
                {
                    "id": school.loc["A"],
                    "name": "Hoofdgebouw",
                    "code": "12AB00",
                    "networks": "127.0.0.0/30 127.0.0.8/30",
                },
            )
            assert status == 200, body
            await wait_for(lambda: anna.mode == "grid", message="device now on-site")
            assert dash.last_state(school.anna)["elsewhere"] is False
            await dash.close()
    finally:
        await anna.close()


async def test_remote_mode_input_is_checked(school):
    """An end time is mandatory, in the future and within remote_mode_max_hours; a reason
    is mandatory; a time without zone is the location's local time."""
    clock = FakeClock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC))
    policy(school.server).clock = clock
    url = f"/api/admin/locations/{school.loc['A']}/remote-mode"
    async with client_at(school.server, school.admin, AT_A) as it:
        cases = [
            ({"reason": "x"}, "invalid_format"),
            ({"until": "next week", "reason": "x"}, "invalid_format"),
            ({"until": "2026-11-23T08:00Z", "reason": "x"}, "invalid_until"),
            ({"until": "2026-12-01T09:00:01Z", "reason": "x"}, "invalid_until"),  # 168 h + 1 s
            ({"until": "2026-11-24T09:00Z", "reason": "  "}, "invalid_format"),
        ]
        for body, code in cases:
            status, answer = await it.request("POST", url, body)
            assert (status, answer["error"]["code"]) == (400, code), body
        status, answer = await it.request(
            "POST", url, {"until": "2026-11-27T15:30", "reason": "Storm"}
        )
        assert status == 200, answer
        assert answer["remote_mode"]["until"] == "2026-11-27T14:30:00Z"  # 15:30 in Amsterdam
        status, answer = await it.request(
            "POST",
            "/api/admin/locations/99999/remote-mode",
            {"until": "2026-11-24T09:00Z", "reason": "x"},
        )
        assert status == 404


async def test_letter_to_parents_in_dutch_and_english(school):
    """While the mode is on, the letter names the school, the location, the period and the
    reason, and explains what changes and what does not; in both languages."""
    clock = FakeClock(dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC))  # Monday 08:00 local
    policy(school.server).clock = clock
    base = f"/api/admin/locations/{school.loc['A']}/remote-mode"
    async with client_at(school.server, school.admin, AT_A) as it:
        status, body = await it.request("GET", base + "/letter?lang=nl")
        assert status == 404 and body["error"]["code"] == "not_on"
        status, body = await it.request(
            "POST", base, {"until": "2026-11-27T15:30", "reason": "Stormschade aan het gebouw"}
        )
        assert status == 200
        assert body["remote_mode"]["letter"]["en"].endswith("lang=en")
        status, nl = await it.request("GET", base + "/letter?lang=nl")
        assert status == 200
        status, en = await it.request("GET", base + "/letter?lang=en")
        assert status == 200
        status, _bad = await it.request("GET", base + "/letter?lang=de")
        assert status == 400
    for text in (nl, en):
        assert "School 12AB" in text and "Hoofdgebouw" in text and "12AB00" in text
        assert "Stormschade aan het gebouw" in text
        assert "48" in text
        assert "$" not in text  # every placeholder filled
    assert "maandag 23 november 2026, 08:00 uur" in nl
    assert "vrijdag 27 november 2026, 15:30 uur" in nl
    assert "Wat verandert er niet?" in nl and "vanzelf" in nl
    assert "Monday 23 November 2026, 08:00" in en
    assert "Friday 27 November 2026, 15:30" in en
    assert "What does not change?" in en and "ends by itself" in en
