"""Agents prove who they are: identity tokens from the real provider processes, device
keys answering one-time challenges, each school's policy, and the rule that an unverified
connection never replaces a verified one. Every refusal has its own code and audit entry."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from sqlalchemy import select, update

from klasblik import protocol as p
from klasblik.server.keys import AGENT_IDENTITY
from klasblik.server.storage.models import AgentDevice, GoogleAccount, School
from tests.identity.conftest import (
    ANNA,
    BRAM,
    GOOGLE_CLIENT_ID,
    GOOGLE_DOMAIN,
    TEACHER,
    IdAgent,
    audit_details,
    device_token,
    enrol_people,
    new_key,
    server_settings,
    token_source,
)
from tests.support.live import TestAgent, frame, start_live_server
from tests.support.oidc import CLIENT_ID
from tests.support.timing import timeout, wait_for


def _m365(token: str) -> dict[str, str]:
    return {"kind": "m365", "token": token}


async def _refused(agent: IdAgent, code: str, **connect) -> None:
    first = await agent.connect(**connect)
    assert first["type"] == "error", first
    assert first["error"]["code"] == code, first
    msg = await agent.ws.receive(timeout=timeout(5))
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert agent.ws.close_code == p.CloseCode.AUTH_FAILED


async def _subscribe_and_status(server, class_id: int, student_id: int):
    client = await server.login(TEACHER)
    ws = await server.dashboard(client)
    await ws.send_str(json.dumps({"type": "subscribe", "id": 1, "class_id": class_id}))
    statuses: dict[int, dict] = {}

    async def read() -> None:
        async for m in ws:
            if m.type == aiohttp.WSMsgType.TEXT:
                d = json.loads(m.data)
                if d["type"] == "status":
                    statuses[d["student_id"]] = d["state"]

    task = asyncio.create_task(read())
    await wait_for(lambda: student_id in statuses, message="status of the student")
    return ws, statuses, task


# ---- accepted proofs ---------------------------------------------------------------------


async def test_verified_student_is_taken_from_the_token_object_id(id_server, ms):
    """A token got silently by the agent's msal code names the student by object id;
    the welcome and the teacher's status say verified."""
    people = await enrol_people(id_server, ms)
    token = await device_token(ms, people.anna_sub, ANNA[0])
    agent = IdAgent(id_server, ANNA[0], identity=_m365(token))
    try:
        first = await agent.connect()
        assert first["type"] == "welcome" and first["identity"] == "verified", first
        assert id_server.hub.agents[people.anna_id].identity == "verified"
        _ws, statuses, task = await _subscribe_and_status(
            id_server, people.class_id, people.anna_id
        )
        await wait_for(lambda: statuses[people.anna_id].get("online"), message="online")
        assert statuses[people.anna_id]["identity"] == "verified"
        assert "contested" not in statuses[people.anna_id]
        task.cancel()
    finally:
        await agent.close()


async def test_agent_without_broker_or_cached_token_says_so(ms):
    """The agent's token code with no broker and nobody signed in through msal: no token,
    no browser, no prompt, and a reason for its log."""
    source = token_source(ms)
    assert await asyncio.to_thread(source.acquire, ANNA[0]) is None
    assert "no OS broker" in source.last_problem


async def test_account_field_does_not_choose_the_student(id_server, ms):
    """Anna's token with Bram's account is refused (identity_mismatch), audited; Bram is
    not connected."""
    people = await enrol_people(id_server, ms)
    token = await device_token(ms, people.anna_sub, ANNA[0])
    await _refused(IdAgent(id_server, BRAM[0], identity=_m365(token)), "identity_mismatch")
    assert people.bram_id not in id_server.hub.agents
    details = await audit_details(id_server)
    assert any(d.startswith("identity_mismatch:") for d in details), details


# ---- refusals, each with its own code and audit entry ---------------------------------


async def test_forged_signature_refused(id_server, ms):
    """A token re-signed with a key the provider never published: identity_invalid."""
    people = await enrol_people(id_server, ms)
    ms.forge_next_api_token = True
    token = await device_token(ms, people.anna_sub, ANNA[0])
    await _refused(IdAgent(id_server, ANNA[0], identity=_m365(token)), "identity_invalid")
    assert any("invalid_signature" in d for d in await audit_details(id_server))


