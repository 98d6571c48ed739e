"""Sign-in with Microsoft 365: ``GET /auth/login`` starts msal's authorization-code flow
(PKCE, state and nonce from msal; the flow kept server-side), ``GET /auth/callback``
redeems the code, validates the ID token (``idtoken.py``) and signs in active staff of the
roster. Every refusal sends the browser to ``/signin?error=CODE&message=TEXT`` and creates
nothing for that account."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select

from klasblik.protocol.errors import KlasblikError
from klasblik.server.access import audit
from klasblik.server.auth.m365.client import M365Client, M365Error
from klasblik.server.auth.m365.idtoken import TokenRefused, validate_id_token
from klasblik.server.auth.m365.pending import COOKIE as LOGIN_COOKIE
from klasblik.server.auth.m365.pending import LIFETIME, put_flow, take_flow
from klasblik.server.auth.sessions import create_session, set_session_cookie
from klasblik.server.keys import DB, M365, SETTINGS
from klasblik.server.net import client_ip
from klasblik.server.settings import Settings
from klasblik.server.storage.models import Staff, Student

__all__ = ["SignInRefused", "microsoft_client", "setup_m365_signin"]

log = logging.getLogger(__name__)


class SignInRefused(KlasblikError):
    code = "sign_in_refused"
    status = 403

    def __init__(self, code: str, message: str, actor: str = "(unknown)") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.actor = actor


def microsoft_client(app: web.Application) -> M365Client | None:
    """The application's one Microsoft 365 client, or None when sign-in is not configured."""
    return app.get(M365)


def _secure(settings: Settings) -> bool:
    return settings.effective_public_url.startswith("https:")


def _redirect_uri(request: web.Request) -> str:
    public = request.app[SETTINGS].public_url
    base = str(public).rstrip("/") if public else f"{request.scheme}://{request.host}"
    return base + "/auth/callback"


def _to_signin(code: str, message: str) -> web.HTTPSeeOther:
    resp = web.HTTPSeeOther("/signin?" + urlencode({"error": code, "message": message[:300]}))
    resp.del_cookie(LOGIN_COOKIE, path="/auth")
    return resp


async def login(request: web.Request) -> web.StreamResponse:
    """Start the sign-in: keep msal's flow server-side, send the browser to Microsoft."""
    app = request.app
    client = microsoft_client(request.app)
    if client is None:
        raise _to_signin("not_configured", "Microsoft 365 sign-in is not set up on this server")
    try:
        flow = await client.start_flow(_redirect_uri(request))
    except M365Error as exc:
        log.warning("sign-in could not start: %s", exc)
        raise _to_signin(
            "unavailable", "Microsoft 365 cannot be reached; try again later"
        ) from None
    key = await put_flow(app[DB], flow)
    resp = web.HTTPFound(str(flow["auth_uri"]))
    resp.set_cookie(
        LOGIN_COOKIE,
        key,
        max_age=int(LIFETIME.total_seconds()),
        httponly=True,
        secure=_secure(app[SETTINGS]),
        samesite="Lax",
        path="/auth",
    )
    raise resp


def _fail(code: str, message: str, actor: str = "(unknown)") -> NoReturn:
    raise SignInRefused(code, message, actor)


async def _redeem(request: web.Request, client: M365Client) -> dict[str, Any]:
    """The verified ID-token claims of this callback, or SignInRefused."""
    app = request.app
    params = dict(request.query)
    flow = await take_flow(app[DB], request.cookies.get(LOGIN_COOKIE))
    if "error" in params:
        _fail("provider_refused", params.get("error_description") or params["error"])
    if not params.get("state"):
        _fail(
            "missing_state", "the answer from Microsoft carried no state; start the sign-in again"
        )
    if flow is None:
        _fail(
            "invalid_state",
            "this sign-in was already used, has expired or was started elsewhere; start again",
        )
    try:
        result = await client.finish_flow(flow, params)
    except ValueError:
        _fail("invalid_state", "the answer from Microsoft does not match the sign-in you started")
    except RuntimeError:
        _fail("invalid_token", "the ID token does not match the sign-in you started (nonce)")
    except M365Error as exc:
        log.warning("sign-in could not finish: %s", exc)
        _fail("unavailable", "Microsoft 365 cannot be reached; try again later")
    if "error" in result:
        _fail("provider_refused", str(result.get("error_description") or result["error"]))
    try:
        return await validate_id_token(client, result.get("id_token"))
    except TokenRefused as exc:
        _fail(exc.code, exc.message)
    except M365Error as exc:
        log.warning("sign-in keys unavailable: %s", exc)
        _fail("unavailable", "Microsoft 365 cannot be reached; try again later")


