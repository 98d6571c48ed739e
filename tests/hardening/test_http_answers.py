"""Every HTTP answer carries the security headers (error pages, redirects, static files,
refused upgrades included; HSTS when the server is reached over TLS), and ids outside the
database's range are answered 404/400 or a coded error, never a 500 or a dropped socket."""

from __future__ import annotations

import json

import aiohttp
import pytest
from sqlalchemy import update

from klasblik.server.storage.models import Staff
from tests.support.live import start_live_server
from tests.support.sourced import Dashboard

ANNA = ("anna.bakker@school.example", "Anna", "Bakker")
REQUIRED = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=()",
}


def _check(resp: aiohttp.ClientResponse, what: str, hsts: bool) -> None:
    for name, part in REQUIRED.items():
        assert part in resp.headers.get(name, ""), (what, resp.status, name)
    assert ("Strict-Transport-Security" in resp.headers) is hsts, what


@pytest.mark.parametrize("public_url", ["", "https://klasblik.school.example"])
async def test_every_answer_has_the_security_headers(tmp_path, public_url):
    """Pages, assets, API errors (401, 404, 405, 400), redirects, /healthz, a refused
    dashboard upgrade (403) and a refused agent (503 busy): all with the headers; HSTS
    only where the public address is https."""
    server = await start_live_server(
        tmp_path,
        public_url=public_url,
        hello_max_per_address=1,
        **({"auth_timeout_s": 30} if public_url else {}),
    )
    hsts = bool(public_url)
    try:
        async with aiohttp.ClientSession() as http:
            for method, path in [
                ("GET", "/"),
                ("GET", "/signin"),
                ("GET", "/app.js"),
                ("GET", "/style.css"),
                ("GET", "/favicon.svg"),
                ("GET", "/no-such.js"),
                ("GET", "/no/such/page"),
                ("GET", "/api/me"),
                ("POST", "/api/me"),
                ("GET", "/api/students/abc/thumbnail"),
                ("GET", "/healthz"),
                ("HEAD", "/signin"),
                ("POST", "/auth/demo"),
                ("GET", "/ws/dashboard"),
            ]:
                async with http.request(method, server.base_url + path, allow_redirects=False) as r:
                    _check(r, f"{method} {path}", hsts)
            first = await http.ws_connect(server.agent_url)  # fills the one hello place
            async with http.get(
                server.agent_url.replace("ws:", "http:"),
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13",
                },
            ) as r:
                assert r.status == 503
                _check(r, "agent refused busy", hsts)
            await first.close()
    finally:
        await server.stop()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
async def test_ids_outside_the_range_are_not_found_not_faults(tmp_path, db, request):
    """Huge, negative, zero and non-ASCII ids in URLs, query strings, JSON bodies and
    dashboard commands: 404/400 or a coded result; the socket stays open."""
    overrides = {}
    if db == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    server = await start_live_server(tmp_path, **overrides)
    try:
        ids = await server.add_class("7B", [ANNA])
        async with server.sm() as session, session.begin():
            await session.execute(update(Staff).values(is_admin=True))
        client = await server.login("teacher@school.example")
        base = server.base_url
        huge = str(2**70)
        for path, status in [
            (f"/api/students/{huge}/thumbnail", 404),
            (f"/api/students/{2**31}/thumbnail", 404),
            ("/api/students/-5/thumbnail", 404),
            ("/api/students/0/thumbnail", 404),
            ("/api/students/1e3/thumbnail", 400),
            ("/api/students/%D9%A3/thumbnail", 400),
            (f"/api/admin/locations/{huge}/remote-mode/letter", 404),
            ("/api/admin/locations/-3/remote-mode/letter", 404),
            ("/api/admin/locations/x/remote-mode/letter", 400),
            (f"/api/admin/audit?before_id={huge}", 400),
            ("/api/admin/audit?limit=-1", 400),
        ]:
            async with client.get(base + path) as r:
                body = await r.json()
                assert (r.status, "code" in body["error"]) == (status, True), (path, body)
        me = await (await client.get(base + "/api/me")).json()
        async with client.post(
            base + "/api/admin/locations",
            json={"id": 2**70, "name": "X", "code": "X1", "networks": "10.0.0.0/24"},
            headers={"Origin": base, "X-CSRF-Token": me["csrf_token"]},
        ) as r:
            assert r.status in (400, 404), await r.text()
        dash = Dashboard(await server.dashboard(client))
        for kind, field in [("subscribe", "class_id"), ("focus", "student_id")]:
            for value in (2**63, 2**31, -1, 0):
                answer = await dash.command(kind, **{field: value})
                assert answer["error"]["code"] == "not_found", (kind, value, answer)
        assert (await dash.command("subscribe", class_id=ids["class_id"]))["success"]
        assert not dash.ws.closed
        await dash.ws.send_str(json.dumps({"type": "ping", "id": 2**80}))  # an id too large
        assert (await dash.command("ping"))["success"] is True
        await dash.close()
    finally:
        await server.stop()
