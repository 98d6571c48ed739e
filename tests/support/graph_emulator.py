"""A local EMULATOR of the parts of Microsoft Graph that roster sync reads. It is not
Microsoft Graph: it follows Microsoft's documented request and response shapes so that the
real client (``klasblik.server.roster.graph``) can be tested on loopback.

Shapes followed (each linked to Microsoft's page):

- collections in ``value``; paging by ``@odata.nextLink`` (``$skiptoken``)
  (https://learn.microsoft.com/graph/paging);
- the education API of School Data Sync: ``/education/schools``,
  ``/education/schools/{id}/users`` and ``/classes``, ``/education/classes/{id}/members``
  and ``/teachers`` (https://learn.microsoft.com/graph/api/resources/education-overview),
  users as ``educationUser`` (``primaryRole`` student/teacher/faculty, ``userType``
  Member/Guest, ``accountEnabled``), classes as ``educationClass`` with a ``term``
  (``educationTerm``: ``startDate``/``endDate`` dates,
  https://learn.microsoft.com/graph/api/resources/educationterm);
- delta queries ``/education/users/delta`` and ``/education/classes/delta``
  (https://learn.microsoft.com/graph/api/educationuser-delta,
  https://learn.microsoft.com/graph/api/educationclass-delta: a class appears when it or
  its membership changed; deleted classes are not reported), rounds ending in
  ``@odata.deltaLink`` (``$deltatoken``), deleted users as
  ``{"id", "@removed": {"reason": "deleted"}}``;
- an expired delta link (past its lifetime) answered **400** with error code
  ``syncStateNotFound`` and Microsoft's message; a synchronization reset answered **410
  Gone** with a ``Location`` to start again
  (https://devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources,
  https://learn.microsoft.com/graph/delta-query-overview#synchronization-reset);
- ``/groups/{id}/transitiveMembers`` (the IT admin group's members,
  https://learn.microsoft.com/graph/api/group-list-transitivemembers);
- a bearer token on every request (401 ``InvalidAuthenticationToken`` otherwise);
  throttling as 429 with ``Retry-After``
  (https://learn.microsoft.com/graph/throttling); errors as
  ``{"error": {"code", "message", "innerError": {"date", "request-id", ...}}}``.

Two token modes. By default the bearer token is the fixed string ``token`` (tests of the
Graph client alone). ``require_app_tokens(jwks, tenant, issuer)`` makes it check real
app-only tokens instead, as Graph does: a JWT signed by a key of that JSON Web Key Set
(RS256), ``aud`` https://graph.microsoft.com, that ``iss`` and ``tid``, within its
lifetime; anything else is 401 ``InvalidAuthenticationToken`` (with Graph's
``WWW-Authenticate: Bearer ...`` header). A valid token whose ``roles`` hold none of the
application permissions a request needs (``PERMISSIONS``) is 403
``Authorization_RequestDenied``. The bearer tokens accepted are kept in ``seen_tokens``.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from yarl import URL

from tests.support.timing import timeout

__all__ = [
    "GRAPH_AUDIENCE",
    "PERMISSIONS",
    "AppTokenCheck",
    "GraphEmulator",
    "start_graph_emulator",
]

#: Microsoft Graph's resource id: the audience its tokens must name.
GRAPH_AUDIENCE = "https://graph.microsoft.com"
_EDU_READ = frozenset({"EduRoster.Read.All", "EduRoster.ReadWrite.All"})
#: Path prefix (after /v1.0) -> the application permissions, any of which lets an app
#: token read it, from the "Permissions" table of each API's page: the two education
#: delta functions take ``EduRoster.ReadBasic.All`` (least privileged) or higher
#: (educationuser-delta, educationclass-delta); listing a class's members or teachers,
#: a school's users and classes need ``EduRoster.Read.All`` (educationclass-list-members,
#: educationclass-list-teachers: "Application: EduRoster.Read.All"). First match wins.
PERMISSIONS: dict[str, frozenset[str]] = {
    "/education/users/delta": _EDU_READ | {"EduRoster.ReadBasic.All"},
    "/education/classes/delta": _EDU_READ | {"EduRoster.ReadBasic.All"},
    "/education/": _EDU_READ,
    "/users": frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All"}),
    "/groups/": frozenset(
        {"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All"}
    ),
}
#: What Graph sends with a 401: where to get a token, for which resource (Graph's app id).
_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)


class _Answer(Exception):
    """A handler's early answer (an error response)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class AppTokenCheck:
    """What an app-only bearer token must be for the emulator to answer."""

    jwks: dict[str, Any]
    tenant: str
    issuer: str
    audience: str = GRAPH_AUDIENCE

    def claims(self, token: str) -> dict[str, Any]:
        """The token's verified claims, or _Refused (401) saying what is wrong with it."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise _Refused(
                401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed."
            ) from None
        keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(self.jwks).keys}
        key = keys.get(header.get("kid"))
        if key is None or header.get("alg") != "RS256":
            raise _Refused(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid signing key.",
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid"]},
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise _Refused(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            ) from None
        except jwt.InvalidAudienceError:
            raise _Refused(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            ) from None
        except jwt.InvalidIssuerError:
            raise _Refused(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid issuer.",
            ) from None
        except jwt.InvalidSignatureError:
            raise _Refused(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid signature.",
            ) from None
        except jwt.InvalidTokenError as exc:
            raise _Refused(
                401, "InvalidAuthenticationToken", f"Access token validation failure. {exc}"
            ) from None
        if claims["tid"] != self.tenant:
            raise _Refused(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid tenant.",
            )
        return claims


@dataclass
class _User:
    id: str
    upn: str
    given: str
    surname: str
    role: str  # educationUserRole: "student" | "teacher" | "faculty" | "none"
    schools: set[str]
    enabled: bool = True
    user_type: str = "Member"  # "Guest" for an invited account of another tenant

    def shape(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": f"{self.given} {self.surname}".strip(),
            "givenName": self.given,
            "surname": self.surname,
            "userPrincipalName": self.upn,
            "accountEnabled": self.enabled,
            "primaryRole": self.role,
            "userType": self.user_type,
        }


@dataclass
class _Class:
    id: str
    name: str
    school: str
    members: set[str] = field(default_factory=set)
    teachers: set[str] = field(default_factory=set)
    #: educationTerm (displayName, startDate, endDate as "YYYY-MM-DD"), or None
    term: dict[str, Any] | None = None


@dataclass
class GraphEmulator:
    token: str = "emulator-token"
    page_size: int = 2
    base_url: str = ""
    schools: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, _User] = field(default_factory=dict)
    classes: dict[str, _Class] = field(default_factory=dict)
    version: int = 0
    #: user id -> version of its last change; deleted users keep an entry here
    user_changes: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    #: (version, class id, member id, removed)
    member_events: list[tuple[int, str, str, bool]] = field(default_factory=list)
    #: delta tokens below this are past their lifetime: 400 syncStateNotFound
    oldest_delta_token: int = 0
    #: delta tokens below this hit a synchronization reset: 410 Gone
    reset_delta_token: int = 0
    #: when set, ``@odata.nextLink`` points at this base URL instead of the emulator's
    #: own (a hostile or broken answer: the client must not follow it)
    next_link_base: str = ""
    #: group id -> user ids (transitive members), for ``/groups/{id}/transitiveMembers``
    groups: dict[str, set[str]] = field(default_factory=dict)
    #: answer the next N requests with 429
    throttle_next: int = 0
    #: answer every request whose path contains this with 503 (a Graph outage there)
    fail_path_contains: str = ""
    #: seconds each answer waits, like Graph's own latency (benchmarks)
    latency_s: float = 0.0
    retry_after_s: int = 1
    #: (monotonic time, path, status) of every request
    requests: list[tuple[float, str, int]] = field(default_factory=list)
    #: set by ``require_app_tokens``: check real app-only tokens instead of ``token``
    app_tokens: AppTokenCheck | None = None
    #: every bearer token the emulator accepted, in order
    seen_tokens: list[str] = field(default_factory=list)

    def require_app_tokens(
        self, jwks: dict[str, Any], tenant: str, issuer: str, audience: str = GRAPH_AUDIENCE
    ) -> None:
        """Accept only app-only JWTs signed by a key of ``jwks`` for this tenant."""
        self.app_tokens = AppTokenCheck(jwks, tenant, issuer, audience)

    # ---- set-up and changes, as an admin would make them in Microsoft 365 ----------

    def _bump(self) -> int:
        self.version += 1
        return self.version

    def add_school(self, name: str, school_number: str) -> str:
        sid = str(uuid.uuid4())
        self.schools[sid] = {
            "id": sid,
            "displayName": name,
            "schoolNumber": school_number,
            "externalId": school_number,
            "address": {"city": "Utrecht", "countryOrRegion": "NL"},
        }
        return sid

    def add_user(
        self, upn: str, given: str, surname: str, role: str, school: str, user_type: str = "Member"
    ) -> str:
        uid = str(uuid.uuid4())
        self.users[uid] = _User(uid, upn, given, surname, role, {school}, user_type=user_type)
        self.user_changes[uid] = self._bump()
        return uid

    def add_class(
        self,
        name: str,
        school: str,
        students: list[str],
        teachers: list[str],
        term: dict[str, Any] | None = None,
    ) -> str:
        cid = str(uuid.uuid4())
        self.classes[cid] = _Class(cid, name, school, term=term)
        for uid in students:
            self.add_member(cid, uid)
        for uid in teachers:
            self.classes[cid].teachers.add(uid)
            self.add_member(cid, uid)
        return cid

    def add_member(self, cid: str, uid: str) -> None:
        self.classes[cid].members.add(uid)
        self.member_events.append((self._bump(), cid, uid, False))

    def remove_member(self, cid: str, uid: str) -> None:
        cls = self.classes[cid]
        cls.members.discard(uid)
        cls.teachers.discard(uid)
        self.member_events.append((self._bump(), cid, uid, True))

    def set_term(self, cid: str, term: dict[str, Any] | None) -> None:
        """Change a class's term (an SDS academic session), as a class change."""
        self.classes[cid].term = term
        self.member_events.append((self._bump(), cid, "", False))

    def expire_delta_links(self) -> None:
        """Every delta link handed out so far is past its lifetime (400 syncStateNotFound)."""
        self.oldest_delta_token = self.version + 1

    def reset_delta_links(self) -> None:
        """A synchronization reset: every delta link handed out so far answers 410 Gone."""
        self.reset_delta_token = self.version + 1

    def disable_user(self, uid: str) -> None:
        self.users[uid].enabled = False
        self.user_changes[uid] = self._bump()

    def delete_user(self, uid: str) -> None:
        user = self.users.pop(uid)
        self.deleted.add(uid)
        self.user_changes[uid] = self._bump()
        for cls in self.classes.values():
            if uid in cls.members or uid in cls.teachers:
                cls.members.discard(uid)
                cls.teachers.discard(uid)
                self.member_events.append((self._bump(), cls.id, user.id, True))

    # ---- HTTP ------------------------------------------------------------------------

    def _authorize(self, request: web.Request) -> None:
        """Raise _Refused unless the request carries a token this emulator accepts."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refused(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self.app_tokens is None:
            if token != self.token:
                raise _Refused(
                    401, "InvalidAuthenticationToken", "Access token is empty or invalid."
                )
        else:
            claims = self.app_tokens.claims(token)
            path = request.path.removeprefix("/v1.0")
            needed = next((v for k, v in PERMISSIONS.items() if path.startswith(k)), None)
            if needed is not None and not needed & set(claims.get("roles") or ()):
                raise _Refused(
                    403,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                )
        self.seen_tokens.append(token)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.latency_s:
            import asyncio

            await asyncio.sleep(self.latency_s)
        try:
            self._authorize(request)
            refused = None
        except _Refused as exc:
            refused = exc
        if refused is not None:
            resp: web.StreamResponse = _error(refused.status, refused.code, refused.message)
            if refused.status == 401:
                resp.headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        elif self.fail_path_contains and self.fail_path_contains in request.path:
            resp = _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        elif self.throttle_next > 0:
            self.throttle_next -= 1
            resp = _error(429, "TooManyRequests", "Too many requests.")
            resp.headers["Retry-After"] = str(self.retry_after_s)
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                resp = exc
        self.requests.append((time.monotonic(), request.path_qs, resp.status))
        return resp

    def _page(
        self, request: web.Request, items: list[dict[str, Any]], last: dict[str, Any] | None = None
    ) -> web.Response:
        try:
            skip = int(request.query.get("$skiptoken", "0"))
        except ValueError:
            return _error(400, "BadRequest", "Invalid $skiptoken")
        chunk = items[skip : skip + self.page_size]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/$metadata", "value": chunk}
        if skip + self.page_size < len(items):
            base = self.next_link_base or self.base_url
            url = URL(base.rsplit("/v1.0", 1)[0] + request.path_qs)
            body["@odata.nextLink"] = str(
                url.update_query({"$skiptoken": str(skip + self.page_size)})
            )
        elif last:
            body.update(last)
        return web.json_response(body)

    def _delta_link(self, path: str) -> dict[str, str]:
        return {"@odata.deltaLink": f"{self.base_url}{path}?$deltatoken={self.version}"}

    def _since(self, request: web.Request) -> int | None:
        token = request.query.get("$deltatoken")
        if token is None:
            return None
        try:
            since = int(token)
        except ValueError:
            raise _Answer(_error(400, "BadRequest", "Invalid $deltatoken")) from None
        if since < self.reset_delta_token:
            resp = _error(410, "resyncRequired", "Resync required. Replace any local state.")
            resp.headers["Location"] = f"{self.base_url}{request.path}"
            raise _Answer(resp)
        if since < self.oldest_delta_token:
            raise _Answer(
                _error(
                    400,
                    "syncStateNotFound",
                    "The sync state generation is not found. The delta token is expired "
                    "and data must be synchronized again.",
                )
            )
        return since

    async def schools_list(self, request: web.Request) -> web.Response:
        return self._page(request, list(self.schools.values()))

    async def school_users(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.schools:
            return _error(404, "ResourceNotFound", "school not found")
        return self._page(request, [u.shape() for u in self.users.values() if sid in u.schools])

    async def school_classes(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        return self._page(
            request, [self._class_shape(c) for c in self.classes.values() if c.school == sid]
        )

    @staticmethod
    def _class_shape(c: _Class) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "id": c.id,
            "displayName": c.name,
            "mailNickname": c.name.replace(" ", ""),
            "externalId": c.id,
            "externalSource": "sis",
        }
        if c.term is not None:
            shape["term"] = {"@odata.type": "#microsoft.graph.educationTerm", **c.term}
        return shape

    async def class_members(self, request: web.Request) -> web.Response:
        cls = self.classes.get(request.match_info["id"])
        if cls is None:
            return _error(404, "ResourceNotFound", "class not found")
        return self._page(
            request, [self.users[u].shape() for u in sorted(cls.members) if u in self.users]
        )

    async def class_teachers(self, request: web.Request) -> web.Response:
        cls = self.classes.get(request.match_info["id"])
        if cls is None:
            return _error(404, "ResourceNotFound", "class not found")
        return self._page(
            request, [self.users[u].shape() for u in sorted(cls.teachers) if u in self.users]
        )

    async def users_delta(self, request: web.Request) -> web.Response:
        """``/education/users/delta``: educationUser objects changed since the token."""
        try:
            since = self._since(request)
        except _Answer as answer:
            return answer.response
        items: list[dict[str, Any]] = []
        for uid, version in sorted(self.user_changes.items(), key=lambda kv: kv[1]):
            if since is not None and version <= since:
                continue
            if uid in self.deleted:
                if since is not None:
                    items.append({"id": uid, "@removed": {"reason": "deleted"}})
                continue
            items.append(self.users[uid].shape())
        return self._page(request, items, self._delta_link("/education/users/delta"))

    async def classes_delta(self, request: web.Request) -> web.Response:
        """``/education/classes/delta``: classes created or changed (membership included)
        since the token; deleted classes are not reported, as Microsoft documents."""
        try:
            since = self._since(request)
        except _Answer as answer:
            return answer.response
        if since is None:
            changed = list(self.classes)
        else:
            changed = []
            for version, cid, _uid, _removed in self.member_events:
                if version > since and cid in self.classes and cid not in changed:
                    changed.append(cid)
        items = [self._class_shape(self.classes[cid]) for cid in changed]
        return self._page(request, items, self._delta_link("/education/classes/delta"))

    async def group_members(self, request: web.Request) -> web.Response:
        members = self.groups.get(request.match_info["id"])
        if members is None:
            return _error(404, "Request_ResourceNotFound", "group not found")
        return self._page(
            request,
            [{"@odata.type": "#microsoft.graph.user", "id": m} for m in sorted(members)],
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        r = app.router
        r.add_get("/v1.0/education/schools", self.schools_list)
        r.add_get("/v1.0/education/schools/{id}/users", self.school_users)
        r.add_get("/v1.0/education/schools/{id}/classes", self.school_classes)
        r.add_get("/v1.0/education/classes/{id}/members", self.class_members)
        r.add_get("/v1.0/education/classes/{id}/teachers", self.class_teachers)
        r.add_get("/v1.0/education/users/delta", self.users_delta)
        r.add_get("/v1.0/education/classes/delta", self.classes_delta)
        r.add_get("/v1.0/groups/{id}/transitiveMembers", self.group_members)
        return app


def _error(status: int, code: str, message: str) -> web.Response:
    request_id = str(uuid.uuid4())
    inner = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": request_id,
    }
    return web.json_response(
        {"error": {"code": code, "message": message, "innerError": inner}}, status=status
    )


async def start_graph_emulator(
    emulator: GraphEmulator | None = None,
) -> tuple[GraphEmulator, web.AppRunner]:
    """Serve the emulator on 127.0.0.1 and a free port; ``base_url`` ends in /v1.0."""
    emulator = emulator or GraphEmulator()
    runner = web.AppRunner(emulator.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    emulator.base_url = f"http://127.0.0.1:{port}/v1.0"
    return emulator, runner


class EmulatorThread:
    """The emulator on its own event loop in a thread, for tests of blocking code (the CLI)."""

    def __init__(self, emulator: GraphEmulator | None = None) -> None:
        import asyncio
        import threading

        self.emulator = emulator or GraphEmulator()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> GraphEmulator:
        import asyncio

        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_graph_emulator(self.emulator), self._loop)
        _emulator, self._runner = fut.result(timeout=timeout(10))
        return self.emulator

    def __exit__(self, *exc: object) -> None:
        import asyncio

        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(
                timeout=timeout(10)
            )
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=timeout(5))
        self._loop.close()