def _is_admin(settings: Settings, claims: dict[str, Any], staff: Staff) -> bool:
    """IT admin: with ``m365_admin_group`` set, the group decides, as the roster sync read
    it (``staff.is_admin``; the ``groups`` claim is never used, so an overage, a token of
    a member of more than 200 groups without that claim, changes nothing). Without a group,
    the app role in the ``roles`` claim decides (app roles have no overage)."""
    if settings.m365_admin_group:
        return staff.is_admin
    roles = claims.get("roles") or []
    role = settings.m365_admin_role
    return bool(role and isinstance(roles, list) and role in roles)


async def _staff_for(request: web.Request, claims: dict[str, Any]) -> Staff:
    """The active staff member behind the claims, updated; or SignInRefused. Matched on
    the object id alone: ``preferred_username`` is only shown and logged, never a key."""
    app = request.app
    oid = str(claims.get("oid") or "")
    upn = str(claims.get("preferred_username") or "").strip().lower()
    actor = upn or oid
    async with app[DB]() as session, session.begin():
        staff = await session.scalar(select(Staff).where(Staff.m365_id == oid)) if oid else None
        if staff is None:
            student = (
                await session.scalar(select(Student).where(Student.m365_id == oid)) if oid else None
            )
            if student is not None:
                _fail("student_account", "students cannot open the dashboard", actor)
            _fail(
                "unknown_account",
                "your account is not in the school's staff roster; ask your IT department",
                actor,
            )
        if not staff.active:
            _fail("account_disabled", "your account is disabled in the school's roster", actor)
        staff.last_ip = client_ip(request)
        staff.is_admin = _is_admin(app[SETTINGS], claims, staff)
    return staff


async def callback(request: web.Request) -> web.StreamResponse:
    """The redirect URI: finish the sign-in or send the browser back with the reason."""
    app = request.app
    ip = client_ip(request)
    client = microsoft_client(request.app)
    if client is None:
        raise _to_signin("not_configured", "Microsoft 365 sign-in is not set up on this server")
    try:
        claims = await _redeem(request, client)
        staff = await _staff_for(request, claims)
    except SignInRefused as exc:
        log.info("sign-in refused (%s): %s", exc.code, exc.message)
        await audit.record(
            app[DB], exc.actor, audit.Actions.SIGN_IN_REFUSED, "microsoft", exc.code, ip
        )
        raise _to_signin(exc.code, exc.message) from None
    token, _row = await create_session(app[DB], staff.id, ip, app[SETTINGS])
    await audit.record(
        app[DB],
        staff.username,
        audit.Actions.SIGN_IN,
        "microsoft",
        "it admin" if staff.is_admin else "",
        ip,
    )

    resp = web.HTTPSeeOther("/")
    set_session_cookie(resp, token, request.app[SETTINGS])
    resp.del_cookie(LOGIN_COOKIE, path="/auth")
    raise resp


def setup_m365_signin(app: web.Application, settings: Settings) -> None:
    """Add the sign-in routes; when a tenant is configured, open the client with the app."""
    app.router.add_get("/auth/login", login)
    app.router.add_get("/auth/callback", callback)
    if not settings.m365_tenant_id:
        return

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        client = M365Client(settings)
        app[M365] = client
        try:
            yield
        finally:
            client.close()

    app.cleanup_ctx.append(client_ctx)
