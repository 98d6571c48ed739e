"""Cost of agent identity per hello, in-process: validating a Microsoft 365 identity token
(signature, issuer, audience, tenant, expiry) with the server's own code, the student
look-up by object id, and a device key's challenge answer (verify + key look-up).

    python bench/agent_identity.py --n 2000

Needs PostgreSQL (as the tests; KLASBLIK_TEST_PG) and the OIDC provider process of the
tests (tests/support/oidc.py). Prints microseconds per operation and the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.pop("REQUESTS_CA_BUNDLE", None)  # requests would ignore verify= (FACTS.md)
os.environ.pop("CURL_CA_BUNDLE", None)


def _per_op(seconds: float, n: int) -> str:
    return f"{1e6 * seconds / n:8.1f} µs"


async def run(n: int, students: int) -> None:
    import jwt
    from sqlalchemy import insert
    from tests.support.oidc import CLIENT_ID, run_provider
    from tests.support.services import postgres_database

    from klasblik.agent.identity import DeviceKey
    from klasblik.server.auth.agent_identity import AgentIdentity, key_hash, verify_proof
    from klasblik.server.auth.m365.client import M365Client
    from klasblik.server.auth.m365.idtoken import validate_token
    from klasblik.server.settings import load_settings
    from klasblik.server.storage.engine import create_engine, sessionmaker, upgrade_database
    from klasblik.server.storage.models import AgentDevice, School, Student

    with (
        tempfile.TemporaryDirectory() as tmp,
        run_provider(Path(tmp)) as provider,
        postgres_database("klasblik_bench_" + uuid.uuid4().hex[:6]) as url,
    ):
        settings = load_settings(
            env={}, overrides={"enrollment_token": "t", "database_url": url, **provider.settings()}
        )
        engine = create_engine(url)
        await upgrade_database(engine)
        oids = [str(uuid.uuid4()) for _ in range(students)]
        key = DeviceKey.load_or_create(Path(tmp) / "key")
        async with engine.begin() as conn:
            await conn.execute(insert(School), [{"id": 1, "name": "B", "brin": "99ZZ"}])
            await conn.execute(
                insert(Student),
                [
                    {
                        "id": i,
                        "school_id": 1,
                        "username": f"s{i}@b.example",
                        "display_name": "S",
                        "m365_id": oid,
                    }
                    for i, oid in enumerate(oids, start=1)
                ],
            )
            await conn.execute(
                insert(AgentDevice),
                [
                    {
                        "student_id": 1,
                        "device_id": "d",
                        "key_hash": key_hash(key.public_key),
                        "public_key": key.public_key,
                    }
                ],
            )
        client = M365Client(settings)
        service = AgentIdentity(settings, sessionmaker(engine), client)
        scope = [f"api://{CLIENT_ID}/Agent.Connect"]
        tokens = [
            provider.mint_access_token(
                provider.api_claims(
                    {
                        "oid": oid,
                        "sub": oid,
                        "tid": provider.tenant,
                        "preferred_username": f"s{i}@b.example",
                    },
                    scope,
                    CLIENT_ID,
                )
            )
            for i, oid in enumerate(oids[:n], start=1)
        ]
        tokens = (tokens * (n // len(tokens) + 1))[:n]
        await validate_token(client, tokens[0], audience=CLIENT_ID, tenant=provider.tenant)

        jwk = jwt.PyJWK(await client.key_for(jwt.get_unverified_header(tokens[0])["kid"])).key
        t0 = time.perf_counter()
        for tok in tokens:
            jwt.decode(tok, key=jwk, algorithms=["RS256"], audience=CLIENT_ID)
        sig = time.perf_counter() - t0

        kid = jwt.get_unverified_header(tokens[0])["kid"]
        keys = service._m365_keys
        assert keys is not None
        t0 = time.perf_counter()
        for _ in range(n):
            await keys.key_for(kid)
            await keys.issuer()
        lookup = time.perf_counter() - t0

        t0 = time.perf_counter()
        for tok in tokens:
            await service.verify({"kind": "m365", "token": tok})
        whole = time.perf_counter() - t0

        proven = [await service.verify({"kind": "m365", "token": tok}) for tok in tokens[:200]]
        t0 = time.perf_counter()
        for i in range(n):
            await service.student_of(proven[i % len(proven)])
        student = time.perf_counter() - t0
        storm = [await service.verify({"kind": "m365", "token": tok}) for tok in tokens]
        t0 = time.perf_counter()
        for start in range(0, n, 500):  # a storm: hellos waiting at the same moment
            await asyncio.gather(*(service.student_of(pr) for pr in storm[start : start + 500]))
        student_storm = time.perf_counter() - t0

        answers = [(f"nonce{i}", key.sign(f"nonce{i}", "d")) for i in range(200)]
        t0 = time.perf_counter()
        for i in range(n):
            nonce, answer = answers[i % len(answers)]
            assert verify_proof(key.public_key, nonce, "d", answer)
        proof = time.perf_counter() - t0

        t0 = time.perf_counter()
        for _ in range(n):
            assert await service.device_registered(1, key.public_key)
        device = time.perf_counter() - t0
        client.close()
        await engine.dispose()

    print(f"command: python bench/agent_identity.py --n {n} --students {students}")
    print(f"per hello, {n} sequential operations, 1 process, PostgreSQL on this machine:")
    print(f"  RS256 signature + claims check (PyJWT)      {_per_op(sig, n)}")
    print(f"  key and issuer look-up (cached in memory)   {_per_op(lookup, n)}")
    print(f"  identity token, whole check (verify())      {_per_op(whole, n)}")
    print(f"  student by object id, one at a time         {_per_op(student, n)}")
    print(f"  student by object id, 500 at once (batched) {_per_op(student_storm, n)}")
    print(f"  device proof, ECDSA P-256 verify            {_per_op(proof, n)}")
    print(f"  device key look-up + last-proven write      {_per_op(device, n)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--students", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.n, args.students))


if __name__ == "__main__":
    main()
