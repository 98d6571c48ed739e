"""A location rule that a typo cannot undo: networks covering (nearly) every address are
refused, networks wider than /8 (IPv4) or /32 (IPv6) need an explicit confirmation outside
the demo, and a clash with another school's location never names that location."""

from __future__ import annotations

from sqlalchemy import select

from klasblik.server.storage.models import Location, School
from tests.locations.conftest import make_school
from tests.support.sourced import AT_A, client_at


def _loc(**change):
    return {"name": "Kantoor", "code": "12AB03", "networks": [], **change}


async def test_near_universal_networks_are_refused_and_wide_ones_need_confirmation(server):
    school = await make_school(server)
    async with client_at(server, school.admin, AT_A) as it:
        for net in ("0.0.0.0/1", "128.0.0.0/3", "::/1", "2000::/15"):
            status, body = await it.request("POST", "/api/admin/locations", _loc(networks=[net]))
            assert (status, body["error"]["code"]) == (400, "network_too_wide"), net
        for net in ("10.0.0.0/7", "2001:db8::/31"):
            status, body = await it.request("POST", "/api/admin/locations", _loc(networks=[net]))
            assert (status, body["error"]["code"]) == (400, "confirm_wide_network"), net
            assert "confirm_wide" in body["error"]["message"]
        status, body = await it.request(
            "POST", "/api/admin/locations", _loc(networks=["10.0.0.0/7"], confirm_wide=True)
        )
        assert status == 201, body
        status, body = await it.request(
            "POST", "/api/admin/locations", _loc(code="12AB04", networks=["192.168.0.0/16"])
        )
        assert status == 201, body  # narrower than /8: no confirmation needed


async def test_a_clash_with_another_school_does_not_name_it(server):
    school = await make_school(server)
    async with server.sm() as session, session.begin():
        other = School(name="Geheime School", brin="99ZZ")
        session.add(other)
        await session.flush()
        session.add(
            Location(
                school_id=other.id,
                name="Geheime Locatie",
                code="99ZZ00",
                networks="198.51.100.0/24",
            )
        )
    async with client_at(server, school.admin, AT_A) as it:
        status, body = await it.request(
            "POST", "/api/admin/locations", _loc(networks=["198.51.100.0/25"])
        )
    assert (status, body["error"]["code"]) == (409, "overlapping_networks")
    message = body["error"]["message"]
    assert "another school" in message
    for secret in ("Geheime", "99ZZ", "198.51.100.0/24"):
        assert secret not in message
    async with server.sm() as session:
        codes = list(await session.scalars(select(Location.code).order_by(Location.code)))
    assert "12AB03" not in codes
