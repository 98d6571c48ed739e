"""Microsoft 365 sign-in through the real msal flow against a real OpenID Connect provider
on loopback (TLS), one test per refusal: each ends on /signin with its reason and creates
nothing for that account."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import select

from klasblik.server.storage.models import AuditEntry, Staff
from tests.m365 import signin_flow as f
from tests.support.live import start_live_server
from tests.support.oidc import oid_for, run_provider

TEACHER = "m.devries@school.example"
STUDENT = ("anna.bakker@school.example", "Anna", "Bakker")


async def _roster(server):
    return await server.add_class("7B", [STUDENT], teacher=TEACHER, teacher_name="M. de Vries")


async def test_auth_options_say_microsoft(m365_server):
    """With a tenant configured, /api/auth/options offers Microsoft 365 sign-in."""
    async with f.new_client() as http:
        async with http.get(m365_server.base_url + "/api/auth/options") as resp:
            assert (await resp.json())["microsoft"] is True


async def test_auth_options_without_tenant(live_server):
    """Without a tenant, Microsoft 365 sign-in is not offered and /auth/login says why."""
    async with f.new_client() as http:
        async with http.get(live_server.base_url + "/api/auth/options") as resp:
            assert (await resp.json())["microsoft"] is False
        out = await f.callback(http, live_server.base_url + "/auth/login")
        assert out.status == 303 and out.error == "not_configured"


async def test_teacher_signs_in(m365_server, provider):
    """A teacher of the roster completes the flow and gets a server-side session."""
    await _roster(m365_server)
    sub = provider.add_user(TEACHER, "M. de Vries")
    async with f.new_client() as http:
        out = await f.sign_in(http, m365_server, provider, sub)
        assert (out.status, out.location) == (303, "/")
        async with http.get(m365_server.base_url + "/api/me") as resp:
            me = await resp.json()
        assert me["user"]["username"] == TEACHER and me["user"]["is_admin"] is False
        assert [c["name"] for c in me["classes"]] == ["7B"]
    async with m365_server.sm() as s:
        staff = await s.scalar(select(Staff).where(Staff.username == TEACHER))
    assert staff.m365_id == oid_for(TEACHER)


async def test_session_cookie_flags(m365_server, provider):
    """The session cookie is HttpOnly and SameSite=Lax; the login cookie is cleared."""
    await _roster(m365_server)
    sub = provider.add_user(TEACHER)
    async with f.new_client() as http:
        authorize_url = await f.start(http, m365_server)
        url = await f.provider_login(provider, authorize_url, sub)
        async with http.get(url, allow_redirects=False) as resp:
            cookies = resp.headers.getall("Set-Cookie")
    session = [c for c in cookies if c.startswith("klasblik_session=")]
    assert session and "HttpOnly" in session[0] and "SameSite=Lax" in session[0]
    assert any(c.startswith("klasblik_login=") and "Max-Age=0" in c for c in cookies)


async def test_it_admin_role_marks_admin_but_grants_no_class(m365_server, provider):
    """The IT admin app role sets is_admin; it gives no class and no student."""
    ids = await _roster(m365_server)
    await m365_server.add_class("8C", [("x@school.example", "X", "Y")], teacher="it@school.example")
    sub = provider.add_user("it@school.example", roles=["Klasblik.Admin"])
    async with f.new_client() as http:
        out = await f.sign_in(http, m365_server, provider, sub)
        assert out.location == "/"
        async with http.get(m365_server.base_url + "/api/me") as resp:
            me = await resp.json()
        assert me["user"]["is_admin"] is True
        assert "7B" not in [c["name"] for c in me["classes"]]
        sid = ids["students"][STUDENT[0]]
        async with http.get(f"{m365_server.base_url}/api/students/{sid}/thumbnail") as resp:
            assert resp.status == 403


async def test_it_admin_group_is_the_sync_s_not_the_token_s(tmp_path, provider):
    """With m365_admin_group set, the group as the roster sync read it decides (the flag
    on the staff row), never the token: a groups claim naming the group, the admin app
    role, or a groups overage (no groups claim, ``_claim_names``/``hasgroups`` instead,
    https://learn.microsoft.com/entra/identity-platform/id-token-claims-reference) change
    nothing, either way."""
    group = "3c1f4b2a-9d8e-4f70-a6b5-c4d3e2f1a0b9"
    server = await start_live_server(tmp_path, **provider.settings(m365_admin_group=group))
    try:
        await _roster(server)
        claimer = provider.add_user(TEACHER, groups=[group], roles=["Klasblik.Admin"])
        async with f.new_client() as http:
            assert (await f.sign_in(http, server, provider, claimer)).location == "/"
            async with http.get(server.base_url + "/api/me") as resp:
                assert (await resp.json())["user"]["is_admin"] is False
        await server.add_class("9A", [], teacher="x@school.example")
        async with server.sm() as s, s.begin():
            row = await s.scalar(select(Staff).where(Staff.username == "x@school.example"))
            row.is_admin = True  # what the sync sets for a member of the group
        overage = provider.add_user(
            "x@school.example",
            _claim_names={"groups": "src1"},
            _claim_sources={"src1": {"endpoint": "https://graph.microsoft.com/v1.0/me/memberOf"}},
            hasgroups=True,
        )
        async with f.new_client() as http:
            assert (await f.sign_in(http, server, provider, overage)).location == "/"
            async with http.get(server.base_url + "/api/me") as resp:
                assert (await resp.json())["user"]["is_admin"] is True
    finally:
        await server.stop()


async def test_guest_of_the_tenant_refused(m365_server, provider):
    """A guest signed in to the school's tenant (``tid`` is the school's, the home
    identity provider ``idp`` another tenant's; or ``acct`` 1) is refused as staff, even
    when a staff row carries the same username."""
    await _roster(m365_server)
    home = "https://sts.windows.net/0b6d8e2f-0000-4000-8000-000000000bad/"
    guest = provider.add_user(TEACHER, oid=str(uuid.uuid4()), idp=home)
    await _refused(m365_server, provider, guest, "guest_account")
    marked = provider.add_user(TEACHER, acct=1)
    await _refused(m365_server, provider, marked, "guest_account")
    assert await f.count_sessions(m365_server) == 0


async def test_username_is_never_the_key(m365_server, provider):
    """An account with a staff member's preferred_username but another object id (a
    renamed or reused username) is not that staff member: unknown_account."""
    await _roster(m365_server)
    other = provider.add_user(TEACHER, oid=str(uuid.uuid4()))
    await _refused(m365_server, provider, other, "unknown_account")
    no_oid = str(uuid.uuid4())
    provider.put_user(no_oid, tid=provider.tenant, preferred_username=TEACHER)
    await _refused(m365_server, provider, no_oid, "invalid_token")


async def _refused(server, provider, sub, code):
    async with f.new_client() as http:
        out = await f.sign_in(http, server, provider, sub)
    assert out.status == 303 and out.location.startswith("/signin?"), out
    assert out.error == code, out
    assert out.message
    return out


async def test_other_tenant_refused(m365_server, provider):
    """A token from another tenant is refused (wrong_tenant) and nothing is created."""
    await _roster(m365_server)
    staff_before = await f.count_staff(m365_server)
    sub = provider.add_user(TEACHER, tenant="0b6d8e2f-0000-4000-8000-000000000bad")
    await _refused(m365_server, provider, sub, "wrong_tenant")
    assert await f.count_sessions(m365_server) == 0
    assert await f.count_staff(m365_server) == staff_before


async def test_unknown_account_refused(m365_server, provider):
    """An account of the tenant that is not in the roster is refused and not created."""
    await _roster(m365_server)
    staff_before = await f.count_staff(m365_server)
    sub = provider.add_user("stranger@school.example")
    await _refused(m365_server, provider, sub, "unknown_account")
    assert await f.count_staff(m365_server) == staff_before
    assert await f.count_sessions(m365_server) == 0
    async with m365_server.sm() as s:
        entry = await s.scalar(
            select(AuditEntry).where(AuditEntry.action == "auth.sign_in.refused")
        )
    assert entry.actor == "stranger@school.example" and entry.detail == "unknown_account"


async def test_student_account_refused(m365_server, provider):
    """A student can never open the dashboard: student_account."""
    await _roster(m365_server)
    sub = provider.add_user(STUDENT[0])
    await _refused(m365_server, provider, sub, "student_account")
    assert await f.count_sessions(m365_server) == 0


async def test_disabled_staff_refused(m365_server, provider):
    """A staff member disabled in the roster is refused: account_disabled."""
    ids = await _roster(m365_server)
    async with m365_server.sm() as s, s.begin():
        (await s.get(Staff, ids["teacher_id"])).active = False
    sub = provider.add_user(TEACHER)
    await _refused(m365_server, provider, sub, "account_disabled")
    assert await f.count_sessions(m365_server) == 0


async def test_forged_signature_refused(m365_server, provider):
    """An ID token signed with a key the provider never published is refused."""
    await _roster(m365_server)
    sub = provider.add_user(TEACHER)
    provider.forge_next_token = True
    out = await _refused(m365_server, provider, sub, "invalid_token")
    assert "signature" in out.message
    assert provider.forge_next_token is False  # the forged answer was really served
    assert await f.count_sessions(m365_server) == 0


async def test_expired_token_refused(tmp_path):
    """An ID token that has already expired is refused: expired_token."""
    folder = tmp_path / "oidc"
    folder.mkdir()
    with run_provider(folder, token_max_age=dt.timedelta(minutes=-10)) as provider:
        server = await start_live_server(tmp_path, **provider.settings())
        try:
            await _roster(server)
            sub = provider.add_user(TEACHER)
            await _refused(server, provider, sub, "expired_token")
            assert await f.count_sessions(server) == 0
        finally:
            await server.stop()


async def test_replayed_state_refused(m365_server, provider):
    """The same callback used twice: the second is refused (invalid_state)."""
    await _roster(m365_server)
    sub = provider.add_user(TEACHER)
    async with f.new_client() as http:
        authorize_url = await f.start(http, m365_server)
        cookie = http.cookie_jar.filter_cookies(m365_server.base_url + "/auth/callback")[
            "klasblik_login"
        ].value
        url = await f.provider_login(provider, authorize_url, sub)
        first = await f.callback(http, url)
        assert first.location == "/"
    async with f.new_client() as replay:
        replay.cookie_jar.update_cookies({"klasblik_login": cookie})
        again = await f.callback(replay, url)
    assert again.error == "invalid_state"
    assert await f.count_sessions(m365_server) == 1


async def test_missing_state_refused(m365_server, provider):
    """A callback without state is refused (missing_state) and creates no session."""
    await _roster(m365_server)
    sub = provider.add_user(TEACHER)
    async with f.new_client() as http:
        authorize_url = await f.start(http, m365_server)
        url = await f.provider_login(provider, authorize_url, sub)
        parts = urlsplit(url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "state"])
        out = await f.callback(http, f"{m365_server.base_url}{parts.path}?{query}")
    assert out.error == "missing_state"
    assert await f.count_sessions(m365_server) == 0


async def test_state_of_another_sign_in_refused(m365_server, provider):
    """A callback whose state belongs to another browser's sign-in is refused."""
    await _roster(m365_server)
    sub = provider.add_user(TEACHER)
    async with f.new_client() as victim, f.new_client() as attacker:
        await f.start(victim, m365_server)
        authorize_url = await f.start(attacker, m365_server)
        url = await f.provider_login(provider, authorize_url, sub)
        out = await f.callback(victim, url)
    assert out.error == "invalid_state"
    assert await f.count_sessions(m365_server) == 0


