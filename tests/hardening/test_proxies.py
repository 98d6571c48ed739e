"""Behind a trusted proxy only the hop the proxy itself appended is believed: whatever the
client wrote into X-Forwarded-For or Forwarded (left of that hop, in the other header, in a
second header line, in a quoted parameter) never decides the location."""

from __future__ import annotations

import pytest

from tests.locations.conftest import ANNA, TEACHER, make_school
from tests.support.live import start_live_server
from tests.support.sourced import AT_A, OFF_SITE, SourcedAgent, client_at

PROXY = "127.0.0.9"  # the proxy itself is off-site

# What reaches the server when a client off-site (OFF_SITE) writes the left part itself
# and the proxy appends the address it saw: every one must be refused as elsewhere.
SPOOFED_XFF = [
    {"X-Forwarded-For": f"{AT_A}, {OFF_SITE}"},
    {"X-Forwarded-For": f"{AT_A}:4711, {PROXY}, {OFF_SITE}"},
    {"X-Forwarded-For": f"[::ffff:{AT_A}], {OFF_SITE}"},
    {"Forwarded": f"for={AT_A}", "X-Forwarded-For": OFF_SITE},
    {"Forwarded": f'for="{AT_A}"', "X-Forwarded-For": f"{AT_A}, {OFF_SITE}"},
    {"X-Forwarded-For": f"{AT_A}, unknown"},
    {"X-Forwarded-For": f"{AT_A}, not-an-address"},
]
SPOOFED_FORWARDED = [
    {"X-Forwarded-For": AT_A, "Forwarded": f"for={OFF_SITE}"},
    {"Forwarded": f"for={AT_A}, for={OFF_SITE}"},
    {"Forwarded": f'for="{AT_A}";proto=https, for="{OFF_SITE}:5000"'},
    {"Forwarded": f'by=x;host="a,for={AT_A}", for={OFF_SITE}'},
    {"Forwarded": f"for={AT_A}, for=_hidden"},
    {"Forwarded": f"for={AT_A}, garbage"},
]


async def _subscribe(server, school, headers):
    async with client_at(server, TEACHER, PROXY) as teacher:
        dash = await teacher.dashboard(headers=headers)
        try:
            return await dash.command("subscribe", class_id=school.class_id)
        finally:
            await dash.close()


@pytest.mark.parametrize(
    "header,spoofed,honest",
    [
        ("x-forwarded-for", SPOOFED_XFF, {"X-Forwarded-For": f"{OFF_SITE}, {AT_A}"}),
        ("forwarded", SPOOFED_FORWARDED, {"Forwarded": f'for={OFF_SITE}, for="{AT_A}:4711"'}),
    ],
)
async def test_only_the_proxys_own_hop_decides_the_location(tmp_path, header, spoofed, honest):
    """Each spoofed variant is refused (elsewhere); the honest one, whose last hop is on
    site, is let in; an agent behind the proxy with a spoofed header is elsewhere too."""
    server = await start_live_server(tmp_path, trusted_proxies=PROXY, proxy_header=header)
    try:
        school = await make_school(server)
        for headers in spoofed:
            answer = await _subscribe(server, school, headers)
            assert answer.get("error", {}).get("code") == "elsewhere", headers
        assert (await _subscribe(server, school, honest))["success"] is True
        agent = SourcedAgent(server, ANNA[0], PROXY, headers=spoofed[0])
        try:
            await agent.connect()
            assert server.hub.agents[school.anna].location_id is None
        finally:
            await agent.close()
    finally:
        await server.stop()


async def test_headers_from_an_untrusted_peer_are_ignored(tmp_path):
    """With no trusted proxy configured, any forwarding header naming an on-site address is
    ignored: a client off-site stays off-site."""
    server = await start_live_server(tmp_path)
    try:
        school = await make_school(server)
        for headers in ({"X-Forwarded-For": AT_A}, {"Forwarded": f"for={AT_A}"}):
            async with client_at(server, TEACHER, OFF_SITE) as teacher:
                dash = await teacher.dashboard(headers=headers)
                answer = await dash.command("subscribe", class_id=school.class_id)
                await dash.close()
            assert answer["error"]["code"] == "elsewhere"
    finally:
        await server.stop()