async def test_altered_claims_refused(id_server, ms):
    """Bram's object id pasted into Anna's token (signature no longer matches)."""
    people = await enrol_people(id_server, ms)
    token = await device_token(ms, people.anna_sub, ANNA[0])
    import base64

    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["oid"] = people.bram_oid
    claims["preferred_username"] = BRAM[0]
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{head}.{body}.{sig}"
    await _refused(IdAgent(id_server, BRAM[0], identity=_m365(tampered)), "identity_invalid")


async def test_wrong_audience_refused(id_server, ms):
    """A token of the same tenant, for another app's API: identity_wrong_audience."""
    people = await enrol_people(id_server, ms)
    other = "api://0b7c9d41-2a7e-4c55-9f0e-6d3a1b2c4e5f/Files.Read"
    token = await device_token(ms, people.anna_sub, ANNA[0], scope=other)
    await _refused(IdAgent(id_server, ANNA[0], identity=_m365(token)), "identity_wrong_audience")
    assert any("wrong_audience" in d for d in await audit_details(id_server))


async def test_other_tenant_refused(id_server, ms):
    """An account of another organisation, same name: identity_wrong_tenant."""
    await enrol_people(id_server, ms)
    stranger = await asyncio.to_thread(
        ms.add_user, ANNA[0], "Anna elsewhere", "0a1b2c3d-0000-4000-8000-000000000001"
    )
    token = await device_token(ms, stranger, ANNA[0])
    await _refused(IdAgent(id_server, ANNA[0], identity=_m365(token)), "identity_wrong_tenant")
    assert any("wrong_tenant" in d for d in await audit_details(id_server))


@pytest.mark.parametrize("shift", ["expired", "not_yet_valid"])
async def test_expired_or_not_yet_valid_refused(id_server, ms, shift):
    """A token past its exp, or before its nbf (beyond the one-minute leeway):
    identity_expired."""
    people = await enrol_people(id_server, ms)
    now = int(time.time())
    user = {"oid": people.anna_oid, "sub": people.anna_sub, "tid": ms.tenant}
    user["preferred_username"] = ANNA[0]
    claims = ms.api_claims(user, [f"api://{CLIENT_ID}/Agent.Connect"], CLIENT_ID)
    if shift == "expired":
        claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    else:
        claims.update(nbf=now + 3600, exp=now + 7200)
    token = ms.mint_access_token(claims)
    await _refused(IdAgent(id_server, ANNA[0], identity=_m365(token)), "identity_expired")
    assert any(shift in d for d in await audit_details(id_server))


async def test_staff_token_refused(id_server, ms):
    """A valid token of the teacher: not_a_student (4003), whatever account it names."""
    people = await enrol_people(id_server, ms)
    token = await device_token(ms, people.teacher_sub, TEACHER)
    agent = IdAgent(id_server, ANNA[0], identity=_m365(token))
    first = await agent.connect()
    assert first["error"]["code"] == "not_a_student"
    await agent.ws.receive(timeout=timeout(5))
    assert agent.ws.close_code == p.CloseCode.FORBIDDEN
    await agent.close()
    assert any("names staff" in d for d in await audit_details(id_server))


async def test_no_proof_refused_under_verified(id_server, ms):
    """The shared enrollment token alone: identity_required under the default policy."""
    await enrol_people(id_server, ms)
    await _refused(IdAgent(id_server, ANNA[0]), "identity_required")
    assert any(d.startswith("identity_required:") for d in await audit_details(id_server))


# ---- device keys ----------------------------------------------------------------------


async def test_device_enrols_with_a_verified_identity_and_later_proves_itself(
    id_server, ms, tmp_path
):
    """First enrolment registers the key; under `device`, the same key alone is
    accepted (level device); another key alone is a new device and refused."""
    people = await enrol_people(id_server, ms)
    key = new_key(tmp_path, "laptop")
    token = await device_token(ms, people.anna_sub, ANNA[0])
    first = IdAgent(id_server, ANNA[0], identity=_m365(token), key=key, device_id="laptop-1")
    assert (await first.connect())["identity"] == "verified"
    assert len(first.challenges) == 1
    await first.close()
    async with id_server.sm() as session:
        rows = (await session.scalars(select(AgentDevice))).all()
    assert [(r.student_id, r.device_id) for r in rows] == [(people.anna_id, "laptop-1")]

    async with id_server.sm() as session, session.begin():
        await session.execute(update(School).values(agent_identity="device"))
    id_server.app[AGENT_IDENTITY].forget_policies()
    again = IdAgent(id_server, ANNA[0], key=key, device_id="laptop-1")
    assert (await again.connect())["identity"] == "device"
    await again.close()
    stranger = IdAgent(id_server, ANNA[0], key=new_key(tmp_path, "other"), device_id="laptop-1")
    await _refused(stranger, "identity_required")