async def test_ca_file_wins_over_ca_bundle_variables(m365_server, provider, monkeypatch):
    """m365_ca_file is used even when REQUESTS_CA_BUNDLE names another bundle."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/bundle.pem")
    await _roster(m365_server)
    sub = provider.add_user(TEACHER)
    async with f.new_client() as http:
        assert (await f.sign_in(http, m365_server, provider, sub)).location == "/"


async def test_flow_is_kept_server_side_and_used_once(m365_server, provider):
    """The browser holds only a random key; the flow (state, nonce, PKCE verifier) is a
    database row that the callback deletes."""
    from sqlalchemy import func

    from klasblik.server.storage.models import PendingLogin

    async def pending():
        async with m365_server.sm() as s:
            return await s.scalar(select(func.count()).select_from(PendingLogin))

    await _roster(m365_server)
    sub = provider.add_user(TEACHER)
    async with f.new_client() as http:
        authorize_url = await f.start(http, m365_server)
        key = http.cookie_jar.filter_cookies(m365_server.base_url + "/auth/callback")[
            "klasblik_login"
        ].value
        async with m365_server.sm() as s:
            flow = await s.scalar(select(PendingLogin.flow))
        assert await pending() == 1
        assert key not in flow and "code_verifier" in flow and "nonce" in flow
        assert dict(parse_qsl(urlsplit(authorize_url).query))["code_challenge_method"] == "S256"
        await f.callback(http, await f.provider_login(provider, authorize_url, sub))
    assert await pending() == 0


async def test_unreachable_authority_is_a_clear_refusal(tmp_path):
    """When the sign-in authority cannot be reached, /auth/login says so on /signin."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = await start_live_server(
        tmp_path,
        m365_tenant_id="t",
        m365_client_id="c",
        m365_client_secret="s",
        m365_authority=f"https://127.0.0.1:{port}/t/v2.0",
        roster_sync_interval_min=0,
    )
    try:
        async with f.new_client() as http:
            out = await f.callback(http, server.base_url + "/auth/login")
        assert out.status == 303 and out.error == "unavailable"
    finally:
        await server.stop()