async def test_replayed_challenge_answer_refused(id_server, ms, tmp_path):
    """An answer recorded from an earlier connection, sent to a new challenge:
    challenge_replayed; a signature by another key: device_proof_invalid."""
    people = await enrol_people(id_server, ms)
    key = new_key(tmp_path, "laptop")
    token = await device_token(ms, people.anna_sub, ANNA[0])
    honest = IdAgent(id_server, ANNA[0], identity=_m365(token), key=key, device_id="d1")
    await honest.connect()
    old_nonce = honest.challenges[0]
    recorded = {"nonce": old_nonce, "signature": key.sign(old_nonce, "d1")}
    await honest.close()

    replay = IdAgent(id_server, ANNA[0], identity=_m365(token), key=key, device_id="d1")
    await _refused(replay, "challenge_replayed", answer=recorded)
    thief = new_key(tmp_path, "thief")
    forger = IdAgent(id_server, ANNA[0])
    first = await forger.http.ws_connect(id_server.agent_url)
    forger.ws = first
    await first.send_str(
        json.dumps(
            {
                "type": "hello",
                "protocol": 1,
                "token": id_server.token,
                "account": ANNA[0],
                "device": {"id": "d1", "kind": "desktop", "key": key.public_key},
                "identity": _m365(token),
            }
        )
    )
    challenge = json.loads(await first.receive_str(timeout=timeout(5)))
    await first.send_str(
        json.dumps(
            {
                "type": "proof",
                "nonce": challenge["nonce"],
                "signature": thief.sign(challenge["nonce"], "d1"),
            }
        )
    )
    answer = json.loads(await first.receive_str(timeout=timeout(5)))
    assert answer["error"]["code"] == "device_proof_invalid"
    await forger.close()
    details = await audit_details(id_server)
    assert any(d.startswith("challenge_replayed:") for d in details)
    assert any(d.startswith("device_proof_invalid:") for d in details)


# ---- impersonation with the shared token --------------------------------------------


async def test_impersonation_under_verified_gets_nothing_and_replaces_nothing(id_server, ms):
    """Anna is connected, verified, watched. A second client with the shared token alone
    claiming Anna's account is refused; Anna's connection stays and keeps its watch."""
    people = await enrol_people(id_server, ms)
    token = await device_token(ms, people.anna_sub, ANNA[0])
    anna = IdAgent(id_server, ANNA[0], identity=_m365(token))
    await anna.connect()
    _ws, statuses, task = await _subscribe_and_status(id_server, people.class_id, people.anna_id)
    await wait_for(lambda: anna.mode == "grid", message="Anna watched")
    impostor = TestAgent(id_server, ANNA[0])
    first = await impostor.connect()
    assert first["type"] == "error" and first["error"]["code"] == "identity_required"
    assert impostor.watches == []
    assert id_server.hub.agents[people.anna_id].ws is not None
    assert not anna.ws.closed and anna.mode == "grid"
    assert "contested" not in statuses[people.anna_id]
    task.cancel()
    await impostor.close()
    await anna.close()


async def test_impersonation_under_token_is_shown_flagged_and_replaces_nothing(
    tmp_path, ms, google
):
    """Under `token`, the impostor is welcomed as unverified but kept aside: Anna's
    verified connection is not replaced, the impostor gets no watch, the teacher's status
    says contested, and the audit log records it."""
    server = await start_live_server(
        tmp_path, **server_settings(ms, google, agent_identity="token")
    )
    try:
        people = await enrol_people(server, ms)
        token = await device_token(ms, people.anna_sub, ANNA[0])
        anna = IdAgent(server, ANNA[0], identity=_m365(token))
        await anna.connect()
        _ws, statuses, task = await _subscribe_and_status(server, people.class_id, people.anna_id)
        await wait_for(lambda: anna.mode == "grid", message="Anna watched")
        impostor = TestAgent(server, ANNA[0])
        first = await impostor.connect()
        assert first["type"] == "welcome" and first["identity"] == "unverified"
        await wait_for(
            lambda: statuses[people.anna_id].get("contested") == 1, message="contested flag"
        )
        assert statuses[people.anna_id]["identity"] == "verified"
        assert server.hub.agents[people.anna_id].ws is not None
        assert not anna.ws.closed and anna.mode == "grid"
        await impostor.send(frame())  # unasked: never relayed, never kept
        await impostor.send(json.dumps({"type": "hello"}))  # answered after the frame
        await wait_for(lambda: impostor.errors, message="answer to the second hello")
        assert server.hub.frames_relayed == 0
        assert impostor.watches == []
        details = await audit_details(server, "agent.contested")
        assert len(details) == 1 and "unverified" in details[0]
        await impostor.close()
        await wait_for(lambda: "contested" not in statuses[people.anna_id], message="flag cleared")
        task.cancel()
        await anna.close()
    finally:
        await server.stop()


async def test_token_policy_marks_unproven_agents_unverified(tmp_path, ms, google):
    """Under `token`, the enrollment token alone still connects, flagged unverified."""
    server = await start_live_server(
        tmp_path, **server_settings(ms, google, agent_identity="token")
    )
    try:
        people = await enrol_people(server, ms)
        agent = TestAgent(server, ANNA[0])
        assert (await agent.connect())["identity"] == "unverified"
        _ws, statuses, task = await _subscribe_and_status(server, people.class_id, people.anna_id)
        await wait_for(lambda: statuses[people.anna_id].get("online"), message="online")
        assert statuses[people.anna_id]["identity"] == "unverified"
        task.cancel()
        await agent.close()
    finally:
        await server.stop()


# ---- Google (Chromebooks) -------------------------------------------------------------


async def _google_user(google, email: str, domain: str = GOOGLE_DOMAIN) -> str:
    import uuid

    sub = str(uuid.uuid4())
    await asyncio.to_thread(
        google.put_user, sub, email=email, email_verified=True, hd=domain, name=email
    )
    return sub


async def test_google_token_maps_to_the_student_through_it_mapping(id_server, ms, google):
    """A Google ID token of the school's Workspace, mapped by IT to Anna: verified."""
    people = await enrol_people(id_server, ms)
    email = f"a.bakker@{GOOGLE_DOMAIN}"
    async with id_server.sm() as session, session.begin():
        session.add(GoogleAccount(email=email, student_id=people.anna_id))
    sub = await _google_user(google, email)
    token = await asyncio.to_thread(google.id_token_for, sub, GOOGLE_CLIENT_ID)
    agent = IdAgent(
        id_server, email, identity={"kind": "google", "token": token}, kind="chromebook"
    )
    assert (await agent.connect())["identity"] == "verified"
    assert id_server.hub.agents[people.anna_id].identity == "verified"
    await agent.close()


async def test_google_token_refusals(id_server, ms, google):
    """Another Workspace domain: identity_wrong_tenant; another client id:
    identity_wrong_audience; a Google address nobody mapped: unknown_account."""
    await enrol_people(id_server, ms)
    other = await _google_user(google, "anna@elders.example", "elders.example")
    token = await asyncio.to_thread(google.id_token_for, other, GOOGLE_CLIENT_ID)
    agent = IdAgent(id_server, ANNA[0], identity={"kind": "google", "token": token})
    await _refused(agent, "identity_wrong_tenant")
    mine = await _google_user(google, f"anna@{GOOGLE_DOMAIN}")
    token = await asyncio.to_thread(google.id_token_for, mine, "someone-elses-client")
    agent = IdAgent(id_server, ANNA[0], identity={"kind": "google", "token": token})
    await _refused(agent, "identity_wrong_audience")
    token = await asyncio.to_thread(google.id_token_for, mine, GOOGLE_CLIENT_ID)
    agent = IdAgent(id_server, ANNA[0], identity={"kind": "google", "token": token})
    first = await agent.connect()
    assert first["error"]["code"] == "unknown_account"
    await agent.close()


# ---- enrollment token rotation --------------------------------------------------------


async def test_previous_enrollment_token_accepted_until_its_date(tmp_path):
    """After rotation the old token still works until the set date, then not."""
    server = await start_live_server(
        tmp_path,
        enrollment_token="new-token",
        enrollment_token_previous="old-token",
        enrollment_token_previous_until="2999-12-31",
    )
    try:
        await server.add_class("7B", [ANNA])
        for token in ("new-token", "old-token"):
            agent = TestAgent(server, ANNA[0])
            assert (await agent.connect(token))["type"] == "welcome"
            await agent.close()
        agent = TestAgent(server, ANNA[0])
        assert (await agent.connect("older-token"))["error"]["code"] == "auth_failed"
        await agent.close()
        identity = server.app[AGENT_IDENTITY]
        import datetime as dt

        later = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
        assert identity.enrollment_token_ok("new-token", later)
        assert not identity.enrollment_token_ok("old-token", later)
    finally:
        await server.stop()
